"""Report figures of a benchmark run (matplotlib, Agg backend; each saved as PNG and PDF).

- :func:`metric_bars`: one panel per metric, a bar per method with its bootstrap CI as an error bar;
- :func:`metric_distributions`: one panel per video-level metric, per-method box plots with every video
  as a point;
- :func:`tsne_figure`: the t-SNE of speaking-style embeddings, as in the paper's Figure 5 (speakers by
  colour, original vs dubbed by marker). It takes arrays; the embeddings come from a style encoder, and
  :func:`report_figures` draws it when the bench folder holds :data:`STYLE_EMBEDDINGS_FILE` (which
  ``pt bench`` writes when ``stylesim`` is computed). Embeddings of a random-weights encoder are marked
  "random weights: not comparable" in the figure's title.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from pt_bench.leaderboard import RANDOM_WEIGHTS_NOTE, MetricInfo, best_methods, read_bench_folder  # noqa: E402

#: A bench folder may hold style embeddings for the t-SNE: arrays ``embeddings`` (N, D) float,
#: ``speakers`` (N,) str and ``kinds`` (N,) str ("original" / "dubbed"); optionally ``names`` (N,) str and
#: ``real_weights`` (a bool scalar; absent means real).
STYLE_EMBEDDINGS_FILE = "style_embeddings.npz"
#: The fewest embeddings a t-SNE is drawn for.
MIN_TSNE_POINTS = 3
METHOD_COLOUR, BASELINE_COLOUR, BEST_COLOUR = "#4c72b0", "#b0b0b0", "#dd8452"
KIND_MARKERS = {"original": "o", "dubbed": "^"}
_OTHER_MARKERS = ("s", "D", "v", "P", "X")


def save_figure(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150
                ) -> list[Path]:
    """Save ``fig`` as ``stem.png``, ``stem.pdf`` ...; closes it and returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = stem.with_suffix(f".{fmt}")
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def _grid(n: int, max_cols: int = 3, panel: tuple[float, float] = (3.6, 3.2)) -> tuple[Figure, np.ndarray]:
    cols = min(max_cols, max(n, 1))
    rows = int(np.ceil(max(n, 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(panel[0] * cols, panel[1] * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def _metric_title(m: MetricInfo) -> str:
    return f"{m.name} {m.arrow} ({'higher' if m.higher_is_better else 'lower'} is better)"


def _label(method: str, kind: str) -> str:
    return f"{method}\n(baseline)" if kind == "baseline" else method


def metric_bars(board: pd.DataFrame, metrics: Sequence[MetricInfo], *, title: str = "Benchmark") -> Figure:
    """One panel per metric: a bar per method (baselines grey, best method orange), CI error bars."""
    fig, axes = _grid(len(metrics))
    x = np.arange(len(board))
    for ax, m in zip(axes.flat, metrics):
        vals = board[m.name].to_numpy(np.float64)
        lo, hi = board[f"{m.name}_ci_low"].to_numpy(np.float64), board[f"{m.name}_ci_high"].to_numpy(np.float64)
        best = best_methods(board, m)
        colours = [BEST_COLOUR if meth in best else BASELINE_COLOUR if kind == "baseline" else METHOD_COLOUR
                   for meth, kind in zip(board["method"], board["kind"])]
        finite = np.isfinite(vals)
        ax.bar(x[finite], vals[finite], color=np.array(colours)[finite], edgecolor="black", linewidth=0.5)
        ci = finite & np.isfinite(lo) & np.isfinite(hi)
        if ci.any():
            err = np.vstack([vals[ci] - lo[ci], hi[ci] - vals[ci]]).clip(min=0)
            ax.errorbar(x[ci], vals[ci], yerr=err, fmt="none", ecolor="black", capsize=3, linewidth=1)
        for xi, v, h in zip(x, vals, hi):
            txt = "n/a" if np.isnan(v) else ("∞" if np.isinf(v) else f"{v:.3g}")
            top = 0.0 if not np.isfinite(v) else max(v, h) if np.isfinite(h) else v  # above the error bar
            ax.annotate(txt, (xi, top), textcoords="offset points", xytext=(0, 2), ha="center", va="bottom",
                        fontsize=7)
        ax.set_xticks(x, [_label(a, k) for a, k in zip(board["method"], board["kind"])], rotation=45, ha="right",
                      fontsize=8)
        ax.set_title(_metric_title(m), fontsize=10)
        ax.margins(y=0.12)  # room for the value labels above the tallest error bar
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    sub = "bars: mean over videos; error bars: bootstrap CI; orange: best measured method; grey: baselines"
    if any(not m.real_weights for m in metrics):
        sub += f"\n{RANDOM_WEIGHTS_NOTE.upper()}"
    fig.suptitle(f"{title}\n{sub}", fontsize=11)
    fig.tight_layout()
    return fig


def metric_distributions(per_video: pd.DataFrame, metrics: Sequence[MetricInfo], kinds: dict[str, str], *,
                         title: str = "Per-video scores", seed: int = 0) -> Figure:
    """One panel per video-level metric: a box per method with every video drawn as a (jittered) point."""
    vm = [m for m in metrics if m.level == "video" and m.name in per_video]
    fig, axes = _grid(len(vm))
    methods = [k for k in kinds if k in set(per_video["method"])]
    rng = np.random.default_rng(seed)
    for ax, m in zip(axes.flat, vm):
        data = [per_video.loc[per_video["method"] == meth, m.name].to_numpy(np.float64) for meth in methods]
        data = [d[np.isfinite(d)] for d in data]
        pos = np.arange(1, len(methods) + 1)
        shown = [i for i, d in enumerate(data) if len(d)]
        if shown:
            bp = ax.boxplot([data[i] for i in shown], positions=pos[shown], widths=0.6, showfliers=False,
                            patch_artist=True, medianprops={"color": "black"})
            for i, patch in zip(shown, bp["boxes"]):
                patch.set_facecolor(BASELINE_COLOUR if kinds[methods[i]] == "baseline" else METHOD_COLOUR)
                patch.set_alpha(0.45)
        for i, d in enumerate(data):
            ax.scatter(pos[i] + rng.uniform(-0.15, 0.15, len(d)), d, s=12, color="black", alpha=0.7, zorder=3)
        ax.set_xticks(pos, [_label(a, kinds[a]) for a in methods], rotation=45, ha="right", fontsize=8)
        ax.set_title(_metric_title(m), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    sub = "box: quartiles over videos; dots: individual videos"
    if any(not m.real_weights for m in vm):
        sub += f"\n{RANDOM_WEIGHTS_NOTE.upper()}"
    fig.suptitle(f"{title}\n{sub}", fontsize=11)
    fig.tight_layout()
    return fig


def tsne_embedding(embeddings: np.ndarray, *, perplexity: float | None = None, seed: int = 0) -> np.ndarray:
    """(N, 2) t-SNE of (N, D) embeddings (scikit-learn, PCA init, seeded; perplexity fits small N).

    Exact gradients up to 1000 points (the paper's figure has ~130; Barnes-Hut is slower at that size).
    """
    from sklearn.manifold import TSNE

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"t-SNE needs (N >= 3, D) embeddings, got shape {x.shape}")
    p = perplexity if perplexity is not None else float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    if not p < len(x):
        raise ValueError(f"perplexity {p} must be below the number of embeddings ({len(x)})")
    return TSNE(n_components=2, perplexity=p, init="pca", random_state=seed,
                method="exact" if len(x) <= 1000 else "barnes_hut").fit_transform(x)


def tsne_figure(embeddings: np.ndarray, speakers: Sequence[str], kinds: Sequence[str], *,
                perplexity: float | None = None, seed: int = 0,
                title: str = "t-SNE of speaking-style embeddings", real_weights: bool = True) -> Figure:
    """The paper's Figure 5: style embeddings in 2-D, one colour per speaker, one marker per kind
    ("original" circles, "dubbed" triangles). ``real_weights=False`` (a random-weights encoder) adds
    "random weights: not comparable" to the title."""
    speakers, kinds = np.asarray(speakers).astype(str), np.asarray(kinds).astype(str)
    if not len(speakers) == len(kinds) == len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(speakers)} speakers and {len(kinds)} kinds")
    xy = tsne_embedding(embeddings, perplexity=perplexity, seed=seed)
    spk = list(dict.fromkeys(speakers))
    cmap = plt.get_cmap("tab10" if len(spk) <= 10 else "tab20")
    colour = {s: cmap(i % cmap.N) for i, s in enumerate(spk)}
    kind_list = list(dict.fromkeys(kinds))
    extra = iter(_OTHER_MARKERS * 4)
    marker = {k: KIND_MARKERS.get(k) or next(extra) for k in kind_list}
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for k in kind_list:
        for s in spk:
            sel = (kinds == k) & (speakers == s)
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], c=[colour[s]], marker=marker[k], s=60 if k == "original" else 40,
                           edgecolors="black" if k == "original" else "none", linewidths=0.8, alpha=0.9)
    spk_handles = [Line2D([], [], marker="o", linestyle="", color=colour[s], label=s) for s in spk]
    kind_handles = [Line2D([], [], marker=marker[k], linestyle="", color="grey", label=k) for k in kind_list]
    leg = ax.legend(handles=spk_handles, title="speaker", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.add_artist(leg)
    ax.legend(handles=kind_handles, title="video", loc="lower left", bbox_to_anchor=(1.01, 0), fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title if real_weights else f"{title}\n({RANDOM_WEIGHTS_NOTE})")
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class StyleEmbeddings:
    """The contents of a :data:`STYLE_EMBEDDINGS_FILE`."""

    embeddings: np.ndarray  # (N, D)
    speakers: np.ndarray  # (N,) str
    kinds: np.ndarray  # (N,) str: "original" / "dubbed"
    names: np.ndarray | None  # (N,) str, or None
    real_weights: bool  # False: computed with a random-weights encoder (not comparable)

    def __len__(self) -> int:
        return len(self.embeddings)


def read_style_embeddings(path: str | Path) -> StyleEmbeddings:
    """A :data:`STYLE_EMBEDDINGS_FILE` with its optional names and weights flag (no pickled objects)."""
    with np.load(path, allow_pickle=False) as z:
        missing = {"embeddings", "speakers", "kinds"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {', '.join(sorted(missing))} (need embeddings, speakers, kinds)")
        return StyleEmbeddings(z["embeddings"], z["speakers"].astype(str), z["kinds"].astype(str),
                               z["names"].astype(str) if "names" in z.files else None,
                               bool(z["real_weights"]) if "real_weights" in z.files else True)


def load_style_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(embeddings, speakers, kinds)`` from a :data:`STYLE_EMBEDDINGS_FILE` (see :func:`read_style_embeddings`)."""
    s = read_style_embeddings(path)
    return s.embeddings, s.speakers, s.kinds


def style_tsne_status(bench_dir: str | Path) -> str | None:
    """Why :func:`report_figures` draws no t-SNE for ``bench_dir`` (None: it draws one)."""
    path = Path(bench_dir) / STYLE_EMBEDDINGS_FILE
    if not path.is_file():
        return (f"{STYLE_EMBEDDINGS_FILE} is not in {bench_dir}; `pt bench` writes it when the stylesim metric is "
                "computed for at least one --method")
    n = len(read_style_embeddings(path))
    if n < MIN_TSNE_POINTS:
        return f"{path} holds {n} embedding(s); a t-SNE needs at least {MIN_TSNE_POINTS}"
    return None


def style_tsne_from_file(path: str | Path, *, seed: int = 0) -> Figure:
    """:func:`tsne_figure` of a :data:`STYLE_EMBEDDINGS_FILE`, marked when its encoder had random weights."""
    s = read_style_embeddings(path)
    return tsne_figure(s.embeddings, s.speakers, s.kinds, seed=seed, real_weights=s.real_weights)


def report_figures(bench_dir: str | Path, out_dir: str | Path, *, formats: Sequence[str] = ("png", "pdf"),
                   seed: int = 0) -> dict[str, list[Path]]:
    """Draw the figures of a ``pt bench`` output folder into ``out_dir``; returns ``{figure: paths}``.

    ``style_tsne`` is drawn when the folder holds enough style embeddings (:func:`style_tsne_status` says why
    not otherwise)."""
    meta, board, per_video = read_bench_folder(bench_dir)
    metrics = [MetricInfo.from_dict(d) for d in meta["metrics"]]
    kinds = dict(meta["kinds"])
    title = meta.get("config", {}).get("title", "Benchmark")
    out = Path(out_dir)
    made = {"metric_bars": save_figure(metric_bars(board, metrics, title=title), out / "metric_bars", formats)}
    if any(m.level == "video" for m in metrics):
        made["per_video_distributions"] = save_figure(
            metric_distributions(per_video, metrics, kinds, title=f"{title}: per-video scores", seed=seed),
            out / "per_video_distributions", formats)
    if style_tsne_status(bench_dir) is None:
        made["style_tsne"] = save_figure(style_tsne_from_file(Path(bench_dir) / STYLE_EMBEDDINGS_FILE, seed=seed),
                                         out / "style_tsne", formats)
    return made
