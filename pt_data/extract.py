"""Clip extraction from one video: decode once, face mesh per frame, face tracks, stable crops, audio.

This is the per-video block that the curation pipeline runs (no Ray inside). One pass over the video:

1. frames at a constant 25 fps (optionally a window of the source), audio at 16 kHz aligned to frame 0;
2. MediaPipe face mesh per frame; faces outside the source's face box (when the corpus gives one) are
   ignored; a frame is usable when it has one big-enough face and audio under it;
3. a streaming :class:`~pt_data.tracks.TrackBuilder` cuts usable frames into clips (scene cuts, jumps and
   bad frames break tracks);
4. while a track is open, each usable frame is kept only as a *loose* crop around the face (a square
   ``loose_margin`` times wider than the final crop, ``loose_size`` pixels), so memory is bounded by the
   track length, not by the frame size; when a clip is final its smoothed 256x256 transforms are computed
   from the whole clip's landmarks and the crops are cut from the loose crops (one resampling of the
   source pixels each, the second being a near-identity), then JPEG-encoded.

Unusable input raises :class:`ExtractionError` (with the stage that failed); a video that decodes but
yields no clip returns an empty result whose ``unused`` counts say why.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterable

import cv2
import numpy as np

from pt_data.audio import audio_for_frames
from pt_data.clip import Clip
from pt_data.crop import (CropConfig, apply_affine_points, compose_affines, crop_frame, crop_transforms,
                          frame_similarity_params, invert_affines, similarity_affines)
from pt_data.decode import first_video_time, iter_frames_at_fps, read_audio_aligned
from pt_data.jpeg import encode_jpeg
from pt_data.landmarks import FaceMeshConfig, FaceMeshDetector
from pt_data.shard_schema import FPS, SAMPLES_PER_FRAME
from pt_data.tracks import TrackBuilder, TrackConfig, frame_histogram
from pt_data.video_io import MediaError, probe_video


class ExtractionError(Exception):
    """A video cannot be curated at all; ``stage`` says where it failed ("probe", "audio", "decode")."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage, self.reason = stage, reason


@dataclass
class ExtractConfig:
    """Everything that decides which clips a video yields and how they look."""

    track: TrackConfig = field(default_factory=TrackConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    mesh: FaceMeshConfig = field(default_factory=FaceMeshConfig)
    jpeg_quality: int = 95
    loose_size: int = 448  # pixels of the loose crop kept per frame while a track is open
    loose_margin: float = 1.6  # loose crop side / final crop side (room for the temporal smoothing)


@dataclass
class ClipSource:
    """Where clips come from and how they are named (a source item, seen from pt_data)."""

    path: str  # a local file PyAV can open
    item_id: str  # clip ids are ``{item_id}/{start:06d}-{end:06d}`` (frames from the window start)
    dataset: str
    speaker_id: str
    source_uri: str
    start_s: float | None = None
    end_s: float | None = None
    box: tuple[float, float, float, float] | None = None  # face box hint, fractions of width/height


@dataclass
class ExtractResult:
    """The clips of one video and what happened to the rest of it."""

    clips: list[Clip]
    frames_decoded: int
    unused: dict[str, int]  # frame counts by reason ("no face", "several faces", "no audio", ...)
    timings: dict[str, float]  # seconds per step: decode, landmarks, crop, encode, audio
    warnings: list[str] = field(default_factory=list)
    num_skipped: int = 0  # clips found but not built because the caller already has them

    def reason_if_empty(self) -> str:
        """A one-line reason why no clip came out, main cause first (for the rejects table)."""
        ranked = sorted(self.unused.items(), key=lambda kv: -kv[1])
        if not ranked:
            return f"no usable face track: video too short ({self.frames_decoded} frames)"
        detail = ", ".join(f"{k} {v}" for k, v in ranked)
        return f"no usable face track: {ranked[0][0]} ({detail} of {self.frames_decoded} frames)"


def clip_id_for(item_id: str, start: int, end: int) -> str:
    """The stable id of the clip of frames ``[start, end)`` of an item."""
    return f"{item_id}/{start:06d}-{end:06d}"


def _in_box(face: np.ndarray, box: tuple[float, float, float, float] | None, w: int, h: int) -> bool:
    if box is None:
        return True
    cx, cy = face[:, 0].mean() / w, face[:, 1].mean() / h
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


class ClipExtractor:
    """Holds one MediaPipe face mesh; :meth:`extract` turns a video into clips. Not thread-safe."""

    def __init__(self, config: ExtractConfig | None = None) -> None:
        self.config = config or ExtractConfig()
        self._mesh = FaceMeshDetector(self.config.mesh)

    def close(self) -> None:
        self._mesh.close()

    def extract(self, src: ClipSource, skip_clip_ids: Iterable[str] = ()) -> ExtractResult:
        """All clips of ``src`` except those in ``skip_clip_ids`` (already stored by an earlier run)."""
        cfg = self.config
        skip = set(skip_clip_ids)
        timings = {k: 0.0 for k in ("probe", "audio", "decode", "landmarks", "crop", "encode")}
        t = time.perf_counter()
        if os.path.exists(src.path) and os.path.getsize(src.path) == 0:
            raise ExtractionError("probe", f"{src.source_uri}: empty file (0 bytes)")
        try:
            info = probe_video(src.path)
            v0 = first_video_time(src.path)
        except MediaError as e:
            raise ExtractionError("probe", str(e)) from e
        if not info.has_audio:
            raise ExtractionError("audio", f"{src.source_uri}: the video has no audio track")
        timings["probe"] = time.perf_counter() - t
        t = time.perf_counter()
        try:
            audio = read_audio_aligned(src.path, video_start_s=v0 + (src.start_s or 0.0))
        except MediaError as e:
            raise ExtractionError("audio", str(e)) from e
        timings["audio"] = time.perf_counter() - t
        audio_frames = len(audio) // SAMPLES_PER_FRAME

        self._mesh.reset()
        tracks = TrackBuilder(cfg.track)
        kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # frame -> loose crop, its affine, lms
        clips: list[Clip] = []
        warnings: list[str] = []
        n, skipped = 0, 0

        def finalize(segments: list[tuple[int, int]]) -> None:
            nonlocal skipped
            for s, e in segments:
                cid = clip_id_for(src.item_id, s, e)
                if cid in skip:
                    skipped += 1
                else:
                    clips.append(self._make_clip(src, cid, s, e, kept, audio, timings))
            if tracks.start is None:
                kept.clear()
            else:
                for k in [k for k in kept if k < tracks.start]:
                    del kept[k]

        frames = iter_frames_at_fps(src.path, start_s=src.start_s, end_s=src.end_s)
        while True:
            t = time.perf_counter()
            try:
                k, rgb = next(frames)
            except StopIteration:
                timings["decode"] += time.perf_counter() - t
                break
            except MediaError as e:
                timings["decode"] += time.perf_counter() - t
                if n == 0:
                    raise ExtractionError("decode", str(e)) from e
                warnings.append(f"decoding stopped after {n} frames: {e}")
                break
            timings["decode"] += time.perf_counter() - t
            n += 1
            t = time.perf_counter()
            h, w = rgb.shape[:2]
            faces = [f for f in self._mesh.detect(rgb) if _in_box(f, src.box, w, h)]
            heights = [float(np.ptp(f[:, 1])) for f in faces]
            big = faces[int(np.argmax(heights))][:, :2] if faces else None
            hist = frame_histogram(rgb)
            timings["landmarks"] += time.perf_counter() - t
            status = "no audio" if k >= audio_frames else None
            segments = tracks.push(heights, None if big is None else big.mean(0), hist, status)
            if tracks.start is not None and big is not None and status is None:
                t = time.perf_counter()
                kept[k] = self._loose_crop(rgb, big)
                timings["crop"] += time.perf_counter() - t
            finalize(segments)
        finalize(tracks.finish())
        return ExtractResult(clips, n, dict(tracks.unused), timings, warnings, skipped)

    def _loose_crop(self, rgb: np.ndarray, lms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.config
        p = frame_similarity_params(lms[None])
        affine = similarity_affines(p[:, :2], p[:, 2] * cfg.crop.scale * cfg.loose_margin, p[:, 3],
                                    cfg.loose_size)[0]
        loose = cv2.warpAffine(rgb, affine.astype(np.float64), (cfg.loose_size, cfg.loose_size),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return loose, affine, lms.astype(np.float32)

    def _make_clip(self, src: ClipSource, clip_id: str, s: int, e: int,
                   kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], audio: np.ndarray,
                   timings: dict[str, float]) -> Clip:
        cfg = self.config
        t = time.perf_counter()
        lms = np.stack([kept[k][2] for k in range(s, e)])
        affines = crop_transforms(lms, cfg.crop)
        crops = [crop_frame(kept[k][0], compose_affines(affines[k - s], invert_affines(kept[k][1])), cfg.crop.size)
                 for k in range(s, e)]
        timings["crop"] += time.perf_counter() - t
        t = time.perf_counter()
        jpegs = [encode_jpeg(c, cfg.jpeg_quality) for c in crops]
        timings["encode"] += time.perf_counter() - t
        offset = src.start_s or 0.0
        return Clip(
            clip_id=clip_id, dataset=src.dataset, speaker_id=src.speaker_id, source_uri=src.source_uri,
            start_s=offset + s / FPS, end_s=offset + e / FPS, frames=jpegs,
            audio=audio_for_frames(audio, s, e - s), crop_affine=affines,
            landmarks=apply_affine_points(affines, lms),
        )
