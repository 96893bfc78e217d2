"""Real talking-head videos from ../shared/data: decoding, audio alignment, MediaPipe on real faces."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf

from pt_data.landmarks import FaceMeshDetector
from pt_data.video_io import iter_video_frames, probe_video, read_audio

pytestmark = pytest.mark.realdata


def test_probe_every_shared_video(shared_data):
    infos = {p.name: probe_video(str(p)) for p in sorted((shared_data / "videos").glob("*.mp4"))}
    assert len(infos) == 5
    assert infos["vrt_face2.mp4"].width == 844 and infos["vrt_face2.mp4"].fps == pytest.approx(25)
    assert infos["vrt_face4.mp4"].fps == pytest.approx(30)
    assert all(i.has_audio for i in infos.values())


def test_decoded_audio_matches_the_reference_track(shared_data):
    """read_audio (PyAV, resampled to 16 kHz mono) lines up with the provided 16 kHz track."""
    ours = read_audio(str(shared_data / "videos" / "vrt_face2.mp4")).astype(np.float64)
    ref, sr = sf.read(str(shared_data / "audio" / "orig_tracks" / "vrt_face2_orig16k.wav"))
    assert sr == 16000
    n = min(len(ours), len(ref))
    a, b = ours[:n] / 32768, ref[:n]
    lags = range(-160, 161, 4)
    corr = [np.dot(a[max(0, k):n + min(0, k)], b[max(0, -k):n - max(0, k)]) for k in lags]
    best = list(lags)[int(np.argmax(corr))]
    assert abs(best) <= 16  # within 1 ms
    assert np.corrcoef(a, b)[0, 1] > 0.95


def test_mediapipe_finds_the_face_in_real_videos(shared_data):
    with FaceMeshDetector() as det:
        for p in sorted((shared_data / "videos").glob("*.mp4")):
            for _, frame in itertools.islice(iter_video_frames(str(p)), 0, 10, 3):
                faces = det.detect(frame)
                assert len(faces) == 1, p.name
                lm = faces[0]
                assert lm.shape == (478, 3)
                assert (lm[:, 0] > 0).all() and (lm[:, 0] < frame.shape[1]).all()


def test_each_real_video_is_one_continuous_track(shared_data):
    """No false scene cuts or track breaks on real talking heads; crops keep the face centred and steady."""
    from pt_data.crop import apply_affine_points, crop_transforms
    from pt_data.decode import iter_frames_at_fps
    from pt_data.tracks import FrameEvidence, segment_clips

    for name in ("vrt_face1.mp4", "vrt_face4.mp4"):  # variable frame rate ~22 fps, and 30 fps
        ev, lms = FrameEvidence(), []
        with FaceMeshDetector() as det:
            for _, frame in iter_frames_at_fps(str(shared_data / "videos" / name)):
                faces = det.detect(frame)
                ev.add(frame, faces)
                lms.append(faces[0][:, :2])
        n = len(lms)
        assert abs(n - probe_video(str(shared_data / "videos" / name)).duration_s * 25) <= 2
        seg = segment_clips(ev)
        assert seg.clips == [(0, n)], (name, seg)
        lm = np.stack(lms)
        nose = apply_affine_points(crop_transforms(lm), lm)[:, 1]
        assert (nose > 64).all() and (nose < 192).all()  # the face stays in the middle of the crop
        assert np.abs(np.diff(nose, 2, axis=0)).mean() < 2.0  # and the crop does not shake (px/frame^2)
