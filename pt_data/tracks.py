"""Face tracks and clips: runs of frames with one usable face, split at scene cuts and track breaks.

Input is per-frame evidence (faces found, landmarks of the largest face, a small thumbnail for scene cuts);
output is a list of clip segments ``[start, end)`` of configurable length (default 2-10 s at 25 fps) and the
reasons why the other frames were not used, so that a rejected video can say why.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pt_data.shard_schema import FPS


@dataclass
class TrackConfig:
    """What makes a usable face track and how it is cut into clips."""

    min_face_px: float = 64.0  # face height (landmark extent) in source pixels
    second_face_ratio: float = 0.5  # a second face this large (relative height) makes the frame ambiguous
    max_jump: float = 0.25  # centre motion between frames, as a fraction of face height: more = track break
    scene_cut_threshold: float = 0.5  # histogram correlation below this between frames = scene cut
    min_clip_s: float = 2.0
    max_clip_s: float = 10.0


@dataclass
class FrameEvidence:
    """Per-frame inputs of the tracker, filled while decoding."""

    face_heights: list[list[float]] = field(default_factory=list)  # heights of every face found
    centres: list[np.ndarray | None] = field(default_factory=list)  # centre of the largest face
    histograms: list[np.ndarray] = field(default_factory=list)

    def add(self, frame: np.ndarray, faces: list[np.ndarray]) -> None:
        """Record one frame and the (N, >=2) landmark arrays of the faces found in it."""
        heights = [float(np.ptp(f[:, 1])) for f in faces]
        self.face_heights.append(heights)
        self.centres.append(faces[int(np.argmax(heights))][:, :2].mean(0) if faces else None)
        self.histograms.append(frame_histogram(frame))


def frame_histogram(frame: np.ndarray) -> np.ndarray:
    """A normalised 3D colour histogram of a downscaled frame (for scene-cut detection)."""
    small = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
    h = cv2.calcHist([small], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
    return (h / max(h.sum(), 1)).astype(np.float32)


@dataclass
class Segmentation:
    """Clip segments and the frame counts that were not used, by reason."""

    clips: list[tuple[int, int]]
    unused: dict[str, int]


def frame_status(ev: FrameEvidence, cfg: TrackConfig) -> list[str]:
    """Per frame: "ok" or why the frame is unusable ("no face", "face too small", "several faces")."""
    out = []
    for hs in ev.face_heights:
        if not hs:
            out.append("no face")
            continue
        big = max(hs)
        if big < cfg.min_face_px:
            out.append("face too small")
        elif sum(h >= cfg.second_face_ratio * big for h in hs) > 1:
            out.append("several faces")
        else:
            out.append("ok")
    return out


def segment_clips(ev: FrameEvidence, cfg: TrackConfig | None = None, fps: int = FPS) -> Segmentation:
    """Cut the usable frames into tracks (breaks at bad frames, jumps and scene cuts), then into clips."""
    cfg = cfg or TrackConfig()
    status = frame_status(ev, cfg)
    n = len(status)
    unused: dict[str, int] = {}
    tracks, start = [], None
    for i in range(n + 1):
        ok = i < n and status[i] == "ok"
        brk = False
        if ok and start is not None:
            jump = np.linalg.norm(ev.centres[i] - ev.centres[i - 1]) / max(max(ev.face_heights[i]), 1e-6)
            corr = cv2.compareHist(ev.histograms[i - 1], ev.histograms[i], cv2.HISTCMP_CORREL)
            brk = jump > cfg.max_jump or corr < cfg.scene_cut_threshold
        if start is not None and (not ok or brk):
            tracks.append((start, i))
            start = None
        if ok and start is None:
            start = i
        if i < n and not ok:
            unused[status[i]] = unused.get(status[i], 0) + 1
    lo, hi = int(round(cfg.min_clip_s * fps)), int(round(cfg.max_clip_s * fps))
    clips = []
    for a, b in tracks:
        length = b - a
        if length < lo:
            unused["track shorter than min clip"] = unused.get("track shorter than min clip", 0) + length
            continue
        pieces = int(np.ceil(length / hi))
        edges = np.linspace(a, b, pieces + 1).round().astype(int)
        clips += [(int(s), int(e)) for s, e in zip(edges[:-1], edges[1:])]
    return Segmentation(clips, unused)
