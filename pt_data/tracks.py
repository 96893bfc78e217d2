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


def face_status(heights: list[float], cfg: TrackConfig) -> str:
    """"ok" or why a frame with faces of these heights is unusable ("no face", "face too small", ...)."""
    if not heights:
        return "no face"
    big = max(heights)
    if big < cfg.min_face_px:
        return "face too small"
    if sum(h >= cfg.second_face_ratio * big for h in heights) > 1:
        return "several faces"
    return "ok"


def frame_status(ev: FrameEvidence, cfg: TrackConfig) -> list[str]:
    """Per frame: "ok" or why the frame is unusable ("no face", "face too small", "several faces")."""
    return [face_status(hs, cfg) for hs in ev.face_heights]


class TrackBuilder:
    """Streaming face tracks: push one frame at a time, get clip segments ``[start, end)`` once they are final.

    A track breaks at an unusable frame, a jump of the face centre or a scene cut. A finished track is cut
    into ``ceil(len / max)`` equal clips (tracks shorter than the minimum are dropped and counted). A track
    that keeps going emits a ``max``-long clip whenever it reaches twice that length, so memory stays bounded
    on long videos while every track of at most ``2 * max`` frames is cut exactly as the batch rule says.
    """

    def __init__(self, cfg: TrackConfig | None = None, fps: int = FPS) -> None:
        self.cfg = cfg or TrackConfig()
        self.lo = int(round(self.cfg.min_clip_s * fps))
        self.hi = int(round(self.cfg.max_clip_s * fps))
        self.start: int | None = None  # first frame of the open track
        self.num_frames = 0
        self.unused: dict[str, int] = {}
        self._prev: tuple[np.ndarray, np.ndarray] | None = None  # centre and histogram of the last frame

    def _count(self, reason: str, n: int = 1) -> None:
        self.unused[reason] = self.unused.get(reason, 0) + n

    def _close(self, end: int) -> list[tuple[int, int]]:
        a, self.start = self.start, None
        if a is None:
            return []
        length = end - a
        if length < self.lo:
            self._count("track shorter than min clip", length)
            return []
        edges = np.linspace(a, end, int(np.ceil(length / self.hi)) + 1).round().astype(int)
        return [(int(s), int(e)) for s, e in zip(edges[:-1], edges[1:])]

    def push(self, heights: list[float], centre: np.ndarray | None, histogram: np.ndarray,
             status: str | None = None) -> list[tuple[int, int]]:
        """Add the next frame (face heights, centre of the largest face, colour histogram).

        ``status`` overrides the face-based verdict when the caller knows the frame is unusable for another
        reason (e.g. "no audio"). Returns the clips that became final with this frame.
        """
        i = self.num_frames
        self.num_frames += 1
        status = status or face_status(heights, self.cfg)
        ok = status == "ok"
        out: list[tuple[int, int]] = []
        if ok and self.start is not None and self._prev is not None:
            jump = np.linalg.norm(centre - self._prev[0]) / max(max(heights), 1e-6)
            corr = cv2.compareHist(self._prev[1], histogram, cv2.HISTCMP_CORREL)
            if jump > self.cfg.max_jump or corr < self.cfg.scene_cut_threshold:
                out += self._close(i)
        elif not ok:
            out += self._close(i)
            self._count(status)
        if ok and self.start is None:
            self.start = i
        if self.start is not None and i + 1 - self.start >= 2 * self.hi:
            out.append((self.start, self.start + self.hi))
            self.start += self.hi
        self._prev = (centre, histogram) if ok else None
        return out

    def finish(self) -> list[tuple[int, int]]:
        """Close the open track at the end of the video; returns its clips."""
        return self._close(self.num_frames)


def segment_clips(ev: FrameEvidence, cfg: TrackConfig | None = None, fps: int = FPS) -> Segmentation:
    """Cut the usable frames into tracks (breaks at bad frames, jumps and scene cuts), then into clips."""
    tb = TrackBuilder(cfg, fps)
    clips = []
    for hs, c, h in zip(ev.face_heights, ev.centres, ev.histograms):
        clips += tb.push(hs, c, h)
    clips += tb.finish()
    return Segmentation(clips, tb.unused)
