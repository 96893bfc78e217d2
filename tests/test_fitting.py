"""Hybrid 3DMM fitting: camera maths, closed-form initialisation, the batched optimisation and its terms."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pt_data.camera import FOCAL_PX, axis_angle_to_matrix, matrix_to_axis_angle, project_vertices
from pt_data.face_model import FaceModel
from pt_data.fit_config import FitConfig
from pt_data.fitting import fit_clips, posed_jitter
from pt_data.synthetic_geometry import synthetic_clip


def tiny_face_model(num_vertices: int = 700, seed: int = 0) -> FaceModel:
    """A half-ellipsoid 'face' with smooth identity modes and two bounded expression modes (jaw, smile)."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(-1, 1, (num_vertices, 2))
    x, y = 70 * u[:, 0], 95 * u[:, 1]
    z = 60 * np.sqrt(np.clip(1 - u[:, 0] ** 2 * 0.8 - u[:, 1] ** 2 * 0.5, 0.05, None))
    mean = np.stack([x, y, z], 1)
    # identity: quadratic displacement fields only (a linear field could imitate a rotation or a scale)
    feats = np.stack([u[:, 0] * u[:, 1], u[:, 0] ** 2, u[:, 1] ** 2, u[:, 0] ** 2 * u[:, 1]], 1)
    id_basis = np.einsum("vf,sfd->svd", feats, rng.normal(size=(8, 4, 3)) * 3.0)
    jaw = np.zeros((num_vertices, 3))
    low = y < -20
    jaw[low, 1] = -25 * (-(y[low] + 20) / 75)
    smile = np.zeros((num_vertices, 3))
    smile[:, 0] = 10 * u[:, 0] * np.exp(-((y + 40) / 20) ** 2)
    tri = np.stack([np.arange(0, 30), np.arange(1, 31), np.arange(2, 32)], 1)
    masks = {"face": np.ones(num_vertices, bool), "lower_face": low, "lip": low & (np.abs(x) < 20),
             "upper_face": ~low}
    return FaceModel(name="tiny", mean=mean, id_basis=id_basis, exp_basis=np.stack([jaw, smile]),
                     triangles=tri, landmark68_ids=np.arange(68), mediapipe_ids=np.arange(478),
                     mediapipe_weights=np.ones(478), masks=masks, exp_names=("jawOpen", "mouthSmile_L"),
                     exp_lower=np.zeros(2), exp_upper=np.ones(2))


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return tiny_face_model()


def test_rotation_round_trip_and_orthonormal():
    r = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [1e-5, 0, 0], [0.0, 1.2, 0.0]])
    m = axis_angle_to_matrix(r)
    assert torch.allclose(m @ m.transpose(-1, -2), torch.eye(3).expand(4, 3, 3), atol=1e-6)
    assert torch.allclose(torch.det(m), torch.ones(4), atol=1e-6)
    assert torch.allclose(matrix_to_axis_angle(m), r, atol=1e-5)
    # a yaw of +90 degrees turns the model's +z (towards the camera) into +x
    yaw = axis_angle_to_matrix(torch.tensor([0.0, np.pi / 2, 0.0]))
    assert torch.allclose(yaw @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)


def test_projection_convention():
    pose = torch.tensor([0.0, 0.0, 0.0, 10.0, 20.0, -1000.0])
    uv, depth = project_vertices(torch.tensor([[[0.0, 0.0, 0.0], [50.0, 0.0, 0.0]]]), pose[None])
    assert torch.allclose(depth, torch.tensor([[1000.0, 1000.0]]))
    # x right -> u grows; y up -> v shrinks
    assert torch.allclose(uv[0, 0], torch.tensor([128 + FOCAL_PX * 10 / 1000, 128 - FOCAL_PX * 20 / 1000]))
    assert uv[0, 1, 0] > uv[0, 0, 0]


def _vertex_error(model, clip, fit) -> float:
    gt = model.vertices(clip.shape, clip.expression)
    est = model.vertices(fit.shape, fit.expression)
    return float(np.linalg.norm(gt - est, axis=-1).mean())


def test_noise_free_fit_recovers_the_clip(model):
    clip = synthetic_clip(model, 30, seed=1, noise_px=0.0, point_offset_mm=0.0, max_yaw_deg=20)
    # the data term alone, run to convergence, must reach the exact solution (checks the objective and camera)
    fit = fit_clips([clip.clean_landmarks], model, FitConfig(iterations=400, temporal=False, regularise=False))[0]
    assert fit.landmark_error_px < 0.05
    assert np.abs(fit.pose[:, :3] - clip.pose[:, :3]).max() < np.deg2rad(0.5)
    jaw = model.exp_names.index("jawOpen")
    assert np.corrcoef(fit.expression[:, jaw], clip.expression[:, jaw])[0, 1] > 0.95


def test_init_alone_is_close_and_hybrid_improves_on_it(model):
    clip = synthetic_clip(model, 40, seed=2, noise_px=1.0)
    init = fit_clips([clip.landmarks], model, FitConfig(optimise=False))[0]
    hybrid = fit_clips([clip.landmarks], model, FitConfig())[0]
    assert init.landmark_error_px < 6.0  # the closed form already sits on the face
    assert hybrid.landmark_error_px < init.landmark_error_px
    assert _vertex_error(model, clip, hybrid) < _vertex_error(model, clip, init)


def test_temporal_terms_remove_jitter(model):
    clip = synthetic_clip(model, 50, seed=3, noise_px=1.5)
    per_frame = fit_clips([clip.landmarks], model, FitConfig(temporal=False, regularise=False))[0]
    hybrid = fit_clips([clip.landmarks], model, FitConfig())[0]
    truth = posed_jitter(model, clip.shape, clip.expression, clip.pose)
    assert hybrid.jitter < per_frame.jitter / 2
    assert hybrid.jitter < 3 * truth


def test_clips_fitted_together_equal_clips_fitted_alone(model):
    a = synthetic_clip(model, 20, seed=4, noise_px=0.5)
    b = synthetic_clip(model, 20, seed=5, noise_px=0.5, max_yaw_deg=0)
    cfg = FitConfig(iterations=30)
    together = fit_clips([a.landmarks, b.landmarks], model, cfg)
    alone = [fit_clips([x.landmarks], model, cfg)[0] for x in (a, b)]
    for t, s in zip(together, alone):  # equal lengths: every loss term is scaled alike, Adam is scale-free
        assert np.allclose(t.pose, s.pose, atol=2e-3)
        assert np.allclose(t.expression, s.expression, atol=2e-3)
        assert t.shape.shape == (model.num_shape,)


def test_undetected_frames_are_ignored(model):
    clip = synthetic_clip(model, 25, seed=6, noise_px=0.5)
    full = fit_clips([clip.landmarks], model)[0]
    lm = clip.landmarks.copy()
    lm[10:13] = np.nan
    fit = fit_clips([lm], model)[0]
    assert np.isfinite(fit.pose).all() and np.isfinite(fit.expression).all()
    assert fit.landmark_error_px < 3.0
    # the bridged frames stay about as close to the truth as when they were detected
    err_gap = np.abs(fit.pose[10:13, :3] - clip.pose[10:13, :3]).max()
    err_full = np.abs(full.pose[10:13, :3] - clip.pose[10:13, :3]).max()
    assert err_gap < err_full + np.deg2rad(5)


def test_expressions_respect_bounds(model):
    clip = synthetic_clip(model, 20, seed=7, noise_px=2.0)
    fit = fit_clips([clip.landmarks], model)[0]
    assert fit.expression.min() >= 0.0 and fit.expression.max() <= 1.0


def test_bad_landmark_shape_is_a_clear_error(model):
    with pytest.raises(ValueError, match="landmarks of shape"):
        fit_clips([np.zeros((5, 68, 2), np.float32)], model)


def test_real_model_accuracy(shared_data):
    from pt_data.face_model_convert import default_face_model

    real = default_face_model()
    clip = synthetic_clip(real, 40, seed=0)
    init = fit_clips([clip.landmarks], real, FitConfig(optimise=False))[0]
    hybrid = fit_clips([clip.landmarks], real)[0]
    face = real.vertex_ids("face")

    def err(f):
        return float(np.linalg.norm(real.vertices(clip.shape, clip.expression)[:, face]
                                    - real.vertices(f.shape, f.expression)[:, face], axis=-1).mean())

    assert err(hybrid) < err(init)
    assert err(hybrid) < 4.0  # mm over the face
    assert hybrid.landmark_error_px < 2.0
