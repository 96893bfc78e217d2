"""Stage 1 (style-aware geometry) and the shared training loop: shapes, ablation, data, learning, resume."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from stage1_synth import write_synth_shards

from pt_data.weights import MissingWeightsError, WeightsRegistry
from pt_model.audio_encoder import AudioEncoder, AudioEncoderConfig
from pt_model.stage1 import canonical_mouth_opening, mouth_opening, render_pncc
from pt_model.stage1_data import (MissingGeometryError, Stage1WindowDataset, check_geometry, load_validation_clips,
                                  sample_windows)
from pt_model.stage1_train import Stage1Task, load_stage1, preset_config, preset_loop_defaults
from pt_model.train_loop import (ConfigMismatchError, TrainLoopConfig, load_checkpoint, read_checkpoint, read_log,
                                 train)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The CI box is small and shared: intra-op threads only add contention for these tiny models."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def face_model():
    from pt_data.face_model_convert import default_face_model

    try:
        return default_face_model()
    except Exception as e:  # noqa: BLE001 - the ICT arrays live in the shared data
        pytest.skip(f"default face model not available: {e}")


@pytest.fixture(scope="module")
def shards(tmp_path_factory, face_model):
    return write_synth_shards(tmp_path_factory.mktemp("synth"), face_model, num_clips=4, num_frames=60)


def tiny_config(shards, **data):
    return preset_config("tiny", str(shards), data={"window": 8, "style_frames": 16, "style_min_frames": 8,
                                                    "context_frames": 1, **data})


def tiny_loop(out, **kw):
    base = {**preset_loop_defaults("tiny"), "batch_size": 4, "log_every": 1, "val_every": 0, "ckpt_every": 4,
            "progress": False}
    base.update(kw)
    return TrainLoopConfig(out=out, **base)


def batch_of(task, n=3, seed=0):
    ds = task.train_dataset(seed)
    items = [x for _, x in zip(range(n), ds)]
    return {k: torch.as_tensor(np.stack([it[k] for it in items])) for k in items[0]}


# --------------------------------------------------------------------------------------------- shapes
def test_audio_encoder_gives_one_feature_per_frame():
    enc = AudioEncoder(AudioEncoderConfig(init="random", size="tiny", freeze="feature_extractor"), dim=24)
    out = enc(torch.randn(2, 13 * 640), 13)
    assert out.shape == (2, 13, 24)
    assert not any(p.requires_grad for p in enc.hubert.feature_extractor.parameters())
    assert any(p.requires_grad for p in enc.hubert.encoder.parameters())
    frozen = AudioEncoder(AudioEncoderConfig(init="random", size="tiny", freeze="all"), dim=24).train()
    assert not any(p.requires_grad for p in frozen.hubert.parameters()) and not frozen.hubert.training


def test_model_shapes_and_full_mesh(shards, face_model):
    task = Stage1Task(tiny_config(shards), face_model=face_model)
    model = task.build_model().eval()
    b = batch_of(task)
    pred = model(b["audio"], b["shape"], b["style_expression"], b["style_mask"], context_frames=1)
    ld = len(model.sets.decoder)
    assert pred.shape == (3, 8, ld, 3)
    # the zero-initialised decoder starts at the identity template (neutral mouth)
    torch.testing.assert_close(pred, model.template_vertices(b["shape"])[:, None].expand_as(pred))
    geo = model.geometry(b["audio"], b["shape"], b["expression"], b["style_expression"], b["style_mask"],
                         pose=b["pose"], context_frames=1)
    assert geo.vertices.shape == (3, 8, face_model.num_vertices, 3) and geo.lifted
    gt = torch.as_tensor(face_model.vertices(b["shape"].numpy()[:, None], b["expression"].numpy()))
    upper = torch.as_tensor(face_model.vertex_ids("upper_face"))
    torch.testing.assert_close(geo.vertices[:, :, upper], gt[:, :, upper])  # upper face copied from the truth
    torch.testing.assert_close(geo.vertices[:, :, model.dec_ids], pred)  # decoded vertices kept exactly
    # lifting a ground-truth decoded subset recovers the whole ground-truth lower face
    full, lifted = model.full_mesh(model.lower_face_vertices(b["shape"], b["expression"]), b["shape"], b["expression"])
    assert lifted and (full - gt).norm(dim=-1).max() < 0.05  # mm
    from pt_data.render import PNCCRenderer

    out = render_pncc(replace(geo, vertices=geo.vertices[:1, :2], pose=geo.pose[:1, :2]), face_model,
                      PNCCRenderer(face_model, size=64))
    assert out.pncc.shape == (2, 3, 64, 64) and out.mask.sum() > 100 and out.lip_mask.sum() > 0


def test_bf16_autocast_keeps_geometry_in_float32(shards, face_model):
    """The CUDA path autocasts to bf16; mesh arithmetic in mm must stay float32 (checked with CPU autocast)."""
    task = Stage1Task(tiny_config(shards), face_model=face_model)
    model = task.build_model()
    b = batch_of(task, n=2)
    ref = model.lower_face_vertices(b["shape"], b["expression"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, parts = task.loss(model, b, 0)
        tgt = model.lower_face_vertices(b["shape"], b["expression"])
    loss.backward()
    assert tgt.dtype == torch.float32 and torch.equal(tgt, ref) and np.isfinite(parts["loss_vertex"])
    assert model.vertex_decoder.net[-1].weight.grad is not None


def test_mouth_opening_grows_with_jaw(face_model):
    e = np.zeros((5, face_model.num_expression), np.float32)
    e[:, face_model.exp_names.index("jawOpen")] = np.linspace(0, 1, 5)
    mo = canonical_mouth_opening(face_model, np.zeros(face_model.num_shape, np.float32), e)
    assert mo.shape == (5,) and np.all(np.diff(mo) > 0.05)
    pts = torch.tensor([[0, 1, 0], [0, -1, 0], [-2, 0, 0], [2, 0, 0]], dtype=torch.float32)
    assert float(mouth_opening(pts)) == pytest.approx(0.5)  # gap 2 / width 4


# ---------------------------------------------------------------------------------------------- style
def test_style_off_ablation(shards, face_model):
    on = Stage1Task(tiny_config(shards), face_model=face_model).build_model()
    off_cfg = preset_config("tiny", str(shards), use_style=False, data={"window": 8, "context_frames": 1})
    off = Stage1Task(off_cfg, face_model=face_model).build_model()
    assert on.style_proj is not None and off.style_proj is None
    assert on.num_parameters() - off.num_parameters() == sum(p.numel() for p in on.style_proj.parameters())
    b = batch_of(Stage1Task(tiny_config(shards), face_model=face_model))
    with torch.no_grad():  # a non-zero decoder so that outputs can differ
        for m in (on, off):
            torch.nn.init.normal_(m.vertex_decoder.net[-1].weight, std=0.05)
    other = torch.rand_like(b["style_expression"])
    on.eval(), off.eval()
    p1 = on(b["audio"], b["shape"], b["style_expression"], b["style_mask"], context_frames=1)
    p2 = on(b["audio"], b["shape"], other, b["style_mask"], context_frames=1)
    assert (p1 - p2).abs().max() > 1e-4  # style changes the geometry ...
    q1 = off(b["audio"], b["shape"], None, None, context_frames=1)
    torch.testing.assert_close(q1, off(b["audio"], b["shape"], other, b["style_mask"], context_frames=1))
    with pytest.raises(RuntimeError, match="use_style=False"):  # ... and is absent from the ablation
        off.style_embedding(b["style_expression"])


def test_style_windows_are_disjoint_from_targets():
    rng = np.random.default_rng(0)
    for t in (24, 31, 60, 200):
        for _ in range(200):
            t0, s0, n = sample_windows(t, 8, 16, 6, rng)
            assert 0 <= t0 <= t - 8 and 6 <= n <= 16 and 0 <= s0 and s0 + n <= t
            assert s0 + n <= t0 or s0 >= t0 + 8
    assert sample_windows(13, 8, 16, 6, rng) is None


def test_training_items_take_style_from_another_window_of_the_same_clip(shards, face_model):
    from pt_data.shards import discover_shards, iter_clips

    clips = {c.clip_id: c for f in discover_shards(str(shards)) for c in iter_clips(f)}
    cfg = tiny_config(shards).data
    seen = 0
    for item in Stage1WindowDataset(cfg, seed=3):
        exp, style = item["expression"], item["style_expression"][item["style_mask"]]
        owner = [c for c in clips.values() if any(np.array_equal(exp[0], e) for e in c.expression)]
        assert len(owner) == 1
        c = owner[0]
        rows = lambda block: [int(np.flatnonzero((c.expression == r).all(1))[0]) for r in block]  # noqa: E731
        tgt, sty = rows(exp), rows(style)
        assert tgt == list(range(tgt[0], tgt[0] + 8)) and sty == list(range(sty[0], sty[0] + len(sty)))
        assert not set(tgt) & set(sty)  # the style never sees the target frames
        held_out = int(np.floor(c.num_frames * 0.8))
        assert max(tgt + sty) < held_out  # nor the validation tail
        seen += 1
    assert seen == 4 * cfg.windows_per_clip
    val = load_validation_clips(cfg)
    assert len(val) == 4 and all(len(v.item["expression"]) == 60 - 48 for v in val)


# ------------------------------------------------------------------------------------------- learning
def test_overfits_a_tiny_shard(shards, face_model, tmp_path):
    task = Stage1Task(tiny_config(shards), face_model=face_model)
    res = train(task, tiny_loop(tmp_path / "run", max_steps=250, lr=3e-3, schedule="constant", log_every=10,
                                ckpt_every=0, val_every=250))
    losses = [r["loss"] for r in read_log(tmp_path / "run" / "log.csv")]
    first, last = losses[0], float(np.mean(losses[-3:]))
    assert first / last > 5, (first, last, losses)
    assert res.val["lve_mm"] < res.val["lve_baseline_mm"]  # beats the speaker's mean mouth on held-out tails
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_resume_reproduces_the_uninterrupted_run(shards, face_model, tmp_path):
    task = Stage1Task(tiny_config(shards), face_model=face_model)
    kw = dict(max_steps=11, ckpt_every=4, val_every=11)  # 16 windows / 4 = 4 batches per epoch: crosses epochs
    full = train(task, tiny_loop(tmp_path / "a", **kw))
    part = train(task, tiny_loop(tmp_path / "b", stop_at=6, **kw))
    assert part.step == 6
    resumed = train(task, tiny_loop(tmp_path / "b", **kw))
    assert resumed.resumed_from == 6 and resumed.step == 11
    a, b = read_log(tmp_path / "a" / "log.csv"), read_log(tmp_path / "b" / "log.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 12))
    for ra, rb in zip(a, b):
        for k in ("loss", "loss_vertex", "loss_velocity", "loss_lip", "lr", "epoch"):
            assert abs(ra[k] - rb[k]) <= 1e-6, (k, ra, rb)
    assert full.val == pytest.approx(resumed.val, rel=1e-6)
    ckpt = read_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 11 and ckpt["data"][0]["epoch"] == 2 and "python" in ckpt["rng"][0]
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["task_config"]["audio_encoder"] == "audio encoder: random init (tiny preset)"


def test_other_config_is_refused(shards, face_model, tmp_path):
    task = Stage1Task(tiny_config(shards), face_model=face_model)
    train(task, tiny_loop(tmp_path / "run", max_steps=2, val_every=0))
    other = Stage1Task(tiny_config(shards, window=12), face_model=face_model)
    with pytest.raises(ConfigMismatchError, match="data.window: 8 != 12"):
        train(other, tiny_loop(tmp_path / "run", max_steps=2))
    with pytest.raises(ConfigMismatchError, match="'stage1' checkpoint, not 'stage2'"):
        load_checkpoint(tmp_path / "run", expect_task="stage2")
    with pytest.raises(ConfigMismatchError, match="window"):
        load_checkpoint(tmp_path / "run", expect_task="stage1", expect_config=other.config_dict())
    model, cfg = load_stage1(tmp_path / "run", face_model=face_model)  # rebuilt without any pretrained folder
    state, _, step = load_checkpoint(tmp_path / "run", expect_task="stage1")
    assert step == 2 and all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ConfigMismatchError, match="dim"):
        load_stage1(tmp_path / "run", face_model=face_model, expect=replace(cfg.model, dim=64))


# --------------------------------------------------------------------------------------- clear errors
def test_paper_preset_needs_pretrained_hubert(shards, face_model, tmp_path):
    cfg = preset_config("paper", str(shards))
    with pytest.raises(MissingWeightsError, match="hubert-base-ls960"):
        Stage1Task(cfg, registry=WeightsRegistry(tmp_path / "empty"), face_model=face_model)
    rnd = preset_config("paper", str(shards), random_audio_encoder=True)
    assert rnd.model.audio.init == "random" and "NOT pretrained" in rnd.audio_encoder
    assert rnd.model.vertex_stride == 1 and rnd.model.dim == 512


def test_shards_without_geometry_are_refused(tmp_path, face_model):
    root = write_synth_shards(tmp_path / "nofit", face_model, num_clips=2, num_frames=30, geometry=False)
    with pytest.raises(MissingGeometryError, match="fitting enabled"):
        check_geometry(str(root), face_model.model_id)
    from pt_cli.train_cmd import run_stage

    rc = run_stage("stage1", ["--shards", str(root), "--out", str(tmp_path / "run"), "--preset", "tiny",
                              "--max-steps", "1"])
    assert rc == 1 and not (tmp_path / "run").exists()
    with pytest.raises(MissingGeometryError, match="face model"):
        check_geometry(str(write_synth_shards(tmp_path / "fit", face_model, num_clips=1, num_frames=30)), "other:1")


def test_cli_tiny_run_writes_a_checkpoint(shards, tmp_path, capsys):
    from pt_cli.train_cmd import run_stage

    out = tmp_path / "run"
    rc = run_stage("stage1", ["--shards", str(shards), "--out", str(out), "--preset", "tiny", "--max-steps", "2",
                              "--batch-size", "2", "--window", "8", "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == ["last.pt", "step_0000002.pt"]
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2 and "lve_mm" in summary["val"]
