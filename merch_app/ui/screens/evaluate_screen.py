"""Evaluate screen: judged query suites, suite runs with metrics, comparisons and reports."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from merch_app.evaluation.behaviour_suite import generate_from_behaviour
from merch_app.evaluation.click_model import coec_judgments
from merch_app.evaluation.judgment_merge import DEFAULT_MERGE
from merch_app.evaluation.raters import agreement
from merch_app.evaluation.suite_data import Suite
from merch_app.evaluation.suite_exchange import read_any_suite_file, write_suite_as
from merch_app.evaluation.suite_run import SuiteRun
from merch_app.evaluation.suites import delete_suite, list_suites, load_suite, save_suite, suite_queries
from merch_app.insights.common import item_titles
from merch_app.paths import resource_path
from merch_app.ranking.types import Weights
from merch_app.services import evaluate_jobs as ej
from merch_app.ui.screens.base import Screen
from merch_app.ui.screens.common import bare_column
from merch_app.ui.screens.evaluate_compare import ComparePanel
from merch_app.ui.screens.evaluate_history import HistoryPanel
from merch_app.ui.screens.evaluate_judge import JudgePanel, agreement_text
from merch_app.ui.screens.evaluate_widgets import HBarChart, MeansChart, SortableTable, cell, write_report_files
from merch_app.ui.widgets import shrinkable
from merch_app.ui.workers import error_text

MAX_RUNS = 6
BUTTON_TIPS = {"behaviour": "Grade from searches followed by click (1), cart (2), purchase (3)",
               "clicks": "Grade by clicks over the clicks expected at the positions shown (COEC): needs "
                         "'impression' events with a position"}
SUITE_FILTER = "Suites: CSV, Quepid CSV, TREC qrels, RRE JSON (*.csv *.qrels *.txt *.json);;All files (*)"
NO_RUN = "Run a suite to see per-query metrics (worst first). Double-click a query to open it on the Query screen."
EXPORT_FORMATS = {"Suite CSV: query,item_id,grade (*.csv)": "csv", "Quepid ratings CSV (*.csv)": "quepid",
                  "TREC qrels (*.qrels *.txt)": "qrels", "RRE ratings JSON (*.json)": "rre"}
EXPORT_FILTERS = ";;".join(EXPORT_FORMATS)
MERGE_CHOICES = {"use the mean grade, rounded half up": "mean", "use the highest grade": "max",
                 "use the last row in the file": "latest", "refuse the file": "error"}


def import_message(s: Suite) -> str:
    """The sentence shown after a suite file was imported."""
    text = f"Suite “{s.name}”: {len(s.queries)} queries, {s.n_judgments} judgments"
    if s.pairs_merged:
        how = {"mean": "their mean grade (rounded half up)", "max": "their highest grade",
               "latest": "the last row in the file"}.get(s.merge_policy or "", s.merge_policy)
        text += (f"; {s.pairs_merged:,} (query, item) pairs were judged more than once and merged to {how} "
                 f"({len(s.raw):,} rows kept)")
    return text + "."


def regression_note(kept: ej.KeptRun) -> str:
    """The red line under a run: queries that fell since the suite's previous run, or why it was not kept."""
    gate = kept.gate
    text = ""
    if gate is not None and gate.regressions:
        shown = ", ".join(f"“{q}”" for q in gate.regressions[:5]) + (" …" if len(gate.regressions) > 5 else "")
        fell = f"{len(gate.regressions)} {'query' if len(gate.regressions) == 1 else 'queries'} fell"
        text = (f"<br><span style='color:#b42318'><b>{fell}</b> by more than the "
                f"Compare tab's NDCG drop since the previous run ({gate.against}): {shown}. "
                f"The History tab shows what changed.</span>")
    if kept.not_kept:
        text += f"<br><span style='color:#555'>{kept.not_kept[0].upper() + kept.not_kept[1:]}.</span>"
    return text


class EvaluateScreen(Screen):
    """Suites on top; Judge / Results / Compare tabs below."""

    title = "Evaluate"

    def __init__(self, window) -> None:
        super().__init__(window)
        self.run_runner = self.runner("suite")
        self.io_runner = self.runner("suite-io")
        self.encoder_spec: Optional[str] = None  # None: the model's encoder (tests use "hashing:64")
        self.generation = 0
        self.runs: "OrderedDict[str, SuiteRun]" = OrderedDict()
        self.run: Optional[SuiteRun] = None
        self.run_suite_id: Optional[int] = None
        self._suites: list[dict] = []
        self._build()

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Suite:"))
        self.suite_combo = QComboBox()
        self.suite_combo.setMinimumWidth(200)
        self.suite_combo.currentIndexChanged.connect(self._suite_changed)
        bar.addWidget(self.suite_combo)
        self.suite_info = shrinkable(QLabel())  # a long description must not widen the window
        self.suite_info.setStyleSheet("color: #555;")
        bar.addWidget(self.suite_info, 1)
        self.buttons = {}
        for key, text, slot in (("new", "New…", self._new_suite_dialog), ("import", "Import…", self._import_dialog),
                                ("export", "Export…", self._export_dialog),
                                ("behaviour", "From behaviour", self.generate_suite),
                                ("clicks", "From clicks", self.generate_click_suite),
                                ("demo", "Add demo suite", self.add_demo_suite),
                                ("delete", "Delete", self.delete_suite)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            self.buttons[key] = b
            if key in BUTTON_TIPS:
                b.setToolTip(BUTTON_TIPS[key])
            bar.addWidget(b)
        lay.addLayout(bar)

        sysrow = QHBoxLayout()
        sysrow.addWidget(QLabel("System:"))
        self.label_edit = QLineEdit()
        self.label_edit.setPlaceholderText("name (default: model + weights)")
        self.label_edit.setMaximumWidth(180)
        self.model_combo = QComboBox()
        self.weight_boxes: dict[str, QDoubleSpinBox] = {}
        sysrow.addWidget(self.label_edit)
        sysrow.addWidget(self.model_combo)
        for key in ("lex", "text", "cf", "pop"):
            box = QDoubleSpinBox()
            box.setRange(0.0, 5.0)
            box.setSingleStep(0.05)
            box.setValue(getattr(Weights(), key))
            box.setPrefix(f"{key} ")
            self.weight_boxes[key] = box
            sysrow.addWidget(box)
        self.rules_check = QCheckBox("rules")
        self.rules_check.setChecked(True)
        self.rules_check.setToolTip("Apply the workspace's enabled merchandising rules")
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 100)
        self.k_spin.setValue(10)
        self.k_spin.setPrefix("k = ")
        self.run_button = QPushButton("Run suite")
        self.run_button.setStyleSheet("font-weight: bold;")
        self.run_button.clicked.connect(self.run_suite)
        self.report_button = QPushButton("Export report…")
        self.report_button.clicked.connect(self._report_dialog)
        for w in (self.rules_check, self.k_spin, self.run_button, self.report_button):
            sysrow.addWidget(w)
        sysrow.addStretch(1)
        lay.addLayout(sysrow)

        self.tabs = QTabWidget()
        self.judge = JudgePanel(self)
        self.judge.judged.connect(lambda *_: self._refresh_info())
        self.tabs.addTab(self.judge, "Judge")
        self.tabs.addTab(self._results_tab(), "Results")
        self.compare = ComparePanel(self)
        self.tabs.addTab(self.compare, "Compare")
        self.history = HistoryPanel(self)
        self.tabs.addTab(self.history, "History")
        lay.addWidget(self.tabs, 1)

    def _results_tab(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        self.mean_label = QLabel(NO_RUN)
        self.mean_label.setWordWrap(True)
        lay.addWidget(self.mean_label)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.results = SortableTable(["query", "ndcg@10", "p@k", "mrr", "unjudged", "relevant"])
        self.results.view.doubleClicked.connect(lambda idx: self.open_query_row(idx.row()))
        split.addWidget(self.results.view)
        charts, cl = bare_column()
        self.ndcg_chart = HBarChart("NDCG@10 of the 20 worst queries", "NDCG@10")
        self.means_chart = MeansChart()
        cl.addWidget(self.ndcg_chart.widget, 3)
        cl.addWidget(self.means_chart.widget, 2)
        split.addWidget(charts)
        split.setSizes([560, 640])
        lay.addWidget(split, 1)
        return w

    # ----------------------------------------------------------------- hooks
    def on_workspace_changed(self) -> None:
        self.generation += 1
        self.judge.load_rater()
        self.runs.clear()
        self.run, self.run_suite_id = None, None
        self.results.set_rows([])
        self.ndcg_chart.set_bars([], [])
        self.means_chart.set_runs([])
        self.mean_label.setText(NO_RUN)
        self.compare.clear()
        self.refresh_suites()
        self.refresh_models()

    def on_data_changed(self) -> None:
        self.generation += 1

    def on_models_changed(self) -> None:
        self.generation += 1
        self._models_stale = True  # read when shown: not in the GUI thread's pass that ends a training
        if self.isVisible():
            self.on_shown()

    def on_suites_changed(self) -> None:
        self.refresh_suites()  # keeps the selected suite; its queries, info and history are read again

    def on_rules_changed(self) -> None:
        self.generation += 1  # runs with rules on rank differently now

    def on_shown(self) -> None:
        self.refresh_suites()
        if getattr(self, "_models_stale", False):
            self.refresh_models()

    # ---------------------------------------------------------------- suites
    def refresh_suites(self, select: Optional[str] = None) -> None:
        """Reload the suite list (a quick read on the GUI connection)."""
        current = select or self.suite_combo.currentData()
        self._suites = list_suites(self.ctx.db) if self.ctx.db is not None else []
        self.suite_combo.blockSignals(True)
        self.suite_combo.clear()
        for s in self._suites:
            self.suite_combo.addItem(s["name"], s["name"])
        self.suite_combo.addItem("Behaviour (events with queries)", ej.BEHAVIOUR)
        idx = self.suite_combo.findData(current) if current else 0
        self.suite_combo.setCurrentIndex(max(idx, 0))
        self.suite_combo.blockSignals(False)
        has_demo = any(s["name"] == "demo" for s in self._suites)
        self.buttons["demo"].setVisible(not has_demo and resource_path("demo", "demo_suite.csv").exists())
        self._suite_changed()

    def refresh_models(self) -> None:
        self._models_stale = False
        self.model_combo.clear()
        if self.ctx.db is None:
            return
        for label, model_id in ej.model_choices(self.ctx.db):
            self.model_combo.addItem(label, model_id)

    def suite_name(self) -> Optional[str]:
        return self.suite_combo.currentData()

    def suite_id(self) -> Optional[int]:
        name = self.suite_name()
        return next((s["suite_id"] for s in self._suites if s["name"] == name), None)

    def _suite_changed(self) -> None:
        self._refresh_info()
        name = self.suite_name()
        stored = name not in (None, ej.BEHAVIOUR)
        self.buttons["export"].setEnabled(stored)
        self.buttons["delete"].setEnabled(stored)
        queries = []
        if stored and self.ctx.db is not None:
            queries = suite_queries(self.ctx.db, self.suite_id())
        self.judge.set_queries(queries)
        self.compare.refresh_snapshots()
        self.history.refresh()

    def _refresh_info(self) -> None:
        name = self.suite_name()
        if name == ej.BEHAVIOUR:
            self._set_suite_info("judgments generated from searches followed by click (1), cart (2), purchase (3)")
            return
        if self.ctx.db is not None and name:
            self._suites = list_suites(self.ctx.db)
        s = next((s for s in self._suites if s["name"] == name), None)
        team = agreement_text(agreement(self.ctx.db, name)) if s and self.ctx.db is not None else ""
        self._set_suite_info((f"{team} · " if team else "")  # first: the part that changes while a team judges
                             + f"{s['queries']} queries · {s['judgments']} judgments · {s['source'] or 'gui'}"
                             if s else "no suite yet: New… / Import… / From behaviour")

    def _set_suite_info(self, text: str) -> None:
        self.suite_info.setText(text)
        self.suite_info.setToolTip(text)  # the label may be cut on a narrow window

    def suite_edited(self) -> None:
        self._refresh_info()

    def new_suite(self, name: str) -> None:
        """Create an empty suite ``name`` and select it (queries are added on the Judge tab)."""
        name = name.strip()
        if not name:
            return
        path = self.ctx.path
        self.io_runner.start(lambda ctx: save_suite(ctx.db(path), Suite(name, source="gui"), replace=False),
                             cancel_previous=False, keep_stale=True,
                             on_result=lambda _sid: self.refresh_suites(select=name),
                             on_error=lambda exc, _tb: self.show_error(error_text(exc)))

    def import_suite(self, file: Path, name: Optional[str] = None, merge: str = DEFAULT_MERGE) -> None:
        """Import a CSV/qrels file as a suite (replaces a suite of the same name); repeated pairs merged by ``merge``."""
        path = self.ctx.path

        def job(ctx):
            s = read_any_suite_file(file, name, merge=merge)
            save_suite(ctx.db(path), s)
            return s

        self.io_runner.start(job, cancel_previous=False, keep_stale=True, label=f"Importing {Path(file).name}",
                             on_result=lambda s: (self.refresh_suites(select=s.name), self.show_info(import_message(s))),
                             on_error=lambda exc, _tb: self.show_error(error_text(exc)))

    def add_demo_suite(self) -> None:
        self.import_suite(resource_path("demo", "demo_suite.csv"), "demo")

    def export_suite(self, file: Path, fmt: Optional[str] = None) -> None:
        """Write the selected suite to ``file`` as ``fmt`` (default: by the file's extension, see write_suite_as)."""
        name, path = self.suite_name(), self.ctx.path

        def job(ctx):
            s = load_suite(ctx.db(path), name)
            return write_suite_as(s, file, fmt)

        self.io_runner.start(job, cancel_previous=False, keep_stale=True,
                             on_result=lambda _p: self.show_info(f"Suite “{name}” written to {file}."),
                             on_error=lambda exc, _tb: self.show_error(error_text(exc)))

    def generate_suite(self) -> None:
        path = self.ctx.path

        def job(ctx):
            s = generate_from_behaviour(ctx.db(path), "behaviour", progress=ctx.progress, cancel=ctx.cancel)
            save_suite(ctx.db(path), s)
            return s

        self.io_runner.start(job, label="Generating a suite from behaviour",
                             on_result=lambda s: self.refresh_suites(select=s.name),
                             on_error=lambda exc, _tb: self.show_error(error_text(exc)))

    def generate_click_suite(self) -> None:
        """Grade (query, item) pairs by clicks over expected clicks (position bias corrected) and store the suite."""
        path = self.ctx.path

        def job(ctx):
            judged = coec_judgments(ctx.db(path), progress=ctx.progress, cancel=ctx.cancel)
            save_suite(ctx.db(path), judged.suite)
            return judged

        def done(judged) -> None:
            self.refresh_suites(select=judged.suite.name)
            s = judged.suite
            self.show_info(f"Suite “{s.name}”: {len(s.queries):,} queries, {s.n_judgments:,} (query, item) pairs "
                           "graded by clicks over the clicks expected at the positions they were shown.")

        self.io_runner.start(job, label="Grading by clicks (COEC)", on_result=done,
                             on_error=lambda exc, _tb: self.show_error(error_text(exc)))

    def delete_suite(self) -> None:
        name, path = self.suite_name(), self.ctx.path
        if name in (None, ej.BEHAVIOUR):
            return
        self.io_runner.start(lambda ctx: delete_suite(ctx.db(path), name), cancel_previous=False, keep_stale=True,
                             on_result=lambda _ok: self.refresh_suites(),
                             on_error=lambda exc, _tb: self.show_error(error_text(exc)))

    # ------------------------------------------------------------------- run
    def system(self) -> ej.System:
        weights = Weights(**{k: float(b.value()) for k, b in self.weight_boxes.items()})
        model_id = self.model_combo.currentData()
        sys_ = ej.System(model_id=model_id, weights=weights, rules_on=self.rules_check.isChecked())
        label = self.label_edit.text().strip() or (
            f"{self.model_combo.currentText() or 'active model'} · lex {weights.lex:g}/text {weights.text:g}/"
            f"cf {weights.cf:g}/pop {weights.pop:g}{'' if sys_.rules_on else ' · no rules'}")
        return ej.System(label, model_id, weights, sys_.rules_on)

    def job_args(self) -> tuple:
        return (self.ctx.path, self.encoder_spec, self.generation)

    def run_suite(self) -> None:
        """Run the selected suite with the system in the controls (in the worker)."""
        ref = self.suite_name()
        if self.ctx.path is None or ref is None:
            self.show_error("Pick a suite first.")
            return
        system, (path, enc, gen), k = self.system(), self.job_args(), self.k_spin.value()
        self.mean_label.setText(f"Running “{ref}” with {system.label}…")
        self.tabs.setCurrentIndex(1)
        threshold = self.compare.threshold.value()
        self.run_runner.start(lambda ctx: ej.run_suite_job(ctx, path, ref, system, enc, gen, k, threshold),
                              label=f"Running suite {ref}", on_result=self._show_run,
                              on_error=lambda exc, _tb: self.mean_label.setText(
                                  f"<span style='color:#b42318'>Cannot run the suite: {error_text(exc)}</span>"))

    def _show_run(self, kept: ej.KeptRun) -> None:
        run, self.run_suite_id = kept.run, kept.suite_id
        self.run = run
        self.runs.pop(run.label, None)
        self.runs[run.label] = run
        while len(self.runs) > MAX_RUNS:
            self.runs.popitem(last=False)
        k = run.k
        self.results.model.setHorizontalHeaderLabels(["query", "ndcg@10", f"p@{k}", "mrr", f"unjudged@{k}",
                                                      "relevant"])
        rows = [[cell(q.query), cell(q.metrics["ndcg@10"]), cell(q.metrics[f"p@{k}"]), cell(q.metrics["mrr"]),
                 cell(q.unjudged), cell(q.n_relevant)] for q in run.queries]
        self.results.set_rows(rows, sort_column=1, ascending=True)
        worst = [q for q in run.worst_first() if q.scored]
        vals = [q.metrics["ndcg@10"] for q in worst]
        brushes = [QColor("#d62728") if v < 0.5 else QColor("#ff7f0e") if v < 0.8 else QColor("#2ca02c")
                   for v in vals]
        self.ndcg_chart.set_bars([q.query for q in worst], vals, brushes=brushes, lo=0.0, hi=1.0)
        self.means_chart.set_runs(list(self.runs.values()))
        parts = [f"{m} <b>{run.mean[m]:.3f}</b> [{run.ci[m][0]:.3f}, {run.ci[m][1]:.3f}]" for m in run.metric_names]
        self.mean_label.setText(f"<b>{run.label}</b> on “{run.suite}”: " + " · ".join(parts) +
                                f" · mean unjudged@{k} {run.mean_unjudged:.2f} · {run.n_scored}/{len(run.queries)}"
                                f" queries scored · {run.seconds:.1f}s. Double-click a query to open it."
                                + regression_note(kept))
        self.compare.set_runs(list(self.runs), run.metric_names)
        if kept.snapshot_id is not None:
            self.compare.refresh_snapshots()
            self.history.refresh()

    def open_query_row(self, view_row: int) -> None:
        text = self.results.text(view_row)
        if text:
            self.window_.open_query(text)

    def titles(self, item_ids: list[str]) -> dict[str, str]:
        """Titles of a few items (quick read on the GUI connection)."""
        return {} if self.ctx.db is None else {i: t for i, (t, _c) in item_titles(self.ctx.db, item_ids).items()}

    # --------------------------------------------------------------- reports
    def export_report(self, html_path: Path) -> list[Path]:
        """Write the evaluation (and comparison, if any) as HTML with PNG charts, plus CSV files."""
        if self.run is None:
            raise ValueError("run a suite first")
        charts = {"NDCG@10 of the worst queries": self.ndcg_chart.widget, "Means with 95% CI": self.means_chart.widget}
        cmp = self.compare.comparison
        cmp_charts = {"Per-query delta": self.compare.delta_chart.widget, "Rank moves": self.compare.slope.widget}
        return write_report_files(Path(html_path), self.run, charts, cmp, cmp_charts if cmp is not None else {})

    # ---------------------------------------------------------------- dialogs
    def _new_suite_dialog(self) -> None:
        name, ok = QInputDialog.getText(self, "New suite", "Name of the new suite:")
        if ok and name.strip():
            self.new_suite(name)

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import suite", "", SUITE_FILTER)
        if not path:
            return
        labels = list(MERGE_CHOICES)
        choice, ok = QInputDialog.getItem(self, "Import suite", "When a (query, item) pair is judged more than once:",
                                          labels, 0, False)
        if ok:
            self.import_suite(Path(path), merge=MERGE_CHOICES[choice])

    def _export_dialog(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(self, "Export suite", f"{self.suite_name()}.csv", EXPORT_FILTERS)
        if path:
            self.export_suite(Path(path), EXPORT_FORMATS.get(chosen))

    def _report_dialog(self) -> None:
        if self.run is None:
            self.show_error("Run a suite first: the report shows the last run (and the comparison, if any).")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export report", "evaluation.html", "HTML (*.html)")
        if path:
            try:
                files = self.export_report(Path(path))
            except (OSError, ValueError) as exc:
                self.show_error(f"Cannot write the report: {exc}")
                return
            self.show_info("Wrote " + ", ".join(p.name for p in files))
