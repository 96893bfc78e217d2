"""Decoding any video ffmpeg can read to a constant 25 fps frame stream and 16 kHz mono audio aligned to it.

Frames are streamed (long HDTF videos do not fit in memory). Variable frame rate is handled by timestamps:
output frame ``k`` shows the source frame whose presentation time is nearest to ``k / 25`` s after the
first video frame (like ffmpeg's ``fps`` filter with ``round=near``). Audio sample 0 is the instant of
output frame 0: audio that starts later is padded with zeros, earlier audio is dropped.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from pt_data.shard_schema import FPS, SAMPLE_RATE
from pt_data.video_io import MediaError, decode_audio, iter_decoded_frames


def first_video_time(path: str) -> float:
    for t, _ in iter_decoded_frames(path):
        return t or 0.0
    raise MediaError(f"{path}: the video stream has no decodable frame")


def iter_frames_at_fps(path: str, fps: int = FPS, *, max_frames: int | None = None,
                       start_s: float | None = None, end_s: float | None = None
                       ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(k, RGB uint8 frame)`` at a constant ``fps`` starting at the first video frame.

    ``start_s``/``end_s`` (seconds after the first video frame) restrict the output to a window: frame 0 is
    then the instant ``start_s`` (reached by seeking, not by decoding everything before it).
    """
    k, t0, prev, prev_t, rgb = 0, None, None, None, None
    seek = None
    if start_s:
        seek = first_video_time(path) + start_s
        t0 = seek
    if end_s is not None:
        n = int(round((end_s - (start_s or 0.0)) * fps))
        max_frames = n if max_frames is None else min(max_frames, n)
    if max_frames is not None and max_frames <= 0:
        return
    last_dt = 1.0 / fps
    for t, frame in iter_decoded_frames(path, seek):
        if t is None:
            continue
        if t0 is None:
            t0 = t
        t -= t0
        if prev is not None:
            if t <= prev_t:  # out-of-order or duplicate timestamp: keep the earlier frame
                continue
            last_dt = t - prev_t
            boundary = (prev_t + t) / 2  # output times before this show ``prev``
            while k / fps < boundary:
                rgb = prev.to_ndarray(format="rgb24") if rgb is None else rgb
                yield k, rgb
                k += 1
                if max_frames is not None and k >= max_frames:
                    return
        prev, prev_t, rgb = frame, t, None
    if prev is None:
        raise MediaError(f"{path}: the video stream has no decodable frame")
    end = prev_t + last_dt  # the last frame lasts as long as the one before it
    while k / fps < end - 1e-6 and (max_frames is None or k < max_frames):
        rgb = prev.to_ndarray(format="rgb24") if rgb is None else rgb
        yield k, rgb
        k += 1


def read_audio_aligned(path: str, *, sample_rate: int = SAMPLE_RATE, video_start_s: float | None = None
                       ) -> np.ndarray:
    """Mono int16 audio at ``sample_rate`` whose sample 0 is the first video frame's instant."""
    v0 = first_video_time(path) if video_start_s is None else video_start_s
    audio, a0 = decode_audio(path, sample_rate)
    if len(audio) == 0:
        raise MediaError(f"{path}: the audio stream has no decodable samples")
    shift = int(round(((a0 or 0.0) - v0) * sample_rate))
    if shift > 0:
        audio = np.concatenate([np.zeros(shift, np.int16), audio])
    elif shift < 0:
        audio = audio[-shift:]
    return audio
