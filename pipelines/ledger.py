"""What an output folder already holds: the state a restarted curation job resumes from.

The files are the truth (there is no separate journal that could disagree with them): every finished shard
``clips/part-*.parquet`` and rejects file ``rejects/rejects-*.parquet`` records, in its key-value metadata,
the total number of outcomes of each item it touches (``pt.items``) and the work spent (``pt.work``), and
holds the outcome ids themselves (``clip_id`` / ``outcome_id`` columns). An item is done when all its
outcomes are stored; a partly stored item is processed again with the stored outcomes skipped.
"""
from __future__ import annotations

import json
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.stages import CLIPS_DIR, REJECTS_DIR
from pt_data.shard_schema import FPS
from pt_data.shards import resolve_filesystem


@dataclass
class Ledger:
    """Outcomes stored under an output folder, per item."""

    totals: dict[str, int] = field(default_factory=dict)
    stored: dict[str, set[str]] = field(default_factory=dict)
    work: dict[str, list[float]] = field(default_factory=dict)
    shard_files: list[str] = field(default_factory=list)
    reject_files: list[str] = field(default_factory=list)

    def is_done(self, item_id: str) -> bool:
        """All outcomes of the item are stored."""
        return item_id in self.totals and len(self.stored.get(item_id, ())) >= self.totals[item_id]

    def stored_ids(self, item_id: str) -> set[str]:
        return self.stored.get(item_id, set())

    def _add_meta(self, meta: dict[bytes, bytes] | None) -> None:
        meta = meta or {}
        self.totals.update(json.loads(meta.get(b"pt.items", b"{}")))
        for stage, (s, f) in json.loads(meta.get(b"pt.work", b"{}")).items():
            acc = self.work.setdefault(stage, [0.0, 0.0])
            acc[0] += s
            acc[1] += f


def _files(fs: pafs.FileSystem, folder: str, prefix: str) -> list[str]:
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    return sorted(i.path for i in fs.get_file_info(pafs.FileSelector(folder))
                  if i.type == pafs.FileType.File and i.base_name.startswith(prefix)
                  and i.base_name.endswith(".parquet"))


def remove_temporaries(output: str) -> int:
    """Delete half-written files (``.NAME.tmp-*``) a killed run left; returns how many."""
    fs, root = resolve_filesystem(output)
    n = 0
    for sub in (CLIPS_DIR, REJECTS_DIR, ""):
        folder = posixpath.join(root, sub) if sub else root
        if fs.get_file_info(folder).type != pafs.FileType.Directory:
            continue
        for i in fs.get_file_info(pafs.FileSelector(folder)):
            if i.type == pafs.FileType.File and i.base_name.startswith(".") and ".tmp-" in i.base_name:
                fs.delete_file(i.path)
                n += 1
    return n


def item_of_clip(clip_id: str) -> str:
    """The item id of a clip id ``{item_id}/{start}-{end}``."""
    return clip_id.rsplit("/", 1)[0]


def scan_ledger(output: str) -> Ledger:
    """Read the bookkeeping of every finished file under ``output`` (footers and id columns only)."""
    fs, root = resolve_filesystem(output)
    led = Ledger()
    for path in _files(fs, posixpath.join(root, CLIPS_DIR), "part-"):
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            led._add_meta(pf.schema_arrow.metadata)
            for cid in pf.read(columns=["clip_id"]).column("clip_id").to_pylist():
                led.stored.setdefault(item_of_clip(cid), set()).add(cid)
        led.shard_files.append(path)
    for path in _files(fs, posixpath.join(root, REJECTS_DIR), "rejects-"):
        with fs.open_input_file(path) as f:
            t = pq.read_table(f, columns=["outcome_id", "item_id"])
            led._add_meta(t.schema.metadata)
        for oid, iid in zip(t.column("outcome_id").to_pylist(), t.column("item_id").to_pylist()):
            led.stored.setdefault(iid, set()).add(oid)
        led.reject_files.append(path)
    return led


def dataset_statistics(output: str, ledger: Ledger) -> dict[str, Any]:
    """Counts of a curated folder for the manifest and the summary (reads small columns only)."""
    fs, _ = resolve_filesystem(output)
    cols = ["clip_id", "dataset", "speaker_id", "num_frames", "iqa_score", "iqa_model", "sync_conf"]
    clips, frames, speakers, per_dataset, iqa, sync = 0, 0, set(), Counter(), [], []
    items_with_clips: set[str] = set()
    iqa_models: Counter = Counter()
    shards = []
    for path in ledger.shard_files:
        with fs.open_input_file(path) as f:
            t = pq.read_table(f, columns=cols)
        n_frames = int(np.sum(t.column("num_frames").to_numpy()))
        clips += t.num_rows
        frames += n_frames
        items_with_clips.update(item_of_clip(c) for c in t.column("clip_id").to_pylist())
        for d, s in zip(t.column("dataset").to_pylist(), t.column("speaker_id").to_pylist()):
            speakers.add((d, s))
            per_dataset[d] += 1
        iqa += [v for v in t.column("iqa_score").to_pylist() if v is not None]
        sync += [v for v in t.column("sync_conf").to_pylist() if v is not None]
        iqa_models.update(m for m in t.column("iqa_model").to_pylist() if m)
        shards.append({"path": path, "clips": t.num_rows, "frames": n_frames,
                       "bytes": fs.get_file_info(path).size})
    reasons: Counter = Counter()
    stages: Counter = Counter()
    examples: list[dict[str, Any]] = []
    for path in ledger.reject_files:
        with fs.open_input_file(path) as f:
            t = pq.read_table(f, columns=["source_uri", "clip_id", "stage", "reason"])
        for uri, cid, stage, reason in zip(*(t.column(c).to_pylist() for c in t.column_names)):
            stages[stage] += 1
            reasons[f"{stage}: {_reason_kind(reason)}"] += 1
            examples.append({"uri": uri, "clip_id": cid, "stage": stage, "reason": reason})
    hist_edges = list(range(0, 101, 10))
    hist = np.histogram(np.clip(iqa, 0, 100), bins=hist_edges)[0].tolist() if iqa else [0] * 10
    return {
        "clips": clips, "frames": frames, "hours": frames / FPS / 3600, "items_with_clips": len(items_with_clips),
        "speakers": len(speakers), "clips_per_dataset": dict(per_dataset),
        "iqa": {"models": dict(iqa_models), "mean": float(np.mean(iqa)) if iqa else None,
                "histogram_edges": hist_edges, "histogram": hist},
        "sync_conf_mean": float(np.mean(sync)) if sync else None,
        "rejects": {"total": sum(stages.values()), "by_stage": dict(stages), "by_reason": dict(reasons),
                    "items": examples[:1000]},
        "shards": shards,
    }


def _reason_kind(reason: str) -> str:
    """A reason without its file name and numbers, for grouping ("image quality 31.2 < 40" -> "image quality")."""
    head, sep, rest = reason.partition(": ")
    if sep and ("/" in head or "." in head):  # "<path>: what went wrong"
        reason = rest
    words = []
    for w in reason.split():
        if any(ch.isdigit() for ch in w) or w.startswith(("(", "/")):
            break
        words.append(w)
    return " ".join(words) or reason[:60]
