"""Synthetic clip shards with geometry for stage-1 tests and benchmarks (until curation fills real fits).

Each clip has the default face model's coefficients: a per-speaker identity, slow random expressions of
small amplitude, a smooth pose, and a ``jawOpen`` that follows the loudness of the clip's audio (a noise
carrier modulated by a syllable-rate envelope) with a per-speaker gain: the audio explains the jaw, the
speaker's style explains how wide it opens, so there is something to learn for both branches.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pt_data.clip import Clip
from pt_data.face_model import FaceModel
from pt_data.jpeg import encode_jpeg
from pt_data.shard_schema import SAMPLES_PER_FRAME
from pt_data.shards import ShardWriterConfig, write_shard


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 (reflect padding)."""
    r = int(3 * sigma) + 1
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(x, [(r, r)] + [(0, 0)] * (x.ndim - 1), mode="reflect")
    return np.apply_along_axis(lambda c: np.convolve(c, k, mode="valid"), 0, pad)


def synth_clip(i: int, num_frames: int, face_model: FaceModel, *, speaker: int = 0, jaw_gain: float = 0.8,
               seed: int = 0, frame: bytes | None = None) -> Clip:
    """One clip of ``num_frames`` frames whose jaw opening follows its audio envelope (see module docstring)."""
    rng = np.random.default_rng([seed, i])
    spk = np.random.default_rng([seed, 10_000 + speaker])
    t = num_frames
    env = _smooth(rng.uniform(0, 1, t + 8), 1.5)[4:4 + t]
    env = np.clip((env - env.min()) / max(np.ptp(env), 1e-6), 0, 1) ** 1.5  # syllable-like bursts in [0, 1]
    env_samples = np.interp(np.arange(t * SAMPLES_PER_FRAME) / SAMPLES_PER_FRAME - 0.5, np.arange(t), env)
    carrier = rng.normal(0, 1, t * SAMPLES_PER_FRAME)
    audio = np.clip(0.25 * carrier * (0.05 + env_samples), -1, 1)
    e = face_model.num_expression
    expression = np.clip(_smooth(rng.uniform(0, 0.12, (t, e)), 3.0), 0, 1).astype(np.float32)
    expression[:, face_model.exp_names.index("jawOpen")] = np.clip(jaw_gain * env, 0, 1)
    pose = np.zeros((t, 6), np.float32)
    pose[:, :3] = _smooth(rng.normal(0, 0.05, (t, 3)), 4.0)
    pose[:, 3:] = np.array([0, 0, -1000], np.float32) + _smooth(rng.normal(0, 3, (t, 3)), 4.0)
    frame = frame if frame is not None else encode_jpeg(np.full((256, 256, 3), 128, np.uint8), 80)
    return Clip(clip_id=f"synth-{seed}-{i:05d}", dataset="synthetic", speaker_id=f"spk{speaker}",
                source_uri=f"synthetic://{seed}/{i}", start_s=0.0, end_s=t / 25, frames=[frame] * t,
                audio=(audio * 32767).astype(np.int16),
                crop_affine=np.tile(np.eye(2, 3, dtype=np.float32), (t, 1, 1)),
                landmarks=np.zeros((t, 478, 2), np.float32), face_model_id=face_model.model_id,
                shape=spk.normal(0, 0.7, face_model.num_shape).astype(np.float32), expression=expression, pose=pose)


def write_synth_shards(root: str | Path, face_model: FaceModel, *, num_clips: int = 4, num_frames: int = 80,
                       num_speakers: int = 2, seed: int = 0, clips_per_group: int = 256,
                       geometry: bool = True) -> Path:
    """Write ``num_clips`` synthetic clips (speakers round-robin, jaw gains 0.5..1.0) as one shard under ``root``.

    ``geometry=False`` blanks the geometry columns (shards as curated without fitting).
    """
    root = Path(root)
    frame = encode_jpeg(np.full((256, 256, 3), 128, np.uint8), 80)
    gains = np.linspace(0.5, 1.0, num_speakers)
    clips = []
    for i in range(num_clips):
        s = i % num_speakers
        c = synth_clip(i, num_frames, face_model, speaker=s, jaw_gain=float(gains[s]), seed=seed, frame=frame)
        if not geometry:
            c.shape = c.expression = c.pose = None
            c.face_model_id = None
        clips.append(c)
    write_shard(str(root / "clips" / "part-00000.parquet"), clips,
                config=ShardWriterConfig(max_rows_per_group=clips_per_group))
    return root
