"""Evidence that stage 2 learns: self-reconstruction of held-out frames of real videos.

Each video is prepared exactly as ``pt dub`` prepares a reference (MediaPipe face mesh, the curation's
smoothed 256 crops, the hybrid 3DMM fit of the whole clip: :func:`pt_model.dub.prepare_reference`) and
written as one clip with geometry. The renderer trains on the first 80 % of every clip (targets and
references from that part only); the last 20 % are held out. Validation renders each held-out frame from its
own fitted geometry with references from the training part chosen as at inference (the N_f training frames
nearest in time, N_l = 25 lip references spread over mouth openings), and compares PSNR / SSIM with two
baselines on the same frames: copying the nearest reference frame in time (``copy_time``), and copying the
training frame whose rendered geometry (PNCC) is closest to the target's (``copy_geom``, an oracle-like
baseline that uses the target's geometry too). Each attention mode of ``--attention`` (the paper's dual
attention and the single-attention ablation by default) trains with the same data, seed and steps;
validation runs every ``--steps / 4`` steps (the curve shows when a small training set starts to overfit),
and the final model is scored per video.

Usage: .venv/bin/python benchmarks/stage2_selfrecon.py [--videos A.mp4,B.mp4] [--size 64] [--steps 2000]
       [--attention dual,single] [--out benchmarks/results/stage2_selfrecon.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pt_data.audio import audio_for_frames
from pt_data.clip import Clip
from pt_data.decode import read_audio_aligned
from pt_data.face_model_convert import default_face_model
from pt_data.jpeg import encode_jpeg
from pt_data.shards import write_shard
from pt_model.dub import DubConfig, prepare_reference
from pt_model.stage2 import Stage2Config
from pt_model.stage2_data import Stage2DataConfig
from pt_model.stage2_train import Stage2LossConfig, Stage2Task, Stage2TrainConfig, frame_scores, load_stage2
from pt_model.train_loop import TrainLoopConfig, read_log, train


def video_shard(videos: list[str], out: Path) -> dict[str, dict]:
    """Track, crop and fit each video (as ``pt dub`` does) and write them as clips of one shard under ``out``."""
    fm = default_face_model()
    clips, info = [], {}
    for video in videos:
        ref = prepare_reference(video, fm, DubConfig(progress=False))
        t = len(ref.frames)
        audio = audio_for_frames(read_audio_aligned(video), 0, t)
        clips.append(Clip(clip_id=Path(video).stem, dataset="folder", speaker_id=Path(video).stem, source_uri=video,
                          start_s=0.0, end_s=t / 25, frames=[encode_jpeg(c) for c in ref.crops], audio=audio,
                          crop_affine=ref.affines, landmarks=ref.landmarks, face_model_id=fm.model_id,
                          shape=ref.fit.shape, expression=ref.fit.expression, pose=ref.fit.pose,
                          fit_landmark_error_px=ref.fit.landmark_error_px, fit_jitter=ref.fit.jitter))
        info[Path(video).stem] = {"frames": t, "fit_landmark_error_px": round(float(ref.fit.landmark_error_px), 3),
                                  "frames_without_face": ref.frames_without_face}
    write_shard(str(out / "clips.parquet"), clips)
    return info


def per_video_scores(task: Stage2Task, run: Path) -> dict[str, dict[str, float]]:
    """PSNR / SSIM of the final model and of the copy baselines on each video's held-out frames."""
    net, _, _ = load_stage2(run)
    out = {}
    for vc in task.validation_clips():
        scores: dict[str, list[float]] = {}
        samples = vc.samples()
        for s in range(0, len(samples), 8):
            b = {k: torch.stack([x[k] for x in samples[s:s + 8]]) for k in samples[0]}
            with torch.no_grad():
                pred = net(b["target_pncc"], b["target_lip_mask"], b["face_pncc"], b["face_frames"], b["lip_pncc"],
                           b["lip_frames"])
            for k, v in frame_scores(pred, b["target"], b["target_lip_mask"], net.config, None).items():
                scores.setdefault(k, []).extend(v)
        tgt = vc.frames[vc.targets]
        for name, idx in (("copy_time", vc.nearest_in_time()), ("copy_geom", vc.nearest_in_geometry())):
            for k, v in frame_scores(vc.frames[idx], tgt, vc.lip_mask[vc.targets], net.config, None).items():
                scores[f"{k}_{name}"] = v
        out[vc.clip_id] = {"held_out_frames": len(vc.targets), **{k: round(float(np.mean(v)), 4)
                                                                    for k, v in scores.items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    ap.add_argument("--videos", default=",".join(str(p) for p in sorted((shared / "videos").glob("*.mp4"))),
                    help="comma-separated videos (default: every video of the shared data)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--attention", default="dual,single")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--out", default="benchmarks/results/stage2_selfrecon.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.runs or tmp)
        shards = root / "shards"
        t0 = time.perf_counter()
        videos = [v for v in a.videos.split(",") if v]
        prep = video_shard(videos, shards)
        res: dict = {"command": " ".join(["python"] + sys.argv), "machine": f"{platform.machine()} {platform.system()}, "
                     f"{torch.get_num_threads()} torch threads (shared, loaded machine)", "videos": prep,
                     "prepare_s": round(time.perf_counter() - t0, 1),
                     "protocol": "train on frames [0, 0.8 T) of every video, reconstruct frames [0.8 T, T) from their "
                                 "fitted geometry; references from the training part (N_f = 5 nearest in time, "
                                 "N_l = 25 by mouth opening); metrics on the 64 px crops",
                     "runs": {}}
        for mode in a.attention.split(","):
            cfg = Stage2TrainConfig(
                model=Stage2Config(image_size=a.size, channels=a.channels, heads=4, attention=mode,
                                   decoder_res_blocks=1),
                data=Stage2DataConfig(shards=str(shards), image_size=a.size, samples_per_clip=8, val_fraction=0.2,
                                      val_clips=len(videos), val_frames_per_clip=1000, val_num_lip=25),
                loss=Stage2LossConfig(perceptual="auto"))
            loop = TrainLoopConfig(out=root / f"stage2_{mode}", max_steps=a.steps, batch_size=a.batch, lr=a.lr,
                                   warmup_steps=50, log_every=50, val_every=max(a.steps // 4, 1),
                                   ckpt_every=a.steps, progress=False, resume=False)
            task = Stage2Task(cfg)
            t = time.perf_counter()
            r = train(task, loop)
            val = {k: round(v, 4) for k, v in r.val.items()}
            curve = [{k: round(v, 4) for k, v in row.items() if k in ("step", "psnr", "ssim", "psnr_mouth")}
                     for row in read_log(root / f"stage2_{mode}" / "val.csv")]
            res["runs"][mode] = {"final_all_videos": val, "val_curve": curve, "per_video": per_video_scores(task, r.out),
                                 "train_s": round(time.perf_counter() - t, 1), "steps": r.step,
                                 "perceptual_loss": task.perceptual,
                                 "beats_copy_time": bool(val["psnr"] > val["psnr_copy_time"] and
                                                         val["ssim"] > val["ssim_copy_time"]),
                                 "beats_copy_geom": bool(val["psnr"] > val["psnr_copy_geom"] and
                                                         val["ssim"] > val["ssim_copy_geom"])}
            print(mode, json.dumps(res["runs"][mode]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
