"""``pt demo``: run every part that has landed, end to end, on sample clips (or your videos)."""
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


@dataclass
class DemoResult:
    """Where the demo's outputs are."""

    out: str
    inputs: list[str] = field(default_factory=list)
    shards: str | None = None
    contact_sheet: str | None = None
    weights: str | None = None
    notes: list[str] = field(default_factory=list)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run every part that has landed, end to end, on sample clips",
                       description="Make sample talking-head clips (a real face photo, espeak-ng speech, the mouth "
                                   "moving with the speech), write them as clip shards, stream them back through "
                                   "the torch dataset, and draw a contact sheet. Later parts (curation, fitting, "
                                   "training, dubbing, benchmark) join as they land.")
    p.add_argument("--out", default=DemoConfig.out, help="output folder (default: %(default)s)")
    p.add_argument("--videos", help="a folder of talking-head .mp4 files to use as well (probed; curated once "
                                    "`pt curate` has landed)")
    p.add_argument("--num-samples", type=int, default=DemoConfig.num_samples, help="sample clips to make")
    p.add_argument("--speech", choices=("auto", "espeak", "synthetic"), default="auto",
                   help="speech of the sample clips: espeak-ng when installed (auto), or a synthetic signal")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda a: _print(run_demo(DemoConfig(a.out, a.videos, a.num_samples, a.speech, a.seed))))


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
    # 2. shards
    shard_dir = out / "shards"
    with ShardWriter(str(shard_dir / "sample-00000.parquet")) as w:
        for s in tqdm(samples, desc="landmarks + shard", unit="clip"):
            w.write(sample_to_clip(s))
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
    # 5. the weights registry
    reg = WeightsRegistry()
    wpath = out / "weights.json"
    wpath.write_text(json.dumps({s.spec.name: s.present for s in reg.status()}, indent=2) + "\n")
    res.weights = str(wpath)
    missing = [s.spec.name for s in reg.status() if not s.present]
    if missing:
        res.notes.append(f"weights missing under {reg.weights_dir}: {', '.join(missing)} (see `pt weights`)")
    res.notes.append(f"finished in {time.perf_counter() - t0:.1f} s")
    return res


def _print(res: DemoResult) -> int:
    print("\nOutputs:")
    print(f"  sample clips   {Path(res.inputs[0]).parent if res.inputs else '-'}")
    print(f"  clip shards    {res.shards}  (manifest.json beside them)")
    print(f"  contact sheet  {res.contact_sheet}")
    print(f"  weights status {res.weights}")
    for n in res.notes:
        print(f"note: {n}")
    return 0
