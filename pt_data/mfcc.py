"""MFCC features identical to ``python_speech_features.mfcc`` with its default arguments.

SyncNet (syncnet_python, Wav2Lip's ``scores_LSE``, LatentSync's eval) feeds its audio branch with
``python_speech_features.mfcc(audio, 16000)``; LSE-C / LSE-D are only comparable if the features match. This
module re-implements that recipe (vectorised, numpy + scipy) so the project does not depend on the package:

1. pre-emphasis ``y[0] = x[0]``, ``y[n] = x[n] - 0.97 x[n-1]``;
2. framing as ``sigproc.framesig``: frame length / step = round-half-up(0.025 sr) / round-half-up(0.01 sr)
   samples, ``1 + ceil((len - frame_len) / step)`` frames (1 when the signal is not longer than a frame), the
   tail zero-padded, rectangular window;
3. power spectrum ``|rfft(frame, 512)|^2 / 512``; frame energy = its sum;
4. 26 triangular mel filters between 0 Hz and sr/2 on FFT bins ``floor((nfft + 1) * hz / sr)``;
5. ``log`` of filterbank energies (exact zeros replaced by float64 eps first), DCT-II (orthonormal), first
   13 coefficients, sinusoidal lifter ``1 + 11 sin(pi n / 22)``;
6. coefficient 0 replaced by ``log`` of the frame energy (same eps floor).

At 16 kHz this gives 100 feature frames per second (4 per 25 fps video frame).
"""
from __future__ import annotations

import decimal

import numpy as np
from scipy.fft import dct

_EPS = np.finfo(np.float64).eps


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves away from zero for positives (exact decimal, as sigproc does)."""
    return int(decimal.Decimal(x).quantize(decimal.Decimal("1"), rounding=decimal.ROUND_HALF_UP))


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 log10(1 + hz / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def preemphasis(signal: np.ndarray, coeff: float = 0.97) -> np.ndarray:
    """First-order high-pass ``y[n] = x[n] - coeff x[n-1]`` with ``y[0] = x[0]`` (float64)."""
    x = np.asarray(signal, dtype=np.float64)
    return np.concatenate([x[:1], x[1:] - coeff * x[:-1]])


def frame_signal(signal: np.ndarray, frame_len: int, frame_step: int) -> np.ndarray:
    """Overlapping frames ``(num_frames, frame_len)``; the last frame is zero-padded (``sigproc.framesig``)."""
    n = len(signal)
    num_frames = 1 if n <= frame_len else 1 + -(-(n - frame_len) // frame_step)
    padded_len = (num_frames - 1) * frame_step + frame_len
    padded = np.concatenate([np.asarray(signal, dtype=np.float64), np.zeros(padded_len - n)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, frame_len)
    return windows[::frame_step][:num_frames].copy()


def power_spectrum(frames: np.ndarray, nfft: int) -> np.ndarray:
    """``|rfft(frame, nfft)|^2 / nfft`` per frame: ``(num_frames, nfft // 2 + 1)``."""
    return np.square(np.abs(np.fft.rfft(frames, nfft))) / nfft


def mel_filterbank(nfilt: int = 26, nfft: int = 512, samplerate: int = 16000, lowfreq: float = 0.0,
                   highfreq: float | None = None) -> np.ndarray:
    """Triangular mel filters ``(nfilt, nfft // 2 + 1)`` on integer FFT bins (``base.get_filterbanks``).

    Filter ``j`` rises linearly over bins ``[b_j, b_{j+1})`` from 0 and falls over ``[b_{j+1}, b_{j+2})`` from
    1, where ``b = floor((nfft + 1) * mel_to_hz(linspace(mel(lowfreq), mel(highfreq), nfilt + 2)) / sr)``.
    """
    highfreq = highfreq or samplerate / 2
    if highfreq > samplerate / 2:
        raise ValueError(f"highfreq {highfreq} is above the Nyquist frequency {samplerate / 2}")
    mels = np.linspace(hz_to_mel(lowfreq), hz_to_mel(highfreq), nfilt + 2)
    bins = np.floor((nfft + 1) * mel_to_hz(mels) / samplerate)
    lo, mid, hi = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    k = np.arange(nfft // 2 + 1, dtype=np.float64)[None, :]
    rising = (k >= lo) & (k < mid)
    falling = (k >= mid) & (k < hi)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty ranges (equal bins) are masked out
        up = (k - lo) / (mid - lo)
        down = (hi - k) / (hi - mid)
    return np.where(rising, up, 0.0) + np.where(falling, down, 0.0)


def lifter(cepstra: np.ndarray, L: int = 22) -> np.ndarray:
    """Sinusoidal cepstral lifter ``1 + (L / 2) sin(pi n / L)``; ``L <= 0`` leaves the cepstra unchanged."""
    if L <= 0:
        return cepstra
    n = np.arange(cepstra.shape[1])
    return cepstra * (1.0 + (L / 2.0) * np.sin(np.pi * n / L))


def mfcc(signal: np.ndarray, samplerate: int = 16000, *, winlen: float = 0.025, winstep: float = 0.01,
         numcep: int = 13, nfilt: int = 26, nfft: int = 512, lowfreq: float = 0.0, highfreq: float | None = None,
         preemph: float = 0.97, ceplifter: int = 22, append_energy: bool = True) -> np.ndarray:
    """MFCCs ``(num_frames, numcep)`` float64 of a mono signal (any numeric dtype, e.g. int16 PCM, unscaled).

    With the defaults this equals ``python_speech_features.mfcc(signal, samplerate)`` (see the module doc).
    """
    x = np.asarray(signal)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"mfcc expects a non-empty mono 1-D signal, got shape {x.shape}")
    frames = frame_signal(preemphasis(x, preemph), round_half_up(winlen * samplerate),
                          round_half_up(winstep * samplerate))
    pspec = power_spectrum(frames, nfft)
    energy = pspec.sum(axis=1)
    fbank = pspec @ mel_filterbank(nfilt, nfft, samplerate, lowfreq, highfreq).T
    feat = dct(np.log(np.where(fbank == 0, _EPS, fbank)), type=2, axis=1, norm="ortho")[:, :numcep]
    feat = lifter(feat, ceplifter)
    if append_energy:
        feat[:, 0] = np.log(np.where(energy == 0, _EPS, energy))
    return feat
