"""Sample clips: a real face photo that MediaPipe finds in every frame, mouth moving with the speech."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from pt_data.audio import frame_energy
from pt_data.landmarks import detect_video_landmarks, mouth_opening
from pt_data.sample_clips import SampleClipConfig, make_sample_clip, sample_to_clip, synthesize_speech
from pt_data.shard_schema import SAMPLES_PER_FRAME
from pt_data.video_io import iter_video_frames, probe_video, read_audio


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("samples") / "s.mp4"
    return make_sample_clip(path, SampleClipConfig(speech="synthetic", max_duration_s=4.0, seed=3))


def test_sample_video_format(sample):
    info = probe_video(sample.path)
    assert info.fps == 25 and info.has_audio and info.audio_sample_rate == 16000
    assert (info.width, info.height) == (512, 512)
    audio = read_audio(sample.path)
    assert abs(len(audio) - sample.num_frames * SAMPLES_PER_FRAME) <= 2048  # AAC pads the last frame


def test_mediapipe_finds_one_face_in_every_frame_and_the_mouth_follows_speech(sample):
    frames = [f for _, f in iter_video_frames(sample.path)]
    assert len(frames) == sample.num_frames
    lm, counts = detect_video_landmarks(frames)
    assert (counts == 1).all(), f"faces per frame: {counts.tolist()}"
    opening = mouth_opening(lm)
    assert np.corrcoef(opening, sample.mouth_open)[0, 1] > 0.8
    # and the drive itself follows the speech energy that is in the file
    energy = frame_energy(read_audio(sample.path), sample.num_frames)
    assert np.corrcoef(energy, sample.mouth_open)[0, 1] > 0.6


def test_head_moves_and_crop_follows_the_face(sample):
    clip = sample_to_clip(sample)
    assert clip.num_frames == sample.num_frames and len(clip.audio) == clip.num_frames * SAMPLES_PER_FRAME
    # in the crop the face stays put although it moves in the frame
    nose_crop = clip.landmarks[:, 1]
    frames = [f for _, f in iter_video_frames(sample.path)]
    lm_full, _ = detect_video_landmarks(frames)
    assert np.ptp(lm_full[:, 1, 0]) > 4 * np.ptp(nose_crop[:, 0]) or np.ptp(lm_full[:, 1, 0]) > 6
    assert np.ptp(nose_crop[:, 0]) < 6 and np.ptp(nose_crop[:, 1]) < 6
    assert (clip.landmarks > 0).all() and (clip.landmarks < 256).all()


def test_synthetic_speech_is_deterministic():
    a, src = synthesize_speech("one two three", mode="synthetic", seed=5)
    b, _ = synthesize_speech("one two three", mode="synthetic", seed=5)
    assert src == "synthetic" and np.array_equal(a, b) and np.abs(a).max() <= 0.9 + 1e-6


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)")
def test_espeak_speech():
    x, src = synthesize_speech("hello world", mode="espeak")
    assert src == "espeak-ng" and 0.5 * 16000 < len(x) < 3 * 16000
