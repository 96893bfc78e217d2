"""Constant-25-fps decoding (variable and other frame rates) and audio aligned to frame 0."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from pt_data.decode import iter_frames_at_fps, read_audio_aligned
from pt_data.video_io import MediaError, write_video


def _write_with_times(path, times_s, size=32):
    """A video whose frame i (grey level 5*i) is shown at times_s[i] (variable frame rate)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=1000)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.time_base = Fraction(1, 1000)
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"crf": "0", "bf": "0"}
        for i, t in enumerate(times_s):
            f = av.VideoFrame.from_ndarray(np.full((size, size, 3), 5 * i, np.uint8), format="rgb24")
            f.pts = int(round(t * 1000))
            f.time_base = Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _levels(path):
    return [int(round(f.mean() / 5)) for _, f in iter_frames_at_fps(str(path))]


def test_25fps_input_passes_through(tmp_path):
    p = tmp_path / "a.mp4"
    write_video(str(p), [np.full((32, 32, 3), 5 * i, np.uint8) for i in range(20)], 25)
    assert _levels(p) == list(range(20))


def test_30fps_is_resampled_to_nearest_frames(tmp_path):
    p = tmp_path / "b.mp4"
    write_video(str(p), [np.full((32, 32, 3), 5 * i, np.uint8) for i in range(30)], 30)
    got = _levels(p)
    assert len(got) == 25  # one second
    assert got == [int(round(k * 30 / 25)) for k in range(25)]


def test_variable_frame_rate_uses_timestamps(tmp_path):
    times = [0.0, 0.04, 0.2, 0.24, 0.5, 0.52, 0.54]  # gaps and bursts
    p = tmp_path / "vfr.mp4"
    _write_with_times(p, times)
    got = _levels(p)
    want = [int(np.argmin([abs(k / 25 - t) for t in times])) for k in range(len(got))]
    assert got == want and len(got) == 14  # ends after the last frame's duration (0.56 s)


def test_audio_aligned_to_first_frame(tmp_path):
    p = tmp_path / "c.mp4"
    audio = np.zeros(32000, np.float32)
    audio[8000:8200] = 0.6
    write_video(str(p), [np.zeros((32, 32, 3), np.uint8)] * 50, 25, audio)
    a = read_audio_aligned(str(p))
    assert abs(int(np.argmax(np.abs(a) > 3000)) - 8000) < 16
    # a video starting 0.2 s later than its audio: the first 0.2 s of audio are dropped
    a2 = read_audio_aligned(str(p), video_start_s=0.2)
    assert abs(int(np.argmax(np.abs(a2) > 3000)) - (8000 - 3200)) < 16


def test_no_audio_and_broken_files_are_media_errors(tmp_path):
    p = tmp_path / "silent.mp4"
    write_video(str(p), [np.zeros((32, 32, 3), np.uint8)] * 5, 25)
    with pytest.raises(MediaError, match="no audio stream"):
        read_audio_aligned(str(p))
    bad = tmp_path / "trunc.mp4"
    bad.write_bytes(p.read_bytes()[:200])
    with pytest.raises(MediaError, match="trunc.mp4"):
        list(iter_frames_at_fps(str(bad)))


def test_audio_only_file_is_a_media_error(tmp_path):
    p = tmp_path / "audio_only.m4a"
    with av.open(str(p), "w") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
        fr.sample_rate, fr.pts = 16000, 0
        for pkt in list(s.encode(fr)) + list(s.encode()):
            c.mux(pkt)
    with pytest.raises(MediaError, match="no video stream"):
        read_audio_aligned(str(p))


def test_window_equals_the_slice_of_the_full_stream(tmp_path):
    p = tmp_path / "w.mp4"
    _write_with_times(p, [i / 30 for i in range(50)])  # 30 fps, 1.67 s
    full = _levels(p)
    win = [int(round(f.mean() / 5)) for _, f in iter_frames_at_fps(str(p), start_s=0.4, end_s=1.2)]
    assert len(win) == 20 and win == full[10:30]
