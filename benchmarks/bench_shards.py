"""Shard I/O speed, as ratios against references measured in the same run.

* write: ShardWriter MB/s vs pyarrow's plain ``pq.write_table`` of the same rows (the floor of Parquet itself);
* read: ClipShardDataset clips/s (rows as numpy arrays) vs ``pq.read_table(...).to_pylist()`` (the naive way);
* decode: JPEG frames/s of ``decode_frames``, the cost a training loader adds per frame.

Usage: .venv/bin/python benchmarks/bench_shards.py [--clips 40] [--frames 125] [--out benchmarks/results/shards.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from timing import best_time  # noqa: E402 - benchmarks/ helper

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_clip  # noqa: E402

from pt_data.dataset import ClipShardDataset  # noqa: E402
from pt_data.jpeg import decode_frames  # noqa: E402
from pt_data.shard_schema import clip_schema  # noqa: E402
from pt_data.shards import write_shard  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--frames", type=int, default=125)
    ap.add_argument("--out", default="benchmarks/results/shards.json")
    a = ap.parse_args()
    clips = [make_clip(i, a.frames) for i in range(a.clips)]
    rows = [c.to_row() for c in clips]
    mb = sum(len(b) for r in rows for b in r["frames"]) / 2**20 + sum(len(r["audio_pcm16"]) for r in rows) / 2**20
    with tempfile.TemporaryDirectory() as d:
        t_ours = best_time(lambda: write_shard(f"{d}/ours.parquet", clips))
        t_plain = best_time(lambda: pq.write_table(pa.Table.from_pylist(rows, schema=clip_schema()), f"{d}/plain.parquet"))
        ds = ClipShardDataset(f"{d}/ours.parquet", shuffle=False)
        t_read = best_time(lambda: sum(1 for _ in ds))
        t_naive = best_time(lambda: pq.read_table(f"{d}/ours.parquet").to_pylist())
        frames = clips[0].frames
        t_dec = best_time(lambda: decode_frames(frames))
    res = {
        "command": " ".join(["python"] + sys.argv),
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()}",
        "clips": a.clips, "frames_per_clip": a.frames, "payload_mib": round(mb, 1),
        "write_mib_per_s": round(mb / t_ours, 1), "write_ratio_vs_plain_pyarrow": round(t_plain / t_ours, 3),
        "read_clips_per_s": round(a.clips / t_read, 1), "read_speedup_vs_to_pylist": round(t_naive / t_read, 2),
        "jpeg_decode_frames_per_s": round(len(frames) / t_dec, 1),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
