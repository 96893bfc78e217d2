"""Settings of the hybrid 3DMM fit (torch-free, so configs and CLIs can hold them without loading torch)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from pt_data.shard_schema import CROP_SIZE

#: Focal length in pixels of the 256-pixel crop (Deep3DFaceRecon's 1015 at 224, scaled): a ~12.6 degree view.
FOCAL_PX = 1015.0 * CROP_SIZE / 224.0
CENTER_PX = CROP_SIZE / 2.0
#: The pose and camera convention of the shards' ``pose`` column (recorded in manifests); see pt_data.camera.
CAMERA_CONVENTION = {
    "pose": "axis-angle rotation (3, radians) + translation (3, mm); Xc = R X + t; camera at 0 looking along -z",
    "projection": f"u = cx + f*Xc/d, v = cy - f*Yc/d, d = -Zc; f = {FOCAL_PX:.4f} px, cx = cy = {CENTER_PX}",
    "image_size": CROP_SIZE,
    "units": "mm",
    "model_frame": "x to the subject's left, y up, z towards the camera",
}


@dataclass
class FitConfig:
    """Settings of :func:`fit_clips` (defaults tuned on the synthetic accuracy benchmark)."""

    iterations: int = 100
    lr_shape: float = 0.05
    lr_expression: float = 0.02
    lr_rotation: float = 0.004
    lr_translation: float = 2.0
    w_landmark: float = 1.0
    w_motion: float = 1.0
    lambda_lap: float = 0.2  # PAPER.md eq. (1)
    w_shape_reg: float = 0.05
    w_expression_reg: float = 0.5
    w_pose_reg: float = 0.02
    init_shape_ridge: float = 30.0  # ridge of the closed-form identity solve (pixels^2 per coefficient)
    init_expression_ridge: float = 3.0
    temporal: bool = True  # eq. (1) terms
    regularise: bool = True  # eq. (2) terms
    optimise: bool = True  # False: initialisation only
    device: str = "cpu"

    def to_dict(self) -> dict:
        """A JSON-able copy."""
        return asdict(self)
