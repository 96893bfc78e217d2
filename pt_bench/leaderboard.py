"""Leaderboards of a benchmark run: per-method means with bootstrap CIs, as CSV, Markdown and HTML.

Files written by :func:`write_leaderboards` into the run's output folder:

- ``leaderboard.csv``: ``method``, one column per metric named exactly by the metric (``ssim``, ``psnr`` ...),
  then ``<metric>_ci_low`` / ``<metric>_ci_high`` for every metric, ``n_videos``, ``weights`` ("real",
  "random weights: not comparable (...)", or "real; missing: ..."), and ``kind`` ("method" / "baseline");
- ``leaderboard.md``: arrows for each metric's direction, best measured method in bold, the CI as ±,
  footnotes with each metric's protocol line, and (only when asked) the paper's published rows in a
  separate table labelled "published (paper), not measured";
- ``leaderboard.html``: one self-contained page (inline CSS and JS: sortable columns, no network);
- ``per_video.csv``: ``method``, ``video``, one column per video-level metric (then metrics' extra columns,
  e.g. SyncNet's offset).
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from pt_bench.stats import bootstrap_mean_ci

#: Where the published rows come from.
PUBLISHED_SOURCE = ("PersonaTalk (Zhang et al., SIGGRAPH Asia 2024), Table 1: HDTF, 30 videos; "
                    "SyncScore is reported under lse_c")
#: The paper's Table 1, typed from ../shared/PAPER.md (``None``: "n/a" in the paper). Never measured here.
PUBLISHED_ROWS: dict[str, dict[str, float | None]] = {
    "Wav2Lip": {"ssim": 0.934, "psnr": 28.347, "fid": 31.561, "lmd": 0.376, "lse_c": 7.147, "lpips": 0.092,
                "csim": 0.948, "stylesim": 0.896},
    "VideoReTalking": {"ssim": 0.911, "psnr": 26.963, "fid": 35.025, "lmd": 0.573, "lse_c": 6.615,
                       "lpips": 0.053, "csim": 0.931, "stylesim": 0.846},
    "DINet": {"ssim": 0.914, "psnr": 26.506, "fid": 30.355, "lmd": 0.657, "lse_c": 5.771, "lpips": 0.057,
              "csim": 0.896, "stylesim": 0.865},
    "IP_LAP": {"ssim": 0.951, "psnr": 30.717, "fid": 20.549, "lmd": 0.405, "lse_c": 4.409, "lpips": 0.044,
               "csim": 0.947, "stylesim": 0.892},
    "PersonaTalk": {"ssim": 0.956, "psnr": 31.451, "fid": 10.701, "lmd": 0.313, "lse_c": 6.610, "lpips": 0.018,
                    "csim": 0.983, "stylesim": 0.939},
    "ground truth": {"ssim": 1.000, "psnr": None, "fid": 0.000, "lmd": 0.000, "lse_c": 6.134, "lpips": 0.000,
                     "csim": 0.988, "stylesim": 0.941},
}
PUBLISHED_LABEL = "published (paper), not measured"
RANDOM_WEIGHTS_NOTE = "random weights: not comparable"


@dataclass(frozen=True)
class MetricInfo:
    """What a leaderboard needs to know about one metric (a plain copy of the Metric's attributes)."""

    name: str
    higher_is_better: bool
    level: str  # "video" or "set"
    needs_reference: bool
    region: str
    weights: tuple[str, ...]
    real_weights: bool
    protocol: str

    @classmethod
    def from_metric(cls, metric) -> "MetricInfo":
        """Copy the attributes of a ``pt_bench.metrics.Metric``."""
        return cls(metric.name, bool(metric.higher_is_better), metric.level, bool(metric.needs_reference),
                   metric.region, tuple(w for w in metric.weights if w), bool(metric.real_weights), metric.protocol)

    @classmethod
    def from_dict(cls, d: Mapping) -> "MetricInfo":
        return cls(**{**d, "weights": tuple(d.get("weights", ()))})

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


def weights_note(metrics: Sequence[MetricInfo], missing: Mapping[str, str] | None = None) -> str:
    """The ``weights`` cell: "real", "random weights: not comparable (names)", "; missing: ..." appended."""
    rand = [m.name for m in metrics if not m.real_weights]
    note = f"{RANDOM_WEIGHTS_NOTE} ({', '.join(rand)})" if rand else "real"
    if missing:
        note += "; missing: " + ", ".join(f"{k} ({v})" for k, v in missing.items())
    return note


def summarise(per_video: pd.DataFrame, set_scores: Mapping[str, Mapping[str, float]], metrics: Sequence[MetricInfo],
              kinds: Mapping[str, str], *, weights: str, n_samples: int = 1000, confidence: float = 0.95,
              seed: int = 0) -> pd.DataFrame:
    """The leaderboard frame: one row per method (in ``kinds`` order), columns as in ``leaderboard.csv``.

    ``per_video`` has columns ``method``, ``video`` and one per video-level metric; ``set_scores`` maps
    method -> set-level metric -> value (no CI: a set statistic is not a mean over videos).
    """
    rows = []
    for method, kind in kinds.items():
        sub = per_video[per_video["method"] == method]
        row: dict[str, object] = {"method": method}
        cis: dict[str, float] = {}
        for m in metrics:
            if m.level == "set":
                row[m.name] = set_scores.get(method, {}).get(m.name, float("nan"))
                cis[f"{m.name}_ci_low"] = cis[f"{m.name}_ci_high"] = float("nan")
            else:
                ci = bootstrap_mean_ci(sub[m.name].to_numpy(np.float64) if m.name in sub else [],
                                       n_samples=n_samples, confidence=confidence, seed=seed)
                row[m.name] = ci.mean
                cis[f"{m.name}_ci_low"], cis[f"{m.name}_ci_high"] = ci.low, ci.high
        row.update(cis)
        row["n_videos"] = int(sub["video"].nunique())
        row["weights"] = weights
        row["kind"] = kind
        rows.append(row)
    cols = (["method"] + [m.name for m in metrics] + [f"{m.name}_ci_{s}" for m in metrics for s in ("low", "high")]
            + ["n_videos", "weights", "kind"])
    return pd.DataFrame(rows, columns=cols)


def best_methods(board: pd.DataFrame, metric: MetricInfo) -> set[str]:
    """Methods with the best mean of ``metric`` among measured methods (all rows when only baselines)."""
    pool = board[board["kind"] == "method"]
    if pool.empty:
        pool = board
    vals = pool[metric.name].to_numpy(np.float64)
    ok = ~np.isnan(vals)
    if not ok.any():
        return set()
    best = np.max(vals[ok]) if metric.higher_is_better else np.min(vals[ok])
    return set(pool["method"][ok & (vals == best)])


def decimals_for(v: float | None) -> int:
    """Decimals that suit a score's scale: 4 below 10 (SSIM, LMD), 2 below 1000 (PSNR, FID), else 0."""
    a = abs(v) if v is not None and math.isfinite(v) else 0.0
    return 4 if a < 10 else 2 if a < 1000 else 0


def format_value(v: float | None, decimals: int | None = None) -> str:
    """A score with ``decimals`` (default: :func:`decimals_for`) decimals; ∞ and n/a spelled out."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return f"{v:.{decimals_for(v) if decimals is None else decimals}f}"


def _cell(row: pd.Series, m: MetricInfo, bold: bool) -> str:
    v = format_value(row[m.name])
    if bold and v != "n/a":
        v = f"**{v}**"
    lo, hi = row[f"{m.name}_ci_low"], row[f"{m.name}_ci_high"]
    if np.isfinite(lo) and np.isfinite(hi):
        v += f" ± {format_value((hi - lo) / 2, decimals_for(row[m.name]))}"
    return v


def _method_label(row: pd.Series) -> str:
    return f"{row['method']} (baseline)" if row["kind"] == "baseline" else str(row["method"])


def _protocol_lines(metrics: Sequence[MetricInfo]) -> list[str]:
    lines = []
    for m in metrics:
        w = ", ".join(m.weights) if m.weights else "none"
        state = "" if m.real_weights else f" — {RANDOM_WEIGHTS_NOTE}"
        lines.append(f"{m.name} ({m.arrow}; {m.level} level; region: {m.region}; weights: {w}{state}): {m.protocol}")
    return lines


def published_metrics(metrics: Sequence[MetricInfo]) -> list[MetricInfo]:
    """The run's metrics that the paper's table reports (the columns of the published table)."""
    return [m for m in metrics if m.name in next(iter(PUBLISHED_ROWS.values()))]


def _split_weights(note: str) -> tuple[str, str]:
    """``("real", "fid (fid-inception), ...")`` from a weights cell (the part after "; missing: ")."""
    head, _, missing = str(note).partition("; missing: ")
    return head, missing


def render_markdown(board: pd.DataFrame, metrics: Sequence[MetricInfo], *, n_samples: int, confidence: float = 0.95,
                    show_published: bool = False, title: str = "Leaderboard", notes: Iterable[str] = ()) -> str:
    """The Markdown leaderboard (measured rows, then the published table when ``show_published``)."""
    best = {m.name: best_methods(board, m) for m in metrics}
    header = ["method"] + [f"{m.name} {m.arrow}" for m in metrics] + ["videos", "weights"]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    missing = ""
    for _, row in board.iterrows():
        weights, missing = _split_weights(row["weights"])
        cells = [_method_label(row)] + [_cell(row, m, row["method"] in best[m.name]) for m in metrics]
        cells += [str(row["n_videos"]), weights]
        lines.append("| " + " | ".join(cells) + " |")
    if missing:
        lines += ["", f"Not computed, pretrained weights missing (see `pt weights`): {missing}."]
    lines += ["", f"± is half the {confidence:.0%} percentile-bootstrap interval of the mean over videos "
                  f"({n_samples} resamples); set-level metrics have no interval. Bold: best measured method "
                  "(baselines excluded unless only baselines ran). ↑ higher is better, ↓ lower is better.", ""]
    pub = published_metrics(metrics) if show_published else []
    if pub:
        lines += [f"## {PUBLISHED_LABEL}", "", f"Source: {PUBLISHED_SOURCE}. These numbers were not computed by "
                  "this run and are not comparable with its rows (other videos, other implementations).", "",
                  "| method | " + " | ".join(f"{m.name} {m.arrow}" for m in pub) + " |",
                  "|" + "---|" * (len(pub) + 1)]
        for method, vals in PUBLISHED_ROWS.items():
            cells = [format_value(vals[m.name]) for m in pub]
            lines.append(f"| {method} — {PUBLISHED_LABEL} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Metric protocols", ""] + [f"{i}. {s}" for i, s in enumerate(_protocol_lines(metrics), 1)]
    notes = list(notes)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.35em .7em;text-align:right}
th{background:#f1f3f5;cursor:pointer;user-select:none;white-space:nowrap}th:first-child,td:first-child,
td.text{text-align:left}tr.baseline td{color:#666;font-style:italic}tr.published td{color:#7a5c00;background:#fffbea}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}.ci{color:#888;font-size:.85em}
caption{caption-side:bottom;text-align:left;color:#555;font-size:.9em;padding-top:.5em}"""

_JS = """document.querySelectorAll("table.sortable").forEach(function(table){
  table.querySelectorAll("th").forEach(function(th, col){
    th.addEventListener("click", function(){
      var asc = !th.classList.contains("sorted-asc");
      table.querySelectorAll("th").forEach(function(h){h.classList.remove("sorted-asc","sorted-desc");});
      th.classList.add(asc ? "sorted-asc" : "sorted-desc");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function(a, b){
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        var nx = parseFloat(x), ny = parseFloat(y), c;
        if (!isNaN(nx) && !isNaN(ny)) c = nx - ny;
        else if (!isNaN(nx)) c = -1; else if (!isNaN(ny)) c = 1;
        else c = String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});"""


def _sort_value(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return "1e308" if v == math.inf else "-1e308" if v == -math.inf else repr(float(v))


def render_html(board: pd.DataFrame, metrics: Sequence[MetricInfo], *, n_samples: int, confidence: float = 0.95,
                show_published: bool = False, title: str = "Leaderboard", notes: Iterable[str] = ()) -> str:
    """One self-contained HTML page: the leaderboard as a sortable table (inline CSS + JS, no network)."""
    e = html.escape
    best = {m.name: best_methods(board, m) for m in metrics}
    head = "".join(f"<th title=\"{e(m.protocol)}\">{e(m.name)} {m.arrow}</th>" for m in metrics)
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>",
           "<table class=\"sortable\" id=\"leaderboard\"><thead><tr><th>method</th>" + head
           + "<th>videos</th><th>weights</th></tr></thead><tbody>"]
    for _, row in board.iterrows():
        tds = [f"<td class=\"text\" data-v=\"{e(str(row['method']))}\">{e(_method_label(row))}</td>"]
        for m in metrics:
            v, lo, hi = row[m.name], row[f"{m.name}_ci_low"], row[f"{m.name}_ci_high"]
            txt = e(format_value(v))
            if row["method"] in best[m.name] and txt != "n/a":
                txt = f"<b>{txt}</b>"
            if np.isfinite(lo) and np.isfinite(hi):
                d = decimals_for(v)
                txt += (f" <span class=\"ci\" title=\"{confidence:.0%} CI [{e(format_value(lo, d))}, "
                        f"{e(format_value(hi, d))}]\">± {e(format_value((hi - lo) / 2, d))}</span>")
            tds.append(f"<td data-v=\"{_sort_value(v)}\">{txt}</td>")
        tds.append(f"<td data-v=\"{int(row['n_videos'])}\">{int(row['n_videos'])}</td>")
        weights = _split_weights(row["weights"])[0]
        tds.append(f"<td class=\"text\" data-v=\"{e(weights)}\">{e(weights)}</td>")
        out.append(f"<tr class=\"{e(str(row['kind']))}\">" + "".join(tds) + "</tr>")
    out.append(f"</tbody><caption>Click a column header to sort. ± is half the {confidence:.0%} percentile-bootstrap "
               f"interval of the mean over videos ({n_samples} resamples); bold is the best measured method. "
               "Hover a header for the metric's protocol.</caption></table>")
    missing = _split_weights(board["weights"].iloc[0])[1] if len(board) else ""
    if missing:
        out.append(f"<p>Not computed, pretrained weights missing (see <code>pt weights</code>): {e(missing)}.</p>")
    pub = published_metrics(metrics) if show_published else []
    if pub:
        out.append(f"<h2>{e(PUBLISHED_LABEL)}</h2><p>Source: {e(PUBLISHED_SOURCE)}. Not computed by this run; not "
                   "comparable with its rows.</p><table class=\"sortable\" id=\"published\"><thead><tr><th>method</th>"
                   + "".join(f"<th>{e(m.name)} {m.arrow}</th>" for m in pub) + "</tr></thead><tbody>")
        for method, vals in PUBLISHED_ROWS.items():
            tds = "".join(f"<td data-v=\"{_sort_value(vals[m.name])}\">{e(format_value(vals[m.name]))}</td>"
                          for m in pub)
            out.append(f"<tr class=\"published\"><td class=\"text\" data-v=\"{e(method)}\">{e(method)} — "
                       f"{e(PUBLISHED_LABEL)}</td>{tds}</tr>")
        out.append("</tbody></table>")
    out.append("<h2>Metric protocols</h2><ol>" + "".join(f"<li>{e(s)}</li>" for s in _protocol_lines(metrics))
               + "</ol>")
    notes = list(notes)
    if notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"


def per_video_frame(per_video: pd.DataFrame, metrics: Sequence[MetricInfo]) -> pd.DataFrame:
    """``per_video.csv``'s columns: method, video, each video-level metric, then the metrics' extra columns."""
    cols = ["method", "video"] + [m.name for m in metrics if m.level == "video"]
    return per_video.reindex(columns=cols + [c for c in per_video.columns if c not in cols])


def write_leaderboards(out_dir: str | Path, board: pd.DataFrame, per_video: pd.DataFrame,
                       metrics: Sequence[MetricInfo], *, n_samples: int, confidence: float = 0.95,
                       show_published: bool = False, title: str = "Leaderboard", notes: Iterable[str] = ()
                       ) -> dict[str, Path]:
    """Write leaderboard.csv/.md/.html and per_video.csv into ``out_dir``; returns their paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"leaderboard.csv": out / "leaderboard.csv", "leaderboard.md": out / "leaderboard.md",
             "leaderboard.html": out / "leaderboard.html", "per_video.csv": out / "per_video.csv"}
    board.to_csv(paths["leaderboard.csv"], index=False)
    per_video_frame(per_video, metrics).to_csv(paths["per_video.csv"], index=False)
    notes = list(notes)
    paths["leaderboard.md"].write_text(render_markdown(board, metrics, n_samples=n_samples, confidence=confidence,
                                                       show_published=show_published, title=title, notes=notes),
                                       "utf-8")
    paths["leaderboard.html"].write_text(render_html(board, metrics, n_samples=n_samples, confidence=confidence,
                                                     show_published=show_published, title=title, notes=notes),
                                         "utf-8")
    return paths


def metric_infos_json(metrics: Sequence[MetricInfo]) -> list[dict]:
    """JSON-ready copies of ``metrics`` (read back with :meth:`MetricInfo.from_dict`)."""
    return [asdict(m) for m in metrics]


def read_bench_folder(bench_dir: str | Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """``(bench.json contents, leaderboard frame, per-video frame)`` of a ``pt bench`` output folder."""
    d = Path(bench_dir)
    meta_path = d / "bench.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: give the --out folder of a finished `pt bench` run")
    meta = json.loads(meta_path.read_text("utf-8"))
    return meta, pd.read_csv(d / "leaderboard.csv"), pd.read_csv(d / "per_video.csv")
