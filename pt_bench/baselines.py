"""Built-in baseline "methods" made from the reference video itself, for sanity rows in a leaderboard.

- ``reference``: an identical copy (every full-reference metric at its best value);
- ``static``: the first frame repeated (no motion at all; audio kept);
- ``frozen_mouth``: each frame with its mouth region replaced by the first face frame's mouth, aligned to
  the frame's head position from stable landmarks (eyes, nose, forehead) and feathered into it;
- ``shift:K``: the video unchanged, the audio delayed by K frames (K < 0 advances it): a sync metric must
  notice, a visual metric must not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

from pt_bench.video import BenchVideo

#: Bumped whenever a baseline's construction changes (part of the runner's cache keys).
BASELINE_VERSION = 1
#: The 16 kHz sample rate of ``BenchVideo.audio``.
AUDIO_SAMPLE_RATE = 16000
#: MediaPipe face-mesh indices of the outer lip contour (in order around the mouth).
MOUTH_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
#: Points that move with the head but not with speech: eye corners, nose bridge and tip, forehead, temples.
STABLE_POINTS = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 10, 151, 127, 356)

KINDS = ("reference", "static", "frozen_mouth", "shift")


@dataclass(frozen=True)
class BaselineSpec:
    """One baseline: its kind and, for ``shift``, the shift in frames."""

    kind: str
    frames: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown baseline {self.kind!r}; choose from reference, static, frozen_mouth, shift:K")

    @property
    def name(self) -> str:
        """The method name shown in leaderboards (``shift:5``, ``static`` ...)."""
        return f"shift:{self.frames}" if self.kind == "shift" else self.kind


def parse_baselines(spec: str | Iterable[str] | None) -> list[BaselineSpec]:
    """Parse ``"static,frozen_mouth,shift:5"`` (or a list of such items) into baseline specs."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[BaselineSpec] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        m = re.fullmatch(r"shift:([+-]?\d+)", item)
        if m:
            out.append(BaselineSpec("shift", int(m.group(1))))
        elif item.startswith("shift"):
            raise ValueError(f"baseline {item!r}: write the shift in frames as shift:K, e.g. shift:5")
        else:
            out.append(BaselineSpec(item))
    names = [b.name for b in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"baselines listed twice: {', '.join(dup)}")
    return out


def static_frames(frames: np.ndarray) -> np.ndarray:
    """The first frame repeated for every frame (same shape and dtype)."""
    f = np.asarray(frames)
    return np.repeat(f[:1], len(f), axis=0)


def shift_audio(audio: np.ndarray, frames: int, fps: float, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """``audio`` delayed by ``frames`` video frames (advanced when negative), zero-filled, same length."""
    a = np.asarray(audio)
    n = int(round(frames * sample_rate / fps))
    out = np.zeros_like(a)
    if n >= len(a) or -n >= len(a):
        return out
    if n > 0:
        out[n:] = a[:-n]
    elif n < 0:
        out[:n] = a[-n:]
    else:
        out[:] = a
    return out


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity (rotation, uniform scale, translation) taking ``src`` points to ``dst``."""
    s, d = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = s.mean(0), d.mean(0)
    sc, dc = s - ms, d - md
    var = (sc ** 2).sum()
    if var <= 0:
        raise ValueError("similarity_transform: source points are all identical")
    # complex-number form of the 2-D Procrustes solution: dst ~ z * src, z = a + ib
    a = (sc[:, 0] * dc[:, 0] + sc[:, 1] * dc[:, 1]).sum() / var
    b = (sc[:, 0] * dc[:, 1] - sc[:, 1] * dc[:, 0]).sum() / var
    lin = np.array([[a, -b], [b, a]])
    return np.concatenate([lin, (md - lin @ ms)[:, None]], axis=1)


def mouth_mask(points: np.ndarray, shape: tuple[int, int], *, margin: float = 0.35, feather: float = 0.06
               ) -> np.ndarray:
    """(H, W) float32 weights in [0, 1]: the convex hull of ``points`` grown by ``margin`` about its centre,
    blurred with a Gaussian of ``feather`` x the hull's width (1 over the hull itself, 0 far from it)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    centre = p.mean(0)
    grown = centre + (p - centre) * (1 + margin)
    mask = np.zeros(shape, np.float32)
    hull = cv2.convexHull(np.round(grown * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
    width = max(float(np.ptp(p[:, 0])), 1.0)
    sigma = max(feather * width, 0.5)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def freeze_mouth(frames: np.ndarray, landmarks: np.ndarray, *, margin: float = 0.35, feather: float = 0.06
                 ) -> np.ndarray:
    """Frames whose mouth region is the first face frame's mouth, moved with the head and feathered in.

    ``frames`` (T, H, W, 3) uint8, ``landmarks`` (T, 478, 2) pixels with NaN where no face. The source frame
    is warped onto frame t by the similarity fitted on :data:`STABLE_POINTS`, and blended with the feathered
    union of both frames' mouth hulls. Frames without a face are returned unchanged.
    """
    f = np.asarray(frames)
    lm = np.asarray(landmarks, np.float64)
    if len(lm) != len(f):
        raise ValueError(f"freeze_mouth: {len(f)} frames but {len(lm)} landmark frames")
    has_face = np.isfinite(lm).all(axis=(1, 2))
    out = f.copy()
    if not has_face.any():
        return out
    s = int(np.argmax(has_face))
    src_frame, src_lm = f[s].astype(np.float32), lm[s]
    h, w = f.shape[1:3]
    for t in np.flatnonzero(has_face):
        m = similarity_transform(src_lm[list(STABLE_POINTS)], lm[t][list(STABLE_POINTS)])
        warped = cv2.warpAffine(src_frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        src_mouth = src_lm[list(MOUTH_OUTER)] @ m[:, :2].T + m[:, 2]
        weight = mouth_mask(np.concatenate([lm[t][list(MOUTH_OUTER)], src_mouth]), (h, w), margin=margin,
                            feather=feather)[..., None]
        blended = weight * warped + (1 - weight) * f[t].astype(np.float32)
        out[t] = np.clip(np.round(blended), 0, 255).astype(f.dtype)
    return out


def make_baseline(spec: BaselineSpec, ref: BenchVideo) -> BenchVideo:
    """The baseline video of ``spec`` built from the reference ``ref`` (same name, fps, length and audio
    unless the baseline changes it); a new object without a path and with an empty memo."""
    if spec.kind == "reference":
        return ref.with_frames(ref.frames)
    if spec.kind == "static":
        return ref.with_frames(static_frames(ref.frames))
    if spec.kind == "frozen_mouth":
        return ref.with_frames(freeze_mouth(ref.frames, ref.landmarks()))
    if ref.audio is None:
        raise ValueError(f"baseline {spec.name}: reference video {ref.name!r} has no audio track to shift")
    return ref.with_audio(shift_audio(ref.audio, spec.frames, ref.fps))

