"""A corpus of broken and awkward inputs for the curation pipeline, made from a synthetic talking face.

``python tests/bad_inputs.py DIR`` writes it to DIR (e.g. for ``BAD=DIR ../shared/checks/accept bad``).
Expected outcome per file (what the tests check):

=========================  =============================================================
zero_bytes.mp4             reject at probe (cannot open)
truncated.mp4              reject at probe (the index at the end of the file is cut off)
text_as_video.mp4          reject at probe (a text file with a video name)
no_audio.mp4               reject at audio (no audio track)
no_face.mp4                reject at tracks (no face in any frame)
two_faces.mp4              reject at tracks (two faces of similar size in every frame)
vertical_hevc.mp4          clips (1080x1920 HEVC is decoded and cropped like any other)
audio_24bit_48k_stereo.mov clips (PCM s24le 48 kHz stereo is downmixed and resampled)
mp3_audio.mp4              clips (MP3 audio)
short_audio.mp4            clips that stop where the audio stops
=========================  =============================================================
"""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from pt_data.decode import iter_frames_at_fps, read_audio_aligned
from pt_data.sample_clips import SampleClipConfig, make_sample_clip

EXPECTED_REJECTS = {"zero_bytes": "probe", "truncated": "probe", "text_as_video": "probe", "no_audio": "audio",
                    "no_face": "tracks", "two_faces": "tracks"}
EXPECTED_CLIPS = ("vertical_hevc", "audio_24bit_48k_stereo", "mp3_audio", "short_audio")


def encode(path: Path, frames: list[np.ndarray], *, vcodec: str = "libx264", audio: np.ndarray | None = None,
           sample_rate: int = 16000, acodec: str = "aac", fps: int = 25) -> None:
    """Write RGB frames and float audio ``(samples, channels)`` with any codecs PyAV's FFmpeg has."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream(vcodec, rate=Fraction(fps))
        vs.height, vs.width = frames[0].shape[:2]
        vs.pix_fmt = "yuv420p"
        vs.options = {"preset": "ultrafast"} if vcodec in ("libx264", "libx265") else {}
        if vcodec == "libx265":
            vs.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
        a = None
        if audio is not None:
            layout = "stereo" if audio.shape[1] == 2 else "mono"
            a = c.add_stream(acodec, rate=sample_rate)
            a.layout = layout
            fmt = {"pcm_s24le": "s32", "libmp3lame": "fltp", "aac": "fltp"}[acodec]
        for f in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a is not None:
            step = 1152
            for i in range(0, len(audio), step):
                chunk = audio[i:i + step]
                if fmt == "s32":
                    data = (np.clip(chunk, -1, 1) * (2**31 - 256)).astype(np.int32).reshape(1, -1)  # interleaved
                else:
                    data = np.ascontiguousarray(chunk.T.astype(np.float32))  # planar
                fr = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
                fr.sample_rate, fr.pts = sample_rate, i
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)


def make_bad_inputs(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the corpus into ``folder``; returns name -> path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    base = out / ".base.mp4"
    make_sample_clip(base, SampleClipConfig(max_duration_s=2.8, speech="synthetic", seed=seed, size=384))
    frames = [f for _, f in iter_frames_at_fps(str(base))]
    audio = read_audio_aligned(str(base)).astype(np.float32)[:, None] / 32768
    n = len(frames)
    files: dict[str, Path] = {}

    def path(name: str, ext: str = ".mp4") -> Path:
        files[name] = out / f"{name}{ext}"
        return files[name]

    path("zero_bytes").write_bytes(b"")
    good = path("_good")
    encode(good, frames, audio=audio)
    data = good.read_bytes()
    path("truncated").write_bytes(data[: len(data) * 2 // 5])
    good.unlink()
    del files["_good"]
    path("text_as_video").write_text("This is a text file that pretends to be a video.\n" * 50)
    encode(path("no_audio"), frames)
    rng = np.random.default_rng(seed)
    walls = [cv2.GaussianBlur(rng.integers(0, 255, (384, 384, 3), dtype=np.uint8), (0, 0), 8) for _ in range(n)]
    encode(path("no_face"), walls, audio=audio)
    encode(path("two_faces"), [np.concatenate([f, f[:, ::-1]], axis=1) for f in frames], audio=audio)
    tall = []
    for f in frames:
        canvas = np.full((1920, 1080, 3), 40, np.uint8)
        canvas[500:1580, :] = cv2.resize(f, (1080, 1080), interpolation=cv2.INTER_CUBIC)
        tall.append(canvas)
    encode(path("vertical_hevc"), tall, vcodec="libx265", audio=audio)
    stereo48 = np.repeat(np.interp(np.arange(0, len(audio), 16000 / 48000), np.arange(len(audio)), audio[:, 0]
                                   )[:, None], 2, axis=1)
    encode(path("audio_24bit_48k_stereo", ".mov"), frames, audio=stereo48, sample_rate=48000, acodec="pcm_s24le")
    encode(path("mp3_audio"), frames, audio=audio, acodec="libmp3lame")
    encode(path("short_audio"), frames, audio=audio[: len(audio) - 16000 // 2])  # 0.5 s shorter
    base.unlink()
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/bad_inputs.py DIR")
    for name, p in make_bad_inputs(sys.argv[1]).items():
        print(f"{name:24s} {p}")
