"""History tab of the Evaluate screen: every kept run of the suite, its metric over time, and a diff of any two."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from merch_app.evaluation.compare import diff_snapshots, load_snapshot
from merch_app.evaluation.suite_history import HistoryPoint, suite_history
from merch_app.ui.charts import EmptyState, make_plot
from merch_app.ui.screens.common import bare_column
from merch_app.ui.screens.evaluate_widgets import SortableTable, cell
from merch_app.ui.widgets import shrinkable

if TYPE_CHECKING:
    from merch_app.ui.screens.evaluate_screen import EvaluateScreen

METRICS = ("ndcg@10", "mrr", "p@10")
NO_HISTORY = "No kept run of this suite yet:\nevery run of a stored suite (Run suite) is kept here"
LINE, CHANGE = "#1f77b4", "#d62728"


class HistoryChart:
    """The mean metric per kept run, in run order; runs after a change are red, with the change written above."""

    def __init__(self) -> None:
        self.widget = make_plot("Mean per kept run", "value", "run")
        self.widget.setMouseEnabled(x=False, y=False)
        self.line = self.widget.plot([], [], pen=pg.mkPen(LINE, width=2))
        self.dots = pg.ScatterPlotItem(size=9, pen=None)
        self.widget.addItem(self.dots)
        self.labels: list[pg.TextItem] = []
        self.empty = EmptyState(self.widget, NO_HISTORY)
        self.empty.show()

    def set_points(self, points: list[HistoryPoint]) -> None:
        scored = [(i, p) for i, p in enumerate(points) if p.value is not None]
        for t in self.labels:
            t.hide()
        if not scored:
            self.line.setData([], [])
            self.dots.setData([], [])
            self.empty.show()
            return
        self.empty.hide(grid=(False, True))
        x = np.array([i for i, _ in scored], float)
        y = np.array([p.value for _, p in scored], float)
        self.line.setData(x, y)
        self.dots.setData(x=x, y=y, brush=[pg.mkBrush(CHANGE if p.changes else LINE) for _, p in scored])
        changed = [(i, p) for i, p in scored if p.changes]
        while len(self.labels) < len(changed):
            t = pg.TextItem(color=CHANGE)
            self.widget.addItem(t)
            self.labels.append(t)
        last = len(points) - 1
        for t, (i, p) in zip(self.labels, changed):
            t.setText(change_words(p.changes))
            t.setAnchor((1.0 if i == last and i > 0 else 0.0 if i == 0 else 0.5, 1.2))  # stay inside the plot
            t.setPos(i, p.value)
            t.show()
        self.widget.getAxis("bottom").setTicks([[(i, f"#{p.snapshot_id}") for i, p in _spread(points)]])
        self.widget.setXRange(-0.5, max(len(points) - 0.5, 0.5), padding=0)
        self.widget.setYRange(0.0, 1.15, padding=0)


CHANGE_WORDS = ("model", "encoder", "weights", "rules", "judgments", "data")


def change_words(changes: list[str]) -> str:
    """The kinds of change in a few words for a chart label ("model, rules"); the table has the sentences."""
    text = " ".join(changes)
    return ", ".join(w for w in CHANGE_WORDS if w in text) or "changed"


def _spread(points: list[HistoryPoint], most: int = 12) -> list[tuple[int, HistoryPoint]]:
    """At most ``most`` evenly spaced tick positions, the last run always among them."""
    step = max(1, -(-len(points) // most))
    idx = sorted(set(range(len(points) - 1, -1, -step)))
    return [(i, points[i]) for i in idx]


def _tipped(item):
    """A cell whose whole text is also its tooltip (the column may cut it)."""
    item.setToolTip(item.text())
    return item


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class HistoryPanel(QWidget):
    """Kept runs of the selected suite: a table and a chart; pick any two to see which queries moved."""

    def __init__(self, screen: "EvaluateScreen") -> None:
        super().__init__()
        self.screen = screen
        self.points: list[HistoryPoint] = []
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.metric = QComboBox()
        self.metric.addItems(METRICS)
        self.metric.currentIndexChanged.connect(self.refresh)
        self.before = QComboBox()
        self.after = QComboBox()
        for combo in (self.before, self.after):
            combo.setMinimumWidth(150)
        self.diff_button = QPushButton("Diff")
        self.diff_button.clicked.connect(self.diff_selected)
        for label, w in (("Metric:", self.metric), ("Before:", self.before), ("After:", self.after)):
            top.addWidget(QLabel(label))
            top.addWidget(w)
        top.addWidget(self.diff_button)
        top.addStretch(1)
        lay.addLayout(top)
        self.summary = shrinkable(QLabel())  # a row of its own: beside the combos it was cut at 1280 px
        lay.addWidget(self.summary)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.runs = SortableTable(["run", "when", "system", "value", "what changed"], stretch=4)
        split.addWidget(self.runs.view)
        right, rl = bare_column()
        self.chart = HistoryChart()
        rl.addWidget(self.chart.widget, 3)
        self.diff_table = SortableTable(["query", "before", "after", "Δ"], stretch=0)
        rl.addWidget(self.diff_table.view, 2)
        split.addWidget(right)
        split.setSizes([560, 640])
        lay.addWidget(split, 1)

    def refresh(self) -> None:
        """Reload the kept runs of the screen's suite (a quick read on the GUI connection)."""
        sid, db = self.screen.suite_id(), self.screen.ctx.db
        self.points = suite_history(db, sid, self.metric.currentText()) if sid is not None and db is not None else []
        rows = [[cell(p.snapshot_id), cell(p.created[:16].replace("T", " ")), cell(p.label), cell(p.value),
                 _tipped(cell("; ".join(p.changes)))] for p in self.points]
        self.runs.set_rows(rows, sort_column=0, ascending=False)
        self.chart.set_points(self.points)
        for combo, pick in ((self.before, -2), (self.after, -1)):
            combo.blockSignals(True)
            combo.clear()
            for p in reversed(self.points):
                combo.addItem(f"#{p.snapshot_id} {p.created[5:16].replace('T', ' ')} {_short(p.label, 18)}",
                              p.snapshot_id)
            if len(self.points) >= -pick:
                combo.setCurrentIndex(-pick - 1)
            combo.blockSignals(False)
        self.diff_button.setEnabled(len(self.points) >= 2)
        self.diff_table.set_rows([])
        self.summary.setText(f"{len(self.points)} kept runs" if self.points else "")

    def diff_selected(self) -> Optional[dict]:
        """Per-query changes between the two chosen runs, worst first."""
        a, b = self.before.currentData(), self.after.currentData()
        if a is None or b is None or self.screen.ctx.db is None:
            return None
        db = self.screen.ctx.db
        threshold = self.screen.compare.threshold.value()
        d = diff_snapshots(load_snapshot(db, a), load_snapshot(db, b), metric=self.metric.currentText(),
                           threshold=threshold)
        self.diff_table.set_rows([[cell(r["query"]), cell(r["before"]), cell(r["after"]),
                                   cell(r["delta"], signed=True)] for r in d["rows"]], sort_column=3, ascending=True)
        n, lists = len(d["regressions"]), d["changed_lists"]
        text = (f"#{a} → #{b}: {n} {'query' if n == 1 else 'queries'} fell by more than {threshold:.2f}, "
                f"{d['improvements']} rose, {lists} {'list' if lists == 1 else 'lists'} changed")
        self.summary.setText(text)
        self.summary.setToolTip(text)
        return d
