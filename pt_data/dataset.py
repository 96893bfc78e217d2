"""A torch ``IterableDataset`` streaming clips from a folder of shards.

Work is split in units of (shard, row group). Each epoch the units are shuffled with ``(seed, epoch)``
and dealt to the ``world_size x num_workers`` readers so that every clip is read exactly once per epoch
(greedy by row count, so readers get similar numbers of clips); rows inside a unit are shuffled too.
Call :meth:`ClipShardDataset.set_epoch` before each epoch (as with ``DistributedSampler``); with
``persistent_workers=True`` the workers keep the epoch they started with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow.fs as pafs
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pt_data.clip import Clip
from pt_data.shards import discover_shards, iter_clip_rows, open_shard


@dataclass(frozen=True)
class WorkUnit:
    """One row group of one shard."""

    path: str
    row_group: int
    num_rows: int


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def assign_units(units: Sequence[WorkUnit], num_readers: int, seed: int, epoch: int,
                 shuffle: bool = True) -> list[list[int]]:
    """Deal unit indices to ``num_readers`` readers: a permutation by (seed, epoch), then each unit to the
    reader with the fewest rows so far. Every unit goes to exactly one reader."""
    order = (np.random.default_rng([seed, epoch]).permutation(len(units)) if shuffle
             else np.arange(len(units)))
    loads = [0] * num_readers
    out: list[list[int]] = [[] for _ in range(num_readers)]
    for u in order:
        r = min(range(num_readers), key=lambda k: (loads[k], k))
        out[r].append(int(u))
        loads[r] += units[u].num_rows
    return out


class ClipShardDataset(IterableDataset):
    """Streams the clips of a shard folder (or list of shard files) as row dicts or :class:`Clip` objects.

    Args:
        shards: a folder (searched recursively), one shard file, or a list of shard files.
        columns: read only these columns (``None``: all). ``as_clip`` needs all.
        shuffle: shuffle units and rows by ``(seed, epoch)``; ``False`` keeps file order.
        rank, world_size: the distributed split; default from ``torch.distributed`` when initialised.
        as_clip: yield :class:`Clip` objects instead of dicts.
        transform: applied to each item (row dict or Clip) before it is yielded; ``None`` drops the item.
    """

    def __init__(self, shards: str | Sequence[str], *, columns: Sequence[str] | None = None,
                 shuffle: bool = True, seed: int = 0, rank: int | None = None, world_size: int | None = None,
                 as_clip: bool = False, transform: Callable[[Any], Any] | None = None,
                 filesystem: pafs.FileSystem | None = None) -> None:
        super().__init__()
        files = discover_shards(shards, filesystem=filesystem) if isinstance(shards, str) else list(shards)
        self.filesystem = filesystem
        self.columns = list(columns) if columns else None
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self._rank, self._world = rank, world_size
        self.as_clip, self.transform = as_clip, transform
        units = []
        for f in files:
            md = open_shard(f, filesystem=filesystem).metadata
            units += [WorkUnit(f, g, md.row_group(g).num_rows) for g in range(md.num_row_groups)]
        self.units = units

    @property
    def num_clips(self) -> int:
        """Clips in the whole dataset (all ranks)."""
        return sum(u.num_rows for u in self.units)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of this epoch."""
        self.epoch = int(epoch)

    def reader_units(self, reader: int, num_readers: int) -> list[int]:
        """Unit indices read by global reader ``reader`` of ``num_readers`` in the current epoch."""
        return assign_units(self.units, num_readers, self.seed, self.epoch, self.shuffle)[reader]

    def _reader(self) -> tuple[int, int]:
        rank, world = _dist_rank_world()
        rank = self._rank if self._rank is not None else rank
        world = self._world if self._world is not None else world
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * nw + wid, world * nw

    def __iter__(self) -> Iterator[Any]:
        reader, num_readers = self._reader()
        for u in self.reader_units(reader, num_readers):
            unit = self.units[u]
            rows = list(iter_clip_rows(unit.path, columns=self.columns, row_groups=[unit.row_group],
                                       filesystem=self.filesystem))
            order = (np.random.default_rng([self.seed, self.epoch, u]).permutation(len(rows)) if self.shuffle
                     else range(len(rows)))
            for i in order:
                item: Any = Clip.from_row(rows[i]) if self.as_clip else rows[i]
                if self.transform is not None:
                    item = self.transform(item)
                    if item is None:
                        continue
                yield item
