"""Clip shards: round trip, row groups, atomic writes, clear errors on corrupt and foreign files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pt_data.clip import Clip, ClipValidationError
from pt_data.shard_schema import SCHEMA_NAME_KEY, SCHEMA_VERSION_KEY, clip_schema
from pt_data.shards import (ShardError, ShardSchemaError, ShardWriter, ShardWriterConfig, discover_shards,
                            iter_clips, open_shard, read_manifest, read_shard, shard_manifest_entry,
                            write_manifest, write_shard)


def _assert_same(a: Clip, b: Clip) -> None:
    assert (a.clip_id, a.dataset, a.speaker_id, a.source_uri) == (b.clip_id, b.dataset, b.speaker_id, b.source_uri)
    assert a.start_s == b.start_s and a.end_s == b.end_s and a.fps == b.fps
    assert a.frames == b.frames
    np.testing.assert_array_equal(a.audio, b.audio)
    for name in ("crop_affine", "landmarks", "shape", "expression", "pose"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.shape == y.shape, name
            np.testing.assert_array_equal(x, y)
    assert a.iqa_score == b.iqa_score


def test_round_trip_preserves_every_field(tmp_path, clip_factory):
    clips = [clip_factory(i, num_frames=3 + i, geometry=i % 2 == 0) for i in range(5)]
    info = write_shard(str(tmp_path / "a.parquet"), clips)
    assert (info.num_clips, info.num_frames) == (5, sum(3 + i for i in range(5)))
    back = list(iter_clips(str(tmp_path / "a.parquet")))
    assert len(back) == 5
    for a, b in zip(clips, back):
        _assert_same(a, b)
    # the acceptance checks read these columns by name
    t = read_shard(str(tmp_path / "a.parquet"), columns=["clip_id", "frames", "fps", "num_frames",
                                                         "audio_pcm16", "landmarks"])
    row = t.slice(0, 1).to_pylist()[0]
    assert row["fps"] == 25 and len(row["frames"]) == row["num_frames"] == 3
    assert len(row["audio_pcm16"]) == 2 * 3 * 640
    assert np.asarray(row["landmarks"]).reshape(3, -1, 2).shape[1] == 478


def test_row_groups_are_cut_by_bytes(tmp_path, clip_factory):
    clips = [clip_factory(i, num_frames=4) for i in range(6)]
    one_clip = sum(len(f) for f in clips[0].frames) + 4 * 640 * 2
    write_shard(str(tmp_path / "a.parquet"), clips, config=ShardWriterConfig(row_group_bytes=int(1.5 * one_clip)))
    md = open_shard(str(tmp_path / "a.parquet")).metadata
    assert md.num_row_groups == 3 and [md.row_group(g).num_rows for g in range(3)] == [2, 2, 2]


def test_unfinished_shard_is_invisible_and_failed_write_leaves_nothing(tmp_path, clip_factory):
    w = ShardWriter(str(tmp_path / "s.parquet"))
    w.write(clip_factory(0))
    assert discover_shards(str(tmp_path)) == []  # only the hidden temporary exists
    assert any(p.name.startswith(".s.parquet.tmp-") for p in tmp_path.iterdir())
    w.close()
    assert discover_shards(str(tmp_path)) == [str(tmp_path / "s.parquet")]

    with pytest.raises(RuntimeError):
        with ShardWriter(str(tmp_path / "t.parquet")) as w2:
            w2.write(clip_factory(1))
            raise RuntimeError("job failed mid-shard")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]


def test_killed_writer_leaves_no_readable_half_file(tmp_path):
    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import make_clip
from pt_data.shards import ShardWriter, ShardWriterConfig
w = ShardWriter({str(tmp_path / 'k.parquet')!r}, config=ShardWriterConfig(max_rows_per_group=1))
for i in range(1000):
    w.write(make_clip(i))
    print(i, flush=True)
    time.sleep(0.05)
"""
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(3):  # wait until some row groups have been written
        p.stdout.readline()
    p.send_signal(signal.SIGKILL)
    p.wait()
    leftovers = [x.name for x in tmp_path.iterdir()]
    assert leftovers and all(n.startswith(".k.parquet.tmp-") for n in leftovers)
    assert discover_shards(str(tmp_path)) == []


def test_truncated_and_garbage_files_are_clear_errors(tmp_path, clip_factory):
    good = tmp_path / "good.parquet"
    write_shard(str(good), [clip_factory(i) for i in range(3)])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ShardError, match="bad.parquet.*truncated or corrupted"):
        list(iter_clips(str(bad)))
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"this is not parquet at all" * 10)
    with pytest.raises(ShardError, match="junk.parquet"):
        open_shard(str(junk))
    with pytest.raises(ShardError, match="no such shard"):
        open_shard(str(tmp_path / "missing.parquet"))


def test_foreign_and_other_version_shards_are_refused(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"clip_id": ["a"], "x": [1]}), plain)
    with pytest.raises(ShardSchemaError, match=r"plain.parquet: not a PersonaTalk clip shard"):
        open_shard(str(plain))
    schema = clip_schema()
    v2 = schema.with_metadata({SCHEMA_NAME_KEY: schema.metadata[SCHEMA_NAME_KEY], SCHEMA_VERSION_KEY: b"2"})
    path = tmp_path / "v2.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=v2), path)
    with pytest.raises(ShardSchemaError, match=r"v2.parquet: clip schema version 2.*reads version\(s\) 1"):
        open_shard(str(path))


def test_manifest_round_trip_and_version_check(tmp_path, clip_factory):
    info = write_shard(str(tmp_path / "sub" / "a.parquet"), [clip_factory(0)])
    entry = shard_manifest_entry(info, str(tmp_path))
    assert entry["path"] == "sub/a.parquet" and entry["num_clips"] == 1
    write_manifest(str(tmp_path), {"counts": {"clips": 1}, "shards": [entry], "mean": np.float32(0.5)})
    m = read_manifest(str(tmp_path))
    assert m["schema_version"] == 1 and m["counts"]["clips"] == 1 and m["mean"] == 0.5
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 7}))
    with pytest.raises(ShardSchemaError, match="schema version 7"):
        read_manifest(str(tmp_path))


def test_discovery_skips_temporaries_rejects_and_hidden_folders(tmp_path, clip_factory):
    write_shard(str(tmp_path / "b" / "x.parquet"), [clip_factory(0)])
    write_shard(str(tmp_path / "a.parquet"), [clip_factory(1)])
    (tmp_path / ".a.parquet.tmp-1234").write_bytes(b"partial")
    (tmp_path / "rejects.parquet").write_bytes(b"")
    (tmp_path / ".staging").mkdir()
    (tmp_path / ".staging" / "y.parquet").write_bytes(b"")
    assert discover_shards(str(tmp_path)) == [str(tmp_path / "a.parquet"), str(tmp_path / "b" / "x.parquet")]


@pytest.mark.parametrize("change, message", [
    (lambda c: setattr(c, "landmarks", c.landmarks[:, :468]), "landmarks has shape"),
    (lambda c: setattr(c, "audio", c.audio[:100]), "audio samples"),
    (lambda c: setattr(c, "fps", 30.0), "fps 30"),
    (lambda c: setattr(c, "audio", c.audio.astype(np.float32)), "int16"),
])
def test_invalid_clips_are_refused_with_the_reason(clip_factory, change, message):
    c = clip_factory(0)
    change(c)
    with pytest.raises(ClipValidationError, match=message):
        c.to_row()
