"""The curation pipeline end to end: bad inputs, the shard contract, resumption after a kill, both engines."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from bad_inputs import EXPECTED_CLIPS, EXPECTED_REJECTS, make_bad_inputs
from pipelines.config import CurateConfig, EngineConfig
from pipelines.curate import CurateConfigError, curate
from pipelines.ledger import scan_ledger
from pipelines.outcomes import clip_outcome, item_reject_id, outcome_table, reject_outcome
from pipelines.stages import commit_outcomes
from pipelines.summary import summarize
from pt_data.shards import discover_shards, iter_clip_rows, read_shard

PT = str(Path(sys.executable).with_name("pt"))


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad_inputs")
    make_bad_inputs(folder)
    return folder


def _cfg(inp, out, engine="local", **kw) -> CurateConfig:
    return CurateConfig(source="folder", input=str(inp), output=str(out), engine=EngineConfig(engine=engine, **kw),
                        progress=False)


def _clip_ids(out) -> list[str]:
    return [i for f in discover_shards(str(out)) for i in read_shard(f, columns=["clip_id"]).column("clip_id").to_pylist()]


def _rejects(out) -> dict[str, dict]:
    rows = [r for f in sorted(Path(out, "rejects").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    return {r["item_id"].split("/", 1)[1]: r for r in rows}


def assert_shard_contract(out) -> int:
    """Every clip: 25 fps, 256x256 JPEG frames, 640 samples per frame, landmarks finite and on the crop."""
    n = 0
    for f in discover_shards(str(out)):
        for row in iter_clip_rows(f):
            t = row["num_frames"]
            assert row["fps"] == 25 and len(row["frames"]) == t and t >= 50
            assert row["audio_num_samples"] == t * 640 == len(row["audio_pcm16"]) // 2
            for k in (0, t // 2, t - 1):
                assert Image.open(io.BytesIO(row["frames"][k])).size == (256, 256)
            lm = np.asarray(row["landmarks"]).reshape(t, 478, 2)
            assert np.isfinite(lm).all() and lm.min() > -32 and lm.max() < 288
            assert np.asarray(row["crop_affine"]).reshape(t, 2, 3).shape == (t, 2, 3)
            assert 0 <= row["iqa_score"] <= 100 and row["iqa_model"]
            if row["face_model_id"] is not None:  # the fit stage ran (a face model was available)
                assert np.asarray(row["pose"]).reshape(t, 6).shape == (t, 6)
                assert len(row["expression"]) % t == 0 and len(row["shape"]) > 0
                assert 0 < row["fit_landmark_error_px"] < 8 and np.isfinite(row["fit_jitter"])
            n += 1
    return n


def test_commit_and_ledger_account_for_every_outcome(tmp_path, clip_factory):
    clips = [dataclasses.replace(clip_factory(i, 5), clip_id=f"folder/a/{i:06d}-{i + 5:06d}") for i in (0, 5)]
    rows = [clip_outcome(c, "folder/a", 3) for c in clips]
    rows.append(reject_outcome(item_id="folder/a", item_total=3, outcome_id="folder/a/000010-000015",
                               stage="quality", reason="image quality 12.0 < 50", dataset="folder",
                               source_uri="/x/a.mp4", clip_id="folder/a/000010-000015"))
    rows.append(reject_outcome(item_id="folder/b", item_total=1, outcome_id=item_reject_id("folder/b"),
                               stage="probe", reason="/x/b.mp4: empty file (0 bytes)", dataset="folder",
                               source_uri="/x/b.mp4"))
    summary = commit_outcomes(outcome_table(rows[:1]), str(tmp_path))  # a killed run stored one outcome
    assert summary.column("kind").to_pylist() == ["clip"]
    led = scan_ledger(str(tmp_path))
    assert not led.is_done("folder/a") and led.stored_ids("folder/a") == {clips[0].clip_id}
    commit_outcomes(outcome_table(rows[1:]), str(tmp_path))
    led = scan_ledger(str(tmp_path))
    assert led.is_done("folder/a") and led.is_done("folder/b") and led.totals == {"folder/a": 3, "folder/b": 1}
    assert len(led.shard_files) == 2 and len(led.reject_files) == 1
    assert sorted(_clip_ids(tmp_path)) == [c.clip_id for c in clips]


def test_bad_inputs_are_rejected_with_reasons_or_handled(bad_dir, tmp_path):
    rep = curate(_cfg(bad_dir, tmp_path / "out"))
    rejects = _rejects(tmp_path / "out")
    assert {k: v["stage"] for k, v in rejects.items()} == EXPECTED_REJECTS
    assert "empty file" in rejects["zero_bytes"]["reason"]
    assert "no audio" in rejects["no_audio"]["reason"]
    assert "no face" in rejects["no_face"]["reason"] and "several faces" in rejects["two_faces"]["reason"]
    ids = _clip_ids(tmp_path / "out")
    assert sorted(i.split("/")[1] for i in ids) == sorted(EXPECTED_CLIPS)
    assert assert_shard_contract(tmp_path / "out") == 4
    short = [i for i in ids if "short_audio" in i][0]
    assert short.endswith("000000-000059")  # 2.36 s of audio under 2.8 s of video: the clip stops with the audio
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["clips"] == 4 and m["rejects"]["total"] == 6 and m["items"] == {"listed": 10, "done": 10, "with_clips": 4}
    assert m["timings"]["extract.landmarks"]["frames"] > 0 and m["timings"]["quality"]["frames"] > 0
    assert rep.items_processed == 10
    text = summarize(str(tmp_path / "out"))
    assert "clips       4" in text and "probe: cannot open as a video" in text


def test_rerun_is_a_no_op_and_other_settings_are_refused(bad_dir, tmp_path):
    sub = tmp_path / "in"
    sub.mkdir()
    for name in ("mp3_audio.mp4", "zero_bytes.mp4"):
        shutil.copy(bad_dir / name, sub / name)
    out = tmp_path / "out"
    curate(_cfg(sub, out))
    before = sorted(p.name for p in out.rglob("*.parquet"))
    rep = curate(_cfg(sub, out))
    assert rep.items_done_before == 2 and rep.items_processed == 0
    assert sorted(p.name for p in out.rglob("*.parquet")) == before
    cfg = _cfg(sub, out)
    cfg.extract.track.min_clip_s = 1.0
    with pytest.raises(CurateConfigError, match="extract"):
        curate(cfg)


@pytest.mark.realdata
def test_killed_run_resumes_with_the_same_clips_each_once(shared_data, tmp_path):
    videos = shared_data / "videos"
    clean = tmp_path / "clean"
    curate(_cfg(videos, clean))
    want = sorted(_clip_ids(clean))
    assert len(want) >= 5 and assert_shard_contract(clean) == len(want)
    geometry = json.loads((clean / "manifest.json").read_text())["geometry"]
    assert geometry["status"] == "fitted" and geometry["face_model_id"].startswith("ict-light-face:")
    out = tmp_path / "killed"
    cmd = [PT, "curate", "--source", "folder", "--input", str(videos), "--output", str(out), "--engine", "local",
           "--shard-clips", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "clips").glob("part-*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = sorted(_clip_ids(out))
    assert 2 <= len(partial) < len(want) and set(partial) <= set(want)
    assert not (out / "manifest.json").exists()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    got = _clip_ids(out)
    assert sorted(got) == want and len(got) == len(set(got))
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["runs"]) == 2 and m["runs"][0]["finished"] is None and m["clips"] == len(want)


@pytest.mark.slow
def test_ray_engine_gives_the_same_outcomes_as_the_local_loop(bad_dir, tmp_path):
    curate(_cfg(bad_dir, tmp_path / "local"))
    curate(_cfg(bad_dir, tmp_path / "ray", engine="ray", num_cpus=2))
    assert sorted(_clip_ids(tmp_path / "ray")) == sorted(_clip_ids(tmp_path / "local"))
    assert {k: v["stage"] for k, v in _rejects(tmp_path / "ray").items()} == EXPECTED_REJECTS


def test_cli_curate_help_and_errors(tmp_path):
    r = subprocess.run([PT, "curate", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--source" in r.stdout and "resume" in r.stdout
    r = subprocess.run([PT, "curate", "--source", "folder"], capture_output=True, text=True)
    assert r.returncode == 2 and "--input" in r.stderr
    r = subprocess.run([PT, "curate", "--source", "folder", "--input", str(tmp_path), "--output",
                        str(tmp_path / "o"), "--engine", "local"], capture_output=True, text=True)
    assert r.returncode == 1 and "no video found" in r.stderr
    r = subprocess.run([PT, "curate", "--summary", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "no manifest" in r.stderr


def test_uri_input_and_output(bad_dir, tmp_path):
    sub = tmp_path / "in"
    sub.mkdir()
    shutil.copy(bad_dir / "mp3_audio.mp4", sub / "a.mp4")
    shutil.copy(bad_dir / "text_as_video.mp4", sub / "b.mp4")
    rep = curate(_cfg(f"file://{sub}", f"file://{tmp_path / 'out'}"))
    assert rep.clips_written == 1 and rep.rejects_written == 1
    assert _clip_ids(tmp_path / "out") == ["folder/a/000000-000070"]
    assert _rejects(tmp_path / "out")["b"]["source_uri"] == f"file://{sub / 'b.mp4'}"


def test_sync_stage_marks_or_rejects_clips_and_needs_weights_when_on(bad_dir, tmp_path):
    from pipelines.config import SyncConfig
    from pipelines.stages import SyncStage, build_stages
    from pt_data.weights import MissingWeightsError

    curate(_cfg(bad_dir, tmp_path / "out"))
    row = next(iter_clip_rows(discover_shards(str(tmp_path / "out"))[0]))
    row.update(item_id="folder/x", item_total=1, outcome_id=row["clip_id"], kind="clip", work_json=None)
    stage = SyncStage(SyncConfig(mode="on"), weights_dir=str(tmp_path), random_weights=True)
    out = stage(outcome_table([row])).to_pylist()[0]
    assert out["sync_conf"] is not None and out["sync_offset"] is not None  # measured (random weights)
    assert out["kind"] == "clip" or out["reject_stage"] == "sync"
    cfg = _cfg(bad_dir, tmp_path / "o2")
    cfg.sync, cfg.weights_dir = SyncConfig(mode="on"), str(tmp_path)
    with pytest.raises(MissingWeightsError, match="syncnet_v2.model"):
        SyncStage(**build_stages(cfg)[2].kwargs)
