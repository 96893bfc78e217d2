"""Entry point of the ``pt`` command."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from pt_cli import bench_cmd, curate_cmd, demo_cmd, dub_cmd, fit_cmd, model_cmd, report_cmd, train_cmd, weights_cmd

EPILOG = """tasks:
  curate   raw videos -> clip shards          fit      3DMM coefficients of a video
  train    stage 1 / stage 2 / style encoder  dub      reference video + new audio -> dubbed video
  bench    metrics and leaderboards           report   figures of a benchmark run
  weights  pretrained files present/missing   demo     everything that has landed, end to end
  model    convert / inspect morphable face models (ICT-FaceKit, BFM, FLAME, 3DDFA)

`pt COMMAND --help` explains each. Pretrained weights are read from $PT_WEIGHTS_DIR."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="pt", description="PersonaTalk toolkit: curation, model, benchmark.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("personatalk")
    except PackageNotFoundError:
        v = "unknown"
    parser.add_argument("--version", action="version", version=f"%(prog)s {v}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    curate_cmd.add_parser(sub)
    fit_cmd.add_parser(sub)
    model_cmd.add_parser(sub)
    train_cmd.add_parser(sub)
    bench_cmd.add_parser(sub)
    report_cmd.add_parser(sub)
    dub_cmd.add_parser(sub)
    weights_cmd.add_parser(sub)
    demo_cmd.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pt`` with ``argv`` (default: the process arguments); returns the exit code."""
    # no hub downloads: every pretrained file comes through the weights registry
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
