"""Synthetic talking-head geometry with known ground truth, for the fitting's tests and accuracy benchmark.

A clip draws one identity, speech-like expressions (jaw opening and lip shapes driven by a syllable-rate
envelope, occasional blinks and smiles), a smooth head motion with turns up to ``max_yaw_deg``, and
projects the model's MediaPipe-corresponding vertices to the 256 crop. Detector-like errors are added:
a fixed per-point 3D offset (how far MediaPipe's points sit from the model's surface points, like the
correspondence residual) and per-frame pixel noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pt_data.camera import FOCAL_PX, project_vertices
from pt_data.face_model import FaceModel
from pt_data.shard_schema import FPS


@dataclass
class SyntheticClip:
    """Ground truth and observed landmarks of one synthetic clip."""

    shape: np.ndarray  # (S,)
    expression: np.ndarray  # (T, E)
    pose: np.ndarray  # (T, 6)
    landmarks: np.ndarray  # (T, 478, 2) observed (noisy) crop pixels
    clean_landmarks: np.ndarray  # (T, 478, 2) exact projections


def _smooth_noise(rng: np.random.Generator, t: int, cutoff_hz: float, n: int = 1) -> np.ndarray:
    """(t, n) band-limited noise with unit standard deviation (random phases below ``cutoff_hz``)."""
    freqs = np.fft.rfftfreq(t, 1.0 / FPS)
    keep = freqs <= max(cutoff_hz, freqs[1] if len(freqs) > 1 else 0.0)  # short clips keep the lowest band
    spec = (rng.normal(size=(len(freqs), n)) + 1j * rng.normal(size=(len(freqs), n))) * keep[:, None]
    spec[0] = 0
    x = np.fft.irfft(spec, n=t, axis=0)
    return x / np.maximum(x.std(0, keepdims=True), 1e-9)


def _expr_index(model: FaceModel, name: str) -> int | None:
    return model.exp_names.index(name) if name in model.exp_names else None


def synthetic_clip(model: FaceModel, num_frames: int = 100, *, seed: int = 0, max_yaw_deg: float = 30.0,
                   noise_px: float = 1.0, point_offset_mm: float = 1.0, face_px: float = 150.0) -> SyntheticClip:
    """One synthetic clip (see the module docstring)."""
    rng = np.random.default_rng(seed)
    t = num_frames
    shape = (rng.normal(size=model.num_shape) * 0.7).astype(np.float32)
    e = model.num_expression
    bounded = np.isfinite(model.exp_lower).all() and np.isfinite(model.exp_upper).all()
    expr = np.zeros((t, e), np.float32)
    # speech: syllables at ~4 Hz with a slowly varying loudness
    phase = np.cumsum(2 * np.pi * (4.0 + 0.8 * _smooth_noise(rng, t, 0.5)[:, 0]) / FPS)
    envelope = np.clip(0.6 + 0.3 * _smooth_noise(rng, t, 0.7)[:, 0], 0.1, 1.0)
    jaw = np.clip(0.5 * (1 - np.cos(phase)) * envelope * 0.6, 0, 1)
    drivers = {"jawOpen": jaw, "mouthClose": 0.2 * jaw * (np.sin(phase / 2) > 0),
               "mouthFunnel": np.clip(0.3 * _smooth_noise(rng, t, 1.5)[:, 0], 0, 1),
               "mouthSmile_L": np.clip(0.2 + 0.15 * _smooth_noise(rng, t, 0.3)[:, 0], 0, 1),
               "mouthSmile_R": np.clip(0.2 + 0.15 * _smooth_noise(rng, t, 0.3)[:, 0], 0, 1),
               "mouthLowerDown_L": 0.3 * jaw, "mouthLowerDown_R": 0.3 * jaw,
               "browInnerUp_L": np.clip(0.2 * _smooth_noise(rng, t, 0.4)[:, 0], 0, 1)}
    blink = np.zeros(t)
    for start in rng.choice(max(t - 4, 1), size=max(t // 75, 1), replace=False):
        blink[start:start + 4] = [0.5, 1.0, 1.0, 0.5][: len(blink[start:start + 4])]
    drivers.update(eyeBlink_L=blink, eyeBlink_R=blink)
    used = False
    for name, values in drivers.items():
        j = _expr_index(model, name)
        if j is not None:
            expr[:, j] = values
            used = True
    if not used or not bounded:  # a PCA expression model: smooth random coefficients
        expr = (0.5 * _smooth_noise(rng, t, 2.0, e) * np.linspace(1, 0.2, e)).astype(np.float32)
    yaw = np.deg2rad(max_yaw_deg) * np.clip(_smooth_noise(rng, t, 0.3)[:, 0] / 1.5, -1, 1)
    pitch = np.deg2rad(8) * np.clip(_smooth_noise(rng, t, 0.4)[:, 0] / 1.5, -1, 1)
    roll = np.deg2rad(5) * np.clip(_smooth_noise(rng, t, 0.3)[:, 0] / 1.5, -1, 1)
    width = float(np.ptp(model.mean[model.mediapipe_ids[:468], 0]))
    depth = FOCAL_PX * width / face_px
    trans = np.stack([3 * _smooth_noise(rng, t, 0.3)[:, 0], 3 * _smooth_noise(rng, t, 0.3)[:, 0],
                      -depth + 20 * _smooth_noise(rng, t, 0.2)[:, 0]], 1)
    pose = np.concatenate([np.stack([pitch, yaw, roll], 1), trans], 1).astype(np.float32)
    ids = model.mediapipe_ids
    verts = model.vertices(shape, expr)[:, ids]  # (T, K, 3)
    clean, _ = project_vertices(torch.as_tensor(verts), torch.as_tensor(pose))
    offset = (rng.normal(size=(1, len(ids), 3)) * point_offset_mm / np.sqrt(3)).astype(np.float32)
    noisy, _ = project_vertices(torch.as_tensor(verts + offset), torch.as_tensor(pose))
    noisy = noisy.numpy() + rng.normal(size=noisy.shape).astype(np.float32) * noise_px / np.sqrt(2)
    return SyntheticClip(shape=shape, expression=expr.astype(np.float32), pose=pose,
                         landmarks=noisy.astype(np.float32), clean_landmarks=clean.numpy().astype(np.float32))
