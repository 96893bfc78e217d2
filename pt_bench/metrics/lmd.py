"""LMD: lip landmark distance between a generated video and its reference, from MediaPipe's face mesh.

Pinned protocol (DESIGN: "the toolkit must pin detector, subset, alignment, resolution, normalisation"):

- detector: MediaPipe face mesh 0.10.21 (478 points), IMAGE mode on each full frame (deterministic: the
  reference scored against itself gives exactly 0), the largest face per frame;
- subset: the 40 points of MediaPipe's ``FACEMESH_LIPS`` contours (outer 20 + inner 20), :data:`LIP_POINTS`;
- alignment / resolution: both videos' points are mapped into the REFERENCE's 256x256 face crop by its crop
  affine (:func:`pt_bench.video.face_crop_transforms`), so distances are in pixels of a 256-pixel face
  crop whatever the source resolution; then each frame's 40 points are centred on their own mean (removes the
  crop's residual translation, keeps mouth shape and size);
- value: per frame, the mean over the 40 points of the Euclidean distance; then the mean over frames where
  both videos have a face (the count is reported as the extra column ``lmd_frames``).
"""
from __future__ import annotations

import numpy as np

from pt_data.crop import apply_affine_points

from pt_bench.metrics.base import Metric, MetricResult, paired_length
from pt_bench.video import BenchVideo, NoFaceError, face_crop_transforms

#: MediaPipe face-mesh indices of the lip contours (the vertices of ``FACEMESH_LIPS``), sorted.
LIP_POINTS: tuple[int, ...] = (
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181,
    185, 191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415,
)


def lip_distance_frames(pred_landmarks: np.ndarray, ref_landmarks: np.ndarray, affines: np.ndarray, *,
                        center: bool = True, points: tuple[int, ...] = LIP_POINTS) -> np.ndarray:
    """Per-frame lip landmark distance ``(T,)`` in crop pixels; NaN where either frame has no face.

    ``pred_landmarks`` / ``ref_landmarks``: ``(T, 478, 2)`` full-frame pixels; ``affines``: ``(T, 2, 3)``
    the reference's crop transforms (applied to both). ``center`` subtracts each frame's lip centroid.
    """
    n = min(len(pred_landmarks), len(ref_landmarks), len(affines))
    idx = list(points)
    p = apply_affine_points(affines[:n], np.asarray(pred_landmarks[:n, idx], np.float64)).astype(np.float64)
    r = apply_affine_points(affines[:n], np.asarray(ref_landmarks[:n, idx], np.float64)).astype(np.float64)
    if center:
        p = p - p.mean(axis=1, keepdims=True)
        r = r - r.mean(axis=1, keepdims=True)
    return np.linalg.norm(p - r, axis=-1).mean(axis=1)


class LMD(Metric):
    name = "lmd"
    higher_is_better = False
    region = "lip landmarks in the reference's 256x256 face crop"
    weights = ("mediapipe-face-mesh",)
    extra_columns = ("lmd_frames",)

    def __init__(self, *, center: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)  # MediaPipe's models ship in its wheel: always real
        self.center = center
        self.protocol = ("LMD: mean Euclidean distance of MediaPipe's 40 lip-contour points (IMAGE mode, full "
                         "frames) mapped into the reference's 256x256 face crop"
                         + (", each frame centred on its lip centroid" if center else "")
                         + "; pixels at 256, mean over frames with a face in both")

    def evaluate(self, pred: BenchVideo, ref: BenchVideo) -> MetricResult:
        n = paired_length(pred, ref)
        d = lip_distance_frames(pred.landmarks()[:n], ref.landmarks()[:n], face_crop_transforms(ref)[:n],
                                center=self.center)
        valid = np.isfinite(d)
        if not valid.any():
            raise NoFaceError(f"LMD of {pred.name} vs {ref.name}: no frame has a face in both videos")
        return MetricResult(float(d[valid].mean()), {"lmd_frames": float(valid.sum())})
