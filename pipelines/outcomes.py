"""The rows that flow between curation stages: every source item ends as a fixed number of *outcomes*.

An outcome is either a kept clip (a shard row) or a reject (the item, or one clip of it, with the stage and
the reason). Each outcome carries its item's id and the item's total number of outcomes, so the writer and
a restarted job know when an item is complete: resumption is exact at the outcome level (no duplicate, no
loss) without any state outside the output folder.

The Arrow schema is the clip schema with every column nullable (rejects have no pixels) plus the
bookkeeping columns below; batches are Arrow tables, so Ray Data moves them without pickling.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

import pyarrow as pa

from pt_data.clip import Clip
from pt_data.shard_schema import clip_schema

CLIP, REJECT = "clip", "reject"

_BOOKKEEPING = [
    pa.field("item_id", pa.string(), False),
    pa.field("item_total", pa.int32(), False),  # outcomes this item produces in all
    pa.field("outcome_id", pa.string(), False),  # clip_id for clips and clip rejects; item_id + "#item"
    pa.field("kind", pa.string(), False),  # "clip" or "reject"
    pa.field("reject_stage", pa.string(), True),
    pa.field("reject_reason", pa.string(), True),
    pa.field("work_json", pa.string(), True),  # {"stage": [seconds, frames], ...} attributed to this row
]
_CLIP_FIELDS = [f.with_nullable(True) for f in clip_schema()]
OUTCOME_SCHEMA = pa.schema(_CLIP_FIELDS + _BOOKKEEPING)
CLIP_COLUMNS = tuple(f.name for f in clip_schema())

#: The rejects table (one row per reject outcome).
REJECT_SCHEMA = pa.schema([
    pa.field("outcome_id", pa.string(), False),
    pa.field("item_id", pa.string(), False),
    pa.field("clip_id", pa.string(), True),
    pa.field("dataset", pa.string(), True),
    pa.field("source_uri", pa.string(), True),
    pa.field("start_s", pa.float64(), True),
    pa.field("end_s", pa.float64(), True),
    pa.field("stage", pa.string(), False),
    pa.field("reason", pa.string(), False),
])


def item_reject_id(item_id: str) -> str:
    """The outcome id of a whole-item reject."""
    return f"{item_id}#item"


def clip_outcome(clip: Clip, item_id: str, item_total: int) -> dict[str, Any]:
    """The outcome row of a kept clip."""
    row = clip.to_row()
    row.update(item_id=item_id, item_total=item_total, outcome_id=clip.clip_id, kind=CLIP,
               reject_stage=None, reject_reason=None, work_json=None)
    return row


def reject_outcome(*, item_id: str, item_total: int, outcome_id: str, stage: str, reason: str,
                   dataset: str, source_uri: str, speaker_id: str = "", clip_id: str | None = None,
                   start_s: float | None = None, end_s: float | None = None) -> dict[str, Any]:
    """The outcome row of a rejected item or clip."""
    return {"clip_id": clip_id, "dataset": dataset, "speaker_id": speaker_id, "source_uri": source_uri,
            "start_s": start_s, "end_s": end_s, "item_id": item_id, "item_total": item_total,
            "outcome_id": outcome_id, "kind": REJECT, "reject_stage": stage, "reject_reason": reason,
            "work_json": None}


def reject_clip(row: Mapping[str, Any], stage: str, reason: str) -> dict[str, Any]:
    """Turn a clip outcome row into a reject of that clip (its pixels are dropped, its work kept)."""
    out = reject_outcome(item_id=row["item_id"], item_total=row["item_total"], outcome_id=row["outcome_id"],
                         stage=stage, reason=reason, dataset=row["dataset"], source_uri=row["source_uri"],
                         speaker_id=row["speaker_id"], clip_id=row["clip_id"], start_s=row["start_s"],
                         end_s=row["end_s"])
    out["work_json"] = row.get("work_json")
    for k in ("iqa_score", "iqa_model", "sync_offset", "sync_conf"):  # keep the measured numbers
        out[k] = row.get(k)
    return out


def outcome_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """An Arrow table of outcome rows (missing columns are null)."""
    return pa.Table.from_pylist(list(rows), schema=OUTCOME_SCHEMA)


def add_work(row: dict[str, Any], stage: str, seconds: float, frames: float) -> None:
    """Attribute ``seconds`` of ``stage`` over ``frames`` frames to an outcome row."""
    work = json.loads(row["work_json"]) if row.get("work_json") else {}
    s, f = work.get(stage, (0.0, 0.0))
    work[stage] = (s + seconds, f + frames)
    row["work_json"] = json.dumps(work)


def sum_work(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per stage, the total [seconds, frames] of some outcome rows."""
    out: dict[str, list[float]] = {}
    for r in rows:
        for stage, (s, f) in (json.loads(r["work_json"]) if r.get("work_json") else {}).items():
            acc = out.setdefault(stage, [0.0, 0.0])
            acc[0] += s
            acc[1] += f
    return out
