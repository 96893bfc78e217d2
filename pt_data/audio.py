"""Audio helpers aligned to video frames: 16 kHz mono int16, 640 samples per frame at 25 fps."""
from __future__ import annotations

from math import gcd

import numpy as np

from pt_data.shard_schema import SAMPLES_PER_FRAME


def pcm16_to_float(pcm: np.ndarray | bytes) -> np.ndarray:
    """int16 samples (array or little-endian bytes) to float32 in [-1, 1)."""
    a = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, (bytes, bytearray, memoryview)) else np.asarray(pcm)
    return a.astype(np.float32) / 32768.0


def float_to_pcm16(x: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] to int16 (clipped)."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)


def resample_audio(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling of a 1-D or (channels, n) float signal from ``sr_in`` to ``sr_out``."""
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly  # noqa: PLC0415 - scipy.signal takes ~1 s to import

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(np.asarray(x, dtype=np.float64), sr_out // g, sr_in // g, axis=-1).astype(np.float32)


def audio_for_frames(audio: np.ndarray, start_frame: int, num_frames: int, *,
                     samples_per_frame: int = SAMPLES_PER_FRAME, context: int = 0) -> np.ndarray:
    """The samples of frames ``[start_frame, start_frame + num_frames)`` plus ``context`` samples each side.

    Sample ``k * samples_per_frame`` is the start of frame ``k`` (audio aligned with frame 0). Ranges that
    run past either end are zero-padded, so the result always has
    ``num_frames * samples_per_frame + 2 * context`` samples.
    """
    if num_frames < 0 or context < 0:
        raise ValueError("num_frames and context must be >= 0")
    a = np.asarray(audio)
    lo = start_frame * samples_per_frame - context
    hi = (start_frame + num_frames) * samples_per_frame + context
    out = np.zeros(hi - lo, dtype=a.dtype)
    src_lo, src_hi = max(lo, 0), min(hi, len(a))
    if src_hi > src_lo:
        out[src_lo - lo:src_hi - lo] = a[src_lo:src_hi]
    return out


def frame_energy(audio: np.ndarray, num_frames: int, *, samples_per_frame: int = SAMPLES_PER_FRAME) -> np.ndarray:
    """RMS energy of the audio under each frame (float array of length ``num_frames``)."""
    x = audio_for_frames(pcm16_to_float(audio) if np.asarray(audio).dtype == np.int16 else np.asarray(audio),
                         0, num_frames, samples_per_frame=samples_per_frame)
    return np.sqrt(np.mean(x.reshape(num_frames, samples_per_frame).astype(np.float64) ** 2, axis=1))
