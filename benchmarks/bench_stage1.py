"""Stage-1 training speed: samples/s, peak memory and the share of step time spent waiting for data.

Runs the real training loop (:func:`pt_model.train_loop.train`) on synthetic shards with geometry
(``tests/stage1_synth.py``) for each batch size, and two references measured in the same run:

* ``compute_only``: forward + backward + optimiser step on one fixed batch already in memory (the loop's
  ceiling); the loop's ``efficiency`` is its samples/s over this one;
* ``data_only``: windows/s of the dataset alone (reading shards, cutting windows, no model).

Steady-state rates skip the first ``--warmup`` steps (allocator, autotuning). On CUDA, batch sizes that do
not fit are recorded as ``"oom"``. The paper preset has no pretrained HuBERT here, so it runs with a
randomly initialised HuBERT-base (same architecture, so the same cost): speed only, no quality claim.

Usage:
  python benchmarks/bench_stage1.py --preset tiny --batch-sizes 4,8,16 --steps 30          # CPU
  python benchmarks/bench_stage1.py --preset paper --batch-sizes 8,16,32,64 --steps 40     # GPU
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stage1_synth import write_synth_shards  # noqa: E402

from pt_data.face_model_convert import default_face_model  # noqa: E402
from pt_model.stage1_train import Stage1Task, preset_config, preset_loop_defaults  # noqa: E402
from pt_model.train_loop import (TrainLoopConfig, make_optimizer, move_to_device, read_log,  # noqa: E402
                                 resolve_device, train)


def steady_rate(log_rows: list[dict[str, float]], warmup: int, batch: int) -> float:
    """Samples/s between step ``warmup`` and the last logged step (log_every must be 1)."""
    rows = [r for r in log_rows if r["step"] >= warmup]
    if len(rows) < 2:
        return float("nan")
    return (rows[-1]["step"] - rows[0]["step"]) * batch / max(rows[-1]["elapsed_s"] - rows[0]["elapsed_s"], 1e-9)


def compute_only(task: Stage1Task, batch_size: int, device: torch.device, steps: int, warmup: int,
                 bf16: bool) -> float:
    """Samples/s of forward + backward + step on one fixed batch in device memory."""
    model = task.build_model().to(device).train()
    opt = make_optimizer(model, TrainLoopConfig(out=Path("."), max_steps=1, batch_size=batch_size, lr=1e-4))
    items = [x for _, x in zip(range(batch_size), task.train_dataset(0))]
    batch = move_to_device({k: torch.as_tensor(np.stack([it[k] for it in items])) for k in items[0]}, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and device.type == "cuda" else None
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        if autocast is not None:
            with autocast:
                loss, _ = task.loss(model, batch, i)
        else:
            loss, _ = task.loss(model, batch, i)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch_size / (time.perf_counter() - t0)


def data_only(task: Stage1Task, n: int) -> float:
    """Windows/s of the training dataset alone."""
    ds = task.train_dataset(0)
    t0 = time.perf_counter()
    count = 0
    while count < n:
        for _ in ds:
            count += 1
            if count >= n:
                break
        ds.set_epoch(ds.epoch + 1)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["tiny", "paper"], default="tiny")
    ap.add_argument("--batch-sizes", default="4,8,16")
    ap.add_argument("--steps", type=int, default=30, help="measured steps per batch size")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads on CPU (0: torch's default)")
    ap.add_argument("--out", default=None, help="JSON result (default benchmarks/results/stage1_<preset>_<dev>.json)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    fm = default_face_model()
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        shards = write_synth_shards(Path(d) / "shards", fm, num_clips=a.clips, num_frames=a.frames, num_speakers=4)
        cfg = preset_config(a.preset, str(shards), random_audio_encoder=(a.preset == "paper"))
        task = Stage1Task(cfg, face_model=fm)
        params = task.build_model().num_parameters()
        data_rate = data_only(task, 400)
        for bs in [int(x) for x in a.batch_sizes.split(",")]:
            row: dict = {"batch_size": bs}
            try:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                out = Path(d) / f"run_bs{bs}"
                loop = TrainLoopConfig(out=out, **{**preset_loop_defaults(a.preset), "max_steps": a.warmup + a.steps,
                                                   "batch_size": bs, "log_every": 1, "val_every": 0, "ckpt_every": 0,
                                                   "num_workers": a.num_workers, "device": str(device),
                                                   "warmup_steps": 0, "progress": False})
                res = train(task, loop)
                rate = steady_rate(read_log(out / "log.csv"), a.warmup, bs)
                ref = compute_only(task, bs, device, a.steps, a.warmup, loop.bf16)
                row.update(samples_per_s=round(rate, 2), compute_only_samples_per_s=round(ref, 2),
                           efficiency=round(rate / ref, 3), data_time_share=round(res.data_time_share, 4),
                           peak_memory_mib=round(res.peak_memory_bytes / 2**20, 1))
            except torch.cuda.OutOfMemoryError:
                row["result"] = "oom"
            results.append(row)
            print(json.dumps(row), flush=True)
    res = {
        "command": " ".join(["python"] + sys.argv),
        "machine": f"{platform.machine()} {platform.system()}, {torch.get_num_threads()} torch threads",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "preset": a.preset, "parameters": params, "audio_encoder": cfg.audio_encoder,
        "note": "speed only: the paper preset runs a randomly initialised HuBERT-base (no pretrained weights here)"
                if a.preset == "paper" else "tiny preset (random tiny HuBERT): smoke-test sizes",
        "window_frames": cfg.data.window, "bf16": device.type == "cuda",
        "peak_memory": "CUDA max allocated" if device.type == "cuda" else "process max RSS (includes Python, torch)",
        "data_only_windows_per_s": round(data_rate, 1), "runs": results,
    }
    out = Path(a.out or f"benchmarks/results/stage1_{a.preset}_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
