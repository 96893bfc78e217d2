"""Hybrid 3DMM fitting of whole clips: closed-form initialisation + one batched optimisation (PAPER.md eq. 1-2).

Input: MediaPipe's 478 face-mesh points per frame in 256-crop pixels (the shards' ``landmarks``), which are
the image projections of MediaPipe's learned 3D face mesh. Output per clip: one identity vector, expression
coefficients and a pose per frame (see :mod:`pt_data.camera` for the pose and camera convention).

1. **Initialisation** (closed form, per frame): an affine camera fitted by weighted least squares from the
   model's mean face (at the MediaPipe-corresponding vertices) to the points gives rotation (orthonormalised),
   scale and translation -- Procrustes under weak perspective; the scale becomes the depth of the face for
   the pinhole camera. Then identity (one per clip) and expressions (per frame) by regularised linear least
   squares under that camera, alternating twice, expressions clamped to the model's bounds, and the pose is
   re-solved on the deformed face.
2. **Optimisation** of all frames of all clips at once (frames of several clips are concatenated; temporal
   terms never cross a clip boundary), Adam with expression bounds enforced by projection, minimising
   - landmark reprojection: weighted mean squared pixel error of the projected corresponding vertices;
   - eq. (1), temporal: the frame-to-frame motion of the projected points matches the detected motion
     (L2 norm per point), plus ``lambda_lap`` (0.2) times the norms of the temporal Laplacians of expression
     and of pose (rotation in radians scaled by :data:`POSE_ROT_SCALE_MM` so that it is commensurate with
     the translation in mm);
   - eq. (2), regulariser: identity near the clip's initial identity, expressions and poses near their
     initialisation (L2 norms).
   :class:`FitConfig` switches the temporal and regulariser terms off for the per-frame ablation.

Quality figures per clip: ``landmark_error_px`` (mean point distance at 256 px over points with weight 1)
and ``jitter`` (mean norm of the second temporal difference of the posed face vertices, mm/frame^2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from pt_data.camera import CENTER_PX, FOCAL_PX, axis_angle_to_matrix, matrix_to_axis_angle, project_vertices
from pt_data.face_model import FaceModel
from pt_data.fit_config import FitConfig

POSE_ROT_SCALE_MM = 100.0  # 1 rad of rotation moves a point 100 mm from the head centre by ~100 mm


@dataclass
class FitResult:
    """The fit of one clip."""

    shape: np.ndarray  # (S,)
    expression: np.ndarray  # (T, E)
    pose: np.ndarray  # (T, 6)
    landmark_error_px: float
    jitter: float
    frame_error_px: np.ndarray  # (T,)


class _Batch:
    """Frames of several clips concatenated, with the index structures of the temporal terms."""

    def __init__(self, landmarks: Sequence[np.ndarray], model: FaceModel, cfg: FitConfig) -> None:
        dev, dt = torch.device(cfg.device), torch.float32
        self.lengths = [len(x) for x in landmarks]
        self.n = sum(self.lengths)
        lm = np.concatenate([np.asarray(x, np.float32).reshape(-1, model.mediapipe_ids.shape[0], 2)
                             for x in landmarks])
        valid = np.isfinite(lm).all(-1)  # (N, K)
        starts = np.cumsum([0] + self.lengths)
        for i, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
            lm[a:b] = _fill_missing(lm[a:b], i)
        self.points = torch.as_tensor(lm, device=dev, dtype=dt)  # missing frames bridged (weight 0 in the loss)
        w = model.mediapipe_weights[None, :] * valid
        self.weights = torch.as_tensor(w, device=dev, dtype=dt)  # (N, K), 0 where undetected
        self.init_weights = torch.as_tensor(model.mediapipe_weights, device=dev, dtype=dt).expand(self.n, -1)
        self.clip_of = torch.as_tensor(np.repeat(np.arange(len(landmarks)), self.lengths), device=dev)
        starts = starts[:-1]
        same_next = np.ones(self.n, bool)
        same_next[np.asarray(starts[1:], int) - 1] = False
        same_next[-1] = False
        self.pair = torch.as_tensor(same_next[:-1], device=dev, dtype=dt)  # t -> t+1 within a clip
        triple = same_next[:-2] & same_next[1:-1] if self.n > 2 else np.zeros(0, bool)
        self.triple = torch.as_tensor(triple, device=dev, dtype=dt)  # t-1, t, t+1 within a clip
        ids = torch.as_tensor(model.mediapipe_ids, device=dev, dtype=torch.long)
        self.mean = torch.as_tensor(model.mean, device=dev, dtype=dt)[ids]  # (K, 3)
        self.id_basis = torch.as_tensor(model.id_basis, device=dev, dtype=dt)[:, ids]  # (S, K, 3)
        self.exp_basis = torch.as_tensor(model.exp_basis, device=dev, dtype=dt)[:, ids]  # (E, K, 3)
        self.exp_lo = torch.as_tensor(model.exp_lower, device=dev, dtype=dt)
        self.exp_hi = torch.as_tensor(model.exp_upper, device=dev, dtype=dt)

    def vertices(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Corresponding vertices (N, K, 3) for per-clip shape (C, S) and per-frame expression (N, E)."""
        identity = torch.einsum("cs,skd->ckd", shape, self.id_basis)[self.clip_of]  # once per clip
        return self.mean + identity + torch.einsum("ne,ekd->nkd", expression, self.exp_basis)


def _fill_missing(lm: np.ndarray, clip: int) -> np.ndarray:
    """Frames without landmarks get the linear interpolation (or the nearest) of the detected ones."""
    ok = np.isfinite(lm).all(axis=(1, 2))
    if ok.all():
        return lm
    if not ok.any():
        raise ValueError(f"clip {clip}: no frame has landmarks")
    t = np.arange(len(lm))
    flat = lm.reshape(len(lm), -1)
    filled = np.stack([np.interp(t, t[ok], flat[ok, j]) for j in range(flat.shape[1])], 1)
    return filled.reshape(lm.shape).astype(np.float32)


# ------------------------------------------------------------------------------------------ initialisation
def _affine_pose(points3d: torch.Tensor, points2d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Pose (N, 6) from a weak-perspective (affine) camera fit of (N, K, 3) vertices to (N, K, 2) pixels."""
    n, k, _ = points3d.shape
    xy = torch.stack([points2d[..., 0] - CENTER_PX, CENTER_PX - points2d[..., 1]], -1)  # y up
    h = torch.cat([points3d, torch.ones(n, k, 1, dtype=points3d.dtype, device=points3d.device)], -1)  # (N,K,4)
    hw = h * w[..., None]
    a = hw.transpose(1, 2) @ h + 1e-6 * torch.eye(4, dtype=h.dtype, device=h.device)
    b = hw.transpose(1, 2) @ xy  # (N, 4, 2)
    m = torch.linalg.solve(a, b).transpose(1, 2)  # (N, 2, 4): rows s*R0|s*t0 and s*R1|s*t1
    rows = m[:, :, :3]
    scale = rows.norm(dim=-1).mean(-1)  # (N,)
    u, _, vh = torch.linalg.svd(rows, full_matrices=False)
    r01 = u @ vh  # nearest matrix with orthonormal rows
    r2 = torch.cross(r01[:, 0], r01[:, 1], dim=-1)
    rot = torch.stack([r01[:, 0], r01[:, 1], r2], 1)
    txy = m[:, :, 3] / scale[:, None]
    depth = FOCAL_PX / scale  # distance of the points' centroid
    centroid = (points3d * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-6)
    tz = -depth - torch.einsum("nj,nj->n", rot[:, 2], centroid)
    return torch.cat([matrix_to_axis_angle(rot), txy, tz[:, None]], -1)


def _solve_coefficients(batch: _Batch, pose: torch.Tensor, shape: torch.Tensor, cfg: FitConfig, *,
                        solve_shape: bool, expression: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of the linear least-squares solves under the weak-perspective camera of ``pose``."""
    rot = axis_angle_to_matrix(pose[:, :3])  # (N, 3, 3)
    depth = -(torch.einsum("nj,kj->nk", rot[:, 2], batch.mean) + pose[:, 5:6])  # (N, K)
    s = FOCAL_PX / depth.mean(1)  # (N,)
    proj = s[:, None, None] * rot[:, :2]  # (N, 2, 3), rows for x and y-up
    target = torch.stack([batch.points[..., 0] - CENTER_PX, CENTER_PX - batch.points[..., 1]], -1)
    target = target - s[:, None, None] * pose[:, None, 3:5]
    sw = batch.init_weights.sqrt()[..., None]  # (N, K, 1); bridged frames count in the closed form

    def design(basis: torch.Tensor) -> torch.Tensor:  # (N, K*2, B)
        d = torch.einsum("nij,bkj->nkib", proj, basis)
        return (d * sw[..., None]).reshape(d.shape[0], -1, basis.shape[0])

    mean2d = torch.einsum("nij,kj->nki", proj, batch.mean)
    if solve_shape:
        resid = (target - mean2d - torch.einsum("nij,nkj->nki", proj,
                                                torch.einsum("ne,ekd->nkd", expression, batch.exp_basis)))
        a = design(batch.id_basis)
        r = (resid * sw).reshape(resid.shape[0], -1)
        ata = torch.einsum("nmb,nmc->nbc", a, a)
        atb = torch.einsum("nmb,nm->nb", a, r)
        c = len(batch.lengths)
        ata_c = torch.zeros(c, *ata.shape[1:], dtype=ata.dtype, device=ata.device).index_add_(0, batch.clip_of, ata)
        atb_c = torch.zeros(c, atb.shape[1], dtype=atb.dtype, device=atb.device).index_add_(0, batch.clip_of, atb)
        lengths = torch.as_tensor(batch.lengths, dtype=ata.dtype, device=ata.device)
        reg = cfg.init_shape_ridge * lengths[:, None, None] * torch.eye(ata.shape[1], dtype=ata.dtype,
                                                                        device=ata.device)
        shape = torch.linalg.solve(ata_c + reg, atb_c)
    ident = torch.einsum("ns,skd->nkd", shape[batch.clip_of], batch.id_basis)
    resid = target - mean2d - torch.einsum("nij,nkj->nki", proj, ident)
    a = design(batch.exp_basis)
    r = (resid * sw).reshape(resid.shape[0], -1)
    ata = torch.einsum("nmb,nmc->nbc", a, a)
    atb = torch.einsum("nmb,nm->nb", a, r)
    eye = torch.eye(ata.shape[1], dtype=ata.dtype, device=ata.device)
    expression = torch.linalg.solve(ata + cfg.init_expression_ridge * eye, atb)
    return shape, torch.maximum(torch.minimum(expression, batch.exp_hi), batch.exp_lo)


def _initialise(batch: _Batch, cfg: FitConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = batch.n
    e = batch.exp_basis.shape[0]
    expression = torch.zeros(n, e, dtype=batch.mean.dtype, device=batch.mean.device)
    shape = torch.zeros(len(batch.lengths), batch.id_basis.shape[0], dtype=batch.mean.dtype,
                        device=batch.mean.device)
    pose = _affine_pose(batch.mean.expand(n, -1, -1), batch.points, batch.init_weights)
    for _ in range(2):
        shape, expression = _solve_coefficients(batch, pose, shape, cfg, solve_shape=True, expression=expression)
        pose = _affine_pose(batch.vertices(shape, expression), batch.points, batch.init_weights)
    shape, expression = _solve_coefficients(batch, pose, shape, cfg, solve_shape=False, expression=expression)
    return shape, expression, pose


# ------------------------------------------------------------------------------------------ optimisation
def _second_difference(x: torch.Tensor) -> torch.Tensor:
    return x[:-2] - 2 * x[1:-1] + x[2:]


def _objective(batch: _Batch, cfg: FitConfig, shape, expression, pose, init) -> torch.Tensor:
    uv, _ = project_vertices(batch.vertices(shape, expression), pose)
    w = batch.weights
    err2 = ((uv - batch.points) ** 2).sum(-1)  # (N, K)
    loss = cfg.w_landmark * (err2 * w).sum() / w.sum().clamp_min(1e-6)
    n = batch.n
    if cfg.temporal and n > 1:
        motion = (uv[1:] - uv[:-1]) - (batch.points[1:] - batch.points[:-1])
        pw = torch.minimum(w[1:], w[:-1]) * batch.pair[:, None]
        norm = torch.sqrt((motion ** 2).sum(-1) + 1e-6)
        loss = loss + cfg.w_motion * (norm * pw).sum() / pw.sum().clamp_min(1e-6)
        if n > 2 and batch.triple.sum() > 0:
            scaled_pose = torch.cat([pose[:, :3] * POSE_ROT_SCALE_MM, pose[:, 3:]], -1)
            lap_e = torch.sqrt((_second_difference(expression) ** 2).sum(-1) + 1e-8)
            lap_p = torch.sqrt((_second_difference(scaled_pose) ** 2).sum(-1) + 1e-8)
            loss = loss + cfg.lambda_lap * ((lap_e + lap_p) * batch.triple).sum() / batch.triple.sum()
    if cfg.regularise:
        shape0, expression0, pose0 = init
        scaled = torch.cat([(pose - pose0)[:, :3] * POSE_ROT_SCALE_MM, (pose - pose0)[:, 3:]], -1)
        loss = loss + cfg.w_shape_reg * torch.sqrt(((shape - shape0) ** 2).sum(-1) + 1e-8).mean()
        loss = loss + cfg.w_expression_reg * torch.sqrt(((expression - expression0) ** 2).sum(-1) + 1e-8).mean()
        loss = loss + cfg.w_pose_reg * torch.sqrt((scaled ** 2).sum(-1) + 1e-8).mean()
    return loss


def fit_clips(landmarks: Sequence[np.ndarray], model: FaceModel, config: FitConfig | None = None
              ) -> list[FitResult]:
    """Fit every clip of ``landmarks`` ((T_i, 478, 2) crop pixels, NaN where undetected) in one batch."""
    cfg = config or FitConfig()
    if not landmarks:
        return []
    for i, lm in enumerate(landmarks):
        if np.ndim(lm) != 3 or np.shape(lm)[1:] != (len(model.mediapipe_ids), 2) or len(lm) == 0:
            raise ValueError(f"clip {i}: landmarks of shape {np.shape(lm)}, want (T>0, "
                             f"{len(model.mediapipe_ids)}, 2)")
    batch = _Batch(landmarks, model, cfg)
    with torch.no_grad():
        init = _initialise(batch, cfg)
    shape, expression = init[0].clone(), init[1].clone()
    rot, trans = init[2][:, :3].contiguous().clone(), init[2][:, 3:].contiguous().clone()
    if cfg.optimise and cfg.iterations > 0:
        _run_adam(batch, cfg, init, shape, expression, rot, trans)
    pose = torch.cat([rot, trans], -1)
    return _results(batch, model, shape.detach(), expression.detach(), pose.detach())


def _run_adam(batch: _Batch, cfg: FitConfig, init, shape, expression, rot, trans) -> None:
    for p in (shape, expression, rot, trans):
        p.requires_grad_()
    # one learning rate per unit: identity (~N(0,1)), expression ([0,1]), radians, millimetres
    opt = torch.optim.Adam([{"params": [shape], "lr": cfg.lr_shape},
                            {"params": [expression], "lr": cfg.lr_expression},
                            {"params": [rot], "lr": cfg.lr_rotation},
                            {"params": [trans], "lr": cfg.lr_translation}])
    for _ in range(cfg.iterations):
        opt.zero_grad(set_to_none=True)
        loss = _objective(batch, cfg, shape, expression, torch.cat([rot, trans], -1), init)
        loss.backward()
        opt.step()
        with torch.no_grad():
            expression.copy_(torch.maximum(torch.minimum(expression, batch.exp_hi), batch.exp_lo))


def _results(batch: _Batch, model: FaceModel, shape, expression, pose) -> list[FitResult]:
    with torch.no_grad():
        uv, _ = project_vertices(batch.vertices(shape, expression), pose)
        dist = (uv - batch.points).norm(dim=-1)
        full = batch.weights >= 1.0
        frame_err = (dist * full).sum(1) / full.sum(1).clamp_min(1)
    out, start = [], 0
    face_ids = model.vertex_ids("face")
    for c, t in enumerate(batch.lengths):
        sl = slice(start, start + t)
        start += t
        e, p = expression[sl].cpu().numpy(), pose[sl].cpu().numpy()
        s = shape[c].cpu().numpy()
        out.append(FitResult(shape=s.astype(np.float32), expression=e.astype(np.float32),
                             pose=p.astype(np.float32),
                             landmark_error_px=float(frame_err[sl].mean()),
                             jitter=posed_jitter(model, s, e, p, face_ids),
                             frame_error_px=frame_err[sl].cpu().numpy().astype(np.float32)))
    return out


def posed_vertices(model: FaceModel, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                   vertex_ids: np.ndarray | None = None) -> np.ndarray:
    """Camera-frame vertices (T, V', 3) in mm of a fitted clip (optionally only ``vertex_ids``)."""
    from pt_data.camera import to_camera

    ids = slice(None) if vertex_ids is None else vertex_ids
    v = model.mean[ids] + np.tensordot(shape, model.id_basis[:, ids], axes=(0, 0))
    v = v[None] + np.tensordot(expression, model.exp_basis[:, ids], axes=(1, 0))
    return to_camera(torch.as_tensor(v), torch.as_tensor(pose, dtype=torch.float32)).numpy()


def posed_jitter(model: FaceModel, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                 vertex_ids: np.ndarray | None = None) -> float:
    """Mean norm of the second temporal difference of posed vertices (mm / frame^2); 0 for T < 3."""
    if len(expression) < 3:
        return 0.0
    v = posed_vertices(model, shape, expression, pose, vertex_ids)
    return float(np.linalg.norm(v[:-2] - 2 * v[1:-1] + v[2:], axis=-1).mean())
