"""Stage 2: the dual-attention renderer, Algorithm 1, the stage-2 data and training, paste-back and `pt dub`."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pt_model.references import (ReferenceConfig, inference_face_references, inference_lip_references,
                                 inference_references, training_face_references, training_references)
from pt_model.stage2 import (ATTENTION_MODES, Stage2Config, Stage2Renderer, chunked_attention,
                             mouth_region_mask)


pytestmark = pytest.mark.usefixtures("one_thread")  # fixtures one_thread / face_model: tests/conftest.py


def _inputs(b: int, size: int, n_face: int = 5, n_lip: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    lip = torch.zeros(b, 1, size, size)
    lip[:, :, size // 2:size // 2 + size // 8, size // 3:2 * size // 3] = 1
    return (r(b, 3, size, size), lip, r(b, n_face, 3, size, size), r(b, n_face, 3, size, size),
            r(b, n_lip, 3, size, size), r(b, n_lip, 3, size, size))


# ------------------------------------------------------------------------------------------ renderer
def test_dual_renderer_shapes_range_and_gradients_at_64():
    torch.manual_seed(0)
    net = Stage2Renderer(Stage2Config(image_size=64, channels=32, heads=2))
    out = net(*_inputs(2, 64))
    assert out.shape == (2, 3, 64, 64) and out.min() >= 0 and out.max() <= 1
    assert net.geometry_encoder(torch.rand(1, 3, 64, 64)).shape == (1, 32, 16, 16)  # C x H/4 x W/4
    out.mean().backward()
    for name in ("lip_attention.to_v.weight", "face_attention.to_v.weight", "lip_attention.pos_k",
                 "face_attention.pos_q", "texture_encoder.net.0.weight", "geometry_encoder.net.0.weight"):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_attention_modes_shapes_and_branches(mode):
    torch.manual_seed(0)
    net = Stage2Renderer(Stage2Config(image_size=32, channels=16, heads=2, attention=mode))
    out = net(*_inputs(2, 32, n_face=3, n_lip=4))
    assert out.shape == (2, 3, 32, 32)
    assert (net.face_attention is None) == (mode == "lip_only")
    assert (net.lip_attention is None) == (mode in ("single", "face_only"))


def test_single_attention_sees_lip_references_and_dual_fuses_by_the_mask():
    torch.manual_seed(0)
    x = list(_inputs(1, 32))
    single = Stage2Renderer(Stage2Config(image_size=32, channels=16, heads=2, attention="single")).eval()
    a = single(*x)
    x2 = list(x)
    x2[5] = torch.rand_like(x[5])  # other lip textures change the single-attention output
    assert not torch.allclose(a, single(*x2))
    dual = Stage2Renderer(Stage2Config(image_size=32, channels=16, heads=2, mouth_close=0, mouth_dilate=0)).eval()
    x3 = list(x)
    x3[1] = torch.zeros_like(x[1])  # no lip region: lip references cannot matter
    assert torch.allclose(dual(*x3), dual(*[*x3[:5], torch.rand_like(x[5])]), atol=1e-6)


def test_chunked_attention_equals_unchunked_and_the_reference_formula():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 50, 8, generator=g) for _ in range(3))
    ref = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), -1) @ v
    full = chunked_attention(q, k, v, 0)
    assert torch.allclose(full, ref, atol=1e-5)
    for chunk in (1, 7, 49, 50, 64):
        assert torch.allclose(chunked_attention(q, k, v, chunk), full, atol=1e-6)
    torch.manual_seed(0)
    a = Stage2Renderer(Stage2Config(image_size=32, channels=16, heads=2, query_chunk=0)).eval()
    b = Stage2Renderer(Stage2Config(image_size=32, channels=16, heads=2, query_chunk=5)).eval()
    b.load_state_dict(a.state_dict())
    x = _inputs(2, 32)
    with torch.no_grad():
        assert torch.allclose(a(*x), b(*x), atol=1e-6)


def test_references_are_a_set_any_number_and_order():
    """No per-reference embedding: N_l may grow at inference and the order of references does not matter."""
    torch.manual_seed(0)
    net = Stage2Renderer(Stage2Config(image_size=32, channels=16, heads=2)).eval()
    x = _inputs(1, 32, n_lip=25)
    with torch.no_grad():
        out = net(*x)
        perm = torch.randperm(25)
        out_p = net(*x[:4], x[4][:, perm], x[5][:, perm])
    assert out.shape == (1, 3, 32, 32) and torch.allclose(out, out_p, atol=1e-5)


def test_mouth_region_mask_fills_the_mouth_opening():
    lip = torch.zeros(1, 1, 64, 64)
    lip[0, 0, 28:30, 20:44] = 1  # upper lip
    lip[0, 0, 36:38, 20:44] = 1  # lower lip, an open mouth between them
    lip[0, 0, 28:38, 20:22] = 1
    lip[0, 0, 28:38, 42:44] = 1
    m = mouth_region_mask(lip, 64, close=0.15, dilate=0.0)
    assert m[0, 0, 33, 32] == 1  # the opening belongs to the lip region
    assert m[0, 0, 5, 5] == 0 and m[0, 0, 60, 32] == 0
    assert mouth_region_mask(lip, 16).shape == (1, 1, 16, 16)


# --------------------------------------------------------------------------------------- Algorithm 1
def _paper_training_face(i1: int, t: int, n: int) -> np.ndarray:
    """PAPER.md's 1-indexed formula, rounded half up, shifted to 0-indexed frames."""
    return np.floor(np.linspace(max(1, i1 - 2 * n), min(t, i1 + 2 * n), n) + 0.5).astype(int) - 1


@pytest.mark.parametrize("t", [1, 2, 3, 7, 10, 11, 21, 100])
def test_training_face_references_follow_algorithm1_everywhere(t):
    for i in range(t):
        got = training_face_references(i, t, 5)
        assert got.shape == (5,) and got.min() >= 0 and got.max() < t
        assert np.array_equal(got, _paper_training_face(i + 1, t, 5))
        assert np.all(np.diff(got) >= 0)


def test_training_face_references_edge_cases():
    assert training_face_references(10, 100, 5).tolist() == [0, 5, 10, 15, 20]
    assert training_face_references(0, 100, 5).tolist() == [0, 3, 5, 8, 10]  # first frame: window clipped
    assert training_face_references(99, 100, 5).tolist() == [89, 92, 94, 97, 99]  # last frame
    assert training_face_references(1, 3, 5).tolist() == [0, 1, 1, 2, 2]  # clip shorter than the window
    assert training_face_references(0, 1, 5).tolist() == [0] * 5
    with pytest.raises(IndexError):
        training_face_references(5, 5)


def test_training_lip_references_random_over_the_whole_clip():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        r = training_references(3, 40, rng)
        assert len(set(r.lip.tolist())) == 5 and r.lip.min() >= 0 and r.lip.max() < 40  # distinct when T >= N_l
        seen.update(r.lip.tolist())
    assert len(seen) == 40  # every frame of the clip can be drawn
    short = training_references(1, 3, np.random.default_rng(0), ReferenceConfig(num_lip=5))
    assert len(short.lip) == 5 and set(short.lip.tolist()) <= {0, 1, 2}  # with replacement when T < N_l
    a = training_references(5, 30, np.random.default_rng(7))
    b = training_references(5, 30, np.random.default_rng(7))
    assert np.array_equal(a.lip, b.lip) and np.array_equal(a.face, b.face)


def test_inference_face_references_centred_and_clipped():
    f = inference_face_references(10, 5)
    assert f.shape == (10, 5)
    assert f[5].tolist() == [3, 4, 5, 6, 7]
    assert f[0].tolist() == [0, 0, 0, 1, 2]  # first frame
    assert f[9].tolist() == [7, 8, 9, 9, 9]  # last frame
    assert inference_face_references(2, 5)[0].tolist() == [0, 0, 0, 1, 1]  # shorter than the window
    assert inference_face_references(1, 5).tolist() == [[0] * 5]


def test_inference_lip_references_spread_over_sorted_mouth_openings():
    opening = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.0, 0.2, 0.8, 0.4, 0.6])
    lips = inference_lip_references(opening, 5)
    assert opening[lips].tolist() == [0.0, 0.2, 0.5, 0.7, 0.9]  # positions 0, 2, 5, 7, 9 of the sorted order
    many = inference_lip_references(opening, 25)  # N_l larger than the clip: all shapes, repeated
    assert len(many) == 25 and set(many.tolist()) == set(range(10))
    assert opening[many[0]] == opening.min() and opening[many[-1]] == opening.max()
    assert np.all(np.diff(opening[many]) >= 0)
    face, lip = inference_references(opening, ReferenceConfig(num_face=5, num_lip=25))
    assert face.shape == (10, 5) and np.array_equal(lip, many)  # one lip set for every frame
    with pytest.raises(ValueError):
        inference_lip_references(np.array([0.1, np.nan]), 5)


def test_random_reference_selection_ablation():
    rng = np.random.default_rng(0)
    face, lip = inference_references(np.linspace(0, 1, 12), ReferenceConfig(5, 7, "random"), rng)
    assert face.shape == (12, 5) and lip.shape == (7,) and face.max() < 12 and lip.max() < 12
    r = training_references(0, 12, rng, ReferenceConfig(5, 5, "random"))
    assert r.face.max() < 12
    with pytest.raises(ValueError):
        inference_references(np.zeros(4), ReferenceConfig(mode="random"))  # random needs an rng


# --------------------------------------------------------------------------------------- data and training
@pytest.fixture(scope="module")
def tex_shards(tmp_path_factory, face_model):
    from stage2_synth import write_textured_shards

    return write_textured_shards(tmp_path_factory.mktemp("s2shards"), face_model, num_clips=2, num_frames=24)


def _data_cfg(shards, size=32, **kw):
    from pt_model.stage2_data import Stage2DataConfig

    return Stage2DataConfig(shards=str(shards), image_size=size, **kw)


def test_dataset_samples_shapes_training_part_and_determinism(tex_shards, face_model):
    from pt_model.stage2_data import SAMPLE_KEYS, Stage2Dataset

    cfg = _data_cfg(tex_shards, samples_per_clip=3, val_fraction=0.25)
    items = list(Stage2Dataset(cfg, face_model, seed=3))
    assert len(items) == 6 and set(items[0]) == set(SAMPLE_KEYS)
    s = items[0]
    assert s["target"].shape == (3, 32, 32) and s["target_pncc"].shape == (3, 32, 32)
    assert s["target_lip_mask"].shape == (1, 32, 32) and s["face_frames"].shape == (5, 3, 32, 32)
    assert s["lip_pncc"].shape == (5, 3, 32, 32) and s["face_index"].shape == (5,)
    for it in items:  # frames 18..23 (the last quarter of 24) are held out
        assert int(it["target_index"]) < 18 and int(it["face_index"].max()) < 18 and int(it["lip_index"].max()) < 18
        assert np.array_equal(it["face_index"].numpy(), training_face_references(int(it["target_index"]), 18, 5))
        assert float(it["target_pncc"].max()) > 0 and 0 <= float(it["target"].min()) <= float(it["target"].max()) <= 1
    again = list(Stage2Dataset(cfg, face_model, seed=3))
    assert all(torch.equal(a["target"], b["target"]) and torch.equal(a["lip_index"], b["lip_index"])
               for a, b in zip(items, again))
    other = Stage2Dataset(cfg, face_model, seed=3)
    other.set_epoch(1)
    assert [int(x["target_index"]) for x in other] != [int(x["target_index"]) for x in items]


def test_shards_without_geometry_are_refused_with_a_clear_error(tmp_path, face_model):
    from pt_model.stage2_data import Stage2Dataset, Stage2DataError
    from pt_model.stage2_train import Stage2Task, Stage2TrainConfig
    from stage2_synth import write_textured_shards

    root = write_textured_shards(tmp_path, face_model, num_clips=1, num_frames=4, geometry=False)
    assert list(Stage2Dataset(_data_cfg(root), face_model)) == []  # such clips are skipped
    cfg = Stage2TrainConfig(model=Stage2Config(image_size=32, channels=16, heads=2), data=_data_cfg(root))
    with pytest.raises(Stage2DataError, match="fitting"):
        Stage2Task(cfg, face_model=face_model, verbose=False)


def test_overfits_a_tiny_clip(tex_shards, face_model):
    """A fixed batch of 4 samples at 32 px: the loss falls by a large factor within 150 Adam steps."""
    from pt_model.stage2_data import Stage2Dataset
    from pt_model.stage2_train import Stage2LossConfig, Stage2Task, Stage2TrainConfig

    cfg = Stage2TrainConfig(model=Stage2Config(image_size=32, channels=32, heads=2, decoder_res_blocks=1),
                            data=_data_cfg(tex_shards, samples_per_clip=2, val_fraction=0.0),
                            loss=Stage2LossConfig(perceptual="none"), val_lpips=False)
    task = Stage2Task(cfg, face_model=face_model, verbose=False)
    items = list(Stage2Dataset(cfg.data, face_model, seed=0))
    batch = {k: torch.stack([x[k] for x in items]) for k in items[0]}
    torch.manual_seed(0)
    net = task.build_model()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    losses = []
    for step in range(150):
        loss, parts = task.loss(net, batch, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 4, (losses[0], losses[-1])
    assert parts["l1"] < 0.045 and min(losses[-10:]) < min(losses[:50])


def test_train_loop_checkpoint_validation_and_exact_resume(tmp_path, tex_shards, face_model):
    from pt_model.stage2_train import (Stage2LossConfig, Stage2Task, Stage2TrainConfig, load_stage2)
    from pt_model.train_loop import ConfigMismatchError, TrainLoopConfig, read_log, train

    cfg = Stage2TrainConfig(model=Stage2Config(image_size=32, channels=16, heads=2),
                            data=_data_cfg(tex_shards, samples_per_clip=2, val_clips=1, val_frames_per_clip=2,
                                           val_num_lip=7),
                            loss=Stage2LossConfig(perceptual="ssim"), val_lpips=False)

    def run(out, **kw):
        loop = TrainLoopConfig(out=out, max_steps=4, batch_size=2, lr=1e-3, log_every=1, val_every=4,
                               ckpt_every=2, progress=False, **kw)
        return train(Stage2Task(cfg, face_model=face_model, verbose=False), loop)

    full = run(tmp_path / "full")
    assert full.step == 4 and (tmp_path / "full" / "checkpoints" / "last.pt").is_file()
    for k in ("psnr", "ssim", "psnr_mouth", "psnr_copy_time", "ssim_copy_geom"):
        assert k in full.val and np.isfinite(full.val[k])
    saved = json.loads((tmp_path / "full" / "config.json").read_text())
    assert saved["task_config"]["loss"]["resolved"] == "ssim"
    run(tmp_path / "cut", stop_at=2)
    resumed = run(tmp_path / "cut")
    assert resumed.resumed_from == 2
    a = [r["loss"] for r in read_log(tmp_path / "full" / "log.csv")]
    b = [r["loss"] for r in read_log(tmp_path / "cut" / "log.csv")]
    assert len(a) == len(b) == 4 and np.allclose(a, b, rtol=0, atol=1e-6)
    net, loaded, step = load_stage2(tmp_path / "full")
    assert step == 4 and loaded.model == cfg.model and not net.training
    cfg.model = Stage2Config(image_size=32, channels=16, heads=2, attention="single")
    with pytest.raises(ConfigMismatchError):
        run(tmp_path / "full")


def test_perceptual_falls_back_to_ssim_without_vgg_weights(tmp_path, tex_shards, face_model):
    from pt_data.weights import MissingWeightsError, WeightsRegistry
    from pt_model.stage2_train import Stage2LossConfig, Stage2Task, Stage2TrainConfig

    reg = WeightsRegistry(tmp_path)
    cfg = Stage2TrainConfig(model=Stage2Config(image_size=32, channels=16, heads=2), data=_data_cfg(tex_shards))
    task = Stage2Task(cfg, registry=reg, face_model=face_model, verbose=False)
    assert task.perceptual == "ssim" and any("VGG-16 weights missing" in n for n in task.notes)
    assert task.config_dict()["loss"]["resolved"] == "ssim"
    cfg.loss = Stage2LossConfig(perceptual="lpips-vgg")
    with pytest.raises(MissingWeightsError, match="vgg16"):
        Stage2Task(cfg, registry=reg, face_model=face_model, verbose=False)


def test_lpips_vgg_backbone_loaded_from_the_registry(tmp_path):
    """torchvision's VGG-16 ``features.K`` weights land in lpips' slices (a random file stands in)."""
    from torchvision.models.vgg import cfgs, make_layers

    from pt_data.weights import MissingWeightsError, WeightsRegistry
    from pt_model.perceptual import load_lpips_vgg

    with pytest.raises(MissingWeightsError, match="vgg16-397923af"):
        load_lpips_vgg(WeightsRegistry(tmp_path))
    torch.manual_seed(0)
    features = make_layers(cfgs["D"])  # the layout of torchvision's vgg16().features
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "vgg16-397923af.pth")
    net = load_lpips_vgg(WeightsRegistry(tmp_path))
    assert torch.equal(net.net.slice1._modules["0"].weight, features[0].weight)
    assert torch.equal(net.net.slice5._modules["28"].bias, features[28].bias)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(net(x, x).abs().max()) < 1e-6 and float(net(x, -x).mean()) > 0


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    from pt_model.perceptual import psnr, ssim

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 40, 40, generator=g)
    y = (x + 0.1 * torch.randn(2, 3, 40, 40, generator=g)).clamp(0, 1)
    ref = [structural_similarity(x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(), channel_axis=2,
                                 data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
           for i in range(2)]
    assert np.allclose(ssim(x, y, reduction="none").numpy(), ref, atol=1e-5)
    mse = float(((x - y) ** 2).mean(dim=(1, 2, 3))[0])
    assert abs(float(psnr(x, y)[0]) - 10 * math.log10(1 / mse)) < 1e-4


# ------------------------------------------------------------------------------------------ dubbing
def test_pingpong_extension_and_landmark_filling():
    from pt_model.dub import DubError, fill_missing_landmarks, pingpong_indices

    assert pingpong_indices(10, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert pingpong_indices(3, 5).tolist() == [0, 1, 2]
    assert pingpong_indices(4, 1).tolist() == [0, 0, 0, 0]
    lm = np.zeros((5, 478, 2), np.float32)
    lm[:, :, 0] = np.arange(5)[:, None] * 2.0
    lm[[0, 2]] = np.nan
    filled, n = fill_missing_landmarks(lm)
    assert n == 2 and filled[2, 0, 0] == 4.0 and filled[0, 0, 0] == 2.0  # interpolated, held at the start
    with pytest.raises(DubError, match="no face"):
        fill_missing_landmarks(np.full((3, 478, 2), np.nan))


def test_paste_back_mask_has_no_seam():
    """The blend mask is 0 at the crop border and changes smoothly; pasting the unchanged crop is invisible."""
    import cv2

    from pt_data.crop import crop_frame, similarity_affines
    from pt_model.dub import paste_back, soft_paste_mask

    region = np.zeros((64, 64), np.float32)
    region[30:60, 12:52] = 1  # a hard-edged lower-face region reaching the crop's bottom edge
    mask = soft_paste_mask(region, 256, feather=0.035)
    assert mask.max() == pytest.approx(1.0, abs=1e-3)
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert np.abs(border).max() < 1e-6
    step = max(np.abs(np.diff(mask, axis=0)).max(), np.abs(np.diff(mask, axis=1)).max())
    assert step < 0.06  # about 1 / (sigma * sqrt(2 pi)) for sigma = 9 px: no jump anywhere
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), (0, 0), 3)
    affine = similarity_affines(np.array([[210.0, 140.0]]), np.array([90.0]), np.array([0.2]), 256)[0]
    same = paste_back(frame, crop_frame(frame, affine, 256), affine, mask)
    assert np.abs(same.astype(int) - frame.astype(int)).max() <= 6  # only resampling error
    white = paste_back(frame, np.full((256, 256, 3), 255, np.uint8), affine, mask)
    alpha = (white.astype(float) - frame) / np.maximum(255.0 - frame, 1)
    alpha = alpha[..., 0][frame[..., 0] < 200]
    assert alpha.max() > 0.95
    changed = np.any(white != frame, axis=2)
    ys, xs = np.nonzero(changed)
    assert ys.min() > 0 and xs.min() > 0 and xs.max() < 399  # the crop's neighbourhood only


def test_checkpoint_resolution_errors(tmp_path):
    from pt_model.dub import DubError, resolve_runs

    with pytest.raises(DubError, match="--checkpoint"):
        resolve_runs(tmp_path / "nothing")
    for name, task in (("a_stage1", "stage1"), ("b_stage2", "stage2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"task": task}))
    assert resolve_runs(tmp_path / "b_stage2") == (tmp_path / "a_stage1", tmp_path / "b_stage2")
    assert resolve_runs(tmp_path) == (tmp_path / "a_stage1", tmp_path / "b_stage2")
    with pytest.raises(DubError, match="not a stage-2 run"):
        resolve_runs(tmp_path / "a_stage1")
    (tmp_path / "c_stage1").mkdir()
    (tmp_path / "c_stage1" / "config.json").write_text(json.dumps({"task": "stage1"}))
    with pytest.raises(DubError, match="--stage1"):
        resolve_runs(tmp_path / "b_stage2")
    assert resolve_runs(tmp_path / "b_stage2", tmp_path / "c_stage1")[0] == tmp_path / "c_stage1"


def _tiny_random_models(face_model):
    from pt_model.dub import DubModels
    from pt_model.stage1 import Stage1Model
    from pt_model.stage1_train import preset_config

    torch.manual_seed(0)
    c1 = preset_config("tiny", "")
    return DubModels(Stage1Model(c1.model, face_model), c1.data.context_frames,
                     Stage2Renderer(Stage2Config(image_size=32, channels=16, heads=2)), face_model,
                     random_weights=True)


@pytest.mark.realdata
def test_dub_api_on_a_real_video_with_tiny_random_models(tmp_path, shared_data, face_model):
    """1 s of a real video dubbed with 1.6 s of real speech: the reference plays back and forth, the output
    has the reference's size, one frame per 40 ms of audio and the new audio. (Random weights: the faces
    are not meaningful; this checks the pipeline.)"""
    from pt_data.audio import float_to_pcm16
    from pt_data.decode import iter_frames_at_fps, read_audio_aligned
    from pt_data.video_io import iter_video_frames, probe_video, read_audio, write_video
    from pt_model.dub import DubConfig, dub

    src = shared_data / "videos" / "vrt_face5.mp4"
    frames = [f for k, f in iter_frames_at_fps(str(src), max_frames=25)]
    ref = tmp_path / "ref.mp4"
    write_video(str(ref), frames, 25, read_audio_aligned(str(src))[:16000])
    speech = read_audio(str(shared_data / "audio" / "vrt_audio2.wav"))[:25600]  # 1.6 s
    wav = tmp_path / "speech.wav"
    import soundfile as sf

    sf.write(wav, float_to_pcm16(speech.astype(np.float32) / 32768), 16000, subtype="PCM_16")
    rep = dub(ref, wav, tmp_path / "out.mp4", config=DubConfig(progress=False, batch_size=8),
              models=_tiny_random_models(face_model))
    info = probe_video(str(tmp_path / "out.mp4"))
    h, w = frames[0].shape[:2]
    assert (info.width, info.height) == (w, h) and info.has_audio
    assert rep.num_frames == 40 and rep.extended and rep.random_weights and rep.reference_frames == 25
    out_frames = [f for _, f in iter_video_frames(str(tmp_path / "out.mp4"))]
    assert len(out_frames) == 40
    assert abs(len(read_audio(str(tmp_path / "out.mp4"))) / 16000 - 1.6) < 0.05
    # frames 24 and 26 are both source frame 24 (back and forth): same background outside the face
    assert np.abs(out_frames[24][:40].astype(int) - out_frames[26][:40].astype(int)).mean() < 3


def test_dub_errors_for_unreadable_input_and_no_face(tmp_path, face_model):
    from pt_data.video_io import write_video
    from pt_model.dub import DubConfig, DubError, dub

    models = _tiny_random_models(face_model)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    speech = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(speech, np.zeros(8000, np.float32), 16000)
    with pytest.raises(DubError, match="cannot read the reference video"):
        dub(bad, speech, tmp_path / "o.mp4", config=DubConfig(progress=False), models=models)
    noise = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    write_video(str(noise), [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(5)], 25,
                np.zeros(3200, np.int16))
    with pytest.raises(DubError, match="no face"):
        dub(noise, speech, tmp_path / "o.mp4", config=DubConfig(progress=False), models=models)
    with pytest.raises(DubError, match="audio not found"):
        dub(noise, tmp_path / "missing.wav", tmp_path / "o.mp4", config=DubConfig(progress=False), models=models)


def test_pt_dub_command_reports_a_missing_model(tmp_path, capsys):
    import argparse

    from pt_cli import dub_cmd

    parser = argparse.ArgumentParser(prog="pt")
    dub_cmd.add_parser(parser.add_subparsers())
    (tmp_path / "v.mp4").write_bytes(b"x")
    (tmp_path / "a.wav").write_bytes(b"x")
    args = parser.parse_args(["dub", "--video", str(tmp_path / "v.mp4"), "--audio", str(tmp_path / "a.wav"),
                              "--out", str(tmp_path / "o.mp4"), "--checkpoint", str(tmp_path / "no_run")])
    assert args.func(args) == 1
    assert "--checkpoint" in capsys.readouterr().err and not (tmp_path / "o.mp4").exists()


def test_colour_match_moves_the_face_to_the_reference_statistics():
    from pt_model.dub import match_colours

    rng = np.random.default_rng(0)
    ref = rng.normal([150, 110, 90], [20, 15, 12], (64, 64, 3)).clip(0, 255).astype(np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1.0
    assert np.array_equal(match_colours(ref, ref, mask), ref)  # already matched: unchanged
    pale = (ref.astype(np.float32) * 0.3 + 170).astype(np.uint8)  # a washed-out render of the same face
    fixed = match_colours(pale, ref, mask).astype(np.float32)
    inside = mask > 0
    want = ref.astype(np.float32)[inside].mean(0)
    assert np.abs(fixed[inside].mean(0) - want).max() < 1.0
    assert np.abs(pale.astype(np.float32)[inside].mean(0) - want).max() > 40
    assert np.array_equal(match_colours(pale, ref, np.zeros_like(mask)), pale)  # empty mask: untouched
