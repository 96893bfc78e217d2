"""Training of stage 2 (the dual-attention renderer): config, presets, losses, validation, the TrainTask.

Targets and references come from the same clip (:mod:`pt_model.stage2_data`); the loop is the shared one of
:mod:`pt_model.train_loop` (bf16 on CUDA, DDP, exact resume, CSV/TensorBoard logs, checkpoints).

Losses (the paper gives none; these are the field's norm, weights in :class:`Stage2LossConfig`):

* L1 over the whole image, plus an extra L1 inside the mouth region (the closed, dilated lip mask of the
  target, :func:`pt_model.stage2.mouth_region_mask`): the mouth is a few percent of the crop but is what
  dubbing changes, so its error is weighted up;
* perceptual: LPIPS with a VGG-16 backbone whose ImageNet weights come from the weights registry
  (``vgg16``). ``perceptual="auto"`` uses it when the file is present; when it is absent the run says so
  and trains with ``1 - SSIM`` instead (structure term without pretrained weights). The choice is recorded
  in the run's config (``loss.resolved``), so a resume with the other choice is refused.
* Adversarial and sync losses are not implemented: the shared loop drives one optimiser (a discriminator
  needs its own), and SyncNet's weights are not available here.

Validation reconstructs held-out frames of the first clips (the tail of each clip, never seen in training)
from references in the training part chosen as at inference time, and reports PSNR / SSIM (and LPIPS-Alex
when its backbone weights are present) next to two baselines computed on the same frames: copying the
nearest reference frame in time (``copy_time``) and the reference frame nearest in geometry (``copy_geom``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pt_data.face_model import FaceModel
from pt_data.face_model_convert import default_face_model
from pt_data.weights import MissingWeightsError, WeightsRegistry
from pt_bench.metrics.lpips_metric import load_lpips_alex
from pt_model.perceptual import load_lpips_vgg, psnr, ssim
from pt_model.references import SELECTION_MODES, ReferenceConfig
from pt_model.stage2 import ATTENTION_MODES, Stage2Config, Stage2Renderer, mouth_region_mask
from pt_model.stage2_data import (GeometryImages, Stage2DataConfig, Stage2DataError, Stage2Dataset, ValidationClip,
                                  check_stage2_shards, load_validation_clips)
from pt_model.train_loop import (ConfigMismatchError, TrainLoopConfig, TrainResult, add_loop_arguments,
                                 load_checkpoint, loop_config_from_args, train, unwrap_model)

TASK_NAME = "stage2"
PERCEPTUAL_MODES = ("auto", "lpips-vgg", "ssim", "none")


@dataclass
class Stage2LossConfig:
    """Weights of the training losses; ``perceptual``: "auto", "lpips-vgg", "ssim" or "none"."""

    l1: float = 1.0
    mouth_l1: float = 2.0
    perceptual: str = "auto"
    perceptual_weight: float = 0.2  # LPIPS weight, or the weight of (1 - SSIM) when SSIM stands in

    def __post_init__(self) -> None:
        if self.perceptual not in PERCEPTUAL_MODES:
            raise ValueError(f"perceptual must be one of {PERCEPTUAL_MODES}, got {self.perceptual!r}")


@dataclass
class Stage2TrainConfig:
    """Everything that defines a stage-2 model and its training data (saved as the run's task config)."""

    model: Stage2Config = field(default_factory=Stage2Config)
    data: Stage2DataConfig = field(default_factory=Stage2DataConfig)
    loss: Stage2LossConfig = field(default_factory=Stage2LossConfig)
    face_model: str | None = None  # a face-model .npz; None: pt_data.face_model_convert.default_face_model()
    val_lpips: bool = True  # LPIPS-Alex in validation when its backbone file is present

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stage2TrainConfig":
        """Rebuild from :meth:`to_dict` output (e.g. a run's saved task config)."""
        data = dict(d["data"])
        data["references"] = ReferenceConfig(**data["references"])
        loss = {k: v for k, v in d["loss"].items() if k != "resolved"}
        return cls(model=Stage2Config(**d["model"]), data=Stage2DataConfig(**data),
                   loss=Stage2LossConfig(**loss), face_model=d.get("face_model"), val_lpips=d.get("val_lpips", True))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["data"]["shards"] and "://" not in d["data"]["shards"]:  # a resume from another folder is the same run
            d["data"]["shards"] = str(Path(d["data"]["shards"]).resolve())
        return d


#: preset -> (model, data, loop) settings; the paper gives no sizes besides the 256 crops, these are ours.
#: "tiny": 64 px, C = 32, one residual block before the decoder's upsampling (tests, the demo, CPU smoke runs).
#: "paper": 256 px crops, C = 128, the paper's decoder (two upsampling convolutions, no extra blocks),
#: N_f = N_l = 5 in training as in Algorithm 1. On CPU a 256 px frame with 25 lip references takes seconds:
#: train and dub at 256 on a GPU.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {"model": dict(image_size=64, channels=32, heads=2, decoder_res_blocks=1),
             "data": dict(image_size=64, samples_per_clip=4, val_frames_per_clip=4, val_clips=2),
             "loop": dict(batch_size=4, lr=2e-3, max_steps=300, warmup_steps=0, log_every=10, val_every=100,
                          ckpt_every=100, schedule="cosine")},
    "paper": {"model": dict(image_size=256, channels=128, heads=4, decoder_res_blocks=0),
              "data": dict(image_size=256, samples_per_clip=8),
              "loop": dict(batch_size=8, lr=2e-4, max_steps=200_000, warmup_steps=1000, log_every=50,
                           val_every=2000, ckpt_every=2000, weight_decay=0.01, schedule="cosine")},
}


def preset_config(preset: str, shards: str, **model_overrides: Any) -> tuple[Stage2TrainConfig, dict[str, Any]]:
    """``(task config, loop settings)`` of a preset for the shards at ``shards``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown stage-2 preset {preset!r}; choose from {sorted(PRESETS)}")
    p = PRESETS[preset]
    model = Stage2Config(**{**p["model"], **model_overrides})
    data = Stage2DataConfig(shards=str(shards), **{**p["data"], "image_size": model.image_size})
    return Stage2TrainConfig(model=model, data=data), dict(p["loop"])


def load_face_model_for(config: Stage2TrainConfig) -> FaceModel:
    """The face model a config names (or the default one)."""
    return default_face_model(config.face_model)


class Stage2Task:
    """The :class:`~pt_model.train_loop.TrainTask` of stage 2.

    Construction resolves the perceptual loss (see the module docstring) and checks that the shards carry
    fitted geometry of the face model (:class:`~pt_model.stage2_data.Stage2DataError` otherwise).
    """

    name = TASK_NAME

    def __init__(self, config: Stage2TrainConfig, *, registry: WeightsRegistry | None = None,
                 face_model: FaceModel | None = None, verbose: bool = True, check_data: bool = True) -> None:
        self.config = config
        self.registry = registry or WeightsRegistry()
        self.face_model = face_model or load_face_model_for(config)
        self.data_report = check_stage2_shards(config.data.shards, self.face_model) if check_data else {}
        self.notes: list[str] = []
        if self.data_report.get("clips_without_geometry"):
            self.notes.append(f"{self.data_report['clips_without_geometry']} clips without fitted geometry are "
                              "skipped")
        self._lpips_loss = None
        self._lpips_val = None
        self.perceptual = self._resolve_perceptual()
        if config.val_lpips:
            try:
                self._lpips_val = load_lpips_alex(self.registry)
            except MissingWeightsError as e:
                self.notes.append(f"validation LPIPS skipped: {e}")
        self._val_clips: list[ValidationClip] | None = None
        self._baselines: dict[str, float] | None = None
        if verbose:
            for n in self.notes:
                print(f"[{TASK_NAME}] {n}", file=sys.stderr)

    def _resolve_perceptual(self) -> str:
        mode = self.config.loss.perceptual
        if mode in ("auto", "lpips-vgg"):
            try:
                self._lpips_loss = load_lpips_vgg(self.registry)
                return "lpips-vgg"
            except MissingWeightsError as e:
                if mode == "lpips-vgg":
                    raise
                self.notes.append(f"perceptual loss: VGG-16 weights missing, training with L1 + SSIM instead ({e})")
                return "ssim"
        return mode

    # ---- TrainTask
    def describe(self) -> str:
        m = self.config.model
        return (f"renderer {m.attention} attention, {m.image_size}px, C={m.channels}, "
                f"refs N_f={self.config.data.references.num_face} N_l={self.config.data.references.num_lip} "
                f"({self.config.data.references.mode}), losses L1 + mouth L1 + {self.perceptual},")

    def config_dict(self) -> dict[str, Any]:
        d = self.config.to_dict()
        d["loss"]["resolved"] = self.perceptual
        d["face_model_id"] = self.face_model.model_id
        return d

    def build_model(self) -> Stage2Renderer:
        return Stage2Renderer(self.config.model)

    def train_dataset(self, seed: int) -> Stage2Dataset:
        return Stage2Dataset(self.config.data, self.face_model, seed=seed)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int
             ) -> tuple[torch.Tensor, dict[str, float]]:
        pred = model(batch["target_pncc"], batch["target_lip_mask"], batch["face_pncc"], batch["face_frames"],
                     batch["lip_pncc"], batch["lip_frames"])
        return self.image_loss(pred, batch["target"], batch["target_lip_mask"])

    def image_loss(self, pred: torch.Tensor, target: torch.Tensor, lip_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted training loss of predicted vs. real frames (B, 3, H, W) and its parts."""
        lc, mc = self.config.loss, self.config.model
        pred, target = pred.float(), target.float()
        err = (pred - target).abs()
        l1 = err.mean()
        m = mouth_region_mask(lip_mask, pred.shape[-1], mc.mouth_close, mc.mouth_dilate)
        mouth = (err * m).sum() / (3 * m.sum()).clamp_min(1.0)
        total = lc.l1 * l1 + lc.mouth_l1 * mouth
        parts = {"l1": float(l1.detach()), "mouth_l1": float(mouth.detach())}
        if self.perceptual == "lpips-vgg":
            net = self._lpips_loss.to(pred.device)
            p = net(pred * 2 - 1, target * 2 - 1).mean()
            total = total + lc.perceptual_weight * p
            parts["lpips_vgg"] = float(p.detach())
        elif self.perceptual == "ssim":
            s = ssim(pred, target)
            total = total + lc.perceptual_weight * (1 - s)
            parts["ssim"] = float(s.detach())
        return total, parts

    def validation_clips(self) -> list[ValidationClip]:
        if self._val_clips is None:
            images = GeometryImages(self.face_model, self.config.data.image_size, batch=self.config.data.render_batch)
            self._val_clips = load_validation_clips(self.config.data, self.face_model, images)
        return self._val_clips

    def validate(self, model: torch.nn.Module, batch_size: int = 8) -> dict[str, float]:
        """PSNR / SSIM (/ LPIPS) of reconstructed held-out frames, and the copy baselines on the same frames."""
        net = unwrap_model(model)
        dev = next(net.parameters()).device
        clips = self.validation_clips()
        if not clips:
            return {}
        scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "psnr_mouth": []}
        if self._lpips_val is not None:
            scores["lpips"] = []
        for vc in clips:
            samples = vc.samples()
            for s in range(0, len(samples), batch_size):
                chunk = samples[s:s + batch_size]
                b = {k: torch.stack([x[k] for x in chunk]).to(dev) for k in chunk[0]}
                pred = net(b["target_pncc"], b["target_lip_mask"], b["face_pncc"], b["face_frames"],
                           b["lip_pncc"], b["lip_frames"]).float()
                for k, v in frame_scores(pred, b["target"], b["target_lip_mask"], self.config.model,
                                         self._lpips_val).items():
                    scores[k] += v
        out = {k: float(np.mean(v)) for k, v in scores.items()}
        out.update(self.baselines())
        return out

    def baselines(self) -> dict[str, float]:
        """PSNR / SSIM of copying the nearest reference frame (in time, in geometry); computed once."""
        if self._baselines is None:
            res: dict[str, list[float]] = {}
            for vc in self.validation_clips():
                tgt = vc.frames[vc.targets]
                for name, idx in (("copy_time", vc.nearest_in_time()), ("copy_geom", vc.nearest_in_geometry())):
                    sc = frame_scores(vc.frames[idx], tgt, vc.lip_mask[vc.targets], self.config.model, None)
                    for k, v in sc.items():
                        res.setdefault(f"{k}_{name}", []).extend(v)
            self._baselines = {k: float(np.mean(v)) for k, v in res.items()}
        return dict(self._baselines)


def frame_scores(pred: torch.Tensor, target: torch.Tensor, lip_mask: torch.Tensor, model_cfg: Stage2Config,
                 lpips_net: torch.nn.Module | None) -> dict[str, list[float]]:
    """Per-frame PSNR, SSIM, PSNR inside the mouth region (and LPIPS) of (B, 3, H, W) images in [0, 1]."""
    pred, target = pred.float().clamp(0, 1), target.float()
    m = mouth_region_mask(lip_mask.float(), pred.shape[-1], model_cfg.mouth_close, model_cfg.mouth_dilate)
    se = ((pred - target) ** 2 * m).flatten(1).sum(1) / (3 * m.flatten(1).sum(1)).clamp_min(1.0)
    out = {"psnr": psnr(pred, target).tolist(), "ssim": ssim(pred, target, reduction="none").tolist(),
           "psnr_mouth": (10 * torch.log10(1.0 / se.clamp_min(1e-12))).tolist()}
    if lpips_net is not None:
        net = lpips_net.to(pred.device)
        out["lpips"] = net(pred * 2 - 1, target * 2 - 1).flatten().tolist()
    return out


def train_stage2(config: Stage2TrainConfig, loop: TrainLoopConfig, **task_kw: Any) -> TrainResult:
    """Train stage 2 with the shared loop (the Python API under ``pt train stage2``)."""
    return train(Stage2Task(config, **task_kw), loop)


def load_stage2(run: str | Path, map_location: str | torch.device = "cpu"
                ) -> tuple[Stage2Renderer, Stage2TrainConfig, int]:
    """``(renderer in eval mode, its config, step)`` from a stage-2 run folder (or checkpoint file)."""
    state, cfg_dict, step = load_checkpoint(run, expect_task=TASK_NAME, map_location=map_location)
    config = Stage2TrainConfig.from_dict(cfg_dict)
    net = Stage2Renderer(config.model)
    net.load_state_dict(state)
    net.eval()
    return net, config, step


# ------------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``pt train stage2`` (the loop options are the shared ones of every stage)."""
    io = p.add_argument_group("data and run folder")
    io.add_argument("--shards", required=True, help="folder of clip shards with fitted geometry (`pt curate`)")
    io.add_argument("--out", required=True, type=Path, help="run folder (resumed when it holds a checkpoint)")
    io.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                    help="tiny: 64 px, small latent (tests, demo, CPU); paper: 256 px crops (default)")
    m = p.add_argument_group("model and losses")
    m.add_argument("--attention", choices=ATTENTION_MODES, default="dual",
                   help="dual (the paper); single, face_only, lip_only: the ablations")
    m.add_argument("--references", choices=SELECTION_MODES, default="algorithm1",
                   help="reference selection: Algorithm 1 (default) or random ('w/o frame selection')")
    m.add_argument("--perceptual", choices=PERCEPTUAL_MODES, default="auto",
                   help="auto: LPIPS-VGG when the vgg16 weights are present, else 1 - SSIM (the run says which)")
    m.add_argument("--image-size", type=int, help="network resolution (default: the preset's)")
    m.add_argument("--face-model", help="converted face-model .npz the shards were fitted with "
                                        "(default: $PT_FACE_MODEL or the ICT model)")
    m.add_argument("--weights-dir", help="pretrained weights folder (default: $PT_WEIGHTS_DIR)")
    add_loop_arguments(p)


def config_from_args(args: argparse.Namespace) -> tuple[Stage2TrainConfig, TrainLoopConfig]:
    """The task and loop configs that ``pt train stage2`` options describe."""
    overrides: dict[str, Any] = {"attention": args.attention}
    if args.image_size:
        overrides["image_size"] = args.image_size
    cfg, loop = preset_config(args.preset, args.shards, **overrides)
    refs = cfg.data.references
    cfg.data.references = ReferenceConfig(refs.num_face, refs.num_lip, args.references)
    cfg.loss.perceptual = args.perceptual
    cfg.face_model = args.face_model
    return cfg, loop_config_from_args(args, loop, out=args.out)


def run(args: argparse.Namespace) -> int:
    """``pt train stage2``: train, then print where the run is and its last validation; the exit code."""
    try:
        cfg, loop = config_from_args(args)
        task = Stage2Task(cfg, registry=WeightsRegistry(args.weights_dir) if args.weights_dir else None)
        res = train(task, loop)
    except (MissingWeightsError, Stage2DataError, ConfigMismatchError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"stage 2: {res.step} steps in {res.wall_s:.1f} s ({res.samples_per_s:.2f} samples/s, data "
          f"{100 * res.data_time_share:.0f} % of step time) -> {res.out}")
    if res.val:
        print("validation (held-out frames): " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(res.val.items())))
    return 0
