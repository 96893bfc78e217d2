"""The shared training loop of every PersonaTalk stage: one process or torchrun DDP, exact resume.

A stage provides a :class:`TrainTask` (its model, data, loss and validation); :func:`train` runs it under a
:class:`TrainLoopConfig`. What the loop guarantees:

* **Run folder** ``OUT``: ``config.json`` (the task's resolved model + data config, the loop config,
  versions), ``log.csv`` (training rows every ``log_every`` steps), ``val.csv`` (validation rows),
  ``checkpoints/step_XXXXXXX.pt`` and ``checkpoints/last.pt``, and TensorBoard events under ``tb/`` when
  ``torch.utils.tensorboard`` can be imported (the ``tensorboard`` package is optional: without it the CSV
  logs are the record and the run says so once).
* **Checkpoints** are ``torch.save`` dicts of tensors and primitive containers only (model, optimiser,
  scheduler, step, data position and RNG states of every rank, configs, task name), written under a
  temporary name and renamed, and read with ``torch.load(weights_only=True)``.
* **Exact resume**: a run stopped after step k (killed, or ``stop_at=k``) and started again with the same
  folder reproduces the loss curve of an uninterrupted run: the model, optimiser, scheduler and RNG states
  are restored and the data stream is positioned at the same batch (map-style datasets: by index, free;
  iterable datasets: the epoch's stream is replayed from its start and the consumed batches dropped, which
  costs reading them once). Datasets must be deterministic given ``(seed, epoch)``: a dataset with a
  ``set_epoch(epoch)`` method is told the epoch, and the ``DataLoader`` gets its own generator so that
  creating workers never consumes the global RNG.
* A folder whose ``config.json`` holds a different task config is refused (:class:`ConfigMismatchError`);
  so is a checkpoint of another task or config in :func:`load_checkpoint`.
* **Multi-GPU**: started by ``torchrun``, each process trains on its own rank's data (an iterable dataset
  splits itself by ``torch.distributed`` rank; map-style data is split by the loop); gradients are
  averaged by DDP; rank 0 validates, logs and writes checkpoints that carry every rank's data position and
  RNG state. ``batch_size`` is per process and per micro-batch: an optimiser step sees
  ``batch_size x grad_accum x world_size`` samples.
* bf16 autocast on CUDA (``bf16=True``), gradient clipping, gradient accumulation, AdamW with decoupled
  weight decay on matrices only, linear warm-up then cosine decay (or a constant rate).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import resource
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

CHECKPOINT_FORMAT = 1
CONFIG_NAME = "config.json"
LOG_NAME = "log.csv"
VAL_LOG_NAME = "val.csv"
CKPT_DIR = "checkpoints"
LAST_NAME = "last.pt"


class ConfigMismatchError(ValueError):
    """A run folder or checkpoint was made with another task or another model/data config."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not a checkpoint of this loop."""


class DataStreamError(RuntimeError):
    """The training data yields no full batch (too few clips, or too few row groups for the ranks)."""


@dataclass
class TrainLoopConfig:
    """How to train (the stage's own model and data options live in its task config).

    ``batch_size`` is per process and per micro-batch. ``stop_at`` ends the process after that step with a
    checkpoint, exactly as if it had been killed there (time-sliced clusters, resume tests); the schedule
    still follows ``max_steps``. ``val_every`` / ``ckpt_every`` of 0 disable periodic validation /
    checkpoints (a checkpoint is always written at the end, and validation runs at the end when
    ``val_every`` > 0).
    """

    out: Path
    max_steps: int
    batch_size: int
    lr: float
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"  # "cosine" (to min_lr_ratio * lr at max_steps) or "constant"
    min_lr_ratio: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    log_every: int = 10
    val_every: int = 200
    ckpt_every: int = 200
    keep_checkpoints: int = 3  # step_*.pt files kept besides last.pt (0 = keep all)
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1"
    bf16: bool = True  # autocast to bfloat16 on CUDA; ignored on CPU
    compile: bool = False
    grad_clip: float | None = 1.0
    find_unused_parameters: bool = False  # DDP: for models whose forward skips some parameters
    resume: bool = True
    stop_at: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        problems = []
        if self.max_steps < 1:
            problems.append(f"max_steps must be >= 1 (got {self.max_steps})")
        if self.batch_size < 1 or self.grad_accum < 1:
            problems.append("batch_size and grad_accum must be >= 1")
        if self.lr <= 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.schedule not in ("cosine", "constant"):
            problems.append(f"schedule must be 'cosine' or 'constant' (got {self.schedule!r})")
        if self.stop_at is not None and not 1 <= self.stop_at <= self.max_steps:
            problems.append(f"stop_at must be in [1, max_steps] (got {self.stop_at})")
        if problems:
            raise ValueError("TrainLoopConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        d["betas"] = list(self.betas)
        return d


@runtime_checkable
class TrainTask(Protocol):
    """What a stage provides to :func:`train`.

    Optional extras the loop uses when present: ``collate(items) -> batch`` (the DataLoader's collate
    function; default ``torch.utils.data.default_collate``) and ``describe() -> str`` (one line printed
    at start).
    """

    name: str

    def config_dict(self) -> dict[str, Any]:
        """The resolved model + data config (JSON-compatible); saved as OUT/config.json and checked on resume."""
        ...

    def build_model(self) -> torch.nn.Module:
        """A freshly initialised model (the loop seeds the RNG first)."""
        ...

    def train_dataset(self, seed: int) -> Dataset | IterableDataset:
        """The training data, deterministic given ``seed`` (and the epoch, via ``set_epoch`` if defined)."""
        ...

    def loss(self, model: torch.nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar training loss of one micro-batch (already on the model's device) and named parts.

        ``model`` may be wrapped (DDP, ``torch.compile``): call ``model(...)`` for the forward pass and
        :func:`unwrap_model` for other methods and attributes."""
        ...

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        """Validation metrics (called on rank 0, in eval mode, under ``torch.no_grad`` and the autocast)."""
        ...


@dataclass
class TrainResult:
    """What a call of :func:`train` did."""

    out: Path
    step: int  # the last completed optimiser step
    resumed_from: int  # 0 for a fresh run
    last_checkpoint: Path | None
    final_loss: float | None
    val: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    samples_per_s: float = 0.0  # all ranks, training steps only (validation and checkpoints excluded)
    data_time_share: float = 0.0  # share of step time spent waiting for batches (rank 0)
    peak_memory_bytes: int = 0  # CUDA: max allocated on rank 0's device; CPU: process max RSS
    device: str = "cpu"
    world_size: int = 1


# ---------------------------------------------------------------------------------------------- devices
@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's CUDA device when CUDA is available, else CPU; otherwise ``torch.device(spec)``."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} asked for, but CUDA is not available (use --device cpu)")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device_spec: str = "auto") -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (NCCL on CUDA, Gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec, local)
    if world > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, device)


# ------------------------------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and primitives (``weights_only``-loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_key, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {"name": np_name, "key": torch.from_numpy(np.asarray(np_key, np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached": float(np_cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------ data
class EpochSampler(Sampler[int]):
    """Map-style indices of one epoch: a permutation by ``(seed, epoch)``, this rank's stride, from ``start``.

    The index list is padded (by wrapping) to a multiple of ``world_size`` so ranks get equal counts.
    """

    def __init__(self, n: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                 start: int = 0) -> None:
        g = torch.Generator().manual_seed(_mix(seed, epoch))
        perm = torch.randperm(n, generator=g).tolist()
        if n and len(perm) % world_size:
            perm += perm[: world_size - len(perm) % world_size]
        self.indices = perm[rank::world_size][start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _mix(*xs: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike ``hash``)."""
    return int(np.random.SeedSequence([int(x) % 2**63 for x in xs]).generate_state(1, np.uint64)[0] >> 1)


class DataStream:
    """Endless micro-batches over epochs with a resumable position ``(epoch, batches consumed in it)``."""

    def __init__(self, dataset: Dataset | IterableDataset, *, batch_size: int, seed: int, dist: DistInfo,
                 num_workers: int = 0, collate: Callable[[list[Any]], Any] | None = None,
                 pin_memory: bool = False) -> None:
        self.dataset, self.batch_size, self.seed, self.dist = dataset, batch_size, seed, dist
        self.num_workers, self.collate, self.pin_memory = num_workers, collate, pin_memory
        self.iterable = isinstance(dataset, IterableDataset)
        self.epoch, self.batch_in_epoch = 0, 0
        self._it: Iterator[Any] | None = None

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def restore(self, state: Mapping[str, int]) -> None:
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
        self._it = None

    def _loader(self, skip: int) -> DataLoader:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        gen = torch.Generator().manual_seed(_mix(self.seed, self.epoch, self.dist.rank))
        kw: dict[str, Any] = dict(batch_size=self.batch_size, drop_last=True, num_workers=self.num_workers,
                                  generator=gen, pin_memory=self.pin_memory)
        if self.collate is not None:
            kw["collate_fn"] = self.collate
        if self.iterable:
            return DataLoader(self.dataset, **kw)
        sampler = EpochSampler(len(self.dataset), seed=self.seed, epoch=self.epoch, rank=self.dist.rank,
                               world_size=self.dist.world_size, start=skip * self.batch_size)
        return DataLoader(self.dataset, sampler=sampler, **kw)

    def _open(self) -> None:
        skip = self.batch_in_epoch
        self._it = iter(self._loader(skip))
        if self.iterable:  # replay the epoch's stream up to the recorded position
            for i in range(skip):
                try:
                    next(self._it)
                except StopIteration:
                    raise DataStreamError(f"rank {self.dist.rank}: the data stream of epoch {self.epoch} ended "
                                          f"after {i} batches while resuming at batch {skip}; the dataset is not "
                                          "deterministic or changed since the checkpoint") from None

    def next(self) -> Any:
        """The next micro-batch, moving to the next epoch when one ends."""
        for _ in range(2):
            if self._it is None:
                self._open()
            try:
                batch = next(self._it)
            except StopIteration:
                empty = self.batch_in_epoch == 0
                self._it = None
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                if empty:
                    raise DataStreamError(
                        f"rank {self.dist.rank}: the training data yields no batch of {self.batch_size} in an "
                        f"epoch; use a smaller batch size or more clips (with several ranks or workers an "
                        f"iterable dataset also needs at least ranks x workers shard row groups)") from None
                continue
            self.batch_in_epoch += 1
            return batch
        raise DataStreamError(f"rank {self.dist.rank}: no batch after starting a new epoch")


def move_to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Tensors inside dicts / lists / tuples moved to ``device`` (other values kept)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device, non_blocking) for v in batch)
    return batch


# ------------------------------------------------------------------------------------------ optimiser
def make_optimizer(model: torch.nn.Module, cfg: TrainLoopConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on parameters with 2+ dimensions only (not biases, norms, embeddings' scales)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)


def lr_factor(step: int, cfg: TrainLoopConfig) -> float:
    """The learning-rate multiplier of optimiser step ``step`` (0-based): warm-up, then cosine or constant."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


# ------------------------------------------------------------------------------------------- configs
def normalize_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON round trip (tuples become lists, keys strings) so that saved and live configs compare equal."""
    return json.loads(json.dumps(cfg, sort_keys=True, default=str))


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two nested configs (``key: a != b``)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for k in sorted(set(a) | set(b)):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in a:
                out.append(f"{key}: absent != {b[k]!r}")
            elif k not in b:
                out.append(f"{key}: {a[k]!r} != absent")
            else:
                out += config_diff(a[k], b[k], key)
        return out
    return [] if a == b else [f"{prefix or 'config'}: {a!r} != {b!r}"]


def check_config(saved: Mapping[str, Any], current: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ConfigMismatchError` listing the differences when the configs differ."""
    diff = config_diff(normalize_config(saved), normalize_config(current))
    if diff:
        shown = "; ".join(diff[:8]) + (f"; ... ({len(diff) - 8} more)" if len(diff) > 8 else "")
        raise ConfigMismatchError(f"{where} was made with another config (saved != now): {shown}. "
                                  "Use a new run folder, or the options that run used.")


# ---------------------------------------------------------------------------------------- checkpoints
def checkpoint_file(run_or_file: str | os.PathLike) -> Path:
    """``RUN/checkpoints/last.pt`` for a run folder, or the given ``.pt`` file."""
    p = Path(run_or_file)
    return p / CKPT_DIR / LAST_NAME if p.is_dir() else p


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``); clear errors for missing / foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}" + (
            f" (a run folder holds {CKPT_DIR}/{LAST_NAME} once a run has saved one)" if path.name == LAST_NAME else ""))
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our checkpoint"
        raise CheckpointError(f"{path}: not a readable training checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "task" not in ckpt:
        raise CheckpointError(f"{path}: not a PersonaTalk training checkpoint of format {CHECKPOINT_FORMAT}")
    return ckpt


def load_checkpoint(run_dir: str | os.PathLike, *, expect_task: str, map_location: str | torch.device = "cpu",
                    expect_config: Mapping[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict, int]:
    """``(model_state, config_dict, step)`` of a run folder's last checkpoint (or of a ``.pt`` file).

    Raises :class:`ConfigMismatchError` when the checkpoint belongs to another task, or to another config
    than ``expect_config`` (when given).
    """
    path = checkpoint_file(run_dir)
    ckpt = read_checkpoint(path, map_location)
    if ckpt["task"] != expect_task:
        raise ConfigMismatchError(f"{path} is a {ckpt['task']!r} checkpoint, not {expect_task!r}")
    if expect_config is not None:
        check_config(ckpt["config"], expect_config, f"checkpoint {path}")
    return ckpt["model"], ckpt["config"], int(ckpt["step"])


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


# ------------------------------------------------------------------------------------------------ logs
class _CsvLog:
    """A wide CSV log; columns fixed by the first row written (later unknown keys are an error)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if path.is_file():
            with path.open(newline="") as f:
                header = next(csv.reader(f), None)
            self.columns = header or None

    def truncate_after(self, step: int) -> None:
        """Drop rows of steps after ``step`` (written by a run that was killed after its last checkpoint)."""
        if not self.path.is_file():
            return
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if int(float(r["step"])) <= step]
        if len(keep) != len(rows):
            with self.path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.columns or [])
                w.writeheader()
                w.writerows(keep)

    def write(self, row: Mapping[str, Any]) -> None:
        if self.columns is None:
            self.columns = list(row)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        extra = [k for k in row if k not in self.columns]
        if extra:
            raise ValueError(f"{self.path}: log keys {extra} were not in the first row ({self.columns})")
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    return repr(float(v)) if isinstance(v, float) else v


def read_log(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a ``log.csv`` / ``val.csv`` as dicts of floats."""
    with Path(path).open(newline="") as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": str(np.__version__),
            "cuda": str(torch.version.cuda or "none"), "platform": platform.platform()}


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


# ------------------------------------------------------------------------------------------------ train
def train(task: TrainTask, cfg: TrainLoopConfig) -> TrainResult:
    """Train ``task`` under ``cfg`` (one process, or one rank of a torchrun job); resume when possible."""
    t_start = time.perf_counter()
    dist = init_distributed(cfg.device)
    out = cfg.out
    ckpt_dir = out / CKPT_DIR
    task_cfg = normalize_config(task.config_dict())
    run_cfg = {"task": task.name, "task_config": task_cfg, "train": cfg.to_dict(),
               "world_size": dist.world_size, "versions": _versions()}

    # ---- the run folder: new, or a resume of the same config
    last = ckpt_dir / LAST_NAME
    if (out / CONFIG_NAME).is_file():
        saved = json.loads((out / CONFIG_NAME).read_text())
        if saved.get("task") != task.name:
            raise ConfigMismatchError(f"{out} holds a {saved.get('task')!r} run, not {task.name!r}; "
                                      "use another --out folder")
        check_config(saved.get("task_config", {}), task_cfg, f"run folder {out}")
        if last.is_file() and not cfg.resume:
            raise ConfigMismatchError(f"{out} already holds a run with checkpoints ({last}); resume it, or "
                                      "choose another --out folder")
    if dist.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{CONFIG_NAME}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(run_cfg, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, out / CONFIG_NAME)  # other ranks may be reading it

    # ---- model, optimiser, schedule, data
    seed_everything(cfg.seed)
    model = task.build_model().to(dist.device)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    dataset = task.train_dataset(cfg.seed)
    stream = DataStream(dataset, batch_size=cfg.batch_size, seed=cfg.seed, dist=dist, num_workers=cfg.num_workers,
                        collate=getattr(task, "collate", None), pin_memory=dist.device.type == "cuda")
    step = 0
    if cfg.resume and last.is_file():
        ckpt = read_checkpoint(last, "cpu")
        if ckpt["task"] != task.name:
            raise ConfigMismatchError(f"{last} is a {ckpt['task']!r} checkpoint, not {task.name!r}")
        check_config(ckpt["config"], task_cfg, f"checkpoint {last}")
        if int(ckpt.get("world_size", 1)) != dist.world_size:
            raise ConfigMismatchError(f"{last} was written by {ckpt.get('world_size')} processes, this run has "
                                      f"{dist.world_size}; exact resume needs the same number (or a new --out)")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["step"])
        stream.restore(ckpt["data"][dist.rank])
        set_rng_state(ckpt["rng"][dist.rank])
        del ckpt
    else:
        seed_everything(_mix(cfg.seed, 1, dist.rank))  # per-rank dropout etc.; data has its own generators
    resumed_from = step

    train_model: torch.nn.Module = model
    if cfg.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    if dist.distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
            find_unused_parameters=cfg.find_unused_parameters)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.bf16 and dist.device.type == "cuda"
                else nullcontext())

    log = _CsvLog(out / LOG_NAME) if dist.is_main else None
    val_log = _CsvLog(out / VAL_LOG_NAME) if dist.is_main else None
    tb = _tensorboard(out) if dist.is_main else None
    if dist.is_main:
        for lg in (log, val_log):
            lg.truncate_after(step)  # type: ignore[union-attr]
        describe = getattr(task, "describe", None)
        print(f"[{task.name}] {describe() if callable(describe) else ''} device {dist.device}, "
              f"world {dist.world_size}, {'resuming at step ' + str(step) if step else 'new run'} -> {out}",
              file=sys.stderr)
        if tb is None and step == 0:
            print(f"[{task.name}] TensorBoard not installed: logs are {out / LOG_NAME} and {out / VAL_LOG_NAME}",
                  file=sys.stderr)

    def save(step_now: int) -> Path:
        data_states, rng_states = [stream.state()], [rng_state()]
        if dist.distributed:
            gathered: list[Any] = [None] * dist.world_size
            torch.distributed.all_gather_object(gathered, (stream.state(), rng_state()))
            data_states, rng_states = [g[0] for g in gathered], [g[1] for g in gathered]
        path = ckpt_dir / f"step_{step_now:07d}.pt"
        if dist.is_main:
            _atomic_save({"format": CHECKPOINT_FORMAT, "task": task.name, "config": task_cfg,
                          "train_config": cfg.to_dict(), "step": step_now, "world_size": dist.world_size,
                          "model": unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "data": data_states, "rng": rng_states,
                          "versions": _versions()}, path)
            _link_or_copy(path, ckpt_dir / LAST_NAME)
            if cfg.keep_checkpoints:
                for old in sorted(ckpt_dir.glob("step_*.pt"))[:-cfg.keep_checkpoints]:
                    old.unlink()
        if dist.distributed:
            torch.distributed.barrier()
        return path

    def run_validation(step_now: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if dist.is_main:
            model.eval()
            with torch.no_grad(), autocast:
                metrics = {k: float(v) for k, v in task.validate(model).items()}
            model.train()
            val_log.write({"step": step_now, **metrics})  # type: ignore[union-attr]
            if tb is not None:
                for k, v in metrics.items():
                    tb.add_scalar(f"val/{k}", v, step_now)
        if dist.distributed:
            torch.distributed.barrier()
        return metrics

    # ---- the loop
    stop = min(cfg.max_steps, cfg.stop_at or cfg.max_steps)
    model.train()
    last_path: Path | None = None
    final_loss: float | None = None
    val_metrics: dict[str, float] = {}
    data_s = step_s = 0.0
    samples = 0
    from tqdm import tqdm  # noqa: PLC0415

    bar = tqdm(total=stop, initial=step, desc=task.name, disable=not (dist.is_main and cfg.progress),
               dynamic_ncols=True)
    while step < stop:
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        parts_sum: dict[str, float] = {}
        wait = 0.0
        for micro in range(cfg.grad_accum):
            tw = time.perf_counter()
            batch = move_to_device(stream.next(), dist.device, non_blocking=True)
            wait += time.perf_counter() - tw
            sync = (micro == cfg.grad_accum - 1 or not dist.distributed)
            ctx = nullcontext() if sync else train_model.no_sync()  # type: ignore[operator]
            with ctx:
                with autocast:
                    loss, parts = task.loss(train_model, batch, step)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"[{task.name}] loss is {loss.item()} at step {step + 1}; lower the "
                                             "learning rate or check the data")
                (loss / cfg.grad_accum).backward()
            loss_sum += float(loss.detach()) / cfg.grad_accum
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(v) / cfg.grad_accum
        grad_norm = float("nan")
        if cfg.grad_clip:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        lr_now = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        step += 1
        if dist.device.type == "cuda":
            torch.cuda.synchronize(dist.device)
        dt = time.perf_counter() - t0
        data_s, step_s = data_s + wait, step_s + dt
        samples += cfg.batch_size * cfg.grad_accum * dist.world_size
        final_loss = loss_sum
        bar.update(1)

        if cfg.log_every and (step % cfg.log_every == 0 or step == stop):
            if dist.distributed:
                t = torch.tensor([loss_sum, *parts_sum.values()], device=dist.device, dtype=torch.float64)
                torch.distributed.all_reduce(t)
                t /= dist.world_size
                loss_sum, parts_sum = float(t[0]), dict(zip(parts_sum, t[1:].tolist()))
            if dist.is_main:
                row = {"step": step, "epoch": stream.epoch, "lr": lr_now, "loss": loss_sum,
                       **{k: parts_sum[k] for k in sorted(parts_sum)}, "grad_norm": grad_norm,
                       "samples_per_s": samples / max(step_s, 1e-9), "data_time_share": data_s / max(step_s, 1e-9),
                       "elapsed_s": time.perf_counter() - t_start}
                log.write(row)  # type: ignore[union-attr]
                if tb is not None:
                    for k, v in row.items():
                        if k not in ("step", "elapsed_s"):
                            tb.add_scalar(f"train/{k}", v, step)
                bar.set_postfix(loss=f"{loss_sum:.4g}")
        if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.max_steps):
            val_metrics = run_validation(step)
        if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or step == stop:
            last_path = save(step)
    bar.close()
    if tb is not None:
        tb.close()
    if last_path is None and step > 0 and (ckpt_dir / LAST_NAME).is_file():
        last_path = ckpt_dir / LAST_NAME  # nothing left to do: the run had already finished
    return TrainResult(out=out, step=step, resumed_from=resumed_from, last_checkpoint=last_path,
                       final_loss=final_loss, val=val_metrics, wall_s=time.perf_counter() - t_start,
                       samples_per_s=samples / step_s if step_s else 0.0,
                       data_time_share=data_s / step_s if step_s else 0.0,
                       peak_memory_bytes=_peak_memory(dist.device), device=str(dist.device),
                       world_size=dist.world_size)


# ------------------------------------------------------------------------------------------------- CLI
def add_loop_arguments(p: argparse.ArgumentParser) -> None:
    """The loop options every ``pt train`` stage shares (defaults: the stage's preset, else the config's)."""
    g = p.add_argument_group("training loop (defaults: the preset's)")
    g.add_argument("--max-steps", type=int, help="optimiser steps of the whole run")
    g.add_argument("--batch-size", type=int, help="samples per micro-batch and process")
    g.add_argument("--grad-accum", type=int, help="micro-batches per optimiser step")
    g.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    g.add_argument("--weight-decay", type=float, help="decoupled weight decay of matrices")
    g.add_argument("--warmup-steps", type=int, help="linear warm-up steps")
    g.add_argument("--schedule", choices=["cosine", "constant"], help="after warm-up (default cosine)")
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm (0: off; default 1)")
    g.add_argument("--log-every", type=int, help="steps between log.csv rows")
    g.add_argument("--val-every", type=int, help="steps between validations (0: off)")
    g.add_argument("--ckpt-every", type=int, help="steps between checkpoints (one is always written at the end)")
    g.add_argument("--seed", type=int, help="seed of initialisation and data order (default 0)")
    g.add_argument("--num-workers", type=int, help="DataLoader worker processes (default 0)")
    g.add_argument("--device", help="auto (default: CUDA when available), cpu, cuda, cuda:N")
    g.add_argument("--no-bf16", action="store_true", help="no bf16 autocast on CUDA")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--no-resume", action="store_true", help="refuse to continue a run folder holding checkpoints")
    g.add_argument("--stop-at", type=int, help="end this process after step N with a checkpoint, as if killed "
                                               "there (time-sliced jobs); the schedule still follows --max-steps")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def loop_config_from_args(args: argparse.Namespace, defaults: Mapping[str, Any], *, out: Path) -> TrainLoopConfig:
    """A :class:`TrainLoopConfig` from :func:`add_loop_arguments` options over ``defaults`` (a preset's)."""
    kw: dict[str, Any] = dict(defaults)
    for name in ("max_steps", "batch_size", "grad_accum", "lr", "weight_decay", "warmup_steps", "schedule",
                 "log_every", "val_every", "ckpt_every", "seed", "num_workers", "device", "stop_at"):
        v = getattr(args, name, None)
        if v is not None:
            kw[name] = v
    if getattr(args, "grad_clip", None) is not None:
        kw["grad_clip"] = args.grad_clip or None
    kw.update(bf16=not getattr(args, "no_bf16", False), compile=getattr(args, "compile", False),
              resume=not getattr(args, "no_resume", False), progress=not getattr(args, "no_progress", False))
    known = {f.name for f in fields(TrainLoopConfig)}
    return TrainLoopConfig(out=out, **{k: v for k, v in kw.items() if k in known and k != "out"})


__all__ = ["TrainLoopConfig", "TrainTask", "TrainResult", "train", "load_checkpoint", "read_checkpoint",
           "checkpoint_file", "ConfigMismatchError", "CheckpointError", "DataStreamError", "DataStream",
           "EpochSampler", "DistInfo", "init_distributed", "resolve_device", "rng_state", "set_rng_state",
           "seed_everything", "move_to_device", "make_optimizer", "lr_factor", "unwrap_model", "read_log",
           "check_config", "config_diff", "normalize_config", "add_loop_arguments", "loop_config_from_args"]
