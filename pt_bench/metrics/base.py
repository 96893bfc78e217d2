"""The metric contract: one :class:`Metric` subclass per registry name, each with a functional twin.

A metric is either video-level (``score_video(pred, ref)`` gives one number per video pair; ``evaluate``
gives it with extra columns such as SyncNet's offset) or set-level (FID: ``features`` per video, cacheable
under :meth:`Metric.cache_key`, then ``score_set`` over all videos of a method). Pred and ref may differ in
length by a frame or two (encoders): every paired metric uses the first ``min(T_pred, T_ref)`` frames.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import numpy as np

from pt_data.weights import WeightsRegistry, sha256_file

from pt_bench.video import BenchVideo

#: Bumped when any metric's protocol changes in a way that changes numbers (invalidates feature caches).
PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class MetricResult:
    """One video pair's score and the metric's extra columns (e.g. ``{"lse_offset": 2.0}``)."""

    value: float
    extras: Mapping[str, float] = field(default_factory=dict)


class Metric:
    """Base class; see the module doc. Subclasses set the class attributes and implement their level's methods.

    ``random_weights=True`` replaces the pretrained files by seeded random initialisations (tests and smoke
    runs only): ``real_weights`` is then False and every number must be labelled "random weights: not
    comparable". Metrics whose networks are all bundled in wheels (MediaPipe) or that have none ignore it
    (``real_weights`` stays True).
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool]
    level: ClassVar[str] = "video"
    needs_reference: ClassVar[bool] = True
    region: ClassVar[str] = ""
    weights: ClassVar[tuple[str, ...]] = ()
    extra_columns: ClassVar[tuple[str, ...]] = ()
    protocol: str = ""

    def __init__(self, *, device: str = "cpu", weights_dir: str | os.PathLike | None = None,
                 random_weights: bool = False, seed: int = 0) -> None:
        self.device = str(device)
        self.registry = WeightsRegistry(weights_dir)
        self.random_weights = bool(random_weights and self.downloadable_weights())
        self.real_weights = not self.random_weights
        self.seed = seed
        self._weights_identity: str | None = None

    # ------------------------------------------------------------------ video level
    def evaluate(self, pred: BenchVideo, ref: BenchVideo) -> MetricResult:
        """The pair's score with this metric's ``extra_columns`` (video-level metrics).

        Subclasses implement this (or only :meth:`score_video` when they have no extra columns).
        """
        self._require_video_level()
        if type(self).score_video is Metric.score_video:
            raise NotImplementedError(f"{type(self).__name__} implements neither evaluate() nor score_video()")
        return MetricResult(float(self.score_video(pred, ref)))

    def score_video(self, pred: BenchVideo, ref: BenchVideo) -> float:
        """One number for the pair (video-level metrics); ``ref`` is unused when ``needs_reference`` is False."""
        self._require_video_level()
        return self.evaluate(pred, ref).value

    def _require_video_level(self) -> None:
        if self.level != "video":
            raise TypeError(f"{self.name} is a {self.level}-level metric: use features() and score_set()")

    # ------------------------------------------------------------------ set level
    def features(self, video: BenchVideo, ref: BenchVideo | None) -> np.ndarray:
        """Per-video features for a set-level metric (cache them under :meth:`cache_key`)."""
        raise TypeError(f"{self.name} is a {self.level}-level metric: use score_video()")

    def score_set(self, pred_feats: list[np.ndarray], ref_feats: list[np.ndarray]) -> float:
        """One number for a method from all its videos' features and the references' features."""
        raise TypeError(f"{self.name} is a {self.level}-level metric: use score_video()")

    # ------------------------------------------------------------------ identity
    def downloadable_weights(self) -> tuple[str, ...]:
        """The registry names among ``weights`` that are files to place (not shipped inside a wheel)."""
        return tuple(w for w in self.weights if not self.registry.spec(w).bundled)

    def weights_identity(self) -> str:
        """What the numbers depend on besides the protocol: file names, sizes and SHA-256 prefixes."""
        if self._weights_identity is None:
            parts = []
            for wname in self.weights:
                spec = self.registry.spec(wname)
                if spec.bundled:
                    parts.append(f"{wname}={spec.bundled}=={_package_version(spec.bundled)}")
                elif self.random_weights:
                    parts.append(f"{wname}=random(seed={self.seed})")
                else:
                    path = self.registry.path(wname)
                    parts.append(f"{wname}={path.name}:{path.stat().st_size}:{sha256_file(path)[:12]}")
            self._weights_identity = ",".join(parts) or "none"
        return self._weights_identity

    def cache_key(self) -> str:
        """``name/v<protocol version>/<weights identity>``: the key under which per-video features may be cached."""
        return f"{self.name}/v{PROTOCOL_VERSION}/{self.weights_identity()}"

    def describe(self) -> dict[str, object]:
        """The metric's flags and protocol line, for leaderboard footnotes."""
        return {"name": self.name, "higher_is_better": self.higher_is_better, "level": self.level,
                "needs_reference": self.needs_reference, "region": self.region, "weights": list(self.weights),
                "real_weights": self.real_weights, "protocol": self.protocol,
                "extra_columns": list(self.extra_columns)}

    def __repr__(self) -> str:
        flag = "" if self.real_weights else ", random weights: not comparable"
        return f"{type(self).__name__}(name={self.name!r}, device={self.device!r}{flag})"


def paired_length(pred: BenchVideo, ref: BenchVideo) -> int:
    """``min(T_pred, T_ref)``: the frames a paired metric scores."""
    return min(pred.num_frames, ref.num_frames)


def _package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in (package, package.replace("_", "-")):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"
