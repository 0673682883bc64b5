"""The Train screen's "Fine-tune encoder" step: form, live curves, before/after table, encoder versions.

The run is :func:`merch_app.services.finetune.finetune` in the panel's own
worker (progress callback, cancel token, the worker's SQLite connection); the
panel only draws what the reports and the result carry.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QGroupBox,
    QHeaderView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from merch_app.model.encoder_versions import list_encoder_versions
from merch_app.ui.charts import LineChart
from merch_app.ui.screens.common import bare_column, fill_table, header_label, log_view, make_table, progress_row
from merch_app.ui.screens.model_versions import EncoderVersionsPanel
from merch_app.ui.screens.phase_progress import PhaseProgress
from merch_app.ui.screens.train_form import FinetuneForm
from merch_app.ui.workers import error_text

RUNNING = 20  # steps in the loss's running mean (as merch_app.model.finetune reports it)
REDRAW_MS = 250  # the loss curve is redrawn at most this often (the GUI shares two cores with the job)
TABLE_METRICS = (("ndcg@10", "NDCG@10"), ("recall@10", "recall@10"), ("recall@50", "recall@50"))
RELATED_ROWS = (("ndcg@10", "related NDCG@10"), ("recall@10", "related recall@10"))
NO_VALIDATION = ("No validation on this shop: too few of the latest pairs\nhave a query or item that training "
                 "never saw.\nEvery pair is trained on; the last step is kept.")
PHASES = {"pairs": "collecting pairs", "negatives": "hard negatives", "encode": "encoding items",
          "finetune": "fine-tuning", "evaluate": "before/after evaluation"}


def comparison_rows(comparison: dict[str, Any]) -> list[list[Any]]:
    """Rows (metric, frozen, fine-tuned, Δ, p) of a before/after table; empty without held-out anchors."""
    if not comparison.get("n_anchors"):
        return []
    rows = []
    related = comparison.get("related") or {}
    for table, metrics in ((comparison, TABLE_METRICS), (related, RELATED_ROWS)):
        for key, label in metrics:
            row = table.get(key)
            if isinstance(row, dict):
                rows.append([label, round(row["before"], 4), round(row["after"], 4), f"{row['delta']:+.4f}",
                             round(row["p_value"], 3)])
    return rows


class FinetunePanel(QWidget):
    """Start/cancel a fine-tuning run and manage the encoder versions it produces.

    Parameters
    ----------
    screen
        The Train screen (its runners are registered with the window).
    """

    def __init__(self, screen) -> None:
        super().__init__()
        self.screen = screen
        self.ctx = screen.ctx
        self.runner = screen.runner("finetune", ask_on_quit=True)
        self.versions_runner = screen.runner("encoders")
        self.encoder_spec: Optional[str] = None  # None: start from the workspace's encoder (tests: a tiny BERT)
        self.last_result: Optional[Any] = None
        self.loss_x: list[float] = []
        self.loss_y: list[float] = []
        self.val_x: list[float] = []
        self.val_ndcg: list[float] = []
        self.val_recall: list[float] = []
        self._t0 = 0.0
        self._steps_fixed = False
        self._activate_mode: Optional[bool] = None
        self._redraw = QTimer(self, singleShot=True, interval=REDRAW_MS)
        self._redraw.timeout.connect(self._draw_loss)
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Orientation.Horizontal)
        left, ll = bare_column()
        intro = header_label("Teach the text encoder the shop's language from its behaviour <i>before</i> the "
                             "split; the before/after table scores the pairs <i>after</i> it.")
        intro.setToolTip("Pairs: searches followed by clicks, carts or purchases; items bought together; "
                         "a customer's history → the next item bought. Hard negatives: items the frozen "
                         "encoder ranks high that were not chosen.")
        ll.addWidget(intro)
        self.form = FinetuneForm()
        ll.addWidget(self.form)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start fine-tuning")
        self.start_button.setStyleSheet("font-weight: bold;")
        self.start_button.clicked.connect(lambda: self.start_finetune())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_finetune)
        self.defaults_button = QPushButton("Defaults")
        self.defaults_button.clicked.connect(self.form.reset)
        for b in (self.start_button, self.cancel_button, self.defaults_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        ll.addLayout(buttons)
        prow, self.progress, self.eta_label = progress_row(6)  # the label: "phase 4 of 5: fine-tuning · step …"
        ll.addLayout(prow)
        self.overall = PhaseProgress(self.progress, self.eta_label, self.log_line, PHASES)

        table_box = QGroupBox("Before / after (behaviour after the split)")
        tl = QVBoxLayout(table_box)
        self.table_caption = QLabel("Runs when fine-tuning finishes.")
        self.table_caption.setWordWrap(True)
        self.table_caption.setStyleSheet("color: #555;")
        self.table = make_table()
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        # as wide as the box, not as its columns: the stretched number columns then fit (scroll bars are off)
        self.table.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._fill_table([])
        tl.addWidget(self.table_caption)
        tl.addWidget(self.table)
        ll.addWidget(table_box)
        self.log = log_view("Fine-tuning log")
        ll.addWidget(self.log, 2)
        split.addWidget(left)

        right, rl = bare_column()
        charts = QHBoxLayout()
        self.loss_chart = LineChart("Contrastive loss (running mean of 20 steps)", "loss", "step", legend=False)
        self.loss_curve = self.loss_chart.curve("loss", "#d62728")
        # legend in a band at the top: the y range keeps headroom for it (see _draw_validation)
        self.val_chart = LineChart("Validation (latest pairs before the split)", "", "step", symbols=True,
                                   legend_offset=(10, 4))
        self.val_chart.legend.setColumnCount(2)
        self.ndcg_curve = self.val_chart.curve("NDCG@10", "#1f77b4")
        self.recall_curve = self.val_chart.curve("recall@10", "#2ca02c")
        charts.addWidget(self.loss_chart.widget)
        charts.addWidget(self.val_chart.widget)
        # the curves are those of a fine-tuning started in this window: none yet
        self.loss_chart.empty.show("Start fine-tuning to see\nthe loss per step")
        self.val_chart.empty.show("Start fine-tuning to see\nthe validation per step")
        rl.addLayout(charts, 3)
        self.versions = EncoderVersionsPanel(self._run_action)
        rl.addWidget(self.versions, 2)
        split.addWidget(right)
        split.setSizes([430, 820])
        lay.addWidget(split)
        self._set_running(False)

    def _set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        self.form.setEnabled(not on)

    # ------------------------------------------------------------------- run
    def start_finetune(self, overrides: Optional[dict[str, Any]] = None) -> None:
        """Fine-tune in the worker with the form's settings (``overrides``: further ``FinetuneConfig`` fields)."""
        if self.ctx.path is None:
            self.screen.show_error("Open a workspace first.")
            return
        if not self.screen.confirm_alongside("finetune", "this fine-tuning"):
            return
        values = {**self.form.values(), **(overrides or {})}
        ws, spec = self.ctx.path, self.encoder_spec
        name = values.pop("name", None) or None

        def job(ctx):
            # imported in the worker: torch and the training modules stall the GUI thread on a first import
            from merch_app.model.finetune import FinetuneConfig
            from merch_app.services.finetune import finetune

            return finetune(ctx.db(ws), FinetuneConfig.from_dict(values), progress=ctx.progress, cancel=ctx.cancel,
                            encoder=spec, name=name)

        self.last_result = None
        for series in (self.loss_x, self.loss_y, self.val_x, self.val_ndcg, self.val_recall):
            series.clear()
        for curve in (self.loss_curve, self.ndcg_curve, self.recall_curve):
            curve.setData([], [])
        for chart in (self.loss_chart, self.val_chart):
            chart.empty.hide()
            chart.widget.enableAutoRange()
        self._fill_table([])
        self.table_caption.setText("Runs when fine-tuning finishes.")
        self._activate_mode = values.get("activate")
        self.overall.reset()
        self._steps_fixed = False
        self._t0 = time.perf_counter()
        activate = {None: "when better", False: "no", True: "yes"}.get(values.get("activate"), "?")
        self.log_line(f"Fine-tuning started: epochs={values['epochs']} max pairs={values['max_pairs']:,} "
                      f"activate={activate} encoder={spec or 'the workspace encoder'}")
        self._set_running(True)
        self.runner.start(job, label="Fine-tuning encoder", on_progress=self._on_progress,
                          on_result=self._on_result, on_error=self._on_error,
                          on_cancelled=lambda: self.log_line("Fine-tuning cancelled; the encoder versions and the "
                                                             "active encoder are unchanged."),
                          on_finished=self._on_finished, keep_stale=True)

    def cancel_finetune(self) -> None:
        self.runner.cancel()
        self.log_line("Cancelling…")

    def is_running(self) -> bool:
        return self.runner.is_busy()

    def log_line(self, text: str) -> None:
        elapsed = time.perf_counter() - self._t0 if self._t0 else 0.0
        self.log.appendPlainText(f"[{elapsed:6.1f}s] {text}")

    def _on_progress(self, p) -> None:
        d = p.data or {}
        phase = d.get("phase") or ""
        if phase == "finetune" and "step" in d and not self._steps_fixed and d.get("steps"):
            self._steps_fixed = True  # fixed during the run: the curves grow to the right
            for chart in (self.loss_chart, self.val_chart):
                chart.widget.setXRange(0, float(d["steps"]), padding=0.02)
        self.overall.update(p, f"step {d['step']}/{d.get('steps', '?')}" if phase == "finetune" and "step" in d
                            else "")
        if phase != "finetune" or "step" not in d:
            return
        if d.get("n_validation") == 0 and not self.val_chart.empty.shown:
            self.val_chart.empty.show(NO_VALIDATION)
        step = float(d["step"])
        if isinstance(d.get("loss"), (int, float)):
            self.loss_x.append(step)
            self.loss_y.append(float(d["loss"]))
            if not self._redraw.isActive():
                self._redraw.start()
        if isinstance(d.get("ndcg@10"), (int, float)):
            self.val_x.append(step)
            self.val_ndcg.append(float(d["ndcg@10"]))
            self.val_recall.append(float(d.get("recall@10", float("nan"))))
            self._draw_validation()
            self.log_line(f"step {int(step)}: validation NDCG@10 {self.val_ndcg[-1]:.4f}  "
                          f"recall@10 {self.val_recall[-1]:.4f}")

    def _draw_loss(self) -> None:
        self._redraw.stop()
        self.loss_curve.setData(self.loss_x, self.loss_y)

    def _on_result(self, result) -> None:
        self.last_result = result
        v = result.version
        if v is None:
            self._draw_history(result.history)
            self._fill_table([])
            self.table_caption.setText(f"Nothing saved: {result.note}.")
            self.log_line(f"Fine-tuning finished in {result.seconds:.1f}s: {result.note}")
            return
        self._draw_history((v.metrics or {}).get("history") or [])
        comparison = result.comparison or {}
        rows = comparison_rows(comparison)
        self._fill_table(rows)
        named = f"“{v.name}” ({v.version_id})" if v.name != v.version_id else v.version_id
        state = "activated" if result.activated else "not activated"
        if not result.activated and self._activate_mode is None:
            state += " (the held-out NDCG@10 did not improve)"
        if rows:
            related = comparison.get("related") or {}
            self.table_caption.setText(
                f"Dense retrieval of {comparison['n_anchors']:,} held-out anchors (pairs after the split)"
                + (f"; related: {related['n_items']:,} products' text-only lists against what their buyers also "
                   "bought after the split" if related else "")
                + f". p: paired randomisation test. Version {named}: {state}.")
        else:
            self.table_caption.setText(f"No held-out pairs after the split: no before/after table. "
                                       f"Version {named}: {state}.")
        self.log_line(f"Saved encoder version {named} in {result.seconds:.1f}s: "
                      f"{result.n_pairs:,} training pairs, {result.n_test_pairs:,} held-out pairs, {state}")
        for row in rows:
            self.log_line(f"{row[0]}: {row[1]:.4f} → {row[2]:.4f} ({row[3]}, p={row[4]:.3f})")
        self.progress.setValue(1000)
        # a later pass than the one that redraws the curves (the other screens reload on it)
        QTimer.singleShot(0, self, self.ctx.models_changed.emit)

    def _draw_history(self, history: list[dict[str, Any]]) -> None:
        """The complete curves from the run's history (the live reports are rate-limited, some were skipped)."""
        steps = [h for h in history if isinstance(h.get("loss"), (int, float)) and not h.get("validation")]
        vals = [h for h in history if h.get("validation") and isinstance(h.get("ndcg@10"), (int, float))]
        if steps:
            losses = [float(h["loss"]) for h in steps]
            self.loss_x[:] = [float(h["step"]) for h in steps]
            self.loss_y[:] = [float(np.mean(losses[max(0, i - RUNNING + 1): i + 1])) for i in range(len(losses))]
            self._draw_loss()
        if steps and not vals:  # the live reports that said so may have been rate-limited away
            self.val_chart.empty.show(NO_VALIDATION)
        if vals:
            self.val_x[:] = [float(h["step"]) for h in vals]
            self.val_ndcg[:] = [float(h["ndcg@10"]) for h in vals]
            self.val_recall[:] = [float(h.get("recall@10", float("nan"))) for h in vals]
            self._draw_validation()

    def _draw_validation(self) -> None:
        self.ndcg_curve.setData(self.val_x, self.val_ndcg)
        self.recall_curve.setData(self.val_x, self.val_recall)
        values = [v for v in self.val_ndcg + self.val_recall if v == v]
        if values:  # from 0, with a band above the curves for the legend
            self.val_chart.widget.setYRange(0.0, max(values) * 1.3 or 1.0, padding=0)

    def _fill_table(self, rows: list[list[Any]]) -> None:
        headers = ["metric", "frozen", "fine-tuned", "Δ", "p"]
        fill_table(self.table, headers, [[r[0], f"{r[1]:.4f}", f"{r[2]:.4f}", r[3], f"{r[4]:.3f}"] for r in rows])
        self.table.setSortingEnabled(False)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for r in range(self.table.rowCount()):
            for c in range(1, len(headers)):
                self.table.item(r, c).setTextAlignment(right)
        header = self.table.horizontalHeader()  # the labels take what the numbers leave: p stays in view
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(headers)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        n = max(len(TABLE_METRICS), self.table.rowCount())
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height()
                                  + n * self.table.verticalHeader().defaultSectionSize() + 2 * self.table.frameWidth())

    def _on_error(self, exc: BaseException, _tb: str) -> None:
        self.log_line(f"Fine-tuning failed: {error_text(exc)}")
        self.screen.show_error(f"Fine-tuning failed: {error_text(exc)}")

    def _on_finished(self, state: str) -> None:
        self._set_running(False)
        self._draw_loss()
        self.loss_chart.widget.enableAutoRange(x=True)
        QTimer.singleShot(0, self, lambda: self.val_chart.widget.enableAutoRange(x=True))
        self.eta_label.setText({"ok": "done", "cancelled": "cancelled", "error": "failed"}.get(state, state))

    # -------------------------------------------------------------- versions
    def refresh_versions(self) -> None:
        """Reload the encoder versions table (in the encoders worker)."""
        ws = self.ctx.path
        if ws is None:
            return
        self.versions_runner.start(lambda ctx: list_encoder_versions(ctx.db(ws)), on_result=self.versions.set_versions,
                                   channel="list",
                                   on_error=lambda exc, _tb: self.screen.show_error(
                                       f"Cannot list encoder versions: {error_text(exc)}"))

    def _run_action(self, fn: Callable[[Any], Any], label: str) -> None:
        ws = self.ctx.path

        def done(message: Any) -> None:
            if isinstance(message, str) and message:
                self.screen.show_info(message)
            self.ctx.models_changed.emit()

        self.versions_runner.start(lambda ctx: fn(ctx.db(ws)), label=label, on_result=done,
                                   on_error=lambda exc, _tb: self.screen.show_error(
                                       f"{label} failed: {error_text(exc)}"),
                                   channel="action", cancel_previous=False)  # every click is carried out, in order
