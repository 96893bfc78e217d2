"""Fit the real talking-head videos of the shared data and report how well the fit follows them.

For every video: the hybrid fit of each face track (``pt_data.fit_video``), the mean landmark error (px at
256) and jitter (mm/frame^2), and the correlation over frames between the mouth opening measured on
MediaPipe's points and the mouth opening of the fitted canonical mesh (the model's lip vertices seen from
the front, no pose): near 1 when the fitted mouth opens and closes with the speaker. A contact sheet shows,
per video, three moments: the crop beside the crop with the fitted PNCC blended on it.

    python benchmarks/fit_realdata.py [--videos ../shared/data/videos] [--out reports]

Writes reports/fit_realdata.md, reports/fit_contact_sheet.png and benchmarks/results/fit_realdata.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from pt_data.face_model_convert import default_face_model, shared_data_dir
from pt_data.fit_video import extract_and_fit, overlay_frames
from pt_data.landmarks import mouth_opening

ROOT = Path(__file__).resolve().parents[1]


def fitted_mouth_opening(model, clip) -> np.ndarray:
    """Mouth opening of the fitted canonical mesh at MediaPipe's lip points, seen from the front."""
    verts = model.vertices(clip.shape, clip.expression)[:, model.mediapipe_ids, :2]
    return mouth_opening(verts * np.array([1.0, -1.0], np.float32))  # y up -> image rows down


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = shared_data_dir()
    ap.add_argument("--videos", default=str(shared / "videos") if shared else None)
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not args.videos or not os.path.isdir(args.videos):
        raise SystemExit("no videos folder (pass --videos or set PT_SHARED_DATA)")
    torch.set_num_threads(args.threads)
    model = default_face_model()
    rows, sheet = [], []
    for video in sorted(Path(args.videos).glob("*.mp4")):
        fits = extract_and_fit(video, model)
        for f in fits:
            c = f.clip
            corr = float(np.corrcoef(mouth_opening(c.landmarks), fitted_mouth_opening(model, c))[0, 1])
            rows.append({"video": video.name, "clip": c.clip_id, "frames": c.num_frames,
                         "landmark_error_px": f.landmark_error_px, "jitter_mm_per_frame2": f.jitter,
                         "mouth_opening_corr": corr})
            print(rows[-1], flush=True)
        ov = overlay_frames(model, fits[0].clip)
        picks = np.linspace(0, len(ov) - 1, 3).round().astype(int)
        sheet.append(np.concatenate([ov[i] for i in picks], 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    img = np.concatenate(sheet, 0)
    img = cv2.resize(img, (img.shape[1] * 3 // 4, img.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(out / "fit_contact_sheet.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    command = "python benchmarks/fit_realdata.py " + " ".join(sys.argv[1:])
    lines = ["# Hybrid 3DMM fit on real talking-head videos", "",
             f"Command: `{command}` (face model `{model.model_id}`, default FitConfig).", "",
             "Contact sheet: `fit_contact_sheet.png` (per video, three moments: crop | fitted PNCC blended on it).",
             "", "| video | clip | frames | landmark error (px @256) | jitter (mm/frame^2) | mouth-opening corr. |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['video']} | {r['clip']} | {r['frames']} | {r['landmark_error_px']:.2f} | "
                     f"{r['jitter_mm_per_frame2']:.3f} | {r['mouth_opening_corr']:.3f} |")
    lines += ["", "Landmark error: mean distance of the projected corresponding vertices to MediaPipe's points "
              "(weight-1 points, i.e. without the face-oval silhouette). Mouth-opening correlation: Pearson "
              "correlation over frames between MediaPipe's inner-lip gap / mouth width and the same ratio on the "
              "fitted canonical mesh.", ""]
    (out / "fit_realdata.md").write_text("\n".join(lines))
    (ROOT / "benchmarks/results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks/results/fit_realdata.json").write_text(
        json.dumps({"command": command, "face_model": model.model_id, "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
