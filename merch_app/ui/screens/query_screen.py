"""Query screen: as-you-type ranking, results with score bars, explanations, score map."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
)

from merch_app.data.export_log import record_export
from merch_app.model.encoder_versions import activate_encoder, is_version_id, list_encoder_versions
from merch_app.safety import csv_row
from merch_app.services import query_engine as qe
from merch_app.ui.charts import Histogram, ScatterMap, export_png
from merch_app.ui.screens.base import Screen
from merch_app.ui.screens.common import bare_column
from merch_app.ui.screens.explain_panel import ExplainPanel
from merch_app.ui.screens.query_controls import QueryControls
from merch_app.ui.screens.results_table import BAR_COLUMN, COLUMNS, ComponentBarDelegate, ResultsModel
from merch_app.ui.widgets import shrinkable
from merch_app.ui.workers import error_text

DEBOUNCE_MS = 150


class QueryScreen(Screen):
    """Type, tune and see why: every rank/explain call runs in the query worker."""

    title = "Query"

    def __init__(self, window) -> None:
        super().__init__(window)
        self.runner_ = self.runner("rank")
        self.encoders_runner = self.runner("encoders")
        self.encoder_spec: Optional[str] = None  # None: the model's own encoder (tests set "hashing:64")
        self.generation = 0  # bumped when data or models change: the worker rebuilds its ranker
        self.map_generation = -1
        self.result: Optional[qe.QueryResult] = None
        self.results_shown = 0
        self.engine_info: Optional[qe.EngineInfo] = None
        self._warned_generation = -1
        self._selected_id: Optional[str] = None
        self._explained_for: Optional[qe.QueryResult] = None
        self._literal_for: Optional[str] = None  # query text the user asked to search as typed
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.run_query)
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        self.controls = QueryControls()
        self.controls.changed.connect(self._debounce.start)
        self.controls.user_changed.connect(self._lookup_user)
        lay.addWidget(self.controls)
        self.spelling = QLabel()
        self.spelling.setTextFormat(Qt.TextFormat.RichText)
        self.spelling.setWordWrap(True)
        self.spelling.setStyleSheet("background: #fff7e0; border: 1px solid #f0d48a; padding: 3px 6px;")
        self.spelling.linkActivated.connect(self._spelling_link)
        self.spelling.hide()
        lay.addWidget(self.spelling)

        status_row = QHBoxLayout()
        self.status = shrinkable(QLabel("Type to search."))
        self.status.setStyleSheet("color: #555;")
        self.status.setWordWrap(True)  # the notes (e.g. "the encoder does not know …") wrap, not cut off
        self.export_results_button = QPushButton("Export results…")
        self.export_results_button.setToolTip("Results and the selected explanation as CSV or JSON")
        self.export_results_button.clicked.connect(self._export_results_dialog)
        self.export_charts_button = QPushButton("Export charts…")
        self.export_charts_button.setToolTip("Distribution, map, waterfall and heatmap as PNG files")
        self.export_charts_button.clicked.connect(self._export_charts_dialog)
        self.encoder_box = QComboBox()
        self.encoder_box.setToolTip("The text encoder this workspace ranks and trains with: the base model or a "
                                    "version fine-tuned on the Train screen. A trained model keeps the encoder "
                                    "it was trained with until you retrain.")
        self.encoder_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.encoder_box.activated.connect(self._encoder_chosen)
        self.pin_button = QPushButton("Pin baseline")
        self.pin_button.setCheckable(True)
        self.pin_button.setToolTip("Keep these results as the baseline the Δ column compares every later "
                                   "list with (another query, weights, user or model)")
        self.pin_button.toggled.connect(self._pin_toggled)
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.pin_button)
        status_row.addWidget(QLabel("Encoder:"))
        status_row.addWidget(self.encoder_box)
        status_row.addWidget(self.export_results_button)
        status_row.addWidget(self.export_charts_button)
        lay.addLayout(status_row)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.model = ResultsModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(BAR_COLUMN, ComponentBarDelegate(self.table))
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setAlternatingRowColors(True)
        hh = self.table.horizontalHeader()
        for col, width in (("rank", 40), ("change", 40), ("id", 62), ("category", 90), ("price", 56),
                           ("score", 58), ("components", 130)):
            self.table.setColumnWidth(COLUMNS.index(col), width)
        hh.setSectionResizeMode(COLUMNS.index("title"), QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self._row_selected(cur.row()))
        self.explain = ExplainPanel()
        self.explain.why_not_requested.connect(self.ask_why_not)
        left, ll = bare_column()
        ll.addWidget(self.table, 1)
        ll.addWidget(self.explain.why_not_group)
        split.addWidget(left)

        self.tabs = QTabWidget()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.explain)
        self.tabs.addTab(scroll, "Explanation")
        overview, ol = bare_column()
        self.histogram = Histogram("Scores of all candidates (dashed: k-th result)", "final score")
        self.map = ScatterMap("Item vectors (PCA) — results in orange; hover for titles")
        ol.addWidget(self.histogram.widget, 2)
        ol.addWidget(self.map.widget, 3)
        self.tabs.addTab(overview, "Scores && map")
        split.addWidget(self.tabs)
        split.setSizes([620, 620])
        lay.addWidget(split, 1)

    def show_explanation_tab(self) -> None:
        self.tabs.setCurrentIndex(0)

    def show_overview_tab(self) -> None:
        self.tabs.setCurrentIndex(1)

    # ----------------------------------------------------------------- hooks
    def on_workspace_changed(self) -> None:
        self.engine_info = None
        self._selected_id = None
        self.controls.clear_choices()
        self._invalidate(clear=True)
        self.refresh_encoders()

    def on_data_changed(self) -> None:
        self._invalidate()

    def on_models_changed(self) -> None:
        self._invalidate()
        self.refresh_encoders()

    def on_shown(self) -> None:
        if self.result is None or self.result.info is None:
            self._debounce.start()
        if self.encoder_box.count() == 0:
            self.refresh_encoders()

    # -------------------------------------------------------------- encoders
    def refresh_encoders(self) -> None:
        """List the base encoder and the fine-tuned versions in the encoder box (in a worker)."""
        ws = self.ctx.path
        if ws is None:
            return
        self.encoders_runner.start(lambda ctx: list_encoder_versions(ctx.db(ws)), on_result=self._set_encoders,
                                   channel="list",
                                   on_error=lambda exc, _tb: self.show_error(
                                       f"Cannot list encoder versions: {error_text(exc)}"))

    def _set_encoders(self, versions) -> None:
        box = self.encoder_box
        box.blockSignals(True)
        box.clear()
        box.addItem("base encoder", "base")
        for v in versions:
            box.addItem(f"{v.name} (fine-tuned)", v.version_id)
            box.setItemData(box.count() - 1, f"{v.version_id}: {v.n_pairs:,} pairs, {v.held_out_change()}",
                            Qt.ItemDataRole.ToolTipRole)
            if v.active:
                box.setCurrentIndex(box.count() - 1)
        box.blockSignals(False)
        self._note_encoder_mismatch()

    def selected_encoder(self) -> str:
        """The version id chosen in the encoder box, or ``base``."""
        return self.encoder_box.currentData() or "base"

    def _encoder_chosen(self, index: int) -> None:
        ws, version_id = self.ctx.path, self.encoder_box.itemData(index)
        if ws is None or version_id is None:
            return

        def done(version) -> None:
            self.show_info(f"The workspace now ranks and trains with {'the base encoder' if version is None else version.name}.")
            self.ctx.models_changed.emit()

        self.encoders_runner.start(lambda ctx: activate_encoder(ctx.db(ws), version_id), label="Switching encoder",
                                   on_result=done, channel="activate",
                                   on_error=lambda exc, _tb: self.show_error(
                                       f"Cannot switch the encoder: {error_text(exc)}"))

    def encoder_mismatch(self) -> Optional[str]:
        """A note when the active model ranks with another encoder than the one chosen, else None."""
        info = self.engine_info
        if info is None or info.model_id is None or self.encoder_box.count() == 0 or self.encoder_spec:
            return None
        chosen = self.selected_encoder()
        ranking = (info.encoder_id or "").partition("@")[0]
        same = (not is_version_id(ranking)) if chosen == "base" else ranking == chosen
        if same:
            return None
        return (f"the model “{info.model_name}” ranks with the encoder it was trained with "
                f"({info.encoder_name or ranking}); retrain to rank with {self.encoder_box.currentText()}")

    def _note_encoder_mismatch(self) -> None:
        note = self.encoder_mismatch()
        self.encoder_box.setStyleSheet("QComboBox { color: #9a6700; }" if note else "")
        self.encoder_box.setToolTip(note or "The text encoder this workspace ranks and trains with.")

    def _invalidate(self, clear: bool = False) -> None:
        self.generation += 1
        if clear:
            self.model.clear()
            self.result = None
            self.explain.clear()
        if self.isVisible():
            self._debounce.start()

    # --------------------------------------------------------------- ranking
    def _args(self) -> tuple:
        return (self.ctx.path, self.generation, self.encoder_spec)

    def run_query(self) -> None:
        """Rank the current inputs in the worker (cancels a stale query; its result is dropped)."""
        if self.ctx.path is None:
            return
        request = self.controls.request()
        if request is None:
            self.status.setText("Type an item id or title to see its related items.")
            return
        if request.mode == "search" and self._literal_for is not None and request.query == self._literal_for:
            request = replace(request, literal=True)
        args = self._args()
        send_map = self.map_generation != self.generation
        self.status.setText("searching…" if self.engine_info else "loading the model and item vectors…")
        self._set_stale(True)
        self.runner_.start(lambda ctx: qe.run_query(ctx, *args, request, send_map),
                           label="" if self.engine_info else "Loading model for querying",
                           on_result=self._show_result, on_error=self._query_failed, channel="query")

    def _set_stale(self, stale: bool) -> None:
        """Grey the shown results while a newer query runs (they answer the previous input)."""
        self.table.setStyleSheet("QTableView { color: #9a9a9a; }" if stale else "")

    def _pin_toggled(self, on: bool) -> None:
        if on and self.result is not None:
            req = self.result.request
            self.model.pin(req.query or req.item_id or req.user_id or req.mode)
            self.pin_button.setText("Unpin baseline")
        else:
            self.model.unpin()
            self.pin_button.setText("Pin baseline")
            self.pin_button.blockSignals(True)
            self.pin_button.setChecked(False)
            self.pin_button.blockSignals(False)

    def _show_result(self, res: qe.QueryResult) -> None:
        self._set_stale(False)
        rl = res.ranked
        first_of_engine = self.engine_info is None or self.engine_info is not res.info
        self.engine_info = res.info
        if first_of_engine:
            self.controls.set_choices(res.info.users, res.info.categories, res.info.price_range)
            self.window_.model_label.setText(f"Active model: {res.info.model_name}")
        if res.info.warning and self._warned_generation != self.generation:
            self._warned_generation = self.generation
            self.window_.show_message(res.info.warning, "warning")
        if res.map is not None:
            self.map_generation = self.generation
            self.map.set_points(res.map.xy, res.map.titles)
        self.result = res
        self.model.set_ranked(rl)
        self.table.setColumnHidden(COLUMNS.index("category"), not any(rl.categories))
        self.results_shown += 1
        self._show_spelling(rl)
        shown = [n for n in rl.notes if not n.startswith("showing results for")]  # the spelling bar says it
        mismatch = self.encoder_mismatch()
        shown += [mismatch] if mismatch else []
        notes = f" · {'; '.join(shown)}" if shown else ""
        self.status.setText(f"{len(rl)} of {rl.n_candidates:,} candidates · {rl.seconds * 1000:.0f} ms · "
                            f"model: {res.info.model_name} · encoder: {res.info.encoder_name or res.info.encoder_id}"
                            f"{notes}")
        self._note_encoder_mismatch()
        cutoff = float(rl.scores[-1]) if len(rl) else None
        self.histogram.set_values(rl.all_candidate_scores, cutoff)
        self.map.set_highlight(res.hits_xy, rl.titles[: len(res.hits_xy)])
        row = self.model.row_of(self._selected_id) if self._selected_id else None
        self.table.selectionModel().blockSignals(True)
        if row is not None:
            self.table.selectRow(row)
        else:
            self.table.clearSelection()
        self.table.selectionModel().blockSignals(False)
        if row is not None:
            self._explain(self._selected_id)  # same item, new scores
        else:
            self._selected_id = None
            self.explain.clear()

    def _show_spelling(self, rl) -> None:
        """The "showing results for" bar: the corrected query and a way back to the literal one."""
        req = rl.request
        if rl.corrected_query is not None:
            fixes = ", ".join(f"{escape(c['original'])} → {escape(c['corrected'])}" for c in rl.corrections)
            self.spelling.setText(f"Showing results for <b>{escape(rl.corrected_query.strip())}</b> ({fixes}). "
                                  f"Search instead for <a href='literal'>{escape(req.query.strip())}</a>")
            self.spelling.show()
        elif req.mode == "search" and req.literal:
            self.spelling.setText(f"Searching exactly <b>{escape(req.query.strip())}</b> as typed. "
                                  "<a href='correct'>Correct the spelling</a>")
            self.spelling.show()
        else:
            self.spelling.hide()

    def _spelling_link(self, which: str) -> None:
        request = self.controls.request()
        self._literal_for = request.query if which == "literal" and request is not None else None
        self.run_query()

    def _query_failed(self, exc: BaseException, _tb: str) -> None:
        self._set_stale(False)
        text = error_text(exc)
        self.status.setText(f"<span style='color:#b42318'>{text}</span>")
        if isinstance(exc, LookupError) and self.engine_info is None:
            self.model.clear()

    # ------------------------------------------------------------ explaining
    def select_row(self, row: int) -> None:
        """Select a result row (fills the explanation panel)."""
        self.table.selectRow(row)
        self._row_selected(row)

    def _row_selected(self, row: int) -> None:
        item_id = self.model.item_id(row)
        if item_id is None:
            return
        self._selected_id = item_id
        exp = self.explain.explanation
        if exp is not None and exp.item_id == item_id and self._explained_for is self.result:
            return  # already showing this item for these results
        self._explain(item_id)

    def _explain(self, item_id: str) -> None:
        if self.result is None:
            return
        request, args, result = self.result.request, self._args(), self.result
        self.runner_.start(lambda ctx: qe.run_explain(ctx, *args, request, item_id), channel="explain",
                           on_result=lambda exp: self._show_explanation(exp, result),
                           on_error=lambda exc, _tb: self.explain.clear(f"Cannot explain {item_id}: {error_text(exc)}"))

    def _show_explanation(self, exp, result) -> None:
        self._explained_for = result
        self.explain.show_explanation(exp)

    def ask_why_not(self, ref: str) -> None:
        """Where does ``ref`` (id or title) rank for the current request, and why not higher?"""
        if self.result is None:
            self.explain.show_why_not_error("Run a query first.")
            return
        request, args = self.result.request, self._args()
        self.runner_.start(lambda ctx: qe.run_why_not(ctx, *args, request, ref), channel="why_not",
                           on_result=self.explain.show_why_not,
                           on_error=lambda exc, _tb: self.explain.show_why_not_error(error_text(exc)))

    def _lookup_user(self, user_id: Optional[str]) -> None:
        if user_id is None:
            self.controls.profile.setText("anonymous: popularity and text only")
            return
        ws = self.ctx.path
        self.runner_.start(lambda ctx: qe.user_profile_line(ctx.db(ws), user_id), channel="profile",
                           on_result=self.controls.profile.setText,
                           on_error=lambda exc, _tb: self.controls.profile.setText(error_text(exc)))

    # --------------------------------------------------------------- export
    def _export_results_dialog(self) -> None:
        if self.result is None:
            self.show_error("Nothing to export yet: run a query first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export results", "results.json", "JSON (*.json);;CSV (*.csv)")
        if path:
            self.export_results(Path(path))

    def export_results(self, path: Path) -> Path:
        """Write the results (and the shown explanation) as JSON, or the results as CSV."""
        rl = self.result.ranked
        rows = rl.rows()
        if path.suffix.lower() == ".csv":
            comps = list(rows[0]["components"]) if rows else []
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["rank", "item_id", "title", "category", "price", "score"] + comps)
                for r in rows:
                    w.writerow(csv_row([r["rank"], r["item_id"], r["title"], r["category"], r["price"],
                                        f"{r['score']:.6f}"] + [f"{r['components'][c]:.6f}" for c in comps]))
        else:
            exp = self.explain.explanation
            why = self.explain.why_not_result
            doc = {"request": self.result.request.to_dict(), "model": self.result.info.model_name,
                   "results": rows, "explanation": exp.to_dict() if exp is not None else None,
                   "why_not": why.to_dict() if why is not None else None}
            path.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=_json_default), encoding="utf-8")
            if self.ctx.db is not None:  # "as user X" and the explanation's history: a forget must find it
                record_export(self.ctx.db, path, "query_results")
        self.show_info(f"Results written to {path}")
        return path

    def _export_charts_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export charts to folder")
        if folder:
            self.export_charts(Path(folder))

    def export_charts(self, folder: Path) -> list[Path]:
        """Save the four charts as PNG files in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        out = [export_png(self.histogram.widget, folder / "score_distribution.png"),
               export_png(self.map.widget, folder / "item_map.png"),
               export_png(self.explain.waterfall.widget, folder / "score_waterfall.png"),
               export_png(self.explain.heatmap.widget, folder / "word_heatmap.png")]
        self.show_info(f"{len(out)} charts written to {folder}")
        return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
