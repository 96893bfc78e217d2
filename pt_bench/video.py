"""The benchmark's view of one video: full frames, frame rate, 16 kHz audio, and lazily computed landmarks.

A :class:`BenchVideo` holds the decoded RGB frames of a file at the file's own frame rate (or at a rate the
caller asks for), its audio as 16 kHz mono float32, and a per-object memo of what metrics derive from it
(landmarks, face crops, embeddings), so that several metrics scoring the same pair compute each only once.
The frames are made read-only on construction: a memo is valid only while the pixels do not change.

Face crops for the metrics use the REFERENCE video's crop transform (:func:`face_crop_transforms`) for both
the generated and the reference video, so that both are compared in the same 256x256 coordinates.

Landmarks are MediaPipe's face mesh (478 points) in IMAGE mode (``static_image_mode=True``): every frame is
detected on its own, so the result depends only on that frame's pixels. In VIDEO (tracking) mode the
landmarks of a frame depend on the frames before it (measured: up to 11 px apart when the same 20 frames are
fed in reverse order), which would make a video compared with itself score a non-zero landmark distance.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from pt_data.audio import pcm16_to_float
from pt_data.crop import CropConfig, crop_frame, crop_transforms
from pt_data.landmarks import FaceMeshConfig, detect_video_landmarks
from pt_data.shard_schema import CROP_SIZE, NUM_LANDMARKS, SAMPLE_RATE
from pt_data.video_io import MediaError, probe_video

T = TypeVar("T")

#: MediaPipe settings for every benchmark landmark: per-frame detection (deterministic), up to two faces
#: (the largest is kept), iris refinement on (478 points).
LANDMARK_CONFIG = FaceMeshConfig(max_num_faces=2, refine_landmarks=True, video=False)
_LANDMARKS_KEY = "landmarks"


class NoFaceError(ValueError):
    """No face was found in any frame of a video that a metric needs a face in."""


@dataclass(eq=False)
class BenchVideo:
    """One decoded video for scoring.

    ``frames``: ``(T, H, W, 3)`` uint8 RGB full frames at ``fps``; ``audio``: 16 kHz mono float32 in
    [-1, 1] whose sample 0 is the instant of frame 0, or ``None`` when the file has no audio track.
    Treat instances as immutable; use :meth:`with_frames` / :meth:`with_audio` to derive modified copies
    (they start with an empty memo).
    """

    name: str
    path: Path | None
    frames: np.ndarray
    fps: float
    audio: np.ndarray | None = None
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ValueError(f"{self.name}: frames must be a non-empty (T, H, W, 3) uint8 RGB array, "
                             f"got {frames.dtype} {frames.shape}")
        if not self.fps > 0:
            raise ValueError(f"{self.name}: fps must be positive, got {self.fps}")
        frames.flags.writeable = False
        self.frames = frames
        if self.audio is not None:
            audio = np.asarray(self.audio, dtype=np.float32)
            if audio.ndim != 1:
                raise ValueError(f"{self.name}: audio must be mono 1-D 16 kHz samples, got shape {audio.shape}")
            audio.flags.writeable = False
            self.audio = audio
        if self.path is not None:
            self.path = Path(self.path)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per ``key`` for this object (landmarks, crops, per-video embeddings)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def landmarks(self) -> np.ndarray:
        """``(T, 478, 2)`` float32 MediaPipe points in full-frame pixels, NaN where no face; computed once."""
        return self.memo(_LANDMARKS_KEY, self._detect_landmarks)

    def cached_landmarks(self) -> np.ndarray | None:
        """The landmarks if already computed or given (:meth:`set_landmarks`), else None; never detects."""
        return self._memo.get(_LANDMARKS_KEY)

    def set_landmarks(self, landmarks: np.ndarray) -> None:
        """Give the video landmarks computed earlier for the same frames (a disk cache, an identical copy)."""
        lm = np.array(landmarks, dtype=np.float32)
        if lm.shape != (self.num_frames, NUM_LANDMARKS, 2):
            raise ValueError(f"{self.name}: landmarks must be ({self.num_frames}, {NUM_LANDMARKS}, 2), got {lm.shape}")
        lm.flags.writeable = False
        self._memo[_LANDMARKS_KEY] = lm

    def _detect_landmarks(self) -> np.ndarray:
        from tqdm import tqdm

        frames = tqdm(self.frames, desc=f"landmarks {self.name}", unit="frame", leave=False,
                      disable=None if self.num_frames > 100 else True)
        lms, _ = detect_video_landmarks(frames, LANDMARK_CONFIG)
        if lms.shape != (self.num_frames, NUM_LANDMARKS, 2):
            raise RuntimeError(f"{self.name}: unexpected landmark array {lms.shape}")
        lms.flags.writeable = False
        return lms

    def audio_pcm16(self) -> np.ndarray:
        """The audio as int16 samples (exact inverse of :func:`pt_data.audio.pcm16_to_float`)."""
        if self.audio is None:
            raise ValueError(f"{self.name}: the video has no audio track")
        return np.clip(np.round(self.audio.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)

    def with_frames(self, frames: np.ndarray, *, name: str | None = None) -> "BenchVideo":
        """A copy with other frames (same fps and audio), e.g. a degraded version; no path, empty memo."""
        return replace(self, frames=frames, name=name or self.name, path=None)

    def with_audio(self, audio: np.ndarray | None, *, name: str | None = None) -> "BenchVideo":
        """A copy with another soundtrack (16 kHz mono float32), e.g. shifted audio; empty memo."""
        return replace(self, audio=audio, name=name or self.name, path=None)


def load_bench_video(path: str | Path, *, max_frames: int | None = None, resample_fps: float | None = None
                     ) -> BenchVideo:
    """Decode a video file for scoring.

    Frames are every decoded frame in presentation order at the container's average frame rate, unless
    ``resample_fps`` is given: then frames are resampled by timestamp to that constant rate
    (:func:`pt_data.decode.iter_frames_at_fps`, nearest frame). Audio is the first audio track downmixed to
    mono, resampled to 16 kHz and aligned so that sample 0 is the first frame's instant; ``None`` when the
    file has no audio. ``max_frames`` keeps the first frames only (and the audio under them).
    Raises :class:`pt_data.video_io.MediaError` for unreadable files.
    """
    from pt_data.decode import iter_frames_at_fps, read_audio_aligned
    from pt_data.video_io import iter_video_frames

    path = Path(path)
    info = probe_video(str(path))
    if resample_fps is not None:
        fps = float(resample_fps)
        frames = [f for _, f in iter_frames_at_fps(str(path), fps, max_frames=max_frames)]  # type: ignore[arg-type]
    else:
        fps = info.fps
        frames = [f for _, f in islice(iter_video_frames(str(path)), max_frames)]
    if not frames:
        raise MediaError(f"{path}: no decodable video frame")
    if not fps > 0:
        raise MediaError(f"{path}: the container states no frame rate; pass resample_fps=25")
    audio = None
    if info.has_audio:
        pcm = read_audio_aligned(str(path), sample_rate=SAMPLE_RATE)
        if max_frames is not None:
            pcm = pcm[:int(round(len(frames) / fps * SAMPLE_RATE))]
        audio = pcm16_to_float(pcm)
    return BenchVideo(name=path.stem, path=path, frames=np.stack(frames), fps=fps, audio=audio)


def _fill_missing(landmarks: np.ndarray, name: str) -> np.ndarray:
    """Landmarks with NaN frames replaced by the nearest frame that has a face."""
    valid = ~np.isnan(landmarks).any(axis=(1, 2))
    if not valid.any():
        raise NoFaceError(f"{name}: MediaPipe found no face in any of its {len(landmarks)} frames")
    if valid.all():
        return landmarks
    idx = np.flatnonzero(valid)
    nearest = idx[np.abs(np.arange(len(landmarks))[:, None] - idx[None, :]).argmin(axis=1)]
    return landmarks[nearest]


def face_crop_transforms(ref: BenchVideo, config: CropConfig | None = None) -> np.ndarray:
    """``(T, 2, 3)`` float32 affines (full-frame pixels -> 256x256 crop pixels) from the REFERENCE's landmarks.

    :func:`pt_data.crop.crop_transforms` (FFHQ-style framing, smoothed over time with sigma 3 frames); frames
    without a face take the nearest detected frame's landmarks. Raises :class:`NoFaceError` when no frame
    has a face.
    """
    cfg = config or CropConfig()
    key = f"crop_transforms:{cfg.size}:{cfg.scale}:{cfg.smooth_sigma}"
    return ref.memo(key, lambda: crop_transforms(_fill_missing(ref.landmarks(), ref.name), cfg))


def face_crops(video: BenchVideo, affines: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """``(T', size, size, 3)`` uint8 crops of ``video`` warped by ``affines``, ``T' = min(T, len(affines))``.

    Pass the reference's :func:`face_crop_transforms` for both videos of a pair. Memoised per affine set.
    """
    affines = np.ascontiguousarray(affines, dtype=np.float32)
    if affines.ndim != 3 or affines.shape[1:] != (2, 3):
        raise ValueError(f"affines must be (T, 2, 3), got {affines.shape}")
    n = min(video.num_frames, len(affines))
    key = f"face_crops:{size}:{hashlib.sha1(affines[:n].tobytes()).hexdigest()}"

    def compute() -> np.ndarray:
        out = np.stack([crop_frame(video.frames[i], affines[i], size) for i in range(n)])
        out.flags.writeable = False
        return out

    return video.memo(key, compute)
