"""Curation speed: frames/s per CPU core per stage and end to end, against the floor and the local loop.

    .venv/bin/python benchmarks/bench_curate.py [--videos DIR] [--repeat 3] [--cpus 2]

All figures come from one invocation on the same videos (each listed ``--repeat`` times under different
names, so Ray's start-up is amortised as on a real corpus):

* floor: the irreducible work alone, decoding (PyAV, constant 25 fps) plus MediaPipe's face mesh on the
  same frames, one process pinned to one core; decord's decoding speed is measured beside PyAV's;
* local: ``curate(engine="local")`` pinned to one core: the single-process reference loop, with its
  per-stage timings from the manifest;
* ray: ``curate(engine="ray")`` with ``--cpus`` CPUs (Ray's start-up measured separately and excluded);
  per-core speed = frames / wall / cpus.

Ratios: end-to-end / floor (goal >= 0.5) and Ray's overhead = 1 - (ray per core / local per core) (goal
< 0.15). Peak memory is the largest resident set of the process (local) and the sum over Ray's worker
processes (sampled). Writes ``benchmarks/results/curate.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = ROOT.parent / "shared" / "data" / "videos"


def _pin_one_core() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import cv2  # noqa: PLC0415

    cv2.setNumThreads(1)


def child_floor(videos: list[str]) -> dict:
    """Decode + face mesh only, and decode alone with PyAV and decord."""
    _pin_one_core()
    from pt_data.decode import iter_frames_at_fps  # noqa: PLC0415
    from pt_data.landmarks import FaceMeshDetector  # noqa: PLC0415

    out = {}
    t, n = time.perf_counter(), 0
    for v in videos:
        for _ in iter_frames_at_fps(v):
            n += 1
    out["pyav_decode_fps"] = n / (time.perf_counter() - t)
    try:
        import decord  # noqa: PLC0415

        t, m = time.perf_counter(), 0
        for v in videos:
            vr = decord.VideoReader(v, ctx=decord.cpu(0), num_threads=1)
            for i in range(len(vr)):
                vr[i].asnumpy()
                m += 1
        out["decord_decode_fps"] = m / (time.perf_counter() - t)
    except ImportError:
        out["decord_decode_fps"] = None
    det = FaceMeshDetector()
    t, n = time.perf_counter(), 0
    for v in videos:
        det.reset()
        for _, rgb in iter_frames_at_fps(v):
            det.detect(rgb)
            n += 1
    out["floor_fps"] = n / (time.perf_counter() - t)
    out["frames"] = n
    return out


def _tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc; Linux)."""
    parent, rss = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/statm") as f:
                rss[int(d)] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = set(), [root]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, pp in parent.items() if pp == p and c not in tree]
    return sum(rss.get(p, 0) for p in tree)


def _sample_rss(root: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _tree_rss(root))
        time.sleep(0.2)


def child_curate(videos_dir: str, out: str, engine: str, cpus: int) -> dict:
    """One curation run; local runs are pinned to one core."""
    from pipelines.config import CurateConfig, EngineConfig  # noqa: PLC0415
    from pipelines.curate import curate  # noqa: PLC0415
    from pipelines.engines import init_ray  # noqa: PLC0415

    res: dict = {}
    peak = [0]
    stop = threading.Event()
    if engine == "local":
        _pin_one_core()
        t = time.perf_counter()
    else:
        eng = EngineConfig(engine="ray", num_cpus=cpus)
        t = time.perf_counter()
        init_ray(eng)
        res["ray_init_s"] = time.perf_counter() - t
        threading.Thread(target=_sample_rss, daemon=True, args=(os.getpid(), stop, peak)).start()
        t = time.perf_counter()
    cfg = CurateConfig(source="folder", input=videos_dir, output=out, progress=False,
                       engine=EngineConfig(engine=engine, num_cpus=cpus))
    rep = curate(cfg)
    res["wall_s"] = time.perf_counter() - t
    stop.set()
    m = rep.manifest
    res.update(frames_decoded=m["timings"]["extract"]["frames"], clips=m["clips"], clip_frames=m["frames"],
               timings=m["timings"])
    res["peak_rss_mb"] = (peak[0] if engine == "ray" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    if engine == "ray":
        import ray  # noqa: PLC0415

        ray.shutdown()
    return res


def _run_child(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                       env={**os.environ, "RAY_AUTH_MODE": "disabled", "GLOG_minloglevel": "2"})
    if r.returncode:
        raise RuntimeError(f"child {args[0]} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(DEFAULT_VIDEOS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "curate.json"))
    ap.add_argument("--child", nargs="*")
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        res = child_floor(rest) if kind == "floor" else child_curate(rest[0], rest[1], kind, int(rest[2]))
        print(json.dumps(res))
        return
    src = sorted(Path(a.videos).glob("*.mp4"))
    with tempfile.TemporaryDirectory() as tmp:
        vids = Path(tmp, "videos")
        vids.mkdir()
        for r in range(a.repeat):
            for v in src:
                (vids / f"{v.stem}_{r}{v.suffix}").symlink_to(v)
        floor = _run_child(["floor", *map(str, src)])
        local = _run_child(["local", str(vids), str(Path(tmp, "local")), "1"])
        ray_ = _run_child(["ray", str(vids), str(Path(tmp, "ray")), str(a.cpus)])
    frames = local["frames_decoded"]
    local_fps = frames / local["wall_s"]
    ray_per_core = ray_["frames_decoded"] / ray_["wall_s"] / a.cpus
    stages = {k: v["frames_per_s_per_core"] for k, v in local["timings"].items()}
    result = {
        "command": f"python benchmarks/bench_curate.py --repeat {a.repeat} --cpus {a.cpus}",
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "videos": len(src) * a.repeat, "frames_decoded": frames, "clips": local["clips"],
        "floor": {"decode_plus_mediapipe_fps_per_core": round(floor["floor_fps"], 1),
                  "pyav_decode_fps_per_core": round(floor["pyav_decode_fps"], 1),
                  "decord_decode_fps_per_core": floor["decord_decode_fps"] and round(floor["decord_decode_fps"], 1)},
        "stages_fps_per_core": stages,
        "local": {"wall_s": round(local["wall_s"], 2), "fps_per_core": round(local_fps, 1),
                  "peak_rss_mb": round(local["peak_rss_mb"])},
        "ray": {"cpus": a.cpus, "init_s": round(ray_["ray_init_s"], 2), "wall_s": round(ray_["wall_s"], 2),
                "fps_per_core": round(ray_per_core, 1), "peak_rss_mb_all_processes": round(ray_["peak_rss_mb"])},
        "ratios": {"end_to_end_over_floor": round(local_fps / floor["floor_fps"], 3),
                   "ray_worker_extract_speed_over_local": round(
                       ray_["timings"]["extract"]["frames_per_s_per_core"]
                       / local["timings"]["extract"]["frames_per_s_per_core"], 3),
                   "ray_end_to_end_over_floor": round(ray_per_core / floor["floor_fps"], 3),
                   "ray_overhead_vs_local_loop": round(1 - ray_per_core / local_fps, 3),
                   "pyav_over_decord_decode": floor["decord_decode_fps"] and round(
                       floor["pyav_decode_fps"] / floor["decord_decode_fps"], 2)},
        "goals": {"end_to_end_over_floor": ">= 0.5", "ray_overhead_vs_local_loop": "< 0.15"},
        "notes": "ray_overhead_vs_local_loop compares end-to-end wall time (Ray started beforehand; actor start-up, "
                 "the light quality/commit stages sharing the cores and the tail included); "
                 "ray_worker_extract_speed_over_local compares the face-mesh workers' own speed, i.e. the "
                 "steady state without start-up and tail.",
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
