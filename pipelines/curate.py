"""``curate``: raw corpus -> clip shards, resumable, with rejects and a manifest (the API of ``pt curate``).

A run lists the source items (``pipelines.sources``), reads what the output folder already holds
(``pipelines.ledger``), sends the unfinished items through the stages (``pipelines.stages``) on an engine
(``pipelines.engines``) and finally writes ``manifest.json`` describing the whole folder. A killed run
leaves only finished files behind; running the same command again completes the folder with the same clip
ids, each once.
"""
from __future__ import annotations

import json
import os
import platform
import posixpath
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from pipelines.config import CurateConfig
from pipelines.engines import run_local, run_ray
from pipelines.ledger import Ledger, dataset_statistics, remove_temporaries, scan_ledger
from pipelines.sources.registry import list_items
from pipelines.stages import StageSpec, build_stages
from pt_data.shards import resolve_filesystem, write_manifest, write_text_atomic

RUN_CONFIG = "curation.json"  # the settings every run of this folder must share
RUNS_DIR = "runs"


class CurateConfigError(ValueError):
    """A resumed run's settings differ from the ones the folder was curated with."""


@dataclass
class CurateReport:
    """What one ``curate`` call did."""

    items_total: int
    items_done_before: int
    items_processed: int
    clips_written: int
    rejects_written: int
    wall_s: float
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("personatalk", "ray", "mediapipe", "pyarrow", "av", "numpy", "torch", "opencv-contrib-python"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _check_settings(fs: pafs.FileSystem, root: str, cfg: CurateConfig) -> None:
    path = posixpath.join(root, RUN_CONFIG)
    mine = json.loads(json.dumps(cfg.fingerprint()))
    if fs.get_file_info(path).type == pafs.FileType.File:
        with fs.open_input_stream(path) as f:
            theirs = json.loads(f.read().decode())
        if theirs != mine:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise CurateConfigError(
                f"{cfg.output} was curated with other settings ({', '.join(diff)} differ; see {path}). "
                "Resume with the same options, or write to a new --output.")
    else:
        write_text_atomic(fs, path, json.dumps(mine, indent=2) + "\n")


class _Progress:
    """Counts outcomes per item as batches are committed; an item is done when all its outcomes are stored."""

    def __init__(self, pending: dict[str, int], show: bool) -> None:
        self.stored = dict(pending)  # item -> outcomes stored so far
        self.done = 0
        self.clips = self.rejects = 0
        self.bar = None
        if show and pending:
            from tqdm import tqdm  # noqa: PLC0415

            self.bar = tqdm(total=len(pending), unit="video", desc="curate", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, summary: pa.Table) -> None:
        for item, total, kind in zip(summary.column("item_id").to_pylist(), summary.column("item_total").to_pylist(),
                                     summary.column("kind").to_pylist()):
            if kind == "clip":
                self.clips += 1
            else:
                self.rejects += 1
            self.stored[item] = self.stored.get(item, 0) + 1
            if self.stored[item] == total:
                self.done += 1
                if self.bar is not None:
                    self.bar.update(1)
        if self.bar is not None:
            self.bar.set_postfix(clips=self.clips, rejects=self.rejects)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_manifest(cfg: CurateConfig, ledger: Ledger, items_total: int, runs: list[dict[str, Any]]
                   ) -> dict[str, Any]:
    """The manifest of an output folder: counts, rejects, per-stage timings, shards, runs."""
    stats = dataset_statistics(cfg.output, ledger)
    timings = {}
    for stage, (sec, frames) in sorted(ledger.work.items()):
        timings[stage] = {"seconds": round(sec, 3), "frames": int(round(frames)),
                          "frames_per_s_per_core": round(frames / sec, 1) if sec > 0 else None}
    done = sum(1 for i in ledger.totals if ledger.is_done(i))
    _, root = resolve_filesystem(cfg.output)
    for s in stats["shards"]:
        s["path"] = s["path"][len(root.rstrip("/")) + 1:] if s["path"].startswith(root) else s["path"]
    return {
        "created_by": "pt curate",
        "source": cfg.source, "input": cfg.input,
        "items": {"listed": items_total, "done": done, "with_clips": stats["items_with_clips"]},
        "clips": stats["clips"], "frames": stats["frames"], "hours": round(stats["hours"], 4),
        "speakers": stats["speakers"], "clips_per_dataset": stats["clips_per_dataset"],
        "quality": stats["iqa"], "sync_conf_mean": stats["sync_conf_mean"],
        "rejects": stats["rejects"],
        "timings": timings,
        "random_weights": cfg.random_weights,  # True: model scores (IQA network, SyncNet) are random
        "geometry": _geometry_manifest(cfg),
        "shards": stats["shards"],
        "config": cfg.to_dict(), "versions": _versions(), "runs": runs,
    }


def _geometry_manifest(cfg: CurateConfig) -> dict[str, Any]:
    from pipelines.stages import geometry_model_id  # noqa: PLC0415
    from pt_data.fit_config import CAMERA_CONVENTION  # noqa: PLC0415

    model_id, note = geometry_model_id(cfg.geometry)
    return {"face_model_id": model_id, "status": note, "camera": CAMERA_CONVENTION,
            "pose_columns": ["rx", "ry", "rz", "tx_mm", "ty_mm", "tz_mm"]}


def _read_runs(fs: pafs.FileSystem, root: str) -> list[dict[str, Any]]:
    folder = posixpath.join(root, RUNS_DIR)
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    out = []
    for info in sorted(fs.get_file_info(pafs.FileSelector(folder)), key=lambda i: i.base_name):
        if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
            with fs.open_input_stream(info.path) as f:
                out.append(json.loads(f.read().decode()))
    return out


def curate(cfg: CurateConfig, extra_stages: list[StageSpec] | None = None) -> CurateReport:
    """Curate ``cfg.input`` (layout ``cfg.source``) into ``cfg.output``; resumes what an earlier run left."""
    t0 = time.perf_counter()
    items = list_items(cfg.source, cfg.input)
    if cfg.limit is not None:
        items = items[:cfg.limit]
    fs, root = resolve_filesystem(cfg.output)
    fs.create_dir(root, recursive=True)
    _check_settings(fs, root, cfg)
    remove_temporaries(cfg.output)
    ledger = scan_ledger(cfg.output)
    pending = [(it, ledger.stored_ids(it.item_id)) for it in items if not ledger.is_done(it.item_id)]
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    run = {"run_id": run_id, "engine": cfg.engine.engine, "address": cfg.engine.address,
           "host": platform.node(), "pid": os.getpid(), "items_listed": len(items),
           "items_pending": len(pending), "started": datetime.now(timezone.utc).isoformat(), "finished": None}
    run_path = posixpath.join(root, RUNS_DIR, f"run-{run_id}.json")
    write_text_atomic(fs, run_path, json.dumps(run, indent=2) + "\n")
    progress = _Progress({it.item_id: len(skip) for it, skip in pending}, cfg.progress)
    try:
        if pending:
            stages = build_stages(cfg, extra_stages)
            if cfg.engine.engine == "local":
                run_local(pending, stages, progress)
            elif cfg.engine.engine == "ray":
                def record_cluster(info: dict[str, Any]) -> None:
                    run["ray_cluster"] = info
                    write_text_atomic(fs, run_path, json.dumps(run, indent=2) + "\n")

                run_ray(pending, stages, cfg.engine, progress, on_start=record_cluster)
            else:
                raise ValueError(f"unknown engine {cfg.engine.engine!r}: use 'ray' or 'local'")
    finally:
        progress.close()
    wall = time.perf_counter() - t0
    run.update(finished=datetime.now(timezone.utc).isoformat(), wall_s=round(wall, 2),
               items_processed=progress.done, clips_written=progress.clips, rejects_written=progress.rejects)
    write_text_atomic(fs, run_path, json.dumps(run, indent=2) + "\n")
    ledger = scan_ledger(cfg.output)
    manifest = build_manifest(cfg, ledger, len(items), _read_runs(fs, root))
    write_manifest(cfg.output, manifest)
    return CurateReport(len(items), len(items) - len(pending), progress.done, progress.clips, progress.rejects,
                        wall, manifest)
