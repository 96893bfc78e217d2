"""``pt dub``: a reference video + new audio -> the dubbed video (the API is :func:`pt_model.dub.dub`)."""
from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """Dub a reference video with a new audio track using trained PersonaTalk models.

The reference is tracked (MediaPipe face mesh), cropped like the curation does and fitted with the hybrid
3DMM fit; stage 1 turns the audio into target geometry in the speaker's style; stage 2 renders the faces from
reference frames chosen by Algorithm 1 (5 face references around each frame, 25 lip references spread over
the reference's mouth shapes); the faces are pasted back into the original full-resolution frames with a
feathered mask and the new audio is muxed. Audio longer than the video plays the reference back and forth;
shorter audio cuts it. The output has one frame per 40 ms of audio (25 fps) and the reference's size."""

EPILOG = """checkpoints:
  --checkpoint RUN   a stage-2 run folder (`pt train stage2`, or the stage2 folder `pt demo` leaves); the
                     stage-1 run is the one beside it unless --stage1 names it. A folder holding one stage-1
                     and one stage-2 run works too. Default: <weights dir>/personatalk.

example:
  pt dub --video ref.mp4 --audio new.wav --out dubbed.mp4 --checkpoint runs/stage2"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dub", help="dub a reference video with a new audio track", description=DESCRIPTION,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", required=True, help="the reference video (any format ffmpeg reads)")
    p.add_argument("--audio", required=True, help="the new speech (wav, mp3, ... any rate, mono or stereo)")
    p.add_argument("--out", required=True, help="the dubbed video to write (.mp4)")
    p.add_argument("--checkpoint", help="stage-2 run folder (see below)")
    p.add_argument("--stage1", help="stage-1 run folder (default: the one beside the stage-2 run)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=8, help="frames per renderer call (default 8)")
    p.add_argument("--num-lip", type=int, default=25, help="lip references N_l (default 25)")
    p.add_argument("--num-face", type=int, default=5, help="face references N_f (default 5)")
    p.add_argument("--references", choices=("algorithm1", "random"), default="algorithm1",
                   help="reference selection (random: the 'w/o frame selection' ablation)")
    p.add_argument("--paste-region", choices=("lower_face", "face"), default="lower_face",
                   help="the face-model region replaced in the original frames (default lower_face)")
    p.add_argument("--no-colour-match", action="store_true",
                   help="paste the rendered face as is (default: match its colours to the reference crop first)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (lower is better; default 18)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's; 1 is best on a busy machine)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``pt dub``; exit code 0 on success, 1 with a one-line reason otherwise."""
    from pt_data.face_model import FaceModelError  # noqa: PLC0415 - keep `pt --help` light
    from pt_data.weights import MissingWeightsError  # noqa: PLC0415
    from pt_model.dub import DubConfig, DubError, dub  # noqa: PLC0415
    from pt_model.train_loop import CheckpointError, ConfigMismatchError  # noqa: PLC0415

    if args.threads:
        import torch  # noqa: PLC0415

        torch.set_num_threads(args.threads)
    cfg = DubConfig(stage1=args.stage1, device=args.device, batch_size=args.batch_size, num_face=args.num_face,
                    num_lip=args.num_lip, references=args.references, paste_region=args.paste_region,
                    colour_match=not args.no_colour_match, crf=args.crf, progress=not args.no_progress)
    try:
        rep = dub(args.video, args.audio, args.out, args.checkpoint, cfg)
    except (DubError, CheckpointError, ConfigMismatchError, MissingWeightsError, FaceModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
        return 0
    extended = ", reference played back and forth" if rep.extended else ""
    print(f"wrote {rep.out}: {rep.width}x{rep.height}, {rep.num_frames} frames at {rep.fps} fps "
          f"({rep.duration_s:.2f} s; audio {rep.audio_s:.2f} s){extended}")
    if rep.random_weights:
        print("note: random weights: the faces are not meaningful")
    print(f"speed: {rep.frames_per_s:.2f} frames/s end to end ({rep.realtime_factor:.3f} x real time), renderer "
          f"{rep.renderer_frames_per_s:.1f} frames/s at {rep.image_size} px")
    print(f"models: stage 1 {rep.stage1_run}, stage 2 {rep.stage2_run}")
    for w in rep.warnings:
        print(f"warning: {w}")
    return 0
