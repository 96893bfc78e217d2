"""Stage 1's audio encoder E_aud at 25 fps: HuBERT (the paper's), or a log-mel conv encoder (small data).

Two kinds (``AudioEncoderConfig.kind``), built by :func:`build_audio_encoder`; both map a 16 kHz waveform
(B, T x 640 samples) to features (B, T, D), one per video frame:

* ``hubert`` (:class:`AudioEncoder`, the paper's choice): see below.
* ``mel`` (:class:`MelAudioEncoder`): for small-data runs without pretrained weights. A log-mel spectrogram
  (:class:`LogMelSpectrogram`: 80 HTK mel bands, 25 ms Hann window, 10 ms hop, computed with
  ``torch.stft``; frames centred on the middle of each 10 ms hop, so exactly 4 spectrogram frames lie
  under each 40 ms video frame), standardised per band by a ``BatchNorm1d`` (running mean / variance of
  the training data), optional training-time augmentation (SpecAugment time / band masks, Gaussian
  noise), ``layers`` 1-D convolutions at 100 Hz, and one convolution of kernel = stride = 4 that turns the
  4 spectrogram frames of each video frame into its D-dimensional feature. Everything is trained from
  scratch (``audio encoder: log-mel conv (no pretrained weights)`` in run configs).

HuBERT:

HuBERT turns 16 kHz audio into features at 50 Hz (stride 320 samples). The paper adds "a new linear
projection that interpolates features to the video frame rate"; here that is: resample the feature
sequence linearly to exactly two features per video frame (HuBERT's count is 2T - 1 for T frames of
audio), concatenate each frame's pair, and map the pair with one linear layer to the model width D. The
layer therefore learns how to mix the two 20 ms features under each 40 ms frame.

Weights: ``init="pretrained"`` loads a HuggingFace HuBERT folder through the weights registry
(``hubert-base-ls960`` or ``hubert-large-ls960-ft``); a missing folder raises
:class:`~pt_data.weights.MissingWeightsError`, never a silent random initialisation. ``init="random"``
builds a randomly initialised HuBERT of a named size (``tiny`` for tests and smoke runs, ``base``,
``large``) and must be asked for explicitly; :func:`describe_audio_init` says which one a run used.
Training options: SpecAugment masking and LayerDrop are off by default (short regression windows; LayerDrop
would also leave parameters unused under DDP), and ``freeze`` keeps the convolutional feature extractor
(``feature_extractor``) or the whole HuBERT (``all``) fixed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pt_data.mfcc import hz_to_mel, mel_to_hz
from pt_data.shard_schema import SAMPLE_RATE, SAMPLES_PER_FRAME
from pt_data.weights import MissingWeightsError, WeightsRegistry

KINDS = ("hubert", "mel")
INITS = ("pretrained", "random")
FREEZE = ("none", "feature_extractor", "all")
RANDOM_SIZES = ("tiny", "base", "large")


@dataclass
class MelEncoderConfig:
    """The log-mel front-end and the small conv encoder of ``kind="mel"`` (see the module docstring).

    Spectrogram: ``n_mels`` HTK mel bands from ``f_min`` to ``f_max`` (None: Nyquist) over ``n_fft``-point
    FFTs of ``win_ms`` Hann windows every ``hop_ms`` (the hop must divide the 40 ms video frame);
    ``log(power + log_floor)``. Encoder: ``layers`` convolutions of ``channels`` x ``kernel`` at the
    spectrogram rate with GELU and ``dropout``. Training-time augmentation (off in eval mode):
    ``time_masks`` masks of up to ``time_mask_frames`` spectrogram frames and ``freq_masks`` masks of up
    to ``freq_mask_bands`` bands per window (set to the standardised mean, 0), and Gaussian noise of
    ``noise_std`` on the standardised log-mel.
    """

    n_mels: int = 80
    n_fft: int = 512
    win_ms: float = 25.0
    hop_ms: float = 10.0
    f_min: float = 0.0
    f_max: float | None = None
    log_floor: float = 1e-6
    channels: int = 64
    layers: int = 2
    kernel: int = 5
    dropout: float = 0.1
    time_masks: int = 0
    time_mask_frames: int = 8
    freq_masks: int = 0
    freq_mask_bands: int = 8
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        hop, win = self.hop_length, self.win_length
        if hop < 1 or SAMPLES_PER_FRAME % hop:
            raise ValueError(f"mel hop of {self.hop_ms} ms = {hop} samples must divide the video frame "
                             f"({SAMPLES_PER_FRAME} samples at {SAMPLE_RATE} Hz)")
        if not hop <= win <= self.n_fft or (self.n_fft - hop) % 2:
            raise ValueError(f"need hop ({hop}) <= window ({win}) <= n_fft ({self.n_fft}) and n_fft - hop even")
        if self.layers < 0 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError("mel encoder: layers >= 0 and an odd kernel >= 1")

    @property
    def hop_length(self) -> int:
        return int(round(SAMPLE_RATE * self.hop_ms / 1000))

    @property
    def win_length(self) -> int:
        return int(round(SAMPLE_RATE * self.win_ms / 1000))

    @property
    def frames_per_video_frame(self) -> int:
        return SAMPLES_PER_FRAME // self.hop_length


@dataclass
class AudioEncoderConfig:
    """How E_aud is built: ``kind`` ``hubert`` (the paper) or ``mel`` (log-mel conv, no pretrained weights).

    HuBERT: ``weights`` is a registry name (pretrained); ``size`` the random-init size. ``hubert`` (the
    architecture, as a ``HubertConfig`` diff dict) and ``normalize_waveform`` are filled by
    :meth:`resolved`; a resolved config rebuilds the exact architecture without the pretrained folder
    (a training checkpoint then supplies the weights). ``mel`` holds the log-mel encoder's settings; a mel
    encoder is always trained from scratch, so its ``init`` is ``random``.
    """

    kind: str = "hubert"
    init: str = "pretrained"
    weights: str = "hubert-base-ls960"
    size: str = "base"
    freeze: str = "feature_extractor"
    normalize_waveform: bool | None = None  # None: the pretrained folder's preprocessor setting (random: False)
    spec_augment: bool = False
    layerdrop: float = 0.0
    hubert: dict[str, Any] | None = None
    mel: MelEncoderConfig = field(default_factory=MelEncoderConfig)

    def __post_init__(self) -> None:
        if isinstance(self.mel, dict):
            self.mel = MelEncoderConfig(**self.mel)
        if self.kind not in KINDS:
            raise ValueError(f"audio encoder kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "mel":
            self.init = "random"  # trained from scratch, always (there are no pretrained weights for it)
        if self.init not in INITS:
            raise ValueError(f"audio encoder init must be one of {INITS}, got {self.init!r}")
        if self.freeze not in FREEZE:
            raise ValueError(f"audio encoder freeze must be one of {FREEZE}, got {self.freeze!r}")
        if self.init == "random" and self.size not in RANDOM_SIZES:
            raise ValueError(f"random audio encoder size must be one of {RANDOM_SIZES}, got {self.size!r}")

    def resolved(self, registry: WeightsRegistry | None = None) -> "AudioEncoderConfig":
        """A copy with ``hubert`` and ``normalize_waveform`` filled in.

        Pretrained: read from the registry folder (``config.json``, ``preprocessor_config.json``), raising
        :class:`~pt_data.weights.MissingWeightsError` when it is absent. Random: the named size.
        """
        if self.kind == "mel":
            return self  # nothing to look up
        if self.hubert is not None and self.normalize_waveform is not None:
            return self
        from transformers import HubertConfig  # noqa: PLC0415 - transformers is slow to import

        if self.init == "random":
            hc, normalize = random_hubert_config(self.size), bool(self.normalize_waveform)
        else:
            folder = pretrained_folder(self.weights, registry)
            hc = HubertConfig.from_pretrained(str(folder), local_files_only=True)
            normalize = (_preprocessor_normalizes(folder) if self.normalize_waveform is None
                         else self.normalize_waveform)
        hc.apply_spec_augment, hc.layerdrop = self.spec_augment, self.layerdrop
        arch = {k: v for k, v in hc.to_diff_dict().items() if k not in ("transformers_version", "architectures")}
        return replace(self, hubert=arch, normalize_waveform=normalize)


def describe_audio_init(cfg: AudioEncoderConfig, reason: str = "") -> str:
    """One line for configs and logs, e.g. ``audio encoder: log-mel conv (no pretrained weights)``."""
    if cfg.kind == "mel":
        return "audio encoder: log-mel conv (no pretrained weights)"
    if cfg.init == "pretrained":
        return f"audio encoder: pretrained {cfg.weights} (weights registry)"
    return f"audio encoder: random init ({reason or cfg.size + ' HubertConfig'})"


def random_hubert_config(size: str):
    """A :class:`transformers.HubertConfig` of a named size for random initialisation.

    ``tiny``: 32 wide, 2 layers, 2 heads, 32-channel conv stack (same kernels and strides as HuBERT, so the
    same 50 Hz rate): ~40 k parameters, for tests and smoke runs. ``base`` / ``large``: HuBERT's own sizes.
    """
    from transformers import HubertConfig  # noqa: PLC0415

    if size == "tiny":
        return HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                            hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                            feat_proj_dropout=0.0)
    if size == "base":
        return HubertConfig()
    if size == "large":
        return HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                            feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    raise ValueError(f"unknown HuBERT size {size!r}; use one of {RANDOM_SIZES}")


def pretrained_folder(name: str, registry: WeightsRegistry | None = None) -> Path:
    """The registry folder of a pretrained HuBERT; :class:`MissingWeightsError` when absent or incomplete."""
    registry = registry or WeightsRegistry()
    folder = registry.path(name)  # MissingWeightsError when absent
    if not (folder / "config.json").is_file():
        raise MissingWeightsError(f"{folder} has no config.json: it is not a HuggingFace HuBERT folder; "
                                  f"get it again ({registry.spec(name).source})")
    return folder


def _preprocessor_normalizes(folder: Path) -> bool:
    p = folder / "preprocessor_config.json"
    if p.is_file():
        return bool(json.loads(p.read_text()).get("do_normalize", False))
    return False


def build_hubert(cfg: AudioEncoderConfig, registry: WeightsRegistry | None = None, *,
                 load_weights: bool = True) -> nn.Module:
    """The ``HubertModel`` of a resolved config: pretrained weights from the registry folder, or random.

    ``load_weights=False`` builds the architecture only (random values; a training checkpoint will supply
    every weight), which needs no pretrained folder.
    """
    from transformers import HubertConfig, HubertModel  # noqa: PLC0415

    if cfg.hubert is None:
        raise ValueError("AudioEncoderConfig is not resolved: call .resolved() first")
    hc = HubertConfig(**cfg.hubert)
    if cfg.init == "random" or not load_weights:
        return HubertModel(hc)
    folder = pretrained_folder(cfg.weights, registry)
    try:
        return HubertModel.from_pretrained(str(folder), config=hc, local_files_only=True)
    except OSError as e:
        raise MissingWeightsError(f"{folder}: HuBERT weights could not be loaded ({e}); the folder needs "
                                  "config.json and model.safetensors (or pytorch_model.bin)") from e


class AudioEncoder(nn.Module):
    """E_aud: waveform (B, N) at 16 kHz -> features (B, T, D) at 25 fps.

    Args:
        cfg: how HuBERT is built and trained (resolved here when it is not yet).
        dim: D, the output width.
        registry: where pretrained folders are looked up (default ``$PT_WEIGHTS_DIR``).
        load_weights: ``False`` skips reading pretrained weights (a checkpoint will overwrite them).
    """

    def __init__(self, cfg: AudioEncoderConfig, dim: int, registry: WeightsRegistry | None = None,
                 load_weights: bool = True) -> None:
        super().__init__()
        if cfg.kind != "hubert":
            raise ValueError(f"AudioEncoder is the HuBERT encoder; build a {cfg.kind!r} encoder with "
                             "build_audio_encoder")
        if cfg.hubert is None:
            cfg = cfg.resolved(registry)
        self.cfg = cfg
        self.normalize = bool(cfg.normalize_waveform)
        self.hubert = build_hubert(cfg, registry, load_weights=load_weights)
        self.hidden = int(self.hubert.config.hidden_size)
        self.proj = nn.Linear(2 * self.hidden, dim)
        if not cfg.spec_augment and getattr(self.hubert, "masked_spec_embed", None) is not None:
            self.hubert.masked_spec_embed.requires_grad_(False)  # only used by SpecAugment masking
        if cfg.freeze == "all":
            self.hubert.requires_grad_(False)
        elif cfg.freeze == "feature_extractor":
            self.hubert.feature_extractor.requires_grad_(False)

    def train(self, mode: bool = True) -> "AudioEncoder":
        super().train(mode)
        if self.cfg.freeze == "all":
            self.hubert.eval()  # a frozen encoder keeps its dropout off
        return self

    def hubert_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """HuBERT's last hidden state (B, n, H) at 50 Hz for waveforms (B, N) in [-1, 1]."""
        x = waveform.float()
        if self.normalize:
            x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-7)
        if self.cfg.freeze == "all":
            with torch.no_grad():
                return self.hubert(x).last_hidden_state
        return self.hubert(x).last_hidden_state

    def forward(self, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Features (B, num_frames, D): two interpolated HuBERT features per frame, concatenated, projected."""
        h = self.hubert_features(waveform)  # (B, n, H)
        h = F.interpolate(h.transpose(1, 2), size=2 * num_frames, mode="linear", align_corners=False)
        h = h.transpose(1, 2).reshape(h.shape[0], num_frames, 2 * self.hidden)
        return self.proj(h)


# --------------------------------------------------------------------------------------------- log-mel
def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int = SAMPLE_RATE, f_min: float = 0.0,
                   f_max: float | None = None) -> np.ndarray:
    """Triangular HTK-mel filters (n_freqs, n_mels) on the FFT bin frequencies ``linspace(0, sr / 2, n_freqs)``.

    Filter ``m`` rises from 0 at ``f[m]`` to 1 at ``f[m + 1]`` and falls to 0 at ``f[m + 2]``, with ``f`` the
    ``n_mels + 2`` frequencies equally spaced on the HTK mel scale between ``f_min`` and ``f_max``; no area
    normalisation (the filters of ``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk")``).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2} Hz, got {f_min}, {f_max}")
    freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    pts = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lo, mid, hi = pts[None, :-2], pts[None, 1:-1], pts[None, 2:]
    rising = (freqs[:, None] - lo) / (mid - lo)
    falling = (hi - freqs[:, None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class LogMelSpectrogram(nn.Module):
    """Waveform (B, N) at 16 kHz -> log-mel (B, n_mels, N // hop), frame ``k`` centred on sample ``hop (k + 1/2)``.

    Frames are ``n_fft``-point FFTs of a periodic Hann window of ``win_length`` samples (centred in the FFT
    frame, as ``torch.stft`` places it); the signal is zero-padded by ``(n_fft - hop) / 2`` samples on
    each side, so the frame count is exactly ``N // hop`` and video frame ``t`` (samples
    ``[640 t, 640 (t + 1))``) covers spectrogram frames ``[4 t, 4 t + 4)`` at a 10 ms hop. Power spectrum
    ``|STFT|^2``, mel filters (:func:`mel_filterbank`), ``log(mel + log_floor)``. Always float32.
    """

    def __init__(self, cfg: MelEncoderConfig) -> None:
        super().__init__()
        self.n_fft, self.hop = cfg.n_fft, cfg.hop_length
        self.log_floor = cfg.log_floor
        self.register_buffer("window", torch.hann_window(cfg.win_length, periodic=True), persistent=False)
        fb = mel_filterbank(cfg.n_fft // 2 + 1, cfg.n_mels, SAMPLE_RATE, cfg.f_min, cfg.f_max)
        self.register_buffer("filters", torch.from_numpy(fb), persistent=False)

    def power_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mel power (B, n_mels, N // hop) before the logarithm."""
        pad = (self.n_fft - self.hop) // 2
        with torch.autocast(waveform.device.type, enabled=False):
            x = F.pad(waveform.float(), (pad, pad))
            spec = torch.stft(x, self.n_fft, self.hop, win_length=self.window.shape[0], center=False,
                              window=self.window, return_complex=True)
            power = spec.real.square() + spec.imag.square()  # (B, F, frames)
            return torch.einsum("bft,fm->bmt", power, self.filters)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.log(self.power_mel(waveform) + self.log_floor)


class MelAudioEncoder(nn.Module):
    """E_aud of kind ``mel``: waveform (B, N) -> features (B, T, D) at 25 fps (see the module docstring)."""

    def __init__(self, cfg: AudioEncoderConfig, dim: int) -> None:
        super().__init__()
        if cfg.kind != "mel":
            raise ValueError(f"MelAudioEncoder needs kind='mel', got {cfg.kind!r}")
        self.cfg, m = cfg, cfg.mel
        self.logmel = LogMelSpectrogram(m)
        self.norm = nn.BatchNorm1d(m.n_mels)
        layers: list[nn.Module] = []
        width = m.n_mels
        for _ in range(m.layers):
            layers += [nn.Conv1d(width, m.channels, m.kernel, padding=m.kernel // 2), nn.GELU(), nn.Dropout(m.dropout)]
            width = m.channels
        self.convs = nn.Sequential(*layers)
        self.rate = m.frames_per_video_frame
        self.to_frames = nn.Conv1d(width, dim, self.rate, stride=self.rate)

    def features(self, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Standardised log-mel (B, n_mels, rate x num_frames), augmented in training mode."""
        n = self.rate * num_frames
        mel = self.logmel(waveform)
        if mel.shape[-1] < n:
            raise ValueError(f"{waveform.shape[-1]} audio samples give {mel.shape[-1]} mel frames, fewer than the "
                             f"{n} of {num_frames} video frames")
        x = self.norm(mel[..., :n])
        return self._augment(x) if self.training else x

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        m = self.cfg.mel
        b, bands, t = x.shape
        keep = torch.ones_like(x)
        for _ in range(m.time_masks):
            keep = keep * (1 - _random_spans(b, t, m.time_mask_frames, x)[:, None, :])
        for _ in range(m.freq_masks):
            keep = keep * (1 - _random_spans(b, bands, m.freq_mask_bands, x)[:, :, None])
        x = x * keep  # masked entries become 0, the standardised mean
        if m.noise_std > 0:
            x = x + m.noise_std * torch.randn_like(x)
        return x

    def forward(self, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Features (B, num_frames, D): convolutions at the spectrogram rate, then 4 frames -> 1 per video frame."""
        return self.to_frames(self.convs(self.features(waveform, num_frames))).transpose(1, 2)


def _random_spans(batch: int, size: int, longest: int, like: torch.Tensor) -> torch.Tensor:
    """(batch, size) 0/1 rows, each with one span of uniform length in [0, longest] at a uniform position."""
    w = torch.randint(0, min(longest, size) + 1, (batch, 1), device=like.device)
    s0 = (torch.rand(batch, 1, device=like.device) * (size - w + 1)).long()
    pos = torch.arange(size, device=like.device)[None]
    return ((pos >= s0) & (pos < s0 + w)).to(like.dtype)


def build_audio_encoder(cfg: AudioEncoderConfig, dim: int, registry: WeightsRegistry | None = None, *,
                        load_weights: bool = True) -> nn.Module:
    """E_aud of ``cfg.kind``: :class:`AudioEncoder` (HuBERT) or :class:`MelAudioEncoder` (log-mel conv)."""
    if cfg.kind == "mel":
        return MelAudioEncoder(cfg, dim)
    return AudioEncoder(cfg, dim, registry, load_weights=load_weights)


__all__ = ["AudioEncoderConfig", "MelEncoderConfig", "AudioEncoder", "MelAudioEncoder", "LogMelSpectrogram",
           "build_audio_encoder", "mel_filterbank", "build_hubert", "pretrained_folder", "random_hubert_config",
           "describe_audio_init", "KINDS", "INITS", "FREEZE", "RANDOM_SIZES"]
