"""Stage 1 (style-aware geometry) and the shared training loop: shapes, ablation, data, learning, resume."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from stage1_synth import write_synth_shards

from pt_data.audio import audio_for_frames
from pt_data.shard_schema import SAMPLES_PER_FRAME
from pt_data.weights import MissingWeightsError, WeightsRegistry
from pt_model.audio_encoder import (AudioEncoder, AudioEncoderConfig, LogMelSpectrogram, MelAudioEncoder,
                                    MelEncoderConfig, build_audio_encoder, mel_filterbank)
from pt_model.stage1 import canonical_mouth_opening, mouth_opening, render_pncc
from pt_model.stage1_data import (MissingGeometryError, Stage1WindowDataset, check_geometry, load_validation_clips,
                                  sample_windows)
from pt_model.stage1_train import Stage1Task, load_stage1, preset_config, preset_loop_defaults
from pt_model.train_loop import (ConfigMismatchError, TrainLoopConfig, load_checkpoint, read_checkpoint, read_log,
                                 train)


pytestmark = pytest.mark.usefixtures("one_thread")  # fixtures one_thread / face_model: tests/conftest.py


@pytest.fixture(scope="module")
def shards(tmp_path_factory, face_model):
    return write_synth_shards(tmp_path_factory.mktemp("synth"), face_model, num_clips=4, num_frames=60)


def tiny_config(shards, audio_encoder=None, **data):
    return preset_config("tiny", str(shards), audio_encoder=audio_encoder,
                         data={"window": 8, "style_frames": 16, "style_min_frames": 8, "context_frames": 1,
                               "windows_per_clip": 4, **data})


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


def test_mel_filterbank_and_spectrogram_match_torchaudio():
    taf = pytest.importorskip("torchaudio.functional")
    ta = pytest.importorskip("torchaudio.transforms")
    fb = mel_filterbank(257, 80, 16000)
    ref = taf.melscale_fbanks(257, 0.0, 8000.0, 80, 16000, norm=None, mel_scale="htk").numpy()
    np.testing.assert_allclose(fb, ref, atol=1e-5)
    assert (fb.sum(0) > 0).all()  # no empty band at 80 mels over a 512-point FFT
    cfg = MelEncoderConfig()
    wave = torch.randn(2, 9 * SAMPLES_PER_FRAME, generator=torch.Generator().manual_seed(0)) * 0.1
    ours = LogMelSpectrogram(cfg).power_mel(wave)
    # the same spectrogram: torchaudio without centring on the signal padded by (n_fft - hop) / 2 each side
    spec = ta.MelSpectrogram(16000, n_fft=512, win_length=400, hop_length=160, n_mels=80, center=False, power=2.0,
                             norm=None, mel_scale="htk")
    theirs = spec(torch.nn.functional.pad(wave, (176, 176)))
    assert ours.shape == theirs.shape == (2, 80, 36)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.max()))


def test_log_mel_has_four_frames_per_video_frame_aligned_with_it():
    lm = LogMelSpectrogram(MelEncoderConfig())
    t, burst = 12, 5
    wave = torch.zeros(1, t * SAMPLES_PER_FRAME)
    n = torch.arange(SAMPLES_PER_FRAME)
    wave[0, burst * SAMPLES_PER_FRAME:(burst + 1) * SAMPLES_PER_FRAME] = 0.5 * torch.sin(2 * np.pi * 1000 * n / 16000)
    energy = lm.power_mel(wave)[0].sum(0)  # (4 T,)
    assert energy.shape == (4 * t,)
    inside = energy[4 * burst:4 * burst + 4]
    # frames centred inside the burst's 40 ms carry its energy; frames two hops or more away carry none
    assert inside.min() > 0.3 * inside.max()
    outside = torch.cat([energy[:4 * burst - 1], energy[4 * burst + 5:]])
    assert outside.max() < 1e-6 * inside.max()
    # a window cut with audio_for_frames gives the same frames as the whole clip (away from the zero padding)
    clip = np.random.default_rng(1).integers(-8000, 8000, 40 * SAMPLES_PER_FRAME).astype(np.int16)
    full = lm(torch.as_tensor(clip / 32768.0, dtype=torch.float32)[None])[0]
    win = audio_for_frames(clip, 10, 8, context=2 * SAMPLES_PER_FRAME)
    part = lm(torch.as_tensor(win / 32768.0, dtype=torch.float32)[None])[0]  # frames 8 .. 20 of the clip
    torch.testing.assert_close(part[:, 4:-4], full[:, 4 * 8 + 4:4 * 20 - 4], rtol=1e-4, atol=1e-4)


def test_mel_audio_encoder_shapes_and_training_augmentation():
    cfg = AudioEncoderConfig(kind="mel", mel=MelEncoderConfig(channels=8, time_masks=2, freq_masks=2))
    assert cfg.init == "random" and cfg.resolved() is cfg  # no weights to look up
    enc = build_audio_encoder(cfg, dim=24)
    assert isinstance(enc, MelAudioEncoder)
    wave = torch.randn(3, 13 * SAMPLES_PER_FRAME) * 0.1
    enc.eval()
    out = enc(wave, 13)
    assert out.shape == (3, 13, 24) and torch.equal(out, enc(wave, 13))  # deterministic in eval mode
    enc.train()
    torch.manual_seed(0)
    a = enc.features(wave, 13)
    assert a.shape == (3, 80, 52) and (a == 0).float().mean() > 0.02  # masks are set to the standardised mean
    assert not torch.equal(a, enc.features(wave, 13))  # fresh masks every call
    m = enc.cfg.mel
    m.time_masks = m.freq_masks = 0
    with torch.no_grad():
        clean = enc.features(wave, 13)  # training mode: batch statistics, the same for the same batch
        m.noise_std = 0.5
        assert float((enc.features(wave, 13) - clean).std()) == pytest.approx(0.5, rel=0.1)
    with pytest.raises(ValueError, match="fewer than"):
        enc(wave, 14)
    with pytest.raises(ValueError, match="HuBERT"):
        AudioEncoder(cfg, dim=24)
    with pytest.raises(ValueError, match="must divide"):
        MelEncoderConfig(hop_ms=15.0)


def test_model_shapes_and_full_mesh(shards, face_model):
    task = Stage1Task(tiny_config(shards), face_model=face_model)
    model = task.build_model().eval()
    b = batch_of(task)
    pred = model(b["audio"], b["shape"], b["style_expression"], b["style_mask"], context_frames=1)
    ld = len(model.sets.decoder)
    assert pred.shape == (3, 8, ld, 3)
    # the tiny preset's zero-initialised decoder starts at the speaker's mean mouth (style residual) ...
    mean = model.style_mean_expression(b["style_expression"], b["style_mask"])
    mean_ref = np.stack([e[m].mean(0) for e, m in zip(b["style_expression"].numpy(), b["style_mask"].numpy())])
    np.testing.assert_allclose(mean.numpy(), mean_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pred, model.lower_face_vertices(b["shape"], mean[:, None].expand(-1, 8, -1)))
    # ... the paper's vertex decoder without the residual at the identity template (neutral mouth)
    paper_like = Stage1Task(preset_config("tiny", str(shards), audio_encoder="hubert"), face_model=face_model)
    net = paper_like.build_model().eval()
    assert net.cfg.decoder_space == "vertex" and not net.cfg.style_residual
    p2 = net(b["audio"], b["shape"], b["style_expression"], b["style_mask"], context_frames=1)
    torch.testing.assert_close(p2, net.template_vertices(b["shape"])[:, None].expand_as(p2))
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

    def span_residual(m):  # mm: distance of random-decoder outputs from the blendshape span
        with torch.no_grad():
            torch.nn.init.normal_(m.vertex_decoder.net[-1].weight, std=0.05)
            out = m(b["audio"], b["shape"], b["style_expression"], b["style_mask"], context_frames=1)
            tmpl = m.template_vertices(b["shape"])[:, None]
            beta = (out - tmpl).flatten(-2) @ m.lift.T
            return float(((tmpl + (beta @ m.dec_exp).view(out.shape)) - out).norm(dim=-1).max())

    assert span_residual(model) < 0.05 < 0.5 < span_residual(net)  # expression space vs vertex space


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


def test_tiny_preset_audio_encoders():
    mel = preset_config("tiny", "x")
    assert mel.model.audio.kind == "mel" and mel.audio_encoder == "audio encoder: log-mel conv (no pretrained weights)"
    assert mel.model.decoder_space == "expression" and mel.model.style_residual
    assert not preset_config("tiny", "x", use_style=False).model.style_residual  # the ablation sees no style frame
    hub = preset_config("tiny", "x", audio_encoder="hubert")
    assert hub.model.audio.kind == "hubert" and hub.audio_encoder == "audio encoder: random init (tiny preset)"
    assert preset_config("paper", "x").model.audio.kind == "hubert"  # the paper preset stays HuBERT
    with pytest.raises(ValueError, match="use_style"):
        replace(mel.model, use_style=False, style_residual=True).__post_init__()


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
    # the inner split: only the first half of each clip exists (30 frames: train on 24, validate on 24-30)
    inner = replace(cfg, clip_fraction=0.5)
    for item in Stage1WindowDataset(inner, seed=3):
        c = next(c for c in clips.values() if any(np.array_equal(item["expression"][0], e) for e in c.expression))
        used = np.concatenate([item["expression"], item["style_expression"][item["style_mask"]]])
        assert max(int(np.flatnonzero((c.expression == r).all(1))[0]) for r in used) < 24
    val = load_validation_clips(inner)
    c0 = clips[val[0].clip_id]
    assert all(len(v.item["expression"]) == 6 for v in val)
    np.testing.assert_array_equal(val[0].item["expression"], c0.expression[24:30])
    np.testing.assert_array_equal(val[0].head_expression, c0.expression[:24])


# ------------------------------------------------------------------------------------------- learning
def test_overfits_a_tiny_shard(shards, face_model, tmp_path):
    """The paper's architecture (vertex decoder from the template; tiny random HuBERT) fits the synthetic shard."""
    task = Stage1Task(tiny_config(shards, audio_encoder="hubert"), face_model=face_model)
    res = train(task, tiny_loop(tmp_path / "run", max_steps=250, lr=3e-3, schedule="constant", log_every=10,
                                ckpt_every=0, val_every=250))
    losses = [r["loss"] for r in read_log(tmp_path / "run" / "log.csv")]
    first, last = losses[0], float(np.mean(losses[-3:]))
    assert first / last > 5, (first, last, losses)
    assert res.val["lve_mm"] < res.val["lve_baseline_mm"]  # beats the speaker's mean mouth on held-out tails
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_mel_preset_learns_the_jaw_from_the_audio(shards, face_model, tmp_path):
    """The tiny preset (log-mel encoder, expression-space residual on the style mean, regularised) starts at the
    speaker's mean mouth and learns the audio-driven jaw of the synthetic clips: held-out tails beat the mean
    mouth clearly and track the jaw; with the audio out of sync the gain is gone."""
    from pt_model.stage1_train import evaluate_stage1

    task = Stage1Task(tiny_config(shards), face_model=face_model)
    model = task.build_model().eval()
    at_init = task.validate(model)
    assert at_init["lve_mm"] == pytest.approx(at_init["lve_baseline_mm"], rel=1e-5)  # starts at the mean mouth
    res = train(task, tiny_loop(tmp_path / "run", max_steps=150, schedule="constant", ckpt_every=0, val_every=150))
    assert res.val["lve_mm"] < 0.8 * res.val["lve_baseline_mm"], res.val
    assert res.val["mouth_corr_clip_mean"] > 0.5, res.val
    net, _ = load_stage1(tmp_path / "run", face_model=face_model)
    shifted = [replace(v, item={**v.item, "audio": np.roll(v.item["audio"], len(v.item["audio"]) // 2)})
               for v in task.validation_clips()]
    assert evaluate_stage1(net, shifted, 1)["lve_mm"] > 0.95 * res.val["lve_baseline_mm"]


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
    assert cfg["task_config"]["audio_encoder"] == "audio encoder: log-mel conv (no pretrained weights)"


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
