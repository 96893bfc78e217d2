"""The camera of the geometry: head pose (axis-angle + translation) and a fixed pinhole on the 256 crop.

Conventions (stored in shard manifests as :data:`CAMERA_CONVENTION`): model vertices are in millimetres,
x to the subject's left, y up, z towards the camera. A pose ``(rx, ry, rz, tx, ty, tz)`` maps them to the
camera frame, ``Xc = R(r) X + t``; the camera sits at the origin looking along -z (so ``tz`` is negative,
about -1 m for a face filling the crop). Pixels: ``u = cx + f Xc / d``, ``v = cy - f Yc / d`` with depth
``d = -Zc``, ``f`` = :data:`FOCAL_PX` and ``(cx, cy)`` the crop centre. Functions take torch tensors and
broadcast over leading dimensions.
"""
from __future__ import annotations

import torch

from pt_data.fit_config import CAMERA_CONVENTION, CENTER_PX, FOCAL_PX  # noqa: F401 - re-exported

def axis_angle_to_matrix(r: torch.Tensor) -> torch.Tensor:
    """Rodrigues: (..., 3) axis-angle -> (..., 3, 3) rotation matrices (smooth at zero)."""
    theta2 = (r * r).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-12)
    # sin(t)/t and (1-cos(t))/t^2 with Taylor series near zero
    small = theta2 < 1e-6
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = r.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*r.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand_as(k)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`axis_angle_to_matrix` for rotations below pi."""
    cos = ((m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2] - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)
    v = torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
    scale = torch.where(theta < 1e-4, 0.5 + theta ** 2 / 12, theta / (2 * torch.sin(theta)))
    return v * scale[..., None]


def to_camera(vertices: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Camera-frame vertices (..., V, 3) for model vertices (..., V, 3) and poses (..., 6)."""
    rot = axis_angle_to_matrix(pose[..., :3])
    return torch.einsum("...kj,...ij->...ki", vertices, rot) + pose[..., None, 3:]


def project(cam: torch.Tensor, focal: float = FOCAL_PX, center: float = CENTER_PX
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (..., V, 2) and depth (..., V) of camera-frame points (..., V, 3)."""
    depth = -cam[..., 2]
    inv = 1.0 / depth.clamp_min(1e-3)
    uv = torch.stack([center + focal * cam[..., 0] * inv, center - focal * cam[..., 1] * inv], -1)
    return uv, depth


def project_vertices(vertices: torch.Tensor, pose: torch.Tensor, focal: float = FOCAL_PX,
                     center: float = CENTER_PX) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`to_camera` then :func:`project`."""
    return project(to_camera(vertices, pose), focal, center)
