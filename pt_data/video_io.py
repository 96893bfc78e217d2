"""Reading and writing talking-head videos with PyAV (no shell-built ffmpeg command lines)."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from pt_data.audio import float_to_pcm16, pcm16_to_float


class MediaError(Exception):
    """A media file cannot be read or written; the message names the file and the cause."""


@dataclass
class VideoInfo:
    """What the container says about a video: size, nominal frame rate, duration, audio presence."""

    path: str
    width: int
    height: int
    fps: float
    duration_s: float
    num_frames: int | None
    has_audio: bool
    audio_sample_rate: int | None
    video_codec: str


def probe_video(path: str) -> VideoInfo:
    """Read a video's stream information without decoding it."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise MediaError(f"{path}: no video stream")
            v = c.streams.video[0]
            a = c.streams.audio[0] if c.streams.audio else None
            dur = float(v.duration * v.time_base) if v.duration is not None else (
                c.duration / 1e6 if c.duration is not None else 0.0)
            rate = v.average_rate or v.guessed_rate or v.base_rate
            return VideoInfo(str(path), v.codec_context.width, v.codec_context.height,
                             float(rate) if rate else 0.0, dur, v.frames or None, a is not None,
                             a.codec_context.sample_rate if a is not None else None, v.codec_context.name)
    except av.FFmpegError as e:
        raise MediaError(f"{path}: cannot open as a video ({e})") from e


def iter_decoded_frames(path: str, seek_s: float | None = None) -> Iterator[tuple[float | None, av.VideoFrame]]:
    """Yield ``(timestamp_s or None, undecoded-to-RGB frame)`` of the first video stream; errors as MediaError.

    ``seek_s`` starts at the key frame at or before that time (so frames slightly before it come first).
    """
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise MediaError(f"{path}: no video stream")
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            if seek_s is not None and seek_s > 0 and stream.time_base:
                c.seek(int(seek_s / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in c.decode(stream):
                yield (float(frame.pts * stream.time_base) if frame.pts is not None else None), frame
    except av.FFmpegError as e:
        raise MediaError(f"{path}: video decoding failed ({e})") from e


def iter_video_frames(path: str) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(timestamp_s, RGB uint8 frame)`` for every decoded frame, in presentation order."""
    for t, frame in iter_decoded_frames(path):
        yield (t if t is not None else float(frame.time or 0.0)), frame.to_ndarray(format="rgb24")


def decode_audio(path: str, sample_rate: int = 16000) -> tuple[np.ndarray, float | None]:
    """The first audio stream as mono int16 at ``sample_rate``, and its first timestamp in seconds."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise MediaError(f"{path}: no audio stream")
            stream = c.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            chunks, start = [], None
            for frame in c.decode(stream):
                if start is None and frame.pts is not None:
                    start = float(frame.pts * stream.time_base)
                chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except av.FFmpegError as e:
        raise MediaError(f"{path}: audio decoding failed ({e})") from e
    return (np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)), start


def read_audio(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream, downmixed to mono and resampled to ``sample_rate``; int16 samples."""
    return decode_audio(path, sample_rate)[0]


def write_video(path: str, frames: Iterable[np.ndarray], fps: int = 25, audio: np.ndarray | None = None,
                sample_rate: int = 16000, crf: int = 18) -> None:
    """Write RGB frames as H.264 (yuv420p) and optional mono audio (float in [-1,1] or int16) as AAC."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(path), mode="w") as c:
            vs = c.add_stream("libx264", rate=Fraction(fps))
            vs.pix_fmt = "yuv420p"
            vs.options = {"crf": str(crf), "preset": "veryfast"}
            a_stream = None
            if audio is not None:
                a_stream = c.add_stream("aac", rate=sample_rate)
                a_stream.layout = "mono"
            first = True
            for img in frames:
                if first:
                    vs.height, vs.width = img.shape[:2]
                    first = False
                for pkt in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                    c.mux(pkt)
            for pkt in vs.encode():
                c.mux(pkt)
            if a_stream is not None:
                pcm = np.asarray(audio)
                x = pcm16_to_float(pcm) if pcm.dtype == np.int16 else pcm.astype(np.float32)
                s16 = float_to_pcm16(x)
                step = 1024
                for i in range(0, len(s16), step):
                    fr = av.AudioFrame.from_ndarray(s16[None, i:i + step], format="s16", layout="mono")
                    fr.sample_rate = sample_rate
                    fr.pts = i
                    for pkt in a_stream.encode(fr):
                        c.mux(pkt)
                for pkt in a_stream.encode():
                    c.mux(pkt)
    except av.FFmpegError as e:
        raise MediaError(f"{path}: writing failed ({e})") from e
