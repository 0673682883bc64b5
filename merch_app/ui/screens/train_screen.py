"""Train screen: settings form, live training curves and log, model versions."""
from __future__ import annotations

import time
from typing import Any, Optional

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTabWidget,
)

from merch_app.data.workspace import EVENT_TYPES, event_span
from merch_app.jobs import Progress
from merch_app.model.hybrid_config import HybridConfig
from merch_app.model.registry import has_versions, list_versions
from merch_app.ui.charts import LineChart
from merch_app.ui.screens.base import Screen
from merch_app.ui.screens.common import bare_column, log_view, progress_row
from merch_app.ui.screens.finetune_panel import FinetunePanel
from merch_app.ui.screens.model_versions import ModelVersionsPanel
from merch_app.ui.screens.phase_progress import PhaseProgress
from merch_app.ui.screens.train_form import TrainForm
from merch_app.ui.workers import error_text


def default_config() -> dict[str, Any]:
    """HybridConfig defaults as a dict."""
    return HybridConfig().to_dict()


def split_note(cfg: HybridConfig) -> tuple[str, str]:
    """Which data each number of the screen comes from: the curves' validation, the versions' test period.

    Parameters
    ----------
    cfg
        The run's settings (validation share, user cap, internal cut).

    Returns
    -------
    (str, str)
        A short line for under the curves and the longer explanation for its tooltip.
    """
    test = "Table and bars: the test period after the split date."
    if cfg.mode == "explicit":
        line = f"Curves: the latest {cfg.val_fraction:.0%} of the ratings before the split date (RMSE). {test}"
        return line, line
    cut = (f"{cfg.label_horizon_days:g} days before its end" if cfg.label_horizon_days
           else f"{cfg.internal_cut:.0%} of it")
    line = f"Curves: held-out users inside the training period, after an internal cut at {cut}. {test}"
    detail = (f"Validation curves: {cfg.val_fraction:.0%} of the users (at most {cfg.max_val_users:,}) with events "
              f"on both sides of an internal cut at {cut} of the training period (the events before the split "
              "date); the model learns from the events before the cut and is scored on what those users did "
              "after it. Early stopping watches the CF part's nDCG@10 on them; the refit epochs then train on "
              "the whole training period. The versions table and the bars score the finished model on the "
              "test period after the split date.")
    return line, detail


BATCH_REDRAW_MS = 250
# the validation curves' metrics (key per curve) and legend names: ranking (implicit) or ratings (explicit)
VAL_CURVES = {False: ("val_ndcg@10", "val_precision@10"), True: ("val_rmse", "val_mae")}
VAL_LABELS = {False: ("nDCG@10", "precision@10"), True: ("RMSE", "MAE")}


class TrainScreen(Screen):
    """Start/cancel a training run and manage the model versions it produces."""

    title = "Train"

    def __init__(self, window) -> None:
        super().__init__(window)
        self.train_runner = self.runner("train", ask_on_quit=True)
        self.registry_runner = self.runner("registry")
        self.history: dict[str, list[float]] = {"epoch": [], "loss": [], "val_ndcg@10": [], "val_precision@10": [],
                                                "val_rmse": [], "val_mae": [],
                                                "refit_epoch": [], "refit_loss": [], "batch_x": [], "batch_loss": []}
        self._batches_per_epoch: dict[int, int] = {}
        self.last_version: Optional[Any] = None
        self._t0 = 0.0
        self._run_epochs = 1
        # the running-loss curve is redrawn at most this often: every redraw re-ticks the
        # axes, and the GUI thread shares the two cores with the training threads
        self._batch_redraw = QTimer(self, singleShot=True, interval=BATCH_REDRAW_MS)
        self._batch_redraw.timeout.connect(self._draw_batches)
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QHBoxLayout(self)
        self.tabs = QTabWidget()
        lay.addWidget(self.tabs)
        split = QSplitter(Qt.Orientation.Horizontal)
        left, ll = bare_column()
        event_types = [e for e in EVENT_TYPES if e not in ("search", "impression")]  # not behaviour: never weighted
        self.form = TrainForm(default_config(), event_types)
        ll.addWidget(self.form)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.setStyleSheet("font-weight: bold;")
        self.start_button.clicked.connect(lambda: self.start_training())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_training)
        self.defaults_button = QPushButton("Defaults")
        self.defaults_button.setToolTip("Reset the settings to the recommended defaults")
        self.defaults_button.clicked.connect(self.form.reset)
        self.reuse_button = QPushButton("Use selected version's settings")
        self.reuse_button.clicked.connect(self._reuse_settings)
        for b in (self.start_button, self.cancel_button, self.defaults_button, self.reuse_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        ll.addLayout(buttons)
        prow, self.progress, self.eta_label = progress_row(6)  # the label: "phase 3 of 5: train · epoch …"
        ll.addLayout(prow)
        self.log = log_view("Training log")
        ll.addWidget(self.log, 1)
        self.overall = PhaseProgress(self.progress, self.eta_label, self.log_line)
        split.addWidget(left)

        right, rl = bare_column()
        charts = QHBoxLayout()
        self.loss_chart = LineChart("Training loss", "loss", "epoch", legend=True)
        self.batch_curve = self.loss_chart.curve("batch mean", "#f4a3a3")
        self.loss_curve = self.loss_chart.curve("epoch", "#d62728")
        self.loss_curve.setSymbol("o")
        self.loss_curve.setSymbolBrush("#d62728")
        self.loss_curve.setSymbolSize(6)
        self.refit_curve = self.loss_chart.curve("refit, all data", "#7f7f7f")
        self.refit_curve.setSymbol("s")
        self.refit_curve.setSymbolBrush("#7f7f7f")
        self.refit_curve.setSymbolSize(6)
        self.val_chart = LineChart("Validation (training period)", "", "epoch", symbols=True,
                                   legend_offset=(10, -10))
        self.ndcg_curve = self.val_chart.curve("nDCG@10", "#1f77b4")
        self.prec_curve = self.val_chart.curve("precision@10", "#2ca02c")
        charts.addWidget(self.loss_chart.widget)
        charts.addWidget(self.val_chart.widget)
        # the curves are those of a training started in this window: none yet
        self.loss_chart.empty.show("Start training to see\nthe loss per epoch")
        self.val_chart.empty.show("Start training to see\nthe validation per epoch")
        rl.addLayout(charts, 2)
        self.split_label = QLabel()
        self.split_label.setWordWrap(True)
        self._show_split_note(HybridConfig())
        self.split_label.setStyleSheet("color: #555;")
        rl.addWidget(self.split_label)
        self.versions = ModelVersionsPanel(self._run_registry)
        rl.addWidget(self.versions, 3)
        split.addWidget(right)
        split.setSizes([430, 820])
        self.tabs.addTab(split, "Train model")
        self.finetune = FinetunePanel(self)
        self.tabs.addTab(self.finetune, "Fine-tune encoder")
        self._set_running(False)

    def _show_split_note(self, cfg: HybridConfig) -> None:
        line, detail = split_note(cfg)
        self.split_label.setText(line)
        self.split_label.setToolTip(detail)
        self.val_chart.widget.setToolTip(detail)

    def _set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        self.form.setEnabled(not on)

    # ----------------------------------------------------------------- hooks
    def on_workspace_changed(self) -> None:
        self.refresh_versions()
        self.finetune.refresh_versions()
        self._update_date_range()

    def on_data_changed(self) -> None:
        self._update_date_range()

    def on_models_changed(self) -> None:
        self.refresh_versions()
        self.finetune.refresh_versions()

    def show_finetune(self) -> FinetunePanel:
        """Switch to the "Fine-tune encoder" tab and return its panel."""
        self.tabs.setCurrentWidget(self.finetune)
        return self.finetune

    def _update_date_range(self) -> None:
        if self.ctx.db is None:
            return
        first, last = event_span(self.ctx.db)  # two index lookups: fine in the GUI thread
        if first:
            self.form.set_date_range(first, last)

    def has_models(self) -> bool:
        """True when the workspace has at least one model version (quick GUI-thread read)."""
        if self.ctx.db is None:
            return False
        return has_versions(self.ctx.db)

    # -------------------------------------------------------------- training
    def start_training(self, overrides: Optional[dict[str, Any]] = None) -> None:
        """Train a new model version in the training worker with the form's settings."""
        if self.ctx.path is None:
            self.show_error("Open a workspace first.")
            return
        if not self.confirm_alongside("train", "this training"):
            return
        values = {**self.form.values(), **(overrides or {})}
        if overrides and "epochs" in overrides:
            self.form.epochs.setValue(int(overrides["epochs"]))  # the form shows what runs (the demo: 3 epochs)
        config = HybridConfig.from_dict(values)
        spec = values.get("encoder") or "minilm"
        config.encoder = None if spec == "minilm" else spec  # the workspace's encoder settings (int8) apply
        ws = self.ctx.path

        def job(ctx):
            # imported in the worker: a first import of the training modules stalls the GUI thread
            from merch_app.services.training import train

            ctx.progress(type_progress(0, None, f"loading text encoder {spec}"))
            return train(ctx.db(ws), config, progress=ctx.progress, cancel=ctx.cancel)

        for series in self.history.values():
            series.clear()
        self._batches_per_epoch.clear()
        for curve in (self.loss_curve, self.batch_curve, self.refit_curve, self.ndcg_curve, self.prec_curve):
            curve.setData([], [])
        self.overall.reset()
        self._show_split_note(config)
        self._run_epochs = config.epochs + config.refit_epochs
        for chart in (self.loss_chart, self.val_chart):  # fixed during the run: the curves grow to the right
            chart.empty.hide()
            chart.widget.setXRange(0, self._run_epochs, padding=0.02)
        self._t0 = time.perf_counter()
        self.log_line(f"Training started: dim={config.dim} epochs={config.epochs} lr={config.lr:g} "
                      f"l2={config.l2:g} dropout={config.dropout:g} negatives={config.negatives} "
                      f"encoder={spec} split={config.split_date or 'auto'}")
        self._set_running(True)
        self.train_runner.start(job, label="Training model", on_progress=self._on_progress,
                                on_result=self._on_trained, on_error=self._on_error,
                                on_cancelled=lambda: self.log_line("Training cancelled; no version was saved."),
                                on_finished=self._on_finished, keep_stale=True)

    def cancel_training(self) -> None:
        self.train_runner.cancel()
        self.log_line("Cancelling…")

    def log_line(self, text: str) -> None:
        elapsed = time.perf_counter() - self._t0 if self._t0 else 0.0
        self.log.appendPlainText(f"[{elapsed:6.1f}s] {text}")

    def _on_progress(self, p) -> None:
        d = p.data or {}
        phase = d.get("phase") or ""
        # the epoch (or refit) the batches belong to: cf_module's message is "epoch 3/20" / "refit 1/2"
        detail = p.message if phase == "train" and ("batch" in d or d.get("epoch_end")) else ""
        self.overall.update(p, detail)
        if d.get("early_stop") or "rating_drift" in d or "rating_taste" in d:  # and the baseline parts chosen
            self.log_line(p.message)
        if d.get("epoch_end"):
            self._add_epoch(d, p.message)
        elif phase == "train" and isinstance(d.get("loss"), (int, float)) and "batch" in d:
            self._add_batch(p, d)

    def _add_batch(self, p, d: dict) -> None:
        """Running loss within an epoch, drawn between the epoch points (x = epoch - 1 + fraction)."""
        epoch, batch = int(d.get("epoch", 1)), int(d["batch"])
        done = self.history["epoch"]
        if done and epoch <= done[-1]:
            return  # refit epochs restart the numbering: they have their own curve
        self._batches_per_epoch[epoch] = max(batch, self._batches_per_epoch.get(epoch, 0))
        per_epoch = self._batches_per_epoch.get(1) if epoch > 1 else None
        if not per_epoch:  # during epoch 1: estimate from the job's total batch count
            per_epoch = max(1.0, (p.total or batch) / max(self._run_epochs, 1))
        h = self.history
        h["batch_x"].append(epoch - 1 + min(batch / per_epoch, 1.0))
        h["batch_loss"].append(float(d["loss"]))
        if not self._batch_redraw.isActive():
            self._batch_redraw.start()

    def _draw_batches(self) -> None:
        self._batch_redraw.stop()
        self.batch_curve.setData(self.history["batch_x"], self.history["batch_loss"])

    def _add_epoch(self, d: dict, message: str = "") -> None:
        h = self.history
        if d.get("refit"):  # refit epochs (whole period, no validation) get their own curve
            # drawn at best epoch + r: the refit continues from the best epoch's parameters
            h["refit_epoch"].append(float(d.get("epoch", 0)))
            h["refit_loss"].append(float(d.get("loss", float("nan"))))
            self.refit_curve.setData(h["refit_epoch"], h["refit_loss"])
            start = d.get("refit_from")
            self.log_line(f"{message or 'refit'} on all data" + (f", from epoch {start}'s parameters" if start else "")
                          + f": loss {h['refit_loss'][-1]:.4f}")
            return
        h["epoch"].append(float(d.get("epoch", len(h["epoch"]) + 1)))
        if isinstance(d.get("loss"), (int, float)):
            # The epoch's mean loss ends its running-mean curve; batch reports are
            # rate-limited, so a short epoch may otherwise leave no batch point.
            h["batch_x"].append(h["epoch"][-1])
            h["batch_loss"].append(float(d["loss"]))
            self._draw_batches()
        for key in ("loss", *VAL_CURVES[True], *VAL_CURVES[False]):
            v = d.get(key)
            h[key].append(float(v) if isinstance(v, (int, float)) else float("nan"))
        self.loss_curve.setData(h["epoch"], h["loss"])
        rating = "val_rmse" in d  # explicit ratings: the curves show RMSE and MAE on the later ratings
        self._label_val_curves(rating)
        first, second = VAL_CURVES[rating]
        self.ndcg_curve.setData(h["epoch"], h[first])
        self.prec_curve.setData(h["epoch"], h[second])
        values = [v for v in h[first] + h[second] if v == v]
        if values:  # the legend sits in the bottom band: keep the curves above it
            lo, hi = min(values), max(values)
            span = max(hi - lo, 0.02)
            self.val_chart.widget.setYRange(lo - 1.2 * span, hi + 0.1 * span, padding=0)
        names = VAL_LABELS[rating]
        self.log_line(f"epoch {int(h['epoch'][-1])}: loss {h['loss'][-1]:.4f}  "
                      f"val {names[0]} {h[first][-1]:.4f}  val {names[1]} {h[second][-1]:.4f}")

    def _label_val_curves(self, rating: bool) -> None:
        """Name the two validation curves after what they show (ranking metrics or rating errors)."""
        legend = self.val_chart.legend
        for curve, name in zip((self.ndcg_curve, self.prec_curve), VAL_LABELS[rating]):
            label = legend.getLabel(curve) if legend is not None else None
            if label is not None and label.text != name:
                label.setText(name)

    def _on_trained(self, version) -> None:
        self.last_version = version
        metrics = version.metrics or {}
        m = metrics.get("model") or {}
        summary = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))[:200]
        if isinstance(metrics.get("mae"), float):  # explicit ratings: the predicted ratings' errors
            summary = f"test MAE {metrics['mae']:.4f}, RMSE {metrics['rmse']:.4f}"
            self._show_split_note(HybridConfig.from_dict({**(version.config or {}), "mode": "explicit"}))
        if self.form.split_auto.isChecked() and metrics.get("split_date"):  # the date the automatic split chose
            self.form.set_date_range(None, None, metrics["split_date"])
        self.log_line(f"Saved model version “{version.name}” in {version.train_seconds:.1f}s"
                      + (f" — {summary}" if summary else "") + (" (active)" if version.active else ""))
        self.progress.setValue(1000)
        # the other screens react in a later pass than the one that redraws this screen's curves
        # (together they stalled the GUI thread ~60 ms at the end of a training)
        QTimer.singleShot(0, self, self.ctx.models_changed.emit)

    def _on_error(self, exc: BaseException, _tb: str) -> None:
        self.log_line(f"Training failed: {error_text(exc)}")
        self.show_error(f"Training failed: {error_text(exc)}")

    def _on_finished(self, state: str) -> None:
        self._set_running(False)
        self._draw_batches()
        self.loss_chart.widget.enableAutoRange(x=True)  # one chart re-ranged (and repainted) per pass
        QTimer.singleShot(0, self, lambda: self.val_chart.widget.enableAutoRange(x=True))
        self.eta_label.setText({"ok": "done", "cancelled": "cancelled", "error": "failed"}.get(state, state))

    def _reuse_settings(self) -> None:
        v = self.versions.selected()
        if v is not None and v.config:
            self.form.set_values(v.config)

    # -------------------------------------------------------------- registry
    def refresh_versions(self) -> None:
        """Reload the versions table (in the registry worker)."""
        ws = self.ctx.path
        if ws is None:
            return
        self.registry_runner.start(lambda ctx: list_versions(ctx.db(ws)), on_result=self.versions.set_versions,
                                   channel="list",
                                   on_error=lambda exc, _tb: self.show_error(
                                       f"Cannot list model versions: {error_text(exc)}"))

    def _run_registry(self, fn, label: str) -> None:
        ws = self.ctx.path
        self.registry_runner.start(lambda ctx: fn(ctx.db(ws)), label=label,
                                   on_result=lambda _r: self.ctx.models_changed.emit(),
                                   on_error=lambda exc, _tb: self.show_error(f"{label} failed: {error_text(exc)}"),
                                   channel="action", cancel_previous=False)  # every click is carried out, in order


def type_progress(done: float, total: Optional[float], message: str):
    return Progress(done, total, message, data={"phase": "encoder"})
