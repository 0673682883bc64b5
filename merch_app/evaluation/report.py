"""Evaluation and comparison reports: one self-contained HTML file, and CSV.

Charts: the GUI passes PNGs it exported from its pyqtgraph charts
(``images={"caption": path}``), which are embedded as data URIs; without
them (CLI, no Qt in the core) simple SVG charts are drawn inline.  All text
from the workspace (queries, labels, item ids) is HTML-escaped, and CSV
cells that a spreadsheet would run as a formula are prefixed with an
apostrophe (:func:`merch_app.safety.csv_cell`).
"""
from __future__ import annotations

import base64
import csv
import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from merch_app.evaluation.compare import Comparison
from merch_app.evaluation.suite_run import SuiteRun
from merch_app.safety import csv_cell

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
_CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 12px 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.bad { color: #a40000; font-weight: bold; } .good { color: #006400; }
figure { margin: 12px 0; } figcaption { font-size: 12px; color: #555; }
"""


# -------------------------------------------------------------------- CSV
def run_rows(run: SuiteRun) -> list[dict[str, Any]]:
    """One row per query: metrics, unjudged count, judged and relevant counts."""
    rows = []
    for q in run.queries:
        rows.append({"query": q.query, **q.metrics, f"unjudged@{run.k}": q.unjudged,
                     "judged": q.n_judged, "relevant": q.n_relevant})
    return rows


def comparison_rows(cmp: Comparison) -> list[dict[str, Any]]:
    """The per-query rows of a comparison (values, deltas, Jaccard, RBO)."""
    return [dict(r) for r in cmp.rows]


def write_csv(rows: Sequence[Mapping[str, Any]], path: Union[str, Path]) -> Path:
    """Write dict rows as CSV (columns = union of keys in first-seen order), formula-safe."""
    path = Path(path)
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([csv_cell(c) for c in cols])
        for r in rows:
            w.writerow([_csv_value(r.get(c)) for c in cols])
    return path


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return csv_cell(v)


# -------------------------------------------------------------------- SVG
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def svg_bar_chart(labels: Sequence[str], series: Mapping[str, Sequence[Optional[float]]], *,
                  title: str = "", lo: Optional[float] = None, hi: Optional[float] = None,
                  width: int = 900, bar_h: int = 12) -> str:
    """Horizontal grouped bar chart (one group per label, one bar per series) as inline SVG."""
    names = list(series)
    values = [v for s in series.values() for v in s if v is not None]
    lo = min([0.0] + values) if lo is None else lo
    hi = max([1e-9] + values) if hi is None else hi
    span = (hi - lo) or 1.0
    left, right, top = 230, 60, 36
    group_h = bar_h * len(names) + 6
    height = top + group_h * len(labels) + 30
    plot_w = width - left - right
    x0 = left + (0 - lo) / span * plot_w
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>']
    for n, name in enumerate(names):
        out.append(f'<rect x="{left + 150 * n}" y="{top - 14}" width="10" height="10" '
                   f'fill="{PALETTE[n % len(PALETTE)]}"/><text x="{left + 150 * n + 14}" y="{top - 5}">'
                   f'{html.escape(_short(name, 22))}</text>')
    for i, label in enumerate(labels):
        y = top + i * group_h
        out.append(f'<text x="{left - 6}" y="{y + group_h / 2 + 3}" text-anchor="end">'
                   f'{html.escape(_short(label, 34))}</text>')
        for n, name in enumerate(names):
            v = series[name][i]
            if v is None:
                continue
            xv = left + (v - lo) / span * plot_w
            x, w = min(x0, xv), abs(xv - x0)
            out.append(f'<rect x="{x:.1f}" y="{y + n * bar_h}" width="{max(w, 0.5):.1f}" '
                       f'height="{bar_h - 2}" fill="{PALETTE[n % len(PALETTE)]}"><title>'
                       f'{html.escape(label)} — {html.escape(name)}: {v:.3f}</title></rect>')
    bottom = top + group_h * len(labels)
    out.append(f'<line x1="{x0:.1f}" y1="{top}" x2="{x0:.1f}" y2="{bottom}" stroke="#444"/>')
    for t in range(5):
        v = lo + span * t / 4
        x = left + plot_w * t / 4
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{v:.2f}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_slope_chart(moves: Sequence[Mapping[str, Any]], left_label: str, right_label: str, *,
                    k: int = 10, titles: Optional[Mapping[str, str]] = None, width: int = 700) -> str:
    """Slope chart of rank moves (rows of :func:`merch_app.evaluation.compare.rank_moves`)."""
    titles = titles or {}
    row_h, top = 24, 40
    height = top + row_h * (k + 1) + 10
    xl, xr = 260, width - 260
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="{xl}" y="20" text-anchor="middle">{html.escape(left_label)}</text>',
           f'<text x="{xr}" y="20" text-anchor="middle">{html.escape(right_label)}</text>']

    def y(rank: Optional[int]) -> float:
        return top + row_h * ((rank if rank is not None else k + 1) - 1)

    for m in moves:
        label = html.escape(_short(titles.get(m["item_id"], m["item_id"]), 36))
        colour = "#999" if m["move"] == 0 else ("#2ca02c" if (m["move"] or 0) > 0 else "#d62728")
        if m["left"] is None or m["right"] is None:
            colour = "#1f77b4"
        out.append(f'<line x1="{xl}" y1="{y(m["left"])}" x2="{xr}" y2="{y(m["right"])}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        if m["left"] is not None:
            out.append(f'<text x="{xl - 8}" y="{y(m["left"]) + 4}" text-anchor="end">'
                       f'{m["left"]}. {label}</text>')
        if m["right"] is not None:
            out.append(f'<text x="{xr + 8}" y="{y(m["right"]) + 4}">{m["right"]}. {label}</text>')
    out.append(f'<text x="{width / 2}" y="{y(None) + 4}" text-anchor="middle" fill="#777">'
               f'not in top {k}</text></svg>')
    return "".join(out)


def _short(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


# ------------------------------------------------------------------- HTML
def _table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str], flag: Optional[str] = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cls = ""
            if c.startswith("delta") and isinstance(v, float):
                cls = ' class="bad"' if v < 0 else (' class="good"' if v > 0 else "")
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        mark = ' class="bad"' if flag and r.get(flag) else ""
        body.append(f"<tr{mark}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _figures(images: Optional[Mapping[str, Union[str, Path]]]) -> str:
    out = []
    for caption, path in (images or {}).items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        out.append(f'<figure><img alt="{html.escape(caption)}" style="max-width:100%" '
                   f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}'
                   f"</figcaption></figure>")
    return "".join(out)


def _page(title: str, parts: Iterable[str]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>Generated by merch_app on {stamp}.</p>{''.join(parts)}</body></html>")


def run_report_html(run: SuiteRun, images: Optional[Mapping[str, Union[str, Path]]] = None) -> str:
    """HTML report of one suite run: means with CIs, per-query table (worst first), chart."""
    metrics = run.metric_names
    means = [{"metric": m, "mean": run.mean[m], "ci low": run.ci[m][0], "ci high": run.ci[m][1]}
             for m in metrics]
    worst = run.worst_first()
    rows = [{"query": q.query, **q.metrics, f"unjudged@{run.k}": q.unjudged, "relevant": q.n_relevant}
            for q in worst]
    parts = [f"<p>Suite <b>{html.escape(run.suite)}</b>, system <b>{html.escape(run.label)}</b>, "
             f"k = {run.k}, {len(run.queries)} queries ({run.n_scored} with relevant judgments), "
             f"mean unjudged in top {run.k}: {run.mean_unjudged:.2f}.</p>",
             "<h2>Means (95% bootstrap CI)</h2>", _table(means, ["metric", "mean", "ci low", "ci high"])]
    parts.append("<h2>Charts</h2>")
    if images:
        parts.append(_figures(images))
    else:
        scored = [q for q in worst if q.scored]
        parts.append(svg_bar_chart([q.query for q in scored],
                                   {"ndcg@10": [q.metrics["ndcg@10"] for q in scored]},
                                   title="NDCG@10 per query (worst first)", lo=0.0, hi=1.0))
    parts += ["<h2>Queries (worst first)</h2>",
              _table(rows, ["query", *metrics, f"unjudged@{run.k}", "relevant"])]
    if run.config:
        parts.append("<h2>System</h2><pre>" + html.escape(_config_text(run.config)) + "</pre>")
    return _page(f"Evaluation: {run.suite} — {run.label}", parts)


def comparison_report_html(cmp: Comparison, images: Optional[Mapping[str, Union[str, Path]]] = None,
                           slope: Optional[str] = None) -> str:
    """HTML report of a comparison: systems, tests, per-query deltas (+ an optional slope chart SVG)."""
    labels = cmp.labels
    systems = [{"system": r.label, **r.mean} for r in cmp.runs]
    metrics = cmp.runs[0].metric_names
    k = cmp.runs[0].k
    pairs = [{"system": p["system"], "wins": p["wins"], "losses": p["losses"], "ties": p["ties"],
              "delta": p["test"]["delta"], "p-value": p["test"]["p_value"],
              f"Jaccard@{k}": p.get(f"mean_jaccard@{k}"), "RBO": p.get("mean_rbo")} for p in cmp.pairs]
    rows = sorted(cmp.rows, key=lambda r: _sort_delta(r, labels))
    cols = ["query", *labels, *[f"delta:{lab}" for lab in labels[1:]],
            *[f"rbo:{lab}" for lab in labels[1:]]]
    parts = [f"<p>Metric <b>{html.escape(cmp.metric)}</b>; baseline <b>{html.escape(labels[0])}</b>; "
             f"paired {html.escape(cmp.pairs[0]['test']['method'] if cmp.pairs else '')} test.</p>",
             "<h2>Systems</h2>", _table(systems, ["system", *metrics]),
             "<h2>Against the baseline</h2>",
             _table(pairs, ["system", "wins", "losses", "ties", "delta", "p-value", f"Jaccard@{k}", "RBO"]),
             "<h2>Charts</h2>"]
    if images:
        parts.append(_figures(images))
    else:
        series = {lab: [r.get(f"delta:{lab}") for r in rows] for lab in labels[1:]}
        parts.append(svg_bar_chart([r["query"] for r in rows], series,
                                   title=f"{cmp.metric} delta per query vs {labels[0]}"))
    if slope:
        parts.append(slope)
    parts += ["<h2>Queries (largest loss first)</h2>", _table(rows, cols)]
    return _page(f"Comparison: {cmp.runs[0].suite}", parts)


def _sort_delta(row: Mapping[str, Any], labels: Sequence[str]) -> tuple:
    d = [row.get(f"delta:{lab}") for lab in labels[1:]]
    d = [v for v in d if v is not None]
    return (not d, min(d) if d else 0.0, row["query"])


def _config_text(config: Mapping[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in config.items())


def write_report(html_text: str, path: Union[str, Path]) -> Path:
    """Write the HTML to ``path`` (through a temp file, so a failed write leaves no half file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html_text, encoding="utf-8")
    tmp.replace(path)
    return path
