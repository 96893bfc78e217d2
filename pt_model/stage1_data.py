"""Stage-1 training data: windows of frames with their audio and a style window of the same speaker.

Stage 1 reads no pixels: per clip it needs the audio, the identity ``shape``, the per-frame ``expression``
and ``pose`` (the geometry columns filled by fitting during curation) and ``speaker_id``.

Training items (:class:`Stage1WindowDataset`, an ``IterableDataset`` streaming the shards through
:class:`~pt_data.dataset.ClipShardDataset`): each epoch every clip gives ``windows_per_clip`` windows of
``window`` frames at random starts. The **style** of a window comes from a *disjoint* window of the same
clip (up to ``style_frames`` frames, at least ``style_min_frames``, before or after the target), so the
style encoder never sees the frames it must predict. A clip too short for both is skipped. Items pass a
shuffle buffer. Everything random is drawn from generators seeded by ``(seed, epoch, clip / reader)``,
so the stream is a function of the seed and the epoch (exact resume; any number of workers).

Held-out frames: with ``holdout_tail`` = h > 0 and no separate validation shards, the last fraction h of
every clip is never used for training; validation (:func:`load_validation_clips`) predicts that tail with
the style taken from the clip's head (the frames before it), as dubbing does with a reference video. With
``val_shards`` the training uses whole clips and the same head/tail split applies to the validation clips.
``clip_fraction`` = f < 1 cuts every clip (training and validation) to its first fraction f before all of
this: an inner split for choosing settings without touching the final test frames (f = 0.8 with h = 0.25
trains on the first 60 % of every clip and validates on 60-80 %, leaving the last 20 % unseen).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pt_data.audio import audio_for_frames, pcm16_to_float
from pt_data.dataset import ClipShardDataset
from pt_data.shard_schema import SAMPLES_PER_FRAME
from pt_data.shards import discover_shards, iter_clip_rows, open_shard

GEOMETRY_COLUMNS = ("shape", "expression", "pose", "face_model_id")
STAGE1_COLUMNS = ("clip_id", "speaker_id", "num_frames", "audio_pcm16", *GEOMETRY_COLUMNS)


class MissingGeometryError(ValueError):
    """The shards carry no fitted geometry (shape / expression / pose) for stage 1."""


@dataclass
class Stage1DataConfig:
    """Which shards and how windows are cut (frames are 25 fps)."""

    shards: str
    val_shards: str | None = None
    window: int = 32  # target frames per training item
    style_frames: int = 64  # longest style window
    style_min_frames: int = 16  # shortest style window
    context_frames: int = 8  # real audio on each side of the window, given to the audio encoder
    windows_per_clip: int = 4  # training windows per clip and epoch
    holdout_tail: float = 0.2  # last fraction of each clip kept for validation (0: none)
    clip_fraction: float = 1.0  # only the first fraction of every clip exists for this run (inner splits)
    shuffle_buffer: int = 256
    val_max_clips: int = 64

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_tail < 1.0:
            raise ValueError(f"holdout_tail must be in [0, 1), got {self.holdout_tail}")
        if not 0.0 < self.clip_fraction <= 1.0:
            raise ValueError(f"clip_fraction must be in (0, 1], got {self.clip_fraction}")
        if self.window < 1 or self.style_min_frames < 1 or self.style_frames < self.style_min_frames:
            raise ValueError("need window >= 1 and 1 <= style_min_frames <= style_frames")

    @property
    def train_fraction(self) -> float:
        """Fraction of each training clip (from its start) that training windows may use."""
        return 1.0 if self.val_shards else 1.0 - self.holdout_tail


@dataclass
class GeometryClip:
    """One clip's stage-1 data in memory."""

    clip_id: str
    speaker_id: str
    audio: np.ndarray  # int16 (N,)
    shape: np.ndarray  # (S,)
    expression: np.ndarray  # (T, E)
    pose: np.ndarray  # (T, 6)

    @property
    def num_frames(self) -> int:
        return len(self.expression)


def clip_from_row(row: dict[str, Any]) -> GeometryClip | None:
    """A :class:`GeometryClip` from a shard row, or ``None`` when the row has no geometry."""
    if row.get("shape") is None or row.get("expression") is None or row.get("pose") is None:
        return None
    t = int(row["num_frames"])
    return GeometryClip(row["clip_id"], row["speaker_id"], np.frombuffer(row["audio_pcm16"], "<i2"),
                        np.asarray(row["shape"], np.float32), np.asarray(row["expression"], np.float32).reshape(t, -1),
                        np.asarray(row["pose"], np.float32).reshape(t, 6))


def check_geometry(shards: str | Sequence[str], face_model_id: str | None = None) -> dict[str, int]:
    """Count clips with and without geometry; raise :class:`MissingGeometryError` when none has it.

    Also raises when a clip was fitted with another face model than ``face_model_id``.
    """
    files = discover_shards(shards) if isinstance(shards, str) else list(shards)
    if not files:
        raise MissingGeometryError(f"no clip shards under {shards}; make them with `pt curate`")
    with_geo = without = 0
    models: set[str] = set()
    for f in files:
        pf = open_shard(f)
        missing_cols = [c for c in GEOMETRY_COLUMNS if c not in pf.schema_arrow.names]
        if missing_cols:
            without += pf.metadata.num_rows
            continue
        table = pf.read(columns=["shape", "face_model_id"])
        has = table.column("shape").is_valid().to_numpy(zero_copy_only=False)
        with_geo += int(has.sum())
        without += int((~has).sum())
        models |= {m for m, h in zip(table.column("face_model_id").to_pylist(), has) if h and m}
    if with_geo == 0:
        raise MissingGeometryError(
            f"the shards under {shards} carry no fitted geometry (shape / expression / pose are empty in all "
            f"{without} clips); stage 1 trains on 3DMM coefficients: curate with fitting enabled "
            "(`pt curate ...` with the fitting stage) or fit the shards before `pt train stage1`")
    if face_model_id is not None and models - {face_model_id}:
        raise MissingGeometryError(f"the shards under {shards} were fitted with face model(s) {sorted(models)}, "
                                   f"but this run uses {face_model_id}; pass the matching --face-model")
    return {"clips_with_geometry": with_geo, "clips_without_geometry": without}


def sample_windows(num_frames: int, window: int, style_frames: int, style_min: int,
                   rng: np.random.Generator) -> tuple[int, int, int] | None:
    """``(target_start, style_start, style_len)`` of a target window and a disjoint style window, or ``None``.

    The target start is uniform over the starts that leave at least ``style_min`` frames on one side; the
    style window lies on such a side (chosen at random when both qualify) and is as long as the side
    allows up to ``style_frames``, at a uniform position there.
    """
    if num_frames < window + style_min:
        return None
    starts = np.arange(num_frames - window + 1)
    ok = (starts >= style_min) | (num_frames - starts - window >= style_min)
    t0 = int(rng.choice(starts[ok]))
    sides = [(lo, hi) for lo, hi in ((0, t0), (t0 + window, num_frames)) if hi - lo >= style_min]
    lo, hi = sides[int(rng.integers(len(sides)))]
    length = min(style_frames, hi - lo)
    s0 = lo + int(rng.integers(hi - lo - length + 1))
    return t0, s0, length


def make_item(clip: GeometryClip, t0: int, num_frames: int, s0: int, style_len: int, *, context: int,
              style_pad: int | None = None) -> dict[str, np.ndarray]:
    """One training / validation item: audio with context, target coefficients, padded style window."""
    audio = audio_for_frames(clip.audio, t0, num_frames, context=context * SAMPLES_PER_FRAME)
    pad = style_len if style_pad is None else style_pad
    style = np.zeros((pad, clip.expression.shape[1]), np.float32)
    style[:style_len] = clip.expression[s0:s0 + style_len]
    mask = np.zeros(pad, bool)
    mask[:style_len] = True
    return {"audio": pcm16_to_float(audio), "shape": clip.shape, "expression": clip.expression[t0:t0 + num_frames],
            "pose": clip.pose[t0:t0 + num_frames], "style_expression": style, "style_mask": mask}


def _clip_seed(clip_id: str) -> int:
    return zlib.crc32(clip_id.encode())


def _reader_key() -> tuple[int, int]:
    """(rank, worker id) of the calling reader: decorrelates the shuffle buffers of the readers."""
    rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
    info = get_worker_info()
    return rank, 0 if info is None else info.id


class Stage1WindowDataset(IterableDataset):
    """Training windows streamed from shards (see the module docstring). Call :meth:`set_epoch` per epoch."""

    def __init__(self, cfg: Stage1DataConfig, seed: int, *, rank: int | None = None,
                 world_size: int | None = None) -> None:
        super().__init__()
        self.cfg, self.seed, self.epoch = cfg, seed, 0
        self.clips = ClipShardDataset(cfg.shards, columns=list(STAGE1_COLUMNS), shuffle=True, seed=seed,
                                      rank=rank, world_size=world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.clips.set_epoch(epoch)

    def _windows(self, clip: GeometryClip) -> Iterator[dict[str, np.ndarray]]:
        c = self.cfg
        usable = int(np.floor(kept_frames(clip.num_frames, c.clip_fraction) * c.train_fraction))
        rng = np.random.default_rng([self.seed, self.epoch, _clip_seed(clip.clip_id)])
        for _ in range(c.windows_per_clip):
            w = sample_windows(usable, c.window, c.style_frames, c.style_min_frames, rng)
            if w is None:
                return
            t0, s0, n = w
            yield make_item(clip, t0, c.window, s0, n, context=c.context_frames, style_pad=c.style_frames)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        rng = np.random.default_rng([self.seed, self.epoch, 7919, *_reader_key()])
        buf: list[dict[str, np.ndarray]] = []
        for row in self.clips:
            clip = clip_from_row(row)
            if clip is None:
                continue
            for item in self._windows(clip):
                if len(buf) < self.cfg.shuffle_buffer:
                    buf.append(item)
                    continue
                i = int(rng.integers(len(buf)))
                buf[i], item = item, buf[i]
                yield item
        rng.shuffle(buf)  # type: ignore[arg-type]
        yield from buf


@dataclass
class ValidationClip:
    """A held-out tail to predict, with its style head: one variable-length item (batch of 1)."""

    clip_id: str
    speaker_id: str
    item: dict[str, np.ndarray]
    head_expression: np.ndarray  # (Th, E): the style frames (also the mean-mouth baseline's source)


def kept_frames(num_frames: int, clip_fraction: float) -> int:
    """Frames of a clip that exist for a run with ``clip_fraction`` (its first ``floor(f * T)``)."""
    return num_frames if clip_fraction >= 1.0 else int(np.floor(num_frames * clip_fraction))


def validation_split(num_frames: int, holdout_tail: float, style_min: int) -> int | None:
    """The first held-out frame of a clip (head = style, tail = target), or ``None`` if either is too short."""
    split = int(np.floor(num_frames * (1.0 - holdout_tail)))
    if split < style_min or num_frames - split < 1:
        return None
    return split


def load_validation_clips(cfg: Stage1DataConfig, max_style_frames: int = 250) -> list[ValidationClip]:
    """The validation set: tails of the validation shards' clips (or of the training clips' held-out part).

    With ``val_shards`` the tail is ``holdout_tail`` of each clip (half when that is 0); without them it is
    the training clips' held-out tail, and nothing when ``holdout_tail`` is 0 (clips first cut to
    ``clip_fraction``). The style window is the head's last ``max_style_frames`` frames (10 s at most).
    Deterministic (file
    order), at most ``cfg.val_max_clips`` clips.
    """
    if cfg.val_shards:
        source, holdout = cfg.val_shards, (cfg.holdout_tail if cfg.holdout_tail > 0 else 0.5)
    elif cfg.holdout_tail > 0:
        source, holdout = cfg.shards, cfg.holdout_tail
    else:
        return []  # every frame of the training clips is trained on: nothing held out
    out: list[ValidationClip] = []
    for path in discover_shards(source):
        for row in iter_clip_rows(path, columns=list(STAGE1_COLUMNS)):
            clip = clip_from_row(row)
            if clip is None:
                continue
            end = kept_frames(clip.num_frames, cfg.clip_fraction)
            split = validation_split(end, holdout, cfg.style_min_frames)
            if split is None:
                continue
            s0 = max(0, split - max_style_frames)
            item = make_item(clip, split, end - split, s0, split - s0, context=cfg.context_frames)
            out.append(ValidationClip(clip.clip_id, clip.speaker_id, item, clip.expression[s0:split]))
            if len(out) >= cfg.val_max_clips:
                return out
    return out


__all__ = ["Stage1DataConfig", "Stage1WindowDataset", "GeometryClip", "ValidationClip", "MissingGeometryError",
           "check_geometry", "clip_from_row", "sample_windows", "make_item", "load_validation_clips",
           "validation_split", "kept_frames", "GEOMETRY_COLUMNS", "STAGE1_COLUMNS"]
