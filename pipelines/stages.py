"""The curation stages: callables over Arrow batches that an engine (Ray Data or a local loop) composes.

Each stage is declared by a :class:`StageSpec`: the callable, its batch size and its resources, so the
engine can place it. Model-holding stages are classes (Ray actors that load their model once); the writer
is a plain function (Ray tasks). The order is::

    extract (face mesh actor, 1 CPU, one item per call)
      -> quality (IQA actor; GPU when asked)
      -> sync (SyncNet actor; only when enabled)
      -> [extra stages: the 3DMM fitting stage of the geometry issue goes here, before the writer]
      -> commit (writer task: one shard file + one rejects file per batch, atomically)

Every stage maps outcome rows to outcome rows (see :mod:`pipelines.outcomes`); a stage that rejects a clip
replaces its row by a reject row, so the number of outcomes per item never changes after extraction.
"""
from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from pipelines.affinity import claim_core
from pipelines.config import CurateConfig, GeometryConfig, SyncConfig
from pipelines.fetch import local_copy
from pipelines.outcomes import (CLIP, CLIP_COLUMNS, REJECT_SCHEMA, add_work, clip_outcome, item_reject_id,
                                outcome_table, reject_clip, reject_outcome, sum_work)
from pipelines.sources.base import SourceItem
from pt_data.extract import ClipExtractor, ClipSource, ExtractConfig, ExtractionError
from pt_data.iqa import DEFAULT_IQA_MODEL, IQAConfig, score_frames
from pt_data.jpeg import decode_frames
from pt_data.shards import resolve_filesystem, write_shard, write_table_atomic

log = logging.getLogger(__name__)

#: Input rows of the pipeline: the item and the outcome ids an earlier run already stored.
ITEM_SCHEMA = pa.schema([pa.field("item_json", pa.string(), False), pa.field("skip_json", pa.string(), False)])
CLIPS_DIR, REJECTS_DIR = "clips", "rejects"


@dataclass
class StageSpec:
    """One stage as an engine sees it."""

    name: str
    fn: Callable[..., Any]  # a class (actor: built once per worker) or a function (task)
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor kwargs (class) or call kwargs
    batch_size: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    concurrency: int | None = None  # actor pool size (None: the engine decides)

    @property
    def is_actor(self) -> bool:
        return isinstance(self.fn, type)


# --------------------------------------------------------------------------------------------- extract
def extract_item(extractor: ClipExtractor, item: SourceItem, skip: set[str]) -> list[dict[str, Any]]:
    """The outcome rows of one source item (minus those in ``skip``); never raises for a bad input."""
    src = dict(dataset=item.dataset, source_uri=item.uri, speaker_id=item.speaker_id)
    t0 = time.perf_counter()
    try:
        with local_copy(item.uri) as path:
            res = extractor.extract(ClipSource(path, item.item_id, item.dataset, item.speaker_id, item.uri,
                                               item.start_s, item.end_s, item.box), skip)
    except Exception as e:  # noqa: BLE001 - one bad video must never stop the job; the reason is recorded
        if isinstance(e, ExtractionError):
            stage, reason = e.stage, e.reason
        else:
            log.error("extracting %s failed:\n%s", item.uri, traceback.format_exc())
            stage, reason = "extract", f"internal error {type(e).__name__}: {e}"
        row = reject_outcome(item_id=item.item_id, item_total=1, outcome_id=item_reject_id(item.item_id),
                             stage=stage, reason=reason, **src)
        add_work(row, "extract", time.perf_counter() - t0, 0)
        return [] if row["outcome_id"] in skip else [row]
    total = len(res.clips) + res.num_skipped + (1 if res.warnings else 0)
    rows: list[dict[str, Any]] = []
    if total == 0:
        total = 1
        rows.append(reject_outcome(item_id=item.item_id, item_total=1, outcome_id=item_reject_id(item.item_id),
                                   stage="tracks", reason=res.reason_if_empty(), **src))
    elif res.warnings:
        rows.append(reject_outcome(item_id=item.item_id, item_total=total, outcome_id=f"{item.item_id}#partial",
                                   stage="decode", reason="; ".join(res.warnings), **src))
    rows += [clip_outcome(c, item.item_id, total) for c in res.clips]
    rows = [r for r in rows if r["outcome_id"] not in skip]
    for r in rows:  # the item's work, shared evenly by the outcomes it produced in this run
        for step, sec in res.timings.items():
            add_work(r, f"extract.{step}", sec / len(rows), res.frames_decoded / len(rows))
        add_work(r, "extract", (time.perf_counter() - t0) / len(rows), res.frames_decoded / len(rows))
    return rows


class ExtractStage:
    """Actor: decode, face mesh, tracks, crops, audio (one MediaPipe graph per worker).

    ``pin_core``: claim a core of its own (Ray workers; see :mod:`pipelines.affinity`).
    """

    def __init__(self, config: ExtractConfig, pin_core: bool = False) -> None:
        import cv2  # noqa: PLC0415

        cv2.setNumThreads(1)  # one CPU per worker: OpenCV's own threads would only compete with the others
        self._core = claim_core() if pin_core else None
        self.extractor = ClipExtractor(config)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for item_json, skip_json in zip(batch.column("item_json").to_pylist(), batch.column("skip_json").to_pylist()):
            rows += extract_item(self.extractor, SourceItem.from_json(item_json), set(json.loads(skip_json)))
        return outcome_table(rows)


# ------------------------------------------------------------------------------------ clip filters
class ClipFilterStage:
    """A stage that measures each clip (``check``) and turns the clips it refuses into rejects.

    Subclasses set ``name`` (the stage recorded in timings and rejects) and implement ``check(row)``, which
    may add columns to the row and returns None to keep the clip or the reason to reject it.
    """

    name = "filter"

    def check(self, row: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def check_many(self, rows: list[dict[str, Any]]) -> list[str | None]:
        """The reasons for several clips (override to process a batch at once)."""
        return [self.check(r) for r in rows]

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        clips = [r for r in rows if r["kind"] == CLIP]
        if clips:
            t = time.perf_counter()
            reasons = dict(zip((id(r) for r in clips), self.check_many(clips)))
            frames = sum(r["num_frames"] for r in clips)
            sec = time.perf_counter() - t
            for r in clips:  # the batch's time, shared by frames
                add_work(r, self.name, sec * r["num_frames"] / max(frames, 1), r["num_frames"])
            rows = [reject_clip(r, self.name, reasons[id(r)]) if r["kind"] == CLIP and reasons[id(r)] else r
                    for r in rows]
        return outcome_table(rows)


class QualityStage(ClipFilterStage):
    """Actor: image-quality score per clip (``pt_data.iqa``); clips below the threshold become rejects."""

    name = "quality"

    def __init__(self, config: IQAConfig, weights_dir: str | None) -> None:
        from pt_data.weights import WeightsRegistry  # noqa: PLC0415 - model code loads in the worker only

        self.scorer = config.create_scorer(WeightsRegistry(weights_dir))
        self.every, self.threshold = config.resolve(self.scorer)

    def check(self, row: dict[str, Any]) -> str | None:
        frames = row["frames"]
        per_frame, score = score_frames(self.scorer, len(frames), lambda idx: decode_frames(frames, idx), self.every)
        row.update(iqa_score=float(score), iqa_frame_scores=np.asarray(per_frame, np.float32),
                   iqa_model=self.scorer.name)
        if score >= self.threshold:
            return None
        return f"image quality {score:.1f} < {self.threshold:g} ({self.scorer.name})"


class SyncStage(ClipFilterStage):
    """Actor: SyncNet offset/confidence per clip; out-of-sync clips become rejects."""

    name = "sync"

    def __init__(self, config: SyncConfig, weights_dir: str | None, random_weights: bool) -> None:
        from pt_data.syncnet import load_syncnet  # noqa: PLC0415
        from pt_data.weights import WeightsRegistry  # noqa: PLC0415

        self.config, self.device = config, config.filter.device
        self.model = load_syncnet(WeightsRegistry(weights_dir), device=self.device, random_weights=random_weights)

    def check(self, row: dict[str, Any]) -> str | None:
        from pt_data.syncnet import sync_score, sync_verdict  # noqa: PLC0415

        audio = np.frombuffer(row["audio_pcm16"], dtype="<i2")
        try:
            res = sync_score(self.model, decode_frames(row["frames"]), audio, vshift=self.config.filter.vshift,
                             device=self.device)
        except ValueError as e:  # too short for SyncNet's windows
            return f"SyncNet cannot score the clip: {e}"
        row.update(sync_offset=res.offset, sync_conf=res.conf)
        return sync_verdict(res, self.config.filter)


class FitStage(ClipFilterStage):
    """Actor: hybrid 3DMM fit of a batch of clips at once (``pt_data.fitting``); fills the geometry columns.

    Clips whose mean landmark error exceeds ``max_landmark_error_px`` become rejects (a fit that does not sit
    on the face would teach the model wrong geometry).
    """

    name = "fit"

    def __init__(self, config: GeometryConfig, device: str) -> None:
        import torch  # noqa: PLC0415 - model code loads in the worker only

        from pt_data.face_model_convert import default_face_model  # noqa: PLC0415

        torch.set_num_threads(1)
        self.config = config
        self.model = default_face_model(config.face_model)
        self.fit_config = replace(config.fit, device=device)

    def check_many(self, rows: list[dict[str, Any]]) -> list[str | None]:
        from pt_data.fitting import fit_clips  # noqa: PLC0415

        lms = [np.asarray(r["landmarks"], np.float32).reshape(r["num_frames"], -1, 2) for r in rows]
        reasons = []
        for row, fit in zip(rows, fit_clips(lms, self.model, self.fit_config)):
            row.update(face_model_id=self.model.model_id, shape=fit.shape, expression=fit.expression.reshape(-1),
                       pose=fit.pose.reshape(-1), fit_landmark_error_px=fit.landmark_error_px,
                       fit_jitter=fit.jitter)
            bad = not np.isfinite(fit.landmark_error_px) or fit.landmark_error_px > self.config.max_landmark_error_px
            reasons.append(f"3DMM fit error {fit.landmark_error_px:.2f} px > {self.config.max_landmark_error_px:g} px"
                           if bad else None)
        return reasons


def geometry_model_id(config: GeometryConfig) -> tuple[str | None, str]:
    """``(face model id, note)`` of the fitting stage; id None when the stage does not run (note says why).

    Raises :class:`~pt_data.face_model.FaceModelError` when the mode is "on" and no model can be loaded.
    """
    if config.mode == "off":
        return None, "off"
    from pt_data.face_model import FaceModelError  # noqa: PLC0415
    from pt_data.face_model_convert import default_face_model  # noqa: PLC0415

    try:
        return default_face_model(config.face_model).model_id, "fitted"
    except FaceModelError as e:
        if config.mode == "on":
            raise
        return None, f"skipped: {e}"


# ---------------------------------------------------------------------------------------------- commit
def _batch_name(rows: list[dict[str, Any]]) -> str:
    h = hashlib.sha1("\n".join(sorted(r["outcome_id"] for r in rows)).encode()).hexdigest()
    return h[:20]


def commit_outcomes(batch: pa.Table, output: str) -> pa.Table:
    """Writer task: the batch's clips into one shard, its rejects into one rejects file, both atomically.

    Both files carry the item totals (``pt.items``); the work timings (``pt.work``) are stored once. Returns a
    small table (one row per outcome) for the driver's progress and counts.
    """
    rows = batch.to_pylist()
    if not rows:
        return pa.table({"item_id": pa.array([], pa.string())})
    fs, root = resolve_filesystem(output)
    name = _batch_name(rows)
    items = json.dumps({r["item_id"]: r["item_total"] for r in rows}, sort_keys=True)
    work = json.dumps(sum_work(rows))
    clips = [r for r in rows if r["kind"] == CLIP]
    rejects = [r for r in rows if r["kind"] != CLIP]
    if clips:
        write_shard(posixpath.join(root, CLIPS_DIR, f"part-{name}.parquet"),
                    [{k: r[k] for k in CLIP_COLUMNS} for r in clips], filesystem=fs,
                    metadata={"pt.items": items, "pt.work": work})
    if rejects:
        table = pa.Table.from_pylist([{"outcome_id": r["outcome_id"], "item_id": r["item_id"],
                                       "clip_id": r["clip_id"], "dataset": r["dataset"],
                                       "source_uri": r["source_uri"], "start_s": r["start_s"], "end_s": r["end_s"],
                                       "stage": r["reject_stage"], "reason": r["reject_reason"]} for r in rejects],
                                     schema=REJECT_SCHEMA)
        meta = {b"pt.items": items.encode()}
        if not clips:
            meta[b"pt.work"] = work.encode()
        write_table_atomic(fs, posixpath.join(root, REJECTS_DIR, f"rejects-{name}.parquet"),
                           table.replace_schema_metadata(meta))
    return pa.table({
        "item_id": [r["item_id"] for r in rows],
        "item_total": pa.array([r["item_total"] for r in rows], pa.int32()),
        "kind": [r["kind"] for r in rows],
        "num_frames": pa.array([r.get("num_frames") or 0 for r in rows], pa.int64()),
        "reason": [r.get("reject_reason") for r in rows],
    })


# ---------------------------------------------------------------------------------------------- wiring
def sync_enabled(config: SyncConfig, weights_dir: str | None, random_weights: bool) -> bool:
    """Whether the sync stage runs: "on", or "auto" with the SyncNet weights present."""
    if config.mode == "off":
        return False
    if config.mode == "on" or random_weights:
        return config.mode == "on"
    from pt_data.weights import WeightsRegistry  # noqa: PLC0415

    return any(s.present for s in WeightsRegistry(weights_dir).status() if s.spec.name == "syncnet_v2")


def build_stages(cfg: CurateConfig, extra: list[StageSpec] | None = None) -> list[StageSpec]:
    """The stage list of a run; ``extra`` stages (e.g. 3DMM fitting) go between the filters and the writer."""
    eng = cfg.engine
    gpu = 1.0 if eng.device.startswith("cuda") else 0.0
    stages = [StageSpec("extract", ExtractStage, {"config": cfg.extract, "pin_core": eng.engine == "ray"},
                        batch_size=1, num_cpus=1.0, concurrency=eng.extract_workers)]
    if cfg.quality is not None:
        light = cfg.quality.model == DEFAULT_IQA_MODEL  # a few ms per crop: no CPU of its own
        stages.append(StageSpec("quality", QualityStage, {"config": cfg.quality, "weights_dir": cfg.weights_dir},
                                batch_size=1, num_cpus=0.0 if light or gpu else 1.0, num_gpus=gpu * 0.5,
                                concurrency=1))
    if sync_enabled(cfg.sync, cfg.weights_dir, cfg.random_weights):
        stages.append(StageSpec("sync", SyncStage, {"config": cfg.sync, "weights_dir": cfg.weights_dir,
                                                    "random_weights": cfg.random_weights}, batch_size=4,
                                num_cpus=1.0, num_gpus=gpu * 0.5, concurrency=1))
    if geometry_model_id(cfg.geometry)[0] is not None:
        stages.append(StageSpec("fit", FitStage, {"config": cfg.geometry, "device": eng.device},
                                batch_size=cfg.geometry.batch_clips, num_cpus=0.0 if gpu else 1.0,
                                num_gpus=gpu * 0.5, concurrency=1))
    stages += extra or []
    stages.append(StageSpec("commit", commit_outcomes, {"output": cfg.output}, batch_size=cfg.shard_clips,
                            num_cpus=0.0))  # I/O bound
    return stages
