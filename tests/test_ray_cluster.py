"""`pt curate --address` against a real two-node Ray cluster started on this machine (`ray start` twice).

Starting a cluster takes ~10 s and `ray stop --force` at the end stops every Ray process of this machine,
so the test runs only when PT_TEST_RAY_CLUSTER=1 (as in the issue's closing note).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_curate import _clip_ids, assert_shard_contract

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(os.environ.get("PT_TEST_RAY_CLUSTER") != "1",
                                reason="starts and stops a real Ray cluster: set PT_TEST_RAY_CLUSTER=1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_node_cluster():
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    port = _free_port()
    common = ["--num-cpus=1", "--object-store-memory=400000000", "--disable-usage-stats"]
    ray = str(BIN / "ray")
    try:
        subprocess.run([ray, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                       check=True, env=env, capture_output=True, timeout=120)
        subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", *common], check=True, env=env,
                       capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.realdata
def test_curate_on_a_two_node_cluster(two_node_cluster, shared_data, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([str(BIN / "pt"), "curate", "--source", "folder", "--input", str(shared_data / "videos"),
                        "--output", str(out), "--address", two_node_cluster, "--workers", "2", "--no-progress"],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["runs"][-1]["ray_cluster"] == {"nodes": 2, "cpus": 2.0, "gpus": 0}
    ids = _clip_ids(out)
    assert len(ids) == len(set(ids)) == m["clips"] >= 5 and assert_shard_contract(out) == len(ids)
