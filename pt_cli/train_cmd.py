"""``pt train STAGE ...``: train stage 1, stage 2 or the style encoder (a thin layer over ``pt_model``).

Each stage lives in its own ``pt_model`` module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
:data:`TRAINERS` maps the subcommand to that module and a one-line summary. Modules are imported only when
their subcommand runs (``pt --help`` and ``pt train --help`` stay fast), so adding a stage is one entry
here. A registered module that is not importable yet answers with "not built yet" and exit code 3.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, NamedTuple, Sequence

EXIT_NOT_BUILT = 3


class Trainer(NamedTuple):
    """A ``pt train`` subcommand: the module holding ``add_arguments`` / ``run``, and a summary."""

    module: str
    summary: str


#: subcommand -> trainer module (stage 2 and style register here when they land).
TRAINERS: dict[str, Trainer] = {
    "stage1": Trainer("pt_model.stage1_train", "style-aware geometry construction (audio + style -> lower-face "
                                               "vertices)"),
    "stage2": Trainer("pt_model.stage2_train", "dual-attention face renderer (PNCC + references -> frames)"),
    "style": Trainer("pt_cli.style_cmd", "speaking-style encoder for the StyleSim metric"),
}

DESCRIPTION = """Train one PersonaTalk stage from clip shards.

Runs in one process, or on several GPUs under torchrun (torchrun --nproc_per_node N -m pt_cli.main train ...).
A run folder holds config.json, log.csv, val.csv, checkpoints/step_*.pt and checkpoints/last.pt; running
the same command again resumes exactly where the last checkpoint left off (another config is refused).

stages:
""" + "\n".join(f"  {name:<8} {t.summary}" for name, t in TRAINERS.items()) + """

`pt train STAGE --help` lists a stage's options."""

EPILOG = """examples:
  pt train stage1 --shards shards/ --out runs/s1 --preset tiny --max-steps 200
  pt train stage1 --shards shards/ --out runs/s1 --preset paper          # needs hubert-base-ls960 weights
  torchrun --nproc_per_node 8 -m pt_cli.main train stage1 --shards shards/ --out runs/s1"""


def load_trainer(name: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """``(add_arguments, run)`` of a registered stage; :class:`ModuleNotFoundError` when it is not built yet."""
    module = importlib.import_module(TRAINERS[name].module)
    return module.add_arguments, module.run


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``pt train`` on the top-level subparsers."""
    p = sub.add_parser("train", help="train stage 1 (geometry), stage 2 (renderer) or the style encoder",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=sorted(TRAINERS), metavar="STAGE", help=", ".join(TRAINERS))
    p.add_argument("stage_args", nargs=argparse.REMAINDER, help="the stage's options (see pt train STAGE --help)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Parse the stage's own options and run it."""
    return run_stage(args.stage, args.stage_args)


def run_stage(stage: str, argv: Sequence[str]) -> int:
    """``pt train STAGE argv...``: returns the exit code."""
    try:
        add_arguments, stage_run = load_trainer(stage)
    except ModuleNotFoundError as e:
        if e.name != TRAINERS[stage].module:
            raise
        print(f"`pt train {stage}` is not built yet ({TRAINERS[stage].module} is missing). Nothing was run.",
              file=sys.stderr)
        return EXIT_NOT_BUILT
    parser = argparse.ArgumentParser(prog=f"pt train {stage}", description=TRAINERS[stage].summary)
    add_arguments(parser)
    return int(stage_run(parser.parse_args(list(argv))) or 0)
