"""PNCC rendering speed, with a ratio against a reference measured in the same run.

* frames/s of ``PNCCRenderer.render`` for a batch of frames of the default face model (ICT-FaceKit light
  face, 9409 vertices, 18461 triangles) at 256x256, at several head poses, on the chosen device;
* the same rasteriser against the brute-force numpy reference of ``tests/test_render.py`` (every pixel
  against every triangle) on a small mesh (the tests' hemisphere, 64x64), as a speed-up factor.

Usage: .venv/bin/python benchmarks/bench_render.py [--batch 16] [--size 256] [--device cpu] [--threads 1]
       [--repeat 3] [--out benchmarks/results/render.json]
Needs the default face model (``../shared/data`` or ``$PT_FACE_MODEL``); it says so when it is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from timing import best_time  # noqa: E402 - benchmarks/ helper

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_render import reference_rasterize, tiny_face_model  # noqa: E402

from pt_data.camera import project_vertices  # noqa: E402
from pt_data.face_model_convert import default_face_model  # noqa: E402
from pt_data.render import PNCCRenderer, interpolate, rasterize  # noqa: E402


def _poses(batch: int) -> torch.Tensor:
    """Yaw from -0.6 to 0.6 rad with some pitch and roll, the face filling most of the crop."""
    pose = torch.zeros(batch, 6)
    pose[:, 1] = torch.linspace(-0.6, 0.6, batch)
    pose[:, 0] = 0.15 * torch.sin(torch.arange(batch, dtype=torch.float32))
    pose[:, 2] = 0.1 * torch.cos(torch.arange(batch, dtype=torch.float32))
    pose[:, 5] = -1200.0
    return pose


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/render.json")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    # ---- the default model, a batch of frames
    model = default_face_model()
    renderer = PNCCRenderer(model, size=a.size, device=dev)
    shape = torch.zeros(a.batch, model.num_shape, device=dev)
    expr = torch.zeros(a.batch, model.num_expression, device=dev)
    pose = _poses(a.batch).to(dev)

    def render_batch() -> None:
        renderer.render(shape, expr, pose)
        sync()

    render_batch()  # warm-up
    t_batch = best_time(render_batch, a.repeat)
    out = renderer.render(shape, expr, pose)
    coverage = float(out.mask.mean())

    # ---- a small mesh: ours vs the brute-force reference (one frame, 64x64)
    tiny = tiny_face_model()
    small = 64
    tp = torch.tensor([[0.2, -0.3, 0.1, 0.0, 0.0, -900.0]])
    uv, depth = project_vertices(torch.as_tensor(tiny.mean)[None], tp, focal=renderer.focal * small / a.size,
                                 center=small / 2)
    colours = torch.as_tensor(tiny.canonical_colors())
    tris = torch.as_tensor(tiny.triangles, dtype=torch.int64)

    def ours_small() -> None:
        interpolate(rasterize(uv, depth, tris, small, small), colours)

    def reference_small() -> None:
        ref = reference_rasterize(uv[0].numpy(), depth[0].numpy(), tiny.triangles, small, small)
        np.einsum("hwk,hwkc->hwc", ref.bary, tiny.canonical_colors()[tiny.triangles[np.maximum(ref.face, 0)]])

    ours_small()
    t_ours_small = best_time(ours_small, a.repeat)
    t_ref_small = best_time(reference_small, a.repeat)

    res = {
        "command": " ".join(["python"] + sys.argv),
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()}, "
                   f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "torch_threads": torch.get_num_threads(),
        "face_model": model.model_id, "vertices": model.num_vertices, "triangles": int(model.triangles.shape[0]),
        "batch": a.batch, "size": a.size, "face_coverage": round(coverage, 3),
        "batch_seconds": round(t_batch, 4), "frames_per_s": round(a.batch / t_batch, 1),
        "small_mesh": {"vertices": tiny.num_vertices, "triangles": int(tiny.triangles.shape[0]), "size": small,
                       "ours_ms": round(t_ours_small * 1e3, 2), "brute_force_ms": round(t_ref_small * 1e3, 2),
                       "speedup_vs_brute_force": round(t_ref_small / t_ours_small, 1)},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
