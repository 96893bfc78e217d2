"""PNCC renderer: the torch rasteriser against a brute-force numpy reference, tie rules, z-buffer, gradients,
and the PNCC of the real default face model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from pt_data.face_model import FaceModel
from pt_data.render import Fragments, PNCCRenderer, RasterSettings, interpolate, overlay, rasterize

EDGE_TOL = 1e-4  # pixels this close to a triangle's boundary may go either way
DEPTH_TIE = 1e-5  # relative depth gap under which two surfaces tie (float32 vs float64)


# ------------------------------------------------------------------------------------ the reference
@dataclass
class Reference:
    face: np.ndarray  # (H, W) int, -1 background
    bary: np.ndarray  # (H, W, 3) perspective-correct when asked
    depth: np.ndarray  # (H, W), inf background
    ambiguous: np.ndarray  # (H, W) bool: within EDGE_TOL of some triangle's boundary, or a depth tie


def reference_rasterize(uv: np.ndarray, depth: np.ndarray, triangles: np.ndarray, height: int, width: int, *,
                        cull_backfaces: bool = False, perspective: bool = True) -> Reference:
    """Brute force in float64: every pixel centre (x + .5, y + .5) against every triangle, barycentric inside
    test, nearest interpolated depth wins. Vectorised over pixels only, looping over triangles."""
    uv, depth = np.asarray(uv, np.float64), np.asarray(depth, np.float64)
    gy, gx = np.mgrid[0:height, 0:width]
    px, py = gx + 0.5, gy + 0.5
    best = np.full((height, width), np.inf)
    second = np.full((height, width), np.inf)
    face = np.full((height, width), -1)
    bary = np.zeros((height, width, 3))
    near_edge = np.zeros((height, width), bool)
    for f, tri in enumerate(np.asarray(triangles)):
        p, d = uv[tri], depth[tri]
        area = (p[1, 0] - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[1, 1] - p[0, 1]) * (p[2, 0] - p[0, 0])
        if abs(area) < 1e-12 or (cull_backfaces and area > 0) or (perspective and (d <= 0).any()):
            continue
        lam, dist = [], []
        for i in range(3):
            a, b = p[(i + 1) % 3], p[(i + 2) % 3]
            w = (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])
            lam.append(w / area)
            dist.append(w * np.sign(area) / np.hypot(*(b - a)))  # signed distance, positive inside
        lam = np.stack(lam, -1)
        inside = (lam >= 0).all(-1)
        near_edge |= np.abs(np.min(dist, axis=0)) <= EDGE_TOL
        if perspective:
            t = lam / d
            z = 1.0 / t.sum(-1)
            lam_pc = t * z[..., None]
        else:
            z = (lam * d).sum(-1)
            lam_pc = lam
        z = np.where(inside, z, np.inf)
        win = z < best
        second = np.where(win, best, np.minimum(second, z))
        best = np.where(win, z, best)
        face = np.where(win, f, face)
        bary = np.where(win[..., None], lam_pc, bary)
    with np.errstate(invalid="ignore"):  # inf - inf where nothing or one surface covers a pixel
        tie = np.isfinite(second) & (second - best <= DEPTH_TIE * np.abs(best))
    return Reference(face=face, bary=bary, depth=best, ambiguous=near_edge | tie)


def random_mesh(seed: int, size: int = 48, num_vertices: int = 30, num_faces: int = 24, batch: int = 2):
    """Random triangles (some partly outside the image, interpenetrating, both windings) over ``batch``
    random vertex sets."""
    rng = np.random.default_rng(seed)
    uv = rng.uniform(-0.2 * size, 1.2 * size, (batch, num_vertices, 2))
    depth = rng.uniform(5.0, 20.0, (batch, num_vertices))
    tris = np.stack([rng.choice(num_vertices, 3, replace=False) for _ in range(num_faces)])
    return uv, depth, tris


def _render(uv, depth, tris, h, w, **kw) -> Fragments:
    """Rasterise float64 numpy inputs in float32 on the CPU."""
    return rasterize(torch.as_tensor(uv, dtype=torch.float32), torch.as_tensor(depth, dtype=torch.float32),
                     torch.as_tensor(tris), h, w, settings=RasterSettings(**kw))


# ---------------------------------------------------------------------------- against the reference
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cull,perspective", [(False, True), (True, True), (False, False)])
def test_random_meshes_match_brute_force(seed, cull, perspective):
    size = 48
    uv, depth, tris = random_mesh(seed, size)
    colours = np.random.default_rng(seed + 100).uniform(0, 1, (uv.shape[1], 3))
    frags = _render(uv, depth, tris, size, size, cull_backfaces=cull, perspective_correct=perspective)
    img = interpolate(frags, torch.as_tensor(colours, dtype=torch.float32)).numpy()
    for b in range(uv.shape[0]):
        ref = reference_rasterize(uv[b], depth[b], tris, size, size, cull_backfaces=cull, perspective=perspective)
        ok = ~ref.ambiguous
        assert ok.mean() > 0.9, "the comparison would be vacuous"
        assert (ref.face >= 0).sum() > 200, "too little covered to compare"
        ours = frags.face_ids[b].numpy()
        np.testing.assert_array_equal(ours[ok], ref.face[ok])
        ref_img = np.einsum("hwk,hwkc->hwc", ref.bary, colours[tris[np.maximum(ref.face, 0)]])
        ref_img[ref.face < 0] = 0
        np.testing.assert_allclose(img[b].transpose(1, 2, 0)[ok], ref_img[ok], atol=1e-4)
        fg = ok & (ref.face >= 0)
        np.testing.assert_allclose(frags.zbuf[b].numpy()[fg], ref.depth[fg], rtol=1e-5)
        np.testing.assert_allclose(frags.bary[b].numpy()[fg], ref.bary[fg], atol=1e-4)


def test_chunk_size_does_not_change_the_result():
    uv, depth, tris = random_mesh(5, 40, batch=3)
    a = _render(uv, depth, tris, 40, 40)
    b = _render(uv, depth, tris, 40, 40, max_candidates=7)
    assert torch.equal(a.face_ids, b.face_ids)
    assert torch.equal(a.bary, b.bary)


def test_float64_inputs_and_empty_cases():
    uv, depth, tris = random_mesh(3, 32, batch=1)
    f32 = _render(uv, depth, tris, 32, 32)
    f64 = rasterize(torch.as_tensor(uv), torch.as_tensor(depth), torch.as_tensor(tris), 32, 32)
    assert f64.bary.dtype == torch.float64
    ref = reference_rasterize(uv[0], depth[0], tris, 32, 32)
    ok = ~ref.ambiguous
    np.testing.assert_array_equal(f64.face_ids[0].numpy()[ok], ref.face[ok])
    np.testing.assert_array_equal(f64.face_ids[0].numpy()[ok], f32.face_ids[0].numpy()[ok])
    # everything off-screen, behind the camera, or no triangles at all: background
    assert (_render(uv + 1000, depth, tris, 32, 32).face_ids == -1).all()
    assert (_render(uv, -depth, tris, 32, 32).face_ids == -1).all()
    empty = _render(uv, depth, np.zeros((0, 3), np.int64), 32, 32)
    assert empty.face_ids.shape == (1, 32, 32) and (empty.face_ids == -1).all()


def test_bad_inputs_raise_clear_errors():
    uv, depth, tris = random_mesh(0, 16, batch=1)
    with pytest.raises(ValueError, match="triangle vertex ids"):
        _render(uv, depth, tris + 100, 16, 16)
    with pytest.raises(ValueError, match="depth must be"):
        _render(uv, depth[:, :-1], tris, 16, 16)
    with pytest.raises(ValueError, match="max_candidates"):
        RasterSettings(max_candidates=0)


# ---------------------------------------------------------------------------------- hand-made meshes
@pytest.mark.parametrize("perspective", [True, False])
@pytest.mark.parametrize("back_first", [True, False])
def test_occluded_triangle_never_wins(perspective, back_first):
    front = np.array([[2.0, 2.0], [30.0, 3.0], [15.0, 30.0]])
    back = np.array([[10.0, 8.0], [20.0, 8.5], [15.0, 18.0]])  # inside the front triangle's footprint
    pts = np.concatenate([back, front] if back_first else [front, back])[None]
    dz = np.concatenate([[9.0, 9.5, 8.7], [5.0, 5.0, 5.2]] if back_first else [[5.0, 5.0, 5.2], [9.0, 9.5, 8.7]])
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    back_id = 0 if back_first else 1
    frags = _render(pts, dz[None], tris, 32, 32, perspective_correct=perspective)
    ids = frags.face_ids[0]
    assert (ids == 1 - back_id).sum() > 200
    assert not (ids == back_id).any()
    # and alone it is visible
    alone = _render(pts, dz[None], tris[[back_id]], 32, 32, perspective_correct=perspective)
    assert (alone.face_ids == 0).sum() > 20


def test_interpenetrating_triangles_split_at_their_intersection():
    # two triangles over the same footprint, tilted in opposite directions: each wins where it is nearer
    pts = np.array([[[2.0, 2.0], [30.0, 2.0], [16.0, 30.0], [2.0, 2.0], [30.0, 2.0], [16.0, 30.0]]])
    dz = np.array([[5.0, 10.0, 7.5, 10.0, 5.0, 7.5]])
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    frags = _render(pts, dz, tris, 32, 32)
    ref = reference_rasterize(pts[0], dz[0], tris, 32, 32)
    ok = ~ref.ambiguous
    assert (ref.face[ok] == 0).sum() > 50 and (ref.face[ok] == 1).sum() > 50
    np.testing.assert_array_equal(frags.face_ids[0].numpy()[ok], ref.face[ok])


def _coverage_count(uv, tris, h, w):
    """How many triangles cover each pixel, rendering each triangle on its own."""
    depth = np.ones(uv.shape[:2])
    return sum(_render(uv, depth, tris[[f]], h, w).covered[0].numpy().astype(int) for f in range(len(tris)))


@pytest.mark.parametrize("diagonal", ["main", "anti"])
@pytest.mark.parametrize("winding", ["ccw", "cw"])
@pytest.mark.parametrize("ids", [(0, 1, 2, 3), (3, 1, 0, 2)])
def test_quad_of_two_triangles_has_no_holes_and_no_double_cover(diagonal, winding, ids):
    # corners on pixel centres: the edges and the diagonal run exactly through pixel centres
    corners = np.array([[2.5, 2.5], [10.5, 2.5], [10.5, 10.5], [2.5, 10.5]])
    uv = np.zeros((1, 4, 2))
    uv[0, list(ids)] = corners
    a, b, c, d = ids
    tris = np.array([[a, b, c], [a, c, d]] if diagonal == "main" else [[a, b, d], [b, c, d]])
    if winding == "cw":
        tris = tris[:, ::-1].copy()
    count = _coverage_count(uv, tris, 14, 14)
    assert count.max() == 1, "a pixel is covered twice"
    expected = np.zeros((14, 14), int)
    expected[2:10, 2:10] = 1  # top and left edges belong to the quad, bottom and right ones do not
    np.testing.assert_array_equal(count, expected)
    whole = _render(uv, np.ones((1, 4)), tris, 14, 14).covered[0].numpy()
    np.testing.assert_array_equal(whole, expected.astype(bool))


def test_jittered_grid_mesh_covers_every_pixel_exactly_once():
    # a 5x5-cell grid whose boundary is a pixel-centred rectangle; interior vertices jittered by multiples
    # of half a pixel so many edges and vertices pass exactly through pixel centres
    rng = np.random.default_rng(0)
    n, step, origin = 5, 6.0, 3.5
    g = np.stack(np.meshgrid(np.arange(n + 1), np.arange(n + 1)), -1).reshape(-1, 2) * step + origin
    interior = ((g > origin) & (g < origin + n * step)).all(1)
    g[interior] += rng.integers(-4, 5, (interior.sum(), 2)) * 0.5
    vid = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    tris = []
    for i in range(n):
        for j in range(n):
            a, b, c, d = vid[i, j], vid[i, j + 1], vid[i + 1, j + 1], vid[i + 1, j]
            tris += [[a, b, c], [a, c, d]] if (i + j) % 2 else [[a, b, d], [b, c, d]]
    tris = np.array(tris)
    perm = rng.permutation(len(g))  # vertex ids in random order: the canonical edge order must not matter
    uv = np.empty_like(g)
    uv[perm] = g
    tris = perm[tris]
    count = _coverage_count(uv[None], tris, 40, 40)
    expected = np.zeros((40, 40), int)
    lo, hi = int(origin), int(origin + n * step)
    expected[lo:hi, lo:hi] = 1
    np.testing.assert_array_equal(count, expected)


def test_shared_edges_through_pixel_centres_are_covered_once():
    # 1000 'diamonds' (one per batch element): two triangles sharing an edge that passes through the pixel
    # centre (8.5, 8.5) up to float32 rounding, at random angles; the centre must be covered exactly once.
    # Evaluating each triangle's own edge function (not the shared, canonically ordered one) fails ~10%.
    rng = np.random.default_rng(0)
    n = 1000
    th = rng.uniform(0, np.pi, n)
    along, across = np.stack([np.cos(th), np.sin(th)], 1), np.stack([-np.sin(th), np.cos(th)], 1)
    c = np.array([8.5, 8.5])
    a = c + rng.uniform(2, 6, (n, 1)) * along
    b = c - rng.uniform(2, 6, (n, 1)) * along
    p = c + rng.uniform(-2, 2, (n, 1)) * along + rng.uniform(2, 5, (n, 1)) * across
    q = c + rng.uniform(-2, 2, (n, 1)) * along - rng.uniform(2, 5, (n, 1)) * across
    uv = np.stack([a, b, p, q], 1).astype(np.float32)
    tris = np.array([[0, 1, 2], [1, 0, 3]])
    count = sum(_render(uv, np.ones((n, 4)), tris[[f]], 16, 16).covered[:, 8, 8].numpy().astype(int)
                for f in range(2))
    assert (count == 1).all(), np.bincount(count)


def test_coverage_area_matches_the_analytic_area():
    # point sampling counts pixel centres; for edges away from the pixel axes the count's error averages out
    # along each edge (an edge running along a row of centres can shift the count by a whole row: excluded)
    rng = np.random.default_rng(7)
    errors = []
    while len(errors) < 8:
        p = rng.uniform(5, 123, (3, 2))
        e = p - p[[1, 2, 0]]
        angle = np.degrees(np.arctan2(np.abs(e[:, 1]), np.abs(e[:, 0])))
        if ((angle % 90 < 10) | (angle % 90 > 80)).any():
            continue
        area = abs((p[1, 0] - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[1, 1] - p[0, 1]) * (p[2, 0] - p[0, 0])) / 2
        count = int(_render(p[None], np.ones((1, 3)), np.array([[0, 1, 2]]), 128, 128).covered.sum())
        errors.append(count - area)
    assert np.abs(errors).max() <= 4.0, errors
    assert np.abs(errors).mean() <= 2.0, errors


def test_backface_culling_follows_the_winding():
    front_ccw = np.array([[[4.0, 4.0], [8.0, 28.0], [28.0, 10.0]]])  # counter-clockwise seen with y up
    tri = np.array([[0, 1, 2]])
    area = np.cross(front_ccw[0, 1] - front_ccw[0, 0], front_ccw[0, 2] - front_ccw[0, 0])
    assert area < 0  # clockwise on the y-down pixel grid
    on = _render(front_ccw, np.ones((1, 3)), tri, 32, 32, cull_backfaces=True)
    off = _render(front_ccw, np.ones((1, 3)), tri[:, ::-1].copy(), 32, 32, cull_backfaces=True)
    assert on.covered.sum() > 100
    assert not off.covered.any()


# ------------------------------------------------------------------------------------- interpolation
def test_gradients_reach_attributes_and_vertices():
    uv, depth, tris = random_mesh(11, 32, batch=2)
    uv_t = torch.tensor(uv, dtype=torch.float64, requires_grad=True)
    dz_t = torch.tensor(depth, dtype=torch.float64, requires_grad=True)
    attr = torch.tensor(np.random.default_rng(1).normal(size=(uv.shape[1], 2)), requires_grad=True)
    frags = rasterize(uv_t, dz_t, torch.as_tensor(tris), 32, 32)
    img = interpolate(frags, attr)
    img.sum().backward()
    # d(sum)/d(attr[v, c]) = the sum over pixels of v's barycentric weight
    expected = np.zeros(uv.shape[1])
    fid = frags.face_ids.numpy()
    fg = fid >= 0
    np.add.at(expected, tris[fid[fg]], frags.bary.detach().numpy()[fg])
    np.testing.assert_allclose(attr.grad.numpy(), np.repeat(expected[:, None], 2, 1), rtol=1e-10)
    assert uv_t.grad.abs().sum() > 0 and torch.isfinite(uv_t.grad).all()
    assert dz_t.grad.abs().sum() > 0
    # the vertex gradient agrees with central differences (small steps keep the visibility unchanged)
    weights = torch.tensor(np.random.default_rng(2).normal(size=img.shape))

    def loss(u):
        fr = rasterize(u, dz_t.detach(), torch.as_tensor(tris), 32, 32)
        return (interpolate(fr, attr.detach()) * weights).sum()

    u0 = uv_t.detach().clone().requires_grad_(True)
    loss(u0).backward()
    eps = 1e-6
    for b, v, c in [(0, int(tris[0, 0]), 0), (1, int(tris[3, 1]), 1), (0, int(tris[5, 2]), 1)]:
        up, dn = uv_t.detach().clone(), uv_t.detach().clone()
        up[b, v, c] += eps
        dn[b, v, c] -= eps
        fd = (loss(up) - loss(dn)).item() / (2 * eps)
        assert fd == pytest.approx(u0.grad[b, v, c].item(), rel=1e-4, abs=1e-6)


def test_per_batch_attributes():
    uv, depth, tris = random_mesh(4, 24, batch=2)
    frags = _render(uv, depth, tris, 24, 24)
    attr = torch.rand(2, uv.shape[1], 3)
    both = interpolate(frags, attr)
    for b in range(2):
        single = interpolate(_render(uv[b:b + 1], depth[b:b + 1], tris, 24, 24), attr[b])
        torch.testing.assert_close(both[b:b + 1], single)
    assert frags.coverage().shape == (2, 1, 24, 24)


# ------------------------------------------------------------------------------------ PNCC renderer
def tiny_face_model(num_lat: int = 10, num_lon: int = 16, seed: int = 0) -> FaceModel:
    """A hemisphere 'face' (radius 90 mm, facing +z) with outward (counter-clockwise) triangles, random
    small identity/expression bases and a 'lip' patch low on the front."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(0, np.pi / 2, num_lat + 1)[1:]  # angle from +z
    lon = np.linspace(0, 2 * np.pi, num_lon, endpoint=False)
    pts = [[0.0, 0.0, 90.0]] + [[90 * np.sin(a) * np.cos(o), 90 * np.sin(a) * np.sin(o), 90 * np.cos(a)]
                                for a in lat for o in lon]
    mean = np.array(pts)

    def ring(i: int, j: int) -> int:
        return 1 + i * num_lon + j % num_lon

    tris = [[0, ring(0, j), ring(0, j + 1)] for j in range(num_lon)]
    for i in range(num_lat - 1):
        for j in range(num_lon):
            tris += [[ring(i, j), ring(i + 1, j), ring(i + 1, j + 1)],
                     [ring(i, j), ring(i + 1, j + 1), ring(i, j + 1)]]
    tris = np.array(tris)
    normal = np.cross(mean[tris[:, 1]] - mean[tris[:, 0]], mean[tris[:, 2]] - mean[tris[:, 0]])
    flip = (normal * mean[tris].mean(1)).sum(1) < 0
    tris[flip] = tris[flip][:, ::-1]
    v = len(mean)
    masks = {"face": np.ones(v, bool), "lower_face": mean[:, 1] < 0, "upper_face": mean[:, 1] >= 0,
             "lip": (mean[:, 1] < -20) & (mean[:, 1] > -60) & (np.abs(mean[:, 0]) < 40) & (mean[:, 2] > 30)}
    return FaceModel(name="tiny", mean=mean, id_basis=rng.normal(0, 2, (4, v, 3)),
                     exp_basis=rng.normal(0, 2, (3, v, 3)), triangles=tris, landmark68_ids=np.zeros(68, int),
                     mediapipe_ids=np.zeros(478, int), mediapipe_weights=np.zeros(478), masks=masks)


def test_tiny_model_batch_equals_one_by_one():
    model = tiny_face_model()
    r = PNCCRenderer(model, size=64)
    rng = np.random.default_rng(0)
    shape = torch.tensor(rng.normal(size=(3, 4)), dtype=torch.float32)
    expr = torch.tensor(rng.uniform(0, 1, (3, 3)), dtype=torch.float32)
    pose = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, -900.0], [0.2, -0.4, 0.1, 20.0, -10.0, -1000.0],
                         [-0.3, 0.5, -0.2, -15.0, 5.0, -800.0]])
    out = r.render(shape, expr, pose)
    assert out.pncc.shape == (3, 3, 64, 64) and out.mask.shape == out.lip_mask.shape == (3, 1, 64, 64)
    for b in range(3):
        one = r.render(shape[b:b + 1], expr[b:b + 1], pose[b:b + 1])
        assert torch.equal(one.fragments.face_ids, out.fragments.face_ids[b:b + 1])
        torch.testing.assert_close(one.pncc, out.pncc[b:b + 1], atol=1e-6, rtol=0)
        assert torch.equal(one.lip_mask, out.lip_mask[b:b + 1])
    # the torch vertices are FaceModel.vertices; render_vertices is render
    np.testing.assert_allclose(r.vertices(shape, expr).numpy(), model.vertices(shape.numpy(), expr.numpy()),
                               atol=1e-4)
    again = r.render_vertices(torch.as_tensor(model.vertices(shape.numpy(), expr.numpy())), pose)
    # (numpy and torch vertices differ by float rounding: at most a few edge pixels may flip)
    assert (again.fragments.face_ids != out.fragments.face_ids).float().mean() < 0.01
    # the PNCC is the reference rasteriser's canonical colours
    from pt_data.camera import project_vertices
    uv, depth = project_vertices(r.vertices(shape, expr), pose, focal=r.focal, center=r.center)
    colours = model.canonical_colors()
    for b in range(3):
        ref = reference_rasterize(uv[b].numpy(), depth[b].numpy(), model.triangles, 64, 64, cull_backfaces=True)
        ok = ~ref.ambiguous
        np.testing.assert_array_equal(out.fragments.face_ids[b].numpy()[ok], ref.face[ok])
        ref_img = np.einsum("hwk,hwkc->hwc", ref.bary, colours[model.triangles[np.maximum(ref.face, 0)]])
        ref_img[ref.face < 0] = 0
        np.testing.assert_allclose(out.pncc[b].numpy().transpose(1, 2, 0)[ok], ref_img[ok], atol=1e-4)
        # lip mask: the visible surface's interpolated lip indicator above one half
        lip = np.einsum("hwk,hwk->hw", ref.bary, model.mask("lip")[model.triangles[np.maximum(ref.face, 0)]])
        lip_ok = ok & (np.abs(lip - 0.5) > 1e-4)
        ref_lip = (lip > 0.5) & (ref.face >= 0)
        assert ref_lip.sum() > 5
        np.testing.assert_array_equal(out.lip_mask[b, 0].numpy()[lip_ok] > 0, ref_lip[lip_ok])


def test_pncc_is_differentiable_in_the_coefficients():
    model = tiny_face_model()
    r = PNCCRenderer(model, size=32)
    shape = torch.zeros(1, 4, requires_grad=True)
    pose = torch.tensor([[0.1, 0.2, 0.0, 0.0, 0.0, -900.0]], requires_grad=True)
    out = r.render(shape, torch.zeros(1, 3), pose)
    (out.pncc * torch.linspace(0, 1, 32)).sum().backward()
    assert shape.grad.abs().sum() > 0 and pose.grad.abs().sum() > 0


def test_renderer_rejects_wrong_shapes():
    r = PNCCRenderer(tiny_face_model(), size=32)
    with pytest.raises(ValueError, match="shape must be"):
        r.render(torch.zeros(1, 5), torch.zeros(1, 3), torch.zeros(1, 6))
    with pytest.raises(ValueError, match="pose must be"):
        r.render_vertices(torch.zeros(2, r.model.num_vertices, 3), torch.zeros(1, 6))


def test_overlay_blends_inside_the_mask_only():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pncc = torch.rand(3, 16, 16)
    mask = torch.zeros(1, 16, 16)
    mask[:, 4:10, 2:8] = 1
    out = overlay(frame, pncc, mask, alpha=0.5)
    m = mask[0].bool().numpy()
    np.testing.assert_array_equal(out[~m], frame[~m])
    expected = np.rint(0.5 * frame + 0.5 * 255 * pncc.numpy().transpose(1, 2, 0))
    np.testing.assert_allclose(out[m], expected[m], atol=1)
    np.testing.assert_array_equal(overlay(frame, pncc, mask, alpha=0.0), frame)
    with pytest.raises(ValueError):
        overlay(frame, pncc[:, :8], mask)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    uv, depth, tris = random_mesh(9, 64, num_faces=60, batch=4)
    cpu = _render(uv, depth, tris, 64, 64)
    gpu = rasterize(torch.as_tensor(uv, dtype=torch.float32, device="cuda"),
                    torch.as_tensor(depth, dtype=torch.float32, device="cuda"), torch.as_tensor(tris), 64, 64)
    assert torch.equal(gpu.face_ids.cpu(), cpu.face_ids)
    torch.testing.assert_close(gpu.bary.cpu(), cpu.bary, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------- the real model
@pytest.mark.realdata
def test_real_model_frontal_pncc(shared_data):
    from pt_data.camera import project_vertices
    from pt_data.face_model_convert import default_face_model

    model = default_face_model()
    r = PNCCRenderer(model, size=256)
    pose = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, -1300.0]])
    out = r.render(torch.zeros(1, model.num_shape), torch.zeros(1, model.num_expression), pose)
    pncc, mask, lip = out.pncc[0].numpy(), out.mask[0, 0].numpy() > 0, out.lip_mask[0, 0].numpy() > 0
    assert 0.15 < mask.mean() < 0.8, mask.mean()
    assert pncc.min() >= 0 and pncc.max() <= 1
    assert (pncc[:, ~mask] == 0).all()
    # a frontal face: canonical x (subject's left) grows to the right of the image, y (up) grows upwards
    ys, xs = np.nonzero(mask)
    assert np.corrcoef(xs, pncc[0][mask])[0, 1] > 0.9
    assert np.corrcoef(ys, pncc[1][mask])[0, 1] < -0.9
    assert abs(xs.mean() - 128) < 4
    # the lip mask: inside the face, around the projected mouth, below the face's centre
    assert lip.sum() > 100 and not (lip & ~mask).any()
    uv, _ = project_vertices(r.vertices(torch.zeros(1, model.num_shape), torch.zeros(1, model.num_expression)),
                             pose)
    mouth = uv[0, model.vertex_ids("lip")].numpy()
    ly, lx = np.nonzero(lip)
    assert lx.min() >= mouth[:, 0].min() - 1 and lx.max() <= mouth[:, 0].max() + 1
    assert ly.min() >= mouth[:, 1].min() - 1 and ly.max() <= mouth[:, 1].max() + 1
    assert ly.mean() > ys.mean() and abs(lx.mean() - 128) < 4
