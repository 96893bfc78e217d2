"""``pt fit``: hybrid 3DMM fit of a video (coefficients per clip + an overlay video)."""
from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Fit the morphable face model to every face track of VIDEO.

The video is resampled to 25 fps, faces are tracked with MediaPipe and cropped to 256x256 (the curation
blocks), then each clip is fitted: a closed-form initialisation from MediaPipe's 478 points (pose by an
affine-camera Procrustes, identity and expressions by regularised least squares) and one batched
optimisation over all frames of all clips (landmark reprojection + the temporal term of PersonaTalk's
eq. 1 + the regulariser of eq. 2).

Writes into --out: VIDEO_fit.npz (per clip: shape, expression, pose, landmarks, crop transforms),
VIDEO_fit.json (model id, camera convention, per-clip landmark error and jitter) and VIDEO_overlay.mp4
(the crop beside the crop with the fitted mesh's PNCC blended on it, with the clip audio)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="hybrid 3DMM fitting of a video (coefficients + overlay video)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", help="input video (any format ffmpeg reads)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--face-model", help="converted face model .npz (default: $PT_FACE_MODEL or the ICT-FaceKit "
                                        "light face, converted on first use)")
    p.add_argument("--iterations", type=int, default=100, help="optimiser steps (default 100; 0 = init only)")
    p.add_argument("--no-temporal", action="store_true", help="drop eq. (1)'s temporal terms (ablation)")
    p.add_argument("--no-regulariser", action="store_true", help="drop eq. (2)'s regulariser (ablation)")
    p.add_argument("--no-overlay", action="store_true", help="do not write the overlay video")
    p.add_argument("--device", default="cpu", help="torch device for the fit (cpu, cuda)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pt_data.face_model import FaceModelError  # noqa: PLC0415 - keep `pt --help` fast
    from pt_data.fit_config import FitConfig  # noqa: PLC0415
    from pt_data.fit_video import FitVideoConfig, FitVideoError, fit_video  # noqa: PLC0415

    fit = FitConfig(iterations=args.iterations, optimise=args.iterations > 0, temporal=not args.no_temporal,
                    regularise=not args.no_regulariser, device=args.device)
    cfg = FitVideoConfig(fit=fit, face_model=args.face_model, overlay=not args.no_overlay)
    try:
        report = fit_video(args.video, args.out, cfg)
    except (FitVideoError, FaceModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"face model {report.face_model_id}")
    print(report.table())
    print("\nwritten:\n  " + "\n  ".join(report.files))
    return 0
