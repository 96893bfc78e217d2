"""Two engines that run the same stage list: Ray Data streaming (the default) and a one-process loop.

The local loop is the reference the benchmark compares Ray against, and a debugging aid (no processes,
plain tracebacks). Both feed every committed batch summary to ``on_commit``.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

import pyarrow as pa

from pipelines.config import EngineConfig
from pipelines.sources.base import SourceItem
from pipelines.stages import ITEM_SCHEMA, StageSpec

Pending = Iterable[tuple[SourceItem, set[str]]]


def item_rows(pending: Pending) -> list[dict[str, str]]:
    """The pipeline's input rows: each item as JSON with the outcome ids already stored for it."""
    return [{"item_json": item.to_json(), "skip_json": json.dumps(sorted(skip))} for item, skip in pending]


def _instantiate(spec: StageSpec) -> Callable[[pa.Table], pa.Table]:
    if spec.is_actor:
        return spec.fn(**spec.kwargs)
    return lambda batch: spec.fn(batch, **spec.kwargs)


def run_local(pending: Pending, stages: list[StageSpec], on_commit: Callable[[pa.Table], None]) -> None:
    """Run the stages in this process, one item at a time, committing every ``commit`` batch."""
    *middle, commit = stages
    fns = [_instantiate(s) for s in middle]
    write = _instantiate(commit)
    buffered: list[pa.Table] = []
    n = 0
    for row in item_rows(pending):
        t = pa.Table.from_pylist([row], schema=ITEM_SCHEMA)
        for fn in fns:
            t = fn(t)
        buffered.append(t)
        n += t.num_rows
        if n >= commit.batch_size:
            on_commit(write(pa.concat_tables(buffered)))
            buffered, n = [], 0
    if n:
        on_commit(write(pa.concat_tables(buffered)))


def init_ray(eng: EngineConfig) -> bool:
    """Connect to ``eng.address`` or start an embedded local Ray; returns True when this call started it."""
    import ray  # noqa: PLC0415 - Ray is only needed by this engine

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                              "configure_logging": True}
    if eng.address:
        ray.init(address=eng.address, **common)
    else:
        ray.init(address="local", num_cpus=eng.num_cpus or os.cpu_count() or 1,
                 object_store_memory=int(eng.object_store_gb * 2**30), **common)
    return True


def cluster_info() -> dict[str, Any]:
    """Alive nodes and their CPUs/GPUs of the connected Ray cluster (recorded in the run log)."""
    import ray  # noqa: PLC0415

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {"nodes": len(nodes), "cpus": sum(n["Resources"].get("CPU", 0) for n in nodes),
            "gpus": sum(n["Resources"].get("GPU", 0) for n in nodes)}


def run_ray(pending: Pending, stages: list[StageSpec], eng: EngineConfig,
            on_commit: Callable[[pa.Table], None], on_start: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run the stages as one Ray Data streaming dataset; batches arrive at ``on_commit`` as they finish.

    ``on_start`` receives :func:`cluster_info` once Ray is up.
    """
    import ray  # noqa: PLC0415

    started = init_ray(eng)
    try:
        if on_start is not None:
            on_start(cluster_info())
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver shows items done instead
        ctx.print_on_execution_start = False
        ctx.op_resource_reservation_enabled = False  # let the face-mesh actors take every CPU
        rows = item_rows(pending)
        if not rows:
            return
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        for spec in stages:
            common: dict[str, Any] = {"batch_size": spec.batch_size, "batch_format": "pyarrow",
                                      "num_cpus": spec.num_cpus}
            if spec.num_gpus:
                common["num_gpus"] = spec.num_gpus
            if spec.is_actor:
                size = spec.concurrency or cpus
                ds = ds.map_batches(spec.fn, fn_constructor_kwargs=spec.kwargs,
                                    concurrency=max(1, min(size, len(rows))), **common)
            else:
                ds = ds.map_batches(spec.fn, fn_kwargs=spec.kwargs, **common)
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            on_commit(batch)
    finally:
        if started:
            ray.shutdown()
