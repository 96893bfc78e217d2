"""Readers of the morphable models users may own, and :func:`convert_face_model` over all of them.

Each reader returns a :class:`~pt_data.face_model_convert.RawFaceModel`: vertices and bases in millimetres
in the head frame of :mod:`pt_data.face_model` (x to the subject's left, y up, z towards the camera, which
all four sources already use), 0-based triangles and the 68 Multi-PIE landmark vertex ids.
:func:`convert_face_model` then adds the MediaPipe correspondence and the masks
(:func:`~pt_data.face_model_convert.build_face_model`) and writes the project's ``.npz``.

Sources (kinds of :data:`FORMATS`):

- ``ict``: ICT-FaceKit's light arrays (MIT, in the shared data); read by
  :func:`~pt_data.face_model_convert.read_ict_light`.
- ``bfm-deng``: Deng et al.'s ``BFM_model_front.mat`` (Deep3DFaceRecon; built from BFM 2009 + FaceWarehouse
  expressions). MATLAB v5 file: ``meanshape`` (1, 3N), ``idBase`` (3N, 80), ``exBase`` (3N, 64), xyz
  interleaved per vertex, in decimetres (``transferBFM09`` divides BFM's micrometres by 1e5); ``tri`` (F, 3)
  and ``keypoints`` (1, 68) 1-based. The expression basis is PCA: unbounded coefficients.
- ``flame``: FLAME's ``generic_model.pkl``: a Python-2 pickle of chumpy arrays, read without chumpy by
  :class:`SafeUnpickler`. ``v_template`` (5023, 3) in metres; ``shapedirs`` (5023, 3, 400): 300 identity then
  100 expression components; ``f`` faces; ``posedirs`` (5023, 3, 36), ``J_regressor`` (5, 5023, sparse),
  ``weights`` (5023, 5), ``kintree_table`` (2, 5) (joints: global, neck, jaw, left eye, right eye).
  FLAME opens the jaw by rotating a joint, which a linear model cannot do directly; two linear expression
  components reproduce jaw opening (see :func:`jaw_blendshapes`). The 68 landmark vertices come from FLAME's
  landmark embeddings (see :func:`flame_landmark_vertices`). The full head (scalp, neck, eyeballs) is kept;
  the ``face`` mask is the region MediaPipe's face mesh covers (:func:`mediapipe_face_region`).
- ``3ddfa``: 3DDFA(_V2)'s ``bfm_noneck_v3.pkl`` (BFM 2009 without neck + Zhu et al.'s expressions): ``u``
  (3N, 1), ``w_shp`` (3N, 40), ``w_exp`` (3N, 10), xyz interleaved, in BFM's micrometres; ``keypoints`` (204,)
  = flat indices ``3 * vertex + axis`` of the 68 landmarks; ``tri`` (3, F). 3DDFA_V2 replaces the file's
  ``tri`` with ``configs/tri.pkl`` ("re-built for bfm_noneck_v3"): pass that file as ``triangles``.

Pickles are untrusted input: :class:`SafeUnpickler` builds numpy arrays, scipy sparse matrices and
stand-ins of chumpy arrays only, and refuses every other class with a :class:`UnsafePickleError`.
"""
from __future__ import annotations

import codecs
import math
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pt_data.face_model import FaceModel, FaceModelError
from pt_data.face_model_convert import (MP_FACE_OVAL, NUM_MP_POINTS, RawFaceModel, _inside_polygon,
                                        build_face_model, find_mediapipe_mesh, mediapipe_correspondence,
                                        read_ict_light, read_obj_vertices, similarity_transform)

DM_TO_MM = 100.0
M_TO_MM = 1000.0
UM_TO_MM = 1e-3
FLAME_IDENTITY_COMPONENTS = 300  # shapedirs: 300 identity then 100 expression components (FLAME 2017-2023)
FLAME_JAW_JOINT = 2
JAW_NAMES = ("jaw_open", "jaw_open_arc")


class UnsafePickleError(FaceModelError):
    """A pickle asked for a class or function outside :class:`SafeUnpickler`'s allowlist."""


# ------------------------------------------------------------------------------------------ safe pickles
class ChumpyArray:
    """Stand-in for a pickled chumpy object: keeps the state dict (a ``Ch`` keeps its array under ``'x'``).

    chumpy's ``Ch.__getstate__`` pickles ``__dict__`` minus its weak-reference caches; ``__setstate__``
    restores that dict, so the array of a plain ``Ch`` is ``state['x']``.
    """

    chumpy_class = "chumpy.ch.Ch"

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"state": state}

    def array(self) -> np.ndarray:
        """The wrapped array; a :class:`FaceModelError` for chumpy expressions that hold no array."""
        if "x" not in self.state:
            raise FaceModelError(f"a pickled {self.chumpy_class} object holds no array ('x'); only plain chumpy "
                                 f"arrays can be read without chumpy (keys: {sorted(map(str, self.state))})")
        return np.asarray(self.state["x"])


class SparseMatrixState:
    """Stand-in for a pickled scipy.sparse CSC/CSR matrix (its ``__dict__``: data, indices, indptr, shape)."""

    sparse_format = "csc"

    def __setstate__(self, state: dict) -> None:
        self.state = state

    def to_scipy(self):
        """The matrix rebuilt through scipy's public constructor (no pickled scipy internals are trusted)."""
        import scipy.sparse as sp

        s = self.state
        shape = tuple(int(n) for n in s.get("_shape", s.get("shape", ())))
        try:
            parts = (np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"]))
        except KeyError as e:
            raise FaceModelError(f"a pickled sparse matrix lacks {e}") from None
        cls = sp.csc_matrix if self.sparse_format == "csc" else sp.csr_matrix
        return cls(parts, shape=shape)


def _numpy_reconstructors() -> dict[str, Callable]:
    """numpy's pickle helpers, taken from numpy itself (their module moved between numpy versions)."""
    return {"_reconstruct": np.ndarray((0,)).__reduce__()[0], "scalar": np.float64(0).__reduce__()[0],
            "_frombuffer": np.ndarray((1,)).__reduce_ex__(5)[0]}


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol < 3 (latin-1 only, nothing else)."""
    if encoding.replace("-", "").lower() != "latin1":
        raise UnsafePickleError(f"a pickle asks for _codecs.encode(..., {encoding!r}); only latin-1 is allowed")
    return codecs.encode(text, "latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for model files that builds data only.

    Allowed: numpy arrays, dtypes and scalars; ``set``/``frozenset``/``object``; ``_codecs.encode`` (how
    Python 3 pickles bytes at protocol < 3); scipy CSC/CSR matrices (as :class:`SparseMatrixState`); any
    ``chumpy`` class (as a :class:`ChumpyArray`, chumpy need not be installed); ``copy_reg._reconstructor`` for
    those stand-ins only. Everything else raises :class:`UnsafePickleError`. Use with ``encoding='latin1'``
    for Python-2 pickles (numpy's raw bytes were pickled as ``str``).
    """

    _SPARSE_MODULES = ("scipy.sparse", "scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr",
                       "scipy.sparse._csr", "scipy.sparse.compressed", "scipy.sparse._compressed")
    _NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                      "numpy._core.numeric")

    def __init__(self, file, *, source: str = "", encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self._source = source
        self._numpy = _numpy_reconstructors()
        self._stand_ins: dict[str, type] = {}

    def _stand_in(self, base: type, qualified: str, **attrs: Any) -> type:
        if qualified not in self._stand_ins:
            self._stand_ins[qualified] = type(base.__name__, (base,), dict(attrs))
        return self._stand_ins[qualified]

    def _reconstructor(self, cls: type, base: type, state: Any) -> Any:
        if base is not object or state is not None or not issubclass(cls, (ChumpyArray, SparseMatrixState)):
            raise UnsafePickleError(f"{self._source}: copy_reg._reconstructor is allowed only for chumpy arrays "
                                    f"and sparse matrices, not {cls!r}")
        return object.__new__(cls)

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "chumpy":
            return self._stand_in(ChumpyArray, f"{module}.{name}", chumpy_class=f"{module}.{name}")
        if module in self._SPARSE_MODULES and name in ("csc_matrix", "csr_matrix", "csc_array", "csr_array"):
            return self._stand_in(SparseMatrixState, f"{module}.{name}", sparse_format=name[:3])
        if module in self._NUMPY_MODULES and name in self._numpy:
            return self._numpy[name]
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in ("__builtin__", "builtins") and name in ("set", "frozenset", "object"):
            return {"set": set, "frozenset": frozenset, "object": object}[name]
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return self._reconstructor
        raise UnsafePickleError(
            f"{self._source or 'pickle'} asks for {module}.{name}; model pickles may hold only numpy arrays, "
            f"scipy sparse matrices and chumpy arrays (loading other objects could run arbitrary code). "
            f"If this is a genuine model file, re-save its arrays with numpy.savez and convert that")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: persistent ids (torch tensors?) are not read from model pickles")


def _unpickle(f, source: Path) -> Any:
    try:
        return SafeUnpickler(f, source=str(source)).load()
    except FaceModelError:
        raise
    except Exception as e:  # a corrupt or foreign pickle fails in many ways; name the file
        raise FaceModelError(f"{source} is not a readable pickle of model arrays: {type(e).__name__}: {e}") from e


def safe_pickle_load(path: str | os.PathLike) -> Any:
    """Unpickle a model file with :class:`SafeUnpickler` (Python-2 pickles included)."""
    path = Path(path)
    if not path.is_file():
        raise FaceModelError(f"no file at {path}")
    with open(path, "rb") as f:
        return _unpickle(f, path)


def load_arrays_file(path: str | os.PathLike) -> Any:
    """A ``.pkl``, ``.npz`` or ``.npy`` of arrays, never running pickled code (object ``.npy`` files included)."""
    path = Path(path)
    if not path.is_file():
        raise FaceModelError(f"no file at {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except ValueError as e:
            raise FaceModelError(f"{path}: {e} (object arrays in .npz files are not read)") from e
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            _, _, dtype = read_header(f)
            if not dtype.hasobject:
                return np.load(path, allow_pickle=False)
            arr = _unpickle(f, path)  # np.save pickles object arrays whole
        return arr[()] if isinstance(arr, np.ndarray) and arr.shape == () else arr
    return safe_pickle_load(path)


def to_array(obj: Any, what: str = "array") -> np.ndarray:
    """A numpy array from a pickled value: ndarray, chumpy stand-in, sparse stand-in (densified) or number."""
    if isinstance(obj, ChumpyArray):
        return obj.array()
    if isinstance(obj, SparseMatrixState):
        return np.asarray(obj.to_scipy().toarray())
    if isinstance(obj, np.ndarray) or np.isscalar(obj) or isinstance(obj, (list, tuple)):
        return np.asarray(obj)
    raise FaceModelError(f"{what} is a {type(obj).__name__}, not an array")


def _require(d: Any, keys: Sequence[str], path: Path, what: str) -> None:
    if not isinstance(d, Mapping):
        raise FaceModelError(f"{path} is not {what}: it holds a {type(d).__name__}, not a dict of arrays")
    missing = [k for k in keys if k not in d]
    if missing:
        raise FaceModelError(f"{path} is not {what}: it lacks {missing} (it has {sorted(map(str, d))[:20]})")


def _triangles(tri: np.ndarray, num_vertices: int, path: Path, *, one_based: bool | None = None) -> np.ndarray:
    """(F, 3) 0-based triangles from (F, 3) or (3, F), 0- or 1-based (``None``: detect from the range)."""
    tri = np.asarray(tri)
    if tri.ndim != 2 or 3 not in tri.shape:
        raise FaceModelError(f"{path}: triangles have shape {tri.shape}, want (F, 3) or (3, F)")
    if tri.shape[1] != 3:
        tri = tri.T
    tri = np.rint(tri).astype(np.int64)
    if one_based is None:
        one_based = tri.min() >= 1 and tri.max() == num_vertices
    if one_based:
        tri = tri - 1
    if tri.min() < 0 or tri.max() >= num_vertices:
        raise FaceModelError(f"{path}: triangle indices span {tri.min()}..{tri.max()} but the model has "
                             f"{num_vertices} vertices (a triangle list of another mesh?)")
    return tri.astype(np.int32)


def _bases(columns: np.ndarray, num_vertices: int, scale: float) -> np.ndarray:
    """(3N, K) xyz-interleaved columns -> (K, N, 3), scaled."""
    columns = np.asarray(columns, np.float64)
    if columns.ndim == 1:
        columns = columns[:, None]
    return (columns.T.reshape(columns.shape[1], num_vertices, 3) * scale).astype(np.float32)


# ------------------------------------------------------------------------------------------ BFM (Deng et al.)
def read_bfm_deng(path: str | os.PathLike) -> RawFaceModel:
    """Deng et al.'s ``BFM_model_front.mat`` (decimetres, 80 identity + 64 expression PCA components)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        d = loadmat(path)
    except (NotImplementedError, ValueError, OSError) as e:
        raise FaceModelError(f"{path} is not a MATLAB v5 file readable by scipy.io.loadmat: {e}") from e
    _require(d, ("meanshape", "idBase", "exBase", "tri", "keypoints"), path, "Deng et al.'s BFM_model_front.mat")
    mean = np.asarray(d["meanshape"], np.float64).reshape(-1, 3)
    n = len(mean)
    for key in ("idBase", "exBase"):
        if d[key].shape[0] != 3 * n:
            raise FaceModelError(f"{path}: {key} has {d[key].shape[0]} rows, want 3 x {n} vertices")
    keypoints = np.rint(np.asarray(d["keypoints"]).ravel()).astype(np.int64) - 1
    e = d["exBase"].shape[1]
    return RawFaceModel(name="bfm-deng", mean=(mean * DM_TO_MM).astype(np.float32),
                        id_basis=_bases(d["idBase"], n, DM_TO_MM), exp_basis=_bases(d["exBase"], n, DM_TO_MM),
                        triangles=_triangles(d["tri"], n, path, one_based=True),
                        landmark68_ids=_landmark_ids(keypoints, n, path),
                        exp_names=tuple(f"exp{i:03d}" for i in range(e)),
                        source=f"BFM 2009 + FaceWarehouse, Deng et al. front face ({path.name}; BFM licence)")


def _landmark_ids(ids: np.ndarray, num_vertices: int, path: Path) -> np.ndarray:
    ids = np.asarray(ids, np.int64).ravel()
    if ids.shape != (68,) or ids.min() < 0 or ids.max() >= num_vertices:
        raise FaceModelError(f"{path}: want 68 landmark vertex ids in 0..{num_vertices - 1}, got {ids.shape} "
                             f"spanning {ids.min() if ids.size else '-'}..{ids.max() if ids.size else '-'}")
    return ids.astype(np.int32)


# ------------------------------------------------------------------------------------------ 3DDFA
def read_3ddfa(path: str | os.PathLike, *, triangles: str | os.PathLike | None = None) -> RawFaceModel:
    """3DDFA's ``bfm_noneck_v3.pkl`` (micrometres); ``triangles``: 3DDFA_V2's ``configs/tri.pkl`` for it."""
    path = Path(path)
    d = safe_pickle_load(path)
    _require(d, ("u", "w_shp", "w_exp", "keypoints"), path, "3DDFA's bfm_noneck_v3.pkl")
    mean = to_array(d["u"], "u").astype(np.float64).reshape(-1, 3)
    n = len(mean)
    w_shp, w_exp = to_array(d["w_shp"], "w_shp"), to_array(d["w_exp"], "w_exp")
    for key, w in (("w_shp", w_shp), ("w_exp", w_exp)):
        if w.shape[0] != 3 * n:
            raise FaceModelError(f"{path}: {key} has {w.shape[0]} rows, want 3 x {n} vertices")
    kp = np.asarray(to_array(d["keypoints"], "keypoints"), np.int64).ravel()
    if kp.size == 3 * 68:  # flat indices into u: 3 * vertex + axis
        ids = kp[0::3] // 3
        if not np.array_equal(kp.reshape(68, 3), 3 * ids[:, None] + np.arange(3)):
            raise FaceModelError(f"{path}: keypoints are not (x, y, z) index triples of 68 vertices")
        kp = ids
    if triangles is not None:
        tri_obj = load_arrays_file(triangles)
        tri_src = Path(triangles)
        if isinstance(tri_obj, Mapping):
            _require(tri_obj, ("tri",), tri_src, "a triangle list")
            tri_obj = tri_obj["tri"]
    elif "tri" in d:
        tri_obj, tri_src = d["tri"], path
    else:
        raise FaceModelError(f"{path} has no 'tri': pass 3DDFA_V2's configs/tri.pkl as the triangles file")
    e = w_exp.shape[1]
    return RawFaceModel(name="3ddfa-bfm", mean=(mean * UM_TO_MM).astype(np.float32),
                        id_basis=_bases(w_shp, n, UM_TO_MM), exp_basis=_bases(w_exp, n, UM_TO_MM),
                        triangles=_triangles(to_array(tri_obj, "tri"), n, tri_src),
                        landmark68_ids=_landmark_ids(kp, n, path), exp_names=tuple(f"exp{i:03d}" for i in range(e)),
                        source=f"BFM 2009 without neck + Zhu et al. expressions, 3DDFA ({path.name}; BFM licence)")


# ------------------------------------------------------------------------------------------ FLAME
def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from axis-angle vectors (..., 3)."""
    aa = np.asarray(axis_angle, np.float64)
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.maximum(theta, 1e-12)
    k = np.zeros(aa.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    k[..., 1, 0], k[..., 2, 0], k[..., 2, 1] = axis[..., 2], -axis[..., 1], axis[..., 0]
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


@dataclass(frozen=True)
class SkinnedModel:
    """The articulated part of FLAME (or SMPL-like models): template, pose correctives and skinning."""

    template: np.ndarray  # (V, 3)
    posedirs: np.ndarray  # (V, 3, 9 * (J - 1)): offsets per entry of (R_j - I), joints 1..J-1
    j_regressor: np.ndarray  # (J, V) dense
    weights: np.ndarray  # (V, J)
    parents: np.ndarray  # (J,), -1 for the root; parents[j] < j

    def joints(self) -> np.ndarray:
        """Rest-pose joint locations (J, 3)."""
        return self.j_regressor @ self.template

    def pose(self, pose: np.ndarray) -> np.ndarray:
        """Linear blend skinning for per-joint axis-angle rotations ``pose`` (J, 3): posed vertices (V, 3).

        As in FLAME/SMPL: pose-corrective offsets from ``R_j - I`` of the non-root joints, joints regressed
        from the template, transforms chained along ``parents`` relative to the rest pose, weights blended.
        """
        rots = rodrigues(np.asarray(pose, np.float64).reshape(-1, 3))
        nj = len(self.parents)
        feature = (rots[1:] - np.eye(3)).reshape(-1)
        v_posed = self.template + (self.posedirs.reshape(-1, feature.size) @ feature).reshape(-1, 3)
        joints = self.joints()
        chain = np.zeros((nj, 4, 4))
        for j in range(nj):
            local = np.eye(4)
            local[:3, :3] = rots[j]
            p = self.parents[j]
            local[:3, 3] = joints[j] - (joints[p] if p >= 0 else 0.0)
            chain[j] = local if p < 0 else chain[p] @ local
        rel = chain.copy()
        rel[:, :3, 3] -= np.einsum("jab,jb->ja", chain[:, :3, :3], joints)
        blend = np.einsum("vj,jab->vab", self.weights, rel)
        return np.einsum("vab,vb->va", blend[:, :3, :3], v_posed) + blend[:, :3, 3]


@dataclass(frozen=True)
class JawBlendshapes:
    """Two linear components that reproduce the skinned jaw opening of an articulated model.

    A rotation by ``theta`` about a fixed axis is ``I + sin(theta) K + (1 - cos(theta)) K^2``, so both the
    skinning and FLAME's pose correctives (linear in ``R - I``) move every vertex by
    ``sin(theta) a + (1 - cos(theta)) b`` up to the small product of correctives and rotation. ``basis[0]``
    is ``a`` scaled to the largest angle, ``basis[1]`` is ``b`` likewise, both fitted by least squares to the
    skinned model at ``samples`` angles. Opening the jaw by ``theta`` in ``[0, max_angle]`` is the coefficient
    pair ``(sin(theta) / sin(max_angle), (1 - cos(theta)) / (1 - cos(max_angle)))``, both in ``[0, 1]``; a
    linear fitter treats them as independent (a superset of the rotation), bounded to ``[0, 1]`` each.
    """

    basis: np.ndarray  # (2, V, 3), model units
    max_angle_rad: float
    fit_residual: float  # largest |skinned - linear| over the sampled angles, model units

    @staticmethod
    def coefficients(theta: float, max_angle_rad: float) -> np.ndarray:
        """The exact coefficient pair of a jaw opening by ``theta`` radians."""
        return np.array([math.sin(theta) / math.sin(max_angle_rad),
                         (1 - math.cos(theta)) / (1 - math.cos(max_angle_rad))])


def jaw_blendshapes(model: SkinnedModel, *, chin_vertex: int, jaw_joint: int = FLAME_JAW_JOINT,
                    max_angle_rad: float = math.radians(30.0), samples: int = 8) -> JawBlendshapes:
    """Linearise the opening (pitch about x) of ``jaw_joint``; the sign that lowers ``chin_vertex`` opens."""
    if not 0 < max_angle_rad < math.pi / 2:
        raise ValueError(f"the largest jaw angle must lie in (0, 90) degrees, got {math.degrees(max_angle_rad)}")
    nj = len(model.parents)

    def posed(theta: float) -> np.ndarray:
        pose = np.zeros((nj, 3))
        pose[jaw_joint, 0] = theta
        return model.pose(pose)

    sign = 1.0 if posed(0.1)[chin_vertex, 1] < model.template[chin_vertex, 1] else -1.0
    angles = np.linspace(0.0, max_angle_rad, samples + 1)[1:]
    disp = np.stack([posed(sign * a) - model.template for a in angles]).reshape(len(angles), -1)
    design = np.stack([np.sin(angles) / math.sin(max_angle_rad),
                       (1 - np.cos(angles)) / (1 - math.cos(max_angle_rad))], axis=1)
    coef, *_ = np.linalg.lstsq(design, disp, rcond=None)
    residual = float(np.abs(design @ coef - disp).max())
    return JawBlendshapes(basis=coef.reshape(2, -1, 3), max_angle_rad=max_angle_rad, fit_residual=residual)


_EMBEDDING_KEYS = (("full_lmk_faces_idx", "full_lmk_bary_coords"), ("static_lmk_faces_idx", "static_lmk_bary_coords"),
                   ("dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords"), ("lmk_face_idx", "lmk_b_coords"),
                   ("lmk_faces_idx", "lmk_bary_coords"))


def flame_landmark_vertices(paths: Sequence[str | os.PathLike], vertices: np.ndarray,
                            faces: np.ndarray) -> np.ndarray:
    """The 68 landmark vertex ids from FLAME landmark embeddings (triangle index + barycentric coordinates).

    Accepted, in any combination: a 68-point embedding (``.pkl``/``.npz``/``.npy`` with ``lmk_face_idx`` and
    ``lmk_b_coords``, or ``full_lmk_faces_idx``/``full_lmk_bary_coords``); FLAME's
    ``flame_static_embedding.pkl`` (51 points: landmarks 17-67) together with ``flame_dynamic_embedding.npy``
    (the 17 jawline points per head yaw, of which row 0 is the frontal one). Each landmark becomes the corner
    of its triangle nearest to its barycentric point.
    """
    full = static = contour = None
    for p in paths:
        data = load_arrays_file(p)
        if not isinstance(data, Mapping):
            raise FaceModelError(f"{p} is not a FLAME landmark embedding (a dict of arrays)")
        for fk, bk in _EMBEDDING_KEYS:
            if fk not in data or bk not in data:
                continue
            fi, bc = to_array(data[fk], fk).astype(np.int64), to_array(data[bk], bk).astype(np.float64)
            while fi.ndim > 1 and fi.shape[0] == 1:  # (1, 68) batch dims
                fi, bc = fi[0], bc[0]
            if fi.ndim == 2 and fi.shape[1] == 17:
                fi, bc = fi[0], bc[0]  # dynamic contour: row 0 = yaw 0
            if fi.shape == (68,):
                full = (fi, bc)
            elif fi.shape == (51,):
                static = (fi, bc)
            elif fi.shape == (17,):
                contour = (fi, bc)
    if full is None and static is not None and contour is not None:
        full = (np.concatenate([contour[0], static[0]]), np.concatenate([contour[1], static[1]]))
    if full is None:
        have = "the 51 inner landmarks only" if static is not None else "no usable embedding"
        raise FaceModelError(
            f"FLAME landmarks: {[str(p) for p in paths] or 'no file given'} give {have}. Pass a 68-point "
            f"embedding, or flame_static_embedding.pkl (51 points) together with flame_dynamic_embedding.npy "
            f"(the jawline), both from the FLAME download / FLAME_PyTorch's model folder")
    fi, bc = full
    if fi.min() < 0 or fi.max() >= len(faces) or bc.shape != (68, 3):
        raise FaceModelError(f"FLAME landmark embedding does not fit this mesh ({len(faces)} triangles)")
    corners = np.asarray(faces)[fi]  # (68, 3)
    points = np.einsum("lk,lkc->lc", bc, vertices[corners])
    nearest = np.argmin(np.linalg.norm(vertices[corners] - points[:, None], axis=2), axis=1)
    return corners[np.arange(68), nearest].astype(np.int32)


def read_flame(path: str | os.PathLike, landmarks: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
               *, jaw_max_deg: float = 30.0) -> RawFaceModel:
    """FLAME's ``generic_model.pkl`` (metres) with its landmark embedding file(s); see the module docstring.

    Expression components: the two jaw components of :func:`jaw_blendshapes` first (bounds ``[0, 1]``),
    then FLAME's 100 expression PCA components (unbounded). The jaw joint is placed from the mean shape;
    identity changes move it by millimetres, which the linear components ignore.
    """
    path = Path(path)
    if landmarks is None or (not isinstance(landmarks, (str, os.PathLike)) and not landmarks):
        raise FaceModelError(
            "FLAME has no landmark vertices of its own: give its landmark embedding (flame_static_embedding.pkl "
            "with flame_dynamic_embedding.npy, or a 68-point embedding) from the FLAME download")
    paths = [landmarks] if isinstance(landmarks, (str, os.PathLike)) else list(landmarks)
    d = safe_pickle_load(path)
    _require(d, ("v_template", "shapedirs", "f", "posedirs", "J_regressor", "weights", "kintree_table"), path,
             "FLAME's generic_model.pkl")
    v = to_array(d["v_template"], "v_template").astype(np.float64)
    shapedirs = to_array(d["shapedirs"], "shapedirs").astype(np.float64)
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != v.shape or shapedirs.shape[2] <= FLAME_IDENTITY_COMPONENTS:
        raise FaceModelError(f"{path}: shapedirs have shape {shapedirs.shape}; want ({len(v)}, 3, >"
                             f"{FLAME_IDENTITY_COMPONENTS}) = identity then expression components")
    faces = _triangles(to_array(d["f"], "f"), len(v), path, one_based=False)
    parents = to_array(d["kintree_table"], "kintree_table").astype(np.int64)[0].copy()
    parents[0] = -1  # FLAME stores the root's parent as 2**32 - 1
    skinned = SkinnedModel(template=v, posedirs=to_array(d["posedirs"], "posedirs").astype(np.float64),
                           j_regressor=to_array(d["J_regressor"], "J_regressor").astype(np.float64),
                           weights=to_array(d["weights"], "weights").astype(np.float64), parents=parents)
    if np.any(parents[1:] >= np.arange(1, len(parents))) or skinned.weights.shape != (len(v), len(parents)):
        raise FaceModelError(f"{path}: kintree_table / weights do not describe a skinned model of {len(v)} vertices")
    lm = flame_landmark_vertices(paths, v, faces)
    jaw = jaw_blendshapes(skinned, chin_vertex=int(lm[8]), max_angle_rad=math.radians(jaw_max_deg))
    exp_pca = shapedirs[:, :, FLAME_IDENTITY_COMPONENTS:].transpose(2, 0, 1)
    e = exp_pca.shape[0]
    return RawFaceModel(
        name="flame", mean=(v * M_TO_MM).astype(np.float32),
        id_basis=(shapedirs[:, :, :FLAME_IDENTITY_COMPONENTS].transpose(2, 0, 1) * M_TO_MM).astype(np.float32),
        exp_basis=(np.concatenate([jaw.basis, exp_pca]) * M_TO_MM).astype(np.float32), triangles=faces,
        landmark68_ids=lm, exp_names=JAW_NAMES + tuple(f"exp{i:03d}" for i in range(e)),
        exp_lower=np.concatenate([np.zeros(2), np.full(e, -np.inf)]).astype(np.float32),
        exp_upper=np.concatenate([np.ones(2), np.full(e, np.inf)]).astype(np.float32),
        source=f"FLAME ({path.name}; FLAME licence, flame.is.tue.mpg.de); jaw opening 0-{jaw_max_deg:g} deg "
               f"linearised (fit residual {jaw.fit_residual * M_TO_MM:.3f} mm)",
        extra={"jaw_max_angle_rad": jaw.max_angle_rad, "jaw_fit_residual_mm": jaw.fit_residual * M_TO_MM})


# ------------------------------------------------------------------------------------------ checks and regions
def check_source_geometry(raw: RawFaceModel) -> None:
    """Refuse a source whose units or axes differ from what its reader assumed (landmark sanity checks)."""
    lm = raw.mean[raw.landmark68_ids].astype(np.float64)
    width = float(np.linalg.norm(lm[0] - lm[16]))
    if not 80.0 <= width <= 260.0:
        raise FaceModelError(f"{raw.name}: the jaw is {width:.3g} mm wide (landmarks 0-16; faces are ~140 mm): the "
                             f"file's units are not the ones its format uses")
    eyes = (lm[36] + lm[45]) / 2
    if not (lm[36, 0] < lm[45, 0] and lm[8, 1] < lm[27, 1] and lm[30, 2] > eyes[2]):
        raise FaceModelError(f"{raw.name}: the landmarks do not face +z with y up and x to the subject's left "
                             f"(right eye {lm[36]}, left eye {lm[45]}, chin {lm[8]}, nose tip {lm[30]})")


def largest_component(triangles: np.ndarray, num_vertices: int) -> np.ndarray:
    """(V,) bool: the vertices of the mesh's largest connected piece (drops e.g. FLAME's eyeballs)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    t = np.asarray(triangles, np.int64)
    adj = coo_matrix((np.ones(t.size), (t.ravel(), np.roll(t, 1, axis=1).ravel())), shape=(num_vertices,) * 2)
    _, labels = connected_components(adj, directed=False)
    used = np.zeros(num_vertices, bool)
    used[t.ravel()] = True
    counts = np.bincount(labels[used], minlength=labels.max() + 1)
    return (labels == np.argmax(counts)) & used


def mediapipe_face_region(raw: RawFaceModel, mp_points: np.ndarray, *, max_dist_mm: float = 12.0) -> np.ndarray:
    """(V,) bool: the part of a full-head model that MediaPipe's face mesh covers.

    The canonical mesh is matched to the largest connected piece of the model; the region is then the vertices
    inside the matched face oval (seen from the front) and within ``max_dist_mm`` of a matched point.
    """
    from scipy.spatial import cKDTree

    main = largest_component(raw.triangles, len(raw.mean))
    ids = mediapipe_correspondence(replace(raw, face_mask=main), mp_points).ids
    v = raw.mean.astype(np.float64)
    inside = _inside_polygon(v[:, :2], v[ids[list(MP_FACE_OVAL)], :2])
    near = cKDTree(v[ids[:468]]).query(v)[0] <= max_dist_mm
    return main & inside & near


def correspondence_residual_mm(model: FaceModel, mp_points: np.ndarray, *, rounds: int = 3,
                               shape_reg: float = 1.0) -> np.ndarray:
    """Distances (mm) between MediaPipe's canonical points and their stored model vertices.

    The canonical mesh is aligned by a weighted similarity transform, alternating with a ridge fit of the
    identity coefficients (as the correspondence was built), with the stored vertex ids held fixed.
    Returns one distance per point with a positive weight.
    """
    mp = np.asarray(mp_points, np.float64)[: len(model.mediapipe_ids)]
    use = model.mediapipe_weights > 0
    use &= np.arange(len(use)) < len(mp)
    ids, w, src = model.mediapipe_ids[use], model.mediapipe_weights[use].astype(np.float64), mp[use]
    basis = model.id_basis[:, ids, :].astype(np.float64)  # (S, n, 3)
    target = model.mean[ids].astype(np.float64)
    for _ in range(max(rounds, 1)):
        s, r, t = similarity_transform(src, target, w)
        aligned = (s * (r @ src.T)).T + t
        if basis.shape[0] == 0:
            break
        a = basis.transpose(1, 2, 0).reshape(-1, basis.shape[0]) * np.repeat(np.sqrt(w), 3)[:, None]
        b = (aligned - model.mean[ids]).reshape(-1) * np.repeat(np.sqrt(w), 3)
        coef = np.linalg.solve(a.T @ a + shape_reg * len(ids) * np.eye(a.shape[1]), a.T @ b)
        target = model.mean[ids] + np.tensordot(coef, basis, axes=([0], [0]))
    return np.linalg.norm(target - aligned, axis=1).astype(np.float32)


def truncate_bases(raw: RawFaceModel, num_shape: int | None = None, num_expression: int | None = None) -> RawFaceModel:
    """Keep the first ``num_shape`` identity and ``num_expression`` expression components (None: all)."""
    s = raw.id_basis.shape[0] if num_shape is None else min(int(num_shape), raw.id_basis.shape[0])
    e = raw.exp_basis.shape[0] if num_expression is None else min(int(num_expression), raw.exp_basis.shape[0])
    if s < 0 or e < 0:
        raise ValueError("component counts must be >= 0")
    return replace(raw, id_basis=raw.id_basis[:s], exp_basis=raw.exp_basis[:e],
                   exp_names=tuple(raw.exp_names[:e]),
                   exp_lower=None if raw.exp_lower is None else raw.exp_lower[:e],
                   exp_upper=None if raw.exp_upper is None else raw.exp_upper[:e])


# ------------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class ConvertOptions:
    """Options of :func:`convert_face_model` (those that do not apply to a kind are ignored)."""

    num_shape: int | None = None  # keep the first N identity components (None: all)
    num_expression: int | None = None  # keep the first N expression components (FLAME: the 2 jaw ones first)
    flame_landmarks: tuple[str | os.PathLike, ...] = ()  # FLAME landmark embedding file(s)
    flame_jaw_max_deg: float = 30.0  # FLAME: jaw opening covered by the jaw components
    triangles: str | os.PathLike | None = None  # 3DDFA: configs/tri.pkl of 3DDFA_V2 for bfm_noneck_v3


@dataclass(frozen=True)
class SourceFormat:
    """One kind of source model: how to read it, what file it is and where users get it."""

    kind: str
    expected_file: str
    description: str
    where: str
    licence: str
    full_head: bool  # the face mask is found with :func:`mediapipe_face_region`
    read: Callable[[Path, ConvertOptions], RawFaceModel]


FORMATS: Mapping[str, SourceFormat] = MappingProxyType({f.kind: f for f in (
    SourceFormat("ict", "ict_facemodel_light_face_head_11248v.npz",
                 "ICT-FaceKit light arrays: 100 identity PCA + 57 blendshapes in [0, 1] (the default model)",
                 "../shared/data/face_models/ict_facekit_light/ (from github.com/ICT-VGL/ICT-FaceKit)", "MIT",
                 False, lambda p, o: read_ict_light(p)),
    SourceFormat("bfm-deng", "BFM_model_front.mat",
                 "Deng et al. (Deep3DFaceRecon) BFM front face: 80 identity + 64 expression PCA",
                 "build it with Deep3DFaceRecon_pytorch's util/load_mats.py from BFM 2009 "
                 "(faces.dmi.unibas.ch, registration) and its Exp_Pca.bin", "BFM 2009 licence (non-commercial)",
                 False, lambda p, o: read_bfm_deng(p)),
    SourceFormat("flame", "generic_model.pkl",
                 "FLAME head: 300 identity + 100 expression PCA, plus 2 linearised jaw-opening components",
                 "flame.is.tue.mpg.de (registration); landmark embeddings from the same download or "
                 "FLAME_PyTorch's model/ folder", "FLAME licence (non-commercial)",
                 True, lambda p, o: read_flame(p, o.flame_landmarks, jaw_max_deg=o.flame_jaw_max_deg)),
    SourceFormat("3ddfa", "bfm_noneck_v3.pkl",
                 "3DDFA(_V2) BFM without neck: 40 identity + 10 expression PCA",
                 "github.com/cleardusk/3DDFA_V2 configs/ (bfm_noneck_v3.pkl and tri.pkl)",
                 "BFM 2009 licence (non-commercial)", False, lambda p, o: read_3ddfa(p, triangles=o.triangles)),
)})


def read_face_model_source(kind: str, path: str | os.PathLike,
                           options: ConvertOptions | None = None) -> RawFaceModel:
    """Read a source of ``kind`` (see :data:`FORMATS`), truncate its bases and check units and axes."""
    if kind not in FORMATS:
        raise FaceModelError(f"unknown face-model kind {kind!r}; known: {sorted(FORMATS)}")
    options = options or ConvertOptions()
    path = Path(path)
    if not path.is_file():
        fmt = FORMATS[kind]
        raise FaceModelError(f"no {kind} model at {path}: expected {fmt.expected_file} ({fmt.where})")
    raw = truncate_bases(FORMATS[kind].read(path, options), options.num_shape, options.num_expression)
    check_source_geometry(raw)
    return raw


def convert_face_model(kind: str, path: str | os.PathLike, out: str | os.PathLike | None, *,
                       mediapipe_mesh: str | os.PathLike | None = None,
                       options: ConvertOptions | None = None) -> FaceModel:
    """Convert a source model of ``kind`` into the project's format and write it to ``out`` (None: don't).

    ``mediapipe_mesh``: MediaPipe's canonical mesh (default: found by
    :func:`~pt_data.face_model_convert.find_mediapipe_mesh`).
    """
    raw = read_face_model_source(kind, path, options)
    mesh = Path(mediapipe_mesh) if mediapipe_mesh is not None else find_mediapipe_mesh()
    if FORMATS[kind].full_head:
        mp = read_obj_vertices(mesh)
        if len(mp) not in (468, NUM_MP_POINTS):
            raise FaceModelError(f"{mesh}: {len(mp)} vertices; MediaPipe's canonical mesh has 468 or 478")
        raw = replace(raw, face_mask=mediapipe_face_region(raw, mp))
    model = build_face_model(raw, mesh)
    if out is not None:
        model.save(out)
    return model
