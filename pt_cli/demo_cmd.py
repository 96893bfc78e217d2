"""``pt demo``: run every part that has landed, end to end, on sample clips (or your videos).

Steps: sample talking-head clips (a real face photo, speech, a moving mouth) -> 3DMM fit of every clip ->
clip shards with geometry -> the torch dataset and a contact sheet -> tiny stage-1 and stage-2 models trained
on the shards (run folders ``OUT/stage1`` and ``OUT/stage2``, usable by ``pt dub --checkpoint OUT/stage2``) ->
one sample dubbed with another sample's speech (``OUT/dub/``).

The demo models are tiny and briefly trained so that the demo takes a few minutes on two CPU cores: stage 2
runs at 64 x 64 pixels (its output is upsampled to the 256 crop for paste-back, so dubbed faces are blurry)
and learns from three clips of one face. They show that every part runs, not what PersonaTalk can do.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pt_cli.table import format_table
from pt_data.audio import audio_for_frames
from pt_data.dataset import ClipShardDataset
from pt_data.jpeg import decode_frames
from pt_data.landmarks import mouth_opening
from pt_data.sample_clips import make_sample_clip, sample_configs, sample_to_clip
from pt_data.shards import ShardWriter, shard_manifest_entry, write_manifest
from pt_data.video_io import MediaError, probe_video
from pt_data.weights import WeightsRegistry


@dataclass
class DemoConfig:
    """What the demo runs on and where it writes."""

    out: str = "outputs/demo"
    videos: str | None = None  # a folder of talking-head mp4s; None: make sample clips
    num_samples: int = 3
    speech: str = "auto"
    seed: int = 0
    train: bool = True  # fit, train tiny stage 1 and 2, and dub (False: data steps only)
    stage1_steps: int = 150
    stage2_steps: int = 200
    threads: int = 1  # torch intra-op threads: the demo's tiny tensors gain nothing from more, and
    # extra threads fight other processes on a shared machine (10x slower on a loaded 2-core box)


@dataclass
class DemoResult:
    """Where the demo's outputs are."""

    out: str
    inputs: list[str] = field(default_factory=list)
    shards: str | None = None
    contact_sheet: str | None = None
    weights: str | None = None
    stage1_run: str | None = None
    stage2_run: str | None = None
    dubbed: str | None = None
    notes: list[str] = field(default_factory=list)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run every part that has landed, end to end, on sample clips",
                       description="Make sample talking-head clips (a real face photo, espeak-ng speech, the mouth "
                                   "moving with the speech), fit the 3D face model to them, write them as clip "
                                   "shards, stream them back through the torch dataset, draw a contact sheet, train "
                                   "tiny stage-1 and stage-2 models (OUT/stage1, OUT/stage2: 64 px renderer, a few "
                                   "hundred CPU steps, so results are blurry) and dub one sample with another's "
                                   "speech (OUT/dub). `pt dub --checkpoint OUT/stage2` reuses the models.")
    p.add_argument("--out", default=DemoConfig.out, help="output folder (default: %(default)s)")
    p.add_argument("--videos", help="a folder of talking-head .mp4 files to use as well (probed; curated once "
                                    "`pt curate` has landed)")
    p.add_argument("--num-samples", type=int, default=DemoConfig.num_samples, help="sample clips to make")
    p.add_argument("--speech", choices=("auto", "espeak", "synthetic"), default="auto",
                   help="speech of the sample clips: espeak-ng when installed (auto), or a synthetic signal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-train", action="store_true", help="stop after the data steps (no fit, training, dubbing)")
    p.add_argument("--stage1-steps", type=int, default=DemoConfig.stage1_steps, help="tiny stage-1 training steps")
    p.add_argument("--stage2-steps", type=int, default=DemoConfig.stage2_steps, help="tiny stage-2 training steps")
    p.add_argument("--threads", type=int, default=DemoConfig.threads,
                   help="torch threads for training and dubbing (default 1: the tiny models gain nothing from more)")
    p.set_defaults(func=lambda a: _print(run_demo(DemoConfig(a.out, a.videos, a.num_samples, a.speech, a.seed,
                                                             not a.no_train, a.stage1_steps, a.stage2_steps,
                                                             a.threads))))


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run the demo and return where its outputs are."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    res = DemoResult(str(out))
    t0 = time.perf_counter()
    # 1. inputs: sample clips with known crops
    samples = []
    for i, c in enumerate(tqdm(sample_configs(cfg.num_samples, seed=cfg.seed, speech=cfg.speech),
                               desc="sample clips", unit="clip")):
        samples.append(make_sample_clip(out / "samples" / f"sample_{i:02d}.mp4", c))
    res.inputs = [s.path for s in samples]
    # 2. shards (with the 3DMM fit of every clip when the model steps run)
    shard_dir = out / "shards"
    clips = [sample_to_clip(s) for s in tqdm(samples, desc="landmarks", unit="clip")]
    if cfg.train:
        _fit_geometry(clips)
    with ShardWriter(str(shard_dir / "sample-00000.parquet")) as w:
        for c in clips:
            w.write(c)
    info = w.close()
    write_manifest(str(shard_dir), {
        "created_by": "pt demo", "counts": {"clips": info.num_clips, "frames": info.num_frames,
                                            "per_source": {"sample": info.num_clips}},
        "shards": [shard_manifest_entry(info, str(shard_dir))], "rejects": {},
        "config": asdict(cfg)})
    res.shards = str(shard_dir)
    # 3. stream back through the torch dataset and draw a contact sheet
    ds = ClipShardDataset(str(shard_dir), shuffle=False, as_clip=True)
    rows, table = [], []
    for clip in ds:
        idx = np.linspace(0, clip.num_frames - 1, 6).round().astype(int)
        imgs = decode_frames(clip.frames, idx)
        for img, k in zip(imgs, idx):
            for x, y in clip.landmarks[k][::3]:
                cv2.circle(img, (int(x), int(y)), 1, (0, 255, 0), -1)
        rows.append(np.hstack(list(imgs)))
        snippet = audio_for_frames(clip.audio, clip.num_frames // 2, 1)
        opening = mouth_opening(clip.landmarks)
        table.append([clip.clip_id, clip.speaker_id, clip.num_frames, f"{clip.num_frames / 25:.2f}",
                      len(clip.audio), len(snippet), f"{opening.min():.2f}..{opening.max():.2f}"])
    sheet = out / "contact_sheet.png"
    cv2.imwrite(str(sheet), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    res.contact_sheet = str(sheet)
    print(format_table(["clip", "speaker", "frames", "seconds", "audio samples", "samples/frame",
                        "mouth opening"], table))
    # 4. the user's videos: probed until curation lands
    if cfg.videos:
        vrows = []
        for p in sorted(Path(cfg.videos).glob("*.mp4")):
            try:
                v = probe_video(str(p))
                vrows.append([p.name, f"{v.width}x{v.height}", f"{v.fps:.2f}", f"{v.duration_s:.2f}",
                              "yes" if v.has_audio else "no"])
            except MediaError as e:
                vrows.append([p.name, "unreadable", "", "", str(e)[:40]])
        print(format_table(["video", "size", "fps", "seconds", "audio"], vrows))
        res.notes.append("your videos were probed only: `pt curate` (issue #3) will turn them into shards")
    # 5. tiny models and a dub
    if cfg.train and len(samples) >= 2:
        _train_and_dub(cfg, out, shard_dir, samples, res)
    elif cfg.train:
        res.notes.append("training and dubbing need two sample clips (--num-samples 2 or more)")
    # 6. the weights registry
    reg = WeightsRegistry()
    wpath = out / "weights.json"
    wpath.write_text(json.dumps({s.spec.name: s.present for s in reg.status()}, indent=2) + "\n")
    res.weights = str(wpath)
    missing = [s.spec.name for s in reg.status() if not s.present]
    if missing:
        res.notes.append(f"weights missing under {reg.weights_dir}: {', '.join(missing)} (see `pt weights`)")
    res.notes.append(f"finished in {time.perf_counter() - t0:.1f} s")
    return res


def _fit_geometry(clips: list) -> None:
    """Fill the clips' geometry columns with the hybrid 3DMM fit (what curation's fit stage does)."""
    from pt_data.face_model_convert import default_face_model  # noqa: PLC0415 - model code only when training
    from pt_data.fitting import fit_clips  # noqa: PLC0415

    model = default_face_model()
    for clip, fit in zip(clips, fit_clips([c.landmarks for c in clips], model)):
        clip.face_model_id, clip.shape, clip.expression, clip.pose = model.model_id, fit.shape, fit.expression, fit.pose
        clip.fit_landmark_error_px, clip.fit_jitter = fit.landmark_error_px, fit.jitter


def _train_and_dub(cfg: DemoConfig, out: Path, shards: Path, samples: list, res: DemoResult) -> None:
    """Tiny stage-1 and stage-2 runs on the shards, then sample 0 dubbed with sample 1's speech."""
    import torch  # noqa: PLC0415 - model code only when training

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        _train_tiny_models(cfg, out, shards, res)
        _dub_sample(cfg, out, samples, res)
    finally:
        torch.set_num_threads(threads)


def _train_tiny_models(cfg: DemoConfig, out: Path, shards: Path, res: DemoResult) -> None:
    from pt_model import stage1_train, stage2_train  # noqa: PLC0415
    from pt_model.train_loop import TrainLoopConfig, train  # noqa: PLC0415

    s1 = stage1_train.preset_config("tiny", str(shards))
    loop1 = {**stage1_train.preset_loop_defaults("tiny"), "max_steps": cfg.stage1_steps,
             "val_every": cfg.stage1_steps, "ckpt_every": cfg.stage1_steps}
    r1 = train(stage1_train.Stage1Task(s1), TrainLoopConfig(out=out / "stage1", seed=cfg.seed, **loop1))
    s2, loop2 = stage2_train.preset_config("tiny", str(shards))
    loop2.update(max_steps=cfg.stage2_steps, val_every=cfg.stage2_steps, ckpt_every=cfg.stage2_steps)
    r2 = train(stage2_train.Stage2Task(s2), TrainLoopConfig(out=out / "stage2", seed=cfg.seed, **loop2))
    res.stage1_run, res.stage2_run = str(r1.out), str(r2.out)

    def shown(val: dict, prefixes: tuple[str, ...]) -> str:
        return ", ".join(f"{k} {v:.3g}" for k, v in sorted(val.items()) if k.startswith(prefixes))

    print(format_table(["run", "steps", "samples/s", "validation (held-out frames)"],
                       [["stage1", r1.step, f"{r1.samples_per_s:.1f}", shown(r1.val, ("lve", "mouth_corr"))],
                        ["stage2", r2.step, f"{r2.samples_per_s:.1f}", shown(r2.val, ("psnr", "ssim"))]]))


def _dub_sample(cfg: DemoConfig, out: Path, samples: list, res: DemoResult) -> None:
    from pt_model.dub import DubConfig, dub  # noqa: PLC0415

    dubbed = out / "dub" / f"{Path(samples[0].path).stem}_with_{Path(samples[1].path).stem}.mp4"
    rep = dub(samples[0].path, samples[1].path, dubbed, res.stage2_run, DubConfig(seed=cfg.seed))
    res.dubbed = rep.out
    res.notes.append(f"dubbed {rep.num_frames} frames at {rep.frames_per_s:.1f} frames/s "
                     f"({rep.realtime_factor:.2f} x real time) with the tiny demo models")


def _print(res: DemoResult) -> int:
    print("\nOutputs:")
    print(f"  sample clips   {Path(res.inputs[0]).parent if res.inputs else '-'}")
    print(f"  clip shards    {res.shards}  (manifest.json beside them)")
    print(f"  contact sheet  {res.contact_sheet}")
    print(f"  weights status {res.weights}")
    if res.stage2_run:
        print(f"  tiny models    {res.stage1_run}, {res.stage2_run}  (pt dub --checkpoint {res.stage2_run})")
        print(f"  dubbed sample  {res.dubbed}")
    for n in res.notes:
        print(f"note: {n}")
    return 0
