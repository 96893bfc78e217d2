"""Decoding any video ffmpeg can read to a constant 25 fps frame stream and 16 kHz mono audio aligned to it.

Frames are streamed (long HDTF videos do not fit in memory). Variable frame rate is handled by timestamps:
output frame ``k`` shows the source frame whose presentation time is nearest to ``k / 25`` s after the
first video frame (like ffmpeg's ``fps`` filter with ``round=near``). Audio sample 0 is the instant of
output frame 0: audio that starts later is padded with zeros, earlier audio is dropped.
"""
from __future__ import annotations

from typing import Iterator

import av
import numpy as np

from pt_data.shard_schema import FPS, SAMPLE_RATE
from pt_data.video_io import MediaError, iter_decoded_frames


def _first_video_time(path: str) -> float:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for frame in c.decode(s):
            return float(frame.pts * s.time_base) if frame.pts is not None else 0.0
    raise MediaError(f"{path}: the video stream has no decodable frame")


def iter_frames_at_fps(path: str, fps: int = FPS, *, max_frames: int | None = None
                       ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(k, RGB uint8 frame)`` at a constant ``fps`` starting at the first video frame."""
    k, t0, prev, prev_t = 0, None, None, None
    last_dt = 1.0 / fps
    for t, frame in iter_decoded_frames(path):
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
                yield k, prev
                k += 1
                if max_frames is not None and k >= max_frames:
                    return
        prev, prev_t = frame.to_ndarray(format="rgb24"), t
    if prev is None:
        raise MediaError(f"{path}: the video stream has no decodable frame")
    end = prev_t + last_dt  # the last frame lasts as long as the one before it
    while k / fps < end - 1e-6 and (max_frames is None or k < max_frames):
        yield k, prev
        k += 1


def read_audio_aligned(path: str, *, sample_rate: int = SAMPLE_RATE, video_start_s: float | None = None
                       ) -> np.ndarray:
    """Mono int16 audio at ``sample_rate`` whose sample 0 is the first video frame's instant."""
    v0 = _first_video_time(path) if video_start_s is None else video_start_s
    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise MediaError(f"{path}: no audio stream")
            s = c.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            chunks, a0 = [], None
            for frame in c.decode(s):
                if a0 is None and frame.pts is not None:
                    a0 = float(frame.pts * s.time_base)
                chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(frame)]
            chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(None)]
    except av.FFmpegError as e:
        raise MediaError(f"{path}: audio decoding failed ({e})") from e
    if not chunks:
        raise MediaError(f"{path}: the audio stream has no decodable samples")
    audio = np.concatenate(chunks).astype(np.int16)
    shift = int(round(((a0 or 0.0) - v0) * sample_rate))
    if shift > 0:
        audio = np.concatenate([np.zeros(shift, np.int16), audio])
    elif shift < 0:
        audio = audio[-shift:]
    return audio
