"""``pt weights``: which pretrained files are present under the weights directory."""
from __future__ import annotations

import argparse
import json
import sys

from pt_data.weights import MissingWeightsError, WeightsChecksumError, WeightsRegistry
from pt_cli.table import format_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="show which pretrained weights are present and where to get the others",
                       description="List every pretrained network the toolkit can load, whether its file is present "
                                   "under the weights directory ($PT_WEIGHTS_DIR, default "
                                   "~/.cache/personatalk/weights), its licence and where to get it.")
    p.add_argument("--dir", help="weights directory (default: $PT_WEIGHTS_DIR or ~/.cache/personatalk/weights)")
    p.add_argument("--verify", action="store_true", help="check SHA-256 of present files where it is known")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--path", metavar="NAME", help="print the path of one entry, or why it is missing (exit 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    reg = WeightsRegistry(args.dir)
    if args.path:
        try:
            print(reg.path(args.path, verify=args.verify))
            return 0
        except (MissingWeightsError, WeightsChecksumError, KeyError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    rows = reg.status(verify=args.verify)
    if args.json:
        print(json.dumps([{"name": r.spec.name, "present": r.present, "path": str(r.path) if r.path else None,
                           "bundled_in": r.spec.bundled or None, "size_bytes": r.size_bytes,
                           "checksum_ok": r.checksum_ok, "source": r.spec.source, "licence": r.spec.licence,
                           "used_by": r.spec.used_by} for r in rows], indent=2))
        return 0
    table = []
    for r in rows:
        state = ("bundled" if r.spec.bundled else "present") if r.present else "MISSING"
        if r.checksum_ok is False:
            state = "BAD CHECKSUM"
        size = f"{r.size_bytes / 2**20:.1f} MiB" if r.size_bytes else ""
        table.append([r.spec.name, state, r.spec.filename, size, r.spec.licence, r.spec.used_by])
    print(f"weights directory: {reg.weights_dir}")
    print(format_table(["name", "status", "file", "size", "licence", "used by"], table))
    missing = [r for r in rows if not r.present]
    if missing:
        print(f"\n{len(missing)} missing. Where to get each: `pt weights --path NAME`.")
    return 0
