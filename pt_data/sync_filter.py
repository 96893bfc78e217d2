"""SyncNet verdicts without the network: the result of one clip and the curation filter's thresholds.

Kept apart from :mod:`pt_data.syncnet` (which needs torch) so that configurations and reports can use them
cheaply; ``pt_data.syncnet`` re-exports all three names.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyncResult:
    """SyncNet's verdict on one clip.

    ``offset``: audio-video offset in frames at the best match (``vshift - argmin``; 0 = in sync);
    ``conf``: LSE-C, median minus minimum of the per-offset mean distances; ``min_dist``: LSE-D;
    ``num_windows``: 5-frame windows scored; ``random_weights``: computed with a randomly initialised network
    (not comparable with anything).
    """

    offset: int
    conf: float
    min_dist: float
    num_windows: int
    random_weights: bool


@dataclass(frozen=True)
class SyncFilterConfig:
    """The curation pipeline's optional sync filter (LatentSync's thresholds by default)."""

    min_conf: float = 3.0
    max_abs_offset: int = 6
    vshift: int = 15
    device: str = "cpu"


def sync_verdict(result: SyncResult, cfg: SyncFilterConfig) -> str | None:
    """``None`` to keep the clip, else why it is rejected (confidence first, then offset)."""
    if result.conf < cfg.min_conf:
        return f"SyncNet confidence {result.conf:.1f} < {cfg.min_conf:.1f}"
    if abs(result.offset) > cfg.max_abs_offset:
        return f"SyncNet offset {result.offset:+d} frames exceeds +/-{cfg.max_abs_offset}"
    return None
