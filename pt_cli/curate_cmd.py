"""``pt curate``: raw corpus videos -> clip shards (a thin layer over :func:`pipelines.curate.curate`)."""
from __future__ import annotations

import argparse
import logging
import sys

DESCRIPTION = """Curate a talking-face corpus into clip shards (Parquet) for training and evaluation.

Every video is decoded once and resampled to 25 fps with 16 kHz mono audio aligned to frame 0; MediaPipe's
face mesh (478 points) runs on every frame; frames with one big-enough face and audio form face tracks,
split at scene cuts and jumps and cut into clips of --min-clip-s to --max-clip-s; each clip gets a stable
256x256 crop (smoothed similarity transform, stored with its affine for paste-back), an image-quality
score (clips below the threshold are rejected) and, when SyncNet weights are present, a sync check.

Runs on Ray Data (embedded local Ray by default, --address for a cluster) or in one process (--engine
local). Input and output may be local folders or pyarrow filesystem URIs (s3://..., gs://..., file://...).

The output folder holds clips/part-*.parquet (one row per clip, schema v1), rejects/rejects-*.parquet
(every rejected video or clip with its stage and reason), manifest.json (counts, reject reasons, per-stage
timings, config, versions) and runs/*.json. A killed run resumes: run the same command again."""

EPILOG = """examples:
  pt curate --source folder --input videos/ --output shards/
  pt curate --source voxceleb2 --input /data/vox2 --output s3://bucket/vox2-shards --address auto
  pt curate --source hdtf --input /data/HDTF --output hdtf/ --iqa-model hyperiqa-koniq --device cuda
  pt curate --summary shards/            # the report of a curated folder"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curate", help="turn raw VoxCeleb2 / CelebV-HQ / VFHQ / HDTF / folder videos into clip shards",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("input and output")
    io.add_argument("--source", choices=["voxceleb2", "celebvhq", "vfhq", "hdtf", "folder"],
                    help="layout of --input (corpus adapters read its metadata: speakers, windows, boxes)")
    io.add_argument("--input", help="the corpus root (local path or URI)")
    io.add_argument("--output", help="folder of shards to write or resume (local path or URI)")
    io.add_argument("--limit", type=int, help="only the first N videos (sorted by id)")
    io.add_argument("--summary", metavar="DIR", help="print the report of a curated folder and exit")
    clips = p.add_argument_group("clips")
    clips.add_argument("--min-clip-s", type=float, default=2.0, help="shortest clip in seconds (default 2)")
    clips.add_argument("--max-clip-s", type=float, default=10.0, help="longest clip in seconds (default 10)")
    clips.add_argument("--min-face-px", type=float, default=64.0,
                       help="smallest face height in source pixels (default 64)")
    clips.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality of the stored crops (default 95)")
    q = p.add_argument_group("filters")
    q.add_argument("--iqa-model", help="image-quality scorer (default: the weight-free pt-face-quality-v1; "
                                       "hyperiqa-koniq needs its weights, see `pt weights`)")
    q.add_argument("--iqa-threshold", type=float, help="keep clips scoring at least this (default: the model's)")
    q.add_argument("--iqa-every", type=int, help="score every k-th frame (default: the model's)")
    q.add_argument("--no-iqa", action="store_true", help="skip the image-quality stage")
    q.add_argument("--sync", choices=["auto", "on", "off"], default="auto",
                   help="SyncNet filter: auto = when syncnet_v2 weights are present (default)")
    q.add_argument("--sync-min-conf", type=float, default=3.0, help="minimum SyncNet confidence (default 3)")
    q.add_argument("--sync-max-offset", type=int, default=6, help="largest |AV offset| in frames (default 6)")
    g = p.add_argument_group("geometry")
    g.add_argument("--geometry", choices=["auto", "on", "off"], default="auto",
                   help="hybrid 3DMM fit of every clip (fills shape/expression/pose): auto = when a face model "
                        "is available (default), on = required, off = skip")
    g.add_argument("--face-model", help="converted face model .npz (default: $PT_FACE_MODEL or ICT-FaceKit light)")
    g.add_argument("--fit-max-error", type=float, default=8.0,
                   help="reject clips whose fit's mean landmark error exceeds this many px at 256 (default 8)")
    e = p.add_argument_group("engine")
    e.add_argument("--engine", choices=["ray", "local"], default="ray",
                   help="ray: Ray Data streaming (default); local: one process, the reference loop")
    e.add_argument("--address", help="an existing Ray cluster ('auto' or HOST:PORT); default: embedded local Ray")
    e.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all)")
    e.add_argument("--workers", type=int, help="face-mesh workers (default: one per CPU)")
    e.add_argument("--device", default="cpu", help="device of the model stages (cpu or cuda; default cpu)")
    e.add_argument("--shard-clips", type=int, default=64, help="clips per shard file (default 64)")
    e.add_argument("--weights-dir", help="pretrained weights folder (default: $PT_WEIGHTS_DIR)")
    e.add_argument("--random-weights", action="store_true",
                   help="TESTS ONLY: model stages with random weights (their scores mean nothing)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The :class:`~pipelines.config.CurateConfig` the options describe."""
    from pipelines.config import CurateConfig, EngineConfig, GeometryConfig, SyncConfig  # noqa: PLC0415
    from pt_data.extract import ExtractConfig  # noqa: PLC0415
    from pt_data.iqa import IQAConfig  # noqa: PLC0415
    from pt_data.sync_filter import SyncFilterConfig  # noqa: PLC0415
    from pt_data.tracks import TrackConfig  # noqa: PLC0415

    extract = ExtractConfig(track=TrackConfig(min_face_px=args.min_face_px, min_clip_s=args.min_clip_s,
                                              max_clip_s=args.max_clip_s), jpeg_quality=args.jpeg_quality)
    quality = None if args.no_iqa else IQAConfig(
        **({"model": args.iqa_model} if args.iqa_model else {}), threshold=args.iqa_threshold, every=args.iqa_every,
        device=args.device, random_weights=args.random_weights)
    sync = SyncConfig(mode=args.sync, filter=SyncFilterConfig(min_conf=args.sync_min_conf,
                                                              max_abs_offset=args.sync_max_offset,
                                                              device=args.device))
    geometry = GeometryConfig(mode=args.geometry, face_model=args.face_model, max_landmark_error_px=args.fit_max_error)
    engine = EngineConfig(engine=args.engine, address=args.address, num_cpus=args.num_cpus,
                          extract_workers=args.workers, device=args.device)
    return CurateConfig(source=args.source, input=args.input, output=args.output, extract=extract, quality=quality,
                        sync=sync, geometry=geometry, engine=engine, shard_clips=args.shard_clips, limit=args.limit,
                        weights_dir=args.weights_dir, random_weights=args.random_weights,
                        progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    from pipelines.curate import CurateConfigError, curate  # noqa: PLC0415
    from pipelines.sources.base import SourceLayoutError  # noqa: PLC0415
    from pipelines.summary import format_summary, summarize  # noqa: PLC0415
    from pt_data.shards import ShardError  # noqa: PLC0415
    from pt_data.face_model import FaceModelError  # noqa: PLC0415
    from pt_data.weights import MissingWeightsError  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.summary:
        try:
            print(summarize(args.summary))
            return 0
        except ShardError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    missing = [o for o, v in (("--source", args.source), ("--input", args.input), ("--output", args.output)) if not v]
    if missing:
        print(f"error: pt curate needs {', '.join(missing)} (or --summary DIR); see `pt curate --help`",
              file=sys.stderr)
        return 2
    if args.random_weights:
        print("warning: --random-weights: model-based scores are random and not comparable", file=sys.stderr)
    try:
        report = curate(config_from_args(args))
    except (SourceLayoutError, CurateConfigError, MissingWeightsError, FaceModelError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if report.items_done_before:
        print(f"resumed: {report.items_done_before} of {report.items_total} videos were already done")
    print(f"this run: {report.items_processed} videos, {report.clips_written} clips written, "
          f"{report.rejects_written} rejects, {report.wall_s:.1f} s\n")
    print(format_summary(report.manifest))
    print(f"\nwritten to {args.output} (manifest.json, clips/, rejects/)")
    return 0
