"""JPEG, audio slicing and resampling, video writing and reading."""
from __future__ import annotations

import numpy as np
import pytest

from pt_data.audio import audio_for_frames, float_to_pcm16, frame_energy, pcm16_to_float, resample_audio
from pt_data.jpeg import decode_frames, decode_jpeg, encode_frames, encode_jpeg
from pt_data.video_io import MediaError, iter_video_frames, probe_video, read_audio, write_video


def test_audio_for_frames_is_aligned_and_padded():
    audio = np.arange(10 * 640, dtype=np.int64)  # sample value = its index
    s = audio_for_frames(audio, 3, 2)
    assert len(s) == 2 * 640 and s[0] == 3 * 640 and s[-1] == 5 * 640 - 1
    s = audio_for_frames(audio, 0, 1, context=100)  # runs past the start: zeros then samples
    assert len(s) == 840 and (s[:100] == 0).all() and s[100] == 0 and s[101] == 1
    s = audio_for_frames(audio, 9, 3)  # runs past the end
    assert len(s) == 3 * 640 and s[0] == 9 * 640 and (s[640:] == 0).all()
    rng = np.random.default_rng(0)
    for _ in range(50):
        start, n, ctx = int(rng.integers(-5, 15)), int(rng.integers(0, 6)), int(rng.integers(0, 700))
        s = audio_for_frames(audio, start, n, context=ctx)
        assert len(s) == n * 640 + 2 * ctx
        lo = start * 640 - ctx
        for j in (0, len(s) // 2, len(s) - 1) if len(s) else ():
            k = lo + j
            assert s[j] == (audio[k] if 0 <= k < len(audio) else 0)


def test_pcm_conversions_and_frame_energy():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0])
    pcm = float_to_pcm16(x)
    np.testing.assert_allclose(pcm16_to_float(pcm), x, atol=1e-4)
    np.testing.assert_allclose(pcm16_to_float(pcm.astype("<i2").tobytes()), x, atol=1e-4)
    loud_then_quiet = np.concatenate([np.full(640, 0.5), np.full(640, 0.01)]).astype(np.float32)
    e = frame_energy(loud_then_quiet, 2)
    np.testing.assert_allclose(e, [0.5, 0.01], rtol=1e-5)


@pytest.mark.parametrize("sr_in", [44100, 48000, 22050])
def test_resample_keeps_frequency_and_duration(sr_in):
    t = np.arange(sr_in) / sr_in
    y = resample_audio(np.sin(2 * np.pi * 440 * t), sr_in, 16000)
    assert len(y) == 16000
    assert abs(np.argmax(np.abs(np.fft.rfft(y))) - 440) <= 1


def test_jpeg_round_trip_quality():
    yy, xx = np.mgrid[0:256, 0:256]
    img = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    back = decode_jpeg(encode_jpeg(img, 95))
    mse = np.mean((back.astype(float) - img) ** 2)
    assert back.shape == img.shape and 10 * np.log10(255 ** 2 / mse) > 38
    frames = encode_frames(np.stack([img, img[::-1]]))
    assert decode_frames(frames, [1]).shape == (1, 256, 256, 3)
    with pytest.raises(ValueError, match="not a decodable JPEG"):
        decode_jpeg(b"garbage")


def test_video_round_trip_frames_and_audio_alignment(tmp_path):
    frames = [np.full((64, 64, 3), 4 * i, np.uint8) for i in range(50)]
    audio = np.zeros(2 * 16000, np.float32)
    audio[16000:16400] = 0.5 * np.sin(np.arange(400) * 0.3)  # a burst at exactly 1.000 s
    path = tmp_path / "sub" / "v.mp4"
    write_video(str(path), frames, 25, audio)
    info = probe_video(str(path))
    assert (info.width, info.height, info.fps, info.has_audio, info.audio_sample_rate) == (64, 64, 25.0, True, 16000)
    decoded = list(iter_video_frames(str(path)))
    assert len(decoded) == 50 and decoded[1][0] == pytest.approx(0.04)
    assert abs(int(decoded[25][1].mean()) - 100) <= 3
    pcm = read_audio(str(path))
    onset = int(np.argmax(np.abs(pcm) > 1000))
    assert abs(onset - 16000) < 16  # within 1 ms of where it was written


def test_unreadable_video_is_a_media_error(tmp_path):
    p = tmp_path / "zero.mp4"
    p.write_bytes(b"")
    with pytest.raises(MediaError, match="zero.mp4"):
        probe_video(str(p))
    with pytest.raises(MediaError, match="zero.mp4"):
        list(iter_video_frames(str(p)))
