"""The shard IterableDataset: exactly-once split over ranks x workers, deterministic shuffling."""
from __future__ import annotations

from collections import Counter

import pytest
from torch.utils.data import DataLoader

from pt_data.clip import Clip
from pt_data.dataset import ClipShardDataset, WorkUnit, assign_units
from pt_data.shards import ShardWriterConfig, write_shard


@pytest.fixture
def shard_dir(tmp_path, clip_factory):
    # 3 shards of unequal size, several row groups each: 7 + 5 + 11 = 23 clips
    for s, n in enumerate((7, 5, 11)):
        write_shard(str(tmp_path / f"shard-{s}.parquet"),
                    [clip_factory(100 * s + i, num_frames=2) for i in range(n)],
                    config=ShardWriterConfig(max_rows_per_group=3))
    return tmp_path


def _epoch_ids(shard_dir, epoch, world=2, workers=2, seed=0):
    per_rank = []
    for rank in range(world):
        ds = ClipShardDataset(str(shard_dir), columns=["clip_id"], seed=seed, rank=rank, world_size=world)
        ds.set_epoch(epoch)
        dl = DataLoader(ds, batch_size=None, num_workers=workers)
        per_rank.append([row["clip_id"] for row in dl])
    return per_rank


def test_every_clip_exactly_once_over_2_ranks_x_2_workers(shard_dir):
    all_ids = {f"test-0-{100 * s + i:05d}" for s, n in enumerate((7, 5, 11)) for i in range(n)}
    for epoch in (0, 1):
        per_rank = _epoch_ids(shard_dir, epoch)
        seen = Counter(i for ids in per_rank for i in ids)
        assert set(seen) == all_ids and max(seen.values()) == 1
        assert all(len(ids) >= 8 for ids in per_rank)  # balanced: 23 clips over 2 ranks


def test_shuffle_is_deterministic_by_seed_and_epoch(shard_dir):
    a = _epoch_ids(shard_dir, epoch=0, workers=0)
    assert a == _epoch_ids(shard_dir, epoch=0, workers=0)
    assert a != _epoch_ids(shard_dir, epoch=1, workers=0)
    assert a != _epoch_ids(shard_dir, epoch=0, workers=0, seed=1)


def test_no_shuffle_keeps_file_order_and_yields_clips(shard_dir):
    ds = ClipShardDataset(str(shard_dir), shuffle=False, as_clip=True)
    clips = list(ds)
    assert ds.num_clips == len(clips) == 23 and isinstance(clips[0], Clip)
    assert [c.clip_id for c in clips[:3]] == ["test-0-00000", "test-0-00001", "test-0-00002"]
    assert clips[0].landmarks.shape == (2, 478, 2)


def test_transform_can_drop_items(shard_dir):
    ds = ClipShardDataset(str(shard_dir), columns=["clip_id", "num_frames"],
                          transform=lambda r: r if r["clip_id"].endswith("0") else None)
    assert sorted(r["clip_id"] for r in ds) == sorted(
        f"test-0-{100 * s + i:05d}" for s, n in enumerate((7, 5, 11)) for i in range(n) if i % 10 == 0)


def test_assign_units_partitions_and_balances():
    units = [WorkUnit("f", g, n) for g, n in enumerate([5, 1, 1, 1, 1, 1, 4, 2])]
    parts = assign_units(units, 3, seed=0, epoch=0)
    assert sorted(u for p in parts for u in p) == list(range(8))
    loads = [sum(units[u].num_rows for u in p) for p in parts]
    assert max(loads) - min(loads) <= 5


def test_bad_rank_is_an_error(shard_dir):
    with pytest.raises(ValueError, match="rank 2"):
        list(ClipShardDataset(str(shard_dir), rank=2, world_size=2))
