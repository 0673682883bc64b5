"""Panels of the Users screen: behaviour paths and funnels, recommendations with explanations."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtCore import QStringListModel, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from merch_app.insights.common import ts_to_epoch
from merch_app.insights.paths import group_steps
from merch_app.ui.screens.common import bare_column
from merch_app.ui.screens.explain_panel import ExplainPanel
from merch_app.ui.screens.insights_charts import FunnelChart, PathChart
from merch_app.ui.screens.insights_common import boxed, fmt_ts, note_label
from merch_app.ui.screens.results_table import BAR_COLUMN, COLUMNS, ComponentBarDelegate, ResultsModel

ALL_EVENTS = "__all__"


class PathsPanel(QWidget):
    """Sessions of the user, the selected path over time, and an item/query funnel.

    Signals
    -------
    session_selected(str)
        A session id, or :data:`ALL_EVENTS` for the user's whole path.
    funnel_requested(str, str)
        ("item" | "query", text).
    """

    session_selected = Signal(str)
    funnel_requested = Signal(str, str)

    def __init__(self) -> None:
        super().__init__()
        self.path = None
        self.funnel = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        top = QSplitter(Qt.Orientation.Horizontal)
        self.sessions = QListWidget()
        self.sessions.currentItemChanged.connect(self._session_changed)
        top.addWidget(boxed("Sessions (newest first)", self.sessions))
        right, rl = bare_column()
        self.chart = PathChart("Behaviour path — hover a point for the item")
        self.even = QCheckBox("Evenly spaced (step order instead of time)")
        self.even.toggled.connect(lambda _on: self._draw())
        self.path_note = note_label()
        rl.addWidget(self.chart.widget, 1)
        row = QHBoxLayout()
        row.addWidget(self.even)
        row.addWidget(self.path_note, 1)
        rl.addLayout(row)
        top.addWidget(right)
        top.setSizes([300, 900])
        lay.addWidget(top, 3)

        fbox, fl = bare_column()
        row = QHBoxLayout()
        self.funnel_kind = QComboBox()
        self.funnel_kind.addItems(["item", "query"])
        self.funnel_text = QLineEdit()
        self.funnel_text.setPlaceholderText("item id (e.g. from the history) or a search query")
        self.funnel_text.returnPressed.connect(self._ask_funnel)
        self.completions = QStringListModel()
        self.completer = QCompleter(self.completions, self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.funnel_text.setCompleter(self.completer)
        self.funnel_button = QPushButton("Show funnel")
        self.funnel_button.clicked.connect(self._ask_funnel)
        row.addWidget(QLabel("Funnel of"))
        row.addWidget(self.funnel_kind)
        row.addWidget(self.funnel_text, 1)
        row.addWidget(self.funnel_button)
        fl.addLayout(row)
        self.funnel_chart = FunnelChart("How many who reached a step went on to the next")
        fl.addWidget(self.funnel_chart.widget, 1)
        # a pyqtgraph view's size hint is its current size: the stretch factors (3 : 2) decide instead,
        # else the funnel kept the height and the path squeezed under its note
        for chart in (self.chart.widget, self.funnel_chart.widget):
            chart.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.funnel_note = note_label("Pick an item or a query.")
        fl.addWidget(self.funnel_note)
        lay.addWidget(boxed("Aggregate funnel", fbox), 2)

    # --------------------------------------------------------------- sessions
    def set_sessions(self, sessions: list[dict[str, Any]]) -> None:
        self.sessions.blockSignals(True)
        self.sessions.clear()
        first = QListWidgetItem("All events of the user")
        first.setData(Qt.ItemDataRole.UserRole, ALL_EVENTS)
        self.sessions.addItem(first)
        for s in sessions:
            seq = " → ".join(s["sequence"][:6]) + (" …" if len(s["sequence"]) > 6 else "")
            item = QListWidgetItem(f"{fmt_ts(s['start'])[:16]} · {s['events']} event{'' if s['events'] == 1 else 's'}"
                                   f"\n  {seq}")
            item.setData(Qt.ItemDataRole.UserRole, s["session_id"])
            item.setToolTip(f"session {s['session_id']}")
            self.sessions.addItem(item)
        self.sessions.setCurrentRow(0)
        self.sessions.blockSignals(False)

    def _session_changed(self, current: Optional[QListWidgetItem], _prev) -> None:
        if current is not None:
            self.session_selected.emit(current.data(Qt.ItemDataRole.UserRole))

    def set_path(self, path) -> None:
        """Draw a :class:`~merch_app.insights.paths.BehaviourPath`."""
        self.path = path
        self._draw()

    def _draw(self) -> None:
        p = self.path
        if p is None:
            self.chart.set_path(np.zeros(0), np.zeros(0), [], [])
            return
        groups = group_steps(p.steps)  # one point per basket (same time, same event type)
        epoch = ts_to_epoch([g.ts for g in groups]) if groups else np.zeros(0)
        same_time = len(groups) > 1 and float(epoch.max() - epoch.min()) == 0.0
        even = self.even.isChecked() or same_time
        x = np.arange(len(groups), dtype=float) if even else epoch
        tips = [f"{fmt_ts(g.ts)} · {g.event_type} ×{g.count}\n" + "\n".join(g.titles)
                + ("\n…" if g.count > len(g.titles) else "") for g in groups]
        sizes = [min(7 + 2.5 * np.sqrt(g.count), 26) for g in groups]
        self.chart.widget.getAxis("bottom").setLabel("step" if even else "time (UTC)")
        self.chart.set_path(x, np.array([g.level for g in groups], float), [g.event_type for g in groups],
                            tips, sizes)
        more = " (older events cut)" if p.truncated else ""
        self.path_note.setText(f"{p.subject}: {len(p.steps)} events in {len(groups)} steps{more} "
                               "(a point per basket, bigger = more items) · " + " → ".join(p.sequence()[:10]))

    # ----------------------------------------------------------------- funnel
    def set_completions(self, texts: list[str]) -> None:
        """Suggestions for the funnel box (frequent queries and the user's items)."""
        self.completions.setStringList(texts)

    def _ask_funnel(self) -> None:
        text = self.funnel_text.text().strip()
        if text:
            self.funnel_note.setText("counting…")
            self.funnel_requested.emit(self.funnel_kind.currentText(), text)

    def show_funnel(self, funnel) -> None:
        self.funnel = funnel
        self.funnel_chart.set_funnel(funnel.stages, funnel.reached, funnel.step_rate, funnel.returned)
        ret = f"; {funnel.returned} returned it" if funnel.returned else ""
        self.funnel_note.setText(f"{funnel.subject}: {funnel.actors:,} shoppers (users, or sessions when "
                                 f"anonymous){ret}. A step counts everyone who got that far or further.")


class RecsPanel(QWidget):
    """The user's recommendations (same explanations as the Query screen) and nearest users.

    Signals
    -------
    item_selected(str)
        A recommendation row was selected (explain it).
    user_activated(str)
        A nearest user was double-clicked (open their profile).
    """

    item_selected = Signal(str)
    user_activated = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Orientation.Horizontal)
        left, ll = bare_column()
        self.status = note_label("Select a user.")
        ll.addWidget(self.status)
        self.model = ResultsModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(BAR_COLUMN, ComponentBarDelegate(self.table))
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        for col, width in (("rank", 40), ("change", 10), ("id", 70), ("category", 90), ("price", 60),
                           ("score", 60), ("components", 150)):
            self.table.setColumnWidth(COLUMNS.index(col), width)
        self.table.setColumnHidden(COLUMNS.index("change"), True)
        self.table.horizontalHeader().setSectionResizeMode(COLUMNS.index("title"), QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _p: self._row(cur.row()))
        ll.addWidget(self.table, 3)
        self.nearest = QListWidget()
        self.nearest.itemDoubleClicked.connect(
            lambda it: self.user_activated.emit(it.data(Qt.ItemDataRole.UserRole)))
        ll.addWidget(boxed("Nearest users by model vector (double-click to open)", self.nearest), 1)
        split.addWidget(left)
        self.explain = ExplainPanel()
        self.explain.why_not_group.hide()
        # recommendations have no query: the word heatmap and keyword table would stay empty
        self.explain.heatmap.widget.hide()
        self.explain.terms_table.parentWidget().hide()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.explain)
        split.addWidget(scroll)
        split.setSizes([760, 500])
        lay.addWidget(split)

    def _row(self, row: int) -> None:
        item_id = self.model.item_id(row)
        if item_id is not None:
            self.item_selected.emit(item_id)

    def show_result(self, ranked, nearest: list[dict], model_name: str, note: Optional[str]) -> None:
        self.model.set_ranked(ranked, compare=False)
        self.table.setColumnHidden(COLUMNS.index("category"), not any(ranked.categories))
        self.explain.clear("Select a recommendation to see why it is there.")
        extra = f" — {note}" if note else ""
        self.status.setText(f"Top {len(ranked)} for this user with {model_name}{extra}")
        self.nearest.clear()
        for n in nearest:
            item = QListWidgetItem(f"{n['user_id']}  (cosine {n['similarity']:.2f})")
            item.setData(Qt.ItemDataRole.UserRole, n["user_id"])
            self.nearest.addItem(item)
        if not nearest:
            self.nearest.addItem("— needs a trained CF model that knows this user —")
        if len(ranked):
            self.table.selectRow(0)
