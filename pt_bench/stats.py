"""Bootstrap confidence intervals of a mean over videos (percentile method, seeded).

A benchmark scores N videos per method; the leaderboard reports the mean and a 95 % percentile-bootstrap
interval: resample the N per-video scores with replacement ``n_samples`` times, take each resample's mean,
and report the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means. NaN scores
(e.g. a video where no face was found) are left out and counted by the caller; infinite scores (PSNR of
identical videos) are kept, and the quantiles are then taken without interpolation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class MeanCI:
    """The mean of ``n`` non-NaN values and its bootstrap interval ``[low, high]`` (NaN when ``n == 0``)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        """Half of the interval's length (the "±" shown in tables)."""
        return (self.high - self.low) / 2


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, *, n_samples: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> MeanCI:
    """Mean of the non-NaN ``values`` and its percentile-bootstrap ``confidence`` interval.

    Deterministic for a given ``seed``. One value gives a zero-width interval; no value gives NaNs.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return MeanCI(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    if n == 1:
        return MeanCI(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    means = np.empty(n_samples)
    chunk = max(1, 2_000_000 // n)  # bounded memory for long lists
    for lo in range(0, n_samples, chunk):
        hi = min(n_samples, lo + chunk)
        means[lo:hi] = x[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    alpha = (1 - confidence) / 2
    if np.isfinite(means).all():
        low, high = np.quantile(means, [alpha, 1 - alpha])
    else:  # inf - inf would make interpolated quantiles NaN
        low, high = np.quantile(means, alpha, method="lower"), np.quantile(means, 1 - alpha, method="higher")
    return MeanCI(mean, float(low), float(high), n)
