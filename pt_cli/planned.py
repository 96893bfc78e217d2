"""Subcommands whose issue has not landed yet: a real ``--help`` that says so, and a non-zero exit."""
from __future__ import annotations

import argparse
import sys

EXIT_NOT_BUILT = 3

#: name -> (issue, one-line summary, what it will do)
PLANNED = {
    "dub": (6, "dub a reference video with a new audio track",
            "pt dub --video REF.mp4 --audio NEW.wav --out OUT.mp4 [--checkpoint RUN]"),
}


class _NotBuilt(argparse.Action):
    """Prints the planned usage and the issue, then exits non-zero (also for --help)."""

    def __init__(self, option_strings, dest, name: str = "", **kw):
        super().__init__(option_strings, dest, nargs=0, **kw)
        self.name = name

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        _say_not_built(self.name)


def _say_not_built(name: str) -> None:
    issue, _, _ = PLANNED[name]
    print(f"\n`pt {name}` is not built yet: it lands with issue #{issue}. Nothing was run.", file=sys.stderr)
    sys.exit(EXIT_NOT_BUILT)


def add_planned(sub: argparse._SubParsersAction, name: str) -> None:
    """Register a planned subcommand whose help describes it and whose every use exits non-zero."""
    issue, summary, usage = PLANNED[name]
    p = sub.add_parser(name, help=f"{summary} [not built yet: issue #{issue}]", add_help=False,
                       description=f"{summary}.\n\nPlanned usage:\n  {usage}\n\n"
                                   f"Status: not built yet (issue #{issue}); this command exits with code "
                                   f"{EXIT_NOT_BUILT}.", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action=_NotBuilt, name=name, help="show this help and exit")
    p.set_defaults(func=lambda args: _say_not_built(name))
