"""The configuration of a curation run (what ``pt curate`` fills from its options)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pt_data.extract import ExtractConfig
from pt_data.fit_config import FitConfig
from pt_data.iqa import IQAConfig
from pt_data.sync_filter import SyncFilterConfig


@dataclass
class SyncConfig:
    """The optional SyncNet filter: "auto" runs it when syncnet_v2 weights are present."""

    mode: str = "auto"  # "auto", "on" (missing weights are an error), "off"
    filter: SyncFilterConfig = field(default_factory=SyncFilterConfig)  # LatentSync: conf >= 3, |offset| <= 6


@dataclass
class GeometryConfig:
    """The 3DMM fitting stage: "auto" fits when a face model is available (the ICT default or ``face_model``)."""

    mode: str = "auto"  # "auto", "on" (a missing face model is an error), "off"
    face_model: str | None = None  # a converted model (.npz); None: $PT_FACE_MODEL or the ICT default
    fit: FitConfig = field(default_factory=FitConfig)
    max_landmark_error_px: float = 8.0  # clips fitted worse than this (mean px at 256) become rejects
    batch_clips: int = 8  # clips fitted together in one batched optimisation


@dataclass
class EngineConfig:
    """Where and how the stages run."""

    engine: str = "ray"  # "ray" (Ray Data streaming) or "local" (one process, the reference loop)
    address: str | None = None  # an existing Ray cluster ("auto", "HOST:PORT"); None = embedded local Ray
    num_cpus: int | None = None  # embedded Ray: CPUs to use (default: all)
    object_store_gb: float = 2.0
    extract_workers: int | None = None  # face-mesh actors (default: one per CPU)
    device: str = "cpu"  # for model stages (IQA networks, SyncNet): "cpu" or "cuda"


@dataclass
class CurateConfig:
    """One curation run: a source layout read from ``input``, shards written to ``output``."""

    source: str
    input: str
    output: str
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    quality: IQAConfig | None = field(default_factory=IQAConfig)  # None: no image-quality stage
    sync: SyncConfig = field(default_factory=SyncConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    shard_clips: int = 64  # clips per shard file (the writer's batch)
    limit: int | None = None  # only the first N items (sorted by id)
    weights_dir: str | None = None
    random_weights: bool = False  # tests and smoke runs only: model stages with random weights
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (recorded in the manifest and the run logs)."""
        return asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide which clips come out (a resumed run must use the same ones)."""
        d = self.to_dict()
        return {k: d[k] for k in ("source", "extract", "quality", "sync", "geometry", "random_weights")}
