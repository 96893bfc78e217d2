"""``pt bench``: score dubbing methods' videos against reference videos and write leaderboards."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pt_data.video_io import MediaError
from pt_data.weights import MissingWeightsError

DESCRIPTION = """Score every method's videos against the reference videos with a fixed metric protocol.

Matching: videos are matched by file stem (REF/abc.mp4 <-> METHOD/abc.mp4). A missing or extra file is an
error listing them all (--allow-missing: warn and skip). Frame rates must match and frame counts may differ
by at most --frame-tolerance frames (encoders drop one or two); otherwise an error names the files, unless
--resample retimes a method's video to the reference's frame rate. --max-frames N scores the first N frames.
A variable-frame-rate video is read on the constant grid of its stream's base rate, by timestamp (so a
VFR reference and a constant-rate re-encode of it, ffmpeg's default for MP4, compare frame by frame).

Metrics (--metrics, comma-separated; default: every registered metric whose weights are present):
  ssim, psnr            full-frame SSIM (Gaussian window, Wang et al. 2004) and PSNR (dB, capped at 100)
  ssim_face, psnr_face  the same on the 256x256 face crop (the REFERENCE's crop transform for both videos)
  lmd                   lip landmark distance (MediaPipe, in the reference's face crop); lower is better
  lse_c, lse_d          SyncNet confidence / distance (the paper's SyncScore is lse_c); needs syncnet_v2
  fid                   FID of face crops (set level: one number per method, no CI); needs fid-inception
  lpips                 LPIPS (AlexNet) of face crops; needs lpips-alexnet
  csim                  cosine of ArcFace identity vectors; needs arcface-w600k-r50
  stylesim              cosine of speaking-style embeddings (the paper's StyleSim); needs style-encoder
Each metric's exact protocol line is printed under the leaderboard.

Weights: pretrained files come from $PT_WEIGHTS_DIR (see `pt weights`); a metric named in --metrics whose
file is missing is an error that says where to get it. --random-weights runs such metrics with seeded random
networks for smoke tests only: every row then says "random weights: not comparable".

Baselines (--baselines, comma-separated) are sanity rows built from the reference itself: reference (an
identical copy), static (first frame repeated), frozen_mouth (each frame's mouth replaced by the first
frame's), shift:K (audio delayed by K frames, video identical).

Outputs in --out: leaderboard.csv (method, one column per metric, <metric>_ci_low/_ci_high, n_videos,
weights, kind), leaderboard.md and leaderboard.html (self-contained, sortable), per_video.csv,
bench.json (configuration, metric protocols, timings) and cache/ (scores, features and landmarks keyed by
file content: a second run over the same files is fast). With stylesim and at least one --method, also
style_embeddings.npz: the style vector of every reference video ("original") and every method video
("dubbed"; baselines are left out), the speaker of a video being --speaker-map's entry for its file stem,
else the stem itself. Draw the figures, with the style t-SNE, with `pt report --bench OUT --out FIGDIR`."""


def _method(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, folder


def read_speaker_map(text: str) -> dict[str, str]:
    """``--speaker-map``: a JSON file, or an inline JSON object, ``{video stem: speaker}``."""
    try:
        raw = text if text.lstrip().startswith("{") else Path(text).read_text("utf-8")
        value = json.loads(raw)
    except (OSError, json.JSONDecodeError) as e:
        raise argparse.ArgumentTypeError(f"--speaker-map {text!r}: not a readable JSON file or object ({e})") from e
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                              for k, v in value.items()):
        raise argparse.ArgumentTypeError(f"--speaker-map {text!r}: expected a JSON object "
                                         '{"video stem": "speaker", ...} of non-empty strings')
    return value


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="score dubbing methods' videos with the fixed metric protocol (leaderboards)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, metavar="DIR", help="folder of the reference (ground-truth) videos")
    p.add_argument("--method", action="append", type=_method, default=[], metavar="NAME=DIR",
                   help="a method's name and the folder of its videos (repeat for each method)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--metrics", type=_csv, metavar="A,B,...", help="metrics to compute (default: all available)")
    p.add_argument("--baselines", type=_csv, default=[], metavar="A,B,...",
                   help="sanity baselines from the reference: reference, static, frozen_mouth, shift:K")
    p.add_argument("--device", default="cpu", help="torch device for the networks (default: %(default)s)")
    p.add_argument("--weights-dir", help="pretrained weights folder (default: $PT_WEIGHTS_DIR)")
    p.add_argument("--random-weights", action="store_true",
                   help="smoke runs only: random networks where weights are needed (numbers marked not comparable)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--resample", action="store_true",
                   help="retime a method's video to the reference's frame rate instead of failing")
    p.add_argument("--max-frames", type=int, metavar="N", help="score only the first N frames of every video")
    p.add_argument("--frame-tolerance", type=int, default=2, metavar="N",
                   help="frame-count difference accepted between a method's video and the reference (default: 2)")
    p.add_argument("--allow-missing", action="store_true",
                   help="warn and skip videos a method lacks (and ignore extra ones) instead of failing")
    p.add_argument("--cache-dir", metavar="DIR", help="feature/score cache (default: OUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="compute everything again and cache nothing")
    p.add_argument("--show-published", action="store_true",
                   help="add the paper's published rows, labelled 'published (paper), not measured'")
    p.add_argument("--speaker-map", type=read_speaker_map, metavar="JSON",
                   help='JSON file (or inline object) {"video stem": "speaker"} for the style t-SNE '
                        "(default: each reference video is its own speaker)")
    p.add_argument("--title", default="Leaderboard", help="title of the Markdown/HTML leaderboard")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pt_bench.runner import BenchConfig, BenchError, run_bench

    names = [n for n, _ in args.method]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        print(f"error: method name(s) given twice: {', '.join(dup)}", file=sys.stderr)
        return 2
    cfg = BenchConfig(reference=args.reference, methods=dict(args.method), out=args.out, metrics=args.metrics,
                      device=args.device, weights_dir=args.weights_dir, random_weights=args.random_weights,
                      bootstrap_samples=args.bootstrap, seed=args.seed, baselines=args.baselines,
                      resample=args.resample, max_frames=args.max_frames, frame_tolerance=args.frame_tolerance,
                      cache_dir=args.cache_dir, use_cache=not args.no_cache, allow_missing=args.allow_missing,
                      show_published=args.show_published, speaker_map=args.speaker_map, progress=not args.quiet,
                      title=args.title)
    try:
        res = run_bench(cfg)
    except (BenchError, MissingWeightsError, MediaError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(res.markdown)  # the warnings were logged during the run and are listed under the leaderboard
    print(f"wrote {', '.join(str(p) for p in res.outputs.values())} in {res.seconds:.1f} s "
          f"(cache: {res.cache_hits} hits, {res.cache_misses} misses)")
    return 0
