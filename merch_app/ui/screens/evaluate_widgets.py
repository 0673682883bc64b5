"""Small widgets shared by the Evaluate and Rules screens: sortable tables, slope and means charts."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from merch_app.evaluation import report
from merch_app.ui.charts import SERIES_COLOURS, EmptyState, category_axis, export_png, make_plot

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
GRADE_COLOURS = {0: "#f2d7d5", 1: "#fdebd0", 2: "#d5f5e3", 3: "#abebc6"}
GOOD, BAD = QColor("#1e7b34"), QColor("#b42318")


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def cell(value: Any, *, signed: bool = False, digits: int = 3) -> QStandardItem:
    """A read-only cell showing ``value`` that sorts by its numeric value (None last)."""
    text = fmt(value, digits)
    if signed and isinstance(value, float) and not math.isnan(value):
        text = f"{value:+.{digits}f}"
    it = QStandardItem(text)
    it.setEditable(False)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        it.setData(float(value), SORT_ROLE)
        it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if signed and value:
            it.setForeground(QBrush(GOOD if value > 0 else BAD))
    else:
        it.setData(float("inf") if value is None else str(value).casefold(), SORT_ROLE)
    return it


class SortableTable:
    """A QTableView over a QStandardItemModel with numeric sorting (``rows`` are lists of cells)."""

    def __init__(self, columns: Sequence[str], stretch: int = 0) -> None:
        self.model = QStandardItemModel(0, len(columns))
        self.model.setHorizontalHeaderLabels(list(columns))
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.setAlternatingRowColors(True)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
        self.columns = list(columns)

    def set_rows(self, rows: Sequence[Sequence[QStandardItem]], sort_column: Optional[int] = None,
                 ascending: bool = True) -> None:
        self.view.setSortingEnabled(False)
        self.model.removeRows(0, self.model.rowCount())
        for r in rows:
            self.model.appendRow(list(r))
        self.view.setSortingEnabled(True)
        if sort_column is not None:
            order = Qt.SortOrder.AscendingOrder if ascending else Qt.SortOrder.DescendingOrder
            self.view.sortByColumn(sort_column, order)

    def text(self, view_row: int, column: int = 0) -> str:
        return self.proxy.index(view_row, column).data() or ""

    def row_count(self) -> int:
        return self.proxy.rowCount()

    def current_row(self) -> int:
        idx = self.view.currentIndex()
        return idx.row() if idx.isValid() else -1


class SlopeChart:
    """Rank moves of one query between two systems: left ranks, right ranks, a line per item."""

    def __init__(self, title: str = "Rank moves", label_chars: int = 20, min_height: int = 260,
                 empty_text: str = "Pick a query to see\nits rank moves") -> None:
        self.label_chars = label_chars  # item titles are cut to this many characters
        self.widget = make_plot(title, min_height=min_height)
        self.widget.showGrid(x=False, y=False)
        self.widget.setMouseEnabled(x=False, y=False)
        self.widget.getViewBox().invertY(True)
        self.widget.getAxis("bottom").setTicks([[(0, "left"), (1, "right")]])
        self.widget.getAxis("left").setLabel("rank")
        self.widget.getAxis("left").setStyle(showValues=False)  # the labels carry the ranks; numbers collided
        self.lines: list[pg.PlotDataItem] = []
        self.texts: list[pg.TextItem] = []
        self.moves: list[dict] = []
        self.empty = EmptyState(self.widget, empty_text)
        self.empty.show()

    def set_moves(self, moves: Sequence[dict], left: str, right: str, titles: dict[str, str], k: int,
                  empty: Optional[str] = None) -> None:
        """``moves`` = rows of :func:`merch_app.evaluation.compare.rank_moves`; none: ``empty`` (or the default)."""
        self.moves = list(moves)
        if self.moves:
            self.empty.hide(grid=(False, False))
        self.widget.getAxis("bottom").setTicks([[(0, _short(left, 24)), (1, _short(right, 24))]])
        while len(self.lines) < len(moves):
            self.lines.append(self.widget.plot([], []))
        while len(self.texts) < 2 * len(moves):
            t = pg.TextItem(color="#222")
            self.widget.addItem(t)
            self.texts.append(t)
        out = k + 1.5
        for n, line in enumerate(self.lines):
            if n >= len(moves):
                line.setData([], [])
                continue
            m = moves[n]
            y0 = m["left"] if m["left"] is not None else out
            y1 = m["right"] if m["right"] is not None else out
            colour = "#1f77b4" if m["move"] is None else ("#2ca02c" if m["move"] > 0 else
                                                         "#d62728" if m["move"] < 0 else "#999999")
            line.setData([0, 1], [y0, y1], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6,
                         symbolBrush=colour, symbolPen=None)
        for t in self.texts:
            t.hide()
        for n, m in enumerate(moves):
            label = _short(titles.get(m["item_id"], m["item_id"]) or m["item_id"], self.label_chars)
            if m["left"] is not None:
                t = self.texts[2 * n]
                t.setText(f"{m['left']}. {label}")
                t.setAnchor((1.0, 0.5))
                t.setPos(-0.03, m["left"])
                t.show()
            if m["right"] is not None:
                t = self.texts[2 * n + 1]
                t.setText(f"{m['right']}. {label}")
                t.setAnchor((0.0, 0.5))
                t.setPos(1.03, m["right"])
                t.show()
        if not self.moves:
            self.empty.show(empty)
            return
        self.widget.setXRange(-1.25, 2.25, padding=0)
        self.widget.setYRange(0.3, out + 0.6, padding=0)


class HBarChart:
    """Horizontal bars, one labelled row per category (e.g. per-query NDCG or delta), first row on top."""

    def __init__(self, title: str = "", bottom: str = "", max_rows: int = 20) -> None:
        self.widget = make_plot(title, "", bottom, min_height=220)
        self.widget.showGrid(x=True, y=False, alpha=0.2)
        self.widget.setMouseEnabled(x=False, y=False)
        self.widget.getViewBox().invertY(True)
        self.bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.7, pen=None)
        self.widget.addItem(self.bars)
        self.widget.addItem(pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen("#888")))
        self.max_rows = max_rows
        self.labels: list[str] = []
        self.values: list[float] = []
        self.empty = EmptyState(self.widget, "No queries to show yet")

    def set_bars(self, labels: Sequence[str], values: Sequence[float], brushes: Optional[list] = None,
                 lo: Optional[float] = None, hi: Optional[float] = None) -> None:
        """Show the first ``max_rows`` rows (callers sort them, e.g. worst first)."""
        self.labels = [str(v) for v in labels][: self.max_rows]
        self.values = [float(v) for v in values][: self.max_rows]
        n = len(self.values)
        v = np.asarray(self.values, float)
        if n:
            self.empty.hide(grid=(True, False))
        else:
            self.empty.show()
        opts = dict(x0=np.minimum(v, 0.0), y=np.arange(n, dtype=float), width=np.abs(v), height=0.7)
        if brushes is not None:
            opts["brushes"] = list(brushes)[: self.max_rows]
        self.bars.setOpts(**opts)
        self.widget.getAxis("left").setTicks([[(i, _short(lab, 22)) for i, lab in enumerate(self.labels)]])
        lo = min(0.0, float(v.min())) if lo is None and n else (lo or 0.0)
        hi = max(0.0, float(v.max())) if hi is None and n else (hi if hi is not None else 1.0)
        span = (hi - lo) or 1.0
        self.widget.setXRange(lo - 0.02 * span, hi + 0.02 * span, padding=0)
        self.widget.setYRange(-0.6, max(n - 0.4, 0.6), padding=0)


class MeansChart:
    """Mean of each metric per run with its bootstrap 95% CI as error bars."""

    def __init__(self, title: str = "Means with 95% bootstrap CI") -> None:
        self.widget = make_plot(title, "value", min_height=200)
        self.widget.showGrid(x=False, y=True, alpha=0.2)
        self.widget.setMouseEnabled(x=False, y=False)
        category_axis(self.widget)
        self.legend = self.widget.addLegend(offset=(10, 5), colCount=3)
        self.bars: dict[str, pg.BarGraphItem] = {}
        self.errors: dict[str, pg.ErrorBarItem] = {}

    def set_runs(self, runs: Sequence) -> None:
        metrics = list(runs[0].metric_names) if runs else []
        for name in list(self.bars):
            if name not in {r.label for r in runs}:
                self.widget.removeItem(self.bars.pop(name))
                self.widget.removeItem(self.errors.pop(name))
                self.legend.removeItem(name)
        width = 0.8 / max(len(runs), 1)
        for s, run in enumerate(runs):
            colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
            if run.label not in self.bars:
                self.bars[run.label] = pg.BarGraphItem(x=[], height=[], width=width, brush=colour, pen=None)
                self.errors[run.label] = pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), pen=pg.mkPen("#222"))
                self.widget.addItem(self.bars[run.label])
                self.widget.addItem(self.errors[run.label])
                self.legend.addItem(self.bars[run.label], run.label)
            x = np.arange(len(metrics)) - 0.4 + width * (s + 0.5)
            mean = np.array([run.mean.get(m, np.nan) for m in metrics], float)
            lo = np.array([run.ci[m][0] for m in metrics], float)
            hi = np.array([run.ci[m][1] for m in metrics], float)
            self.bars[run.label].setOpts(x=x, height=np.nan_to_num(mean), width=width, brush=colour)
            self.errors[run.label].setData(x=x, y=np.nan_to_num(mean), top=np.nan_to_num(hi - mean),
                                           bottom=np.nan_to_num(mean - lo), beam=width * 0.4)
        self.widget.getAxis("bottom").setTicks([[(i, m) for i, m in enumerate(metrics)]])
        self.widget.setXRange(-0.6, max(len(metrics) - 0.4, 0.6), padding=0)
        self.widget.setYRange(0, 1.3, padding=0)


def _short(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def grade_brush(grade: Optional[int]) -> QBrush:
    return QBrush(QColor(GRADE_COLOURS[grade])) if grade is not None else QBrush()


def write_report_files(html_path: Path, run, charts: dict[str, pg.PlotWidget], comparison=None,
                       comparison_charts: Optional[dict[str, pg.PlotWidget]] = None) -> list[Path]:
    """The run's HTML report (charts as PNG) and CSV; the comparison's beside it as ``*_comparison``.

    Returns the files written.
    """
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        def pngs(widgets: dict, prefix: str) -> dict[str, Path]:
            return {title: export_png(w, Path(tmp) / f"{prefix}{n}.png") for n, (title, w) in enumerate(widgets.items())}

        out.append(report.write_report(report.run_report_html(run, pngs(charts, "run")), html_path))
        out.append(report.write_csv(report.run_rows(run), html_path.with_suffix(".csv")))
        if comparison is not None:
            cpath = html_path.with_name(html_path.stem + "_comparison.html")
            html = report.comparison_report_html(comparison, pngs(comparison_charts or {}, "cmp"))
            out.append(report.write_report(html, cpath))
            out.append(report.write_csv(report.comparison_rows(comparison), cpath.with_suffix(".csv")))
    return out
