"""The `pt` command line: help for every subcommand, usage errors, weights table, demo."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pt_cli.main import main

COMMANDS = ("curate", "fit", "model", "train", "dub", "bench", "report", "weights", "demo")


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for c in COMMANDS:
        assert c in out


@pytest.mark.parametrize("name", COMMANDS)
def test_every_subcommand_explains_itself(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert f"pt {name}" in capsys.readouterr().out


def test_unknown_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "video.mp4", "--out", "x", "--no-such-option"])
    assert e.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_weights_table_and_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PT_WEIGHTS_DIR", str(tmp_path))
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "syncnet_v2" in out and "MISSING" in out
    assert main(["weights", "--path", "syncnet_v2"]) == 1
    assert "syncnet_python" in capsys.readouterr().err
    (tmp_path / "syncnet_v2.model").write_bytes(b"x")
    assert main(["weights", "--path", "syncnet_v2"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "syncnet_v2.model")


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "pt_cli.main", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "demo" in r.stdout


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    from pt_cli.demo_cmd import DemoConfig, run_demo
    from pt_data.shards import discover_shards, read_manifest

    res = run_demo(DemoConfig(out=str(tmp_path / "demo"), num_samples=2, speech="synthetic"))
    assert len(discover_shards(res.shards)) == 1
    assert read_manifest(res.shards)["counts"]["clips"] == 2
    import cv2

    sheet = cv2.imread(res.contact_sheet)
    assert sheet.shape[:2] == (2 * 256, 6 * 256)
