"""Face crops: the transform puts a face where it should, smoothing removes jitter, the inverse pastes back."""
from __future__ import annotations

import numpy as np

from pt_data.crop import (LEFT_EYE, MOUTH, RIGHT_EYE, CropConfig, apply_affine_points, crop_frame,
                          crop_transforms, invert_affines)


def _face(cx, cy, size, angle_deg, n=478):
    """Landmarks with eyes and mouth at known places of a face of ``size`` px rotated by ``angle``."""
    lm = np.zeros((n, 2))
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    place = {RIGHT_EYE[0]: (-0.3, -0.1), RIGHT_EYE[1]: (-0.1, -0.1), LEFT_EYE[0]: (0.1, -0.1),
             LEFT_EYE[1]: (0.3, -0.1), MOUTH[0]: (-0.15, 0.3), MOUTH[1]: (0.15, 0.3)}
    for i, (x, y) in place.items():
        lm[i] = rot @ (np.array([x, y]) * size) + (cx, cy)
    return lm


def test_crop_is_invariant_to_position_scale_and_rotation():
    base = _face(400, 300, 200, 0)[None]
    moved = _face(120, 520, 80, 25)[None]
    cfg = CropConfig(smooth_sigma=0)
    a, b = crop_transforms(base, cfg), crop_transforms(moved, cfg)
    idx = list(RIGHT_EYE + LEFT_EYE + MOUTH)
    pa, pb = apply_affine_points(a[0], base[0, idx]), apply_affine_points(b[0], moved[0, idx])
    np.testing.assert_allclose(pa, pb, atol=1e-3)
    # eyes level, face centred horizontally, inside the crop
    assert abs(pa[0, 1] - pa[3, 1]) < 1e-3 and abs(pa[:, 0].mean() - 128) < 1e-3
    assert (pa > 0).all() and (pa < 256).all()


def test_smoothing_removes_jitter_but_follows_motion():
    rng = np.random.default_rng(0)
    t = np.arange(100)
    lms = np.stack([_face(300 + 2 * k + rng.normal(0, 3), 300 + rng.normal(0, 3), 150, 0) for k in t])
    raw = crop_transforms(lms, CropConfig(smooth_sigma=0))[:, 0, 2]
    smooth = crop_transforms(lms, CropConfig(smooth_sigma=3))[:, 0, 2]
    jitter = lambda x: np.abs(np.diff(x, 2)).mean()  # noqa: E731
    assert jitter(smooth) < 0.2 * jitter(raw)
    assert abs(np.polyfit(t, smooth, 1)[0] - np.polyfit(t, raw, 1)[0]) < 0.05  # same drift


def test_inverse_pastes_back():
    rng = np.random.default_rng(1)
    frame = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    frame = np.ascontiguousarray(np.repeat(np.repeat(frame[::8, ::8], 8, 0), 8, 1))
    a = crop_transforms(_face(320, 240, 180, 10)[None], CropConfig(smooth_sigma=0))[0]
    inv = invert_affines(a)
    pts = np.array([[10.0, 20.0], [200.0, 100.0]])
    np.testing.assert_allclose(apply_affine_points(inv, apply_affine_points(a, pts)), pts, atol=1e-3)
    crop = crop_frame(frame, a)
    assert crop.shape == (256, 256, 3)
    import cv2

    back = cv2.warpAffine(crop, inv.astype(np.float64), (640, 480))
    centre = apply_affine_points(inv, np.array([[128.0, 128.0]]))[0].astype(int)
    y, x = centre[1], centre[0]
    diff = np.abs(back[y - 20:y + 20, x - 20:x + 20].astype(int) - frame[y - 20:y + 20, x - 20:x + 20]).mean()
    assert diff < 20
