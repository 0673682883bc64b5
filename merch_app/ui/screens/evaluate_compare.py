"""Compare tab of the Evaluate screen: runs side by side, significance, rank overlap, snapshots."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from merch_app.evaluation.compare import (Comparison, compare_runs, diff_snapshot, list_snapshots, load_snapshot,
                                          rank_moves, save_snapshot)
from merch_app.ui.screens.common import bare_column
from merch_app.ui.screens.evaluate_widgets import SORT_ROLE, HBarChart, SlopeChart, SortableTable, cell
from merch_app.ui.workers import error_text

if TYPE_CHECKING:
    from merch_app.ui.screens.evaluate_screen import EvaluateScreen

SUMMARY = ["system", "W / L / T", "Δ mean", "95% CI", "p-value", "Jaccard@k", "RBO"]

NO_COMPARISON = "Run the suite with two or more systems (Results tab), then compare."


def _sorted_text_cell(text: str, sort_value: float):
    """A right-aligned text cell that sorts by ``sort_value``."""
    it = cell(text)
    it.setData(float(sort_value), SORT_ROLE)
    it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return it


class ComparePanel(QWidget):
    """Pick a baseline run and others; see deltas, wins/losses/ties, p-values, overlap and rank moves."""

    def __init__(self, screen: "EvaluateScreen") -> None:
        super().__init__()
        self.screen = screen
        self.snap_runner = screen.runner("snapshot")
        self.comparison: Optional[Comparison] = None
        self.diff: Optional[dict[str, Any]] = None
        self.system: Optional[str] = None

        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.baseline = QComboBox()
        self.baseline.setMinimumWidth(180)
        self.metric = QComboBox()
        self.metric.setMinimumWidth(90)
        self.method = QComboBox()
        self.method.addItems(["randomization", "bootstrap"])
        self.compare_button = QPushButton("Compare")
        self.compare_button.clicked.connect(self.compare)
        for label, w in (("Baseline:", self.baseline), ("Metric:", self.metric), ("Test:", self.method)):
            top.addWidget(QLabel(label))
            top.addWidget(w)
        top.addWidget(self.compare_button)
        top.addStretch(1)
        lay.addLayout(top)
        top = QHBoxLayout()  # snapshots on a row of their own: one row of both did not fit 1280 px
        top.addWidget(QLabel("Snapshot:"))
        self.snapshots = QComboBox()
        self.snapshots.setMinimumWidth(180)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.01)
        self.threshold.setValue(0.05)
        self.threshold.setPrefix("NDCG drop > ")
        self.save_snap = QPushButton("Save baseline as snapshot")
        self.save_snap.clicked.connect(self.save_snapshot)
        self.diff_button = QPushButton("Diff baseline with snapshot")
        self.diff_button.clicked.connect(self.diff_with_snapshot)
        for w in (self.snapshots, self.threshold, self.save_snap, self.diff_button):
            top.addWidget(w)
        top.addStretch(1)
        lay.addLayout(top)

        split = QSplitter(Qt.Orientation.Horizontal)
        left, ll = bare_column()
        ll.addWidget(QLabel("Compare the baseline with:"))
        self.others = QListWidget()
        self.others.setMaximumHeight(90)
        ll.addWidget(self.others)
        # the system names keep their width; the last column takes what is left
        self.summary = SortableTable(SUMMARY, stretch=len(SUMMARY) - 1)
        self.summary.view.setMaximumHeight(130)
        self.summary.view.selectionModel().currentRowChanged.connect(lambda cur, _p: self._pick_system(cur.row()))
        ll.addWidget(self.summary.view)
        self.status = QLabel(NO_COMPARISON)
        self.status.setWordWrap(True)
        ll.addWidget(self.status)
        self.queries = SortableTable(["query", "baseline", "system", "Δ", "Jaccard@k", "RBO", "regression"])
        self.queries.view.selectionModel().currentRowChanged.connect(lambda cur, _p: self._pick_query(cur.row()))
        self.queries.view.doubleClicked.connect(
            lambda idx: self.screen.window_.open_query(self.queries.text(idx.row())))
        ll.addWidget(self.queries.view, 1)
        split.addWidget(left)
        right, rl = bare_column()
        self.delta_chart = HBarChart("Per-query Δ vs baseline (ties left out; largest loss on top)", "Δ")
        self.slope = SlopeChart("Rank moves for the selected query")
        rl.addWidget(self.delta_chart.widget, 2)
        rl.addWidget(self.slope.widget, 3)
        split.addWidget(right)
        split.setSizes([620, 560])
        lay.addWidget(split, 1)

    # ------------------------------------------------------------------ runs
    def clear(self) -> None:
        """Forget the runs, the comparison and the snapshot diff (another workspace was opened)."""
        self.comparison, self.diff, self.system = None, None, None
        self.set_runs([], [])
        self.summary.set_rows([])
        self.queries.set_rows([])
        self.status.setText(NO_COMPARISON)
        self.delta_chart.set_bars([], [])
        self.slope.widget.setTitle("Rank moves for the selected query", size="10pt", color="#222")
        self.slope.set_moves([], "", "", {}, 10)
        self.refresh_snapshots()

    def set_runs(self, labels: list[str], metrics: list[str]) -> None:
        """Offer the kept runs (newest last) as baseline and comparison systems."""
        base = self.baseline.currentText()
        self.baseline.clear()
        self.baseline.addItems(labels)
        if base in labels:
            self.baseline.setCurrentText(base)
        known = {self.others.item(i).text() for i in range(self.others.count())}
        checked = {self.others.item(i).text() for i in range(self.others.count())
                   if self.others.item(i).checkState() == Qt.CheckState.Checked}
        self.others.clear()
        for lab in labels:  # new runs start checked
            it = QListWidgetItem(lab)
            it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            it.setCheckState(Qt.CheckState.Checked if (lab in checked or lab not in known) else Qt.CheckState.Unchecked)
            self.others.addItem(it)
        metric = self.metric.currentText()
        self.metric.clear()
        self.metric.addItems(metrics)
        if metric in metrics:
            self.metric.setCurrentText(metric)

    def refresh_snapshots(self) -> None:
        self.snapshots.clear()
        db, sid = self.screen.ctx.db, self.screen.suite_id()
        if db is None or sid is None:
            return
        for s in list_snapshots(db, sid):
            self.snapshots.addItem(f"{s['snapshot_id']}: {s['name']}", s["snapshot_id"])

    # --------------------------------------------------------------- compare
    def compare(self) -> None:
        runs = self.screen.runs
        base = self.baseline.currentText()
        others = [self.others.item(i).text() for i in range(self.others.count())
                  if self.others.item(i).checkState() == Qt.CheckState.Checked and self.others.item(i).text() != base]
        if base not in runs or not others:
            self.status.setText("Pick a baseline and at least one other run.")
            return
        try:
            self.comparison = compare_runs([runs[base]] + [runs[o] for o in others], self.metric.currentText(),
                                           method=self.method.currentText())
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        self.diff = None
        k = runs[base].k
        rows = []
        for p in self.comparison.pairs:
            t = p["test"]
            lo, hi = t["ci_delta"]
            rows.append([cell(p["system"]),  # W / L / T sorts by wins − losses, the interval by its lower end
                         _sorted_text_cell(f"{p['wins']} / {p['losses']} / {p['ties']}", p["wins"] - p["losses"]),
                         cell(t["delta"], signed=True), _sorted_text_cell(f"[{lo:.3f}, {hi:.3f}]", lo),
                         cell(t["p_value"], digits=4), cell(p[f"mean_jaccard@{k}"]), cell(p["mean_rbo"])])
        self.summary.set_rows(rows)
        p0 = self.comparison.pairs[0]
        verdict = "significant at 5%" if p0["test"]["p_value"] < 0.05 else "not significant at 5%"
        wins, losses, ties = p0["wins"], p0["losses"], p0["ties"]
        self.status.setText(f"{p0['system']} vs {base}: {self.comparison.metric} Δ {p0['test']['delta']:+.4f}, "
                            f"p = {p0['test']['p_value']:.4g} ({verdict}); {wins} win{'' if wins == 1 else 's'}, "
                            f"{losses} loss{'' if losses == 1 else 'es'}, {ties} tie{'' if ties == 1 else 's'}.")
        self._pick_system(0)

    def _pick_system(self, row: int) -> None:
        if self.comparison is None or not 0 <= row < len(self.comparison.pairs):
            return
        self.system = self.summary.text(row) or self.comparison.pairs[0]["system"]
        base, k = self.comparison.labels[0], self.comparison.runs[0].k
        rows, deltas = [], []
        for r in self.comparison.rows:
            d = r.get(f"delta:{self.system}")
            rows.append([cell(r["query"]), cell(r.get(base)), cell(r.get(self.system)), cell(d, signed=True),
                         cell(r.get(f"jaccard@{k}:{self.system}")), cell(r.get(f"rbo:{self.system}")), cell("")])
            if d is not None:
                deltas.append((d, r["query"]))
        losses = any(d < 0 for d, _q in deltas)
        self.queries.set_rows(rows, sort_column=3, ascending=losses)  # changed queries first
        self.queries.view.setColumnHidden(6, True)
        self._delta_chart(sorted(deltas))
        if self.queries.row_count():
            self.queries.view.selectRow(0)
            self._pick_query(0)

    def _delta_chart(self, deltas: list[tuple[float, str]]) -> None:
        """Non-zero deltas, largest loss on top (the 10 worst and 10 best when there are more)."""
        deltas = [(d, q) for d, q in deltas if abs(d) > 1e-9]
        half = self.delta_chart.max_rows // 2
        if len(deltas) > 2 * half:
            deltas = deltas[:half] + deltas[-half:]
        brushes = [QColor("#2ca02c") if d > 0 else QColor("#d62728") if d < 0 else QColor("#999999")
                   for d, _q in deltas]
        self.delta_chart.set_bars([q for _d, q in deltas], [d for d, _q in deltas], brushes=brushes)

    def _pick_query(self, row: int) -> None:
        if row < 0:
            return
        query = self.queries.text(row)
        if self.diff is not None:
            self._slope_snapshot(query)
            return
        if self.comparison is None or self.system is None:
            return
        base = self.comparison.runs[0]
        other = next(r for r in self.comparison.runs if r.label == self.system)
        left, right = base.by_query().get(query), other.by_query().get(query)
        if left is None or right is None:
            return
        self._slope(query, left.items, right.items, base.label, other.label, base.k)

    def _slope(self, query: str, left: list[str], right: list[str], l_label: str, r_label: str, k: int) -> None:
        moves = rank_moves(left, right, k)
        titles = self.screen.titles([m["item_id"] for m in moves])
        self.slope.widget.setTitle(f"Rank moves for “{query}”", size="10pt", color="#222")
        self.slope.set_moves(moves, l_label, r_label, titles, k)

    # ------------------------------------------------------------- snapshots
    def save_snapshot(self) -> None:
        run = self.screen.runs.get(self.baseline.currentText())
        sid = self.screen.suite_id()
        if run is None or sid is None:
            self.screen.show_error("Run a stored suite first; snapshots belong to a stored suite.")
            return
        path = self.screen.ctx.path

        def job(ctx):
            return save_snapshot(ctx.db(path), run, sid, run.label)

        self.snap_runner.start(job, cancel_previous=False, keep_stale=True,
                               on_result=lambda snap_id: (self.refresh_snapshots(), self.screen.show_info(
                                   f"Snapshot {snap_id} of “{run.label}” saved.")),
                               on_error=lambda exc, _tb: self.screen.show_error(error_text(exc)))

    def diff_with_snapshot(self) -> None:
        run = self.screen.runs.get(self.baseline.currentText())
        snap_id = self.snapshots.currentData()
        if run is None or snap_id is None:
            self.status.setText("Pick a baseline run and a snapshot.")
            return
        snap = load_snapshot(self.screen.ctx.db, snap_id)
        self.snapshot = snap
        self.diff = diff_snapshot(snap, run, threshold=self.threshold.value())
        k = run.k
        rows = [[cell(r["query"]), cell(r["before"]), cell(r["after"]), cell(r["delta"], signed=True),
                 cell(r.get(f"jaccard@{k}")), cell(r.get("rbo")), cell("REGRESSION" if r["regression"] else "")]
                for r in self.diff["rows"]]
        self.queries.set_rows(rows, sort_column=3, ascending=True)
        self.queries.view.setColumnHidden(6, False)
        self._delta_chart([(r["delta"], r["query"]) for r in self.diff["rows"] if r["delta"] is not None])
        d = self.diff
        self.status.setText(f"“{run.label}” vs snapshot “{snap['name']}”: {len(d['regressions'])} regressions "
                            f"(NDCG@10 fell by more than {d['threshold']:.2f}), {d['improvements']} improvements, "
                            f"{d['changed_lists']} lists changed.")

    def _slope_snapshot(self, query: str) -> None:
        run = self.screen.runs.get(self.baseline.currentText())
        before = self.snapshot["results"].get(query)
        after = run.by_query().get(query) if run else None
        if before is None or after is None:
            return
        self._slope(query, before["items"], after.items, f"snapshot {self.snapshot['name']}", run.label, run.k)
