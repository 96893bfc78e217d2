"""Pinning a CPU-bound worker to a core of its own (one per core, per machine).

Ray places a ``num_cpus=1`` actor on a node but lets the OS move its threads across all cores; with one
face-mesh worker per core that costs ~15 % of throughput on small machines (measured in
``benchmarks/bench_curate.py``). A worker claims the first free core by taking an exclusive ``flock`` on a
per-core lock file; the OS releases it when the process exits, so a crashed worker never leaks a core.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from typing import IO


def claim_core(namespace: str = "pt-curate") -> tuple[int, IO] | None:
    """Pin this process to the first unclaimed core of its allowed set; ``(core, lock file)`` or None.

    Keep the returned file open for as long as the core is used. Returns None (and pins nothing) when every
    core is taken or the platform has no CPU affinity.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    for core in sorted(os.sched_getaffinity(0)):
        f = open(os.path.join(tempfile.gettempdir(), f".{namespace}-core-{core}.lock"), "a")  # noqa: SIM115
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        os.sched_setaffinity(0, {core})
        return core, f
    return None
