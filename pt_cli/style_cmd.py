"""``pt train style``: train the speaking-style encoder of the StyleSim metric (over ``pt_bench.style_train``).

Exposes ``add_arguments(parser)`` and ``run(args) -> int`` like every ``pt train`` stage.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """examples:
  pt train style --shards shards/ --out runs/style --preset tiny --max-steps 300
  pt train style --shards shards/ --out runs/style                      # paper preset, 20000 steps
  cp runs/style/style_encoder.pt $PT_WEIGHTS_DIR/style_encoder/personatalk_style.pt   # for StyleSim

Running the same command again resumes from RUN/checkpoints/last.pt (another config or seed is refused);
a larger --max-steps continues a finished run."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``pt train style``."""
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    io = p.add_argument_group("data and run folder")
    io.add_argument("--shards", required=True, help="folder of clip shards with fitted expressions (`pt curate`)")
    io.add_argument("--out", required=True, type=Path, help="run folder (resumed when it holds a checkpoint)")
    io.add_argument("--preset", choices=["tiny", "paper"], default="paper",
                    help="encoder and batch sizes: paper (default) or tiny (CPU smoke runs, 1 s windows)")
    io.add_argument("--speaker-map", type=Path,
                    help="JSON object {speaker_id: label} merging shard speaker ids into speakers (e.g. files "
                         "of a folder source that show the same person)")
    io.add_argument("--face-model", help="converted face-model .npz the shards were fitted with "
                                         "(default: $PT_FACE_MODEL or the ICT model)")
    io.add_argument("--tsne-out", type=Path,
                    help="also draw the t-SNE of the window embeddings to this path stem (.png and .pdf); "
                         "RUN/style_tsne.* is always drawn")
    t = p.add_argument_group("training (defaults: the preset's)")
    t.add_argument("--max-steps", type=int, help="optimiser steps of the whole run")
    t.add_argument("--window", type=int, help="frames per window (25 fps)")
    t.add_argument("--holdout-tail", type=float, help="held-out fraction at the end of each clip")
    t.add_argument("--speakers-per-batch", type=int, help="speakers per batch")
    t.add_argument("--windows-per-speaker", type=int, help="windows per speaker in a batch (>= 2)")
    t.add_argument("--lr", type=float, help="learning rate (AdamW, after a linear warm-up)")
    t.add_argument("--temperature", type=float, help="contrastive temperature")
    t.add_argument("--ckpt-every", type=int, help="steps between checkpoints (one is always written at the end)")
    t.add_argument("--val-every", type=int, help="steps between retrieval validations (0: before and after only)")
    t.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches (default 0)")
    t.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    """``(StyleTrainConfig, max_steps)`` that the options describe."""
    from pt_bench.style_train import preset_config  # noqa: PLC0415 - torch

    over = {k: v for k, v in (("holdout_tail", args.holdout_tail), ("speakers_per_batch", args.speakers_per_batch),
                              ("windows_per_speaker", args.windows_per_speaker), ("lr", args.lr),
                              ("temperature", args.temperature), ("ckpt_every", args.ckpt_every),
                              ("val_every", args.val_every)) if v is not None}
    if args.window is not None:
        over["encoder"] = {"window": args.window}
    if args.speaker_map is not None:
        mapping = json.loads(Path(args.speaker_map).read_text())
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ValueError(f"{args.speaker_map}: want a JSON object of speaker_id -> speaker label strings")
        over["speaker_map"] = {str(k): v for k, v in mapping.items()}
    cfg, steps = preset_config(args.preset, **over)
    return cfg, args.max_steps if args.max_steps is not None else steps


def run(args: argparse.Namespace) -> int:
    """``pt train style``: returns the exit code."""
    from pt_data.face_model import FaceModelError  # noqa: PLC0415
    from pt_data.shards import ShardError  # noqa: PLC0415

    from pt_bench.style_train import plot_style_tsne, train_style  # noqa: PLC0415 - torch

    try:
        cfg, max_steps = config_from_args(args)
        result = train_style(args.shards, args.out, cfg, max_steps=max_steps, seed=args.seed, device=args.device,
                             face_model=args.face_model, progress=not args.no_progress)
    except (ValueError, ShardError, FaceModelError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    figures = [str(p) for p in plot_style_tsne(args.out, seed=args.seed)]
    if args.tsne_out is not None:
        figures += [str(p) for p in plot_style_tsne(args.out, args.tsne_out, seed=args.seed)]
    print(json.dumps({**result.summary(), "figures": figures}, indent=2))
    print(f"held-out speaker retrieval: {result.retrieval_accuracy:.3f} (chance {result.retrieval_chance:.3f}, "
          f"{result.num_queries} held-out windows, {result.num_speakers} speakers); for StyleSim copy "
          f"{result.encoder_path} to <weights dir>/style_encoder/personatalk_style.pt", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pt_cli.style_cmd ...``: the same as ``pt train style ...``."""
    parser = argparse.ArgumentParser(prog="pt train style", description="train the speaking-style encoder")
    add_arguments(parser)
    return run(parser.parse_args(argv))


__all__ = ["add_arguments", "config_from_args", "run", "main"]

if __name__ == "__main__":
    sys.exit(main())
