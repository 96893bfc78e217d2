"""Does stage 1 learn lip motion from audio on real videos? LVE against audio-agnostic and linear baselines.

On fitted shards of real talking-head videos (``pt curate --source folder --input ../shared/data/videos``
with the fitting stage), every clip's first 80 % is the training data and its last 20 % the test: the
model predicts the held-out tail's lower face from its audio, with the style taken from the clip's first
80 % (as dubbing takes it from the reference video). No held-out frame is seen in training, not even as a
style frame. Reported per run and as mean +- std over seeds, for each ``--audio-encoder``:

* ``lve_mm``: lip vertex error (per frame the largest lip-vertex L2 error, mean over frames);
* ``lve_baseline_mm``: the same for the speaker's mean mouth (template + mean expression of the first
  80 %): what a model that ignores the audio can reach with a constant mouth;
* ``lve_shifted_audio_mm``: the trained model on the held-out frames with their audio rotated by half the
  clip tail (same sound, out of sync): how much of the gain comes from the audio being in sync;
* ``mouth_corr``: Pearson correlation of predicted and fitted mouth opening over the held-out frames
  (``mouth_corr_baseline``: the same for the mean mouth, i.e. what speaker differences alone explain;
  ``mouth_corr_clip_mean``: the correlation within each clip, averaged: the lip-sync signal proper);
* style on vs off (the paper's "w/o style embedding" ablation), trained identically.

Two linear references (deterministic, no seeds): ridge regressions from per-frame audio features (log
RMS energy, or the model's own 80-band log-mel with 4 spectrogram frames per video frame), with +-k
frames of context, to the expression offsets from the speaker's mean, fitted on the training frames; k
and the ridge weight are chosen on an inner split (the last quarter of the training part), never on the
test frames.

``--split dev`` runs the same on an inner split (train on the first 60 % of every clip, validate on
60-80 %) without touching the final 20 %: the split settings are chosen on.

The ``tiny`` preset's default audio encoder is the log-mel conv encoder (no pretrained weights);
``--audio-encoder hubert`` is the randomly initialised tiny HuBERT (no pretrained weights exist here
either). ``--preset paper`` needs ``hubert-base-ls960`` in the weights registry (or
``--random-audio-encoder``).

Usage:
  python benchmarks/stage1_lve.py --shards SHARDS [--audio-encoder mel,hubert] [--steps 300] [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pt_data.audio import frame_energy, pcm16_to_float
from pt_data.face_model import FaceModel
from pt_data.face_model_convert import default_face_model
from pt_data.shards import discover_shards, iter_clip_rows
from pt_model.audio_encoder import LogMelSpectrogram, MelEncoderConfig
from pt_model.stage1 import Stage1ModelConfig, canonical_mouth_opening, vertex_sets
from pt_model.stage1_data import (STAGE1_COLUMNS, GeometryClip, ValidationClip, check_geometry, clip_from_row,
                                  kept_frames)
from pt_model.stage1_train import Stage1Task, evaluate_stage1, load_stage1, preset_config, preset_loop_defaults
from pt_model.train_loop import TrainLoopConfig, read_log, train

METRICS = ("lve_mm", "lve_baseline_mm", "lve_shifted_audio_mm", "vertex_error_mm", "mouth_corr",
           "mouth_corr_baseline", "mouth_corr_clip_mean")
#: The inner split of the ``dev`` protocol: the first 80 % of every clip, its last quarter validated.
DEV_SPLIT = {"clip_fraction": 0.8, "holdout_tail": 0.25}
RIDGE_CONTEXT = (0, 1, 2, 3)
RIDGE_LAMBDA = (1.0, 10.0, 100.0, 1e3, 3e3, 1e4)


# ------------------------------------------------------------------------------------------- the model
def shifted_audio(clips: list[ValidationClip]) -> list[ValidationClip]:
    """The clips with their audio rotated by half its length (same sound, out of sync with the frames)."""
    return [replace(vc, item={**vc.item, "audio": np.roll(vc.item["audio"], len(vc.item["audio"]) // 2)})
            for vc in clips]


def run_one(shards: str, workdir: Path, *, preset: str, audio_encoder: str, style: bool, seed: int, steps: int,
            split: dict[str, float], loop_overrides: dict[str, Any], val_every: int,
            model: dict[str, Any] | None = None, random_audio_encoder: bool = False) -> dict:
    """Train one configuration; return its final validation metrics, the shifted-audio control and the curve."""
    cfg = preset_config(preset, shards, use_style=style, random_audio_encoder=random_audio_encoder,
                        audio_encoder=audio_encoder, model=model, data={**split, "val_max_clips": 10_000})
    task = Stage1Task(cfg)
    out = workdir / f"{audio_encoder}_{'style' if style else 'nostyle'}_seed{seed}"
    loop = TrainLoopConfig(out=out, **{**preset_loop_defaults(preset, audio_encoder), "max_steps": steps,
                                       "seed": seed, "val_every": val_every or steps, "ckpt_every": steps,
                                       "log_every": max(1, steps // 20), "progress": False, **loop_overrides})
    res = train(task, loop)
    net, _ = load_stage1(out, face_model=task.face_model)
    clips, ctx = task.validation_clips(), cfg.data.context_frames
    shifted = evaluate_stage1(net, shifted_audio(clips), ctx)
    per_clip = {}
    for vc in clips:
        m, sh = evaluate_stage1(net, [vc], ctx), evaluate_stage1(net, shifted_audio([vc]), ctx)
        per_clip[vc.clip_id] = {"lve_mm": round(m["lve_mm"], 3), "lve_baseline_mm": round(m["lve_baseline_mm"], 3),
                                "lve_shifted_audio_mm": round(sh["lve_mm"], 3),
                                "mouth_corr": round(m["mouth_corr_clip_mean"], 3), "frames": int(m["num_frames"])}
    curve = [{"step": int(r["step"]), "lve_mm": round(r["lve_mm"], 3),
              "mouth_corr_clip_mean": round(r["mouth_corr_clip_mean"], 3)} for r in read_log(out / "val.csv")]
    train_lve = read_log(out / "log.csv")[-1]["lve_mm"]
    return {"audio_encoder": audio_encoder, "style": style, "seed": seed, "final_loss": res.final_loss,
            "train_lve_mm_last_batch": train_lve, **res.val, "lve_shifted_audio_mm": shifted["lve_mm"],
            "samples_per_s": round(res.samples_per_s, 1), "audio_encoder_note": cfg.audio_encoder,
            "per_clip": per_clip, "val_curve": curve}


# -------------------------------------------------------------------------------------- linear baselines
def _context(x: np.ndarray, k: int) -> np.ndarray:
    """Per-frame features stacked with +-k neighbours (edge frames repeated): (T, (2k + 1) F)."""
    pad = np.pad(x, ((k, k), (0, 0)), mode="edge")
    return np.concatenate([pad[i:i + len(x)] for i in range(2 * k + 1)], 1)


def audio_features(clip: GeometryClip, kind: str, logmel: LogMelSpectrogram) -> np.ndarray:
    """(T, F) per-frame features: ``energy`` (log RMS) or ``mel`` (the 4 log-mel frames of each video frame)."""
    t = clip.num_frames
    if kind == "energy":
        return np.log(frame_energy(clip.audio, t) + 1e-4)[:, None]
    with torch.no_grad():
        mel = logmel(torch.from_numpy(pcm16_to_float(clip.audio))[None])[0]  # (80, N // 160)
    if mel.shape[1] < 4 * t:  # audio shorter than the frames: repeat the last spectrogram frame
        mel = torch.cat([mel, mel[:, -1:].expand(-1, 4 * t - mel.shape[1])], 1)
    mel = mel[:, :4 * t]
    return mel.T.reshape(t, -1).double().numpy()


def _ridge_lve(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], lam: float, basis: np.ndarray,
               lip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit one ridge on the training rows of all clips, predict their test rows: per-frame LVE (ridge, mean
    mouth). ``parts`` holds (train features, train expressions, test features, test expressions) per clip;
    the target is the offset from the clip's mean training expression (the speaker's mean mouth)."""
    x_all = np.concatenate([x for x, _, _, _ in parts])
    mu, sd = x_all.mean(0), x_all.std(0) + 1e-6
    z = (x_all - mu) / sd
    y = np.concatenate([e - e.mean(0) for _, e, _, _ in parts])
    w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ y)
    lve, base = [], []
    for _, e_tr, x_te, e_te in parts:
        mean = e_tr.mean(0)
        for p, out in ((mean + ((x_te - mu) / sd) @ w, lve), (np.broadcast_to(mean, e_te.shape), base)):
            diff = np.tensordot(p - e_te, basis, 1)[:, lip]  # (T, L, 3) mm
            out.append(np.linalg.norm(diff, axis=-1).max(-1))
    return np.concatenate(lve), np.concatenate(base)


def ridge_baselines(shards: str, split: dict[str, float], model_cfg: Stage1ModelConfig,
                    face_model: FaceModel) -> dict[str, Any]:
    """Ridge regressions from energy / log-mel features to expression offsets (see the module docstring).

    Context frames are real neighbouring audio (as the model's audio context), also across a split."""
    sets = vertex_sets(face_model, model_cfg)
    basis = face_model.exp_basis[:, sets.decoder].astype(np.float64)  # (E, Ld, 3)
    lip = sets.lip_in_decoder
    logmel = LogMelSpectrogram(MelEncoderConfig())
    clips = [c for p in discover_shards(shards) for r in iter_clip_rows(p, columns=list(STAGE1_COLUMNS))
             if (c := clip_from_row(r)) is not None]
    bounds = []
    for c in clips:
        end = kept_frames(c.num_frames, split.get("clip_fraction", 1.0))
        s = int(np.floor(end * (1 - split["holdout_tail"])))
        bounds.append((int(np.floor(s * 0.75)), s, end))  # inner split of the training part: choose k, lambda
    out: dict[str, Any] = {}
    for kind in ("energy", "mel"):
        feats = [audio_features(c, kind, logmel) for c in clips]
        scores, outer = {}, {}
        for k in RIDGE_CONTEXT:
            xs = [_context(f, k) for f in feats]
            es = [c.expression.astype(np.float64) for c in clips]
            inner = [(x[:si], e[:si], x[si:s], e[si:s]) for x, e, (si, s, _) in zip(xs, es, bounds)]
            outer[k] = [(x[:s], e[:s], x[s:end], e[s:end]) for x, e, (_, s, end) in zip(xs, es, bounds)]
            for lam in RIDGE_LAMBDA:
                scores[(k, lam)] = float(_ridge_lve(inner, lam, basis, lip)[0].mean())
        k, lam = min(scores, key=scores.get)
        lve, base = _ridge_lve(outer[k], lam, basis, lip)
        out[f"{kind}_ridge"] = {"lve_mm": float(lve.mean()), "lve_baseline_mm": float(base.mean()),
                                "context_frames": k, "ridge_lambda": lam, "inner_lve_mm": scores[(k, lam)]}
    return out


def energy_reference(shards: str, split: dict[str, float], face_model: FaceModel) -> dict:
    """Within-clip Pearson correlation of log audio energy and fitted mouth opening on the held-out tails:
    how strongly the simplest audio feature tracks the fitted mouth in this data (context for the model)."""
    corrs = {}
    for path in discover_shards(shards):
        for row in iter_clip_rows(path, columns=list(STAGE1_COLUMNS)):
            clip = clip_from_row(row)
            if clip is None:
                continue
            end = kept_frames(clip.num_frames, split.get("clip_fraction", 1.0))
            s = int(np.floor(end * (1 - split["holdout_tail"])))
            energy = np.log(frame_energy(clip.audio, clip.num_frames) + 1e-4)[s:end]
            mouth = canonical_mouth_opening(face_model, clip.shape, clip.expression)[s:end]
            corrs[clip.clip_id] = float(np.corrcoef(energy, mouth)[0, 1]) if len(mouth) > 2 else float("nan")
    return {"per_clip": corrs, "mean": float(np.nanmean(list(corrs.values())))}


def summarize(rows: list[dict]) -> dict:
    """Mean and standard deviation of each metric, per audio encoder and style setting."""
    out: dict[str, dict] = {}
    for enc in dict.fromkeys(r["audio_encoder"] for r in rows):
        for style in (True, False):
            sel = [r for r in rows if r["audio_encoder"] == enc and r["style"] == style]
            if sel:
                out.setdefault(enc, {})["style_on" if style else "style_off"] = {
                    m: {"mean": float(np.nanmean([r[m] for r in sel])), "std": float(np.nanstd([r[m] for r in sel]))}
                    for m in METRICS if m in sel[0]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", required=True, help="fitted shards of the real videos")
    ap.add_argument("--preset", choices=["tiny", "paper"], default="tiny")
    ap.add_argument("--audio-encoder", default="mel",
                    help="comma-separated audio encoders to compare: mel (log-mel conv) and/or hubert")
    ap.add_argument("--random-audio-encoder", action="store_true", help="paper preset without pretrained HuBERT")
    ap.add_argument("--split", choices=["test", "dev"], default="test",
                    help="test: train on the first 80 %% of every clip, test on the rest; dev: the inner split "
                         "(60 %% / 60-80 %%) for choosing settings")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, help="default: the preset's")
    ap.add_argument("--lr", type=float, help="default: the preset's")
    ap.add_argument("--weight-decay", type=float, help="AdamW weight decay (default: the preset's)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--no-style-off", action="store_true", help="skip the style-off ablation runs")
    ap.add_argument("--val-every", type=int, default=0, help="also validate every N steps (the curve is recorded; "
                                                              "the reported metrics are always the final step's)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--workdir", help="run folders (default: a temporary folder)")
    ap.add_argument("--shards-made-by", default="", help="the command that made --shards (recorded)")
    ap.add_argument("--out", default="benchmarks/results/stage1_lve.json")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    fm = default_face_model()
    counts = check_geometry(a.shards, fm.model_id)
    split = dict(DEV_SPLIT) if a.split == "dev" else {"holdout_tail": 0.2}
    loop = {k: v for k, v in (("batch_size", a.batch_size), ("lr", a.lr), ("weight_decay", a.weight_decay))
            if v is not None}
    encoders = [e.strip() for e in a.audio_encoder.split(",") if e.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(a.workdir or tmp)
        for enc in encoders:
            for seed in [int(s) for s in a.seeds.split(",")]:
                for style in ((True,) if a.no_style_off else (True, False)):
                    r = run_one(a.shards, workdir, preset=a.preset, audio_encoder=enc, style=style, seed=seed,
                                steps=a.steps, split=split, loop_overrides=loop, val_every=a.val_every,
                                random_audio_encoder=a.random_audio_encoder)
                    rows.append(r)
                    print(json.dumps({k: v for k, v in r.items() if k not in ("val_curve", "per_clip")}), flush=True)
    model_cfg = preset_config(a.preset, a.shards, audio_encoder=encoders[0]).model
    res = {"command": " ".join(["python"] + sys.argv), "machine": f"{platform.machine()} {platform.system()}",
           "torch_threads": torch.get_num_threads(),
           "shards": str(Path(a.shards).resolve()), "shards_made_by": a.shards_made_by, "data": counts,
           "preset": a.preset, "split": a.split,
           "protocol": ("train on the first 80% of every clip, validate on the rest; style from the first part"
                        if a.split == "test" else "inner split: train on the first 60% of every clip, validate on "
                        "60-80%; the last 20% is not read"),
           "energy_mouth_corr_clip_mean": energy_reference(a.shards, split, fm),
           "linear_baselines": ridge_baselines(a.shards, split, model_cfg, fm),
           "runs": rows, "summary": summarize(rows)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({"summary": res["summary"], "linear_baselines": res["linear_baselines"]}, indent=2))


if __name__ == "__main__":
    main()
