"""The benchmark's metrics against reference implementations, and their direction on real videos.

References: scikit-image (SSIM, PSNR), pytorch-fid's own model and Fréchet distance, the lpips package's
forward, a plain per-offset LSE loop written here, scikit-image's similarity estimate (ArcFace alignment).
Networks without their pretrained files here (FID Inception, LPIPS AlexNet, SyncNet, ArcFace) are tested
for plumbing with seeded RANDOM weights (numbers meaningless, flagged ``real_weights=False``); their
direction tests on real videos run only when the real files are in the weights directory and skip naming
the missing file otherwise.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pt_bench.metrics import METRICS, Metric, create_metric
from pt_bench.metrics.csim import (ARCFACE_TEMPLATE, ArcFaceEncoder, align_faces, build_random_arcface_onnx,
                                   five_points, similarity_transform)
from pt_bench.metrics.fid import feature_statistics, fid_from_features, frechet_distance, load_fid_inception
from pt_bench.metrics.lmd import LIP_POINTS, lip_distance_frames
from pt_bench.metrics.lpips_metric import alexnet_features_to_lpips, load_lpips_alex, lpips_frames
from pt_bench.metrics.pixel import PSNR_CAP_DB, psnr_frames, ssim_frames, video_psnr, video_ssim
from pt_bench.metrics.sync import lse_from_embeddings, sync_crops
from pt_bench.video import BenchVideo, NoFaceError, face_crop_transforms, face_crops, load_bench_video
from pt_data.weights import MissingWeightsError, WeightsRegistry

SKIMAGE_SSIM = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)


def smooth_frames(seed: int, n: int = 3, h: int = 40, w: int = 48, texture: float = 12.0) -> np.ndarray:
    """Image-like uint8 frames: a smooth random field plus ``texture`` (noise standard deviation)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (n, h // 4, w // 4, 3)).astype(np.float32)
    up = np.stack([cv2.resize(b, (w, h), interpolation=cv2.INTER_CUBIC) for b in base])
    return np.clip(up + rng.normal(0, texture, up.shape), 0, 255).astype(np.uint8)


def fake_landmarks(num_frames: int, size: int = 64, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """(T, 478, 2) landmarks with the eye corners, nose tip and mouth corners of a frontal face of ``size``."""
    rng = np.random.default_rng(seed)
    lm = np.full((num_frames, 478, 2), size / 2, np.float32)
    s = size / 64
    for idx, xy in {33: (18, 24), 133: (26, 24), 362: (38, 24), 263: (46, 24), 1: (32, 34), 61: (24, 44),
                    291: (40, 44)}.items():
        lm[:, idx] = np.array(xy, np.float32) * s
    return lm + rng.normal(0, jitter, lm.shape).astype(np.float32)


def synthetic_video(num_frames: int = 8, size: int = 64, *, seed: int = 0, fps: float = 25.0,
                    audio: bool = True) -> BenchVideo:
    rng = np.random.default_rng(seed)
    v = BenchVideo(name=f"synthetic{seed}", path=None, frames=smooth_frames(seed, num_frames, size, size), fps=fps,
                   audio=rng.uniform(-0.2, 0.2, int(num_frames / fps * 16000)).astype(np.float32) if audio else None)
    v.set_landmarks(fake_landmarks(num_frames, size))
    return v


# ------------------------------------------------------------------------------------------- SSIM / PSNR

def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    ref = smooth_frames(0)
    rng = np.random.default_rng(1)
    pairs = {
        "noisy": np.clip(ref + rng.normal(0, 20, ref.shape), 0, 255).astype(np.uint8),
        "unrelated": smooth_frames(5),
        "shifted": np.roll(ref, 2, axis=2),
    }
    for what, pred in pairs.items():
        ours = ssim_frames(pred, ref)
        expected = [structural_similarity(p, r, **SKIMAGE_SSIM) for p, r in zip(pred, ref)]
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4, err_msg=what)
        np.testing.assert_allclose(ssim_frames(pred, ref, batch_size=2, dtype=torch.float64), expected, atol=1e-10)
    assert video_ssim(ref, ref) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(ssim_frames(pairs["noisy"], ref), ssim_frames(ref, pairs["noisy"]), atol=1e-6)


def test_psnr_matches_scikit_image_and_caps_identical_frames():
    from skimage.metrics import peak_signal_noise_ratio

    ref = smooth_frames(2)
    pred = np.clip(ref + np.random.default_rng(3).normal(0, 9, ref.shape), 0, 255).astype(np.uint8)
    expected = [peak_signal_noise_ratio(r, p, data_range=255) for p, r in zip(pred, ref)]
    np.testing.assert_allclose(psnr_frames(pred, ref), expected, rtol=1e-12)
    np.testing.assert_allclose(psnr_frames(pred / 255.0, ref / 255.0, data_range=1.0, batch_size=2), expected,
                               rtol=1e-9)  # float inputs take the float64 path
    mixed = pred.copy()
    mixed[0] = ref[0]  # one identical frame: capped, not infinite
    got = psnr_frames(mixed, ref)
    assert got[0] == PSNR_CAP_DB and np.isfinite(got).all()
    assert video_psnr(mixed, ref) == pytest.approx((PSNR_CAP_DB + sum(expected[1:])) / 3)


def test_pixel_metrics_on_videos_use_the_common_frames():
    a, b = synthetic_video(5, seed=1), synthetic_video(4, seed=2)
    assert create_metric("ssim").score_video(a, b) == pytest.approx(video_ssim(a.frames[:4], b.frames), abs=1e-12)
    assert create_metric("psnr").score_video(b, a) == pytest.approx(video_psnr(b.frames, a.frames[:4]))
    c = BenchVideo("big", None, smooth_frames(3, 4, 48, 64), 25.0)
    with pytest.raises(ValueError, match="differ in shape"):
        create_metric("ssim").score_video(c, b)
    # face variants: both videos cropped with the reference's transform
    m = create_metric("ssim_face")
    aff = face_crop_transforms(b)
    assert m.score_video(a, b) == pytest.approx(video_ssim(face_crops(a, aff)[:4], face_crops(b, aff)), abs=1e-12)
    assert create_metric("psnr_face").score_video(b, b) == PSNR_CAP_DB


# ------------------------------------------------------------------------------------------- BenchVideo

def test_bench_video_memo_read_only_frames_and_audio_round_trip():
    v = synthetic_video(6)
    assert not v.frames.flags.writeable
    calls = []
    assert v.memo("k", lambda: calls.append(1) or 7) == 7 and v.memo("k", lambda: calls.append(1) or 8) == 7
    assert calls == [1]
    w = v.with_frames(v.frames[::-1].copy())
    assert w.cached_landmarks() is None and w.audio is v.audio and w.path is None
    pcm = np.array([-32768, -16385, -1, 0, 1, 16384, 32767], np.int16)
    from pt_data.audio import pcm16_to_float

    assert np.array_equal(v.with_audio(pcm16_to_float(pcm)).audio_pcm16(), pcm)
    with pytest.raises(ValueError, match="uint8"):
        BenchVideo("bad", None, np.zeros((2, 8, 8, 3), np.float32), 25.0)
    with pytest.raises(ValueError, match="landmarks must be"):
        v.set_landmarks(np.zeros((5, 478, 2)))


def test_load_bench_video_reads_frames_fps_and_aligned_audio(tmp_path):
    from pt_data.video_io import write_video

    frames = smooth_frames(4, 10, 64, 64, texture=0)
    audio = (np.sin(np.arange(10 * 640) / 7.0) * 0.3).astype(np.float32)
    write_video(str(tmp_path / "a.mp4"), frames, fps=25, audio=audio)
    write_video(str(tmp_path / "silent.mp4"), frames, fps=25)
    v = load_bench_video(tmp_path / "a.mp4")
    assert v.name == "a" and v.fps == 25.0 and v.frames.shape == (10, 64, 64, 3) and v.audio.dtype == np.float32
    assert abs(len(v.audio) - len(audio)) <= 1024  # AAC priming / frame padding
    short = load_bench_video(tmp_path / "a.mp4", max_frames=4)
    assert short.num_frames == 4 and len(short.audio) == 4 * 640
    err = np.abs(short.frames[:, None].astype(int) - frames[None]).mean(axis=(2, 3, 4))  # decoded x source
    assert np.array_equal(err.argmin(axis=1), np.arange(4))  # the first 4 frames, in order (H.264 is lossy)
    assert load_bench_video(tmp_path / "silent.mp4").audio is None
    assert load_bench_video(tmp_path / "a.mp4", resample_fps=50, max_frames=6).fps == 50.0


def test_face_crop_transforms_fill_frames_without_a_face():
    v = synthetic_video(5)
    lm = fake_landmarks(5)
    lm[1] = lm[4] = np.nan
    v2 = v.with_frames(v.frames)
    v2.set_landmarks(lm)
    aff = face_crop_transforms(v2)
    np.testing.assert_allclose(aff, face_crop_transforms(v), atol=1e-4)  # nearest face frame, same face
    crops = face_crops(v2, aff[:3])
    assert crops.shape == (3, 256, 256, 3) and crops.dtype == np.uint8
    none = v.with_frames(v.frames)
    none.set_landmarks(np.full((5, 478, 2), np.nan))
    with pytest.raises(NoFaceError, match="no face"):
        face_crop_transforms(none)


# ------------------------------------------------------------------------------------------- LMD

def test_lip_points_are_mediapipe_lip_contours():
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

    assert LIP_POINTS == tuple(sorted({i for edge in FACEMESH_LIPS for i in edge})) and len(LIP_POINTS) == 40


def test_lip_distance_known_geometry():
    rng = np.random.default_rng(0)
    ref = rng.uniform(100, 300, (4, 478, 2))
    scale = np.array([[[0.5, 0, 10], [0, 0.5, -3]]] * 4)  # the reference crop: half size
    moved = ref + np.array([7.0, -2.0])  # translated lips
    np.testing.assert_allclose(lip_distance_frames(moved, ref, scale), 0, atol=1e-4)  # centred
    np.testing.assert_allclose(lip_distance_frames(moved, ref, scale, center=False), 0.5 * np.hypot(7, 2), rtol=1e-5)
    lips = list(LIP_POINTS)
    wider = ref.copy()
    c = ref[:, lips].mean(1, keepdims=True)
    wider[:, lips] = c + 1.2 * (ref[:, lips] - c)  # mouth 20 % larger about its centroid
    expected = 0.5 * 0.2 * np.linalg.norm(ref[:, lips] - c, axis=-1).mean(1)
    np.testing.assert_allclose(lip_distance_frames(wider, ref, scale), expected, rtol=1e-4)
    gone = ref.copy()
    gone[2] = np.nan
    d = lip_distance_frames(gone, ref, scale)
    assert np.isnan(d[2]) and np.isfinite(d[[0, 1, 3]]).all()


def test_lmd_metric_skips_frames_without_a_face_and_reports_them():
    ref = synthetic_video(4)
    pred = ref.with_frames(ref.frames)
    lm = fake_landmarks(4, jitter=0.5, seed=3)
    lm[0] = np.nan
    pred.set_landmarks(lm)
    res = create_metric("lmd").evaluate(pred, ref)
    d = lip_distance_frames(lm, ref.landmarks(), face_crop_transforms(ref))
    assert res.extras == {"lmd_frames": 3.0} and res.value == pytest.approx(np.nanmean(d)) and res.value > 0


# ------------------------------------------------------------------------------------------- FID

@pytest.mark.parametrize("n,d", [(400, 24), (30, 48)])  # full rank, and N < D (singular covariances)
def test_frechet_distance_matches_pytorch_fid(n, d):
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3
    b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + 0.4
    sa, sb = feature_statistics(a), feature_statistics(b)
    assert frechet_distance(*sa, *sb) == pytest.approx(calculate_frechet_distance(*sa, *sb), rel=1e-6)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    np.testing.assert_allclose(sa[1], np.cov(a, rowvar=False))


@pytest.fixture(scope="module")
def random_fid():
    return create_metric("fid", random_weights=True, seed=1)


def test_fid_inception_loads_from_the_registry_and_equals_pytorch_fid_model(random_fid, monkeypatch, tmp_path):
    from pytorch_fid import inception as pfi

    with pytest.raises(MissingWeightsError, match="pt_inception-2015-12-05-6726825d.pth"):
        load_fid_inception(WeightsRegistry(tmp_path))
    state = random_fid.model.inception.state_dict()  # seeded random stand-in for the real file
    torch.save(state, tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    loaded = load_fid_inception(WeightsRegistry(tmp_path))
    assert not loaded.random_weights and random_fid.model.random_weights
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: state)  # pytorch-fid, no download
    theirs = pfi.InceptionV3([3]).eval()
    x = torch.rand(1, 3, 48, 56, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), theirs(x)[0].flatten(1), rtol=1e-5, atol=1e-5)


def test_fid_metric_pools_video_features(random_fid):
    m = random_fid
    assert m.level == "set" and not m.real_weights and "random" in m.cache_key()
    a, b = np.random.default_rng(0).normal(size=(2, 30, 8))
    assert m.score_set([a[:10], a[10:]], [b]) == pytest.approx(fid_from_features(a, b))
    with pytest.raises(TypeError, match="set-level"):
        m.score_video(synthetic_video(), synthetic_video())
    v = synthetic_video(2)
    f = m.features(v, None)
    assert f.shape == (2, 2048) and f.dtype == np.float32 and np.isfinite(f).all()


# ------------------------------------------------------------------------------------------- LPIPS

def test_lpips_backbone_mapping_and_wrapper_equal_lpips_forward(tmp_path):
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        alex = torchvision.models.alexnet(weights=None).eval()
    state = {k: v for k, v in alex.state_dict().items() if k.startswith("features.")}
    state["classifier.1.weight"] = torch.zeros(2, 2)  # the real file has the classifier; LPIPS drops it
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        load_lpips_alex(WeightsRegistry(tmp_path))
    torch.save(state, tmp_path / "alexnet-owt-7be5be79.pth")
    net = load_lpips_alex(WeightsRegistry(tmp_path))
    assert not net.random_weights and set(alexnet_features_to_lpips(state)) == set(net.net.state_dict())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        h = x
        for k, stop in enumerate((2, 5, 8, 10, 12), 1):  # each lpips slice = the same torchvision layers
            h_ref = alex.features[:stop](x)
            h = getattr(net.net, f"slice{k}")(h)
            torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)
    pred, ref = smooth_frames(6, 3, 64, 64), smooth_frames(7, 3, 64, 64)
    ours = lpips_frames(net, pred, ref, batch_size=2)
    with torch.inference_mode():
        own = [net(torch.from_numpy(p).permute(2, 0, 1)[None].float() / 255,
                   torch.from_numpy(r).permute(2, 0, 1)[None].float() / 255, normalize=True).item()
               for p, r in zip(pred, ref)]
    np.testing.assert_allclose(ours, own, rtol=1e-5, atol=1e-6)
    assert np.all(lpips_frames(net, ref, ref) == 0)


# ------------------------------------------------------------------------------------------- LSE-C / LSE-D

def plain_lse(video_emb: np.ndarray, audio_emb: np.ndarray, vshift: int) -> tuple[int, float, float]:
    """syncnet_python's calc_pdist + evaluate, one offset and one window at a time."""
    n = len(video_emb)
    means = []
    for off in range(-vshift, vshift + 1):
        dists = []
        for i in range(n):
            a = audio_emb[i + off] if 0 <= i + off < n else np.zeros_like(audio_emb[0])
            dists.append(np.linalg.norm(video_emb[i] - a + 1e-6))
        means.append(np.mean(dists))
    means = np.array(means)
    best = int(np.argmin(means))
    return vshift - best, float(np.median(means) - means[best]), float(means[best])


@pytest.mark.parametrize("shift", [0, 3, -7])
def test_batched_lse_equals_a_plain_per_offset_loop(shift):
    rng = np.random.default_rng(abs(shift))
    v = rng.normal(size=(40, 64)).astype(np.float32)
    a = np.zeros_like(v)
    for j in range(40):  # audio window j carries video window j - shift
        a[j] = v[j - shift] if 0 <= j - shift < 40 else rng.normal(size=64)
    a += rng.normal(0, 0.3, a.shape).astype(np.float32)
    off, conf, dist = lse_from_embeddings(v, a, 15)
    p_off, p_conf, p_dist = plain_lse(v.astype(np.float64), a.astype(np.float64), 15)
    assert off == p_off == -shift
    assert conf == pytest.approx(p_conf, rel=1e-5) and dist == pytest.approx(p_dist, rel=1e-5) and conf > 1


def test_sync_metrics_share_one_syncnet_pass_and_follow_pt_data(tmp_path):
    from pt_data.syncnet import sync_score

    video = synthetic_video(8)
    c, d = create_metric("lse_c", random_weights=True), create_metric("lse_d", random_weights=True)
    assert not c.needs_reference and c.higher_is_better and not d.higher_is_better and not c.real_weights
    rc, rd = c.evaluate(video, None), d.evaluate(video, None)
    assert len([k for k in video._memo if k.startswith("sync:")]) == 1  # one SyncNet pass for both
    expected = sync_score(c.model, sync_crops(video), video.audio_pcm16())
    assert rc.value == pytest.approx(expected.conf, abs=1e-5) and rd.value == pytest.approx(expected.min_dist, abs=1e-5)
    assert rc.extras == rd.extras == {"lse_offset": float(expected.offset), "lse_windows": 3.0}
    with pytest.raises(ValueError, match="25 fps"):
        c.evaluate(synthetic_video(8, fps=30.0), None)
    with pytest.raises(ValueError, match="no audio"):
        c.evaluate(synthetic_video(8, audio=False), None)
    with pytest.raises(MissingWeightsError, match="syncnet_v2.model"):
        create_metric("lse_d", weights_dir=tmp_path)


# ------------------------------------------------------------------------------------------- CSIM

def test_similarity_transform_matches_scikit_image():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, (5, 2))
    est = SimilarityTransform.from_estimate(src, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(similarity_transform(src, ARCFACE_TEMPLATE), est.params[:2], atol=1e-9)
    m = similarity_transform(ARCFACE_TEMPLATE, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_arcface_alignment_and_preprocessing_follow_insightface():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    lm = np.zeros((478, 2))
    for k, ids in enumerate(((33, 133), (362, 263), (1,), (61,), (291,))):
        lm[list(ids)] = ARCFACE_TEMPLATE[k]  # a face already in template position
    np.testing.assert_allclose(five_points(lm), ARCFACE_TEMPLATE)
    aligned = align_faces(frame[None], five_points(lm)[None])
    assert np.array_equal(aligned[0], frame)  # identity warp
    model = build_random_arcface_onnx(seed=2, embed_dim=16)
    enc = ArcFaceEncoder(model, random_weights=True, batch_size=2)
    faces = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model).graph
    w = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    x = (torch.from_numpy(faces).permute(0, 3, 1, 2).float() - 127.5) / 127.5  # RGB, insightface's mean/std
    expected = torch.relu(torch.nn.functional.conv2d(x, w["w_conv"], w["b_conv"], stride=8)).flatten(1) @ w["w_fc"]
    np.testing.assert_allclose(enc.embed(faces), (expected + w["b_fc"]).numpy(), rtol=1e-4, atol=1e-4)


def test_csim_metric_plumbing_with_a_random_model(tmp_path):
    with pytest.raises(MissingWeightsError, match="w600k_r50.onnx"):
        create_metric("csim", weights_dir=tmp_path)
    m = create_metric("csim", random_weights=True)
    assert not m.real_weights and "random" in m.cache_key()
    a, b = synthetic_video(4, seed=1), synthetic_video(5, seed=2)
    res = m.evaluate(a, a)
    assert res.value == pytest.approx(1.0, abs=1e-9) and res.extras == {"csim_frames": 4.0}
    assert -1 <= m.score_video(a, b) < 1


# ------------------------------------------------------------------------------------------- registry

def test_registry_flags_and_missing_weights(tmp_path):
    assert set(METRICS) == {"ssim", "psnr", "ssim_face", "psnr_face", "fid", "lpips", "lmd", "lse_c", "lse_d", "csim",
                            "stylesim"}
    with pytest.raises(KeyError, match="available"):
        create_metric("no_such_metric")
    for name, cls in METRICS.items():
        assert cls.name == name and isinstance(cls.higher_is_better, bool) and cls.level in ("video", "set")
    for name in ("ssim", "psnr_face", "lmd"):  # no downloadable weights: always real
        m = create_metric(name, random_weights=True)
        assert m.real_weights and m.describe()["protocol"]
    assert create_metric("lmd").cache_key().startswith("lmd/v1/mediapipe-face-mesh=mediapipe==")

    class OnlyScore(Metric):  # a metric without extra columns may implement score_video alone
        name, higher_is_better = "frames", True

        def score_video(self, pred, ref):
            return float(min(pred.num_frames, ref.num_frames))

    assert OnlyScore().evaluate(synthetic_video(3), synthetic_video(4)).value == 3.0
    with pytest.raises(NotImplementedError):
        Metric().score_video(synthetic_video(3), synthetic_video(4))
    for name, fname in (("fid", "pt_inception"), ("lpips", "alexnet-owt"), ("lse_c", "syncnet_v2"),
                        ("csim", "w600k_r50")):
        with pytest.raises(MissingWeightsError, match=fname):
            create_metric(name, weights_dir=tmp_path)


# ------------------------------------------------------------------------------------------- real videos

NUM_REAL_FRAMES = 8


def _degrade(frames: np.ndarray, kind: str, level: float) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(0)
    out = []
    for f in frames:
        if kind == "blur":
            out.append(cv2.GaussianBlur(f, (0, 0), level))
        elif kind == "jpeg":
            ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, int(level)])
            out.append(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED))
        else:
            out.append(np.clip(f + rng.normal(0, level, f.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


# (kind, mild level, strong level)
DEGRADATIONS = (("blur", 1.0, 3.0), ("jpeg", 50, 5), ("noise", 5.0, 25.0))


@pytest.fixture(scope="module")
def real_ref():
    from conftest import SHARED_DATA

    path = SHARED_DATA / "videos" / "vrt_face5.mp4"
    if not path.is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (set PT_SHARED_DATA to the shared/data folder)")
    return load_bench_video(path, max_frames=NUM_REAL_FRAMES)


@pytest.fixture(scope="module")
def small_ref(real_ref):
    """The real clip at half resolution (262x262): the same content, a quarter of the full-frame SSIM cost."""
    import cv2

    h, w = real_ref.frames.shape[1:3]
    return real_ref.with_frames(np.stack([cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
                                          for f in real_ref.frames]), name="small")


@pytest.fixture(scope="module")
def degraded(small_ref):
    from pt_bench.baselines import freeze_mouth

    out = {f"{k}-{s}": small_ref.with_frames(_degrade(small_ref.frames, k, lvl), name=f"{k}-{s}")
           for k, mild, strong in DEGRADATIONS for s, lvl in (("mild", mild), ("strong", strong))}
    out["frozen"] = small_ref.with_frames(freeze_mouth(small_ref.frames, small_ref.landmarks()), name="frozen")
    return out


@pytest.mark.realdata
def test_reference_against_itself_is_perfect(real_ref):
    again = load_bench_video(real_ref.path, max_frames=NUM_REAL_FRAMES)  # separate decode + landmarks
    assert again.cached_landmarks() is None
    assert create_metric("ssim").score_video(again, real_ref) == pytest.approx(1.0, abs=1e-6)
    assert create_metric("ssim_face").score_video(again, real_ref) == pytest.approx(1.0, abs=1e-6)
    assert create_metric("psnr").score_video(again, real_ref) == PSNR_CAP_DB
    assert create_metric("psnr_face").score_video(again, real_ref) == PSNR_CAP_DB
    res = create_metric("lmd").evaluate(again, real_ref)
    assert res.value == 0.0 and res.extras["lmd_frames"] == NUM_REAL_FRAMES  # deterministic landmarks


@pytest.mark.realdata
def test_degradations_move_weight_free_metrics_the_right_way(small_ref, degraded):
    metrics = [create_metric(n) for n in ("ssim", "psnr", "ssim_face", "psnr_face", "lmd")]
    perfect = {"ssim": 1.0, "psnr": PSNR_CAP_DB, "ssim_face": 1.0, "psnr_face": PSNR_CAP_DB, "lmd": 0.0}
    scores = {k: {m.name: m.score_video(v, small_ref) for m in metrics} for k, v in degraded.items()}
    for kind, _, _ in DEGRADATIONS:
        mild, strong = scores[f"{kind}-mild"], scores[f"{kind}-strong"]
        for m in metrics:
            better = (lambda x, y: x > y) if m.higher_is_better else (lambda x, y: x < y)
            assert better(perfect[m.name], mild[m.name]), (kind, m.name, mild[m.name])
            assert better(mild[m.name], strong[m.name]), (kind, m.name, mild[m.name], strong[m.name])
    # a frozen mouth barely changes the pixels but moves the lips far more than mild degradations do
    frozen = scores["frozen"]
    assert frozen["lmd"] > 1.0 and all(frozen["lmd"] > 2 * scores[f"{k}-mild"]["lmd"] for k, _, _ in DEGRADATIONS)
    assert frozen["ssim"] > scores["blur-strong"]["ssim"]


def _real_weights(*names: str) -> WeightsRegistry:
    reg = WeightsRegistry()
    for name in names:
        try:
            reg.path(name)
        except MissingWeightsError as e:
            pytest.skip(f"direction test needs the real pretrained file: {e}")
    return reg


@pytest.mark.realdata
def test_lpips_direction_with_real_weights(small_ref, degraded):
    _real_weights("lpips-alexnet")
    m = create_metric("lpips")
    assert m.real_weights and m.score_video(small_ref, small_ref) == 0.0
    for kind, _, _ in DEGRADATIONS:
        mild, strong = (m.score_video(degraded[f"{kind}-{s}"], small_ref) for s in ("mild", "strong"))
        assert 0 < mild < strong, kind


@pytest.mark.realdata
def test_fid_direction_with_real_weights(small_ref, degraded):
    _real_weights("fid-inception")
    m = create_metric("fid")
    ref_feats = [m.features(small_ref, small_ref)]
    assert m.score_set(ref_feats, ref_feats) == pytest.approx(0.0, abs=1e-6)
    for kind in ("blur", "noise"):
        mild, strong = (m.score_set([m.features(degraded[f"{kind}-{s}"], small_ref)], ref_feats)
                        for s in ("mild", "strong"))
        assert 0 < mild < strong, kind


@pytest.mark.realdata
def test_csim_direction_with_real_weights(small_ref, degraded):
    _real_weights("arcface-w600k-r50")
    from conftest import SHARED_DATA

    m = create_metric("csim")
    other = load_bench_video(SHARED_DATA / "videos" / "vrt_face2.mp4", max_frames=NUM_REAL_FRAMES)
    same = m.score_video(small_ref, small_ref)
    blurred = m.score_video(degraded["blur-strong"], small_ref)
    stranger = m.score_video(other, small_ref)
    assert same == pytest.approx(1.0, abs=1e-6) and stranger < blurred < same


@pytest.mark.realdata
def test_sync_direction_with_real_weights():
    _real_weights("syncnet_v2")
    from conftest import SHARED_DATA

    from pt_bench.baselines import freeze_mouth, shift_audio

    video = load_bench_video(SHARED_DATA / "videos" / "vrt_face2.mp4", max_frames=50, resample_fps=25)
    c, d = create_metric("lse_c"), create_metric("lse_d")
    base_c, base_d = c.evaluate(video, None), d.score_video(video, None)
    assert base_c.value > 1.5 and abs(base_c.extras["lse_offset"]) <= 3  # a real video is roughly in sync
    within = c.evaluate(video.with_audio(shift_audio(video.audio, 8, video.fps), name="shift8"), None)
    assert abs(abs(within.extras["lse_offset"] - base_c.extras["lse_offset"]) - 8) <= 1  # the offset follows
    beyond = video.with_audio(shift_audio(video.audio, 40, video.fps), name="shift40")  # outside -15..+15
    assert c.score_video(beyond, None) < base_c.value and d.score_video(beyond, None) > base_d
    frozen = video.with_frames(freeze_mouth(video.frames, video.landmarks()), name="frozen")
    assert c.score_video(frozen, None) < base_c.value and d.score_video(frozen, None) > base_d
