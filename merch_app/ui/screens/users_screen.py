"""Users screen (用户画像): pick a user; profile charts, behaviour paths, funnels, recommendations."""
from __future__ import annotations

import html
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QTabWidget,
    QWidget,
)

from merch_app.services import insight_jobs as ij
from merch_app.ui.charts import LineChart
from merch_app.ui.screens.base import Screen
from merch_app.ui.screens.common import bare_column, fill_table, header_label, make_table
from merch_app.ui.screens.insights_charts import EVENT_COLOURS, HBarChart
from merch_app.ui.screens.insights_common import fmt_ts, note_label
from merch_app.ui.screens.users_panels import ALL_EVENTS, PathsPanel, RecsPanel
from merch_app.ui.workers import error_text

LIST_KINDS = {"Most active": "active", "Random": "random", "Cold (fewest events)": "cold"}


class UsersScreen(Screen):
    """Profiles, paths, funnels and recommendations of one user at a time."""

    title = "Users"

    def __init__(self, window) -> None:
        super().__init__(window)
        self.list_runner = self.runner("list")
        self.profile_runner = self.runner("profile")
        self.path_runner = self.runner("path")
        self.funnel_runner = self.runner("funnel")
        self.model_runner = self.runner("model")
        self.encoder_spec: Optional[str] = None  # None: the model's encoder (tests use "hashing:64")
        self.generation = 0
        self.user_id: Optional[str] = None
        self.profile = None
        self.recs: Optional[dict[str, Any]] = None
        self.item_group: Optional[dict[str, str]] = None
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(200)
        self._search_timer.timeout.connect(lambda: self.isVisible() and self.refresh_list())
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QHBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal)
        picker, pl = bare_column()
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search user id…")
        self.search_box.textChanged.connect(lambda _t: self._search_timer.start())
        self.kind_box = QComboBox()
        self.kind_box.addItems(list(LIST_KINDS))
        self.kind_box.currentIndexChanged.connect(lambda _i: self.refresh_list())
        self.user_list = QListWidget()
        self.user_list.currentItemChanged.connect(self._user_picked)
        pl.addWidget(self.search_box)
        pl.addWidget(self.kind_box)
        pl.addWidget(self.user_list, 1)
        split.addWidget(picker)

        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_profile(), "Profile")
        self.paths = PathsPanel()
        self.paths.session_selected.connect(self._session_picked)
        self.paths.funnel_requested.connect(self.show_funnel)
        self.tabs.addTab(self.paths, "Paths && funnels")
        self.recs_panel = RecsPanel()
        self.recs_panel.item_selected.connect(self.explain)
        self.recs_panel.user_activated.connect(self.open_user)
        self.tabs.addTab(self.recs_panel, "Recommendations")
        split.addWidget(self.tabs)
        split.setSizes([210, 1100])
        lay.addWidget(split)

    def _build_profile(self) -> QWidget:
        page, lay = bare_column()
        self.header = header_label("Pick a user on the left.")
        lay.addWidget(self.header)
        grid = QGridLayout()
        self.activity = LineChart("Activity over time", "events", "", date_axis=True, symbols=True)
        self.mix = HBarChart("Event types", "events", colour="#1f77b4")
        self.categories = HBarChart("Categories of touched items", "events", colour="#ff7f0e")
        self.terms = HBarChart("Interest terms (tf-idf of queries and titles)", "score", colour="#2ca02c")
        for chart in (self.activity, self.mix, self.categories, self.terms):
            chart.widget.setMinimumHeight(180)  # two rows of them and the history fit a 720 px window
        grid.addWidget(self.activity.widget, 0, 0)
        grid.addWidget(self.mix.widget, 0, 1)
        grid.addWidget(self.categories.widget, 1, 0)
        grid.addWidget(self.terms.widget, 1, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        lay.addLayout(grid, 3)
        self.history = make_table()
        self.history.setMinimumHeight(120)
        self.history.verticalHeader().setDefaultSectionSize(22)
        lay.addWidget(self.history, 1)
        self.profile_note = note_label()
        lay.addWidget(self.profile_note)
        return page

    # ------------------------------------------------------------------- hooks
    def on_workspace_changed(self) -> None:
        self.generation += 1
        self.user_id, self.profile, self.recs, self.item_group = None, None, None, None
        self.reload_when_shown()

    def on_data_changed(self) -> None:
        self.on_workspace_changed()

    def on_models_changed(self) -> None:
        self.generation += 1
        self.item_group = None
        if self.user_id:
            self.load_recommendations()

    def on_shown(self) -> None:
        if self.load_on_show():
            self.refresh_list()

    # --------------------------------------------------------------- the list
    def refresh_list(self) -> None:
        if self.ctx.path is None:
            return
        kind = LIST_KINDS[self.kind_box.currentText()]
        text = self.search_box.text().strip()
        self.list_runner.start(lambda ctx, p=self.ctx.path: ij.list_job(ctx, p, kind, text),
                               on_result=self._show_list, on_error=self._error)

    def _show_list(self, rows: list[dict]) -> None:
        self.user_list.blockSignals(True)
        self.user_list.clear()
        for r in rows:
            item = QListWidgetItem(f"{r['user_id']}  ·  {r['events']:,} events")
            item.setData(Qt.ItemDataRole.UserRole, r["user_id"])
            item.setToolTip(f"last seen {fmt_ts(r['last_ts'])}")
            self.user_list.addItem(item)
        self.user_list.blockSignals(False)
        if not rows:
            self.header.setText("No users match." if self.search_box.text().strip() else
                                "This workspace has no events with a user id yet.")
        elif self.user_id is None:
            self.user_list.setCurrentRow(0)

    def _user_picked(self, current: Optional[QListWidgetItem], _prev) -> None:
        if current is not None:
            self.open_user(current.data(Qt.ItemDataRole.UserRole))

    # ---------------------------------------------------------------- a user
    def open_user(self, user_id: str) -> None:
        """Show ``user_id`` on every tab (profile, paths, recommendations)."""
        if self.ctx.path is None:
            return
        self.user_id = str(user_id)
        self.header.setText(f"Loading {html.escape(self.user_id)}…")
        self._select_in_list(self.user_id)
        groups = self.item_group
        self.profile_runner.start(lambda ctx, p=self.ctx.path, u=self.user_id: ij.profile_job(ctx, p, u, groups),
                                  on_result=self._show_profile, on_error=self._error)
        self._session_picked(ALL_EVENTS)
        self.load_recommendations()

    def _select_in_list(self, user_id: str) -> None:
        """Highlight ``user_id`` in the list if it is there (without reopening it)."""
        self.user_list.blockSignals(True)
        self.user_list.setCurrentRow(-1)
        for row in range(self.user_list.count()):
            if self.user_list.item(row).data(Qt.ItemDataRole.UserRole) == user_id:
                self.user_list.setCurrentRow(row)
                break
        self.user_list.blockSignals(False)

    def _show_profile(self, result: dict[str, Any]) -> None:
        p = result["profile"]
        self.profile = p
        if not p.exists:
            self.header.setText(f"User <b>{html.escape(p.user_id)}</b> has no events.")
        else:
            mix = ", ".join(f"{n:,} {t}" for t, n in p.event_mix.items())
            terms = " · ".join(html.escape(t) for t, _, _ in p.interest_terms[:8])
            tags = ", ".join(f"{html.escape(t)} ({n})" for t, n in p.tags[:8])
            self.header.setText(
                f"<b>{html.escape(p.user_id)}</b> — {p.n_events:,} events on {p.n_items:,} items in "
                f"{p.n_sessions:,} sessions, {fmt_ts(p.first_ts)[:10]} … {fmt_ts(p.last_ts)[:10]}<br>"
                f"<span style='color:#555'>{mix}" + (f" · tags: {tags}" if tags else "") + "</span><br>"
                f"interested in: <b>{terms or '—'}</b>")
        a = p.activity
        self.activity.clear()
        for etype, counts in a.counts.items():
            self.activity.set_series(etype, a.epoch, counts, EVENT_COLOURS.get(etype))
        top = max((float(np.max(c)) for c in a.counts.values() if len(c)), default=0.0)
        if top > 0:  # headroom: the legend (top right) sits above the curves, not on the last weeks
            self.activity.widget.setYRange(0, top * 1.4, padding=0)
        else:
            self.activity.widget.enableAutoRange(y=True)
        self.activity.widget.setTitle(f"Activity per {a.bucket}", size="10pt", color="#222")
        self.mix.set_bars(list(p.event_mix), list(p.event_mix.values()))
        self.categories.set_bars([c["category"] for c in p.categories], [c["events"] for c in p.categories])
        terms = p.interest_terms[:12]
        self.terms.set_bars([t for t, _, _ in terms], [s for _, s, _ in terms])
        fill_table(self.history, ["time (UTC)", "event", "item", "title / query", "category", "value", "session"],
                   [[fmt_ts(h["ts"]), h["event_type"], h["item_id"] or "", h["title"] or h["query"] or "",
                     self._category(h), h["value"], h["session_id"] or ""] for h in p.history])
        self.history.resizeColumnsToContents()
        grouped = " (categories: text clusters of item titles)" if self.item_group else ""
        self.profile_note.setText(f"Latest {len(p.history)} events{grouped}.")
        self.paths.set_sessions(result["sessions"])
        items = [h["item_id"] for h in p.history if h["item_id"]]
        self.paths.set_completions(list(dict.fromkeys(result["queries"] + items)))

    def _category(self, h: dict[str, Any]) -> str:
        if not h["item_id"]:
            return ""
        if self.item_group:
            return self.item_group.get(h["item_id"], h["category"])
        return h["category"]

    def _session_picked(self, session_id: str) -> None:
        if self.user_id is None or self.ctx.path is None:
            return
        sid = None if session_id == ALL_EVENTS or session_id.startswith("auto-") else session_id
        self.path_runner.start(lambda ctx, p=self.ctx.path, u=self.user_id: ij.path_job(ctx, p, u, sid),
                               on_result=self.paths.set_path, on_error=self._error)

    def show_funnel(self, kind: str, text: str) -> None:
        if self.ctx.path is None:
            return
        self.funnel_runner.start(lambda ctx, p=self.ctx.path: ij.funnel_job(ctx, p, kind, text),
                                 on_result=self.paths.show_funnel, on_error=self._error)

    def load_recommendations(self) -> None:
        if self.user_id is None or self.ctx.path is None:
            return
        self.recs_panel.status.setText("Loading the model and ranking…")
        args = (self.ctx.path, self.generation, self.encoder_spec, self.user_id)
        self.model_runner.start(lambda ctx: ij.recs_job(ctx, *args), label="Recommending",
                                on_result=self._show_recs, on_error=self._error, channel="recs")

    def _show_recs(self, result: dict[str, Any]) -> None:
        self.recs = result
        info = result["info"]
        self.recs_panel.show_result(result["ranked"], result["nearest"], info.model_name,
                                    "; ".join(result["ranked"].notes) or info.warning)
        if result["groups"] is not None and self.item_group is None:
            self.item_group = result["groups"]  # catalogue without categories: redo with text clusters
            if self.profile is not None and self.profile.user_id == self.user_id:
                groups = self.item_group
                self.profile_runner.start(
                    lambda ctx, p=self.ctx.path, u=self.user_id: ij.profile_job(ctx, p, u, groups),
                    on_result=self._show_profile, on_error=self._error)

    def explain(self, item_id: str) -> None:
        if self.recs is None or self.ctx.path is None:
            return
        args = (self.ctx.path, self.generation, self.encoder_spec, self.recs["request"], item_id)
        self.model_runner.start(lambda ctx: ij.explain_job(ctx, *args), on_result=self.recs_panel.explain.show_explanation,
                                on_error=self._error, channel="explain")

    def _error(self, exc: BaseException, _tb: str) -> None:
        self.show_error(f"Users: {error_text(exc)}")

    # ------------------------------------------------------------ for tests
    def chart_sizes(self) -> dict[str, int]:
        """Number of data points each chart holds (tests and screenshots check them)."""
        curves = [c.getData()[1] for c in self.activity.curves.values()]
        return {"activity": int(sum(np.nansum(y) for y in curves if y is not None)),
                "mix": len(self.mix.values), "categories": len(self.categories.values),
                "terms": len(self.terms.values), "history": self.history.rowCount(),
                "path": self.paths.chart.n_points, "funnel": len(self.paths.funnel_chart.values),
                "recs": self.recs_panel.model.rowCount()}
