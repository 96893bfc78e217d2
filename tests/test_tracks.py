"""Track segmentation: bad frames, jumps and scene cuts break tracks; tracks become 2-10 s clips."""
from __future__ import annotations

import numpy as np

from pt_data.tracks import FrameEvidence, TrackBuilder, TrackConfig, segment_clips


def _face(cx, cy, h):
    pts = np.zeros((478, 2))
    pts[:, 0], pts[:, 1] = cx, np.linspace(cy - h / 2, cy + h / 2, 478)
    return pts


def _evidence(spec):
    """spec: list of (faces, colour) per frame; faces a list of (cx, cy, h)."""
    ev = FrameEvidence()
    for faces, colour in spec:
        frame = np.zeros((64, 64, 3), np.uint8)
        frame[...] = colour
        frame[:32] = (colour[0] // 2, 255 - colour[1], colour[2])
        ev.add(frame, [_face(*f) for f in faces])
    return ev


def test_long_clean_track_is_split_into_equal_clips():
    ev = _evidence([([(100, 100, 120)], (90, 120, 150))] * 400)  # 16 s: two equal 8 s clips
    seg = segment_clips(ev, TrackConfig())
    assert seg.clips == [(0, 200), (200, 400)] and seg.unused == {}


def test_very_long_track_is_emitted_while_streaming():
    ev = _evidence([([(100, 100, 120)], (90, 120, 150))] * 600)  # 24 s: a 10 s clip leaves at 20 s
    tb = TrackBuilder(TrackConfig())
    emitted_at = {}
    for i, (hs, c, h) in enumerate(zip(ev.face_heights, ev.centres, ev.histograms)):
        for clip in tb.push(hs, c, h):
            emitted_at[clip] = i
    for clip in tb.finish():
        emitted_at[clip] = len(ev.face_heights)
    assert emitted_at == {(0, 250): 499, (250, 425): 600, (425, 600): 600}
    assert segment_clips(ev).clips == [(0, 250), (250, 425), (425, 600)]


def test_bad_frames_cuts_and_jumps_break_tracks():
    good, other_scene = (90, 120, 150), (200, 30, 40)
    spec = ([([(100, 100, 120)], good)] * 80             # 0-80 ok
            + [([], good)] * 5                           # no face
            + [([(100, 100, 120)], good)] * 70           # 85-155 ok
            + [([(100, 100, 120)], other_scene)] * 60    # scene cut at 155
            + [([(100, 100, 30)], other_scene)] * 10     # face too small
            + [([(100, 100, 120), (300, 100, 110)], other_scene)] * 10  # two faces
            + [([(400, 100, 120)], other_scene)] * 60)   # a jump at 235 -> new track
    seg = segment_clips(_evidence(spec), TrackConfig(min_clip_s=2.0))
    assert seg.clips == [(0, 80), (85, 155), (155, 215), (235, 295)]
    assert seg.unused == {"no face": 5, "face too small": 10, "several faces": 10}


def test_short_tracks_are_counted_as_unused():
    spec = [([(100, 100, 120)], (90, 120, 150))] * 30 + [([], (90, 120, 150))] * 3
    seg = segment_clips(_evidence(spec), TrackConfig(min_clip_s=2.0))
    assert seg.clips == [] and seg.unused == {"no face": 3, "track shorter than min clip": 30}
