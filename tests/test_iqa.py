"""Image quality: the weight-free face scorer ranks degradations, clip scoring, HyperIQA's official layout."""
from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pt_data.iqa import (DEFAULT_IQA_MODEL, IQA_SCORERS, FaceQualityScorer, ImageQualityScorer, IQAConfig,
                         assess_clip, create_scorer, distort, score_clip, scored_frame_indices)
from pt_data.weights import MissingWeightsError, WeightsRegistry


# ------------------------------------------------------------------------------------------------ helpers


def synthetic_face(seed: int = 0, size: int = 256) -> np.ndarray:
    """A textured face-like 256x256 RGB crop: shaded skin with fine texture, eyes, brows, nose, mouth, hair."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.empty((size, size, 3), np.float32)
    img[:] = (70 + 60 * yy)[..., None] * np.array([0.8, 0.9, 1.1], np.float32)
    face = ((xx - 0.5) / 0.33) ** 2 + ((yy - 0.55) / 0.42) ** 2 < 1
    shade = 1.0 - 0.35 * np.hypot(xx - 0.45, yy - 0.45)
    img[face] = (np.array([225, 180, 150], np.float32) * shade[..., None])[face]
    hair = (((xx - 0.5) / 0.38) ** 2 + ((yy - 0.35) / 0.36) ** 2 < 1) & ~face & (yy < 0.6)
    img[hair] = (60, 40, 30)
    for cx in (0.37, 0.63):
        c = (int(cx * size), int(0.47 * size))
        cv2.ellipse(img, c, (16, 8), 0, 0, 360, (240, 240, 235), -1, cv2.LINE_AA)
        cv2.circle(img, c, 6, (70, 50, 40), -1, cv2.LINE_AA)
        cv2.circle(img, c, 2, (10, 10, 10), -1, cv2.LINE_AA)
        cv2.ellipse(img, (c[0], c[1] - 20), (20, 6), 0, 200, 340, (70, 50, 40), 4, cv2.LINE_AA)
    cv2.line(img, (128, 125), (120, 165), (170, 120, 100), 2, cv2.LINE_AA)
    cv2.ellipse(img, (128, 170), (14, 5), 0, 0, 360, (150, 100, 90), -1, cv2.LINE_AA)
    cv2.ellipse(img, (128, 195), (30, 9), 0, 0, 360, (170, 60, 70), -1, cv2.LINE_AA)
    cv2.line(img, (100, 195), (156, 195), (90, 30, 40), 2, cv2.LINE_AA)
    tex = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.5)
    img += 6 * tex[..., None] / tex.std()
    img = cv2.GaussianBlur(img, (0, 0), 0.7)  # camera optics
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def real_face_crops(video: str | Path, num_frames: int = 4, stride: int = 1) -> np.ndarray:
    """Aligned 256 face crops of the first ``num_frames * stride`` frames (every ``stride``-th) of a video."""
    from pt_data.crop import crop_frame, crop_transforms
    from pt_data.decode import iter_frames_at_fps
    from pt_data.landmarks import FaceMeshDetector

    frames, lms = [], []
    with FaceMeshDetector() as det:
        for _, rgb in iter_frames_at_fps(str(video), max_frames=num_frames * stride):
            faces = det.detect(rgb)
            if len(faces) != 1:
                raise ValueError(f"{video}: expected one face, found {len(faces)}")
            frames.append(rgb)
            lms.append(faces[0][:, :2])
    affines = crop_transforms(np.stack(lms))
    return np.stack([crop_frame(f, a) for f, a in zip(frames, affines)][::stride])


@functools.lru_cache(maxsize=1)
def _real_crops(videos_dir: str) -> dict[str, np.ndarray]:
    return {p.stem: real_face_crops(p, num_frames=2, stride=5) for p in sorted(Path(videos_dir).glob("*.mp4"))}


@pytest.fixture(scope="module")
def scorer() -> FaceQualityScorer:
    return FaceQualityScorer()


# ------------------------------------------------------------------------------------------------ registry


def test_registry_and_config():
    assert DEFAULT_IQA_MODEL in IQA_SCORERS and "hyperiqa-koniq" in IQA_SCORERS
    s = create_scorer()
    assert isinstance(s, ImageQualityScorer) and s.name == DEFAULT_IQA_MODEL and s.higher_is_better
    assert 0 < s.default_threshold < 100 and s.default_every == 1
    with pytest.raises(ValueError, match="known: .*hyperiqa-koniq.*pt-face-quality-v1"):
        create_scorer("brisque")
    with pytest.raises(ValueError, match="known"):
        IQAConfig(model="nope")
    with pytest.raises(ValueError, match="every"):
        IQAConfig(every=0)
    with pytest.raises(TypeError):
        IQA_SCORERS["mine"] = lambda *a: s  # the registry is read-only
    assert IQAConfig().create_scorer().name == DEFAULT_IQA_MODEL


# ------------------------------------------------------------------------------------------------ default scorer


def test_default_scorer_ranks_degradations_on_a_synthetic_face(scorer):
    clean = synthetic_face()[None]
    s = {name: float(scorer.score(x)[0]) for name, x in {
        "clean": clean,
        "blur2": distort(clean, "blur", 2), "blur3": distort(clean, "blur", 3),
        "noise15": distort(clean, "noise", 15), "noise25": distort(clean, "noise", 25),
        "dark": distort(clean, "dark", 0.25), "jpeg10": distort(clean, "jpeg", 10),
    }.items()}
    assert s["clean"] > s["blur2"] > s["blur3"]
    assert s["clean"] > s["noise15"] > s["noise25"]
    assert s["clean"] > s["dark"] and s["clean"] > s["jpeg10"]
    thr = scorer.default_threshold
    assert s["clean"] > thr + 20
    assert max(s["blur3"], s["noise15"], s["noise25"], s["dark"], s["jpeg10"]) < thr


def test_default_scorer_basic_properties(scorer):
    faces = np.stack([synthetic_face(seed) for seed in range(3)])
    flat = np.stack([np.full((256, 256, 3), v, np.uint8) for v in (0, 128, 255)])
    s = scorer.score(np.concatenate([faces, flat]))
    assert s.shape == (6,) and s.dtype == np.float32
    assert np.all((s >= 0) & (s <= 100))
    assert np.all(s[3:] < 1)  # no contrast, no detail: a constant image is worthless
    np.testing.assert_array_equal(scorer.score(faces), s[:3])  # deterministic, and batch-independent
    np.testing.assert_array_equal(scorer.score(faces[1:2]), s[1:2])
    np.testing.assert_allclose(scorer.score(faces[:, :, ::-1]), s[:3], atol=0.05)  # mirror-symmetric region
    assert scorer.score(np.zeros((0, 256, 256, 3), np.uint8)).shape == (0,)
    with pytest.raises(ValueError, match="uint8"):
        scorer.score(faces.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        scorer.score(faces[0])


def test_noise_and_blur_measurements_are_calibrated(scorer):
    """The noise estimate returns the std of added luma noise; the blur estimate that of a blurred step edge."""
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    ramp = 80 + 0.3 * xx + 0.2 * yy
    rng = np.random.default_rng(0)
    for sigma in (2.0, 5.0, 8.0):
        grey = np.clip(np.rint(ramp + rng.normal(0, sigma, ramp.shape)), 0, 255).astype(np.uint8)
        est = scorer.measure(np.repeat(grey[None, ..., None], 3, -1)).noise_std[0]
        assert est == pytest.approx(sigma, rel=0.08)
    stripes = np.where(((xx + 3) // 16) % 2 == 1, 180, 60).astype(np.uint8)  # steps off the 8x8 JPEG grid
    stripes = np.repeat(stripes[None, ..., None], 3, -1)
    for b in (1.0, 1.5, 2.0, 2.5):
        assert scorer.measure(distort(stripes, "blur", b)).blur_px[0] == pytest.approx(b, abs=0.15)


def test_sharpness_ignores_noise_and_contrast(scorer):
    """A noise-robust, contrast-normalised sharpness: noise and darkening leave the blur estimate alone."""
    clean = np.stack([synthetic_face(seed) for seed in range(2)])
    blurred = distort(clean, "blur", 2)
    for x in (clean, blurred):
        b = scorer.measure(x).blur_px
        for kind, level in (("noise", 15), ("noise", 25), ("dark", 0.5)):
            np.testing.assert_allclose(scorer.measure(distort(x, kind, level)).blur_px, b, atol=0.15)
    m_noisy = scorer.measure(distort(clean, "noise", 25))
    assert np.all(m_noisy.factors["sharpness"] > 0.9) and np.all(m_noisy.factors["noise"] < 0.1)


@pytest.mark.realdata
def test_default_scorer_on_real_face_crops(shared_data, scorer):
    crops = np.concatenate(list(_real_crops(str(shared_data / "videos")).values()))  # 5 videos x 2 frames
    assert crops.shape == (10, 256, 256, 3)
    clean = scorer.score(crops)
    worse = {f"{k}{v}": scorer.score(distort(crops, k, v)) for k, v in
             (("blur", 2), ("blur", 3), ("noise", 15), ("noise", 25), ("dark", 0.25), ("jpeg", 10))}
    for name, s in worse.items():
        assert np.all(clean > s), name  # every crop, every degradation
    assert np.all(worse["blur2"] > worse["blur3"]) and np.all(worse["noise15"] > worse["noise25"])
    thr = scorer.default_threshold
    assert clean.min() > thr + 20
    for name in ("blur3", "noise15", "noise25", "dark0.25", "jpeg10"):
        assert worse[name].max() < thr, name


# ------------------------------------------------------------------------------------------------ clips


class _MeanPixel(ImageQualityScorer):
    """A stub scorer: the mean pixel value, and a record of how many crops it was asked about."""

    name = "mean-pixel"
    default_threshold = 50.0
    default_every = 3

    def __init__(self) -> None:
        self.seen = 0

    def score(self, crops: np.ndarray) -> np.ndarray:
        self.seen += len(crops)
        return crops.reshape(len(crops), -1).mean(1).astype(np.float32)


def test_score_clip_nan_pattern_and_mean():
    crops = np.stack([np.full((8, 8, 3), 10 * t, np.uint8) for t in range(10)])
    stub = _MeanPixel()
    frames, clip = score_clip(stub, crops, every=4)
    scored = [0, 4, 5, 8, 9]  # every 4th, the middle (10 // 2) and the last
    np.testing.assert_array_equal(np.flatnonzero(~np.isnan(frames)), scored)
    np.testing.assert_allclose(frames[scored], [10 * t for t in scored])
    assert frames.dtype == np.float32 and clip == pytest.approx(np.mean([10 * t for t in scored]))
    assert stub.seen == len(scored)
    frames, clip = score_clip(stub, crops)  # every frame
    assert not np.isnan(frames).any() and clip == pytest.approx(45)
    np.testing.assert_array_equal(scored_frame_indices(1, 25), [0])
    np.testing.assert_array_equal(scored_frame_indices(100, 25), [0, 25, 50, 75, 99])
    with pytest.raises(ValueError):
        scored_frame_indices(0)
    with pytest.raises(ValueError):
        score_clip(stub, crops, every=0)


def test_assess_clip_takes_defaults_from_the_scorer():
    crops = np.stack([np.full((8, 8, 3), 10 * t, np.uint8) for t in range(10)])
    q = assess_clip(_MeanPixel(), crops, IQAConfig())
    assert q.threshold == 50.0 and q.model == "mean-pixel"
    np.testing.assert_array_equal(np.flatnonzero(~np.isnan(q.frame_scores)), [0, 3, 5, 6, 9])  # every 3
    assert q.clip_score == pytest.approx(46) and not q.passed
    q = assess_clip(_MeanPixel(), crops, IQAConfig(threshold=45.0, every=1))
    assert q.clip_score == pytest.approx(45) and q.passed


# ------------------------------------------------------------------------------------------------ HyperIQA

# The official HyperNet(16, 112, 224, 112, 56, 28, 14, 7) of SSL92/hyperIQA models.py: its own layers
# (shapes checked against that file), besides the torchvision ResNet-50 layers under ``res.``.
OFFICIAL_HEAD_SHAPES = {
    "res.lda1_pool.0.weight": (16, 256, 1, 1), "res.lda1_fc.weight": (16, 1024), "res.lda1_fc.bias": (16,),
    "res.lda2_pool.0.weight": (32, 512, 1, 1), "res.lda2_fc.weight": (16, 512), "res.lda2_fc.bias": (16,),
    "res.lda3_pool.0.weight": (64, 1024, 1, 1), "res.lda3_fc.weight": (16, 256), "res.lda3_fc.bias": (16,),
    "res.lda4_fc.weight": (176, 2048), "res.lda4_fc.bias": (176,),
    "conv1.0.weight": (1024, 2048, 1, 1), "conv1.0.bias": (1024,),
    "conv1.2.weight": (512, 1024, 1, 1), "conv1.2.bias": (512,),
    "conv1.4.weight": (112, 512, 1, 1), "conv1.4.bias": (112,),
    "fc1w_conv.weight": (512, 112, 3, 3), "fc1w_conv.bias": (512,),  # 224 * 112 / 7^2
    "fc1b_fc.weight": (112, 112), "fc1b_fc.bias": (112,),
    "fc2w_conv.weight": (128, 112, 3, 3), "fc2w_conv.bias": (128,),  # 112 * 56 / 7^2
    "fc2b_fc.weight": (56, 112), "fc2b_fc.bias": (56,),
    "fc3w_conv.weight": (32, 112, 3, 3), "fc3w_conv.bias": (32,),  # 56 * 28 / 7^2
    "fc3b_fc.weight": (28, 112), "fc3b_fc.bias": (28,),
    "fc4w_conv.weight": (8, 112, 3, 3), "fc4w_conv.bias": (8,),  # 28 * 14 / 7^2
    "fc4b_fc.weight": (14, 112), "fc4b_fc.bias": (14,),
    "fc5w_fc.weight": (14, 112), "fc5w_fc.bias": (14,),
    "fc5b_fc.weight": (1, 112), "fc5b_fc.bias": (1,),
}


@pytest.fixture(scope="module")
def random_scorer():
    return create_scorer("hyperiqa-koniq", random_weights=True)


def test_hyperiqa_state_dict_matches_the_official_layout(random_scorer):
    import torchvision

    expected = {f"res.{k}": tuple(v.shape) for k, v in torchvision.models.resnet50().state_dict().items()
                if not k.startswith("fc.")}
    expected.update(OFFICIAL_HEAD_SHAPES)
    ours = {k: tuple(v.shape) for k, v in random_scorer.net.state_dict().items()}
    assert set(ours) == set(expected)
    assert ours == expected
    assert ours["res.layer4.2.conv3.weight"] == (2048, 512, 1, 1) and "res.bn1.num_batches_tracked" in ours


def test_hyperiqa_random_weights_forward(random_scorer):
    assert random_scorer.name == "hyperiqa-koniq+random-weights"
    assert random_scorer.default_threshold == 40.0 and random_scorer.default_every == 25
    crops = np.stack([synthetic_face(seed) for seed in range(3)])
    s = random_scorer.score(crops)
    assert s.shape == (3,) and s.dtype == np.float32 and np.isfinite(s).all()
    random_scorer.batch_size = 2  # batching does not change the result
    try:
        np.testing.assert_allclose(random_scorer.score(crops), s, rtol=1e-4, atol=1e-4)
    finally:
        random_scorer.batch_size = 32
    again = create_scorer("hyperiqa-koniq", random_weights=True)  # seeded: the same random network
    np.testing.assert_allclose(again.score(crops[:1]), s[:1], rtol=1e-4, atol=1e-4)


def test_hyperiqa_target_network_equals_the_official_grouped_convolutions(random_scorer):
    """Our batched matrix products against the official evaluation: one grouped 1x1 conv per target layer."""
    import torch.nn.functional as F

    from pt_data.hyperiqa import preprocess

    net = random_scorer.net
    x = preprocess(np.stack([synthetic_face(seed) for seed in range(2)]))
    with torch.inference_mode():
        feat, vec = net.res(x)
        h = net.conv1(feat)
        pooled = net.pool(h).flatten(1)
        sizes = (224, 112, 56, 28, 14, 1)
        weights = [getattr(net, f"fc{i}w_conv")(h) for i in range(1, 5)] + [net.fc5w_fc(pooled)]
        biases = [getattr(net, f"fc{i}b_fc")(pooled) for i in range(1, 5)] + [net.fc5b_fc(pooled)]
        q = vec.reshape(1, -1, 1, 1)  # the batch stacked along channels
        for i, (w, b) in enumerate(zip(weights, biases)):
            w = w.reshape(2 * sizes[i + 1], sizes[i], 1, 1)
            q = F.conv2d(q, w, b.reshape(-1), groups=2)
            q = torch.sigmoid(q) if i < 4 else q
        np.testing.assert_allclose(net(x).numpy(), q.flatten().numpy(), rtol=1e-4, atol=1e-4)


def test_hyperiqa_preprocessing_is_latentsyncs():
    from pt_data.hyperiqa import IMAGENET_MEAN, IMAGENET_STD, preprocess

    crops = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    x = preprocess(crops)
    assert x.shape == (2, 3, 224, 224)
    ref = (crops[:, 16:240, 16:240].astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD  # CenterCrop 224
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), ref, atol=1e-5)
    assert preprocess(np.zeros((1, 512, 512, 3), np.uint8)).shape == (1, 3, 224, 224)  # other sizes: resized


def test_hyperiqa_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(MissingWeightsError, match="koniq_pretrained.pkl"):
        create_scorer("hyperiqa-koniq", weights=WeightsRegistry(tmp_path))


def test_hyperiqa_weights_round_trip(tmp_path, random_scorer):
    path = tmp_path / "hyperiqa" / "koniq_pretrained.pkl"
    path.parent.mkdir()
    torch.save(random_scorer.net.state_dict(), path)
    loaded = create_scorer("hyperiqa-koniq", weights=WeightsRegistry(tmp_path))
    assert loaded.name == "hyperiqa-koniq"
    crops = synthetic_face()[None]
    np.testing.assert_allclose(loaded.score(crops), random_scorer.score(crops), rtol=1e-5, atol=1e-5)
    torch.save({"conv.weight": torch.zeros(1)}, path)  # another network's file
    with pytest.raises(ValueError, match="koniq_pretrained.pkl"):
        create_scorer("hyperiqa-koniq", weights=WeightsRegistry(tmp_path))
