"""JPEG encoding and decoding of face crops (RGB uint8), single frames and whole clips."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode one HxWx3 uint8 RGB image as JPEG bytes."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode JPEG bytes to an HxWx3 uint8 RGB array; undecodable bytes raise ``ValueError``."""
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"not a decodable JPEG ({len(data)} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_frames(frames: Sequence[bytes], indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode some (``indices``) or all JPEG frames of a clip into a (N, H, W, 3) uint8 array."""
    idx = range(len(frames)) if indices is None else indices
    out = [decode_jpeg(frames[i]) for i in idx]
    if not out:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(out)


def encode_frames(rgb: np.ndarray | Sequence[np.ndarray], quality: int = 95) -> list[bytes]:
    """Encode a stack of RGB frames to a list of JPEG bytes."""
    return [encode_jpeg(np.ascontiguousarray(f), quality) for f in rgb]
