"""A human-readable report of a curated folder, from its ``manifest.json``."""
from __future__ import annotations

from typing import Any

from pt_data.shards import read_manifest


def _bar(n: int, top: int, width: int = 30) -> str:
    return "#" * (0 if top == 0 else max(1 if n else 0, round(width * n / top)))


def format_summary(m: dict[str, Any]) -> str:
    """Clips, hours, speakers, the quality histogram, reject reasons and per-stage speed of a manifest."""
    items = m.get("items", {})
    lines = [
        f"source      {m.get('source')}  ({m.get('input')})",
        f"videos      {items.get('listed', 0)} listed, {items.get('done', 0)} done, "
        f"{items.get('with_clips', 0)} with clips",
        f"clips       {m.get('clips', 0)}  ({m.get('frames', 0)} frames, {m.get('hours', 0.0):.2f} h, "
        f"{m.get('speakers', 0)} speakers, {len(m.get('shards', []))} shard files)",
    ]
    if m.get("random_weights"):
        lines.append("WARNING     curated with --random-weights: model scores are random, not comparable")
    per = m.get("clips_per_dataset") or {}
    if len(per) > 1:
        lines.append("per dataset " + ", ".join(f"{k} {v}" for k, v in sorted(per.items())))
    geo = m.get("geometry") or {}
    if geo:
        lines.append(f"geometry    {geo.get('face_model_id') or '-'} ({geo.get('status', '?')})")
    q = m.get("quality") or {}
    hist = q.get("histogram") or []
    if any(hist):
        models = ", ".join(q.get("models", {})) or "?"
        lines += ["", f"image quality ({models}), mean {q.get('mean', 0):.1f}:"]
        edges = q["histogram_edges"]
        top = max(hist)
        for lo, hi, n in zip(edges[:-1], edges[1:], hist):
            lines.append(f"  {lo:3d}-{hi:<3d} {n:6d} {_bar(n, top)}")
    rej = m.get("rejects") or {}
    lines += ["", f"rejects     {rej.get('total', 0)}"]
    for reason, n in sorted((rej.get("by_reason") or {}).items(), key=lambda kv: -kv[1]):
        lines.append(f"  {n:6d}  {reason}")
    timings = m.get("timings") or {}
    if timings:
        lines += ["", "speed (frames/s per core)"]
        for stage, t in timings.items():
            if t.get("frames_per_s_per_core"):
                lines.append(f"  {stage:20s} {t['frames_per_s_per_core']:10.1f}   ({t['seconds']:.1f} s)")
    runs = m.get("runs") or []
    if runs:
        lines += ["", f"runs        {len(runs)} (last: {runs[-1].get('engine')}, "
                      f"{runs[-1].get('wall_s', '?')} s, {runs[-1].get('items_processed', '?')} videos)"]
    return "\n".join(lines)


def summarize(output: str) -> str:
    """The report of the curated folder ``output`` (raises ShardError when it has no manifest)."""
    return format_summary(read_manifest(output))
