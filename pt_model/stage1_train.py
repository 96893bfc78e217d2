"""Training stage 1: the config (presets ``tiny`` and ``paper``), the loss, validation metrics, the task.

Presets (the paper gives no sizes besides HuBERT; these are the project's):

* ``paper``: D = 512, 8 heads, 4 self-attention layers, E_vtx over all 9409 face vertices, D_vtx over all
  3232 lower-face vertices, pretrained ``hubert-base-ls960`` from the weights registry (feature extractor
  frozen; a missing folder is a :class:`~pt_data.weights.MissingWeightsError` unless
  ``random_audio_encoder`` asks for a randomly initialised HuBERT-base, recorded as such), windows of 32
  frames with up to 64 style frames and 8 frames of audio context, batch 32, AdamW 1e-4, 1000 warm-up steps.
* ``tiny`` (small data, CPU): every 16th vertex of the masks (589 encoded, 206 decoded), windows of 16
  frames, D = 32, 2 heads. Its default audio encoder is the log-mel conv encoder
  (``audio encoder: log-mel conv (no pretrained weights)`` in the run config), with the settings that
  learned lip motion from ~25 s of real video (``benchmarks/stage1_lve.py``, ``reports/stage1_lve.md``;
  chosen on an inner split, never on the test frames): 32-channel convs, SpecAugment masks and feature
  noise 0.3, dropout 0.2, no self-attention block, an expression-space decoder whose output is added to
  the style frames' mean expression (``decoder_space="expression"``, ``style_residual``: the model
  starts at the speaker's mean mouth), 600 steps of batch 8 at 2e-3 with 4 context frames.
  ``--audio-encoder hubert`` gives the former tiny model: a randomly initialised tiny HuBERT
  (``audio encoder: random init (tiny preset)``: no pretrained weights exist for it), 2 self-attention
  layers, the paper's vertex decoder: smoke runs of the paper's architecture.

Loss (in units of ``vertex_scale_mm`` = 1 cm, on the decoded lower-face vertices; the paper gives none):
``vertex * MSE + velocity * MSE of frame-to-frame differences (temporal smoothness, lip dynamics)
+ lip * MSE on the lip vertices (extra weight where lip sync is judged)``, weights 1 / 1 / 1.

Validation predicts held-out tails of clips with the style from the clip's head (see
:mod:`pt_model.stage1_data`) and reports the lip vertex error ``lve_mm`` (per frame the largest L2 error
over lip vertices, averaged over frames; FaceFormer's LVE), the same for the audio-agnostic baseline
``lve_baseline_mm`` (the speaker's mean mouth: template + mean expression of the head), the mean lower-face
vertex error, and the Pearson correlation of predicted and true mouth opening: pooled over all frames
(``mouth_corr``; the baseline's ``mouth_corr_baseline`` shows how much of it differences between speakers
explain) and within clips (``mouth_corr_clip_mean``, the mean over clips; 0 for any constant mouth).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pt_data.face_model import FaceModel
from pt_data.face_model_convert import default_face_model
from pt_data.weights import MissingWeightsError, WeightsRegistry
from pt_model.audio_encoder import KINDS, AudioEncoderConfig, MelEncoderConfig, describe_audio_init
from pt_model.stage1 import Stage1Model, Stage1ModelConfig
from pt_model.stage1_data import (MissingGeometryError, Stage1DataConfig, Stage1WindowDataset, ValidationClip,
                                  check_geometry, load_validation_clips)
from pt_model.train_loop import (ConfigMismatchError, TrainLoopConfig, add_loop_arguments, check_config,
                                 load_checkpoint, loop_config_from_args, train, unwrap_model)

PRESETS = ("tiny", "paper")
TASK_NAME = "stage1"
#: The paper preset's network and windows (any audio encoder).
PAPER_MODEL: dict[str, Any] = dict(dim=512, heads=8, layers=4, ff_mult=4, dropout=0.1, vertex_hidden=512,
                                   vertex_stride=1)
PAPER_DATA: dict[str, Any] = dict(window=32, style_frames=64, style_min_frames=16, context_frames=8,
                                  windows_per_clip=4, shuffle_buffer=256, val_max_clips=64)
#: The audio encoder each preset uses unless told otherwise (``--audio-encoder``).
PRESET_AUDIO_ENCODER = {"tiny": "mel", "paper": "hubert"}
#: The tiny preset's log-mel encoder (fields of MelEncoderConfig) and network with it (see the module doc).
TINY_MEL: dict[str, Any] = dict(channels=32, layers=2, kernel=5, dropout=0.2, time_masks=2, time_mask_frames=8,
                                freq_masks=2, freq_mask_bands=8, noise_std=0.3)
TINY_MEL_LOOP: dict[str, Any] = dict(max_steps=600, batch_size=8, lr=2e-3, warmup_steps=0, weight_decay=0.0,
                                     log_every=10, val_every=100, ckpt_every=100)
TINY_MEL_MODEL: dict[str, Any] = dict(dim=32, heads=2, layers=0, ff_mult=2, dropout=0.2, vertex_hidden=64,
                                      vertex_stride=16, decoder_space="expression", style_residual=True)


@dataclass
class Stage1LossConfig:
    """Weights of the loss terms (see the module docstring)."""

    vertex: float = 1.0
    velocity: float = 1.0
    lip: float = 1.0


@dataclass
class Stage1Config:
    """Everything that defines a stage-1 run besides the loop settings."""

    model: Stage1ModelConfig
    data: Stage1DataConfig
    loss: Stage1LossConfig = field(default_factory=Stage1LossConfig)
    preset: str = "paper"
    face_model: str | None = None  # a converted face-model file; None: default_face_model()
    audio_encoder: str = ""  # e.g. "audio encoder: random init (tiny preset)"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"]["shards"] = str(Path(self.data.shards).resolve()) if "://" not in self.data.shards else self.data.shards
        if self.data.val_shards and "://" not in self.data.val_shards:
            d["data"]["val_shards"] = str(Path(self.data.val_shards).resolve())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stage1Config":
        m = dict(d["model"])
        m["audio"] = AudioEncoderConfig(**m["audio"])
        return cls(model=Stage1ModelConfig(**m), data=Stage1DataConfig(**d["data"]),
                   loss=Stage1LossConfig(**d.get("loss", {})), preset=d.get("preset", "paper"),
                   face_model=d.get("face_model"), audio_encoder=d.get("audio_encoder", ""))


# ------------------------------------------------------------------------------------------- presets
def preset_config(preset: str, shards: str, *, val_shards: str | None = None, random_audio_encoder: bool = False,
                  use_style: bool = True, audio_freeze: str | None = None, face_model: str | None = None,
                  audio_encoder: str | None = None, mel: dict[str, Any] | None = None,
                  model: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
                  loss: dict[str, Any] | None = None) -> Stage1Config:
    """The :class:`Stage1Config` of a preset, with optional overrides of model / data / loss fields.

    ``audio_encoder`` picks the kind of E_aud (``hubert`` or ``mel``; default: the preset's), ``mel``
    overrides fields of :class:`~pt_model.audio_encoder.MelEncoderConfig`. ``use_style=False`` (the
    ablation) also turns ``style_residual`` off: the ablated model sees no frame of the speaker.
    """
    kind = audio_encoder or PRESET_AUDIO_ENCODER.get(preset, "hubert")
    if kind not in KINDS:
        raise ValueError(f"unknown audio encoder {kind!r}; use one of {KINDS}")
    if preset == "tiny" and kind == "mel":
        audio = AudioEncoderConfig(kind="mel", mel=MelEncoderConfig(**{**TINY_MEL, **(mel or {})}))
        note = describe_audio_init(audio)
        mcfg: dict[str, Any] = dict(TINY_MEL_MODEL)
        dcfg: dict[str, Any] = dict(window=16, style_frames=32, style_min_frames=8, context_frames=4,
                                    windows_per_clip=16, shuffle_buffer=64, val_max_clips=16)
    elif preset == "tiny":
        audio = AudioEncoderConfig(init="random", size="tiny", freeze=audio_freeze or "none")
        note = describe_audio_init(audio, "tiny preset")
        mcfg = dict(dim=32, heads=2, layers=2, ff_mult=2, dropout=0.0, vertex_hidden=64, vertex_stride=16)
        dcfg = dict(window=16, style_frames=32, style_min_frames=8, context_frames=2,
                    windows_per_clip=4, shuffle_buffer=64, val_max_clips=16)
    elif preset == "paper":
        mcfg, dcfg = dict(PAPER_MODEL), dict(PAPER_DATA)
        if kind == "mel":
            audio = AudioEncoderConfig(kind="mel", mel=MelEncoderConfig(**(mel or {})))
            note = describe_audio_init(audio)
        elif random_audio_encoder:
            audio = AudioEncoderConfig(init="random", size="base", freeze=audio_freeze or "none")
            note = describe_audio_init(audio, "--random-audio-encoder: HuBERT-base architecture, NOT pretrained")
        else:
            audio = AudioEncoderConfig(init="pretrained", weights="hubert-base-ls960",
                                       freeze=audio_freeze or "feature_extractor")
            note = describe_audio_init(audio)
    else:
        raise ValueError(f"unknown stage-1 preset {preset!r}; use one of {PRESETS}")
    mcfg.update(use_style=use_style, **(model or {}))
    if not use_style:
        mcfg["style_residual"] = False
    dcfg.update(data or {})
    return Stage1Config(model=Stage1ModelConfig(audio=audio, **mcfg),
                        data=Stage1DataConfig(shards=shards, val_shards=val_shards, **dcfg),
                        loss=Stage1LossConfig(**(loss or {})), preset=preset, face_model=face_model,
                        audio_encoder=note)


def preset_loop_defaults(preset: str, audio_encoder: str | None = None) -> dict[str, Any]:
    """Loop settings of a preset and audio encoder (default: the preset's); each can be overridden."""
    kind = audio_encoder or PRESET_AUDIO_ENCODER.get(preset, "hubert")
    if preset == "tiny" and kind == "mel":
        return dict(TINY_MEL_LOOP)
    if preset == "tiny":
        return dict(max_steps=200, batch_size=8, lr=2e-3, warmup_steps=0, weight_decay=0.0, log_every=10,
                    val_every=100, ckpt_every=100)
    if preset == "paper":
        return dict(max_steps=100_000, batch_size=32, lr=1e-4, warmup_steps=1000, weight_decay=0.01,
                    log_every=50, val_every=2000, ckpt_every=2000)
    raise ValueError(f"unknown stage-1 preset {preset!r}; use one of {PRESETS}")


# ---------------------------------------------------------------------------------------------- losses
def lip_vertex_error(pred: torch.Tensor, target: torch.Tensor, lip: torch.Tensor) -> torch.Tensor:
    """Per-frame LVE (..., T): the largest L2 error (mm) over the lip vertices ``lip`` of (..., T, L, 3)."""
    return (pred[..., lip, :] - target[..., lip, :]).norm(dim=-1).amax(-1)


def stage1_losses(pred: torch.Tensor, target: torch.Tensor, lip: torch.Tensor, weights: Stage1LossConfig,
                  scale_mm: float) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of decoded vertices (B, T, L, 3) in mm and its parts (floats)."""
    err = (pred.float() - target.float()) / scale_mm
    vertex = err.pow(2).mean()
    lip_term = err[:, :, lip].pow(2).mean()
    velocity = (err[:, 1:] - err[:, :-1]).pow(2).mean() if err.shape[1] > 1 else err.new_zeros(())
    total = weights.vertex * vertex + weights.velocity * velocity + weights.lip * lip_term
    with torch.no_grad():
        lve = lip_vertex_error(pred.float(), target.float(), lip).mean()
    return total, {"loss_vertex": float(vertex.detach()), "loss_velocity": float(velocity.detach()),
                   "loss_lip": float(lip_term.detach()), "lve_mm": float(lve)}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or a.std() < 1e-12 or b.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


@torch.no_grad()
def evaluate_stage1(model: Stage1Model, clips: list[ValidationClip], context_frames: int) -> dict[str, float]:
    """Validation metrics of ``model`` on held-out tails (see the module docstring)."""
    if not clips:
        return {"num_clips": 0.0}
    dev = next(model.parameters()).device
    lip = torch.as_tensor(model.sets.lip_in_decoder, device=dev)
    lve, lve_base, verr, mo_pred, mo_true, mo_base, corr_clip = [], [], [], [], [], [], []
    for vc in clips:
        it = {k: torch.as_tensor(v, device=dev)[None] for k, v in vc.item.items()}
        pred = model(it["audio"], it["shape"], it["style_expression"], it["style_mask"],
                     context_frames=context_frames).float()[0]
        true = model.lower_face_vertices(it["shape"], it["expression"]).float()[0]
        mean_expr = torch.as_tensor(vc.head_expression.mean(0), device=dev)[None, None]
        base = model.lower_face_vertices(it["shape"], mean_expr.expand(1, len(true), -1)).float()[0]
        lve.append(lip_vertex_error(pred, true, lip).cpu().numpy())
        lve_base.append(lip_vertex_error(base, true, lip).cpu().numpy())
        verr.append((pred - true).norm(dim=-1).mean(-1).cpu().numpy())
        p, t = model.decoded_mouth_opening(pred).cpu().numpy(), model.decoded_mouth_opening(true).cpu().numpy()
        mo_pred.append(p)
        mo_true.append(t)
        mo_base.append(model.decoded_mouth_opening(base).cpu().numpy())
        corr_clip.append(_pearson(p, t))
    cc = np.asarray(corr_clip)
    return {"lve_mm": float(np.concatenate(lve).mean()), "lve_baseline_mm": float(np.concatenate(lve_base).mean()),
            "vertex_error_mm": float(np.concatenate(verr).mean()),
            "mouth_corr": _pearson(np.concatenate(mo_pred), np.concatenate(mo_true)),
            "mouth_corr_baseline": _pearson(np.concatenate(mo_base), np.concatenate(mo_true)),
            "mouth_corr_clip_mean": float(np.nanmean(cc)) if np.isfinite(cc).any() else float("nan"),
            "num_clips": float(len(clips)), "num_frames": float(sum(len(x) for x in lve))}


# ------------------------------------------------------------------------------------------------ task
class Stage1Task:
    """The :class:`~pt_model.train_loop.TrainTask` of stage 1.

    Construction resolves the audio encoder (a missing pretrained HuBERT folder raises
    :class:`~pt_data.weights.MissingWeightsError` here, before anything runs) and checks that the shards
    carry fitted geometry of the same face model (:class:`~pt_model.stage1_data.MissingGeometryError`).
    """

    name = TASK_NAME

    def __init__(self, cfg: Stage1Config, *, registry: WeightsRegistry | None = None,
                 face_model: FaceModel | None = None, check_data: bool = True) -> None:
        self.registry = registry or WeightsRegistry()
        self.face_model = face_model or default_face_model(cfg.face_model)
        self.cfg = replace(cfg, model=replace(cfg.model, audio=cfg.model.audio.resolved(self.registry)))
        self.data_report: dict[str, int] = {}
        if check_data:
            self.data_report = check_geometry(cfg.data.shards, self.face_model.model_id)  # before any work
            if cfg.data.val_shards:
                check_geometry(cfg.data.val_shards, self.face_model.model_id)
        self._val: list[ValidationClip] | None = None

    def config_dict(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), "face_model_id": self.face_model.model_id}

    def describe(self) -> str:
        m = self.cfg.model
        return (f"preset {self.cfg.preset}, D={m.dim}, {m.layers} layers, vertex stride {m.vertex_stride}, "
                f"style {'on' if m.use_style else 'OFF'}, {self.cfg.audio_encoder};")

    def build_model(self) -> Stage1Model:
        return Stage1Model(self.cfg.model, self.face_model, self.registry)

    def train_dataset(self, seed: int) -> Stage1WindowDataset:
        return Stage1WindowDataset(self.cfg.data, seed)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int
             ) -> tuple[torch.Tensor, dict[str, float]]:
        net: Stage1Model = unwrap_model(model)  # type: ignore[assignment]
        pred = model(batch["audio"], batch["shape"], batch.get("style_expression"), batch.get("style_mask"),
                     context_frames=self.cfg.data.context_frames)
        target = net.lower_face_vertices(batch["shape"], batch["expression"])
        lip = torch.as_tensor(net.sets.lip_in_decoder, device=pred.device)
        return stage1_losses(pred, target, lip, self.cfg.loss, net.cfg.vertex_scale_mm)

    def validation_clips(self) -> list[ValidationClip]:
        if self._val is None:
            self._val = load_validation_clips(self.cfg.data)
        return self._val

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        return evaluate_stage1(unwrap_model(model), self.validation_clips(), self.cfg.data.context_frames)


def load_stage1(run_or_checkpoint: str | Path, *, face_model: FaceModel | None = None,
                registry: WeightsRegistry | None = None, map_location: str | torch.device = "cpu",
                expect: Stage1ModelConfig | None = None) -> tuple[Stage1Model, Stage1Config]:
    """A trained :class:`Stage1Model` (eval mode) and its config from a run folder or checkpoint file.

    Needs no pretrained HuBERT folder (the checkpoint holds every weight). Raises
    :class:`~pt_model.train_loop.ConfigMismatchError` for a checkpoint of another task, another face model
    than ``face_model``, or another model config than ``expect``.
    """
    state, config, step = load_checkpoint(run_or_checkpoint, expect_task=TASK_NAME, map_location=map_location)
    cfg = Stage1Config.from_dict(config)
    fm = face_model or default_face_model(cfg.face_model)
    if config.get("face_model_id") != fm.model_id:
        raise ConfigMismatchError(f"{run_or_checkpoint} was trained with face model {config.get('face_model_id')}, "
                                  f"not {fm.model_id}; pass that model (--face-model)")
    if expect is not None:
        check_config(config["model"], asdict(expect), f"checkpoint {run_or_checkpoint}")
    model = Stage1Model(cfg.model, fm, registry, load_audio_weights=False)
    model.load_state_dict(state)
    return model.to(map_location).eval(), cfg


# ------------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``pt train stage1``."""
    io = p.add_argument_group("data and run folder")
    io.add_argument("--shards", required=True, help="folder of clip shards with fitted geometry (`pt curate`)")
    io.add_argument("--val-shards", help="separate validation shards (default: the last --holdout-tail of every "
                                         "training clip is held out and validated on)")
    io.add_argument("--out", required=True, type=Path, help="run folder (resumed when it holds a checkpoint)")
    io.add_argument("--preset", choices=PRESETS, default="paper",
                    help="model and loop sizes: paper (the default) or tiny (smoke runs, CPU)")
    m = p.add_argument_group("model")
    m.add_argument("--audio-encoder", choices=list(KINDS),
                   help="E_aud: hubert (the paper) or mel (log-mel conv, no pretrained weights; for small data). "
                        "Default: the preset's (paper: hubert, tiny: mel)")
    m.add_argument("--random-audio-encoder", action="store_true",
                   help="paper preset without pretrained HuBERT: a randomly initialised HuBERT-base "
                        "(recorded in the run config; results are not comparable)")
    m.add_argument("--freeze-audio", choices=["none", "feature_extractor", "all"],
                   help="freeze HuBERT's conv feature extractor or the whole encoder (default: per preset)")
    m.add_argument("--no-style", action="store_true", help="the 'w/o style embedding' ablation")
    m.add_argument("--face-model", help="converted face-model .npz (default: $PT_FACE_MODEL or the ICT model)")
    m.add_argument("--weights-dir", help="pretrained weights folder (default: $PT_WEIGHTS_DIR)")
    d = p.add_argument_group("windows")
    d.add_argument("--window", type=int, help="target frames per training window (default: per preset)")
    d.add_argument("--style-frames", type=int, help="longest style window in frames (default: per preset)")
    d.add_argument("--holdout-tail", type=float, help="held-out fraction at the end of each clip (default 0.2)")
    add_loop_arguments(p)


def config_from_args(args: argparse.Namespace) -> tuple[Stage1Config, TrainLoopConfig]:
    """The stage-1 and loop configs that ``pt train stage1`` options describe."""
    data = {k: v for k, v in (("window", args.window), ("style_frames", args.style_frames),
                              ("holdout_tail", args.holdout_tail)) if v is not None}
    cfg = preset_config(args.preset, args.shards, val_shards=args.val_shards,
                        random_audio_encoder=args.random_audio_encoder, use_style=not args.no_style,
                        audio_freeze=args.freeze_audio, face_model=args.face_model,
                        audio_encoder=getattr(args, "audio_encoder", None), data=data)
    return cfg, loop_config_from_args(args, preset_loop_defaults(args.preset, cfg.model.audio.kind), out=args.out)


def run(args: argparse.Namespace) -> int:
    """``pt train stage1``: returns the exit code."""
    try:
        cfg, loop = config_from_args(args)
        task = Stage1Task(cfg, registry=WeightsRegistry(args.weights_dir) if args.weights_dir else None)
    except (MissingWeightsError, MissingGeometryError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        result = train(task, loop)
    except ConfigMismatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = {"step": result.step, "resumed_from": result.resumed_from, "final_loss": result.final_loss,
               "val": result.val, "samples_per_s": round(result.samples_per_s, 2),
               "data_time_share": round(result.data_time_share, 3), "device": result.device,
               "checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
               "audio_encoder": cfg.audio_encoder}
    print(json.dumps(summary, indent=2))
    return 0


__all__ = ["Stage1Config", "Stage1LossConfig", "Stage1Task", "PRESETS", "preset_config", "preset_loop_defaults",
           "stage1_losses", "lip_vertex_error", "evaluate_stage1", "load_stage1", "add_arguments",
           "config_from_args", "run"]
