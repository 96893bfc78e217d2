"""The `pt` command line: help for every subcommand, planned ones exit non-zero, weights table, demo."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pt_cli.main import main
from pt_cli.planned import EXIT_NOT_BUILT, PLANNED

COMMANDS = ("curate", "fit", "model", "train", "dub", "bench", "report", "weights", "demo")


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for c in COMMANDS:
        assert c in out


@pytest.mark.parametrize("name", sorted(PLANNED))
def test_planned_commands_explain_and_exit_non_zero(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == EXIT_NOT_BUILT
    captured = capsys.readouterr()
    assert f"pt {name}" in captured.out and f"issue #{PLANNED[name][0]}" in captured.err
    with pytest.raises(SystemExit) as e:
        main([name, "--some", "args"])
    assert e.value.code == EXIT_NOT_BUILT


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
