"""The project's morphable face model format: one ``.npz`` with everything fitting and rendering need.

A :class:`FaceModel` is linear: ``vertices = mean + shape @ id_basis + expression @ exp_basis`` in
millimetres, in a head frame with x to the subject's left, y up and z towards the camera (the ICT-FaceKit
and MediaPipe canonical-mesh convention). Besides the bases it carries the triangles, the 68 Multi-PIE
landmark vertices, the correspondence of MediaPipe's 478 face-mesh points to model vertices (computed by
:mod:`pt_data.face_model_convert`, with a weight per point), vertex masks (face, lower face, lip, upper
face) and bounds for the expression coefficients (``[0, 1]`` for blendshapes, unbounded for PCA).

The file stores ``format`` = :data:`FORMAT_VERSION`; :func:`load_face_model` refuses anything else with a
message saying how to convert. The model id used in shards is ``name:hash`` where ``hash`` is a SHA-256
prefix over the geometry arrays, so coefficients are never applied to the wrong model.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
UNITS = "mm"
MASK_NAMES = ("face", "lower_face", "lip", "upper_face")
_ARRAYS = ("mean", "id_basis", "exp_basis", "triangles", "landmark68_ids", "mediapipe_ids", "mediapipe_weights",
           "exp_lower", "exp_upper")


class FaceModelError(ValueError):
    """A face-model file is missing, of another format, or inconsistent."""


@dataclass(frozen=True, eq=False)
class FaceModel:
    """A linear morphable face model (see the module docstring for conventions).

    Shapes: ``mean`` (V, 3); ``id_basis`` (S, V, 3); ``exp_basis`` (E, V, 3); ``triangles`` (F, 3) int32;
    ``landmark68_ids`` (68,); ``mediapipe_ids`` (478,) vertex ids with ``mediapipe_weights`` (478,) (0 = do
    not use); ``masks`` name -> (V,) bool; ``exp_lower`` / ``exp_upper`` (E,) bounds (may be +-inf).
    """

    name: str
    mean: np.ndarray
    id_basis: np.ndarray
    exp_basis: np.ndarray
    triangles: np.ndarray
    landmark68_ids: np.ndarray
    mediapipe_ids: np.ndarray
    mediapipe_weights: np.ndarray
    masks: dict[str, np.ndarray]
    exp_names: tuple[str, ...] = ()
    exp_lower: np.ndarray | None = None
    exp_upper: np.ndarray | None = None
    source: str = ""
    hash: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", np.ascontiguousarray(self.mean, np.float32))
        object.__setattr__(self, "id_basis", np.ascontiguousarray(self.id_basis, np.float32))
        object.__setattr__(self, "exp_basis", np.ascontiguousarray(self.exp_basis, np.float32))
        object.__setattr__(self, "triangles", np.ascontiguousarray(self.triangles, np.int32))
        object.__setattr__(self, "landmark68_ids", np.asarray(self.landmark68_ids, np.int32))
        object.__setattr__(self, "mediapipe_ids", np.asarray(self.mediapipe_ids, np.int32))
        object.__setattr__(self, "mediapipe_weights", np.asarray(self.mediapipe_weights, np.float32))
        e = self.exp_basis.shape[0]
        lo = np.full(e, -np.inf, np.float32) if self.exp_lower is None else np.asarray(self.exp_lower, np.float32)
        hi = np.full(e, np.inf, np.float32) if self.exp_upper is None else np.asarray(self.exp_upper, np.float32)
        object.__setattr__(self, "exp_lower", lo)
        object.__setattr__(self, "exp_upper", hi)
        if not self.exp_names:
            object.__setattr__(self, "exp_names", tuple(f"exp{i:03d}" for i in range(e)))
        masks = {k: np.asarray(v, bool) for k, v in self.masks.items()}
        object.__setattr__(self, "masks", masks)
        self.check()
        if not self.hash:
            object.__setattr__(self, "hash", self.content_hash())

    # ---- sizes and ids
    @property
    def num_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def num_shape(self) -> int:
        return int(self.id_basis.shape[0])

    @property
    def num_expression(self) -> int:
        return int(self.exp_basis.shape[0])

    @property
    def model_id(self) -> str:
        """``name:hash``, the value of the shards' ``face_model_id`` column."""
        return f"{self.name}:{self.hash}"

    def mask(self, name: str) -> np.ndarray:
        """The (V,) bool vertex mask ``name`` (one of :data:`MASK_NAMES`)."""
        if name not in self.masks:
            raise KeyError(f"face model {self.name!r} has no {name!r} mask; it has {sorted(self.masks)}")
        return self.masks[name]

    def vertex_ids(self, mask: str) -> np.ndarray:
        """Sorted vertex ids inside ``mask``."""
        return np.flatnonzero(self.mask(mask)).astype(np.int64)

    # ---- geometry
    def vertices(self, shape: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """Canonical (unposed) vertices (..., V, 3) in mm for coefficients (..., S) and (..., E)."""
        v = self.mean
        if shape is not None:
            shape = np.asarray(shape, np.float32)
            v = v + np.tensordot(shape, self.id_basis, axes=([-1], [0]))
        if expression is not None:
            expression = np.asarray(expression, np.float32)
            v = v + np.tensordot(expression, self.exp_basis, axes=([-1], [0]))
        return np.asarray(v, np.float32)

    def canonical_colors(self) -> np.ndarray:
        """PNCC colours: the mean face's coordinates normalised to [0, 1] per axis, (V, 3) float32."""
        lo, hi = self.mean.min(0), self.mean.max(0)
        return ((self.mean - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)

    # ---- integrity and files
    def check(self) -> None:
        """Raise :class:`FaceModelError` when shapes or indices are inconsistent."""
        v = self.mean.shape[0]
        problems = []
        if self.mean.ndim != 2 or self.mean.shape[1] != 3:
            problems.append(f"mean has shape {self.mean.shape}, want (V, 3)")
        for name in ("id_basis", "exp_basis"):
            a = getattr(self, name)
            if a.ndim != 3 or a.shape[1:] != (v, 3):
                problems.append(f"{name} has shape {a.shape}, want (K, {v}, 3)")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            problems.append(f"triangles have shape {self.triangles.shape}, want (F, 3)")
        elif self.triangles.size and (self.triangles.min() < 0 or self.triangles.max() >= v):
            problems.append("triangle indices out of range")
        for name in ("landmark68_ids", "mediapipe_ids"):
            ids = getattr(self, name)
            if ids.size and (ids.min() < 0 or ids.max() >= v):
                problems.append(f"{name} out of range")
        if self.mediapipe_ids.shape != self.mediapipe_weights.shape:
            problems.append("mediapipe_ids and mediapipe_weights differ in length")
        for k, m in self.masks.items():
            if m.shape != (v,):
                problems.append(f"mask {k!r} has shape {m.shape}, want ({v},)")
        e = self.exp_basis.shape[0]
        if self.exp_lower.shape != (e,) or self.exp_upper.shape != (e,) or len(self.exp_names) != e:
            problems.append("expression bounds or names do not match the expression basis")
        if problems:
            raise FaceModelError(f"face model {self.name!r}: " + "; ".join(problems))

    def content_hash(self) -> str:
        """16 hex digits of SHA-256 over the geometry arrays (mean, bases, triangles, correspondences)."""
        h = hashlib.sha256()
        for name in ("mean", "id_basis", "exp_basis", "triangles", "landmark68_ids", "mediapipe_ids"):
            a = np.ascontiguousarray(getattr(self, name))
            h.update(name.encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model as one ``.npz`` (written to a temporary name, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        arrays.update({f"mask_{k}": v for k, v in self.masks.items()})
        arrays.update(format=np.int64(FORMAT_VERSION), units=np.str_(UNITS), name=np.str_(self.name),
                      source=np.str_(self.source), hash=np.str_(self.hash),
                      exp_names=np.asarray(self.exp_names, dtype=np.str_))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path

    def with_masks(self, **masks: np.ndarray) -> "FaceModel":
        """A copy with some masks replaced or added (the hash does not cover masks)."""
        return replace(self, masks={**self.masks, **masks})


def load_face_model(path: str | os.PathLike) -> FaceModel:
    """Read a model written by :meth:`FaceModel.save`; other files get a :class:`FaceModelError`."""
    path = Path(path)
    if not path.is_file():
        raise FaceModelError(f"no face model file at {path}; convert one with `pt model convert` "
                             f"(pt_data.face_model_formats.convert_face_model)")
    with np.load(path, allow_pickle=False) as z:
        if "format" not in z.files:
            raise FaceModelError(f"{path} is not a PersonaTalk face model (no 'format' entry); convert it with "
                                 f"`pt model convert` (ICT-FaceKit, BFM, FLAME or 3DDFA sources)")
        fmt = int(z["format"])
        if fmt != FORMAT_VERSION:
            raise FaceModelError(f"{path} has face-model format {fmt}; this toolkit reads {FORMAT_VERSION}")
        masks = {k[5:]: z[k] for k in z.files if k.startswith("mask_")}
        model = FaceModel(name=str(z["name"]), mean=z["mean"], id_basis=z["id_basis"], exp_basis=z["exp_basis"],
                          triangles=z["triangles"], landmark68_ids=z["landmark68_ids"],
                          mediapipe_ids=z["mediapipe_ids"], mediapipe_weights=z["mediapipe_weights"],
                          masks=masks, exp_names=tuple(str(s) for s in z["exp_names"]),
                          exp_lower=z["exp_lower"], exp_upper=z["exp_upper"], source=str(z["source"]))
        stored = str(z["hash"])
    if stored and stored != model.hash:
        raise FaceModelError(f"{path}: stored hash {stored} does not match its contents ({model.hash}); "
                             f"the file is corrupt or was edited: convert it again")
    return model
