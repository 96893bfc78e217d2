"""The benchmark runner: score every method's videos against the reference videos and write leaderboards.

``run_bench(BenchConfig(...))``:

1. lists the reference folder and each method folder and matches videos by file stem (a missing or extra
   file is an error listing them all, or a warning and a skip with ``allow_missing``);
2. checks frame rates and frame counts of every pair before any metric runs (from packet timestamps, no
   decoding), and again on the decoded videos: a frame-rate difference or more than ``frame_tolerance``
   frames apart is an error naming the files and the fix, unless ``resample`` retimes the method's video to
   the reference's rate. A variable-frame-rate file is placed on the constant grid of its stream's base rate
   by timestamp (so a VFR reference and its constant-rate re-encode compare frame by frame);
3. builds the baselines (``pt_bench.baselines``) from each reference video;
4. computes every video-level metric per pair and every set-level metric's per-video features (a video
   where a metric finds no face scores NaN, with a warning, and is left out of that metric's mean), caching
   scores, features and landmarks on disk (keyed by file content fingerprints, the metric's ``cache_key()``
   and the run options), so a second run over the same files decodes nothing and computes nothing;
5. summarises per method (bootstrap CIs, ``pt_bench.stats``) and writes leaderboard.csv/.md/.html,
   per_video.csv and bench.json (``pt_bench.leaderboard``);
6. when ``stylesim`` is among the metrics, saves the speaking-style vector of every reference video (kind
   "original") and every method video (kind "dubbed"; baselines are left out) to
   ``style_embeddings.npz`` (:func:`pt_bench.metrics.stylesim.save_style_embeddings`), cached like the other
   features, which ``pt report`` draws as the paper's t-SNE (Figure 5). A video's speaker is
   ``speaker_map[reference stem]``, or the reference stem itself.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

import av
import numpy as np
import pandas as pd
from tqdm import tqdm

from pt_bench.baselines import BASELINE_VERSION, BaselineSpec, make_baseline, parse_baselines
from pt_bench.leaderboard import MetricInfo, metric_infos_json, summarise, weights_note, write_leaderboards
from pt_bench.video import BenchVideo, NoFaceError, load_bench_video
from pt_data.video_io import MediaError
from pt_data.weights import MissingWeightsError, WeightsRegistry

log = logging.getLogger(__name__)

#: File name endings taken as videos in the reference and method folders.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
#: Bumped whenever the runner's cached values change meaning.
CACHE_VERSION = 1
#: Frame rates closer than this are the same rate.
FPS_TOLERANCE = 0.01
#: Key of a warning stored with a cached score record.
_WARNING = "_warning"
#: Bytes read from each end of a file for its content fingerprint.
FINGERPRINT_BYTES = 1 << 20
#: The metric whose per-video features are the speaking-style vectors of the t-SNE figure.
STYLE_METRIC = "stylesim"


class BenchError(Exception):
    """A benchmark cannot run as configured; the message names the files and the fix."""


@dataclass
class BenchConfig:
    """Everything one benchmark run depends on."""

    reference: str  # folder of reference (ground-truth) videos
    methods: dict[str, str] = field(default_factory=dict)  # method name -> folder of its videos
    out: str = "outputs/bench"
    metrics: list[str] | None = None  # None: every registered metric whose weights are present
    device: str = "cpu"
    weights_dir: str | None = None  # default: $PT_WEIGHTS_DIR
    random_weights: bool = False  # smoke runs only: every number is marked "random weights: not comparable"
    bootstrap_samples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    baselines: list[str] = field(default_factory=list)  # e.g. ["static", "frozen_mouth", "shift:5"]
    resample: bool = False  # retime a method's video to the reference's frame rate instead of failing
    max_frames: int | None = None  # score only the first N frames of every video
    frame_tolerance: int = 2  # frame-count difference accepted (encoders may drop a frame or two)
    cache_dir: str | None = None  # default: OUT/cache
    use_cache: bool = True
    allow_missing: bool = False  # warn and skip videos a method lacks (and ignore extra ones)
    show_published: bool = False  # add the paper's published rows (clearly marked) to the Markdown/HTML
    speaker_map: dict[str, str] | None = None  # reference stem -> speaker, for the style t-SNE (default: the stem)
    progress: bool = True
    title: str = "Leaderboard"


@dataclass
class MetricTiming:
    """Time spent in one metric and the frames it saw (cache hits excluded)."""

    seconds: float = 0.0
    frames: int = 0
    calls: int = 0

    def add(self, seconds: float, frames: int) -> None:
        self.seconds += seconds
        self.frames += frames
        self.calls += 1

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class BenchResult:
    """What a run produced: the tables (also written to ``out``), the metrics, and how the run went."""

    out: Path
    metrics: list[MetricInfo]
    leaderboard: pd.DataFrame
    per_video: pd.DataFrame
    set_scores: dict[str, dict[str, float]]
    outputs: dict[str, Path]
    skipped_metrics: dict[str, str]
    warnings: list[str]
    cache_hits: int
    cache_misses: int
    seconds: float
    timings: dict[str, MetricTiming]

    @property
    def markdown(self) -> str:
        return self.outputs["leaderboard.md"].read_text("utf-8")


# ----------------------------------------------------------------------------------------------- files

def list_videos(folder: str | Path) -> dict[str, Path]:
    """``{file stem: path}`` of the videos directly inside ``folder`` (sorted by stem)."""
    d = Path(folder)
    if not d.is_dir():
        raise BenchError(f"{d}: not a folder of videos")
    found: dict[str, list[Path]] = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            found.setdefault(p.stem, []).append(p)
    dup = {k: v for k, v in found.items() if len(v) > 1}
    if dup:
        raise BenchError(f"{d}: several videos share a name: "
                         + "; ".join(", ".join(p.name for p in v) for v in dup.values())
                         + ". Videos are matched by file stem: keep one file per name.")
    return {k: v[0] for k, v in found.items()}


def match_videos(reference: Mapping[str, Path], methods: Mapping[str, Mapping[str, Path]], *,
                 allow_missing: bool = False) -> tuple[dict[str, list[str]], list[str]]:
    """``({method: reference video names it has}, warnings)``.

    Every method must have exactly the reference's names; otherwise a :class:`BenchError` lists every
    missing and extra file of every method, unless ``allow_missing`` (then they are skipped with a warning).
    """
    if not reference:
        raise BenchError("the reference folder holds no videos (" + ", ".join(VIDEO_EXTENSIONS) + ")")
    problems, warnings, plan = [], [], {}
    for method, files in methods.items():
        missing = sorted(set(reference) - set(files))
        extra = sorted(set(files) - set(reference))
        plan[method] = [n for n in reference if n in files]
        if missing or extra:
            msg = f"method {method!r}:"
            if missing:
                msg += f" missing {len(missing)} of {len(reference)} reference videos: {', '.join(missing)};"
            if extra:
                msg += f" {len(extra)} videos not in the reference: {', '.join(extra)};"
            (warnings if allow_missing else problems).append(msg.rstrip(";") + (" (skipped)" if allow_missing else ""))
        if not plan[method]:
            problems.append(f"method {method!r}: none of its videos matches a reference video")
    if problems:
        raise BenchError("videos do not match the reference by file name:\n  " + "\n  ".join(problems)
                         + "\nEach method folder needs one video per reference video with the same file stem; "
                           "pass --allow-missing to skip the missing ones and ignore extra ones.")
    return plan, warnings


def file_fingerprint(path: str | Path, chunk: int = FINGERPRINT_BYTES) -> str:
    """A content fingerprint: SHA-1 of the size and the first and last ``chunk`` bytes (path-independent)."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha1(str(size).encode())
    with open(p, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            h.update(f.read(chunk))
    return h.hexdigest()


class DiskCache:
    """Small values (JSON) and arrays (.npy) under ``root``, by key; ``root=None`` caches nothing."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha1(json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()

    def _path(self, kind: str, key: str, ext: str) -> Path:
        assert self.root is not None
        return self.root / kind / key[:2] / f"{key}{ext}"

    def _write(self, path: Path, write: Callable[[Path], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        write(tmp)
        os.replace(tmp, path)

    def get_json(self, kind: str, key: str):
        if self.root is None:
            return None
        p = self._path(kind, key, ".json")
        if not p.is_file():
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(p.read_text("utf-8"))

    def put_json(self, kind: str, key: str, value) -> None:
        if self.root is not None:
            self._write(self._path(kind, key, ".json"), lambda t: t.write_text(json.dumps(value), "utf-8"))

    def get_array(self, kind: str, key: str) -> np.ndarray | None:
        if self.root is None:
            return None
        p = self._path(kind, key, ".npy")
        if not p.is_file():
            self.misses += 1
            return None
        self.hits += 1
        return np.load(p, allow_pickle=False)

    def has_array(self, kind: str, key: str) -> bool:
        return self.root is not None and self._path(kind, key, ".npy").is_file()

    def put_array(self, kind: str, key: str, value: np.ndarray) -> None:
        if self.root is not None:
            def write(t: Path) -> None:
                with open(t, "wb") as f:
                    np.save(f, np.asarray(value), allow_pickle=False)
            self._write(self._path(kind, key, ".npy"), write)


# ------------------------------------------------------------------------------------- frame rates

def resampled_count(num_frames: int, fps_from: float, fps_to: float) -> int:
    """How many frames a video of ``num_frames`` at ``fps_from`` has once retimed to ``fps_to``."""
    return max(1, int(round(num_frames * fps_to / fps_from)))


@dataclass(frozen=True)
class VideoMeta:
    """Frame count and rate of a (possibly truncated) video as the runner scores it.

    ``vfr``: the file has a variable frame rate; it is then scored on the constant ``fps`` grid of its
    stream's base rate, each grid instant showing the frame on screen at that time (by timestamp).
    """

    num_frames: int | None
    fps: float
    vfr: bool = False


def pair_problem(video: str, method: str, ref: VideoMeta, pred: VideoMeta, *, tolerance: int, resample: bool
                 ) -> str | None:
    """Why the method's video cannot be scored against the reference (None when it can)."""
    fps_differs = abs(ref.fps - pred.fps) > FPS_TOLERANCE
    if fps_differs and not resample:
        return (f"{method}/{video}: {pred.fps:.3f} fps but the reference has {ref.fps:.3f} fps "
                "(re-encode it at the reference's rate, or pass --resample)")
    if ref.num_frames is None or pred.num_frames is None:
        return None
    n = resampled_count(pred.num_frames, pred.fps, ref.fps) if fps_differs else pred.num_frames
    if abs(n - ref.num_frames) > tolerance:
        what = f"{n} frames (after resampling to {ref.fps:.3f} fps)" if fps_differs else f"{n} frames"
        return (f"{method}/{video}: {what} but the reference has {ref.num_frames} "
                f"(more than {tolerance} apart; cut the videos to the same length or score the first N frames "
                "with --max-frames N)")
    return None


def probe_timeline(path: str | Path, max_frames: int | None = None) -> VideoMeta:
    """How the runner will decode ``path``: frame count and rate from the packet timestamps (no decoding).

    A constant-rate file keeps its frames and average rate (as :func:`pt_bench.video.load_bench_video`
    decodes it). A variable-rate file (a frame interval below half or above 1.5 times the median) is
    placed on the grid of its stream's base rate (``r_frame_rate``, the rate its timestamps are multiples
    of), which is how a CFR re-encode of it (ffmpeg's default for MP4) is laid out.
    """
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise MediaError(f"{path}: no video stream")
            s = c.streams.video[0]
            tb = float(s.time_base)
            avg = float(s.average_rate or s.guessed_rate or s.base_rate or 0)
            base = float(s.guessed_rate or s.base_rate or s.average_rate or 0)
            pts = np.sort(np.array([pk.pts for pk in c.demux(s) if pk.pts is not None and pk.size], np.float64)) * tb
    except av.FFmpegError as e:
        raise MediaError(f"{path}: cannot read the video's timestamps ({e})") from e
    if len(pts) == 0 or avg <= 0:
        raise MediaError(f"{path}: no video frames with timestamps")
    dt = np.diff(pts)
    med = float(np.median(dt)) if len(dt) else 0.0
    vfr = bool(len(dt) and med > 0 and (dt.max() > 1.5 * med or dt.min() < 0.5 * med) and base > 0)
    if vfr:
        n = int(np.ceil((pts[-1] - pts[0] + dt[-1]) * base - 1e-6))  # the last frame lasts as the one before
        fps = base
    else:
        n, fps = len(pts), avg
    return VideoMeta(n if max_frames is None else min(n, max_frames), fps, vfr)


def landmark_cache_key(fingerprint: str, max_frames: int | None, fps: float, num_frames: int) -> str:
    """The disk-cache key of a file's landmarks: they depend on its content (:func:`file_fingerprint`) and how
    it was decoded (first ``max_frames`` frames, at ``fps``, giving ``num_frames``)."""
    return DiskCache.key("landmarks", fingerprint, max_frames, round(float(fps), 6), int(num_frames))


def _meta(video: BenchVideo) -> VideoMeta:
    return VideoMeta(len(video.frames), float(video.fps))


# ------------------------------------------------------------------------------------------ metrics

def build_metrics(cfg: BenchConfig) -> tuple[list, dict[str, str]]:
    """``(metrics, skipped)``: the configured metrics, built; ``skipped`` maps a metric left out to why.

    Metrics named in ``cfg.metrics`` must load (a missing pretrained file is a :class:`BenchError` that says
    which file and where to get it); with ``cfg.metrics=None`` every registered metric is tried and those
    whose weights are missing are skipped and named in the leaderboard's ``weights`` column.
    """
    from pt_bench.metrics import METRICS, create_metric

    names = list(METRICS) if cfg.metrics is None else list(dict.fromkeys(cfg.metrics))
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise BenchError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(METRICS)}")
    metrics, skipped = [], {}
    for n in names:
        try:
            metrics.append(create_metric(n, device=cfg.device, weights_dir=cfg.weights_dir,
                                         random_weights=cfg.random_weights))
        except MissingWeightsError as e:
            if cfg.metrics is not None:
                raise BenchError(f"metric {n!r} cannot load its pretrained weights: {e}\n(drop it from "
                                 "--metrics, or pass --random-weights for a smoke run whose numbers are not "
                                 "comparable)") from e
            skipped[n] = ", ".join(_missing_files(METRICS[n], cfg.weights_dir)) or "weights missing"
            log.warning("metric %s skipped: %s", n, e)
    if not metrics:
        raise BenchError("no metric could be built: " + "; ".join(f"{k}: {v} missing" for k, v in skipped.items()))
    return metrics, skipped


def _missing_files(metric_cls, weights_dir: str | None) -> list[str]:
    """Registry names of the pretrained files ``metric_cls`` needs that are not under the weights folder."""
    reg = WeightsRegistry(weights_dir)
    missing = []
    for w in getattr(metric_cls, "weights", ()):
        try:
            if w:
                reg.path(w)
        except (MissingWeightsError, KeyError):
            missing.append(w)
    return missing


# ---------------------------------------------------------------------------------------------- run

@dataclass
class _Source:
    """Where one method's video of one reference video comes from: a file, or a baseline of the reference."""

    method: str
    file: Path | None = None
    baseline: BaselineSpec | None = None


class _PairScorer:
    """Scores (method, video) pairs through the disk cache; loads videos only when something is missing.

    ``style``: the StyleSim metric when the run saves style embeddings: its ``features`` (one style vector per
    video) are computed for every method video and reference video, and cached like set-level features.
    """

    def __init__(self, cfg: BenchConfig, metrics: Sequence, cache: DiskCache, style=None) -> None:
        self.cfg, self.metrics, self.cache, self.style = cfg, list(metrics), cache, style
        self.timings = {m.name: MetricTiming() for m in self.metrics}
        self._fingerprints: dict[Path, str] = {}
        self._timelines: dict[Path, VideoMeta] = {}
        self._ref: BenchVideo | None = None
        self._ref_name: str | None = None
        self.warnings: list[str] = []

    # identities -----------------------------------------------------------------------------------
    def fingerprint(self, path: Path) -> str:
        if path not in self._fingerprints:
            self._fingerprints[path] = file_fingerprint(path)
        return self._fingerprints[path]

    def source_id(self, src: _Source, ref_file: Path) -> str:
        if src.file is not None:
            return f"file:{self.fingerprint(src.file)}"
        assert src.baseline is not None
        return f"baseline:{src.baseline.name}:v{BASELINE_VERSION}:{self.fingerprint(ref_file)}"

    def _options(self) -> list:
        return [self.cfg.max_frames, self.cfg.resample]

    # videos ---------------------------------------------------------------------------------------
    def timeline(self, path: Path) -> VideoMeta:
        """:func:`probe_timeline` of ``path`` (once per run)."""
        if path not in self._timelines:
            self._timelines[path] = probe_timeline(path, self.cfg.max_frames)
        return self._timelines[path]

    def reference(self, name: str, path: Path) -> BenchVideo:
        if self._ref_name != name:
            self._ref = None  # free the previous reference's frames before decoding the next
            t = self.timeline(path)
            self._ref = self._load_file(path, t.fps if t.vfr else None)
            self._ref_name = name
        assert self._ref is not None
        return self._ref

    def _landmark_key(self, path: Path, video: BenchVideo) -> str:
        return landmark_cache_key(self.fingerprint(path), self.cfg.max_frames, video.fps, video.num_frames)

    def _load_file(self, path: Path, resample_fps: float | None = None) -> BenchVideo:
        video = load_bench_video(path, max_frames=self.cfg.max_frames, resample_fps=resample_fps)
        cached = self.cache.get_array("landmarks", self._landmark_key(path, video))
        if cached is not None:
            video.set_landmarks(cached)
        return video

    def _save_landmarks(self, video: BenchVideo, path: Path | None) -> None:
        lm = video.cached_landmarks()
        if path is None or lm is None or self.cache.root is None:
            return
        key = self._landmark_key(path, video)
        if not self.cache.has_array("landmarks", key):
            self.cache.put_array("landmarks", key, lm)

    def _pred(self, video: str, ref: BenchVideo, src: _Source) -> BenchVideo:
        """The method's video of this pair, checked against the reference."""
        if src.baseline is not None:
            pred = make_baseline(src.baseline, ref)
            lm = ref.cached_landmarks()
            if src.baseline.kind in ("reference", "shift") and lm is not None:  # same frames: same landmarks
                pred.set_landmarks(lm)
            return pred
        assert src.file is not None
        if ref.path is not None and self.fingerprint(src.file) == self.fingerprint(ref.path):
            return ref  # the same bytes as the reference: share its decoded frames and memo
        native = self.timeline(src.file)
        resample_fps = native.fps if native.vfr else None
        if self.cfg.resample and abs(native.fps - ref.fps) > FPS_TOLERANCE:
            resample_fps = float(ref.fps)
        pred = self._load_file(src.file, resample_fps)
        problem = pair_problem(video, src.method, _meta(ref), _meta(pred), tolerance=self.cfg.frame_tolerance,
                               resample=self.cfg.resample)
        if problem:
            raise BenchError(f"cannot score {src.file} against the reference: {problem}")
        return pred

    # scoring --------------------------------------------------------------------------------------
    def _take(self, got: dict, scores: dict[str, float]) -> None:
        """Move a (cached) score record into ``scores``; its warning, if any, into the run's warnings."""
        got = dict(got)
        if _WARNING in got:
            self.warnings.append(got.pop(_WARNING))
        scores.update(got)

    def _embedding_key(self, source_id: str) -> str:
        assert self.style is not None
        return DiskCache.key("style-embedding", self.style.cache_key(), source_id, *self._options())

    def _embed(self, video: BenchVideo, key: str) -> np.ndarray:
        """The style vector of ``video`` (cached); a zero-length array when it has no face."""
        assert self.style is not None
        t0 = time.perf_counter()
        try:
            emb = np.asarray(self.style.features(video), dtype=np.float32)
        except NoFaceError:
            emb = np.zeros(0, np.float32)
        self.timings[self.style.name].add(time.perf_counter() - t0, 0)  # frames were counted by the score
        self.cache.put_array("features", key, emb)
        return emb

    def score(self, video: str, ref_file: Path, src: _Source
              ) -> tuple[dict[str, float], dict[str, np.ndarray], np.ndarray | None]:
        """``(video-level scores and their extra columns, set-level features, style embedding)`` of one pair,
        cached. The style embedding is None unless the run saves them and ``src`` is a method's file; it is
        empty when the video has no face."""
        pred_id, ref_id = self.source_id(src, ref_file), f"file:{self.fingerprint(ref_file)}"
        keys = {m.name: DiskCache.key("score" if m.level == "video" else "features", m.cache_key(), pred_id,
                                      ref_id, *self._options()) for m in self.metrics}
        emb_key = self._embedding_key(pred_id) if self.style is not None and src.file is not None else None
        emb = self.cache.get_array("features", emb_key) if emb_key is not None else None
        scores: dict[str, float] = {}
        feats: dict[str, np.ndarray] = {}
        todo = []
        for m in self.metrics:
            if m.level == "video":
                got = self.cache.get_json("scores", keys[m.name])
                if got is not None:
                    self._take(got, scores)
                    continue
            else:
                got = self.cache.get_array("features", keys[m.name])
                if got is not None:
                    feats[m.name] = got
                    continue
            todo.append(m)
        if not todo and (emb_key is None or emb is not None):
            return scores, feats, emb
        ref = self.reference(video, ref_file)
        pred = self._pred(video, ref, src)
        for m in todo:
            t0 = time.perf_counter()
            if m.level == "video":
                try:
                    got = _evaluate(m, pred, ref)
                except NoFaceError as e:
                    got = {m.name: float("nan"),
                           _WARNING: f"{m.name} of {src.method}/{video}: {e} (scored NaN, left out of the mean)"}
                self.cache.put_json("scores", keys[m.name], got)
                self._take(got, scores)
            else:
                f = np.asarray(m.features(pred, ref))
                feats[m.name] = f
                self.cache.put_array("features", keys[m.name], f)
            self.timings[m.name].add(time.perf_counter() - t0, min(pred.num_frames, ref.num_frames))
        if emb_key is not None and emb is None:
            emb = self._embed(pred, emb_key)
        self._save_landmarks(ref, ref_file)
        self._save_landmarks(pred, src.file)
        return scores, feats, emb

    def reference_features(self, video: str, ref_file: Path, metric) -> np.ndarray:
        """Set-level features of the reference video itself (the real distribution FID compares with)."""
        ref_id = f"file:{self.fingerprint(ref_file)}"
        key = DiskCache.key("features", metric.cache_key(), ref_id, ref_id, *self._options())
        got = self.cache.get_array("features", key)
        if got is not None:
            return got
        ref = self.reference(video, ref_file)
        t0 = time.perf_counter()
        f = np.asarray(metric.features(ref, ref))
        self.timings[metric.name].add(time.perf_counter() - t0, ref.num_frames)
        self.cache.put_array("features", key, f)
        self._save_landmarks(ref, ref_file)
        return f

    def reference_embedding(self, video: str, ref_file: Path) -> np.ndarray:
        """The style vector of the reference video itself (empty when it has no face), cached."""
        key = self._embedding_key(f"file:{self.fingerprint(ref_file)}")
        got = self.cache.get_array("features", key)
        if got is not None:
            return got
        ref = self.reference(video, ref_file)
        emb = self._embed(ref, key)
        self._save_landmarks(ref, ref_file)
        return emb


def _evaluate(metric, pred: BenchVideo, ref: BenchVideo) -> dict[str, float]:
    """``{metric name: score, extra column: value ...}`` of a video-level metric on one pair."""
    if getattr(metric, "extra_columns", ()):
        res = metric.evaluate(pred, ref)
        return {metric.name: float(res.value), **{k: float(v) for k, v in res.extras.items()}}
    return {metric.name: float(metric.score_video(pred, ref))}


def _sources(cfg: BenchConfig, plan: Mapping[str, list[str]], method_files: Mapping[str, Mapping[str, Path]],
             baselines: Sequence[BaselineSpec], videos: Sequence[str]) -> dict[str, dict[str, _Source]]:
    """``{video: {method: source}}`` in leaderboard order (methods as given, then baselines)."""
    out: dict[str, dict[str, _Source]] = {v: {} for v in videos}
    for method, names in plan.items():
        for v in names:
            out[v][method] = _Source(method, file=method_files[method][v])
    for b in baselines:
        for v in videos:
            out[v][b.name] = _Source(b.name, baseline=b)
    return out


def precheck_pairs(ref_files: Mapping[str, Path], sources: Mapping[str, Mapping[str, _Source]], cfg: BenchConfig,
                   meta_of: Callable[[Path], VideoMeta]) -> None:
    """Check frame rates and counts of every file pair before scoring; one error lists every problem."""
    problems = []
    for video, by_method in sources.items():
        ref = meta_of(ref_files[video])
        for method, src in by_method.items():
            if src.file is None:
                continue
            p = pair_problem(video, method, ref, meta_of(src.file), tolerance=cfg.frame_tolerance,
                             resample=cfg.resample)
            if p:
                problems.append(p)
    if problems:
        raise BenchError("frame rates or frame counts do not match the reference:\n  " + "\n  ".join(problems))


def check_speaker_map(speaker_map: object) -> dict[str, str] | None:
    """``speaker_map`` as ``{reference stem: speaker}`` (None stays None); a :class:`BenchError` when it is not a
    mapping of strings to strings."""
    if speaker_map is None:
        return None
    if not isinstance(speaker_map, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in speaker_map.items()):
        raise BenchError("the speaker map must be a JSON object {video stem: speaker name} with non-empty string "
                         f"values, got {str(speaker_map)[:200]}")
    return dict(speaker_map)


def resolve_speakers(videos: Sequence[str], speaker_map: Mapping[str, str] | None
                     ) -> tuple[dict[str, str], list[str]]:
    """``({reference stem: speaker}, warnings)``: the map's speaker, else the stem itself (one speaker per
    reference video). Stems the map lacks and names it holds that are no reference video are warned about."""
    if speaker_map is None:
        return {v: v for v in videos}, []
    warnings = []
    lacking = [v for v in videos if v not in speaker_map]
    if lacking:
        warnings.append(f"speaker map: no speaker for {', '.join(lacking)} (each is its own speaker in the t-SNE)")
    unknown = sorted(set(speaker_map) - set(videos))
    if unknown:
        warnings.append(f"speaker map: {', '.join(unknown)} are not reference videos of this run (ignored)")
    return {v: speaker_map.get(v, v) for v in videos}, warnings


@dataclass(frozen=True)
class _StyleRow:
    """One video of the style t-SNE."""

    name: str  # the reference stem (original) or "method/stem" (dubbed)
    speaker: str
    kind: str  # "original" or "dubbed"
    embedding: np.ndarray  # (D,); empty when the video has no face


def write_style_embeddings(out: Path, style, rows: Sequence[_StyleRow], warnings: list[str]) -> Path | None:
    """Save the style vectors of ``rows`` to ``out/STYLE_EMBEDDINGS_FILE`` for ``pt report``'s t-SNE.

    ``style`` is the StyleSim metric (None: this run computed no style vectors, and an earlier run's file in
    ``out`` is removed so the folder describes this run only). Videos without a face are left out with a
    warning appended to ``warnings``. Returns the path written, or None.
    """
    from pt_bench.figures import STYLE_EMBEDDINGS_FILE  # noqa: PLC0415 - matplotlib
    from pt_bench.metrics.stylesim import save_style_embeddings  # noqa: PLC0415

    path = out / STYLE_EMBEDDINGS_FILE
    kept = [r for r in rows if r.embedding.size]
    no_face = [r.name for r in rows if not r.embedding.size]
    if no_face:
        warnings.append(f"style t-SNE: no face in {', '.join(no_face)} (left out of {STYLE_EMBEDDINGS_FILE})")
    if style is None or not kept:
        if path.is_file():
            path.unlink()
            log.info("removed %s of an earlier run (this run computed no style vectors)", path)
        return None
    return save_style_embeddings(path, [r.embedding for r in kept], [r.speaker for r in kept],
                                 [r.kind for r in kept], names=[r.name for r in kept],
                                 real_weights=bool(style.real_weights))


def run_bench(cfg: BenchConfig, *, metrics: Sequence | None = None) -> BenchResult:
    """Run the benchmark of ``cfg`` and write its outputs into ``cfg.out``.

    ``metrics`` (optional) replaces the metrics built from ``cfg.metrics`` by ready ``Metric`` objects
    (custom metrics, or tests).
    """
    t_start = time.perf_counter()
    out = Path(cfg.out)
    speaker_map = check_speaker_map(cfg.speaker_map)
    baselines = parse_baselines(cfg.baselines)
    clash = sorted(set(cfg.methods) & {b.name for b in baselines})
    if clash:
        raise BenchError(f"method name(s) {', '.join(clash)} are also baseline names; rename the method(s)")
    if not cfg.methods and not baselines:
        raise BenchError("nothing to score: give at least one --method NAME=DIR or --baselines")
    ref_files = list_videos(cfg.reference)
    method_files = {name: list_videos(d) for name, d in cfg.methods.items()}
    plan, warnings = match_videos(ref_files, method_files, allow_missing=cfg.allow_missing)
    videos = list(ref_files) if baselines else [v for v in ref_files if any(v in n for n in plan.values())]
    sources = _sources(cfg, plan, method_files, baselines, videos)

    skipped: dict[str, str] = {}
    if metrics is None:
        metrics, skipped = build_metrics(cfg)
    metrics = list(metrics)
    infos = [MetricInfo.from_metric(m) for m in metrics]
    cache = DiskCache((cfg.cache_dir or out / "cache") if cfg.use_cache else None)
    # style vectors for the t-SNE: of the method videos (not the baselines) and their references
    style = next((m for m in metrics if m.name == STYLE_METRIC), None) if cfg.methods else None
    scorer = _PairScorer(cfg, metrics, cache, style=style)
    speakers, speaker_warnings = resolve_speakers(videos, speaker_map)
    if style is not None:
        warnings += speaker_warnings

    precheck_pairs(ref_files, sources, cfg, scorer.timeline)
    warnings += [f"{v}: variable frame rate; scored at {scorer.timeline(p).fps:.3f} fps by timestamp (with the "
                 "method videos on the same grid)" for v, p in ref_files.items()
                 if v in sources and scorer.timeline(p).vfr]

    rows: list[dict] = []
    set_metrics = [m for m in metrics if m.level == "set"]
    pred_feats: dict[str, dict[str, list[np.ndarray]]] = {}
    ref_feats: dict[str, dict[str, np.ndarray]] = {m.name: {} for m in set_metrics}
    style_rows: list[_StyleRow] = []
    total = sum(len(s) for s in sources.values())
    with tqdm(total=total, desc="bench", unit="pair", disable=not cfg.progress) as bar:
        for video, by_method in sources.items():
            for m in set_metrics:
                ref_feats[m.name][video] = scorer.reference_features(video, ref_files[video], m)
            if style is not None and any(src.file is not None for src in by_method.values()):
                style_rows.append(_StyleRow(video, speakers[video], "original",
                                            scorer.reference_embedding(video, ref_files[video])))
            for method, src in by_method.items():
                bar.set_postfix_str(f"{method}/{video}")
                scores, feats, emb = scorer.score(video, ref_files[video], src)
                rows.append({"method": method, "video": video, **scores})
                for name, f in feats.items():
                    pred_feats.setdefault(method, {}).setdefault(name, []).append(f)
                if emb is not None:
                    style_rows.append(_StyleRow(f"{method}/{video}", speakers[video], "dubbed", emb))
                bar.update()

    warnings += scorer.warnings
    style_file = write_style_embeddings(out, style, style_rows, warnings)
    kinds = {m: "method" for m in cfg.methods} | {b.name: "baseline" for b in baselines}
    set_scores: dict[str, dict[str, float]] = {}
    for method in kinds:
        for m in set_metrics:
            have = [v for v in videos if method in sources[v]]
            t0 = time.perf_counter()
            set_scores.setdefault(method, {})[m.name] = float(
                m.score_set(pred_feats[method][m.name], [ref_feats[m.name][v] for v in have]))
            scorer.timings[m.name].seconds += time.perf_counter() - t0  # one call per method, no frames

    video_cols = [m.name for m in metrics if m.level == "video"]
    extra_cols = list(dict.fromkeys(c for m in metrics if m.level == "video" for c in getattr(m, "extra_columns", ())))
    per_video = pd.DataFrame(rows, columns=["method", "video"] + video_cols + extra_cols)
    board = summarise(per_video, set_scores, infos, kinds, weights=weights_note(infos, skipped),
                      n_samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=cfg.seed)
    outputs = write_leaderboards(out, board, per_video, infos, n_samples=cfg.bootstrap_samples,
                                 confidence=cfg.confidence, show_published=cfg.show_published, title=cfg.title,
                                 notes=warnings)
    if style_file is not None:
        outputs[style_file.name] = style_file
    seconds = time.perf_counter() - t_start
    meta = {
        "version": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(cfg), "metrics": metric_infos_json(infos), "kinds": kinds, "videos": videos,
        "skipped_metrics": skipped, "warnings": warnings, "set_scores": set_scores,
        "style_embeddings": style_file.name if style_file is not None else None,
        "cache": {"dir": str(cache.root) if cache.root else None, "hits": cache.hits, "misses": cache.misses},
        "seconds": seconds,
        "timings": {k: {**asdict(v), "frames_per_s": v.frames_per_s} for k, v in scorer.timings.items()},
    }
    outputs["bench.json"] = out / "bench.json"
    outputs["bench.json"].write_text(json.dumps(meta, indent=2, default=str, allow_nan=True), "utf-8")
    for w in warnings:
        log.warning(w)
    return BenchResult(out, infos, board, per_video, set_scores, outputs, skipped, warnings, cache.hits, cache.misses,
                       seconds, scorer.timings)
