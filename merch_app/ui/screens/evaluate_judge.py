"""Judge tab of the Evaluate screen: rate the results of a suite's queries inline (keys 0-3)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from merch_app.services import evaluate_jobs as ej
from merch_app.ui.screens.common import bare_column, entry_row
from merch_app.ui.screens.evaluate_widgets import fmt, grade_brush
from merch_app.ui.workers import error_text

if TYPE_CHECKING:
    from merch_app.ui.screens.evaluate_screen import EvaluateScreen

COLUMNS = ["grade", "rank", "item_id", "title", "price", "score"]
GRADE_KEYS = {Qt.Key.Key_0: 0, Qt.Key.Key_1: 1, Qt.Key.Key_2: 2, Qt.Key.Key_3: 3}
CLEAR_KEYS = (Qt.Key.Key_Delete, Qt.Key.Key_Backspace)
GRADE_TEXT = {0: "0 not relevant", 1: "1 somewhat", 2: "2 relevant", 3: "3 perfect"}


class JudgePanel(QWidget):
    """Queries of the current suite on the left, the selected query's results to rate on the right.

    Signals
    -------
    judged(str, str, object)
        A grade was saved: query, item id, grade (None = cleared).
    """

    judged = Signal(str, str, object)

    def __init__(self, screen: "EvaluateScreen") -> None:
        super().__init__()
        self.screen = screen
        self.runner_ = screen.runner("judge")
        self.save_runner = screen.runner("judge-save")
        self.query: Optional[str] = None
        self.item_ids: list[str] = []
        self.grades: dict[str, int] = {}
        self.results_shown = 0
        self.saved = 0

        lay = QHBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal)
        left, ll = bare_column()
        ll.addWidget(QLabel("Queries of the suite"))
        self.queries = QListWidget()
        self.queries.currentTextChanged.connect(self.show_query)
        ll.addWidget(self.queries, 1)
        add_row, self.new_query, self.add_button = entry_row("Add a query…", "Add", self.add_query)
        ll.addLayout(add_row)
        split.addWidget(left)

        right, rl = bare_column()
        self.header = QLabel("Pick or add a query; then select a result and press 0–3 to rate it "
                             "(0 not relevant … 3 perfect, Del clears).")
        self.header.setWordWrap(True)
        rl.addWidget(self.header)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(COLUMNS.index("title"), QHeaderView.ResizeMode.Stretch)
        for col, w in (("grade", 110), ("rank", 40), ("item_id", 70), ("price", 60), ("score", 60)):
            self.table.setColumnWidth(COLUMNS.index(col), w)
        self.table.installEventFilter(self)
        rl.addWidget(self.table, 1)
        split.addWidget(right)
        split.setSizes([260, 900])
        lay.addWidget(split)

    # ----------------------------------------------------------------- suite
    def set_queries(self, queries: list[str]) -> None:
        current = self.query
        self.queries.blockSignals(True)
        self.queries.clear()
        self.queries.addItems(queries)
        self.queries.blockSignals(False)
        if current in queries:
            self.queries.setCurrentRow(queries.index(current))
        elif queries:
            self.queries.setCurrentRow(0)
            self.show_query(queries[0])
        else:
            self.query = None
            self.table.setRowCount(0)

    def add_query(self) -> None:
        text = " ".join(self.new_query.text().split())
        suite = self.screen.suite_name()
        if not text:
            return
        if not suite:
            self.screen.show_error("Create or pick a suite first (New suite…).")
            return
        path = self.screen.ctx.path
        self.save_runner.start(lambda ctx: ej.save_grade(ctx, path, suite, text, None, None),
                               cancel_previous=False, keep_stale=True,
                               on_result=lambda _r: self._query_added(text),
                               on_error=lambda exc, _tb: self.screen.show_error(error_text(exc)))

    def _query_added(self, text: str) -> None:
        self.new_query.clear()
        if not self.queries.findItems(text, Qt.MatchFlag.MatchExactly):
            self.queries.addItem(text)
        self.queries.setCurrentRow(self.queries.count() - 1)
        self.screen.suite_edited()

    # --------------------------------------------------------------- results
    def show_query(self, query: str) -> None:
        """Rank ``query`` with the current system and show its results with their grades."""
        if not query or self.screen.ctx.path is None:
            return
        self.query = query
        self.header.setText(f"Ranking “{query}”…")
        system, suite, args = self.screen.system(), self.screen.suite_name(), self.screen.job_args()
        n = max(self.screen.k_spin.value(), 20)
        self.runner_.start(lambda ctx: ej.judge_results(ctx, args[0], system, args[1], args[2], suite, query, n),
                           label="" if self.results_shown else "Loading the model for judging",
                           on_result=self._show_results,
                           on_error=lambda exc, _tb: self.header.setText(f"Cannot rank: {error_text(exc)}"))

    def _show_results(self, res: dict[str, Any]) -> None:
        if res["query"] != self.query:
            return
        self.grades = dict(res["grades"])
        rows = res["rows"]
        self.item_ids = [r["item_id"] for r in rows]
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            values = [None, r["rank"], r["item_id"], r["title"], fmt(r["price"], 2), fmt(r["score"])]
            for c, v in enumerate(values):
                self.table.setItem(i, c, QTableWidgetItem("" if v is None else str(v)))
            self._paint_grade(i)
        rated = sum(1 for i in self.item_ids if i in self.grades)
        notes = f" · {'; '.join(res['notes'])}" if res["notes"] else ""
        self.header.setText(f"“{self.query}”: {rated} of {len(rows)} results rated "
                            f"({len(self.grades)} judgments in the suite). Select a row, press 0–3; Del clears."
                            f"{notes}")
        self.results_shown += 1
        if rows and self.table.currentRow() < 0:
            self.table.selectRow(0)

    def _paint_grade(self, row: int) -> None:
        g = self.grades.get(self.item_ids[row])
        item = self.table.item(row, 0)
        item.setText(GRADE_TEXT[g] if g is not None else "unrated")
        for c in range(self.table.columnCount()):
            self.table.item(row, c).setBackground(grade_brush(g))

    # ---------------------------------------------------------------- rating
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt name
        if obj is self.table and event.type() == QEvent.Type.KeyPress:
            key = Qt.Key(event.key())
            row = self.table.currentRow()
            if row >= 0 and (key in GRADE_KEYS or key in CLEAR_KEYS):
                self.rate(row, GRADE_KEYS.get(key))
                return True
        return super().eventFilter(obj, event)

    def rate(self, row: int, grade: Optional[int]) -> None:
        """Give result ``row`` a grade (None clears it), save it and move to the next row."""
        suite = self.screen.suite_name()
        if not suite:
            self.screen.show_error("Create or pick a suite first (New suite…): grades are saved into a suite.")
            return
        if self.query is None or not 0 <= row < len(self.item_ids):
            return
        item_id, query, path = self.item_ids[row], self.query, self.screen.ctx.path
        if grade is None:
            self.grades.pop(item_id, None)
        else:
            self.grades[item_id] = grade
        self._paint_grade(row)
        self.save_runner.start(lambda ctx: ej.save_grade(ctx, path, suite, query, item_id, grade),
                               cancel_previous=False, keep_stale=True, on_result=self._saved,
                               on_error=lambda exc, _tb: self.screen.show_error(
                                   f"Grade not saved: {error_text(exc)}"))
        if row + 1 < self.table.rowCount():
            self.table.selectRow(row + 1)

    def _saved(self, result: tuple) -> None:
        query, item_id, grade = result
        self.saved += 1
        self.judged.emit(query, item_id, grade)
