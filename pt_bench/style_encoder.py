"""The speaking-style encoder behind StyleSim: expression-only vertex motion -> one unit style vector.

PersonaTalk's StyleSim (PAPER.md, section 4.2) is the cosine similarity of two videos' style vectors from a
speaking-style encoder applied to *expression-only* vertices, with the encoder designed after DiffPoseTalk
(Sun et al. 2023) / StyleTalk: a transformer over a short window of per-frame face motion, trained
contrastively so that windows of the same speaker lie close together. The paper gives no sizes; these are ours.

Input per frame: the expression coefficients ``beta_t`` (E,) of a fitted clip. The encoder turns them into
expression-only vertex offsets ``beta_t @ exp_basis`` (no identity, no pose, no mean face) at a fixed vertex
subset: ``num_lower_vertices`` of the model's ``lower_face`` mask plus ``num_upper_vertices`` of its
``upper_face`` mask, each picked by farthest-point sampling on the mean face (spatially even, deterministic).
The subset's rows of the expression basis are a buffer of the module, so a saved encoder needs no face
model to run; it records the face model id it was built for, and loading checks it.

Network: per frame ``[offsets / vertex_scale_mm, velocity / velocity_scale_mm]`` (velocity = frame-to-frame
difference of the offsets, 0 for the first frame) -> linear -> + sinusoidal positions -> pre-norm
transformer encoder -> layer norm -> mean over time -> 2-layer projection -> L2 normalisation.

A video's style vector (:meth:`StyleEncoder.embed_sequence`) is the mean of the embeddings of windows of
``window`` frames (hop ``window // 2``, the last window aligned to the end so every frame is covered),
L2-normalised again. A sequence shorter than one window is embedded as one shorter window.

Files: :func:`save_style_encoder` writes a ``torch.save`` dict of tensors and primitives only;
:func:`load_style_encoder` reads it with ``torch.load(weights_only=True)`` and refuses a file of another
format, another face model or another config with an error that says what to do.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pt_data.face_model import FaceModel

STYLE_ENCODER_FORMAT = 1
STYLE_ENCODER_KIND = "personatalk-style-encoder"


class StyleEncoderError(ValueError):
    """A style-encoder file is not one, or was made for another face model or another config."""


@dataclass(frozen=True)
class StyleEncoderConfig:
    """Sizes of the style encoder (defaults: the ``paper`` preset of ``pt train style``)."""

    window: int = 50  # frames per window (2 s at 25 fps)
    num_lower_vertices: int = 256  # farthest-point samples of the 'lower_face' mask
    num_upper_vertices: int = 64  # farthest-point samples of the 'upper_face' mask
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 4
    ff_mult: int = 4
    embed_dim: int = 128
    dropout: float = 0.1
    velocity: bool = True  # also feed the frame-to-frame velocity of the offsets
    vertex_scale_mm: float = 5.0  # offsets are divided by this
    velocity_scale_mm: float = 1.0  # velocities (mm per frame) are divided by this

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window must be at least 2 frames, got {self.window}")
        if self.num_lower_vertices < 1 or self.num_upper_vertices < 0:
            raise ValueError("need at least one lower-face vertex and a non-negative number of upper-face vertices")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by num_heads {self.num_heads}")
        if min(self.d_model, self.num_layers, self.num_heads, self.ff_mult, self.embed_dim) < 1:
            raise ValueError("d_model, num_layers, num_heads, ff_mult and embed_dim must be positive")

    @property
    def num_vertices(self) -> int:
        return self.num_lower_vertices + self.num_upper_vertices

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StyleEncoderConfig":
        """The config of :meth:`to_dict`; unknown keys are an error (a file of a newer toolkit)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise StyleEncoderError(f"unknown style-encoder config keys {unknown}: made by a newer toolkit?")
        return cls(**dict(d))


# ------------------------------------------------------------------------------------------ vertex subset
def farthest_point_sampling(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` points of ``(N, 3)`` spread evenly: start at the point nearest the centroid, then
    repeatedly take the point farthest from those taken (deterministic; ties go to the lowest index)."""
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or len(pts) == 0:
        raise ValueError(f"need (N > 0, D) points, got {pts.shape}")
    if not 0 < k <= len(pts):
        raise ValueError(f"cannot pick {k} of {len(pts)} points")
    chosen = np.empty(k, np.int64)
    chosen[0] = int(np.argmin(((pts - pts.mean(0)) ** 2).sum(1)))
    dist = ((pts - pts[chosen[0]]) ** 2).sum(1)
    for i in range(1, k):
        chosen[i] = int(np.argmax(dist))
        dist = np.minimum(dist, ((pts - pts[chosen[i]]) ** 2).sum(1))
    return chosen


def select_style_vertices(face_model: FaceModel, config: StyleEncoderConfig) -> np.ndarray:
    """The encoder's vertex ids: lower-face samples first, then upper-face samples (see the module doc)."""
    out = []
    for mask, k in (("lower_face", config.num_lower_vertices), ("upper_face", config.num_upper_vertices)):
        if k == 0:
            continue
        ids = face_model.vertex_ids(mask)
        if len(ids) < k:
            raise ValueError(f"face model {face_model.name!r} has {len(ids)} {mask!r} vertices; the style encoder "
                             f"config asks for {k}: lower num_{mask.split('_')[0]}_vertices")
        out.append(ids[farthest_point_sampling(face_model.mean[ids], k)])
    return np.concatenate(out)


def window_starts(num_frames: int, window: int, hop: int | None = None) -> list[int]:
    """Start frames of the windows that cover ``num_frames`` (hop ``window // 2`` by default; the last window
    ends at the last frame). ``[0]`` when the sequence is not longer than one window."""
    if num_frames < 1:
        raise ValueError("an empty sequence has no windows")
    hop = hop or max(window // 2, 1)
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, hop))
    if starts[-1] != num_frames - window:
        starts.append(num_frames - window)
    return starts


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """``(length, dim)`` sine/cosine position codes (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


# ------------------------------------------------------------------------------------------------- model
class StyleEncoder(nn.Module):
    """Expression coefficients ``(B, T, E)`` -> unit style embeddings ``(B, embed_dim)``.

    ``basis``: ``(E, K, 3)`` rows of the expression basis at ``vertex_ids`` ``(K,)`` (mm per unit
    coefficient). Build one for a face model with :func:`build_style_encoder`.
    """

    def __init__(self, config: StyleEncoderConfig, basis: torch.Tensor, vertex_ids: torch.Tensor) -> None:
        super().__init__()
        basis = torch.as_tensor(basis, dtype=torch.float32)
        if basis.ndim != 3 or basis.shape[1:] != (config.num_vertices, 3):
            raise ValueError(f"basis must be (E, {config.num_vertices}, 3) for this config, got {tuple(basis.shape)}")
        self.config = config
        self.register_buffer("basis", basis.contiguous())
        self.register_buffer("vertex_ids", torch.as_tensor(vertex_ids, dtype=torch.long).clone())
        in_dim = config.num_vertices * 3 * (2 if config.velocity else 1)
        self.input = nn.Linear(in_dim, config.d_model)
        layer = nn.TransformerEncoderLayer(config.d_model, config.num_heads, config.ff_mult * config.d_model,
                                           config.dropout, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.GELU(),
                                  nn.Linear(config.d_model, config.embed_dim))

    @property
    def num_expression(self) -> int:
        return int(self.basis.shape[0])

    def frame_features(self, expression: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` network inputs: scaled expression-only offsets (and velocities) at the vertex subset."""
        if expression.ndim != 3 or expression.shape[-1] != self.num_expression:
            raise ValueError(f"expression must be (B, T, {self.num_expression}), got {tuple(expression.shape)}")
        b, t, _ = expression.shape
        offsets = torch.einsum("bte,ekd->btkd", expression.to(self.basis.dtype), self.basis).reshape(b, t, -1)
        feats = [offsets / self.config.vertex_scale_mm]
        if self.config.velocity:
            vel = torch.diff(offsets, dim=1, prepend=offsets[:, :1])
            feats.append(vel / self.config.velocity_scale_mm)
        return torch.cat(feats, dim=-1)

    def forward(self, expression: torch.Tensor) -> torch.Tensor:
        """Unit embeddings ``(B, embed_dim)`` of windows ``(B, T, E)`` of expression coefficients."""
        x = self.input(self.frame_features(expression))
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        x = self.norm(self.encoder(x)).mean(dim=1)
        return F.normalize(self.head(x), dim=-1)

    @torch.no_grad()
    def embed_windows(self, expression: np.ndarray | torch.Tensor, *, hop: int | None = None,
                      batch_size: int = 64) -> np.ndarray:
        """``(N, embed_dim)`` unit embeddings of the windows of one sequence ``(T, E)`` (:func:`window_starts`),
        in eval mode (no dropout); the module's training flag is restored afterwards."""
        seq = torch.as_tensor(np.asarray(expression, np.float32) if not torch.is_tensor(expression) else expression,
                              dtype=torch.float32)
        if seq.ndim != 2 or seq.shape[1] != self.num_expression or len(seq) < 2:
            raise ValueError(f"expression must be (T >= 2, {self.num_expression}), got {tuple(seq.shape)}")
        window = min(self.config.window, len(seq))
        starts = window_starts(len(seq), window, hop)
        windows = torch.stack([seq[s:s + window] for s in starts]).to(self.basis.device)
        was_training = self.training
        self.eval()
        try:
            out = torch.cat([self(windows[i:i + batch_size]) for i in range(0, len(windows), batch_size)])
        finally:
            self.train(was_training)
        return out.float().cpu().numpy()

    def embed_sequence(self, expression: np.ndarray | torch.Tensor, *, hop: int | None = None) -> np.ndarray:
        """The ``(embed_dim,)`` unit style vector of a whole sequence ``(T, E)``: the mean of its window
        embeddings, L2-normalised."""
        mean = self.embed_windows(expression, hop=hop).astype(np.float64).mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def build_style_encoder(config: StyleEncoderConfig, face_model: FaceModel, *, seed: int | None = None
                        ) -> StyleEncoder:
    """A freshly initialised encoder for ``face_model`` (its vertex subset and basis rows).

    ``seed`` makes the initialisation reproducible without touching the caller's global torch RNG.
    """
    ids = select_style_vertices(face_model, config)
    basis = torch.from_numpy(np.ascontiguousarray(face_model.exp_basis[:, ids]))
    if seed is None:
        return StyleEncoder(config, basis, torch.from_numpy(ids))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StyleEncoder(config, basis, torch.from_numpy(ids))


# ------------------------------------------------------------------------------------------------- files
@dataclass
class LoadedStyleEncoder:
    """What :func:`load_style_encoder` returns."""

    model: StyleEncoder
    config: StyleEncoderConfig
    face_model_id: str
    meta: dict[str, Any]


def save_style_encoder(path: str | os.PathLike, model: StyleEncoder, config: StyleEncoderConfig,
                       face_model_id: str, *, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (eval-ready weights), its config and face model id to ``path`` (temporary name, then
    renamed). ``meta``: primitive values only (training steps, shards, validation accuracy ...)."""
    if model.config != config:
        raise ValueError("the model was built with another config than the one given")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": STYLE_ENCODER_FORMAT, "kind": STYLE_ENCODER_KIND, "config": config.to_dict(),
           "face_model_id": str(face_model_id), "num_expression": model.num_expression,
           "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
           "meta": dict(meta or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load_style_encoder(path: str | os.PathLike, *, face_model_id: str | None = None,
                       config: StyleEncoderConfig | None = None, map_location: str | torch.device = "cpu"
                       ) -> LoadedStyleEncoder:
    """Read a :func:`save_style_encoder` file safely (``weights_only=True``), in eval mode.

    ``face_model_id``: the model the caller fits expressions with; a file made for another one is refused
    (its coefficients mean other vertex motions). ``config``: when given, the file's config must equal it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no style-encoder file at {path}; train one with `pt train style --shards DIR "
                                f"--out RUN` and use RUN/style_encoder.pt")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt file or pickled objects refused by weights_only
        raise StyleEncoderError(f"{path}: not a readable style-encoder file ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict) or obj.get("kind") != STYLE_ENCODER_KIND:
        raise StyleEncoderError(f"{path} is not a PersonaTalk style-encoder file (a training checkpoint? use "
                                f"RUN/style_encoder.pt written at the end of `pt train style`)")
    if obj.get("format") != STYLE_ENCODER_FORMAT:
        raise StyleEncoderError(f"{path} has style-encoder format {obj.get('format')}; this toolkit reads "
                                f"{STYLE_ENCODER_FORMAT}")
    file_cfg = StyleEncoderConfig.from_dict(obj["config"])
    if config is not None and config != file_cfg:
        diff = {k: (v, getattr(config, k)) for k, v in file_cfg.to_dict().items() if getattr(config, k) != v}
        raise StyleEncoderError(f"{path}: config differs from the expected one (file, expected): {diff}")
    stored_id = str(obj["face_model_id"])
    if face_model_id is not None and stored_id != face_model_id:
        raise StyleEncoderError(f"{path} was trained on expressions of face model {stored_id}, but expressions "
                                f"here come from {face_model_id}: fit with that model (--face-model / "
                                f"$PT_FACE_MODEL) or train a style encoder on shards fitted with this one")
    state = obj["state_dict"]
    model = StyleEncoder(file_cfg, torch.zeros_like(state["basis"]), torch.zeros_like(state["vertex_ids"]))
    model.load_state_dict(state)
    return LoadedStyleEncoder(model.to(map_location).eval(), file_cfg, stored_id, dict(obj.get("meta") or {}))


__all__ = ["StyleEncoderConfig", "StyleEncoder", "StyleEncoderError", "LoadedStyleEncoder", "build_style_encoder",
           "select_style_vertices", "farthest_point_sampling", "window_starts", "sinusoidal_positions",
           "save_style_encoder", "load_style_encoder", "STYLE_ENCODER_FORMAT"]
