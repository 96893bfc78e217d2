"""SyncNet (syncnet_v2) sync scoring and its MFCC front end, checked against the official syncnet_python code.

The architecture facts below were read from joonson/syncnet_python ``SyncNetModel.py`` (class ``S``) and the
protocol from ``SyncNetInstance.evaluate`` / ``calc_pdist`` (same in Wav2Lip's ``evaluation/scores_LSE``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pt_data.mfcc import frame_signal, mel_filterbank, mfcc, power_spectrum, preemphasis
from pt_data.syncnet import (SyncFilterConfig, SyncNet, SyncResult, load_syncnet, offset_and_confidence,
                             pairwise_offset_distances, sync_embeddings, sync_score, sync_verdict)
from pt_data.weights import MissingWeightsError, WeightsRegistry

# (key, shape) from SyncNetModel.S: nn.Sequential indices count the ReLU / pooling slots.
OFFICIAL_KEYS = {
    "netcnnaud.0.weight": (64, 1, 3, 3),
    "netcnnaud.4.weight": (192, 64, 3, 3),
    "netcnnaud.8.weight": (384, 192, 3, 3),
    "netcnnaud.18.weight": (512, 256, 5, 4),
    "netcnnaud.19.running_var": (512,),
    "netfcaud.0.weight": (512, 512),
    "netfcaud.1.running_mean": (512,),
    "netfcaud.3.weight": (1024, 512),
    "netfclip.3.bias": (1024,),
    "netcnnlip.0.weight": (96, 3, 5, 7, 7),
    "netcnnlip.4.weight": (256, 96, 1, 5, 5),
    "netcnnlip.11.weight": (256, 256, 1, 3, 3),
    "netcnnlip.18.weight": (512, 256, 1, 6, 6),
    "netcnnlip.19.weight": (512,),
}
# Summed by hand from the layer list: audio CNN 4,875,712 + two FC heads 2 x 788,992 + lip CNN 7,177,920.
OFFICIAL_NUM_PARAMS = 13_631_616
NUM_CONV_LINEAR = 12 + 4  # weight + bias each
NUM_BATCHNORMS = 14  # weight, bias, running_mean, running_var (+ num_batches_tracked since torch 0.4.1)


@pytest.fixture(scope="module")
def random_model() -> SyncNet:
    return load_syncnet(random_weights=True, seed=0)


# ---------------------------------------------------------------- architecture and weights


def test_state_dict_matches_official_layout(random_model):
    sd = random_model.state_dict()
    for key, shape in OFFICIAL_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    assert sum(p.numel() for p in random_model.parameters()) == OFFICIAL_NUM_PARAMS
    assert len([k for k in sd if not k.endswith("num_batches_tracked")]) == 2 * NUM_CONV_LINEAR + 4 * NUM_BATCHNORMS
    assert {k.split(".")[0] for k in sd} == {"netcnnaud", "netfcaud", "netcnnlip", "netfclip"}
    assert not random_model.training and random_model.random_weights


def test_random_weights_are_seeded_without_touching_the_global_rng():
    state = torch.random.get_rng_state()
    a, b = load_syncnet(random_weights=True, seed=3), load_syncnet(random_weights=True, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.netfcaud[3].weight, b.netfcaud[3].weight)


def test_missing_weights_name_the_file(tmp_path):
    with pytest.raises(MissingWeightsError, match="syncnet_v2.model"):
        load_syncnet(WeightsRegistry(tmp_path))


def test_saved_state_dict_round_trips(tmp_path, random_model):
    torch.save(random_model.state_dict(), tmp_path / "syncnet_v2.model")
    loaded = load_syncnet(WeightsRegistry(tmp_path))
    assert not loaded.random_weights and not loaded.training
    for key, value in random_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(2, 1, 13, 20, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(loaded.forward_aud(x), random_model.forward_aud(x))


def test_official_style_file_loads_safely(tmp_path, random_model):
    """``__S__.`` prefixes, no ``num_batches_tracked`` (torch < 0.4.1), legacy non-zip pickle: all load."""
    old_style = {f"__S__.{k}": v.clone() for k, v in random_model.state_dict().items()
                 if not k.endswith("num_batches_tracked")}
    torch.save(old_style, tmp_path / "syncnet_v2.model", _use_new_zipfile_serialization=False)
    loaded = load_syncnet(WeightsRegistry(tmp_path))
    assert torch.equal(loaded.netcnnlip[18].weight, random_model.netcnnlip[18].weight)
    assert torch.equal(loaded.netfclip[1].running_var, random_model.netfclip[1].running_var)


def test_foreign_state_dict_is_rejected(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "syncnet_v2.model")
    with pytest.raises(ValueError, match="not a syncnet_v2 state dict"):
        load_syncnet(WeightsRegistry(tmp_path))


def test_random_weights_embeddings_for_a_30_frame_clip(random_model):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (30, 256, 256, 3), dtype=np.uint8)
    audio = rng.integers(-3000, 3000, 30 * 640, dtype=np.int16)
    video_emb, audio_emb = sync_embeddings(random_model, crops, audio, batch_size=20)
    assert video_emb.shape == audio_emb.shape == (25, 1024)
    assert torch.isfinite(video_emb).all() and torch.isfinite(audio_emb).all()


# ---------------------------------------------------------------- protocol (no network)


class _Probe(nn.Module):
    """Stands in for SyncNet: reveals which pixels / MFCC columns each window received."""

    random_weights = True

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (3, 5, 224, 224)
        return x.mean(dim=(3, 4)).flatten(1)  # (B, 3 * 5): per channel and frame

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (1, 13, 20)
        return x.flatten(1)


def test_windows_follow_syncnet_instance_evaluate():
    """Transcription of ``evaluate``'s indexing: BGR frames stacked to (1, 3, T, H, W), MFCC to (1, 1, 13, M)."""
    import cv2

    rng = np.random.default_rng(1)
    num_frames, audio_frames = 14, 12  # audio is shorter: min_length = 12, 7 windows
    crops = rng.integers(0, 256, (num_frames, 256, 256, 3), dtype=np.uint8)
    crops[..., 0], crops[..., 2] = 200, 10  # R, B constant: channel 0 fed to the net must be B
    audio = rng.integers(-8000, 8000, audio_frames * 640 + 300, dtype=np.int16)

    video_emb, audio_emb = sync_embeddings(_Probe(), crops, audio, batch_size=3)

    images = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), (224, 224)) for f in crops]
    imtv = torch.from_numpy(np.transpose(np.stack(images, axis=3)[None], (0, 3, 4, 1, 2)).astype(float)).float()
    cct = torch.from_numpy(mfcc(audio, 16000).T[None, None].astype(float)).float()
    lastframe = min(len(images), math.floor(len(audio) / 640)) - 5
    ref_video = torch.cat([_Probe().forward_lip(imtv[:, :, v:v + 5]) for v in range(lastframe)])
    ref_audio = torch.cat([_Probe().forward_aud(cct[:, :, :, 4 * v:4 * v + 20]) for v in range(lastframe)])
    assert video_emb.shape[0] == lastframe == 7
    torch.testing.assert_close(video_emb, ref_video, rtol=0, atol=1e-4)
    assert torch.equal(audio_emb, ref_audio)
    assert torch.allclose(video_emb[:, :5], torch.tensor(10.0))  # BGR order, raw [0, 255] values


def test_too_short_clips_are_a_clear_error():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="at least 6 frames"):
        sync_score(_Probe(), crops[:5], np.zeros(30 * 640, np.int16))
    with pytest.raises(ValueError, match="at least 6 frames"):
        sync_score(_Probe(), crops, np.zeros(5 * 640 + 639, np.int16))


def _calc_pdist_reference(feat1: torch.Tensor, feat2: torch.Tensor, vshift: int) -> np.ndarray:
    """syncnet_python's loop: zero-pad audio by vshift, per video row the distance to 2 vshift + 1 rows."""
    win = 2 * vshift + 1
    padded = nn.functional.pad(feat2, (0, 0, vshift, vshift))
    return torch.stack([nn.functional.pairwise_distance(feat1[[i], :].repeat(win, 1), padded[i:i + win, :])
                        for i in range(len(feat1))]).numpy()


def _shifted_embeddings(k: int, n: int = 60, d: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Audio embeddings a_j random; video embedding i = a_{i+k} where that exists (else random)."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(size=(n, d)).astype(np.float32)
    video = rng.normal(size=(n, d)).astype(np.float32)
    idx = np.arange(n) + k
    ok = (idx >= 0) & (idx < n)
    video[ok] = audio[idx[ok]]
    return video, audio


def test_pairwise_distances_equal_calc_pdist():
    video, audio = _shifted_embeddings(2, n=9, d=5)
    for vshift in (1, 4, 15):
        ours = pairwise_offset_distances(video, audio, vshift)
        assert ours.shape == (9, 2 * vshift + 1)
        np.testing.assert_allclose(ours, _calc_pdist_reference(torch.from_numpy(video), torch.from_numpy(audio),
                                                               vshift), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k", [-7, -1, 0, 3, 12])
def test_known_shift_is_recovered(k):
    video, audio = _shifted_embeddings(k)
    offset, conf, min_dist = offset_and_confidence(pairwise_offset_distances(video, audio, 15), 15)
    assert offset == -k  # offset = vshift - argmin; video i matching audio i + k is column vshift + k
    assert conf > 3.0 and min_dist < conf


def test_unrelated_embeddings_have_no_confidence():
    rng = np.random.default_rng(5)
    video, audio = rng.normal(size=(2, 200, 32)).astype(np.float32)
    _, conf_random, _ = offset_and_confidence(pairwise_offset_distances(video, audio, 15), 15)
    _, conf_synced, _ = offset_and_confidence(pairwise_offset_distances(*_shifted_embeddings(0, n=200), 15), 15)
    assert conf_synced > 5.0 and 0 <= conf_random < 0.05 * conf_synced


def test_offset_and_confidence_on_a_hand_made_table():
    dists = np.array([[5.0, 3.0, 4.0, 6.0, 7.0], [5.0, 1.0, 4.0, 6.0, 9.0]])  # means 5, 2, 4, 6, 8
    assert offset_and_confidence(dists, 2) == (1, 3.0, 2.0)  # vshift 2 - argmin 1; median 5 - 2
    with pytest.raises(ValueError, match="vshift=3"):
        offset_and_confidence(dists, 3)


class _SameDimProbe(_Probe):
    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward_aud(x)[:, :15]


def test_sync_score_marks_random_weights():
    rng = np.random.default_rng(2)
    result = sync_score(_SameDimProbe(), rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
                        rng.integers(-3000, 3000, 12 * 640, dtype=np.int16), vshift=3)
    assert isinstance(result, SyncResult) and result.random_weights and result.num_windows == 7
    assert isinstance(result.offset, int) and -3 <= result.offset <= 3


def test_sync_verdict_thresholds():
    cfg = SyncFilterConfig()
    assert (cfg.min_conf, cfg.max_abs_offset, cfg.vshift) == (3.0, 6, 15)
    assert sync_verdict(SyncResult(0, 7.5, 6.8, 100, False), cfg) is None
    assert sync_verdict(SyncResult(-6, 3.0, 6.8, 100, False), cfg) is None
    assert sync_verdict(SyncResult(1, 1.8, 9.1, 100, False), cfg) == "SyncNet confidence 1.8 < 3.0"
    assert "offset -7" in sync_verdict(SyncResult(-7, 8.0, 6.0, 100, False), cfg)


# ---------------------------------------------------------------- MFCC


def test_mfcc_matches_python_speech_features():
    psf = pytest.importorskip("python_speech_features", reason="reference package not installed (test-only)")
    rng = np.random.default_rng(0)
    for n in (1, 399, 400, 401, 560, 16000, 3 * 16000 + 123):
        x = rng.integers(-20000, 20000, n, dtype=np.int16)
        np.testing.assert_allclose(mfcc(x), psf.mfcc(x, 16000), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(mfcc(np.zeros(800, np.int16)), psf.mfcc(np.zeros(800, np.int16), 16000))
    np.testing.assert_array_equal(mel_filterbank(), psf.get_filterbanks(26, 512, 16000))


@pytest.mark.parametrize("n, frames", [(1, 1), (400, 1), (401, 2), (560, 2), (561, 3), (16000, 99), (640 * 30, 119)])
def test_mfcc_frame_counts(n, frames):
    assert mfcc(np.ones(n, np.int16)).shape == (frames, 13)  # 1 + ceil((n - 400) / 160), at least 1


def test_framing_pads_the_tail_with_zeros():
    frames = frame_signal(np.arange(1, 562, dtype=np.float64), 400, 160)
    assert frames.shape == (3, 400)
    assert frames[1, 0] == 161 and frames[2, 0] == 321 and frames[2, 240] == 561 and not frames[2, 241:].any()


def test_pure_tone_peaks_in_the_filter_around_its_frequency():
    fb = mel_filterbank()
    assert fb.shape == (26, 257) and np.allclose(fb.max(axis=1), 1.0)
    centres_hz = fb.argmax(axis=1) * 16000 / 513
    t = np.arange(16000) / 16000
    for hz in (300.0, 1000.0, 3000.0):
        energies = power_spectrum(frame_signal(np.sin(2 * np.pi * hz * t), 400, 160), 512) @ fb.T
        best = int(np.median(energies.argmax(axis=1)))
        assert abs(centres_hz[best] - hz) <= 0.5 * np.diff(centres_hz)[min(best, 24)] + 16000 / 512


def test_coefficient_zero_is_log_frame_energy():
    x = np.random.default_rng(3).integers(-1000, 1000, 4000, dtype=np.int16)
    feats = mfcc(x)
    pspec = power_spectrum(frame_signal(preemphasis(x), 400, 160), 512)
    np.testing.assert_allclose(feats[:, 0], np.log(pspec.sum(axis=1)), rtol=1e-12)
    assert np.allclose(mfcc(np.zeros(1000, np.int16))[:, 0], np.log(np.finfo(float).eps))
    no_energy = mfcc(x, append_energy=False)
    np.testing.assert_array_equal(no_energy[:, 1:], feats[:, 1:])
    assert not np.allclose(no_energy[:, 0], feats[:, 0])
