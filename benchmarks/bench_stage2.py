"""Dubbing speed: the stage-2 renderer alone and ``pt dub`` end to end, as real-time factors against 25 fps.

* renderer: frames/s of :class:`~pt_model.stage2.Stage2Renderer` at inference (N_f = 5 face references per
  frame, N_l = 25 lip references shared by all frames and encoded once, as :func:`pt_model.dub.dub` runs it),
  for each ``--sizes`` (64: the tiny/demo preset; 256: the paper preset's 256 crops), batch ``--batch``;
* end to end: :func:`pt_model.dub.dub` on the first ``--seconds`` of a real video with new audio, frames/s and
  the time of each step, next to the decode-only speed of the same video measured in the same run (the floor
  every dubbing method pays). Without ``--checkpoint`` the models are tiny and random (speed only: the
  output is marked ``random weights``); with it, the trained runs.

Real-time factor = frames/s / 25 (>= 1: faster than real time).

Usage: .venv/bin/python benchmarks/bench_stage2.py [--sizes 64,256] [--batch 8] [--seconds 2]
       [--video ../shared/data/videos/vrt_face2.mp4] [--audio ../shared/data/audio/vrt_audio1.wav]
       [--checkpoint RUN] [--threads N] [--out benchmarks/results/stage2.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from timing import best_time  # noqa: E402 - benchmarks/ helper

from pt_data.shard_schema import FPS  # noqa: E402
from pt_model.stage2 import Stage2Config, Stage2Renderer, count_parameters  # noqa: E402
from pt_model.stage2_train import PRESETS  # noqa: E402

#: renderer sizes of the presets: 64 px = "tiny" (tests, demo), 256 px = "paper"
PRESET_SIZES = {p["model"]["image_size"]: {k: v for k, v in p["model"].items() if k != "image_size"}
                for p in PRESETS.values()}


def renderer_speed(size: int, batch: int, frames: int, device: torch.device, repeat: int) -> dict:
    """Frames/s of the renderer with pre-encoded references (as in dubbing)."""
    kw = PRESET_SIZES.get(size, PRESET_SIZES[256])
    net = Stage2Renderer(Stage2Config(image_size=size, **kw)).to(device).eval()
    g = torch.Generator().manual_seed(0)
    ref_pncc = torch.rand(frames, 3, size, size, generator=g).to(device)
    ref_tex = torch.rand(frames, 3, size, size, generator=g).to(device)
    tgt = torch.rand(batch, 3, size, size, generator=g).to(device)
    lipm = torch.zeros(batch, 1, size, size, device=device)
    lipm[:, :, size // 2:size // 2 + size // 8, size // 3:2 * size // 3] = 1
    face_idx = torch.randint(0, frames, (batch, 5), generator=g).to(device)
    lip_idx = torch.randint(0, frames, (25,), generator=g).to(device)

    with torch.no_grad():
        geo, tex = net.encode_geometry(ref_pncc), net.encode_texture(ref_tex)
        lip = net.branch_references("lip", geo[lip_idx][None], tex[lip_idx][None])

        def step() -> None:
            face = net.branch_references("face", geo[face_idx], tex[face_idx])
            net.render(tgt, lipm, face, lip)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        step()  # warm-up
        t = best_time(step, repeat)
        t_enc = best_time(lambda: (net.encode_geometry(ref_pncc[:batch]), net.encode_texture(ref_tex[:batch])), repeat)
    fps = batch / t
    return {"image_size": size, "batch": batch, "params_m": round(count_parameters(net) / 1e6, 2),
            "frames_per_s": round(fps, 2), "realtime_factor": round(fps / FPS, 3),
            "reference_encoding_frames_per_s": round(batch / t_enc, 1)}


def decode_speed(video: str, max_frames: int) -> float:
    """Frames/s of decoding the video at 25 fps to RGB (the floor of any dubbing pipeline)."""
    from pt_data.decode import iter_frames_at_fps

    t = time.perf_counter()
    n = sum(1 for _ in iter_frames_at_fps(video, max_frames=max_frames))
    return n / (time.perf_counter() - t)


def end_to_end(video: str, audio: str, seconds: float, checkpoint: str | None, batch: int) -> dict:
    """``dub`` on the first ``seconds`` of ``video`` with as much of ``audio``."""
    import soundfile as sf

    from pt_data.decode import iter_frames_at_fps, read_audio_aligned
    from pt_data.face_model_convert import default_face_model
    from pt_data.video_io import read_audio, write_video
    from pt_model.dub import DubConfig, DubModels, dub
    from pt_model.stage1 import Stage1Model
    from pt_model.stage1_train import preset_config

    n = int(round(seconds * FPS))
    with tempfile.TemporaryDirectory() as d:
        frames = [f for _, f in iter_frames_at_fps(video, max_frames=n)]
        ref = f"{d}/ref.mp4"
        write_video(ref, frames, FPS, read_audio_aligned(video)[:n * 640])
        wav = f"{d}/speech.wav"
        speech = read_audio(audio)[:n * 640]
        sf.write(wav, speech, 16000, subtype="PCM_16")
        models = None
        if checkpoint is None:
            fm = default_face_model()
            torch.manual_seed(0)
            c1 = preset_config("tiny", "")
            models = DubModels(Stage1Model(c1.model, fm), c1.data.context_frames,
                               Stage2Renderer(Stage2Config(image_size=64, **PRESET_SIZES[64])), fm,
                               random_weights=True)
        floor = decode_speed(ref, n)
        rep = dub(ref, wav, f"{d}/out.mp4", checkpoint, DubConfig(progress=False, batch_size=batch), models=models)
    return {"video": video, "audio": audio, "seconds": seconds, "frames": rep.num_frames,
            "size": f"{rep.width}x{rep.height}", "renderer_image_size": rep.image_size,
            "weights": "random weights (speed only)" if rep.random_weights else f"trained: {rep.stage2_run}",
            "frames_per_s": round(rep.frames_per_s, 2), "realtime_factor": round(rep.frames_per_s / FPS, 3),
            "renderer_frames_per_s": round(rep.renderer_frames_per_s, 2),
            "decode_only_frames_per_s": round(floor, 1),
            "ratio_to_decode_only": round(rep.frames_per_s / floor, 4),
            "timings_s": rep.timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ref-frames", type=int, default=50, help="reference frames encoded once")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="end to end: seconds of video dubbed (0: skip)")
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    ap.add_argument("--video", default=str(shared / "videos" / "vrt_face2.mp4"))
    ap.add_argument("--audio", default=str(shared / "audio" / "vrt_audio1.wav"))
    ap.add_argument("--checkpoint", help="trained stage-2 run for the end-to-end part (default: tiny random)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--out", default="benchmarks/results/stage2.json")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    res: dict = {"command": " ".join(["python"] + sys.argv),
                 "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()}, "
                            f"{torch.get_num_threads()} torch threads, device {dev}",
                 "renderer": [renderer_speed(int(s), a.batch, a.ref_frames, dev, a.repeat) for s in a.sizes.split(",")]}
    if a.seconds > 0:
        if Path(a.video).is_file() and Path(a.audio).is_file():
            res["end_to_end"] = end_to_end(a.video, a.audio, a.seconds, a.checkpoint, a.batch)
        else:
            res["end_to_end"] = f"skipped: {a.video} or {a.audio} not found"
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
