"""Build :class:`~pt_data.face_model.FaceModel` files from the morphable models users may own.

Every source is first read into a :class:`RawFaceModel` (bases in millimetres, triangles, the 68 Multi-PIE
landmark vertices); :func:`build_face_model` then computes what the project adds: the correspondence of
MediaPipe's 478 face-mesh points to model vertices and the vertex masks.

The correspondence is found by aligning MediaPipe's canonical face mesh (``canonical_face_model.obj`` /
``face_model_with_iris.obj``, Apache-2.0, from the MediaPipe repository) to the model's mean face:
a similarity transform from eleven semantic points (eye corners, nose, mouth corners, lip centres, chin),
refined by iterative closest points over all 468 mesh points, then a few rounds of fitting the model's
identity coefficients to the aligned canonical mesh (so the model's face takes MediaPipe's proportions)
and re-matching every point to its nearest model vertex. Silhouette points of MediaPipe's face oval get a
low weight (they slide over the face as the head turns); the ten iris points get weight 0.

ICT-FaceKit's light arrays (MIT) are read here; BFM (Deng et al.), FLAME and 3DDFA readers live in
:mod:`pt_data.face_model_formats`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pt_data.face_model import FaceModel, FaceModelError, load_face_model
from pt_data.weights import default_weights_dir

#: MediaPipe face-mesh indices and the matching Multi-PIE 68 indices (0-based) of eleven semantic points:
#: right eye outer/inner, left eye inner/outer, nose tip, subnasale, mouth right/left, upper/lower lip, chin.
MP_SEMANTIC = (33, 133, 362, 263, 1, 2, 61, 291, 0, 17, 152)
LM68_SEMANTIC = (36, 39, 42, 45, 30, 33, 48, 54, 51, 57, 8)
#: MediaPipe's face oval (silhouette) points.
MP_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
                148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
#: MediaPipe's outer lip contour, in order around the mouth.
MP_OUTER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
MP_SUBNASALE = 2
NUM_MP_POINTS = 478
OVAL_WEIGHT = 0.3

ICT_FILE = "ict_facemodel_light_face_head_11248v.npz"
ICT_FACE_VERTICES = 9409  # vertices 0..9408 of the ICT light model are the face; the rest head and neck
MEDIAPIPE_MESH_FILES = ("face_model_with_iris.obj", "canonical_face_model.obj")
DEFAULT_MODEL_FILE = "face_models/ict-light-face.ptfm.npz"
FACE_MODEL_ENV = "PT_FACE_MODEL"


@dataclass
class RawFaceModel:
    """A source model read into common arrays (millimetres, any vertex count) before the project's additions."""

    name: str
    mean: np.ndarray  # (V, 3)
    id_basis: np.ndarray  # (S, V, 3)
    exp_basis: np.ndarray  # (E, V, 3)
    triangles: np.ndarray  # (F, 3)
    landmark68_ids: np.ndarray  # (68,)
    exp_names: tuple[str, ...] = ()
    exp_lower: np.ndarray | None = None
    exp_upper: np.ndarray | None = None
    source: str = ""
    face_mask: np.ndarray | None = None  # (V,) bool; None = every vertex is face
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- sources
def quads_to_triangles(faces: np.ndarray) -> np.ndarray:
    """(F, 4) faces with -1 in the 4th column for triangles -> (F', 3) triangles (quads split on 0-2)."""
    faces = np.asarray(faces, np.int64)
    tri = faces[:, :3]
    quads = faces[faces[:, 3] >= 0]
    return np.concatenate([tri, quads[:, [0, 2, 3]]]).astype(np.int32)


def keep_vertices(raw: RawFaceModel, keep: np.ndarray) -> RawFaceModel:
    """The model restricted to the vertices where ``keep`` is true (triangles and ids remapped)."""
    keep = np.asarray(keep, bool)
    new_id = np.full(len(keep), -1, np.int64)
    new_id[keep] = np.arange(int(keep.sum()))
    tri = raw.triangles[np.all(keep[raw.triangles], axis=1)]
    if np.any(~keep[raw.landmark68_ids]):
        raise FaceModelError(f"{raw.name}: some 68-point landmark vertices fall outside the kept region")
    return RawFaceModel(name=raw.name, mean=raw.mean[keep], id_basis=raw.id_basis[:, keep],
                        exp_basis=raw.exp_basis[:, keep], triangles=new_id[tri].astype(np.int32),
                        landmark68_ids=new_id[raw.landmark68_ids].astype(np.int32), exp_names=raw.exp_names,
                        exp_lower=raw.exp_lower, exp_upper=raw.exp_upper, source=raw.source,
                        face_mask=None if raw.face_mask is None else raw.face_mask[keep], extra=raw.extra)


def read_ict_light(path: str | os.PathLike, *, face_only: bool = True) -> RawFaceModel:
    """ICT-FaceKit's light arrays (centimetres, 100 identity modes, 57 blendshapes in [0, 1]).

    ``face_only`` keeps vertices 0..9408 (the face), dropping head and neck.
    """
    with np.load(path, allow_pickle=False) as z:
        need = {"neutral", "identity_deltas", "expression_deltas", "faces", "landmarks68"}
        if not need <= set(z.files):
            raise FaceModelError(f"{path} is not ICT-FaceKit's light arrays: it lacks {sorted(need - set(z.files))}")
        cm_to_mm = 10.0
        names = tuple(str(s) for s in z["expression_names"]) if "expression_names" in z.files else ()
        e = z["expression_deltas"].shape[0]
        raw = RawFaceModel(name="ict-light-face" if face_only else "ict-light", mean=z["neutral"] * cm_to_mm,
                           id_basis=z["identity_deltas"] * cm_to_mm, exp_basis=z["expression_deltas"] * cm_to_mm,
                           triangles=quads_to_triangles(z["faces"]), landmark68_ids=z["landmarks68"],
                           exp_names=names, exp_lower=np.zeros(e, np.float32), exp_upper=np.ones(e, np.float32),
                           source=f"ICT-FaceKit light arrays ({Path(path).name}, MIT)")
    if face_only:
        keep = np.zeros(raw.mean.shape[0], bool)
        keep[:ICT_FACE_VERTICES] = True
        raw = keep_vertices(raw, keep)
    return raw


# ---------------------------------------------------------------------------------------------- geometry
def read_obj_vertices(path: str | os.PathLike) -> np.ndarray:
    """The ``v x y z`` lines of a Wavefront OBJ as (N, 3) float64."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("v "):
                rows.append([float(x) for x in line.split()[1:4]])
    if not rows:
        raise FaceModelError(f"{path} has no vertices")
    return np.asarray(rows, np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
                         ) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: ``s, R, t`` minimising sum w |s R src + t - dst|^2 (proper rotation, no reflection)."""
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    cov = (b * w[:, None]).T @ a
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    r = u @ fix @ vt
    var = (w * (a ** 2).sum(1)).sum()
    s = float((sig * np.diag(fix)).sum() / var)
    return s, r, mu_d - s * r @ mu_s


def _ridge(a: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    return np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ b)


@dataclass(frozen=True)
class Correspondence:
    """MediaPipe point -> model vertex, per-point weights and the alignment residual (mm)."""

    ids: np.ndarray
    weights: np.ndarray
    residual_mm: np.ndarray


def mediapipe_correspondence(raw: RawFaceModel, mp_points: np.ndarray, *, icp_iters: int = 10,
                             shape_rounds: int = 3, shape_reg: float = 1.0) -> Correspondence:
    """Match MediaPipe's canonical points (478 or 468, any units) to vertices of ``raw`` (see module doc)."""
    from scipy.spatial import cKDTree

    mp = np.asarray(mp_points, np.float64)
    n_mesh = min(len(mp), 468)
    face = np.ones(len(raw.mean), bool) if raw.face_mask is None else raw.face_mask
    face_ids = np.flatnonzero(face)
    verts = raw.mean.astype(np.float64)
    src = mp[list(MP_SEMANTIC)]
    dst = verts[raw.landmark68_ids[list(LM68_SEMANTIC)]]
    s, r, t = similarity_transform(src, dst)
    weights = np.ones(n_mesh)
    weights[list(MP_FACE_OVAL)] = OVAL_WEIGHT
    shape = np.zeros(raw.id_basis.shape[0])
    basis = raw.id_basis.reshape(raw.id_basis.shape[0], -1, 3).astype(np.float64)
    for _ in range(max(shape_rounds, 1)):
        tree = cKDTree(verts[face_ids])
        for _ in range(icp_iters):
            aligned = (s * (r @ mp[:n_mesh].T)).T + t
            _, nn = tree.query(aligned)
            s, r, t = similarity_transform(mp[:n_mesh], verts[face_ids[nn]], weights)
        aligned = (s * (r @ mp[:n_mesh].T)).T + t
        _, nn = tree.query(aligned)
        ids = face_ids[nn]
        if shape_rounds <= 0 or basis.shape[0] == 0:
            break
        # identity coefficients that move the matched vertices onto the aligned canonical points
        a = basis[:, ids, :].transpose(1, 2, 0).reshape(-1, basis.shape[0]) * np.repeat(weights, 3)[:, None]
        b = (aligned - raw.mean[ids]).reshape(-1) * np.repeat(weights, 3)
        shape = _ridge(a, b, shape_reg * len(ids))
        verts = raw.mean + np.tensordot(shape, basis, axes=([0], [0]))
    aligned_all = (s * (r @ mp.T)).T + t
    _, nn = cKDTree(verts[face_ids]).query(aligned_all)
    ids = face_ids[nn].astype(np.int32)
    w = np.ones(len(mp), np.float32)
    w[list(MP_FACE_OVAL)] = OVAL_WEIGHT
    w[468:] = 0.0
    residual = np.linalg.norm(verts[ids] - aligned_all, axis=1)
    return Correspondence(ids=ids, weights=w, residual_mm=residual.astype(np.float32))


def _inside_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule: which 2-D ``points`` lie inside the closed polygon ``poly``."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    cross = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / np.where(y1 == y0, 1e-12, y1 - y0) + x0)
    return (cross.sum(1) % 2) == 1


def vertex_masks(raw: RawFaceModel, mp_ids: np.ndarray, *, lip_grow: float = 1.15,
                 lip_depth_mm: float = 12.0) -> dict[str, np.ndarray]:
    """Face, lower-face, lip and upper-face masks from the MediaPipe correspondence on the mean face.

    Lip: vertices inside the outer-lip contour (grown by ``lip_grow`` about its centre) seen from the front,
    no deeper than ``lip_depth_mm`` behind the contour. Lower face: the face below the subnasale.
    """
    v = raw.mean
    face = np.ones(len(v), bool) if raw.face_mask is None else raw.face_mask.copy()
    lip_pts = v[mp_ids[list(MP_OUTER_LIP)]]
    centre = lip_pts[:, :2].mean(0)
    poly = centre + (lip_pts[:, :2] - centre) * lip_grow
    lip = _inside_polygon(v[:, :2], poly) & (v[:, 2] >= lip_pts[:, 2].min() - lip_depth_mm) & face
    lower = face & (v[:, 1] < v[mp_ids[MP_SUBNASALE], 1])
    return {"face": face, "lower_face": lower | lip, "lip": lip, "upper_face": face & ~(lower | lip)}


def build_face_model(raw: RawFaceModel, mediapipe_mesh: str | os.PathLike) -> FaceModel:
    """The project's model from a source: correspondence to MediaPipe's mesh, masks, hash."""
    mp = read_obj_vertices(mediapipe_mesh)
    if len(mp) not in (468, NUM_MP_POINTS):
        raise FaceModelError(f"{mediapipe_mesh}: {len(mp)} vertices; MediaPipe's canonical mesh has 468 or 478")
    corr = mediapipe_correspondence(raw, mp)
    ids, weights = corr.ids, corr.weights
    if len(ids) == 468:  # no iris points: reuse the eye-centre vertices, weight 0
        ids = np.concatenate([ids, np.repeat(ids[[468 - 1]], 10)])
        weights = np.concatenate([weights, np.zeros(10, np.float32)])
    return FaceModel(name=raw.name, mean=raw.mean, id_basis=raw.id_basis, exp_basis=raw.exp_basis,
                     triangles=raw.triangles, landmark68_ids=raw.landmark68_ids, mediapipe_ids=ids,
                     mediapipe_weights=weights, masks=vertex_masks(raw, ids), exp_names=raw.exp_names,
                     exp_lower=raw.exp_lower, exp_upper=raw.exp_upper, source=raw.source)


# ---------------------------------------------------------------------------------------------- lookup
def shared_data_dir() -> Path | None:
    """``$PT_SHARED_DATA`` or ``../shared/data`` beside the project checkout, when it exists."""
    env = os.environ.get("PT_SHARED_DATA")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    return next((c for c in cands if c.is_dir()), None)


def _find(names: tuple[str, ...], subdirs: tuple[str, ...]) -> Path | None:
    roots = [default_weights_dir() / "face_models"]
    shared = shared_data_dir()
    if shared is not None:
        roots += [shared / "face_models" / d for d in subdirs]
    for root in roots:
        for n in names:
            if (root / n).is_file():
                return root / n
    return None


def find_mediapipe_mesh() -> Path:
    """MediaPipe's canonical mesh: under ``<weights dir>/face_models/`` or the shared data folder."""
    p = _find(MEDIAPIPE_MESH_FILES, ("mediapipe_face_geometry",))
    if p is None:
        raise FaceModelError(
            f"MediaPipe's canonical face mesh was not found: put face_model_with_iris.obj (or "
            f"canonical_face_model.obj) from github.com/google-ai-edge/mediapipe, "
            f"mediapipe/modules/face_geometry/data/ (Apache-2.0), into {default_weights_dir() / 'face_models'}")
    return p


def default_face_model(path: str | os.PathLike | None = None) -> FaceModel:
    """The model to use when none is named: ``path``, ``$PT_FACE_MODEL``, or the converted ICT light face.

    The ICT model is converted on first use from ``ict_facemodel_light_face_head_11248v.npz`` (under the
    weights directory's ``face_models/`` or the shared data) and cached under the weights directory.
    """
    path = path or os.environ.get(FACE_MODEL_ENV)
    if path:
        return load_face_model(path)
    cached = default_weights_dir() / DEFAULT_MODEL_FILE
    if cached.is_file():
        return load_face_model(cached)
    src = _find((ICT_FILE,), ("ict_facekit_light",))
    if src is None:
        raise FaceModelError(
            f"no face model: set ${FACE_MODEL_ENV} to a converted model, or put ICT-FaceKit's light arrays "
            f"({ICT_FILE}, MIT, github.com/ICT-VGL/ICT-FaceKit) into {default_weights_dir() / 'face_models'}")
    model = build_face_model(read_ict_light(src), find_mediapipe_mesh())
    try:
        model.save(cached)
    except OSError:  # a read-only cache is fine: convert again next time
        pass
    return model
