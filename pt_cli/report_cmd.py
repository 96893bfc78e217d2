"""``pt report``: figures of a benchmark run (metric bars with CIs, per-video distributions, style t-SNE)."""
from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Draw the figures of a `pt bench` output folder, each as PNG and PDF:

  metric_bars              one panel per metric: mean per method with its bootstrap CI
  per_video_distributions  one panel per video-level metric: box plot per method, every video a dot
  style_tsne               t-SNE of speaking-style embeddings (the paper's Figure 5: speakers by colour,
                           original vs dubbed by marker), drawn when the bench folder holds
                           style_embeddings.npz, which `pt bench` writes when it computes stylesim
                           (one style vector per reference and per method video; speakers from
                           --speaker-map, else one per reference video)

Numbers computed with random weights are marked "random weights: not comparable" on the figures."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="figures of a benchmark run: metric bars with CIs, distributions, style t-SNE",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", required=True, metavar="DIR", help="the --out folder of a finished `pt bench` run")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the figures")
    p.add_argument("--formats", default="png,pdf", help="comma-separated file formats (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the t-SNE and of the point jitter")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pt_bench.figures import report_figures, style_tsne_status

    formats = [f.strip().lstrip(".") for f in args.formats.split(",") if f.strip()]
    try:
        made = report_figures(args.bench, args.out, formats=formats, seed=args.seed)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, paths in made.items():
        print(f"{name}: {', '.join(str(p) for p in paths)}")
    if "style_tsne" not in made:
        print(f"style_tsne: not drawn ({style_tsne_status(args.bench)})")
    return 0
