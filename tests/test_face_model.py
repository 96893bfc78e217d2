"""The morphable face model: file format, ICT conversion, MediaPipe correspondence, BFM/FLAME/3DDFA readers.

The BFM, FLAME and 3DDFA files need registration, so their readers are tested on small files written here in
each source's real layout and units, derived from the ICT model (known ground truth after unit conversion).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import pickle
import struct
import sys
import types

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from pt_data.face_model import FORMAT_VERSION, FaceModel, FaceModelError, load_face_model
from pt_data.face_model_convert import (ICT_FILE, build_face_model, mediapipe_correspondence, read_ict_light,
                                        read_obj_vertices, shared_data_dir)
from pt_data.face_model_formats import (FORMATS, ConvertOptions, JawBlendshapes, SkinnedModel, UnsafePickleError,
                                        convert_face_model, correspondence_residual_mm, flame_landmark_vertices,
                                        jaw_blendshapes, load_arrays_file, read_3ddfa, read_bfm_deng, read_flame,
                                        read_face_model_source, rodrigues)


# ---------------------------------------------------------------------------------------------- helpers
def tiny_model(seed: int = 0, name: str = "tiny") -> FaceModel:
    rng = np.random.default_rng(seed)
    v = 30
    return FaceModel(name=name, mean=rng.normal(size=(v, 3)) * 50, id_basis=rng.normal(size=(4, v, 3)),
                     exp_basis=rng.normal(size=(3, v, 3)), triangles=rng.integers(0, v, (40, 3)),
                     landmark68_ids=rng.integers(0, v, 68), mediapipe_ids=rng.integers(0, v, 478),
                     mediapipe_weights=rng.uniform(0, 1, 478), masks={"face": np.ones(v, bool),
                                                                     "lip": rng.random(v) < 0.2},
                     exp_names=("a", "b", "c"), exp_lower=np.zeros(3), exp_upper=np.ones(3), source="test")


def rewrite_npz(src, dst, **changes) -> None:
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(dst, **arrays)


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 wrote ``str`` (BINSTRING opcodes; read back as latin-1 text)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def write_chumpy_pickle(path, data: dict, chumpy_keys, protocol: int | str = 2) -> None:
    """Pickle ``data`` as FLAME's files are: the ``chumpy_keys`` entries as chumpy ``Ch`` objects.

    chumpy is not installed: a stand-in class registered as ``chumpy.ch.Ch`` for the dump pickles the same
    state chumpy does (``__dict__`` without its weak-reference caches), then it is removed again.
    ``protocol="py2"``: as Python 2 wrote FLAME's file (protocol 2, numpy's raw data as ``str``, numpy's
    reconstructor under ``numpy.core.multiarray``).
    """
    class Ch:
        def __init__(self, x):
            self.__dict__.update(x=np.asarray(x), _dirty_vars=set(), _itr=None, _depends_on_deps={},
                                 _make_dense=False, _make_sparse=False, _parents={}, _cache={})

        def __getstate__(self):
            d = dict(self.__dict__)
            del d["_parents"], d["_cache"]
            return d

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    pkg, mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    mod.Ch, pkg.ch = Ch, mod
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": pkg, "chumpy.ch": mod})
    try:
        obj = {k: Ch(v) if k in chumpy_keys else v for k, v in data.items()}
        if protocol == "py2":
            buf = io.BytesIO()
            Py2Pickler(buf, protocol=2).dump(obj)
            blob = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            assert b"numpy.core.multiarray" in blob
        else:
            blob = pickle.dumps(obj, protocol=protocol)
        with open(path, "wb") as f:
            f.write(blob)
    finally:
        for k, m in saved.items():
            if m is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = m


def _pt_model(argv: list[str]) -> int:
    from pt_cli import model_cmd

    parser = argparse.ArgumentParser(prog="pt")
    model_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def _mirror_pairs(mp: np.ndarray) -> np.ndarray:
    """For each of MediaPipe's 468 mesh points, its left/right mirror point (the canonical mesh is symmetric)."""
    from scipy.spatial import cKDTree

    d, j = cKDTree(mp[:468]).query(mp[:468] * [-1, 1, 1])
    assert d.max() < 1e-3
    return j


# ---------------------------------------------------------------------------------------------- file format
def test_save_load_round_trip_and_hash(tmp_path):
    m = tiny_model()
    path = m.save(tmp_path / "m.npz")
    back = load_face_model(path)
    assert back.hash == m.hash and back.model_id == f"tiny:{m.hash}" and len(m.hash) == 16
    for k in ("mean", "id_basis", "exp_basis", "triangles", "landmark68_ids", "mediapipe_ids", "mediapipe_weights",
              "exp_lower", "exp_upper"):
        np.testing.assert_array_equal(getattr(back, k), getattr(m, k))
    assert back.exp_names == m.exp_names and back.source == "test"
    assert set(back.masks) == {"face", "lip"} and np.array_equal(back.masks["lip"], m.masks["lip"])
    np.testing.assert_allclose(back.vertices(np.ones(4), np.full(3, 0.5)),
                               m.mean + m.id_basis.sum(0) + 0.5 * m.exp_basis.sum(0), rtol=1e-5, atol=1e-4)


def test_hash_covers_geometry_and_detects_edits(tmp_path):
    m = tiny_model()
    assert tiny_model(seed=1).hash != m.hash
    assert m.with_masks(lip=~m.masks["lip"]).hash == m.hash  # masks are not geometry
    path = m.save(tmp_path / "m.npz")
    mean = m.mean.copy()
    mean[3, 1] += 0.01
    rewrite_npz(path, tmp_path / "edited.npz", mean=mean)
    with pytest.raises(FaceModelError, match="does not match its contents"):
        load_face_model(tmp_path / "edited.npz")


def test_other_format_versions_and_non_models_are_refused(tmp_path):
    path = tiny_model().save(tmp_path / "m.npz")
    rewrite_npz(path, tmp_path / "v2.npz", format=np.int64(FORMAT_VERSION + 1))
    with pytest.raises(FaceModelError, match=f"format {FORMAT_VERSION + 1}"):
        load_face_model(tmp_path / "v2.npz")
    np.savez(tmp_path / "other.npz", neutral=np.zeros((3, 3)))
    with pytest.raises(FaceModelError, match="not a PersonaTalk face model"):
        load_face_model(tmp_path / "other.npz")
    with pytest.raises(FaceModelError, match="no face model file"):
        load_face_model(tmp_path / "missing.npz")


def test_inconsistent_models_are_refused():
    m = tiny_model()
    with pytest.raises(FaceModelError, match="triangle indices out of range"):
        FaceModel(name="bad", mean=m.mean, id_basis=m.id_basis, exp_basis=m.exp_basis, triangles=m.triangles + 100,
                  landmark68_ids=m.landmark68_ids, mediapipe_ids=m.mediapipe_ids,
                  mediapipe_weights=m.mediapipe_weights, masks=m.masks)


# ---------------------------------------------------------------------------------------------- safe pickles
class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_pickles_that_would_run_code_are_refused(tmp_path):
    target = tmp_path / "pwned"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"v_template": _Evil(str(target))}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match="os.makedirs|posix.makedirs"):
        read_flame(tmp_path / "evil.pkl", tmp_path / "lmk.pkl")
    with pytest.raises(UnsafePickleError):
        load_arrays_file(tmp_path / "evil.pkl")
    np.save(tmp_path / "evil.npy", np.array([_Evil(str(target))], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafePickleError):
        load_arrays_file(tmp_path / "evil.npy")
    assert not target.exists()


@pytest.mark.parametrize("protocol", ["py2", 0, 2])
def test_chumpy_pickles_are_read_without_chumpy(tmp_path, protocol):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    reg = sp.random(3, 7, density=0.4, random_state=0, format="csc")
    write_chumpy_pickle(tmp_path / "m.pkl", {"a": x, "b": np.arange(4), "J": reg, "s": "lbs"}, {"a"},
                        protocol=protocol)
    assert "chumpy" not in sys.modules
    d = load_arrays_file(tmp_path / "m.pkl")
    from pt_data.face_model_formats import to_array

    np.testing.assert_array_equal(to_array(d["a"]), x)
    np.testing.assert_array_equal(to_array(d["b"]), np.arange(4))
    np.testing.assert_array_equal(to_array(d["J"]), reg.toarray())
    assert d["s"] == "lbs" and "chumpy" not in sys.modules


# ---------------------------------------------------------------------------------------------- jaw / skinning
def _tiny_skinned(seed: int = 0, posedirs_scale: float = 0.0, flip_z: bool = False):
    """A small articulated head in metres: joints global, neck, jaw, eyes; chin in front of and below the jaw."""
    rng = np.random.default_rng(seed)
    v = np.concatenate([[[0.0, -0.02, 0.0], [0.0, -0.10, 0.08], [0.0, 0.05, 0.0], [0.03, 0.03, 0.07],
                         [-0.03, 0.03, 0.07]], rng.uniform(-0.1, 0.1, (35, 3))])
    if flip_z:  # the face looks to -z: the opening rotation has the other sign
        v[:, 2] *= -1
    reg = np.zeros((5, len(v)))
    reg[0, 2] = 1.0  # global: head centre
    reg[1, [0, 2]] = 0.5  # neck: between head centre and jaw joint
    reg[2, 0] = reg[3, 3] = reg[4, 4] = 1.0  # jaw, eyes
    w = np.zeros((len(v), 5))
    jaw_w = np.where(v[:, 1] < -0.03, rng.uniform(0.5, 1.0, len(v)), 0.0)
    jaw_w[1] = 1.0
    w[:, 2], w[:, 1] = jaw_w, 1.0 - jaw_w
    posedirs = rng.normal(size=(len(v), 3, 36)) * posedirs_scale
    return SkinnedModel(template=v, posedirs=posedirs, j_regressor=reg, weights=w,
                        parents=np.array([-1, 0, 1, 1, 1]))


def test_skinning_matches_closed_form_rotations():
    m = _tiny_skinned(posedirs_scale=1e-3)
    j = m.joints()
    pose = np.zeros((5, 3))
    pose[2] = [0.3, 0.0, 0.0]
    r = rodrigues(pose[2])
    np.testing.assert_allclose(r, [[1, 0, 0], [0, math.cos(0.3), -math.sin(0.3)], [0, math.sin(0.3), math.cos(0.3)]],
                               atol=1e-12)
    v_posed = m.template + m.posedirs[:, :, 9:18] @ (r - np.eye(3)).ravel()
    expect = v_posed + m.weights[:, 2:3] * ((v_posed - j[2]) @ (r - np.eye(3)).T)
    np.testing.assert_allclose(m.pose(pose), expect, atol=1e-12)
    # chained: neck and jaw rotate; a vertex skinned to the jaw only follows both rotations
    m0 = _tiny_skinned()
    pose[1] = [0.0, 0.2, 0.1]
    r1, r2 = rodrigues(pose[1]), rodrigues(pose[2])
    chin = m0.template[1]
    expect_chin = r1 @ (r2 @ (chin - j[2]) + j[2] - j[1]) + j[1]
    np.testing.assert_allclose(m0.pose(pose)[1], expect_chin, atol=1e-12)


def test_jaw_blendshapes_reproduce_the_skinned_jaw():
    m = _tiny_skinned()
    jaw = jaw_blendshapes(m, chin_vertex=1, max_angle_rad=math.radians(30))
    assert jaw.fit_residual < 1e-12  # exact without pose correctives: rotation = sin and (1 - cos) terms
    for deg in (5.0, 17.0, 30.0):
        pose = np.zeros((5, 3))
        pose[2, 0] = math.radians(deg)
        lin = m.template + np.tensordot(JawBlendshapes.coefficients(math.radians(deg), jaw.max_angle_rad),
                                        jaw.basis, axes=1)
        np.testing.assert_allclose(lin, m.pose(pose), atol=1e-12)
    assert (jaw.basis[0, 1, 1] + jaw.basis[1, 1, 1]) < -0.02  # coefficient (1, 1) lowers the chin
    mf = _tiny_skinned(flip_z=True)
    jf = jaw_blendshapes(mf, chin_vertex=1, max_angle_rad=math.radians(30))
    pose = np.zeros((5, 3))
    pose[2, 0] = -math.radians(10)  # here a negative pitch opens the jaw
    lin = mf.template + np.tensordot(JawBlendshapes.coefficients(math.radians(10), jf.max_angle_rad), jf.basis, 1)
    np.testing.assert_allclose(lin, mf.pose(pose), atol=1e-12)
    assert lin[1, 1] < mf.template[1, 1] - 0.01
    # with pose correctives the fit is no longer exact but stays far below a millimetre
    mc = _tiny_skinned(posedirs_scale=1e-3)
    jc = jaw_blendshapes(mc, chin_vertex=1, max_angle_rad=math.radians(30))
    pose = np.zeros((5, 3))
    pose[2, 0] = math.radians(12)
    lin = mc.template + np.tensordot(JawBlendshapes.coefficients(math.radians(12), jc.max_angle_rad), jc.basis, 1)
    assert 0 < jc.fit_residual < 1e-4 and np.abs(lin - mc.pose(pose)).max() < 1e-4


# ---------------------------------------------------------------------------------------------- real ICT model
@pytest.fixture(scope="module")
def ict_files():
    shared = shared_data_dir()
    src = None if shared is None else shared / "face_models" / "ict_facekit_light" / ICT_FILE
    mesh = None if shared is None else shared / "face_models" / "mediapipe_face_geometry" / "face_model_with_iris.obj"
    if src is None or not src.is_file() or not mesh.is_file():
        pytest.skip("ICT-FaceKit light arrays / MediaPipe mesh not found (set PT_SHARED_DATA to shared/data)")
    return src, mesh


@pytest.fixture(scope="module")
def ict(ict_files):
    src, mesh = ict_files
    raw = read_ict_light(src)
    return raw, build_face_model(raw, mesh), read_obj_vertices(mesh)


def test_ict_conversion_masks(ict):
    raw, model, _ = ict
    assert model.num_vertices == 9409 and model.num_shape == 100 and model.num_expression == 57
    assert np.all(model.exp_lower == 0) and np.all(model.exp_upper == 1)
    face, lower, lip, upper = (model.masks[k] for k in ("face", "lower_face", "lip", "upper_face"))
    assert np.all(lower | upper == face) and not np.any(lower & upper)
    assert np.all(lip <= lower)
    assert 0.2 < lower.sum() / face.sum() < 0.5 and 300 < lip.sum() < 0.2 * face.sum()
    # the lip region is around the mouth: every lip vertex is near a mouth landmark, and they are inside it
    from scipy.spatial import cKDTree

    mouth = model.mean[model.landmark68_ids[48:68]]
    assert cKDTree(mouth).query(model.mean[lip])[0].max() < 15.0
    assert lip[model.landmark68_ids[48:68]].sum() >= 16
    assert np.all(model.mean[lip, 1] < model.mean[model.landmark68_ids[33], 1])  # below the subnasale


def test_mediapipe_correspondence_fits_the_model(ict):
    raw, model, mp = ict
    corr = mediapipe_correspondence(raw, mp)
    assert np.median(corr.residual_mm[:468]) < 3.0
    np.testing.assert_array_equal(corr.ids, model.mediapipe_ids)
    res = correspondence_residual_mm(model, mp)
    assert len(res) == 468 and np.median(res) < 3.0 and np.percentile(res, 90) < 6.0
    assert np.all(model.mediapipe_weights[468:] == 0) and len(np.unique(model.mediapipe_ids[:468])) > 440


def test_mediapipe_correspondence_is_symmetric(ict):
    _, model, mp = ict
    pair = _mirror_pairs(mp)
    ids = model.mediapipe_ids[:468]
    mirrored = model.mean[ids] * [-1, 1, 1]
    err = np.linalg.norm(mirrored - model.mean[ids[pair]], axis=1)
    assert np.percentile(err, 95) < 2.0 and err.max() < 5.0
    mid = pair == np.arange(468)  # points on the midline map to midline vertices
    assert mid.sum() > 10 and np.abs(model.mean[ids[mid], 0]).max() < 3.0


# ---------------------------------------------------------------------------------------------- source readers
S, E = 5, 4  # identity / expression components put in the synthetic sources


def _tri_embedding(raw, ids):
    """Triangle index + barycentric coordinates (0.98 on the vertex) of a triangle holding each vertex.

    (ICT's lip seam has vertices 0.06 mm apart, so the point must lie very close to its vertex.)
    """
    fi = np.array([np.flatnonzero((raw.triangles == i).any(1))[0] for i in ids])
    bc = np.full((len(ids), 3), 0.01)
    bc[np.arange(len(ids)), np.argmax(raw.triangles[fi] == np.asarray(ids)[:, None], axis=1)] = 0.98
    return fi, bc


def _assert_same_geometry(got, raw, *, s=S, e=E, exp_offset=0):
    np.testing.assert_allclose(got.mean, raw.mean, atol=1e-3)
    np.testing.assert_allclose(got.id_basis[:s], raw.id_basis[:s], atol=1e-4)
    np.testing.assert_allclose(got.exp_basis[exp_offset:exp_offset + e], raw.exp_basis[:e], atol=1e-4)
    np.testing.assert_array_equal(got.triangles, raw.triangles)
    np.testing.assert_array_equal(got.landmark68_ids, raw.landmark68_ids)


def write_bfm_deng(path, raw, *, unit_per_mm: float = 0.01) -> None:
    """Deng et al.'s BFM_model_front.mat layout: (1, 3N) mean, (3N, K) bases, decimetres, 1-based tri/keypoints."""
    scipy.io.savemat(path, {
        "meanshape": (raw.mean.reshape(1, -1) * unit_per_mm).astype(np.float64),
        "idBase": (raw.id_basis[:S].reshape(S, -1).T * unit_per_mm).astype(np.float64),
        "exBase": (raw.exp_basis[:E].reshape(E, -1).T * unit_per_mm).astype(np.float64),
        "meantex": np.zeros((1, raw.mean.size)), "tri": (raw.triangles + 1).astype(np.float64),
        "keypoints": (raw.landmark68_ids[None] + 1).astype(np.float64)})


def write_3ddfa(path, raw, *, tri="inside", flip_x: bool = False) -> None:
    """3DDFA's bfm_noneck_v3.pkl layout: (3N, 1) u, (3N, K) bases in micrometres, flat keypoints, (3, F) tri."""
    mean = raw.mean * ([-1, 1, 1] if flip_x else 1)
    kp = (3 * raw.landmark68_ids[:, None] + np.arange(3)).ravel()
    d = {"u": (mean.reshape(-1, 1) * 1000).astype(np.float32),
         "w_shp": (raw.id_basis[:S].reshape(S, -1).T * 1000).astype(np.float32),
         "w_exp": (raw.exp_basis[:E].reshape(E, -1).T * 1000).astype(np.float32), "keypoints": kp.astype(np.int64)}
    if tri == "inside":
        d["tri"] = raw.triangles.T.astype(np.int32)
    elif tri == "bogus":
        d["tri"] = (raw.triangles.T[:, :100] * 7).astype(np.int32)  # another mesh's list: out of range
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=4)


def test_bfm_deng_reader(ict, tmp_path):
    raw = ict[0]
    write_bfm_deng(tmp_path / "BFM_model_front.mat", raw)
    got = read_bfm_deng(tmp_path / "BFM_model_front.mat")
    _assert_same_geometry(got, raw)
    assert got.id_basis.shape == (S, 9409, 3) and got.exp_basis.shape == (E, 9409, 3)
    assert got.exp_lower is None and got.exp_upper is None  # PCA: unbounded
    write_bfm_deng(tmp_path / "mm.mat", raw, unit_per_mm=1.0)  # mm instead of dm: refused
    with pytest.raises(FaceModelError, match="units"):
        read_face_model_source("bfm-deng", tmp_path / "mm.mat")


def test_3ddfa_reader(ict, tmp_path):
    raw = ict[0]
    write_3ddfa(tmp_path / "bfm_noneck_v3.pkl", raw)
    _assert_same_geometry(read_3ddfa(tmp_path / "bfm_noneck_v3.pkl"), raw)
    # the file's own tri belongs to another mesh: refused, and 3DDFA_V2's separate tri.pkl replaces it
    write_3ddfa(tmp_path / "bogus.pkl", raw, tri="bogus")
    with pytest.raises(FaceModelError, match="triangle indices"):
        read_3ddfa(tmp_path / "bogus.pkl")
    with open(tmp_path / "tri.pkl", "wb") as f:
        pickle.dump(raw.triangles.T.astype(np.int32), f, protocol=4)
    _assert_same_geometry(read_3ddfa(tmp_path / "bogus.pkl", triangles=tmp_path / "tri.pkl"), raw)
    write_3ddfa(tmp_path / "mirrored.pkl", raw, flip_x=True)
    with pytest.raises(FaceModelError, match="do not face"):
        read_face_model_source("3ddfa", tmp_path / "mirrored.pkl")


def _flame_jaw_joint(raw):
    return raw.mean[raw.landmark68_ids[[2, 14]]].mean(0) / 1000


def write_flame(path, raw, *, seed: int = 0, protocol: int | str = 2) -> dict:
    """FLAME generic_model.pkl layout (metres, chumpy arrays, 300 identity + E expression shapedirs)."""
    rng = np.random.default_rng(seed)
    v = raw.mean.astype(np.float64) / 1000
    n = len(v)
    shapedirs = np.zeros((n, 3, 300 + E), np.float32)
    shapedirs[:, :, :S] = raw.id_basis[:S].transpose(1, 2, 0) / 1000
    shapedirs[:, :, 300:] = raw.exp_basis[:E].transpose(1, 2, 0) / 1000
    lm = raw.landmark68_ids
    reg = np.zeros((5, n))
    for j, group in enumerate(([0, 16], [5, 11], [2, 14], list(range(36, 42)), list(range(42, 48)))):
        reg[j, lm[group]] = 1.0 / len(group)
    mouth_y = raw.mean[lm[62:67], 1].mean()
    jaw_w = np.clip((mouth_y - raw.mean[:, 1]) / 15.0, 0.0, 1.0)
    weights = np.zeros((n, 5))
    weights[:, 2], weights[:, 1] = jaw_w, 1 - jaw_w
    posedirs = rng.normal(size=(n, 3, 36)) * 1e-4
    data = {"v_template": v, "shapedirs": shapedirs, "f": raw.triangles.astype(np.uint32), "posedirs": posedirs,
            "J_regressor": sp.csc_matrix(reg), "weights": weights, "J": reg @ v,
            "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
            "bs_style": "lbs", "bs_type": "lrotmin"}
    write_chumpy_pickle(path, data, {"v_template", "shapedirs", "posedirs", "weights", "J"}, protocol=protocol)
    return data


def write_flame_embeddings(folder, raw, *, seed: int = 0):
    """flame_static_embedding.pkl (landmarks 17-67) and flame_dynamic_embedding.npy (79 yaw rows of 17)."""
    rng = np.random.default_rng(seed)
    fi, bc = _tri_embedding(raw, raw.landmark68_ids)
    with open(folder / "flame_static_embedding.pkl", "wb") as f:
        pickle.dump({"lmk_face_idx": fi[17:].astype(np.uint32), "lmk_b_coords": bc[17:]}, f, protocol=2)
    dyn_fi = rng.integers(0, len(raw.triangles), (79, 17))
    dyn_bc = rng.dirichlet(np.ones(3), (79, 17))
    dyn_fi[0], dyn_bc[0] = fi[:17], bc[:17]  # row 0: the frontal jawline
    np.save(folder / "flame_dynamic_embedding.npy", {"lmk_face_idx": dyn_fi, "lmk_b_coords": dyn_bc},
            allow_pickle=True)
    return folder / "flame_static_embedding.pkl", folder / "flame_dynamic_embedding.npy"


def test_flame_landmark_embeddings(ict, tmp_path):
    raw = ict[0]
    static, dynamic = write_flame_embeddings(tmp_path, raw)
    np.testing.assert_array_equal(flame_landmark_vertices([static, dynamic], raw.mean, raw.triangles),
                                  raw.landmark68_ids)
    fi, bc = _tri_embedding(raw, raw.landmark68_ids)
    np.savez(tmp_path / "lmk68.npz", lmk_face_idx=fi, lmk_b_coords=bc)
    np.testing.assert_array_equal(flame_landmark_vertices([tmp_path / "lmk68.npz"], raw.mean, raw.triangles),
                                  raw.landmark68_ids)
    with pytest.raises(FaceModelError, match="51 inner landmarks"):
        flame_landmark_vertices([static], raw.mean, raw.triangles)


def test_flame_reader_and_jaw(ict, tmp_path):
    raw = ict[0]
    data = write_flame(tmp_path / "generic_model.pkl", raw, protocol="py2")
    static, dynamic = write_flame_embeddings(tmp_path, raw)
    with pytest.raises(FaceModelError, match="landmark embedding"):
        read_flame(tmp_path / "generic_model.pkl")
    got = read_flame(tmp_path / "generic_model.pkl", [static, dynamic], jaw_max_deg=30)
    assert got.id_basis.shape[0] == 300 and got.exp_basis.shape[0] == 2 + E
    _assert_same_geometry(got, raw, exp_offset=2)
    assert got.exp_names[:2] == ("jaw_open", "jaw_open_arc")
    np.testing.assert_array_equal(got.exp_lower[:2], [0, 0])
    np.testing.assert_array_equal(got.exp_upper[:2], [1, 1])
    assert np.all(np.isinf(got.exp_lower[2:])) and np.all(np.isinf(got.exp_upper[2:]))
    # ground truth: the jaw joint rotated by theta about x, pose correctives of joint 2, linear blend skinning
    j2 = data["J_regressor"].toarray()[2] @ data["v_template"]
    w = data["weights"][:, 2:3]
    for deg in (8.0, 21.0):
        r = rodrigues(np.array([math.radians(deg), 0, 0]))
        v_posed = data["v_template"] + data["posedirs"][:, :, 9:18] @ (r - np.eye(3)).ravel()
        truth = (v_posed + w * ((v_posed - j2) @ (r - np.eye(3)).T)) * 1000
        coef = JawBlendshapes.coefficients(math.radians(deg), math.radians(30))
        lin = got.mean + np.tensordot(coef, got.exp_basis[:2], axes=1)
        chin = raw.landmark68_ids[8]
        assert truth[chin, 1] < raw.mean[chin, 1] - 3.0  # the jaw really opens
        assert np.abs(lin - truth).max() < 0.05


def test_flame_conversion_end_to_end(ict, ict_files, tmp_path):
    raw, ict_model, mp = ict
    write_flame(tmp_path / "generic_model.pkl", raw, protocol=0)
    static, dynamic = write_flame_embeddings(tmp_path, raw)
    out = tmp_path / "flame.npz"
    model = convert_face_model("flame", tmp_path / "generic_model.pkl", out, mediapipe_mesh=ict_files[1],
                               options=ConvertOptions(flame_landmarks=(static, dynamic), num_shape=20,
                                                      num_expression=4))
    assert load_face_model(out).hash == model.hash and model.name == "flame"
    assert model.num_shape == 20 and model.exp_names == ("jaw_open", "jaw_open_arc", "exp000", "exp001")
    face = model.masks["face"]
    assert face[model.mediapipe_ids[:468]].all() and 0.5 < face.mean() < 1.0  # MediaPipe's region of the head
    assert np.median(correspondence_residual_mm(model, mp)) < 3.0


@pytest.mark.parametrize("kind", ["bfm-deng", "3ddfa"])
def test_pca_conversions_end_to_end(kind, ict, ict_files, tmp_path):
    raw, ict_model, mp = ict
    src = tmp_path / FORMATS[kind].expected_file
    (write_bfm_deng if kind == "bfm-deng" else write_3ddfa)(src, raw)
    model = convert_face_model(kind, src, tmp_path / "m.npz", mediapipe_mesh=ict_files[1])
    back = load_face_model(tmp_path / "m.npz")
    assert back.hash == model.hash and model.num_shape == S and model.num_expression == E
    np.testing.assert_allclose(model.mean, ict_model.mean, atol=1e-3)
    assert np.median(correspondence_residual_mm(model, mp)) < 3.0
    # same mesh, fewer identity modes for the shape fit: nearly the same MediaPipe vertices as ICT's own
    d = np.linalg.norm(model.mean[model.mediapipe_ids[:468]] - ict_model.mean[ict_model.mediapipe_ids[:468]], axis=1)
    assert np.median(d) < 3.0


def test_unknown_kinds_and_missing_files(tmp_path):
    with pytest.raises(FaceModelError, match="unknown face-model kind"):
        read_face_model_source("bfm2017", tmp_path / "x")
    with pytest.raises(FaceModelError, match="BFM_model_front.mat"):
        read_face_model_source("bfm-deng", tmp_path / "missing.mat")
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(FaceModelError, match="not 3DDFA"):
        read_3ddfa(tmp_path / "list.pkl")


# ---------------------------------------------------------------------------------------------- pt model
def test_pt_model_info(tmp_path, capsys):
    path = tiny_model().save(tmp_path / "m.npz")
    assert _pt_model(["model", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_id"] == tiny_model().model_id and info["vertices"] == 30
    assert info["expression_bounded"] == 3 and info["masks"]["lip"] == int(tiny_model().masks["lip"].sum())
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    assert _pt_model(["model", "info", str(tmp_path / "other.npz")]) == 1
    assert "not a PersonaTalk face model" in capsys.readouterr().err


def test_pt_model_convert_and_info(ict, ict_files, tmp_path, capsys):
    raw = ict[0]
    write_3ddfa(tmp_path / "bfm_noneck_v3.pkl", raw, tri="bogus")
    with open(tmp_path / "tri.pkl", "wb") as f:
        pickle.dump(raw.triangles.T.astype(np.int32), f, protocol=4)
    out = tmp_path / "3ddfa.npz"
    argv = ["model", "convert", "--kind", "3ddfa", str(tmp_path / "bfm_noneck_v3.pkl"), "--out", str(out),
            "--mediapipe-mesh", str(ict_files[1])]
    assert _pt_model(argv) == 1 and "triangle indices" in capsys.readouterr().err
    assert _pt_model(argv + ["--triangles", str(tmp_path / "tri.pkl"), "--num-expression", "2"]) == 0
    model = load_face_model(out)
    assert model.model_id in capsys.readouterr().out and model.num_expression == 2
    assert _pt_model(["model", "info", str(out), "--mediapipe-mesh", str(ict_files[1])]) == 0
    text = capsys.readouterr().out
    assert "3ddfa-bfm" in text and "9409 vertices" in text and "median" in text and "lip" in text
