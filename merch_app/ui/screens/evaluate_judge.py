"""Judge tab of the Evaluate screen: rate the results of a suite's queries inline (keys 0-3).

With a name in the Rater box grades are that rater's (:mod:`merch_app.evaluation.raters`): the
table shows the rater's own grades, and the blind queue shows the unrated results of the top k
of every query one at a time, title only, in a seeded random order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from merch_app.evaluation.raters import Agreement
from merch_app.services import evaluate_jobs as ej
from merch_app.services import rater_jobs as rj
from merch_app.ui.screens.common import bare_column, entry_row
from merch_app.ui.screens.evaluate_widgets import fmt, grade_brush
from merch_app.ui.workers import error_text

if TYPE_CHECKING:
    from merch_app.ui.screens.evaluate_screen import EvaluateScreen

COLUMNS = ["grade", "rank", "item_id", "title", "price", "score"]
GRADE_KEYS = {Qt.Key.Key_0: 0, Qt.Key.Key_1: 1, Qt.Key.Key_2: 2, Qt.Key.Key_3: 3}
CLEAR_KEYS = (Qt.Key.Key_Delete, Qt.Key.Key_Backspace)
GRADE_TEXT = {0: "0 not relevant", 1: "1 somewhat", 2: "2 relevant", 3: "3 perfect"}
SKIP_KEYS = (Qt.Key.Key_S, Qt.Key.Key_Space)
BLIND_SEED = 0


def agreement_text(a: Agreement) -> str:
    """The Evaluate screen's agreement line of a suite ('' with fewer than two raters)."""
    if len(a.raters) < 2:
        return ""
    kind = "Cohen" if a.kappa_kind == "cohen" else f"Fleiss, {len(a.raters)} raters"
    kappa = "–" if a.kappa is None else f"{a.kappa:.2f}"
    return (f"κ {kappa} ({kind}, n {a.kappa_n}), "
            f"{len(a.disagreements)} disagreement{'s' if len(a.disagreements) != 1 else ''}")


class BlindCard(QWidget):
    """One result of the blind queue: its query and title (no rank, no score), keys 0-3 to grade, S to skip."""

    def __init__(self, panel: "JudgePanel") -> None:
        super().__init__()
        self.panel = panel
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        lay = QVBoxLayout(self)
        self.progress = QLabel()
        self.progress.setStyleSheet("color: #555;")
        self.query = QLabel()
        self.query.setStyleSheet("font-size: 13pt;")
        self.query.setWordWrap(True)
        self.title = QLabel()
        self.title.setStyleSheet("font-size: 16pt; font-weight: bold;")
        self.title.setWordWrap(True)
        lay.addWidget(self.progress)
        lay.addStretch(1)
        lay.addWidget(self.query)
        lay.addWidget(self.title)
        lay.addSpacing(16)
        buttons = QHBoxLayout()
        for g, text in GRADE_TEXT.items():
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, g=g: self.panel.blind_rate(g))
            buttons.addWidget(b)
        for text, slot in (("Skip (S)", self.panel.blind_skip), ("Stop (Esc)", self.panel.stop_blind)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        lay.addLayout(buttons)
        lay.addStretch(2)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt name
        key = Qt.Key(event.key())
        if key in GRADE_KEYS:
            self.panel.blind_rate(GRADE_KEYS[key])
        elif key in SKIP_KEYS:
            self.panel.blind_skip()
        elif key == Qt.Key.Key_Escape:
            self.panel.stop_blind()
        else:
            super().keyPressEvent(event)


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
        self.queue: list[dict[str, str]] = []  # the blind queue being judged
        self.queue_pos = 0

        lay = QHBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal)
        left, ll = bare_column()
        ll.addWidget(QLabel("Queries of the suite"))
        self.queries = QListWidget()
        self.queries.currentTextChanged.connect(self.show_query)
        ll.addWidget(self.queries, 1)
        add_row, self.new_query, self.add_button = entry_row("Add a query…", "Add", self.add_query)
        ll.addLayout(add_row)
        rater_row = QHBoxLayout()
        rater_row.addWidget(QLabel("Rater:"))
        self.rater_edit = QLineEdit()
        self.rater_edit.setPlaceholderText("your name (blank: unnamed)")
        self.rater_edit.setToolTip("With a name, your grades are kept apart from the other raters' and the "
                                   "suite's grade is their merge; the agreement is on the line above.")
        self.rater_edit.editingFinished.connect(self.rater_changed)
        rater_row.addWidget(self.rater_edit, 1)
        self.queue_button = QPushButton("Blind queue")
        self.queue_button.setToolTip("Grade the results of the top k of every query you have not graded, one at "
                                     "a time, title only, in a random order")
        self.queue_button.clicked.connect(self.start_blind_queue)
        rater_row.addWidget(self.queue_button)
        ll.addLayout(rater_row)
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
        self.pages = QStackedWidget()
        self.pages.addWidget(self.table)
        self.card = BlindCard(self)
        self.pages.addWidget(self.card)
        rl.addWidget(self.pages, 1)
        split.addWidget(right)
        split.setSizes([260, 900])
        lay.addWidget(split)

    # ----------------------------------------------------------------- rater
    def rater(self) -> Optional[str]:
        """The name in the Rater box (whitespace collapsed), None when blank."""
        return " ".join(self.rater_edit.text().split()) or None

    def load_rater(self) -> None:
        """Show the rater name remembered in the workspace (a quick read)."""
        db = self.screen.ctx.db
        self.rater_edit.setText(rj.rater_name(db) if db is not None else "")

    def rater_changed(self) -> None:
        """Remember the name in the workspace and show the current query's grades of that rater."""
        path, name = self.screen.ctx.path, self.rater() or ""
        if path is None:
            return
        self.save_runner.start(lambda ctx: rj.save_rater_name(ctx, path, name), cancel_previous=False,
                               keep_stale=True, on_error=lambda exc, _tb: self.screen.show_error(error_text(exc)))
        if self.query:
            self.show_query(self.query)

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
        n, rater = max(self.screen.k_spin.value(), 20), self.rater()
        self._leave_blind()
        self.runner_.start(lambda ctx: rj.judge_results_as(ctx, args[0], system, args[1], args[2], suite, query, n,
                                                           rater),
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
        who = f" by {self.rater()}" if self.rater() else ""
        self.header.setText(f"“{self.query}”: {rated} of {len(rows)} results rated{who} "
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
        item_id, query = self.item_ids[row], self.query
        if grade is None:
            self.grades.pop(item_id, None)
        else:
            self.grades[item_id] = grade
        self._paint_grade(row)
        self._save(suite, query, item_id, grade)
        if row + 1 < self.table.rowCount():
            self.table.selectRow(row + 1)

    def _save(self, suite: str, query: str, item_id: str, grade: Optional[int]) -> None:
        """Save one grade in the worker: the rater's when the Rater box has a name, else the suite's own."""
        path, rater = self.screen.ctx.path, self.rater()

        def job(ctx):
            if rater:
                return rj.save_rater_grade(ctx, path, suite, query, item_id, grade, rater)
            return ej.save_grade(ctx, path, suite, query, item_id, grade)

        self.save_runner.start(job, cancel_previous=False, keep_stale=True, on_result=self._saved,
                               on_error=lambda exc, _tb: self.screen.show_error(f"Grade not saved: {error_text(exc)}"))

    def _saved(self, result: tuple) -> None:
        query, item_id, grade = result
        self.saved += 1
        self.judged.emit(query, item_id, grade)

    # ----------------------------------------------------------- blind queue
    def start_blind_queue(self) -> None:
        """Build this rater's blind queue over the top k (the k box) of every query of the suite."""
        suite, rater = self.screen.suite_name(), self.rater()
        if not suite or suite == ej.BEHAVIOUR:
            self.screen.show_error("Pick a stored suite first: the blind queue grades its queries' results.")
            return
        if not rater:
            self.screen.show_error("Type your name in the Rater box first: the blind queue is per rater.")
            return
        system, (path, enc, gen), depth = self.screen.system(), self.screen.job_args(), self.screen.k_spin.value()
        self.header.setText(f"Ranking the queries of “{suite}” for {rater}’s blind queue…")
        self.runner_.start(lambda ctx: rj.blind_queue(ctx, path, system, enc, gen, suite, rater, depth, BLIND_SEED),
                           label="Building the blind queue", on_result=self._show_queue,
                           on_error=lambda exc, _tb: self.header.setText(f"No blind queue: {error_text(exc)}"))

    def _show_queue(self, pairs: list[dict[str, str]]) -> None:
        self.queue, self.queue_pos = list(pairs), 0
        if not self.queue:
            self.header.setText(f"Nothing to grade: {self.rater()} graded every result in the top "
                                f"{self.screen.k_spin.value()} of every query.")
            return
        self.pages.setCurrentWidget(self.card)
        self._show_pair()

    def _show_pair(self) -> None:
        if self.queue_pos >= len(self.queue):
            n = len(self.queue)
            self.stop_blind()
            self.screen.show_info(f"Blind queue done: {n} results seen. Press Blind queue again for any you skipped.")
            return
        pair = self.queue[self.queue_pos]
        self.header.setText(f"Blind queue of {self.rater()}: grade each result for its query (0–3), S skips, "
                            "Esc stops. Rank and score are hidden.")
        self.card.progress.setText(f"{self.queue_pos + 1} of {len(self.queue)} · top {self.screen.k_spin.value()} "
                                   f"of each query · random order")
        self.card.query.setText(f"Query: “{pair['query']}”")
        self.card.title.setText(pair["title"] or "(no title)")
        self.card.setFocus()

    def blind_rate(self, grade: int) -> None:
        """Grade the result shown by the blind queue and show the next."""
        suite = self.screen.suite_name()
        if not self.queue or self.queue_pos >= len(self.queue) or not suite:
            return
        pair = self.queue[self.queue_pos]
        self._save(suite, pair["query"], pair["item_id"], grade)
        self.queue_pos += 1
        self._show_pair()

    def blind_skip(self) -> None:
        if self.queue and self.queue_pos < len(self.queue):
            self.queue_pos += 1
            self._show_pair()

    def stop_blind(self) -> None:
        """Leave the blind queue: back to the results table of the current query, with the new grades."""
        if self._leave_blind() and self.query:
            self.show_query(self.query)

    def _leave_blind(self) -> bool:
        """Show the table again; False when the blind queue was not shown."""
        if self.pages.currentWidget() is not self.card:
            return False
        self.pages.setCurrentWidget(self.table)
        self.queue, self.queue_pos = [], 0
        return True
