"""Data screen: import files (dialog or drag & drop) and see what the workspace holds."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from merch_app.data.header_mapping import FIELDS
from merch_app.data.rejected import export_rejected_csv, rejected_rows
from merch_app.data.summary import data_summary
from merch_app.paths import demo_files
from merch_app.ui.charts import BarChart, LineChart
from merch_app.ui.screens.base import Screen
from merch_app.ui.screens.common import StatCard, fill_table, iso_to_epoch, make_table
from merch_app.ui.screens.mapping_dialog import ImportRequest, MappingDialog
from merch_app.ui.widgets import set_elided
from merch_app.ui.workers import error_text

FILE_FILTER = "Shop exports (*.csv *.tsv *.txt *.csv.gz *.gz);;All files (*)"


def failed_result(req: ImportRequest, exc: Exception):
    """An ImportResult standing for a file that could not be imported."""
    from merch_app.data.importer import ImportResult  # called in the import worker (see start_import)

    return ImportResult(import_id=None, file_name=req.path.name, kind=req.kind, status="failed", rows_read=0,
                        rows_accepted=0, rows_rejected=0, rejected_reasons={}, items=0, events=0, items_added=0,
                        events_added=0, seconds=0.0, message=str(exc))


class DataScreen(Screen):
    """Import files and show the workspace's data summary."""

    title = "Data"
    PROGRESS_LABEL_WIDTH = 320

    def __init__(self, window) -> None:
        super().__init__(window)
        self.setAcceptDrops(True)
        self.import_runner = self.runner("import")
        self.summary_runner = self.runner("summary")
        self.preview_runner = self.runner("preview")
        self.summary: Optional[Any] = None
        self.rejected: list[dict] = []
        self.last_results: list[Any] = []
        self._pending_files: list[Path] = []
        self._pending_requests: list[ImportRequest] = []
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.import_button = QPushButton("Import files…")
        self.import_button.clicked.connect(self.choose_files)
        self.demo_button = QPushButton("Import demo files")
        self.demo_button.setToolTip("Import the small demo catalogue and events shipped with merch_app")
        self.demo_button.clicked.connect(self.import_demo_files)
        hint = QLabel("…or drop CSV / CSV.GZ files anywhere on this page")
        hint.setStyleSheet("color: #666;")
        self.progress = QProgressBar()
        self.progress.setFixedWidth(260)
        self.progress_label = QLabel()
        self.progress_label.setFixedWidth(self.PROGRESS_LABEL_WIDTH)
        self.cancel_button = QPushButton("Cancel import")
        self.cancel_button.clicked.connect(lambda: self.import_runner.cancel())
        for w in (self.import_button, self.demo_button, hint):
            bar.addWidget(w)
        bar.addStretch(1)
        for w in (self.progress_label, self.progress, self.cancel_button):
            bar.addWidget(w)
        self._set_importing(False)
        lay.addLayout(bar)

        cards = QHBoxLayout()
        self.cards = {key: StatCard(caption) for key, caption in (
            ("items", "items"), ("users", "users"), ("events", "events"),
            ("anonymous_events", "anonymous events"), ("first_ts", "first event"), ("last_ts", "last event"))}
        for c in self.cards.values():
            cards.addWidget(c)
        lay.addLayout(cards)

        split = QSplitter(Qt.Orientation.Horizontal)
        charts = QWidget()
        grid = QGridLayout(charts)
        grid.setContentsMargins(0, 0, 0, 0)
        self.per_day = LineChart("Events per day", "events", date_axis=True, legend=False)
        self.per_day_curve = self.per_day.curve("events", "#1f77b4")
        self.per_day_curve.setFillLevel(0)
        self.per_day_curve.setBrush((31, 119, 180, 60))
        self.by_type = BarChart("Events by type", "events")
        self.long_tail = LineChart("Long tail (items sorted by popularity)", "share of events",
                                   "share of items", legend=False)
        self.long_tail_curve = self.long_tail.curve("items", "#2ca02c")
        self.long_tail_curve.setFillLevel(0)
        self.long_tail_curve.setBrush((44, 160, 44, 50))
        self.long_tail_even = self.long_tail.widget.plot([0, 1], [0, 1], pen=pg.mkPen("#999", style=Qt.PenStyle.DashLine))
        grid.addWidget(self.per_day.widget, 0, 0, 1, 2)
        grid.addWidget(self.by_type.widget, 1, 0)
        grid.addWidget(self.long_tail.widget, 1, 1)
        split.addWidget(charts)

        self.tabs = QTabWidget()
        self.top_table = make_table()
        self.imports_table = make_table()
        rejected = QWidget()
        rl = QVBoxLayout(rejected)
        rl.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        self.rejected_import = QComboBox()
        self.rejected_import.currentIndexChanged.connect(self._show_rejected)
        self.export_rejected = QPushButton("Export to CSV…")
        self.export_rejected.clicked.connect(self._export_rejected)
        row.addWidget(QLabel("Import:"))
        row.addWidget(self.rejected_import, 1)
        row.addWidget(self.export_rejected)
        rl.addLayout(row)
        self.rejected_table = make_table()
        rl.addWidget(self.rejected_table)
        self.tabs.addTab(self.top_table, "Top items")
        self.tabs.addTab(self.imports_table, "Imports")
        self.tabs.addTab(rejected, "Rejected rows")
        split.addWidget(self.tabs)
        split.setSizes([760, 480])
        lay.addWidget(split, 1)

    def _set_importing(self, on: bool) -> None:
        self.progress.setVisible(on)
        self.progress_label.setVisible(on)
        self.cancel_button.setVisible(on)
        self.import_button.setEnabled(not on)
        self.demo_button.setEnabled(not on)
        if on:
            self.progress.setRange(0, 0)

    # ----------------------------------------------------------------- hooks
    def on_workspace_changed(self) -> None:
        self.refresh_summary()

    def on_data_changed(self) -> None:
        self.refresh_summary()

    # ------------------------------------------------------------ drag & drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_files(paths)

    # ----------------------------------------------------------- import flow
    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Import shop exports", str(Path.home()), FILE_FILTER)
        if files:
            self.open_files([Path(f) for f in files])

    def import_demo_files(self) -> None:
        """Import the bundled demo files with auto-detected kinds and mappings."""
        self.start_import([ImportRequest(p) for p in demo_files()])

    def open_files(self, paths: list[Path]) -> None:
        """Preview each file in a worker, confirm it in the mapping dialog, then import all."""
        if self.import_runner.is_busy():
            self.show_error("An import is running; wait for it or cancel it first.")
            return
        self._pending_files = [Path(p) for p in paths]
        self._pending_requests = []
        self._next_preview()

    def _next_preview(self) -> None:
        if not self._pending_files:
            if self._pending_requests:
                self.start_import(self._pending_requests)
            return
        path = self._pending_files.pop(0)
        self.request_preview(path, None, self._show_mapping_dialog)

    def request_preview(self, path: Path, kind: Optional[str], callback) -> None:
        """Run ``preview_file`` in the preview worker; ``callback(preview)`` in the GUI thread."""
        ws = self.ctx.path

        def job(ctx):
            from merch_app.data.importer import preview_file  # in the worker, as in start_import

            return preview_file(ctx.db(ws), path, kind=kind)

        self.preview_runner.start(
            job, label=f"Reading {path.name}", on_result=callback,
            on_error=lambda exc, _tb: (self.show_error(f"Cannot read {path.name}: {error_text(exc)}"),
                                       self._next_preview()))

    def _show_mapping_dialog(self, preview) -> None:
        dialog = MappingDialog(preview, FIELDS,
                               repreview=lambda kind, cb: self.request_preview(Path(preview.path), kind, cb),
                               parent=self)
        if dialog.exec() == MappingDialog.DialogCode.Accepted:
            self._pending_requests.append(dialog.request())
        self._next_preview()

    def start_import(self, requests: list[ImportRequest] | ImportRequest) -> None:
        """Import the confirmed files one after the other in the import worker.

        This is the slot the mapping dialog's OK leads to (tests call it directly).
        """
        if isinstance(requests, ImportRequest):
            requests = [requests]
        requests = list(requests)
        if not requests:
            return
        ws = self.ctx.path
        n = len(requests)

        def job(ctx):
            # imported here, in the worker: a first import of the import modules stalls the GUI thread
            from merch_app.data.importer import ImportFailed, import_file

            db = ctx.db(ws)
            results = []
            for i, req in enumerate(requests):
                def prog(p, i=i, req=req):
                    frac = p.fraction or 0.0
                    ctx.progress(type(p)((i + frac) / n, 1.0, f"{req.label}: {p.message}", p.eta_seconds, p.data))
                try:
                    results.append(import_file(db, req.path, kind=req.kind, mapping=req.mapping,
                                               on_duplicate=req.on_duplicate, progress=prog, cancel=ctx.cancel))
                except ImportFailed as exc:  # report it and go on with the next file
                    results.append(failed_result(req, exc))
            return results

        self._set_importing(True)
        set_elided(self.progress_label, f"Importing {requests[0].label}" + (f" (+{n - 1} more)" if n > 1 else ""),
                   self.PROGRESS_LABEL_WIDTH)
        self.import_runner.start(
            job,
            label=f"Importing {n} file{'s' if n > 1 else ''}",
            on_progress=self._import_progress,
            on_result=self._import_done,
            on_error=lambda exc, _tb: self.show_error(f"Import failed: {error_text(exc)}"),
            on_cancelled=lambda: self.show_info("Import cancelled: the workspace is unchanged."),
            on_finished=self._import_finished,
            keep_stale=True,
        )

    def _import_progress(self, p) -> None:
        if p.fraction is not None:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(p.fraction * 1000))
        if p.message:
            set_elided(self.progress_label, p.message, self.PROGRESS_LABEL_WIDTH)

    def _import_done(self, results: list) -> None:
        self.last_results = results
        lines = []
        for r in results:
            line = f"{r.file_name}: {r.status}"
            if r.status not in ("skipped",):
                line += f" — {r.rows_accepted:,} of {r.rows_read:,} rows accepted"
                if r.rows_rejected:
                    line += f", {r.rows_rejected:,} rejected (see Rejected rows)"
            if r.message:
                line += f" ({r.message})"
            lines.append(line)
        failed = any(r.status == "failed" for r in results)
        self.window_.show_message("<br>".join(lines), "error" if failed else "info")

    def _import_finished(self, state: str) -> None:
        self._set_importing(False)
        if state == "ok":
            self.ctx.data_changed.emit()

    # ----------------------------------------------------------------- summary
    def refresh_summary(self) -> None:
        """Recompute the summary (and rejected rows) in the summary worker."""
        if self.ctx.path is None:
            return
        ws = self.ctx.path

        def job(ctx):
            db = ctx.db(ws)
            summary = data_summary(db)
            ctx.cancel.check()
            return summary, rejected_rows(db, None, limit=1000)

        self.summary_runner.start(job, label="", on_result=self._show_summary,
                                  on_error=lambda exc, _tb: self.show_error(
                                      f"Cannot summarise the workspace: {error_text(exc)}"))

    def _show_summary(self, result) -> None:
        """Draw a summary in stages, one chart per event-loop pass.

        Qt repaints every changed chart of the window in one pass; after an
        import all four change at once and the first paint took ~90 ms (a
        visible hitch, measured in bench_responsiveness).  Each stage ends
        with its own paint; ``self.summary`` is set when the last one is done.
        """
        s, rejected = result
        self._summary_gen = getattr(self, "_summary_gen", 0) + 1
        gen = self._summary_gen
        stages = [lambda: self._draw_cards(s), lambda: self._draw_per_day(s), lambda: self._draw_types(s, rejected)]

        def run(i: int) -> None:
            if gen != self._summary_gen:
                return  # a newer summary arrived
            stages[i]()
            if i + 1 < len(stages):
                QTimer.singleShot(0, lambda: run(i + 1))

        run(0)

    def _draw_cards(self, s) -> None:
        self.cards["items"].set(f"{s.items:,}")
        self.cards["users"].set(f"{s.users:,}")
        self.cards["events"].set(f"{s.events:,}")
        self.cards["anonymous_events"].set(f"{s.anonymous_events:,}")
        self.cards["first_ts"].set((s.first_ts or "—")[:10])
        self.cards["last_ts"].set((s.last_ts or "—")[:10])
        lx, ly = s.long_tail
        self.long_tail_curve.setData(np.asarray(lx, float), np.asarray(ly, float))
        self.long_tail_even.setVisible(bool(len(lx)))
        self.long_tail.empty.show() if not len(lx) else self.long_tail.empty.hide()

    def _draw_per_day(self, s) -> None:
        dates, counts = s.events_per_day
        x = np.array([iso_to_epoch(d) for d in dates], float)
        self.per_day_curve.setData(x, np.asarray(counts, float))
        if len(x):
            self.per_day.empty.hide()
            self.per_day.widget.autoRange()
        else:
            self.per_day.empty.show()

    def _draw_types(self, s, rejected) -> None:
        types = list(s.events_by_type)
        self.by_type.set_bars(types, [s.events_by_type[t] for t in types])
        fill_table(self.top_table, ["#", "item id", "title", "events"],
                   [[i + 1, iid, title, n] for i, (iid, title, n) in enumerate(s.top_items)])
        self.top_table.resizeColumnsToContents()
        head = self.top_table.horizontalHeader()
        head.setStretchLastSection(False)
        head.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)  # long titles elide; the counts stay visible
        imp_cols = ["id", "file_name", "kind", "status", "rows_read", "rows_accepted", "rows_rejected",
                    "started", "message"]
        fill_table(self.imports_table, ["id", "file", "kind", "status", "read", "accepted", "rejected",
                                        "started", "message"],
                   [[imp.get(c) for c in imp_cols] for imp in s.imports])
        self.imports_table.resizeColumnsToContents()

        current = self.rejected_import.currentData()
        self.rejected_import.blockSignals(True)
        self.rejected_import.clear()
        self.rejected_import.addItem("all imports", None)
        for imp in s.imports:
            if imp.get("rows_rejected"):
                self.rejected_import.addItem(f"#{imp['id']} {imp.get('file_name')} ({imp['rows_rejected']:,} rejected)",
                                             imp["id"])
        idx = self.rejected_import.findData(current)
        self.rejected_import.setCurrentIndex(max(idx, 0))
        self.rejected_import.blockSignals(False)
        self.summary, self.rejected = s, rejected
        self._show_rejected()

    def _show_rejected(self) -> None:
        import_id = self.rejected_import.currentData()
        rows = [r for r in self.rejected if import_id is None or r.get("import_id") == import_id]
        fill_table(self.rejected_table, ["import", "line", "reason", "raw"],
                   [[r.get("import_id"), r.get("line_no"), r.get("reason"), r.get("raw")] for r in rows])
        self.rejected_table.setColumnWidth(2, 260)
        self.export_rejected.setEnabled(bool(rows))

    def _export_rejected(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export rejected rows", "rejected_rows.csv", "CSV (*.csv)")
        if path:
            self.export_rejected_to(Path(path))

    def export_rejected_to(self, path: Path) -> None:
        """Write the rejected rows of the selected import to ``path`` (in a worker)."""
        ws, import_id = self.ctx.path, self.rejected_import.currentData()
        self.preview_runner.start(
            lambda ctx: export_rejected_csv(ctx.db(ws), import_id, path), label="Exporting rejected rows",
            channel="export", cancel_previous=False,
            on_result=lambda _r: self.show_info(f"Rejected rows written to {path}"),
            on_error=lambda exc, _tb: self.show_error(f"Export failed: {error_text(exc)}"))
