"""A stable 256x256 face crop per clip: a similarity transform from landmarks, smoothed over time.

Per frame, the transform follows the FFHQ-style alignment: centre slightly below the eyes towards the mouth,
orientation from the eye line and the eye-to-mouth direction, size from the larger of the eye distance and
the eye-to-mouth distance. The centre, log-scale and angle are smoothed with a Gaussian over time, so the
crop does not jitter. Each frame's 2x3 affine maps source pixels to crop pixels; its inverse pastes back.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from pt_data.shard_schema import CROP_SIZE

# MediaPipe face-mesh indices: eye corners (subject's right eye 33/133, left eye 362/263), mouth corners
RIGHT_EYE, LEFT_EYE, MOUTH = (33, 133), (362, 263), (61, 291)


@dataclass
class CropConfig:
    """Crop size, how much of the head it shows, and the temporal smoothing (in frames)."""

    size: int = CROP_SIZE
    scale: float = 1.0  # 1.0: FFHQ-like framing (whole face, some hair and chin)
    smooth_sigma: float = 3.0  # 0 disables smoothing


def frame_similarity_params(landmarks: np.ndarray) -> np.ndarray:
    """(T, 4) per-frame [centre x, centre y, half side, angle] from (T, 478, 2) landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_r = lm[:, RIGHT_EYE].mean(1)
    eye_l = lm[:, LEFT_EYE].mean(1)
    mouth = lm[:, MOUTH].mean(1)
    eye_avg = (eye_r + eye_l) / 2
    e2e = eye_l - eye_r
    e2m = mouth - eye_avg
    x = e2e - np.stack([-e2m[:, 1], e2m[:, 0]], 1)  # eye line combined with the perpendicular of eye-to-mouth
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    half = np.maximum(np.linalg.norm(e2e, axis=1) * 2.0, np.linalg.norm(e2m, axis=1) * 1.8)
    centre = eye_avg + 0.1 * e2m
    angle = np.arctan2(x[:, 1], x[:, 0])
    return np.column_stack([centre, half, angle])


def similarity_affines(centre: np.ndarray, half: np.ndarray, angle: np.ndarray, size: int) -> np.ndarray:
    """(T, 2, 3) float32 affines mapping a rotated square (centre, half side, angle) onto ``size`` pixels."""
    cx, cy = np.asarray(centre, np.float64).T
    s = size / (2 * np.asarray(half, np.float64))
    ang = np.asarray(angle, np.float64)
    cos, sin = np.cos(-ang) * s, np.sin(-ang) * s
    m = np.empty((len(s), 2, 3))
    m[:, 0, 0], m[:, 0, 1] = cos, -sin
    m[:, 1, 0], m[:, 1, 1] = sin, cos
    m[:, 0, 2] = size / 2 - (cos * cx - sin * cy)
    m[:, 1, 2] = size / 2 - (sin * cx + cos * cy)
    return m.astype(np.float32)


def crop_transforms(landmarks: np.ndarray, config: CropConfig | None = None) -> np.ndarray:
    """(T, 2, 3) float32 affines (source pixels -> crop pixels), smoothed over the clip."""
    cfg = config or CropConfig()
    p = frame_similarity_params(landmarks)
    cx, cy, half, ang = p[:, 0], p[:, 1], np.log(p[:, 2] * cfg.scale), np.unwrap(p[:, 3])
    if cfg.smooth_sigma > 0 and len(p) > 1:
        cx, cy, half, ang = (gaussian_filter1d(v, cfg.smooth_sigma, mode="nearest") for v in (cx, cy, half, ang))
    return similarity_affines(np.column_stack([cx, cy]), np.exp(half), ang, cfg.size)


def compose_affines(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine that applies ``inner`` then ``outer`` (both (…, 2, 3))."""
    o, i = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    lin = o[..., :2] @ i[..., :2]
    t = np.einsum("...ij,...j->...i", o[..., :2], i[..., 2]) + o[..., 2]
    return np.concatenate([lin, t[..., None]], -1).astype(np.float32)


def invert_affines(affines: np.ndarray) -> np.ndarray:
    """Inverse of each (…, 2, 3) affine (crop pixels -> source pixels, for paste-back)."""
    a = np.asarray(affines, dtype=np.float64)
    lin = np.linalg.inv(a[..., :2])
    t = -np.einsum("...ij,...j->...i", lin, a[..., 2])
    return np.concatenate([lin, t[..., None]], -1).astype(np.float32)


def apply_affine_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (…, N, 2) points with (…, 2, 3) affines."""
    a = np.asarray(affine, dtype=np.float64)
    return (np.einsum("...ij,...nj->...ni", a[..., :2], points) + a[..., None, :, 2]).astype(np.float32)


def crop_frame(frame: np.ndarray, affine: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Warp one RGB frame into its ``size`` x ``size`` crop (area-averaged when shrinking)."""
    shrink = np.sqrt(abs(np.linalg.det(np.asarray(affine, np.float64)[:, :2]))) < 1
    return cv2.warpAffine(frame, np.asarray(affine, np.float64), (size, size),
                          flags=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
