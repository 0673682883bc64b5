"""Search log screen: top queries, zero-result queries, never-clicked queries and synonym suggestions.

The numbers come from :mod:`merch_app.insights.search_log`, read in a worker
(:func:`merch_app.services.insight_jobs.search_log_job`).  Double-clicking a
query opens it in the Query screen; a synonym suggestion becomes a synonym
rule, saved switched off so its impact can be previewed on the Rules screen
before it is enabled.
"""
from __future__ import annotations

import html
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItem
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QStackedWidget, QTabWidget, QVBoxLayout

from merch_app.evaluation.rule_impact import summarise
from merch_app.services import evaluate_jobs as ej
from merch_app.services import insight_jobs as ij
from merch_app.ui.charts import LineChart
from merch_app.ui.screens.base import Screen
from merch_app.ui.screens.common import bare_column, header_label
from merch_app.ui.screens.evaluate_widgets import SortableTable, cell
from merch_app.ui.screens.insights_common import fmt_ts, note_label
from merch_app.ui.workers import error_text

QUERY_COLUMNS = ["query", "searches", "clicked", "bought", "CTR", "conversion", "28 days", "last seen (UTC)"]
ZERO_COLUMNS = ["query", "searches", "would be corrected to", "28 days", "last seen (UTC)"]
TREND_TIP = ("Searches in the log's last 28 days against the 28 days before (as a change); "
             "'new': not searched in the 28 days before")
SERIES = (("all", "searches", "#1f77b4"), ("zero", "find nothing", "#d62728"), ("no_click", "never clicked", "#ff7f0e"))
SYNONYM_COLUMNS = ["searched first (no click)", "then (clicked)", "kind", "sessions", "bought", "examples"]
EMPTY_TEXT = ("<b>No search log in this workspace.</b><br><br>No event carries a query: import search events "
              "with a query column (event type <i>search</i>, plus a session id or user id and timestamps so "
              "clicks and purchases can be credited to the search before them) on the Data screen.<br><br>"
              "This screen then shows the most searched queries with their click-through and conversion, "
              "queries that find nothing, queries nobody clicks, and synonyms mined from shoppers who "
              "searched again in other words.")


def _fill(table: SortableTable, rows: list[list[QStandardItem]]) -> None:
    """Show ``rows`` in the order given (the insight's order); clicking a header sorts."""
    table.set_rows(rows)
    table.view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # -1: the source order


def _examples_cell(examples: list) -> QStandardItem:
    """The distinct reformulations of a suggestion ("A → B; C → D"), the full list in the tooltip."""
    text = "; ".join(dict.fromkeys(f"{a} → {b}" for a, b in examples))
    it = cell(text)
    it.setToolTip(text)
    return it


def trend_cell(row: dict[str, Any]) -> QStandardItem:
    """The query's last 28 days against the 28 before: ``+140%``, ``-20%`` or ``new``; sorts by the change."""
    now, before = row.get("recent", 0), row.get("previous", 0)
    if before:
        change = (now - before) / before
        it = cell(float(change))
        it.setText(f"{change:+.0%}")
    else:
        it = cell(float("inf") if now else 0.0)
        it.setText("new" if now else "–")
    it.setToolTip(f"{now} searches in the last 28 days of the log, {before} in the 28 days before")
    return it


def week_seconds(weeks: list[str]) -> list[float]:
    """Week start dates (``YYYY-MM-DD``) as UTC epoch seconds for the date axis."""
    return [datetime.fromisoformat(w).replace(tzinfo=timezone.utc).timestamp() for w in weeks]


def pct_cell(value: float) -> QStandardItem:
    """A share shown as a percentage that sorts by its value."""
    it = cell(float(value))
    it.setText(f"{value:.1%}")
    return it


class SearchLogScreen(Screen):
    """Four tabs over the search log; an empty state when no event carries a query."""

    title = "Search log"

    def __init__(self, window) -> None:
        super().__init__(window)
        self.log_runner = self.runner("read")
        self.rule_runner = self.runner("rule")
        self.impact_runner = self.runner("impact")
        self.encoder_spec: Optional[str] = None  # None: the model's encoder (tests use "hashing:64")
        self.impact = None  # the offline impact of the last synonym rule added
        self.result: Optional[dict[str, Any]] = None
        self.loads = 0  # finished loads (tests wait on it)
        self.rule_answers = 0  # answers to 'Add as synonym rule' (tests wait on it)
        self._build()

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        self.header = header_label("Open a workspace to see its search log.")
        lay.addWidget(self.header)
        self.pages = QStackedWidget()
        lay.addWidget(self.pages, 1)

        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setTextFormat(Qt.TextFormat.RichText)
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.empty.setStyleSheet("font-size: 11pt; color: #333; padding: 24px; background: #f6f8fa;"
                                 "border-radius: 6px;")
        self.empty.setMaximumWidth(900)
        empty_page, el = bare_column()
        el.addWidget(self.empty)
        el.addStretch(1)
        self.pages.addWidget(empty_page)

        self.log_page, log_lay = bare_column()
        self.trend = LineChart("Searches per week", "searches", "", date_axis=True, symbols=True)
        self.trend.widget.setMinimumHeight(150)
        self.trend.widget.setMaximumHeight(190)
        # month names only: the day labels ("02") ran into them ("Nov02") over a few weeks
        self.trend.widget.getAxis("bottom").setStyle(maxTextLevel=0)
        self.trend.legend.setColumnCount(len(SERIES))  # one row above the lines, not a box over them
        log_lay.addWidget(self.trend.widget)
        self.tabs = QTabWidget()
        log_lay.addWidget(self.tabs, 1)
        self.top = SortableTable(QUERY_COLUMNS)
        self.zero = SortableTable(ZERO_COLUMNS)
        self.no_clicks = SortableTable(QUERY_COLUMNS)
        self.synonyms = SortableTable(SYNONYM_COLUMNS, stretch=5)
        for table in (self.top, self.zero, self.no_clicks):
            table.view.doubleClicked.connect(lambda idx, t=table: self.open_query(t.text(idx.row())))
            table.view.setToolTip("Double-click a query to search it on the Query screen.")
        self.synonyms.view.doubleClicked.connect(lambda idx: self._open_example(idx.row()))
        self.synonyms.view.setToolTip("Double-click to search the first example's first query on the Query screen.")
        self.synonyms.view.selectionModel().currentRowChanged.connect(lambda _c, _p: self._synonym_selected())
        open_hint = " Double-click a query to search it."
        self.tabs.addTab(self._page(self.top, "Queries by number of searches. CTR: share of searches followed by a "
                                              "click, cart or purchase; conversion: by a purchase." + open_hint),
                         "Top queries")
        self.tabs.addTab(self._page(self.zero, "Queries whose words match no item's text (the ranker shows only "
                                               "meaning matches). Where the spelling corrector would rescue one, "
                                               "it says what it would search instead; for the others add a "
                                               "synonym or rewrite rule." + open_hint), "Zero results")
        self.tabs.addTab(self._page(self.no_clicks, "Queries searched at least twice whose searches were never "
                                                    "followed by a click, cart or purchase." + open_hint),
                         "No clicks")
        self.tabs.addTab(self._synonym_page(), "Synonym suggestions")
        self.pages.addWidget(self.log_page)

    def _page(self, table: SortableTable, note: str):
        page, lay = bare_column()
        lay.setContentsMargins(4, 6, 4, 4)
        lay.addWidget(note_label(note))
        lay.addWidget(table.view, 1)
        return page

    def _synonym_page(self):
        page = self._page(self.synonyms, "Shoppers who searched A, clicked nothing, and within 10 minutes searched "
                                         "B and clicked: the words they swapped. “spelling” pairs are a few "
                                         "edits apart (the spelling corrector already handles most of them).")
        row = QHBoxLayout()
        self.add_button = QPushButton("Add as synonym rule")
        self.add_button.setStyleSheet("font-weight: bold;")
        self.add_button.setEnabled(False)
        self.add_button.clicked.connect(self.add_selected_synonym)
        self.rule_note = note_label("Pick a suggestion, then add it: the rule is saved switched off, as a draft "
                                    "to preview and enable on the Rules screen.")
        row.addWidget(self.add_button)
        row.addWidget(self.rule_note, 1)
        page.layout().addLayout(row)
        return page

    # ----------------------------------------------------------------- hooks
    def on_workspace_changed(self) -> None:
        self.result = None
        self.reload_when_shown()

    def on_data_changed(self) -> None:
        self.reload_when_shown()

    def on_shown(self) -> None:
        if self.load_on_show():
            self.refresh()

    def refresh(self) -> None:
        """Read the search log again in the worker."""
        if self.ctx.path is None:
            return
        self.header.setText("Reading the search log…")
        path = self.ctx.path
        self.log_runner.start(lambda ctx: ij.search_log_job(ctx, path), label="Reading the search log",
                              on_result=self._show, on_error=self._error)

    # ---------------------------------------------------------------- results
    def _show(self, result: dict[str, Any]) -> None:
        self.result = result
        self.loads += 1
        if not result["has_log"]:
            self.header.setText(f"Search log of <b>{html.escape(self.ctx.name)}</b>")
            self.pages.setCurrentIndex(0)
            for t in (self.top, self.zero, self.no_clicks, self.synonyms):
                _fill(t, [])
            self.trend.clear()
            self.add_button.setEnabled(False)
            return
        self.pages.setCurrentIndex(1)
        tot = result["totals"]
        n_syn = sum(1 for s in result["synonyms"] if s["kind"] == "synonym")
        n_spell = len(result["synonyms"]) - n_syn
        self.header.setText(
            f"Search log of <b>{html.escape(self.ctx.name)}</b>: {tot['searches']:,} searches of "
            f"{tot['queries']:,} distinct queries · <b>{len(result['zero']):,}</b> find nothing · "
            f"<b>{len(result['no_clicks']):,}</b> never clicked · <b>{n_syn:,}</b> synonym suggestions"
            + (f" (+{n_spell:,} spelling variants)" if n_spell else ""))
        _fill(self.top, [self._query_row(r) for r in result["top"]])
        _fill(self.no_clicks, [self._query_row(r) for r in result["no_clicks"]])
        _fill(self.zero, [[cell(r["query"]), cell(r["searches"]), cell(r["corrected"] or "—"), trend_cell(r),
                             cell(fmt_ts(r["last_seen"]))] for r in result["zero"]])
        self._show_trend(result["trend"], result["trend_queries"], tot["queries"])
        _fill(self.synonyms, [[cell(s["source"]), cell(s["target"]), cell(s["kind"]), cell(s["sessions"]),
                               cell(s["bought"]), _examples_cell(s["examples"])] for s in result["synonyms"]])
        for t in (self.top, self.zero, self.no_clicks, self.synonyms):
            t.view.resizeColumnsToContents()
        self.tabs.setTabText(1, f"Zero results ({len(result['zero'])})")
        self.tabs.setTabText(2, f"No clicks ({len(result['no_clicks'])})")
        self.tabs.setTabText(3, f"Synonym suggestions ({len(result['synonyms'])})")
        if self.synonyms.row_count():
            self.synonyms.view.selectRow(0)
        self._synonym_selected()

    def _show_trend(self, trend: dict[str, Any], counted: int, queries: int) -> None:
        x = week_seconds(trend["weeks"])
        if not x:
            self.trend.clear()
            return
        self.trend.empty.hide()
        for key, name, colour in SERIES:
            self.trend.set_series(name, x, trend[key], colour)
        over = "" if counted >= queries else f" (find nothing / never clicked: the {counted:,} most searched queries)"
        self.trend.widget.setTitle(f"Searches per week{over}", size="10pt", color="#222")
        top = max(max(trend["all"]), 1)
        self.trend.widget.setXRange(x[0], x[-1], padding=0.02)
        self.trend.widget.setYRange(0, top * 1.6, padding=0)  # the legend's row above the lines

    @staticmethod
    def _query_row(r: dict[str, Any]) -> list[QStandardItem]:
        return [cell(r["query"]), cell(r["searches"]), cell(r["clicked"]), cell(r["bought"]), pct_cell(r["ctr"]),
                pct_cell(r["conversion"]), trend_cell(r), cell(fmt_ts(r["last_seen"]))]

    def _error(self, exc: BaseException, _tb: str) -> None:
        self.header.setText(f"<span style='color:#b42318'>{html.escape(error_text(exc))}</span>")
        self.show_error(f"Search log: {error_text(exc)}")

    # ---------------------------------------------------------------- actions
    def open_query(self, text: str) -> None:
        """Search ``text`` on the Query screen."""
        if text:
            self.window_.open_query(text)

    def _suggestion(self, view_row: int) -> Optional[dict[str, Any]]:
        if self.result is None or view_row < 0:
            return None
        source, target = self.synonyms.text(view_row, 0), self.synonyms.text(view_row, 1)
        return next((s for s in self.result.get("synonyms", []) if s["source"] == source and s["target"] == target),
                    None)

    def _open_example(self, view_row: int) -> None:
        s = self._suggestion(view_row)
        if s and s["examples"]:
            self.open_query(s["examples"][0][0])

    def _synonym_selected(self) -> None:
        s = self._suggestion(self.synonyms.current_row())
        self.add_button.setEnabled(s is not None)
        if s is not None:
            self.add_button.setText(f"Add “{s['source']} = {s['target']}” as synonym rule")

    def add_selected_synonym(self) -> None:
        """Save the selected suggestion as a switched-off synonym rule (in the worker)."""
        s = self._suggestion(self.synonyms.current_row())
        if s is None or self.ctx.path is None:
            return
        path, source, target = self.ctx.path, s["source"], s["target"]
        self.rule_runner.start(lambda ctx: ij.add_synonym_rule_job(ctx, path, source, target),
                               cancel_previous=False, keep_stale=True, on_result=self._rule_added,
                               on_error=lambda exc, _tb: self.show_error(f"Rule not saved: {error_text(exc)}"))

    def _rule_added(self, result) -> None:
        rule, new = result
        self.rule_answers += 1
        state = "on" if rule.enabled else "off (a draft)"
        if new:
            text = (f"Synonym rule {rule.rule_id} saved switched off: {rule.name}. Measuring its offline impact…")
        else:
            text = (f"Rule {rule.rule_id} ({rule.name}, {state}) already has these terms; see the Rules screen.")
        self.rule_note.setText(text)
        self.show_info(text)
        if new:
            self._measure(rule)

    def _measure(self, rule) -> None:
        """The rule's offline impact as if it were live (in the worker), shown under the button."""
        path, enc = self.ctx.path, self.encoder_spec
        on = replace(rule, status="live", enabled=True)
        self.impact_runner.start(lambda ctx: ej.impact_job(ctx, path, on, None, ej.System(), enc, 0),
                                 label="Synonym rule impact", on_result=lambda imp: self._impact_shown(rule, imp),
                                 on_error=lambda exc, _tb: self.rule_note.setText(
                                     f"Synonym rule {rule.rule_id} saved switched off; its impact could not be "
                                     f"measured: {error_text(exc)}"))

    def _impact_shown(self, rule, impact) -> None:
        self.impact = impact
        self.rule_note.setText(f"Synonym rule {rule.rule_id} saved switched off: {rule.name}. If switched on it "
                               f"{summarise(impact)}. Switch it on on the Rules screen.")
