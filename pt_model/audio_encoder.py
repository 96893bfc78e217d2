"""Stage 1's audio encoder E_aud: HuBERT (conv feature extractor + transformer) and a 25 fps projection.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pt_data.weights import MissingWeightsError, WeightsRegistry

INITS = ("pretrained", "random")
FREEZE = ("none", "feature_extractor", "all")
RANDOM_SIZES = ("tiny", "base", "large")


@dataclass
class AudioEncoderConfig:
    """How E_aud is built. ``weights`` is a registry name (pretrained); ``size`` the random-init size.

    ``hubert`` (the architecture, as a ``HubertConfig`` diff dict) and ``normalize_waveform`` are filled by
    :meth:`resolved`; a resolved config rebuilds the exact architecture without the pretrained folder
    (a training checkpoint then supplies the weights).
    """

    init: str = "pretrained"
    weights: str = "hubert-base-ls960"
    size: str = "base"
    freeze: str = "feature_extractor"
    normalize_waveform: bool | None = None  # None: the pretrained folder's preprocessor setting (random: False)
    spec_augment: bool = False
    layerdrop: float = 0.0
    hubert: dict[str, Any] | None = None

    def __post_init__(self) -> None:
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
    """One line for configs and logs, e.g. ``audio encoder: random init (tiny preset)``."""
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


__all__ = ["AudioEncoderConfig", "AudioEncoder", "build_hubert", "pretrained_folder", "random_hubert_config",
           "describe_audio_init", "INITS", "FREEZE", "RANDOM_SIZES"]
