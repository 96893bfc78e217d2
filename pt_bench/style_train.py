"""Training the speaking-style encoder (``pt train style``): supervised contrastive learning over speakers.

Data: the fitted ``expression`` column of clip shards (``pt curate`` with fitting) and a speaker label per
clip (its ``speaker_id``, optionally renamed by a speaker map, e.g. when a folder source named every file
its own speaker). Each clip is split in time: its first ``1 - holdout_tail`` of frames give training
windows, its last ``holdout_tail`` of frames give held-out windows that training never sees.

A step draws ``speakers_per_batch`` speakers and ``windows_per_speaker`` windows of ``window`` frames from
each (a random clip of the speaker, a random position in the training part), so every window has positives
(the same speaker's other windows: other clips or other positions) and negatives (the other speakers), and
minimises the supervised contrastive loss (Khosla et al. 2020, :func:`supervised_contrastive_loss`) of
their unit embeddings. The batch of step ``s`` depends only on ``(seed, s)``, so a run is deterministic and
resumes exactly from its last checkpoint (model, optimiser, step, torch RNG state); AdamW with a linear
warm-up then a constant rate (so extending ``max_steps`` of a finished run continues it seamlessly).

Validation: speaker retrieval. Every held-out window is a query; the gallery is the training part of every
clip cut into windows (hop ``window // 2``); a query is correct when its nearest gallery window (cosine)
has its speaker. The chance level is the accuracy of a random gallery pick. With one clip per speaker the
nearest windows of the right speaker are the same clip's earlier frames, so clip-specific cues (a clip's
mean expression, the fit's bias on that face) count as much as speaking style; the *cross-clip* accuracy
leaves each query's own clip out of the gallery and counts only speakers with at least two clips (NaN when
none has), which measures style across recordings. Run once before training (untrained encoder) and every
``val_every`` steps.

Run folder ``OUT``: ``config.json``, ``log.csv``, ``val.csv``, ``checkpoints/last.pt``, and at the end
``style_encoder.pt`` (:func:`pt_bench.style_encoder.save_style_encoder`; copy it to the weights folder as
``style_encoder/personatalk_style.pt`` for StyleSim), ``embeddings.npz`` (per-clip style vectors and every
train / held-out window embedding with speakers) and ``retrieval.json``. :func:`plot_style_tsne` draws the
window embeddings with :func:`pt_bench.figures.tsne_figure`.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from pt_data.face_model import FaceModel
from pt_data.shards import ShardError, discover_shards, read_shard

from pt_bench.style_encoder import (StyleEncoder, StyleEncoderConfig, build_style_encoder, save_style_encoder,
                                    window_starts)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
CHECKPOINT_KIND = "personatalk-style-train-checkpoint"
CONFIG_NAME, LOG_NAME, VAL_NAME = "config.json", "log.csv", "val.csv"
CKPT_PATH = Path("checkpoints") / "last.pt"
ENCODER_NAME, EMBEDDINGS_NAME, RETRIEVAL_NAME = "style_encoder.pt", "embeddings.npz", "retrieval.json"
LOG_FIELDS = ("step", "loss", "pos_cos", "neg_cos", "lr", "seconds")
VAL_FIELDS = ("step", "retrieval_accuracy", "chance", "num_queries", "num_gallery", "num_speakers",
              "cross_clip_accuracy", "cross_clip_chance", "cross_clip_queries")
TRAIN_KIND, HELDOUT_KIND = "train window", "held-out window"


class StyleDataError(ValueError):
    """The shards cannot train a style encoder (no fitted expressions, too few speakers or frames)."""


class StyleTrainConfigError(ValueError):
    """A run folder or checkpoint was made with another training config, seed or face model."""


@dataclass
class StyleTrainConfig:
    """Everything that decides the trained encoder besides ``max_steps``, ``seed`` and the data."""

    encoder: StyleEncoderConfig = field(default_factory=StyleEncoderConfig)
    speakers_per_batch: int = 8
    windows_per_speaker: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    temperature: float = 0.1
    grad_clip: float = 1.0
    holdout_tail: float = 0.3  # held-out fraction at the end of every clip
    log_every: int = 10
    val_every: int = 200  # 0: validate only before and after training
    ckpt_every: int = 200  # a checkpoint is always written at the end
    speaker_map: dict[str, str] | None = None  # clip speaker_id -> speaker label

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            self.encoder = StyleEncoderConfig.from_dict(self.encoder)
        if self.windows_per_speaker < 2:
            raise ValueError("windows_per_speaker must be at least 2 (each window needs a positive)")
        if self.speakers_per_batch < 2:
            raise ValueError("speakers_per_batch must be at least 2 (contrastive learning needs negatives)")
        if not 0.0 <= self.holdout_tail < 1.0:
            raise ValueError(f"holdout_tail must be in [0, 1), got {self.holdout_tail}")
        if self.temperature <= 0 or self.lr <= 0:
            raise ValueError("temperature and lr must be positive")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StyleTrainConfig":
        return cls(**dict(d))


#: ``pt train style --preset``: training config and default number of steps.
PRESETS: dict[str, tuple[StyleTrainConfig, int]] = {
    "tiny": (StyleTrainConfig(
        encoder=StyleEncoderConfig(window=25, num_lower_vertices=128, num_upper_vertices=32, d_model=64,
                                   num_layers=2, num_heads=4, ff_mult=2, embed_dim=64, dropout=0.1),
        speakers_per_batch=8, windows_per_speaker=4, lr=1e-3, warmup_steps=20, log_every=10, val_every=100,
        ckpt_every=100), 300),
    "paper": (StyleTrainConfig(), 20000),
}


def preset_config(name: str, **overrides: Any) -> tuple[StyleTrainConfig, int]:
    """``(config, default max_steps)`` of preset ``name``; ``overrides`` replace training fields and, under
    the key ``encoder``, a dict of encoder fields."""
    if name not in PRESETS:
        raise ValueError(f"no preset {name!r}; choose one of {', '.join(PRESETS)}")
    base, steps = PRESETS[name]
    d = base.to_dict()
    enc = overrides.pop("encoder", None) or {}
    d["encoder"].update(enc)
    d.update(overrides)
    return StyleTrainConfig.from_dict(d), steps


# ------------------------------------------------------------------------------------------------- data
@dataclass
class StyleClip:
    """One clip's expressions, speaker label, and where its held-out tail starts."""

    clip_id: str
    speaker: str
    expression: np.ndarray  # (T, E) float32
    split: int  # frames [0, split) train, [split, T) held out

    @property
    def num_frames(self) -> int:
        return int(len(self.expression))


def load_style_clips(shards: str | os.PathLike, *, holdout_tail: float = 0.3,
                     speaker_map: Mapping[str, str] | None = None) -> tuple[list[StyleClip], str]:
    """Every clip of the shards under ``shards`` with its fitted expressions, and the face model id.

    Reads only the id, speaker, frame-count, face-model and expression columns. Raises
    :class:`StyleDataError` for shards without fitted expressions or of several face models.
    """
    paths = discover_shards(str(shards))
    if not paths:
        raise StyleDataError(f"no clip shards under {shards}: curate videos first (`pt curate ... --output DIR`)")
    clips: list[StyleClip] = []
    model_ids: set[str] = set()
    unfitted = []
    for p in paths:
        table = read_shard(p, columns=["clip_id", "speaker_id", "num_frames", "face_model_id", "expression"])
        for row in table.to_pylist():
            if row["expression"] is None or row["face_model_id"] is None:
                unfitted.append(row["clip_id"])
                continue
            t = int(row["num_frames"])
            expr = np.asarray(row["expression"], np.float32)
            if t < 2 or expr.size % t:
                raise ShardError(f"{p}: clip {row['clip_id']} has {expr.size} expression values for {t} frames")
            speaker = str(row["speaker_id"])
            if speaker_map:
                speaker = speaker_map.get(speaker, speaker)
            split = t - int(round(holdout_tail * t))
            clips.append(StyleClip(row["clip_id"], speaker, expr.reshape(t, -1), split))
            model_ids.add(str(row["face_model_id"]))
    if unfitted:
        raise StyleDataError(f"{len(unfitted)} clip(s) under {shards} have no fitted expressions (e.g. "
                             f"{unfitted[0]}): curate with geometry fitting on (`pt curate`, the default), or "
                             f"fit them with `pt fit`")
    if len(model_ids) > 1:
        raise StyleDataError(f"the shards under {shards} mix face models {sorted(model_ids)}: train on clips "
                             f"fitted with one model")
    if not clips:
        raise StyleDataError(f"the shards under {shards} hold no clips")
    return clips, model_ids.pop()


@dataclass
class WindowSet:
    """Windows cut from clips: ``(clip index, start)`` pairs with their speakers."""

    clip_index: np.ndarray  # (N,) int
    start: np.ndarray  # (N,) int
    speakers: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return len(self.start)


def cut_windows(clips: Sequence[StyleClip], window: int, part: str) -> WindowSet:
    """Windows of ``window`` frames (hop ``window // 2``) over the ``part`` ("train" or "heldout") of every
    clip; a part shorter than one window gives none."""
    ci, st, sp = [], [], []
    for i, c in enumerate(clips):
        lo, hi = (0, c.split) if part == "train" else (c.split, c.num_frames)
        if hi - lo < window:
            continue
        for s in window_starts(hi - lo, window):
            ci.append(i)
            st.append(lo + s)
            sp.append(c.speaker)
    return WindowSet(np.asarray(ci, np.int64), np.asarray(st, np.int64), np.asarray(sp, dtype=str))


def gather_windows(clips: Sequence[StyleClip], windows: WindowSet, window: int) -> np.ndarray:
    """``(N, window, E)`` float32 expression windows."""
    return np.stack([clips[c].expression[s:s + window] for c, s in zip(windows.clip_index, windows.start)])


class WindowSampler:
    """The training batches: step ``s`` draws from ``numpy.random.default_rng([seed, s])`` only."""

    def __init__(self, clips: Sequence[StyleClip], config: StyleTrainConfig, seed: int) -> None:
        self.clips, self.window, self.seed = clips, config.encoder.window, seed
        self.by_speaker: dict[str, list[int]] = {}
        for i, c in enumerate(clips):
            if c.split >= self.window:
                self.by_speaker.setdefault(c.speaker, []).append(i)
        self.speakers = sorted(self.by_speaker)
        if len(self.speakers) < 2:
            raise StyleDataError(
                f"{len(self.speakers)} speaker(s) have a clip whose training part holds a {self.window}-frame "
                f"window; contrastive training needs at least 2: add clips, or lower --window / --holdout-tail")
        self.per_batch = min(config.speakers_per_batch, len(self.speakers))
        self.k = config.windows_per_speaker
        self.speaker_index = {s: i for i, s in enumerate(self.speakers)}

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """``(windows (P*K, window, E) float32, labels (P*K,) int)`` of step ``step``."""
        rng = np.random.default_rng([self.seed, step])
        chosen = rng.choice(len(self.speakers), size=self.per_batch, replace=False)
        out, labels = [], []
        for si in chosen:
            ids = self.by_speaker[self.speakers[si]]
            room = np.array([self.clips[i].split - self.window + 1 for i in ids], np.float64)
            for _ in range(self.k):
                c = self.clips[ids[rng.choice(len(ids), p=room / room.sum())]]
                s = int(rng.integers(0, c.split - self.window + 1))
                out.append(c.expression[s:s + self.window])
                labels.append(si)
        return np.stack(out).astype(np.float32), np.asarray(labels, np.int64)


# ------------------------------------------------------------------------------------------- loss, eval
def supervised_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1
                                ) -> torch.Tensor:
    """SupCon (Khosla et al. 2020, the "L_out" form) of unit ``(N, D)`` embeddings with ``(N,)`` labels.

    ``mean_i  -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t) )`` over the
    anchors ``i`` that have at least one positive ``P(i)`` (same label, not ``i``).
    """
    n = embeddings.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    sim = (embeddings @ embeddings.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not has.any():
        raise ValueError("no anchor has a positive: every label occurs once")
    per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(1) / n_pos.clamp(min=1)
    return per_anchor[has].mean()


def _excluded(query_groups: Sequence[str] | None, gallery_groups: Sequence[str] | None, nq: int, ng: int
              ) -> np.ndarray:
    """``(Nq, Ng)`` True where a gallery item is in the query's own group (e.g. its clip)."""
    if query_groups is None or gallery_groups is None:
        return np.zeros((nq, ng), bool)
    return np.asarray(query_groups)[:, None] == np.asarray(gallery_groups)[None, :]


def _answerable(query_labels: Sequence[str], gallery_labels: Sequence[str], excluded: np.ndarray) -> np.ndarray:
    """Queries whose label occurs in the gallery outside their own group."""
    same = np.asarray(query_labels)[:, None] == np.asarray(gallery_labels)[None, :]
    return (same & ~excluded).any(axis=1)


def nearest_neighbour_accuracy(query: np.ndarray, query_labels: Sequence[str], gallery: np.ndarray,
                               gallery_labels: Sequence[str], *, query_groups: Sequence[str] | None = None,
                               gallery_groups: Sequence[str] | None = None) -> float:
    """Share of queries whose most cosine-similar gallery vector has the same label (NaN without queries).

    With groups (e.g. clip ids), gallery items of the query's own group are not searched, and only queries
    whose label occurs in another group count (cross-clip retrieval; NaN when there is none).
    """
    if len(query) == 0:
        return float("nan")
    if len(gallery) == 0:
        raise ValueError("an empty gallery")
    excluded = _excluded(query_groups, gallery_groups, len(query), len(gallery))
    keep = _answerable(query_labels, gallery_labels, excluded)
    if not keep.any():
        return float("nan")
    q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    g = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    sim = np.where(excluded, -np.inf, q @ g.T)
    nn = np.argmax(sim, axis=1)
    return float(np.mean((np.asarray(gallery_labels)[nn] == np.asarray(query_labels))[keep]))


def chance_accuracy(query_labels: Sequence[str], gallery_labels: Sequence[str], *,
                    query_groups: Sequence[str] | None = None, gallery_groups: Sequence[str] | None = None) -> float:
    """Expected accuracy of answering each (answerable) query with a uniformly random allowed gallery item."""
    q, g = np.asarray(query_labels), np.asarray(gallery_labels)
    if len(q) == 0 or len(g) == 0:
        return float("nan")
    excluded = _excluded(query_groups, gallery_groups, len(q), len(g))
    keep = _answerable(q, g, excluded)
    if not keep.any():
        return float("nan")
    rates = [np.mean(g[~excluded[i]] == q[i]) for i in np.flatnonzero(keep)]
    return float(np.mean(rates))


@dataclass
class RetrievalResult:
    """Held-out speaker retrieval of one encoder state."""

    accuracy: float
    chance: float
    num_queries: int
    num_gallery: int
    num_speakers: int
    cross_clip_accuracy: float  # the query's own clip left out of the gallery (NaN: no speaker has 2 clips)
    cross_clip_chance: float
    cross_clip_queries: int
    query: np.ndarray  # (Nq, D) held-out window embeddings
    gallery: np.ndarray  # (Ng, D) training window embeddings


@torch.no_grad()
def embed_window_set(model: StyleEncoder, clips: Sequence[StyleClip], windows: WindowSet,
                     batch_size: int = 128) -> np.ndarray:
    """``(N, D)`` embeddings of a window set (eval mode; the training flag is restored)."""
    if len(windows) == 0:
        return np.zeros((0, model.config.embed_dim), np.float32)
    x = gather_windows(clips, windows, model.config.window)
    dev = model.basis.device
    was = model.training
    model.eval()
    try:
        out = [model(torch.from_numpy(x[i:i + batch_size]).to(dev)).float().cpu().numpy()
               for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    return np.concatenate(out)


def speaker_retrieval(model: StyleEncoder, clips: Sequence[StyleClip], gallery: WindowSet, queries: WindowSet
                      ) -> RetrievalResult:
    """Nearest-neighbour speaker retrieval of held-out windows against training windows."""
    g = embed_window_set(model, clips, gallery)
    q = embed_window_set(model, clips, queries)
    groups = {"query_groups": queries.clip_index.astype(str), "gallery_groups": gallery.clip_index.astype(str)}
    cross = int(_answerable(queries.speakers, gallery.speakers,
                            _excluded(groups["query_groups"], groups["gallery_groups"], len(q), len(g))).sum()
                ) if len(q) and len(g) else 0
    return RetrievalResult(nearest_neighbour_accuracy(q, queries.speakers, g, gallery.speakers),
                           chance_accuracy(queries.speakers, gallery.speakers), len(queries), len(gallery),
                           len(set(queries.speakers)),
                           nearest_neighbour_accuracy(q, queries.speakers, g, gallery.speakers, **groups),
                           chance_accuracy(queries.speakers, gallery.speakers, **groups), cross, q, g)


# ----------------------------------------------------------------------------------------- the run
@dataclass
class StyleTrainResult:
    """What :func:`train_style` did and wrote."""

    out: Path
    step: int
    resumed_from: int | None
    final_loss: float
    retrieval_accuracy: float
    retrieval_chance: float
    untrained_retrieval_accuracy: float | None  # step-0 validation (None when the run was resumed past it)
    cross_clip_accuracy: float  # queries matched against other clips only (NaN: one clip per speaker)
    untrained_cross_clip_accuracy: float | None
    num_queries: int
    num_speakers: int  # speakers trained on
    encoder_path: Path
    embeddings_path: Path
    device: str
    seconds: float

    def summary(self) -> dict[str, Any]:
        """A JSON-able dict."""
        d = asdict(self)
        return {k: str(v) if isinstance(v, Path) else None if isinstance(v, float) and np.isnan(v) else v
                for k, v in d.items()}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None: CUDA when available, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _rewrite_csv(path: Path, fields: Sequence[str], keep_upto: int) -> None:
    """Keep the header and the rows with ``step <= keep_upto`` (rows written after the last checkpoint)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_upto]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)


def _append_csv(path: Path, fields: Sequence[str], row: Mapping[str, Any]) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        if new:
            w.writeheader()
        w.writerow({k: row[k] for k in fields})


def read_csv_log(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of ``log.csv`` / ``val.csv`` as floats."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _run_identity(config: StyleTrainConfig, seed: int, face_model_id: str) -> dict[str, Any]:
    return {"train_config": config.to_dict(), "seed": int(seed), "face_model_id": face_model_id}


def _check_run_folder(out: Path, identity: Mapping[str, Any]) -> None:
    cfg = out / CONFIG_NAME
    if not cfg.is_file():
        return
    stored = json.loads(cfg.read_text())
    stored_id = {k: stored.get(k) for k in identity}
    if json.loads(json.dumps(identity)) != stored_id:
        diffs = [k for k in identity if json.loads(json.dumps(identity[k])) != stored_id[k]]
        raise StyleTrainConfigError(f"{out} holds a run with another {', '.join(diffs)} ({cfg}); use another "
                                    f"--out folder, or the same options to resume it")


def _save_checkpoint(path: Path, model: StyleEncoder, opt: torch.optim.Optimizer, step: int,
                     identity: Mapping[str, Any], device: torch.device) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": CHECKPOINT_FORMAT, "kind": CHECKPOINT_KIND, "step": int(step),
           "identity": json.dumps(identity, sort_keys=True),
           "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
           "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        obj["cuda_rng"] = torch.cuda.get_rng_state(device)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_train_checkpoint(path: str | os.PathLike, identity: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A training checkpoint (``weights_only=True``), checked against the run identity when given."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or obj.get("kind") != CHECKPOINT_KIND or obj.get("format") != CHECKPOINT_FORMAT:
        raise StyleTrainConfigError(f"{path} is not a style-training checkpoint of format {CHECKPOINT_FORMAT}")
    if identity is not None and obj["identity"] != json.dumps(identity, sort_keys=True):
        raise StyleTrainConfigError(f"{path} was written by a run with another config, seed or face model; "
                                    f"use another --out folder")
    return obj


def _lr_at(step: int, config: StyleTrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then constant."""
    if config.warmup_steps <= 0:
        return config.lr
    return config.lr * min(1.0, (step + 1) / config.warmup_steps)


def train_style(shards: str | os.PathLike, out: str | os.PathLike, config: StyleTrainConfig | None = None,
                max_steps: int | None = None, seed: int = 0, device: str | torch.device | None = "auto", *,
                face_model: FaceModel | str | os.PathLike | None = None, progress: bool = True) -> StyleTrainResult:
    """Train a style encoder on the clips under ``shards`` into the run folder ``out`` (see the module doc).

    ``max_steps`` defaults to the ``paper`` preset's. ``face_model``: the model the shards were fitted with
    (a :class:`FaceModel`, a converted ``.npz`` path, or None for ``$PT_FACE_MODEL`` / the ICT default); its
    id must equal the shards' ``face_model_id``. Running again on a folder resumes from its checkpoint.
    """
    cfg = config or StyleTrainConfig()
    clips, face_model_id = load_style_clips(shards, holdout_tail=cfg.holdout_tail, speaker_map=cfg.speaker_map)
    if not isinstance(face_model, FaceModel):
        from pt_data.face_model_convert import default_face_model  # noqa: PLC0415

        face_model = default_face_model(face_model)
    if face_model.model_id != face_model_id:
        raise StyleDataError(f"the shards under {shards} were fitted with face model {face_model_id}, not "
                             f"{face_model.model_id}: pass that model (--face-model or $PT_FACE_MODEL)")
    return train_style_on_clips(clips, face_model, out, cfg, max_steps=max_steps, seed=seed, device=device,
                                progress=progress, source=str(shards))


def train_style_on_clips(clips: Sequence[StyleClip], face_model: FaceModel, out: str | os.PathLike,
                         config: StyleTrainConfig | None = None, *, max_steps: int | None = None, seed: int = 0,
                         device: str | torch.device | None = "auto", progress: bool = True, source: str = ""
                         ) -> StyleTrainResult:
    """:func:`train_style` on clips already in memory (their expressions fitted with ``face_model``)."""
    from tqdm import tqdm  # noqa: PLC0415

    t0 = time.perf_counter()
    cfg = config or StyleTrainConfig()
    max_steps = PRESETS["paper"][1] if max_steps is None else int(max_steps)
    dev = resolve_device(device)
    out = Path(out)
    e = face_model.num_expression
    bad = [c.clip_id for c in clips if c.expression.shape[1] != e]
    if bad:
        raise StyleDataError(f"clips {bad[:3]} have expressions of another size than the face model's {e}")
    window = cfg.encoder.window
    sampler = WindowSampler(clips, cfg, seed)
    gallery, queries = cut_windows(clips, window, "train"), cut_windows(clips, window, "heldout")
    if len(queries) == 0:
        log.warning("no clip has a held-out tail of %d frames: validation retrieval is not measured", window)
    identity = _run_identity(cfg, seed, face_model.model_id)
    _check_run_folder(out, identity)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(json.dumps({**identity, "max_steps": max_steps, "shards": source,
                                               "num_clips": len(clips), "speakers": sampler.speakers,
                                               "device": str(dev)}, indent=2) + "\n")
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = build_style_encoder(cfg.encoder, face_model).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        step, resumed_from = 0, None
        ckpt = out / CKPT_PATH
        if ckpt.is_file():
            state = load_train_checkpoint(ckpt, identity)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            if "cuda_rng" in state and dev.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], dev)
            step = resumed_from = int(state["step"])
            _rewrite_csv(out / LOG_NAME, LOG_FIELDS, step)
            _rewrite_csv(out / VAL_NAME, VAL_FIELDS, step)
        else:
            for name in (LOG_NAME, VAL_NAME):
                (out / name).unlink(missing_ok=True)

        def validate(at: int) -> RetrievalResult:
            r = speaker_retrieval(model, clips, gallery, queries)
            _append_csv(out / VAL_NAME, VAL_FIELDS, {"step": at, "retrieval_accuracy": r.accuracy,
                                                     "chance": r.chance, "num_queries": r.num_queries,
                                                     "num_gallery": r.num_gallery, "num_speakers": r.num_speakers,
                                                     "cross_clip_accuracy": r.cross_clip_accuracy,
                                                     "cross_clip_chance": r.cross_clip_chance,
                                                     "cross_clip_queries": r.cross_clip_queries})
            return r

        untrained = validate(0) if step == 0 else None
        model.train()
        loss_value = float("nan")
        last_t = time.perf_counter()
        bar = tqdm(range(step, max_steps), desc="style encoder", unit="step", disable=not progress,
                   initial=step, total=max_steps)
        for s in bar:
            x, y = sampler.batch(s)
            for g in opt.param_groups:
                g["lr"] = _lr_at(s, cfg)
            emb = model(torch.from_numpy(x).to(dev))
            labels = torch.from_numpy(y).to(dev)
            loss = supervised_contrastive_loss(emb, labels, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step = s + 1
            loss_value = float(loss.detach())
            if step % cfg.log_every == 0 or step == max_steps:
                with torch.no_grad():
                    sim = emb.detach() @ emb.detach().T
                    same = labels[:, None] == labels[None, :]
                    off = ~torch.eye(len(y), dtype=torch.bool, device=dev)
                    now = time.perf_counter()
                    _append_csv(out / LOG_NAME, LOG_FIELDS, {
                        "step": step, "loss": round(loss_value, 6), "pos_cos": round(float(sim[same & off].mean()), 6),
                        "neg_cos": round(float(sim[~same].mean()), 6), "lr": _lr_at(s, cfg),
                        "seconds": round(now - last_t, 3)})
                    last_t = now
                bar.set_postfix(loss=f"{loss_value:.3f}")
            if cfg.val_every and step % cfg.val_every == 0 and step != max_steps:
                validate(step)
            if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step != max_steps:
                _save_checkpoint(ckpt, model, opt, step, identity, dev)
        bar.close()
        _save_checkpoint(ckpt, model, opt, step, identity, dev)
        _rewrite_csv(out / VAL_NAME, VAL_FIELDS, step - 1)  # a finished run started again validates once more
        final = validate(step)
    if resumed_from == step and (out / LOG_NAME).is_file():  # nothing left to train: report the logged loss
        rows = read_csv_log(out / LOG_NAME)
        loss_value = rows[-1]["loss"] if rows else loss_value
    clip_vecs = np.stack([model.embed_sequence(c.expression) for c in clips])
    np.savez(out / EMBEDDINGS_NAME, clip_ids=np.asarray([c.clip_id for c in clips], dtype=str),
             clip_speakers=np.asarray([c.speaker for c in clips], dtype=str), clip_embeddings=clip_vecs,
             window_embeddings=np.concatenate([final.gallery, final.query]).astype(np.float32),
             window_speakers=np.concatenate([gallery.speakers, queries.speakers]).astype(str),
             window_clip_ids=np.asarray([clips[i].clip_id for i in np.concatenate([gallery.clip_index,
                                                                                   queries.clip_index])], dtype=str),
             window_starts=np.concatenate([gallery.start, queries.start]),
             window_kinds=np.asarray([TRAIN_KIND] * len(gallery) + [HELDOUT_KIND] * len(queries), dtype=str))
    retrieval = {"step": step, "accuracy": final.accuracy, "chance": final.chance, "num_queries": final.num_queries,
                 "num_gallery": final.num_gallery, "num_speakers": final.num_speakers,
                 "cross_clip_accuracy": final.cross_clip_accuracy, "cross_clip_chance": final.cross_clip_chance,
                 "cross_clip_queries": final.cross_clip_queries,
                 "untrained_accuracy": untrained.accuracy if untrained else None,
                 "untrained_cross_clip_accuracy": untrained.cross_clip_accuracy if untrained else None,
                 "window": window, "holdout_tail": cfg.holdout_tail}
    retrieval = {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in retrieval.items()}
    (out / RETRIEVAL_NAME).write_text(json.dumps(retrieval, indent=2) + "\n")
    enc_path = save_style_encoder(out / ENCODER_NAME, model.cpu().eval(), cfg.encoder, face_model.model_id, meta={
        "steps": step, "seed": seed, "shards": source, "train_config": json.dumps(cfg.to_dict()),
        "val_retrieval_accuracy": final.accuracy, "val_chance": final.chance, "val_num_queries": final.num_queries})
    return StyleTrainResult(out=out, step=step, resumed_from=resumed_from, final_loss=loss_value,
                            retrieval_accuracy=final.accuracy, retrieval_chance=final.chance,
                            untrained_retrieval_accuracy=untrained.accuracy if untrained else None,
                            cross_clip_accuracy=final.cross_clip_accuracy,
                            untrained_cross_clip_accuracy=untrained.cross_clip_accuracy if untrained else None,
                            num_queries=final.num_queries,
                            num_speakers=len(sampler.speakers), encoder_path=enc_path,
                            embeddings_path=out / EMBEDDINGS_NAME, device=str(dev),
                            seconds=time.perf_counter() - t0)


def plot_style_tsne(run_dir: str | os.PathLike, out_stem: str | os.PathLike | None = None, *, seed: int = 0,
                    formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Draw the t-SNE of a run's window embeddings (speakers by colour, train vs held-out windows by marker)
    with :func:`pt_bench.figures.tsne_figure`; writes ``out_stem``.png/.pdf (default ``RUN/style_tsne``)."""
    from pt_bench.figures import save_figure, tsne_figure  # noqa: PLC0415 - matplotlib

    run_dir = Path(run_dir)
    with np.load(run_dir / EMBEDDINGS_NAME, allow_pickle=False) as z:
        emb, spk, kinds = z["window_embeddings"], z["window_speakers"].astype(str), z["window_kinds"].astype(str)
    retrieval = json.loads((run_dir / RETRIEVAL_NAME).read_text())
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    title = (f"t-SNE of style-encoder window embeddings ({len(emb)} windows, {len(set(spk))} speakers)\n"
             f"held-out speaker retrieval {fmt(retrieval['accuracy'])} (chance {fmt(retrieval['chance'])}, "
             f"{retrieval['num_queries']} queries, step {retrieval['step']})")
    if retrieval.get("cross_clip_accuracy") is not None:
        title += (f"; cross-clip {fmt(retrieval['cross_clip_accuracy'])} "
                  f"(chance {fmt(retrieval['cross_clip_chance'])})")
    fig = tsne_figure(emb, spk, kinds, seed=seed, title=title)
    return save_figure(fig, Path(out_stem) if out_stem else run_dir / "style_tsne", formats)


__all__ = ["StyleTrainConfig", "StyleTrainResult", "StyleClip", "StyleDataError", "StyleTrainConfigError", "PRESETS",
           "preset_config", "load_style_clips", "cut_windows", "WindowSampler", "supervised_contrastive_loss",
           "nearest_neighbour_accuracy", "chance_accuracy", "speaker_retrieval", "train_style",
           "train_style_on_clips", "load_train_checkpoint", "read_csv_log", "plot_style_tsne"]
