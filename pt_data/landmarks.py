"""MediaPipe face mesh (0.10.21, ``refine_landmarks`` on: 478 points) per frame.

The face models ship inside the mediapipe wheel, so this runs offline. Coordinates are returned in
pixels of the image given (x right, y down); ``z`` is MediaPipe's relative depth scaled like x.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from pt_data.shard_schema import NUM_LANDMARKS

#: Inner-lip points used to measure mouth opening (upper, lower) and the mouth corners (left, right).
UPPER_INNER_LIP, LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT = 13, 14, 61, 291


@dataclass
class FaceMeshConfig:
    """Options of MediaPipe's face mesh; ``video=True`` tracks across frames (faster, smoother)."""

    max_num_faces: int = 2
    refine_landmarks: bool = True
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    video: bool = True


class FaceMeshDetector:
    """A MediaPipe face mesh held open for a stream of frames; use as a context manager."""

    def __init__(self, config: FaceMeshConfig | None = None) -> None:
        self.config = config or FaceMeshConfig()
        os.environ.setdefault("GLOG_minloglevel", "2")
        from mediapipe.python.solutions import face_mesh  # heavy import, done once per detector

        self._mesh = face_mesh.FaceMesh(
            static_image_mode=not self.config.video,
            max_num_faces=self.config.max_num_faces,
            refine_landmarks=self.config.refine_landmarks,
            min_detection_confidence=self.config.min_detection_confidence,
            min_tracking_confidence=self.config.min_tracking_confidence,
        )

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """All faces in one HxWx3 uint8 RGB frame: a list of (478, 3) float32 arrays in pixels."""
        h, w = rgb.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(rgb))
        scale = np.array([w, h, w], dtype=np.float32)
        return [landmark_list_to_array(f) * scale for f in res.multi_face_landmarks or []]

    def reset(self) -> None:
        """Forget the tracking state (call before each new video so results do not depend on the order)."""
        self._mesh.reset()

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceMeshDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_LANDMARK_RECORD = np.dtype([("tag", "u1"), ("len", "u1"), ("tx", "u1"), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"),
                             ("tz", "u1"), ("z", "<f4")])


def landmark_list_to_array(landmarks) -> np.ndarray:
    """(N, 3) float32 normalised coordinates of a MediaPipe ``NormalizedLandmarkList``.

    Fast path: the serialised message is a run of identical 17-byte records (field 1, length 15, then the
    x, y, z floats), read with one ``np.frombuffer``; any other layout falls back to per-point access.
    """
    buf = landmarks.SerializeToString()
    n = len(landmarks.landmark)
    if len(buf) == n * _LANDMARK_RECORD.itemsize:
        rec = np.frombuffer(buf, dtype=_LANDMARK_RECORD)
        if (np.all(rec["tag"] == 0x0A) and np.all(rec["len"] == 15) and np.all(rec["tx"] == 0x0D)
                and np.all(rec["ty"] == 0x15) and np.all(rec["tz"] == 0x1D)):
            return np.stack([rec["x"], rec["y"], rec["z"]], axis=1)
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float32)


def detect_video_landmarks(frames: Iterable[np.ndarray], config: FaceMeshConfig | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks of the largest face per frame and the number of faces per frame.

    Returns ``(landmarks (T, 478, 2) float32 with NaN where no face, faces_per_frame (T,) int)``.
    """
    lms, counts = [], []
    with FaceMeshDetector(config) as det:
        for rgb in frames:
            faces = det.detect(rgb)
            counts.append(len(faces))
            if faces:
                big = max(faces, key=lambda f: np.ptp(f[:, 0]) * np.ptp(f[:, 1]))
                lms.append(big[:, :2])
            else:
                lms.append(np.full((NUM_LANDMARKS, 2), np.nan, np.float32))
    return np.stack(lms).astype(np.float32), np.asarray(counts, dtype=np.int64)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap divided by mouth width, per frame, from (..., 478, 2) landmarks (scale-free)."""
    lm = np.asarray(landmarks)
    gap = np.linalg.norm(lm[..., LOWER_INNER_LIP, :] - lm[..., UPPER_INNER_LIP, :], axis=-1)
    width = np.linalg.norm(lm[..., MOUTH_RIGHT, :] - lm[..., MOUTH_LEFT, :], axis=-1)
    return gap / np.maximum(width, 1e-6)
