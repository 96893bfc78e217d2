"""Clip shards whose frames are drawn from their geometry, for stage-2 tests and benchmarks.

Geometry: :func:`pt_data.synthetic_geometry.synthetic_clip` (an identity, speech-like expressions, a smooth
head motion). Frames: the clip's PNCC rendering turned into a textured face (skin colour varying with the
canonical coordinates, so every surface point has its own colour; red lips; a dark mouth opening; a gradient
background), upsampled to the shards' 256 x 256 JPEG crops. The appearance is a function of the geometry, so a
renderer that samples texture by geometric correspondence can reconstruct held-out frames.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from pt_data.clip import Clip
from pt_data.face_model import FaceModel
from pt_data.jpeg import encode_jpeg
from pt_data.render import PNCCRenderer
from pt_data.shard_schema import CROP_SIZE, SAMPLES_PER_FRAME
from pt_data.shards import write_shard
from pt_data.synthetic_geometry import synthetic_clip


def textured_frames(face_model: FaceModel, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                    draw_size: int = 48) -> np.ndarray:
    """(T, 256, 256, 3) uint8 frames drawn from the geometry at ``draw_size`` px, then upsampled."""
    out = PNCCRenderer(face_model, draw_size).render(torch.as_tensor(shape)[None].expand(len(expression), -1),
                                                     torch.as_tensor(expression), torch.as_tensor(pose))
    p, m, lip = out.pncc.numpy(), out.mask.numpy(), out.lip_mask.numpy()
    skin = np.stack([0.75 + 0.15 * np.sin(14 * p[:, 0]), 0.55 + 0.25 * p[:, 1], 0.45 + 0.15 * np.cos(11 * p[:, 2])], 1)
    yy, xx = np.mgrid[0:draw_size, 0:draw_size] / draw_size
    bg = np.stack([0.2 + 0.4 * xx, 0.3 + 0.3 * yy, 0.55 + 0 * xx])[None]
    img = bg * (1 - m) + skin * m
    img = img * (1 - lip) + np.array([0.75, 0.1, 0.15])[None, :, None, None] * lip
    img = (np.clip(img, 0, 1).transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    return np.stack([cv2.resize(f, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LINEAR) for f in img])


def textured_clip(face_model: FaceModel, i: int, num_frames: int, *, seed: int = 0, geometry: bool = True) -> Clip:
    """One clip (id ``tex-{seed}-{i}``) with geometry and frames drawn from it."""
    g = synthetic_clip(face_model, num_frames, seed=seed * 1000 + i, max_yaw_deg=15.0)
    frames = textured_frames(face_model, g.shape, g.expression, g.pose)
    t = num_frames
    return Clip(clip_id=f"tex-{seed}-{i}", dataset="synthetic", speaker_id=f"spk{i}", source_uri=f"synthetic://{i}",
                start_s=0.0, end_s=t / 25, frames=[encode_jpeg(f, 90) for f in frames],
                audio=np.zeros(t * SAMPLES_PER_FRAME, np.int16),
                crop_affine=np.tile(np.eye(2, 3, dtype=np.float32), (t, 1, 1)), landmarks=g.clean_landmarks,
                face_model_id=face_model.model_id if geometry else None, shape=g.shape if geometry else None,
                expression=g.expression if geometry else None, pose=g.pose if geometry else None)


def write_textured_shards(root: str | Path, face_model: FaceModel, *, num_clips: int = 2, num_frames: int = 24,
                          seed: int = 0, geometry: bool = True) -> Path:
    """Write ``num_clips`` textured clips as one shard under ``root``; returns ``root``."""
    root = Path(root)
    clips = [textured_clip(face_model, i, num_frames, seed=seed, geometry=geometry) for i in range(num_clips)]
    write_shard(str(root / "part-00000.parquet"), clips)
    return root
