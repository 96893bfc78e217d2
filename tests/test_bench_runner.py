"""pt bench: matching, frame checks, bootstrap CIs, leaderboard files, baselines, caching, figures, CLI."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pt_bench import runner as runner_mod
from pt_bench.baselines import (MOUTH_OUTER, STABLE_POINTS, BaselineSpec, freeze_mouth, make_baseline,
                                parse_baselines, shift_audio, similarity_transform)
from pt_bench.leaderboard import PUBLISHED_LABEL, PUBLISHED_ROWS, RANDOM_WEIGHTS_NOTE
from pt_bench.metrics.base import Metric
from pt_bench.runner import (BenchConfig, BenchError, VideoMeta, file_fingerprint, list_videos, match_videos,
                             pair_problem, run_bench)
from pt_bench.stats import bootstrap_mean_ci
from pt_bench.video import BenchVideo
from pt_data.video_io import write_video

SR = 16000


# ------------------------------------------------------------------------------------------ helpers

class MeanAbsDiff(Metric):
    """Test metric: mean absolute pixel difference over the first min(T) frames (counts its calls)."""

    name = "mad"
    higher_is_better = False
    region = "full frame"
    protocol = "mean |pred - ref| over pixels and frames (test metric)"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = 0

    def score_video(self, pred, ref):
        self.calls += 1
        n = min(pred.num_frames, ref.num_frames)
        return float(np.abs(pred.frames[:n].astype(np.float64) - ref.frames[:n]).mean())


class Agreement(MeanAbsDiff):
    """Test metric, higher is better: 255 - mean absolute difference; pretends to need a network file."""

    name = "agree"
    higher_is_better = True
    weights = ("lpips-alexnet",)
    protocol = "255 - mean |pred - ref| (test metric)"

    def score_video(self, pred, ref):
        return 255.0 - super().score_video(pred, ref)


class MeanColourDistance(Metric):
    """Test set-level metric: distance between the mean colours of all pred and all ref videos."""

    name = "colour"
    higher_is_better = False
    level = "set"
    region = "full frame"
    protocol = "|mean colour(pred set) - mean colour(ref set)| (test metric)"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = 0

    def features(self, video, ref):
        self.calls += 1
        return video.frames.reshape(-1, 3).mean(0, dtype=np.float64)

    def score_set(self, pred_feats, ref_feats):
        return float(np.linalg.norm(np.mean(pred_feats, 0) - np.mean(ref_feats, 0)))


def tiny_frames(seed: int, n: int = 6, size: int = 64) -> np.ndarray:
    """Smooth random frames (a moving gradient plus a blob), so H.264 keeps them recognisable."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    base = rng.uniform(40, 200, 3)
    frames = []
    for t in range(n):
        cx, cy = rng.uniform(16, 48, 2)
        blob = 60 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 80.0)
        img = base[None, None] + (xx[..., None] + 2 * t) * 0.5 + blob[..., None]
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def tiny_audio(seed: int, n_frames: int, fps: float = 25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal(int(n_frames * SR / fps))).astype(np.float32)


def write_set(folder: Path, names, *, fps: int = 25, n: int = 6, noise: float = 0.0, seed: int = 0) -> None:
    for i, name in enumerate(names):
        f = tiny_frames(i + 100 * seed, n)
        if noise:
            f = np.clip(f + np.random.default_rng(i).normal(0, noise, f.shape), 0, 255).astype(np.uint8)
        write_video(str(folder / f"{name}.mp4"), f, fps=fps, audio=tiny_audio(i, n, fps))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """A reference folder (3 videos), an identical copy, a noisy version, and bad variants."""
    root = tmp_path_factory.mktemp("bench_videos")
    dirs = {k: root / k for k in ("ref", "noisy", "fps30", "short", "missing")}
    for d in dirs.values():
        d.mkdir()
    names = ["a", "b", "c"]
    write_set(dirs["ref"], names)
    dirs["copy"] = root / "copy"
    dirs["copy"].mkdir()
    for n in names:
        (dirs["copy"] / f"{n}.mp4").write_bytes((dirs["ref"] / f"{n}.mp4").read_bytes())
    write_set(dirs["noisy"], names, noise=25.0)
    write_set(dirs["fps30"], names, fps=30, n=7)
    write_set(dirs["short"], names, n=3)
    write_set(dirs["missing"], ["a", "b", "zzz"])
    return dirs


def bench(videos, tmp_path, metrics=None, **kw) -> tuple[runner_mod.BenchResult, list]:
    metrics = metrics if metrics is not None else [MeanAbsDiff(), MeanColourDistance()]
    cfg = BenchConfig(reference=str(videos["ref"]), out=str(tmp_path / "out"), bootstrap_samples=200,
                      progress=False, **{"methods": {"self": str(videos["copy"]), "noisy": str(videos["noisy"])},
                                         **kw})
    return run_bench(cfg, metrics=metrics), metrics


# ---------------------------------------------------------------------------------------------- stats

def test_bootstrap_known_cases():
    c = bootstrap_mean_ci([2.5] * 7)
    assert (c.mean, c.low, c.high, c.n) == (2.5, 2.5, 2.5, 7)
    one = bootstrap_mean_ci([3.0, np.nan])
    assert (one.mean, one.low, one.high, one.n) == (3.0, 3.0, 3.0, 1)
    assert np.isnan(bootstrap_mean_ci([np.nan]).mean) and bootstrap_mean_ci([]).n == 0
    # two values {0, 1}: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    two = bootstrap_mean_ci([0.0, 1.0], n_samples=4000, seed=1)
    assert (two.mean, two.low, two.high) == (0.5, 0.0, 1.0)
    assert bootstrap_mean_ci([0.0, 1.0], n_samples=4000, confidence=0.4, seed=1).low == 0.5
    # infinite scores stay infinite instead of turning the interval into NaN
    inf = bootstrap_mean_ci([np.inf, np.inf, 30.0])
    assert inf.mean == np.inf and inf.high == np.inf and not np.isnan(inf.low)


def test_bootstrap_matches_theory_and_scipy():
    from scipy.stats import bootstrap

    x = np.random.default_rng(0).normal(3.0, 2.0, 200)
    ci = bootstrap_mean_ci(x, n_samples=4000, seed=0)
    assert ci == bootstrap_mean_ci(x, n_samples=4000, seed=0)  # seeded
    assert ci != bootstrap_mean_ci(x, n_samples=4000, seed=1)
    ref = bootstrap((x,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95,
                    random_state=np.random.default_rng(5)).confidence_interval
    assert ci.low == pytest.approx(ref.low, abs=0.03) and ci.high == pytest.approx(ref.high, abs=0.03)
    # normal theory: half-width ~ 1.96 * sd / sqrt(n)
    assert ci.half_width == pytest.approx(1.96 * x.std() / np.sqrt(len(x)), rel=0.08)
    assert ci.low < x.mean() < ci.high


# ------------------------------------------------------------------------------------ matching, checks

def test_matching_lists_missing_and_extra(videos, tmp_path):
    ref = list_videos(videos["ref"])
    assert list(ref) == ["a", "b", "c"]
    with pytest.raises(BenchError) as e:
        match_videos(ref, {"m": list_videos(videos["missing"])})
    msg = str(e.value)
    assert "missing 1 of 3 reference videos: c" in msg and "not in the reference: zzz" in msg
    assert "--allow-missing" in msg
    plan, warnings = match_videos(ref, {"m": list_videos(videos["missing"])}, allow_missing=True)
    assert plan == {"m": ["a", "b"]} and "skipped" in warnings[0]
    (tmp_path / "x.mp4").write_bytes(b"")
    (tmp_path / "x.mov").write_bytes(b"")
    with pytest.raises(BenchError, match="share a name"):
        list_videos(tmp_path)
    with pytest.raises(BenchError, match="not a folder"):
        list_videos(tmp_path / "nope")


def test_pair_problem_rules():
    ref = VideoMeta(100, 25.0)
    assert pair_problem("v", "m", ref, VideoMeta(98, 25.0), tolerance=2, resample=False) is None
    assert "99 frames" not in (pair_problem("v", "m", ref, VideoMeta(97, 25.0), tolerance=2, resample=False) or "")
    assert "97 frames but the reference has 100" in pair_problem("v", "m", ref, VideoMeta(97, 25.0), tolerance=2,
                                                                 resample=False)
    fps = pair_problem("v", "m", ref, VideoMeta(120, 30.0), tolerance=2, resample=False)
    assert "30.000 fps" in fps and "--resample" in fps
    assert pair_problem("v", "m", ref, VideoMeta(120, 30.0), tolerance=2, resample=True) is None
    assert "after resampling" in pair_problem("v", "m", ref, VideoMeta(60, 30.0), tolerance=2, resample=True)


def test_mismatches_are_clear_errors_before_scoring(videos, tmp_path):
    mad = MeanAbsDiff()
    with pytest.raises(BenchError) as e:
        run_bench(BenchConfig(reference=str(videos["ref"]), methods={"fast": str(videos["fps30"])},
                              out=str(tmp_path / "o1"), progress=False), metrics=[mad])
    assert "fast/a: 30.000 fps but the reference has 25.000 fps" in str(e.value) and "fast/c" in str(e.value)
    with pytest.raises(BenchError, match="short/b: 3 frames but the reference has 6"):
        run_bench(BenchConfig(reference=str(videos["ref"]), methods={"short": str(videos["short"])},
                              out=str(tmp_path / "o2"), progress=False), metrics=[mad])
    assert mad.calls == 0  # nothing was scored
    # --max-frames compares the first N frames; --resample retimes 30 fps to 25 fps (7 frames -> 6)
    res = run_bench(BenchConfig(reference=str(videos["ref"]), methods={"short": str(videos["short"])},
                                out=str(tmp_path / "o3"), max_frames=3, progress=False), metrics=[mad])
    assert res.leaderboard.loc[0, "n_videos"] == 3
    res = run_bench(BenchConfig(reference=str(videos["ref"]), methods={"fast": str(videos["fps30"])},
                                out=str(tmp_path / "o4"), resample=True, progress=False), metrics=[MeanAbsDiff()])
    assert np.isfinite(res.leaderboard.loc[0, "mad"])


def write_vfr(path: Path, frames: np.ndarray, pts: list[int], rate: int = 30) -> None:
    """An H.264 MP4 whose frames sit at ``pts / rate`` seconds (gaps make it variable-frame-rate)."""
    import av
    from fractions import Fraction

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.pix_fmt, s.width, s.height = "yuv420p", frames.shape[2], frames.shape[1]
        s.codec_context.time_base = Fraction(1, rate)
        for f, t in zip(frames, pts):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = t, Fraction(1, rate)
            for pk in s.encode(vf):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)


def test_variable_frame_rate_reference_is_scored_on_its_timestamp_grid(tmp_path):
    """A VFR reference (frames at 0,1,2,4,5,7 / 30 s) against its constant-30-fps re-encode (what ffmpeg
    writes by default): same duration, so no error; both are compared on the 30 fps grid."""
    from pt_bench.runner import probe_timeline
    from pt_bench.video import load_bench_video

    ref, cfr = tmp_path / "ref", tmp_path / "cfr"
    ref.mkdir()
    write_vfr(ref / "v.mp4", tiny_frames(7, n=6), [0, 1, 2, 4, 5, 7])
    meta = probe_timeline(ref / "v.mp4")
    assert meta.vfr and meta.fps == 30 and meta.num_frames == 9
    on_grid = load_bench_video(ref / "v.mp4", resample_fps=30)
    write_video(str(cfr / "v.mp4"), on_grid.frames, fps=30)
    assert not probe_timeline(cfr / "v.mp4").vfr
    noisy = np.clip(on_grid.frames + np.random.default_rng(0).normal(0, 25, on_grid.frames.shape), 0, 255)
    write_video(str(tmp_path / "noisy" / "v.mp4"), noisy.astype(np.uint8), fps=30)
    res = run_bench(BenchConfig(reference=str(ref), methods={"cfr": str(cfr), "noisy": str(tmp_path / "noisy")},
                                out=str(tmp_path / "out"), progress=False), metrics=[MeanAbsDiff()])
    b = res.leaderboard.set_index("method")
    assert b.loc["cfr", "mad"] < 3 < b.loc["noisy", "mad"]  # only the H.264 re-encoding differs
    assert any("variable frame rate" in w for w in res.warnings)


def test_allow_missing_skips_with_warning(videos, tmp_path):
    res, _ = bench(videos, tmp_path, methods={"part": str(videos["missing"])}, allow_missing=True,
                   metrics=[MeanAbsDiff()])
    assert res.leaderboard.set_index("method").loc["part", "n_videos"] == 2
    assert res.warnings and "zzz" in res.warnings[0]
    assert "zzz" in (tmp_path / "out" / "leaderboard.html").read_text()


class NeedsFace(MeanAbsDiff):
    """Test metric that finds "no face" in video b."""

    name = "face"

    def score_video(self, pred, ref):
        from pt_bench.video import NoFaceError

        if ref.name == "b":
            raise NoFaceError("b: MediaPipe found no face in any of its 6 frames")
        return super().score_video(pred, ref)


def test_no_face_scores_nan_with_a_warning(videos, tmp_path):
    for _ in range(2):  # the second run reads the NaN and its warning from the cache
        res, (m,) = bench(videos, tmp_path, metrics=[NeedsFace()])
        pv = res.per_video.set_index(["method", "video"])
        assert np.isnan(pv.loc[("noisy", "b"), "face"]) and np.isfinite(pv.loc[("noisy", "a"), "face"])
        b = res.leaderboard.set_index("method")
        assert b.loc["noisy", "face"] == pytest.approx(pv.loc[("noisy", ["a", "c"]), "face"].mean())
        assert sum("face of noisy/b" in w and "NaN" in w for w in res.warnings) == 1
    assert m.calls == 0


# --------------------------------------------------------------------------------- leaderboard files

def test_leaderboard_files(videos, tmp_path):
    res, (mad, colour) = bench(videos, tmp_path, baselines=["static"])
    out = tmp_path / "out"
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board.columns) == ["method", "mad", "colour", "mad_ci_low", "mad_ci_high", "colour_ci_low",
                                   "colour_ci_high", "n_videos", "weights", "kind"]
    b = board.set_index("method")
    assert list(b.index) == ["self", "noisy", "static"] and b.loc["static", "kind"] == "baseline"
    assert b.loc["self", "mad"] == 0 and b.loc["noisy", "mad"] > 5 and b.loc["static", "mad"] > 0
    assert b.loc["noisy", "mad_ci_low"] <= b.loc["noisy", "mad"] <= b.loc["noisy", "mad_ci_high"]
    assert b.loc["self", "colour"] == 0 and np.isnan(b.loc["self", "colour_ci_low"])  # set level: no CI
    assert (b["n_videos"] == 3).all() and (b["weights"] == "real").all()

    pv = pd.read_csv(out / "per_video.csv")
    assert list(pv.columns) == ["method", "video", "mad"] and len(pv) == 9
    # the per-video numbers are the metric's own on freshly decoded videos
    from pt_bench.video import load_bench_video
    r, p = load_bench_video(videos["ref"] / "b.mp4"), load_bench_video(videos["noisy"] / "b.mp4")
    assert pv.set_index(["method", "video"]).loc[("noisy", "b"), "mad"] == pytest.approx(
        MeanAbsDiff().score_video(p, r))

    md = (out / "leaderboard.md").read_text()
    assert "| method | mad ↓ | colour ↓ | videos | weights |" in md
    self_row = next(line for line in md.splitlines() if line.startswith("| self "))
    assert "**0.0000** ± 0.0000" in self_row
    assert "static (baseline)" in md and "**" not in next(l for l in md.splitlines() if l.startswith("| noisy"))
    assert "mean |pred - ref| over pixels and frames (test metric)" in md  # protocol footnote
    assert PUBLISHED_LABEL not in md

    page = (out / "leaderboard.html").read_text()
    assert not re.search(r"https?://", page) and "<script>" in page and "<style>" in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing loaded from anywhere
    assert "sortable" in page and "<b>0.0000</b>" in page
    assert res.markdown == md


def test_best_is_bold_by_direction_and_random_weights_marked(videos, tmp_path):
    res, _ = bench(videos, tmp_path, metrics=[MeanAbsDiff(), Agreement(random_weights=True)],
                   show_published=True)
    md = res.markdown
    self_row = next(line for line in md.splitlines() if line.startswith("| self "))
    assert self_row.count("**") == 4  # best (lowest mad, highest agree) on both metrics
    assert "agree ↑" in md and "mad ↓" in md
    b = res.leaderboard.set_index("method")
    assert b.loc["self", "agree"] == 255 and all(RANDOM_WEIGHTS_NOTE in w for w in b["weights"])
    # published rows: only the paper's metrics, none here; with ssim in the run they appear, labelled
    assert PUBLISHED_LABEL not in md
    from pt_bench.leaderboard import MetricInfo, render_markdown
    info = MetricInfo("ssim", True, "video", True, "full frame", (), True, "SSIM")
    board = pd.DataFrame([{"method": "x", "ssim": 0.9, "ssim_ci_low": 0.8, "ssim_ci_high": 1.0, "n_videos": 2,
                           "weights": "real", "kind": "method"}])
    with_pub = render_markdown(board, [info], n_samples=10, show_published=True)
    assert f"| PersonaTalk — {PUBLISHED_LABEL} | 0.9560 |" in with_pub
    assert render_markdown(board, [info], n_samples=10).count(PUBLISHED_LABEL) == 0
    assert set(PUBLISHED_ROWS["Wav2Lip"]) == {"ssim", "psnr", "fid", "lmd", "lse_c", "lpips", "csim", "stylesim"}


def test_second_run_uses_the_cache(videos, tmp_path, monkeypatch):
    res1, (mad1, col1) = bench(videos, tmp_path)
    # 2 methods x 3 videos; features of the 3 references and the noisy videos (the copies have the
    # references' bytes, so their features are the references' cached ones)
    assert mad1.calls == 6 and col1.calls == 6
    loads = []
    real_load = runner_mod.load_bench_video
    monkeypatch.setattr(runner_mod, "load_bench_video", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    res2, (mad2, col2) = bench(videos, tmp_path)
    assert mad2.calls == 0 and col2.calls == 0 and loads == []  # nothing decoded, nothing computed
    assert res2.cache_hits > 0
    pd.testing.assert_frame_equal(res1.leaderboard, res2.leaderboard)
    # another method's files: only its pairs are computed
    res3, (mad3, _) = bench(videos, tmp_path, methods={"self": str(videos["copy"]), "short": str(videos["short"])},
                            max_frames=3)
    assert mad3.calls == 6  # max_frames is part of the key: all pairs are new
    res4, (mad4, _) = bench(videos, tmp_path, use_cache=False)
    assert mad4.calls == 6


def test_fingerprint_follows_content_not_path(videos, tmp_path):
    a = file_fingerprint(videos["ref"] / "a.mp4")
    assert a == file_fingerprint(videos["copy"] / "a.mp4")
    assert a != file_fingerprint(videos["ref"] / "b.mp4")
    big = tmp_path / "big.bin"
    data = np.random.default_rng(0).integers(0, 255, 3 << 20, dtype=np.uint8)
    big.write_bytes(data.tobytes())
    fp = file_fingerprint(big)
    data[-5] ^= 1  # a change near the end is seen
    big.write_bytes(data.tobytes())
    assert file_fingerprint(big) != fp


# --------------------------------------------------------------------------------------- baselines

def _video(frames, audio=None, fps=25.0) -> BenchVideo:
    return BenchVideo(name="v", path=None, frames=frames, fps=fps, audio=audio)


def test_baseline_properties():
    frames = tiny_frames(3, n=5)
    audio = tiny_audio(3, 5)
    ref = _video(frames, audio)
    static = make_baseline(BaselineSpec("static"), ref)
    assert static.frames.shape == frames.shape and (static.frames == frames[0]).all()
    assert np.array_equal(static.audio, audio)
    copy = make_baseline(BaselineSpec("reference"), ref)
    assert np.array_equal(copy.frames, frames) and np.array_equal(copy.audio, audio)
    shifted = make_baseline(BaselineSpec("shift", 2), ref)
    assert np.array_equal(shifted.frames, frames) and len(shifted.audio) == len(audio)
    k = 2 * SR // 25
    assert (shifted.audio[:k] == 0).all() and np.array_equal(shifted.audio[k:], audio[:-k])
    early = shift_audio(audio, -1, 25.0)
    assert np.array_equal(early[:-640], audio[640:]) and (early[-640:] == 0).all()
    assert (shift_audio(audio, 100, 25.0) == 0).all()
    with pytest.raises(ValueError, match="no audio"):
        make_baseline(BaselineSpec("shift", 1), _video(frames))
    assert [b.name for b in parse_baselines("static, frozen_mouth,shift:-3,reference")] == [
        "static", "frozen_mouth", "shift:-3", "reference"]
    for bad, msg in (("shift", "shift:K"), ("blur", "unknown baseline"), ("static,static", "twice")):
        with pytest.raises(ValueError, match=msg):
            parse_baselines(bad)


def test_lip_and_stable_indices_are_mediapipe_points():
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

    lips = {i for e in FACEMESH_LIPS for i in e}
    assert set(MOUTH_OUTER) <= lips and not set(STABLE_POINTS) & lips


def _synthetic_landmarks(shift=(0.0, 0.0)) -> np.ndarray:
    lm = np.full((478, 2), 32.0)
    rng = np.random.default_rng(0)
    lm[list(STABLE_POINTS)] = rng.uniform(8, 56, (len(STABLE_POINTS), 2))
    ang = np.linspace(0, 2 * np.pi, len(MOUTH_OUTER), endpoint=False)
    lm[list(MOUTH_OUTER)] = np.column_stack([32 + 8 * np.cos(ang), 44 + 4 * np.sin(ang)])
    return lm + np.asarray(shift)


def test_similarity_transform_recovers_known_motion():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (12, 2))
    a, th, t = 1.3, 0.2, np.array([5.0, -7.0])
    rot = a * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    m = similarity_transform(src, src @ rot.T + t)
    np.testing.assert_allclose(m, np.column_stack([rot, t]), atol=1e-9)


def test_freeze_mouth_keeps_first_mouth_and_rest_of_frame():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    lm = np.stack([_synthetic_landmarks()] * 4)
    lm[2] = np.nan  # no face: frame unchanged
    out = freeze_mouth(frames, lm)
    inside = (slice(42, 47), slice(28, 37))  # well inside the mouth hull (centre 32, 44)
    for t in (0, 1, 3):
        np.testing.assert_allclose(out[t][inside].astype(int), frames[0][inside].astype(int), atol=1)
        assert np.array_equal(out[t][:16], frames[t][:16])  # far from the mouth: the frame itself
    assert np.array_equal(out[2], frames[2])
    # the head moved by (3, 2) px: the first frame's mouth follows it
    lm[3] = _synthetic_landmarks((3.0, 2.0))
    out = freeze_mouth(frames, lm)
    moved = (slice(44, 49), slice(31, 40))
    np.testing.assert_allclose(out[3][moved].astype(int), frames[0][inside].astype(int), atol=1)


# ------------------------------------------------------------------------------------------ figures

def test_figures_and_report(videos, tmp_path):
    from pt_bench.figures import STYLE_EMBEDDINGS_FILE, report_figures, tsne_embedding

    bench(videos, tmp_path, baselines=["static"])
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (3, 16))
    spk = np.repeat(["s0", "s1", "s2"], 8)
    emb = centres[np.repeat(np.arange(3), 8)] + rng.normal(0, 0.5, (24, 16))
    kinds = np.tile(["original"] + ["dubbed"] * 3, 6)
    np.savez(tmp_path / "out" / STYLE_EMBEDDINGS_FILE, embeddings=emb, speakers=spk, kinds=kinds)
    made = report_figures(tmp_path / "out", tmp_path / "fig")
    assert set(made) == {"metric_bars", "per_video_distributions", "style_tsne"}
    for paths in made.values():
        assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 5000 for p in paths)
    # clusters survive the embedding: each point's nearest neighbour is of the same speaker
    xy = tsne_embedding(emb, seed=0)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
    assert (spk[d.argmin(1)] == spk).all()
    with pytest.raises(ValueError, match="speakers"):
        from pt_bench.figures import tsne_figure
        tsne_figure(emb, spk[:3], kinds)


def test_tsne_title_marks_random_weights_and_needs_three_points(tmp_path):
    from pt_bench.figures import (MIN_TSNE_POINTS, STYLE_EMBEDDINGS_FILE, read_style_embeddings,
                                  style_tsne_from_file, style_tsne_status)
    from pt_bench.metrics.stylesim import save_style_embeddings

    emb = np.random.default_rng(0).normal(size=(6, 8))
    spk, kinds = ["s0", "s0", "s0", "s1", "s1", "s1"], ["original", "dubbed", "dubbed"] * 2
    path = tmp_path / STYLE_EMBEDDINGS_FILE
    assert "not in" in style_tsne_status(tmp_path)
    for real in (False, True):
        save_style_embeddings(path, emb, spk, kinds, names=list("abcdef"), real_weights=real)
        assert style_tsne_status(tmp_path) is None and read_style_embeddings(path).real_weights is real
        title = style_tsne_from_file(path).axes[0].get_title()
        assert (RANDOM_WEIGHTS_NOTE in title) is (not real) and "speaking-style" in title
    np.savez(path, embeddings=emb, speakers=spk, kinds=kinds)  # a file without the flag: real weights
    assert read_style_embeddings(path).real_weights and read_style_embeddings(path).names is None
    save_style_embeddings(path, emb[:MIN_TSNE_POINTS - 1], spk[:2], kinds[:2], real_weights=False)
    assert f"at least {MIN_TSNE_POINTS}" in style_tsne_status(tmp_path)



def test_stylesim_run_saves_style_embeddings_for_the_tsne(tmp_path, monkeypatch, mediapipe_face_model):
    """A real StyleSim (random tiny encoder, real 3DMM fit) in a run: the landmarks of the tiny videos are
    synthetic talking-head geometry placed in the runner's landmark cache, the way a second run finds them."""
    import torch

    from pt_bench.figures import read_style_embeddings, report_figures, style_tsne_from_file
    from pt_bench.metrics import create_metric
    from pt_bench.runner import DiskCache, landmark_cache_key
    from pt_bench.style_encoder import StyleEncoderConfig
    from pt_data.fit_config import FitConfig
    from pt_data.synthetic_geometry import synthetic_clip

    fm = mediapipe_face_model
    n = 24
    dirs = {k: tmp_path / k for k in ("ref", "copy", "noisy")}
    write_set(dirs["ref"], "abc", n=n)
    dirs["copy"].mkdir()
    for v in "abc":
        (dirs["copy"] / f"{v}.mp4").write_bytes((dirs["ref"] / f"{v}.mp4").read_bytes())
    write_set(dirs["noisy"], "abc", n=n, noise=20.0)
    out = tmp_path / "out"
    cache = DiskCache(out / "cache")
    landmarks = {}
    for i, v in enumerate("abc"):
        for folder, seed in (("ref", i), ("noisy", 10 + i)):
            f = dirs[folder] / f"{v}.mp4"
            landmarks[folder, v] = synthetic_clip(fm, n, seed=seed, max_yaw_deg=10).landmarks.astype(np.float32)
            cache.put_array("landmarks", landmark_cache_key(file_fingerprint(f), None, 25.0, n), landmarks[folder, v])

    tiny = StyleEncoderConfig(window=16, num_lower_vertices=24, num_upper_vertices=8, d_model=32, num_layers=1,
                              num_heads=2, ff_mult=2, embed_dim=16, dropout=0.0)

    def stylesim():
        return create_metric("stylesim", random_weights=True, face_model=fm, fit=FitConfig(iterations=10),
                             random_config=tiny)

    def run(metrics):
        return run_bench(BenchConfig(reference=str(dirs["ref"]), out=str(out), bootstrap_samples=50, progress=False,
                                     methods={"self": str(dirs["copy"]), "noisy": str(dirs["noisy"])},
                                     baselines=["static"], speaker_map={"a": "amy", "b": "amy", "zed": "z"}),
                         metrics=metrics)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run([stylesim()])
        pv = res.per_video.set_index(["method", "video"])
        np.testing.assert_allclose(pv.loc["self", "stylesim"], 1.0, atol=1e-6)
        assert pv.loc["noisy", "stylesim"].between(-1, 1 - 1e-6).all()
        assert pv.loc["static", "stylesim"].isna().all()  # its blank frames have no face (and no cached landmarks)
        s = read_style_embeddings(res.outputs["style_embeddings.npz"])
        assert not s.real_weights and s.embeddings.shape == (9, 16)  # 3 originals + 2 methods x 3; no baseline
        assert list(s.names) == ["a", "self/a", "noisy/a", "b", "self/b", "noisy/b", "c", "self/c", "noisy/c"]
        assert list(s.kinds) == ["original", "dubbed", "dubbed"] * 3
        assert list(s.speakers) == ["amy"] * 6 + ["c"] * 3  # the map's speaker, else the reference stem
        assert any("no speaker for c" in w for w in res.warnings) and any("zed" in w for w in res.warnings)
        np.testing.assert_allclose(np.linalg.norm(s.embeddings, axis=1), 1.0, atol=1e-5)
        e = dict(zip(s.names, s.embeddings))
        assert np.array_equal(e["self/b"], e["b"]) and not np.allclose(e["noisy/b"], e["b"])
        # each vector is StyleSim's own on a video with those landmarks (the frames do not enter the metric)
        for key, name in (("noisy", "noisy/c"), ("ref", "a")):
            v = BenchVideo(name="x", path=None, frames=np.zeros((n, 64, 64, 3), np.uint8), fps=25.0)
            v.set_landmarks(landmarks[key, name[-1]])
            np.testing.assert_allclose(e[name], stylesim().features(v), atol=1e-5)

        # a second run fits nothing: every score and style vector comes from the cache
        import pt_bench.metrics.stylesim as stylesim_mod

        def no_fit(*a, **k):
            raise AssertionError("the style vectors should come from the cache")

        monkeypatch.setattr(stylesim_mod, "fit_video_expressions", no_fit)
        res2 = run([stylesim()])
        np.testing.assert_array_equal(read_style_embeddings(out / "style_embeddings.npz").embeddings, s.embeddings)
        assert res2.cache_misses == 0
    finally:
        torch.set_num_threads(threads)

    made = report_figures(out, tmp_path / "fig", formats=("png",))
    assert made["style_tsne"][0].stat().st_size > 5000
    assert RANDOM_WEIGHTS_NOTE in style_tsne_from_file(out / "style_embeddings.npz").axes[0].get_title()
    # a run without stylesim in the same folder removes the earlier run's embeddings
    res3 = run([MeanAbsDiff()])
    assert not (out / "style_embeddings.npz").exists() and "style_embeddings.npz" not in res3.outputs


def test_speaker_map_option():
    from pt_cli.bench_cmd import read_speaker_map
    from pt_bench.runner import check_speaker_map, resolve_speakers

    assert read_speaker_map('{"a": "amy"}') == {"a": "amy"}
    for bad in ('{"a": 3}', "[1, 2]", "/nonexistent/map.json", "{nope"):
        with pytest.raises(argparse.ArgumentTypeError, match="speaker-map"):
            read_speaker_map(bad)
    with pytest.raises(BenchError, match="speaker map"):
        check_speaker_map({"a": ""})
    assert resolve_speakers(["a", "b"], None) == ({"a": "a", "b": "b"}, [])
    spk, warn = resolve_speakers(["a", "b"], {"a": "amy"})
    assert spk == {"a": "amy", "b": "b"} and "no speaker for b" in warn[0]


# ----------------------------------------------------------------------------------------------- CLI

def _cli(argv):
    from pt_cli import bench_cmd, report_cmd

    parser = argparse.ArgumentParser(prog="pt")
    sub = parser.add_subparsers()
    bench_cmd.add_parser(sub)
    report_cmd.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_bench_and_report_with_real_pixel_metrics(videos, tmp_path, capsys):
    out = tmp_path / "out"
    rc = _cli(["bench", "--reference", str(videos["ref"]), "--method", f"self={videos['copy']}",
               "--method", f"noisy={videos['noisy']}", "--metrics", "ssim,psnr", "--baselines", "static,shift:1",
               "--out", str(out), "--quiet", "--bootstrap", "100"])
    printed = capsys.readouterr().out
    assert rc == 0 and "| method | ssim ↑ | psnr ↑ |" in printed
    b = pd.read_csv(out / "leaderboard.csv").set_index("method")
    assert b.loc["self", "ssim"] == pytest.approx(1.0) and b.loc["noisy", "ssim"] < 0.99
    assert b.loc["shift:1", "ssim"] == pytest.approx(1.0) and b.loc["static", "ssim"] < 1.0
    assert b.loc["noisy", "psnr"] < b.loc["self", "psnr"]
    assert _cli(["report", "--bench", str(out), "--out", str(tmp_path / "fig"), "--formats", "png"]) == 0
    assert (tmp_path / "fig" / "metric_bars.png").is_file()
    # clear errors, non-zero exit
    assert _cli(["bench", "--reference", str(videos["ref"]), "--method", f"m={videos['missing']}",
                 "--metrics", "ssim", "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert "missing 1 of 3" in capsys.readouterr().err
    assert _cli(["bench", "--reference", str(videos["ref"]), "--method", f"m={videos['copy']}",
                 "--metrics", "nope", "--out", str(tmp_path / "o3"), "--quiet"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert _cli(["report", "--bench", str(tmp_path / "none"), "--out", str(tmp_path / "f2")]) == 2


def test_cli_missing_weights_is_a_clear_error(videos, tmp_path, monkeypatch, capsys):
    from pt_bench.metrics import METRICS
    from pt_data.weights import WeightsRegistry

    reg = WeightsRegistry()
    needs = [n for n, cls in METRICS.items() if any(not reg.spec(w).bundled for w in cls.weights if w)]
    assert needs, "some registered metric needs a pretrained file"
    monkeypatch.setenv("PT_WEIGHTS_DIR", str(tmp_path / "empty"))
    rc = _cli(["bench", "--reference", str(videos["ref"]), "--method", f"m={videos['copy']}", "--metrics",
               needs[0], "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--random-weights" in err and str(tmp_path / "empty") in err


# ----------------------------------------------------------------------------------------- real data

def test_real_videos_self_vs_blur(shared_data, tmp_path, monkeypatch):
    """Two real talking-head videos (first 20 frames, scaled to 256 px to keep the test fast): a copy scores
    perfectly, a blurred copy worse (the acceptance check's setting, on the real metrics)."""
    import cv2

    from pt_bench.video import load_bench_video

    ref_dir, blur_dir = tmp_path / "ref", tmp_path / "blur"
    for name in ("vrt_face3_aoc", "vrt_face5"):
        v = load_bench_video(shared_data / "videos" / f"{name}.mp4", max_frames=20)
        frames = [cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in v.frames]
        write_video(str(ref_dir / f"{name}.mp4"), frames, fps=int(round(v.fps)), audio=v.audio)
        write_video(str(blur_dir / f"{name}.mp4"), [cv2.GaussianBlur(f, (0, 0), 3) for f in frames],
                    fps=int(round(v.fps)), audio=v.audio)
    res = run_bench(BenchConfig(reference=str(ref_dir), methods={"self": str(ref_dir), "blur": str(blur_dir)},
                                metrics=["ssim", "psnr", "lmd"], out=str(tmp_path / "out"), bootstrap_samples=200,
                                progress=False))
    b = res.leaderboard.set_index("method")
    assert b.loc["self", "ssim"] > 0.999 and b.loc["self", "lmd"] < 1e-6
    assert b.loc["blur", "ssim"] < b.loc["self", "ssim"] and b.loc["blur", "psnr"] < b.loc["self", "psnr"]
    assert b.loc["blur", "lmd"] > 0 and (b["weights"] == "real").all() and (b["n_videos"] == 2).all()
    pv = pd.read_csv(tmp_path / "out" / "per_video.csv")
    assert len(pv) == 4 and pv["lmd"].notna().all() and (pv["lmd_frames"] == 20).all()
    # a new metric on the same files reuses the landmarks cached on disk: no face-mesh run at all
    import pt_bench.video

    def no_detection(*a, **k):
        raise AssertionError("landmarks should come from the cache")

    monkeypatch.setattr(pt_bench.video, "detect_video_landmarks", no_detection)
    res2 = run_bench(BenchConfig(reference=str(ref_dir), methods={"self": str(ref_dir), "blur": str(blur_dir)},
                                 metrics=["ssim_face"], out=str(tmp_path / "out"), bootstrap_samples=200,
                                 progress=False))
    b2 = res2.leaderboard.set_index("method")
    assert b2.loc["self", "ssim_face"] > 0.999 and b2.loc["blur", "ssim_face"] < b2.loc["self", "ssim_face"]
