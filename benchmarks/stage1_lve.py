"""Does stage 1 learn lip motion from audio on real videos? LVE against an audio-agnostic baseline.

On fitted shards of real talking-head videos (``pt curate --source folder --input ../shared/data/videos``
with the fitting stage), every clip's first 80 % is the training data and its last 20 % the test: the
model predicts the held-out tail's lower face from its audio, with the style taken from the clip's first
80 % (as dubbing takes it from the reference video). Reported per run and as mean +- std over seeds:

* ``lve_mm``: lip vertex error (per frame the largest lip-vertex L2 error, mean over frames);
* ``lve_baseline_mm``: the same for the speaker's mean mouth (template + mean expression of the first
  80 %): what a model that ignores the audio can reach at best with a constant mouth;
* ``mouth_corr``: Pearson correlation of predicted and fitted mouth opening over the held-out frames
  (``mouth_corr_baseline``: the same for the mean mouth, i.e. what speaker differences alone explain;
  ``mouth_corr_clip_mean``: the correlation within each clip, averaged: the lip-sync signal proper);
* style on vs off (the paper's "w/o style embedding" ablation), trained identically.

With the ``tiny`` preset the audio encoder is a randomly initialised tiny HuBERT (no pretrained weights
here): the comparison shows whether the pipeline learns, not the paper's quality. ``--preset paper``
needs ``hubert-base-ls960`` in the weights registry (or ``--random-audio-encoder``).

Usage:
  python benchmarks/stage1_lve.py --shards SHARDS [--steps 600] [--seeds 0,1,2] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from pt_data.audio import frame_energy
from pt_data.face_model_convert import default_face_model
from pt_data.shards import discover_shards, iter_clip_rows
from pt_model.stage1 import canonical_mouth_opening
from pt_model.stage1_data import STAGE1_COLUMNS, check_geometry, clip_from_row
from pt_model.stage1_train import Stage1Task, preset_config, preset_loop_defaults
from pt_model.train_loop import TrainLoopConfig, read_log, train

METRICS = ("lve_mm", "lve_baseline_mm", "vertex_error_mm", "mouth_corr", "mouth_corr_baseline",
           "mouth_corr_clip_mean")


def run_one(shards: str, workdir: Path, *, preset: str, style: bool, seed: int, steps: int, batch_size: int,
            lr: float, random_audio_encoder: bool, holdout: float, dropout: float | None, val_every: int,
            weight_decay: float | None, freeze_audio: str | None = None) -> dict:
    """Train one configuration; return its final validation metrics and the validation curve."""
    cfg = preset_config(preset, shards, use_style=style, random_audio_encoder=random_audio_encoder,
                        audio_freeze=freeze_audio, model={} if dropout is None else {"dropout": dropout},
                        data={"holdout_tail": holdout, "val_max_clips": 10_000})
    task = Stage1Task(cfg)
    out = workdir / f"{'style' if style else 'nostyle'}_seed{seed}"
    loop = TrainLoopConfig(out=out, **{**preset_loop_defaults(preset), "max_steps": steps, "batch_size": batch_size,
                                       "lr": lr, "seed": seed, "val_every": val_every or steps,
                                       "ckpt_every": steps, "log_every": max(1, steps // 20), "progress": False,
                                       **({} if weight_decay is None else {"weight_decay": weight_decay})})
    res = train(task, loop)
    curve = [{"step": int(r["step"]), "lve_mm": round(r["lve_mm"], 3),
              "mouth_corr_clip_mean": round(r["mouth_corr_clip_mean"], 3)} for r in read_log(out / "val.csv")]
    return {"style": style, "seed": seed, "final_loss": res.final_loss, **res.val,
            "samples_per_s": round(res.samples_per_s, 1), "audio_encoder": cfg.audio_encoder, "val_curve": curve}


def energy_reference(shards: str, holdout: float) -> dict:
    """Within-clip Pearson correlation of log audio energy and fitted mouth opening on the held-out tails:
    how strongly the simplest audio feature tracks the fitted mouth in this data (context for the model)."""
    fm = default_face_model()
    corrs = {}
    for path in discover_shards(shards):
        for row in iter_clip_rows(path, columns=list(STAGE1_COLUMNS)):
            clip = clip_from_row(row)
            if clip is None:
                continue
            split = int(np.floor(clip.num_frames * (1 - holdout)))
            energy = np.log(frame_energy(clip.audio, clip.num_frames) + 1e-4)[split:]
            mouth = canonical_mouth_opening(fm, clip.shape, clip.expression)[split:]
            corrs[clip.clip_id] = float(np.corrcoef(energy, mouth)[0, 1]) if len(mouth) > 2 else float("nan")
    return {"per_clip": corrs, "mean": float(np.nanmean(list(corrs.values())))}


def summarize(rows: list[dict]) -> dict:
    """Mean and standard deviation of each metric, per style setting."""
    out = {}
    for style in (True, False):
        sel = [r for r in rows if r["style"] == style]
        if sel:
            out["style_on" if style else "style_off"] = {
                m: {"mean": float(np.nanmean([r[m] for r in sel])), "std": float(np.nanstd([r[m] for r in sel]))}
                for m in METRICS if m in sel[0]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", required=True, help="fitted shards of the real videos")
    ap.add_argument("--preset", choices=["tiny", "paper"], default="tiny")
    ap.add_argument("--random-audio-encoder", action="store_true", help="paper preset without pretrained HuBERT")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--freeze-audio", choices=["none", "feature_extractor", "all"],
                    help="freeze part of the audio encoder (default: the preset's)")
    ap.add_argument("--dropout", type=float, help="dropout of the attention blocks (default: the preset's)")
    ap.add_argument("--weight-decay", type=float, help="AdamW weight decay (default: the preset's)")
    ap.add_argument("--val-every", type=int, default=0, help="also validate every N steps (the curve is recorded; "
                                                              "the reported metrics are always the final step's)")
    ap.add_argument("--holdout", type=float, default=0.2, help="held-out tail of every clip (default 0.2)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--workdir", help="run folders (default: a temporary folder)")
    ap.add_argument("--shards-made-by", default="", help="the command that made --shards (recorded)")
    ap.add_argument("--out", default="benchmarks/results/stage1_lve.json")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    counts = check_geometry(a.shards, default_face_model().model_id)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(a.workdir or tmp)
        for seed in [int(s) for s in a.seeds.split(",")]:
            for style in (True, False):
                r = run_one(a.shards, workdir, preset=a.preset, style=style, seed=seed, steps=a.steps,
                            batch_size=a.batch_size, lr=a.lr, random_audio_encoder=a.random_audio_encoder,
                            holdout=a.holdout, dropout=a.dropout, val_every=a.val_every,
                            weight_decay=a.weight_decay, freeze_audio=a.freeze_audio)
                rows.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "val_curve"}), flush=True)
    res = {"command": " ".join(["python"] + sys.argv), "machine": f"{platform.machine()} {platform.system()}",
           "shards": str(Path(a.shards).resolve()), "shards_made_by": a.shards_made_by, "data": counts,
           "energy_mouth_corr_clip_mean": energy_reference(a.shards, a.holdout), "preset": a.preset,
           "protocol": f"train on the first {1 - a.holdout:.0%} of every clip, validate on the rest; style from "
                       "the first part", "runs": rows, "summary": summarize(rows)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["summary"], indent=2))


if __name__ == "__main__":
    main()
