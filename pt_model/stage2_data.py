"""Stage-2 samples from clip shards: target frame + PNCC + lip mask, and its face and lip references.

Each clip needs the geometry columns (``shape``, ``expression``, ``pose``, ``face_model_id``) that the fitting
stage of curation fills (clips without them are skipped, as in stage 1; :func:`check_stage2_shards` refuses
shards where no clip has them). Per sampled target frame ``i`` (targets and references come from the same clip):

* the target frame (3 x H x W in [0, 1]), its PNCC rendering and lip mask (:class:`pt_data.render.PNCCRenderer`
  applied to the clip's fitted coefficients of frame ``i``);
* ``N_f`` face and ``N_l`` lip references chosen by :func:`pt_model.references.training_references` (Algorithm 1
  or random), each with its frame and PNCC.

The last ``val_fraction`` of every clip's frames is held out: training samples never use them (neither as
targets nor as references), and validation reconstructs them (:func:`load_validation_clips`) from references
in the training part, chosen as at inference time (the ``N_f`` training frames nearest in time and ``N_l``
lip references spread over the training frames' mouth openings).

Frames are decoded from the shards' 256 x 256 JPEGs and area-resized to ``image_size``; the PNCC is rendered
at ``image_size`` directly.
"""
from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset

from pt_data.dataset import ClipShardDataset
from pt_data.face_model import FaceModel
from pt_data.jpeg import decode_frames
from pt_data.render import PNCCRenderer, interpolate
from pt_data.shards import ShardError
from pt_model.references import ReferenceConfig, inference_lip_references, training_references
from pt_model.stage1 import canonical_mouth_opening
from pt_model.stage1_data import GEOMETRY_COLUMNS, MissingGeometryError, check_geometry

#: Keys of one sample (tensors; references are stacked on a leading N axis; ``*_index``: frame numbers).
SAMPLE_KEYS = ("target", "target_pncc", "target_lip_mask", "face_pncc", "face_frames", "lip_pncc", "lip_frames",
               "target_index", "face_index", "lip_index")
_COLUMNS = ("clip_id", "num_frames", "frames", *GEOMETRY_COLUMNS)


class Stage2DataError(ValueError):
    """Shards that stage 2 cannot train on (no geometry, another face model, clips too short)."""


@dataclass
class Stage2DataConfig:
    """Where the clips are and how samples are drawn from them."""

    shards: str = ""
    image_size: int = 256
    references: ReferenceConfig = field(default_factory=ReferenceConfig)
    samples_per_clip: int = 4  # target frames drawn from a clip each time it comes round
    val_fraction: float = 0.2  # tail of each clip held out from training
    val_clips: int = 4  # clips whose held-out frames validation reconstructs
    val_frames_per_clip: int = 8
    val_num_lip: int = 25  # lip references at validation (inference-time N_l)
    render_batch: int = 32
    render_cache_mb: int = 1024  # per loader worker: rendered PNCC frames kept across epochs

    def __post_init__(self) -> None:
        if isinstance(self.references, dict):
            self.references = ReferenceConfig(**self.references)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")


@dataclass
class ClipGeometry:
    """The columns of one clip that stage 2 reads (JPEG frames and fitted coefficients)."""

    clip_id: str
    frames: Sequence[bytes]
    shape: np.ndarray  # (S,)
    expression: np.ndarray  # (T, E)
    pose: np.ndarray  # (T, 6)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def train_length(self, val_fraction: float) -> int:
        """Frames ``[0, train_length)`` are for training; the rest is held out (at least one frame each
        side when the clip has two or more frames and ``val_fraction > 0``)."""
        t = self.num_frames
        if val_fraction <= 0 or t < 2:
            return t
        return int(min(max(round(t * (1 - val_fraction)), 1), t - 1))


def check_stage2_shards(shards: str, model: FaceModel) -> dict[str, int]:
    """Clip counts with / without geometry; :class:`Stage2DataError` when no clip has geometry of ``model``."""
    try:
        return check_geometry(shards, model.model_id)
    except (MissingGeometryError, ShardError) as e:
        raise Stage2DataError(f"stage 2 cannot train on {shards}: {e}") from e


def has_geometry(row: dict[str, Any]) -> bool:
    """Whether a shard row carries the fitted coefficients."""
    return all(row.get(c) is not None for c in ("shape", "expression", "pose"))


def clip_geometry_from_row(row: dict[str, Any], model: FaceModel) -> ClipGeometry:
    """Check a shard row for stage 2 and pull its frames and coefficients."""
    cid = row.get("clip_id", "?")
    missing = [c for c in ("shape", "expression", "pose") if row.get(c) is None]
    if missing:
        raise Stage2DataError(f"clip {cid!r} has no {', '.join(missing)}: stage 2 needs fitted geometry; "
                              f"curate the videos with fitting enabled (pt curate fills shape/expression/pose)")
    mid = row.get("face_model_id")
    if mid and mid != model.model_id:
        raise Stage2DataError(f"clip {cid!r} was fitted with face model {mid!r}, but the model loaded is "
                              f"{model.model_id!r}: pass the same model (PT_FACE_MODEL) or refit the shards")
    t = int(row["num_frames"])
    expression = np.asarray(row["expression"], np.float32).reshape(t, -1)
    if expression.shape[1] != model.num_expression:
        raise Stage2DataError(f"clip {cid!r}: {expression.shape[1]} expression coefficients, the face model "
                              f"has {model.num_expression}")
    return ClipGeometry(cid, list(row["frames"]), np.asarray(row["shape"], np.float32),
                        expression, np.asarray(row["pose"], np.float32).reshape(t, 6))


class RenderedFrames(NamedTuple):
    """PNCC images (N, 3, H, W), lip masks (N, 1, H, W) and, when asked for, a vertex-region mask (N, 1, H, W)."""

    pncc: torch.Tensor
    lip_mask: torch.Tensor
    region: torch.Tensor | None = None


class GeometryImages:
    """PNCC images and lip masks of fitted coefficients at the network's resolution (batched).

    ``cache_bytes`` > 0 keeps rendered frames of :meth:`clip_frames` in a least-recently-used cache.
    """

    def __init__(self, model: FaceModel, image_size: int, *, device: str | torch.device = "cpu",
                 batch: int = 32, cache_bytes: int = 0) -> None:
        self.model, self.image_size, self.batch = model, image_size, batch
        self.renderer = PNCCRenderer(model, image_size, device=device)
        self.device = torch.device(device)
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._frame_bytes = 4 * 4 * image_size * image_size  # pncc (3) + lip (1) float32
        self._regions: dict[str, torch.Tensor] = {}

    def _region_attribute(self, region: str) -> torch.Tensor:
        if region not in self._regions:
            m = self.model.mask(region).astype(np.float32)[:, None]
            self._regions[region] = torch.as_tensor(m, device=self.device)
        return self._regions[region]

    def _collect(self, outputs: list[Any], region: str | None) -> RenderedFrames:
        pncc = torch.cat([o.pncc.float().cpu() for o in outputs])
        lip = torch.cat([o.lip_mask.float().cpu() for o in outputs])
        reg = None
        if region is not None:
            attr = self._region_attribute(region)
            reg = torch.cat([(interpolate(o.fragments, attr) > 0.5).float().cpu() for o in outputs])
        return RenderedFrames(pncc, lip, reg)

    def render(self, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray, region: str | None = None
               ) -> RenderedFrames:
        """Renders of one identity ``shape`` (S,) with N expressions (N, E) and poses (N, 6).

        ``region``: also the visible-surface mask of a face-model vertex mask (e.g. "lower_face").
        """
        outs = []
        for s in range(0, len(expression), self.batch):
            e = torch.as_tensor(np.asarray(expression[s:s + self.batch], np.float32), device=self.device)
            p = torch.as_tensor(np.asarray(pose[s:s + self.batch], np.float32), device=self.device)
            sh = torch.as_tensor(np.asarray(shape, np.float32), device=self.device).expand(len(e), -1)
            with torch.no_grad():
                outs.append(self.renderer.render(sh, e, p))
        return self._collect(outs, region)

    def render_vertices(self, vertices: np.ndarray | torch.Tensor, pose: np.ndarray | torch.Tensor,
                        region: str | None = None) -> RenderedFrames:
        """The same for canonical vertices (N, V, 3) (e.g. stage 1's output) and poses (N, 6)."""
        outs = []
        for s in range(0, len(vertices), self.batch):
            v = torch.as_tensor(vertices[s:s + self.batch], dtype=torch.float32, device=self.device)
            p = torch.as_tensor(pose[s:s + self.batch], dtype=torch.float32, device=self.device)
            with torch.no_grad():
                outs.append(self.renderer.render_vertices(v, p))
        return self._collect(outs, region)

    def clip_frames(self, clip: "ClipGeometry", indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """PNCC and lip masks of frames ``indices`` of ``clip``, through the least-recently-used cache
        (rendering is the costly part of a sample; clips come round every epoch)."""
        idx = [int(i) for i in indices]
        todo = sorted({i for i in idx if (clip.clip_id, i) not in self._cache})
        fresh = {}
        if todo:
            r = self.render(clip.shape, clip.expression[todo], clip.pose[todo])
            fresh = {i: (r.pncc[j], r.lip_mask[j]) for j, i in enumerate(todo)}
        out = []
        for i in idx:
            key = (clip.clip_id, i)
            if key in self._cache:
                self._cache.move_to_end(key)
                out.append(self._cache[key])
            else:
                out.append(fresh[i])
        if self.cache_bytes > 0:
            for i, v in fresh.items():
                self._cache[(clip.clip_id, i)] = v
            while len(self._cache) * self._frame_bytes > self.cache_bytes:
                self._cache.popitem(last=False)
        return torch.stack([p for p, _ in out]), torch.stack([m for _, m in out])


def frames_to_tensor(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 frames -> (N, 3, size, size) float in [0, 1] (area resize when shrinking)."""
    if rgb.shape[1] != size or rgb.shape[2] != size:
        interp = cv2.INTER_AREA if rgb.shape[1] > size else cv2.INTER_CUBIC
        rgb = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in rgb])
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 255.0


def build_sample(frames: torch.Tensor, pncc: torch.Tensor, lip: torch.Tensor, target: int,
                 face: np.ndarray, lip_refs: np.ndarray, frame_ids: np.ndarray | None = None
                 ) -> dict[str, torch.Tensor]:
    """One sample from per-frame arrays (row ``k`` = frame ``frame_ids[k]`` of the clip, all frames when
    ``frame_ids`` is None) and the chosen rows; ``*_index`` entries give the clip's frame numbers."""
    ids = np.arange(len(frames)) if frame_ids is None else np.asarray(frame_ids)
    return {"target": frames[target], "target_pncc": pncc[target], "target_lip_mask": lip[target],
            "face_pncc": pncc[face], "face_frames": frames[face],
            "lip_pncc": pncc[lip_refs], "lip_frames": frames[lip_refs],
            "target_index": torch.tensor(int(ids[target])), "face_index": torch.as_tensor(ids[face]),
            "lip_index": torch.as_tensor(ids[lip_refs])}


def _clip_rng(seed: int, epoch: int, clip_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, zlib.crc32(clip_id.encode())])


class Stage2Dataset(IterableDataset):
    """Training samples (dicts of :data:`SAMPLE_KEYS`), deterministic given ``seed``.

    One iteration is one epoch (:meth:`set_epoch` selects it, as the training loop does). Clips are read by
    :class:`~pt_data.dataset.ClipShardDataset` (split over DDP ranks and loader workers, shuffled per epoch);
    each clip yields ``samples_per_clip`` targets drawn from its training part, with references from
    :func:`~pt_model.references.training_references`. The randomness of a clip depends only on
    ``(seed, epoch, clip_id)``, so the stream is the same on every run.
    """

    def __init__(self, config: Stage2DataConfig, model: FaceModel, seed: int = 0) -> None:
        super().__init__()
        self.config, self.model, self.seed, self.epoch = config, model, seed, 0
        self.clips = ClipShardDataset(config.shards, columns=list(_COLUMNS), shuffle=True, seed=seed)
        if self.clips.num_clips == 0:
            raise Stage2DataError(f"{config.shards}: no clips to train on")
        self._images: GeometryImages | None = None

    def _geometry_images(self) -> GeometryImages:
        if self._images is None:  # built lazily, so that each loader worker owns its renderer
            self._images = GeometryImages(self.model, self.config.image_size, batch=self.config.render_batch,
                                          cache_bytes=self.config.render_cache_mb << 20)
        return self._images

    def clip_samples(self, clip: ClipGeometry, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """The samples of one clip in one epoch."""
        cfg = self.config
        rng = _clip_rng(self.seed, epoch, clip.clip_id)
        t = clip.train_length(cfg.val_fraction)
        targets = rng.integers(0, t, size=cfg.samples_per_clip)
        refs = [training_references(int(i), t, rng, cfg.references) for i in targets]
        needed = np.unique(np.concatenate([targets] + [np.concatenate([r.face, r.lip]) for r in refs]))
        where = {int(k): j for j, k in enumerate(needed)}
        frames = frames_to_tensor(decode_frames(clip.frames, needed.tolist()), cfg.image_size)
        pncc, lip = self._geometry_images().clip_frames(clip, needed)
        remap = np.vectorize(where.__getitem__, otypes=[np.int64])
        for i, r in zip(targets, refs):
            yield build_sample(frames, pncc, lip, where[int(i)], remap(r.face), remap(r.lip), needed)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (the clip order and every clip's draws depend on it)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch: every clip of this reader once, ``samples_per_clip`` samples each."""
        self.clips.set_epoch(self.epoch)
        for row in self.clips:
            if has_geometry(row):
                yield from self.clip_samples(clip_geometry_from_row(row, self.model), self.epoch)


@dataclass
class ValidationClip:
    """Held-out frames of one clip with everything needed to reconstruct them."""

    clip_id: str
    frames: torch.Tensor  # (T, 3, H, W) the whole clip
    pncc: torch.Tensor  # (T, 3, H, W)
    lip_mask: torch.Tensor  # (T, 1, H, W)
    train_length: int
    targets: np.ndarray  # held-out frame indices (>= train_length)
    face_refs: np.ndarray  # (N_f,) training frames nearest in time to the held-out tail
    lip_refs: np.ndarray  # (N_l,) training frames spread over mouth openings

    def samples(self) -> list[dict[str, torch.Tensor]]:
        return [build_sample(self.frames, self.pncc, self.lip_mask, int(i), self.face_refs, self.lip_refs)
                for i in self.targets]

    def nearest_in_time(self) -> np.ndarray:
        """The baseline "copy the nearest reference frame": the last training frame for every target."""
        return np.full(len(self.targets), self.train_length - 1, np.int64)

    def nearest_in_geometry(self) -> np.ndarray:
        """The training frame whose PNCC is closest (L1) to each target's PNCC (a stronger baseline)."""
        train = self.pncc[:self.train_length].flatten(1)
        d = torch.cdist(self.pncc[self.targets].flatten(1), train, p=1)
        return d.argmin(1).numpy().astype(np.int64)


def validation_clip(clip: ClipGeometry, model: FaceModel, images: GeometryImages, config: Stage2DataConfig
                    ) -> ValidationClip | None:
    """The held-out part of ``clip`` as a :class:`ValidationClip` (None when nothing is held out)."""
    t = clip.train_length(config.val_fraction)
    if t >= clip.num_frames:
        return None
    held = np.arange(t, clip.num_frames)
    targets = held[np.rint(np.linspace(0, len(held) - 1, min(config.val_frames_per_clip, len(held)))).astype(int)]
    targets = np.unique(targets)
    frames = frames_to_tensor(decode_frames(clip.frames), config.image_size)
    pncc, lip, _ = images.render(clip.shape, clip.expression, clip.pose)
    face = np.clip(np.arange(t - config.references.num_face, t), 0, t - 1).astype(np.int64)
    opening = canonical_mouth_opening(model, clip.shape, clip.expression[:t])
    lips = inference_lip_references(opening, config.val_num_lip)
    return ValidationClip(clip.clip_id, frames, pncc, lip, t, targets, face, lips)


def load_validation_clips(config: Stage2DataConfig, model: FaceModel, images: GeometryImages | None = None
                          ) -> list[ValidationClip]:
    """Validation clips: the first ``val_clips`` clips of the shards in file order."""
    images = images or GeometryImages(model, config.image_size, batch=config.render_batch)
    out: list[ValidationClip] = []
    if config.val_clips <= 0 or config.val_fraction <= 0:
        return out
    for row in ClipShardDataset(config.shards, columns=list(_COLUMNS), shuffle=False, rank=0, world_size=1):
        if not has_geometry(row):
            continue
        vc = validation_clip(clip_geometry_from_row(row, model), model, images, config)
        if vc is not None:
            out.append(vc)
        if len(out) >= config.val_clips:
            break
    return out
