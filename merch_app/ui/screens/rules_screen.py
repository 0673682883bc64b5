"""Rules screen: merchandising rules with their lifecycle, conflicts on save, activity log and impact preview."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QDate, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from merch_app.evaluation.compare import rank_moves
from merch_app.evaluation.rule_impact import summarise
from merch_app.evaluation.suites import list_suites
from merch_app.insights.common import item_titles
from merch_app.ranking.rules import (
    ATTRIBUTES, MATCH_TYPES, RULE_KINDS, STATUSES, MerchRule, RuleError, delete_rule, load_rules, rule_log,
    validate_rule,
)
from merch_app.ranking.types import Weights
from merch_app.services import evaluate_jobs as ej
from merch_app.services.rule_edits import RuleConflictError, save_checked, set_status_checked
from merch_app.ui.screens.base import Screen
from merch_app.ui.screens.common import bare_column
from merch_app.ui.screens.evaluate_widgets import SlopeChart, SortableTable, cell
from merch_app.ui.screens.insights_common import fmt_ts
from merch_app.ui.screens.rules_usage import UsagePanel
from merch_app.ui.workers import error_text

RULE_COLUMNS = ["on", "id", "status", "window", "owner", "rule"]
STATES = ("all", "draft", "live", "scheduled", "expired")
STATE_COLOURS = {"live": "#067647", "scheduled": "#175cd3", "draft": "#667085", "expired": "#b42318"}
KIND_HELP = {
    "pin": "Put an item at a fixed position for matching queries.",
    "boost": "Add the weight to the score of items with the attribute.",
    "bury": "Subtract the weight from the score of items with the attribute.",
    "hide": "Never show the item for matching queries.",
    "synonym": "A query with one of the terms also searches the others.",
    "rewrite": "Search matching queries as another text.",
    "slot": "Put the best item with the attribute at a position.",
    "redirect": "Send shoppers who search it to a page.",
}
MATCH_HELP = {
    "exact": "the whole query is the pattern ('christmas' only)",
    "phrase": "these words together, in order, also in longer queries ('christmas lights')",
    "all": "every word, any order ('christmas lights' fires on 'lights for christmas')",
    "regex": "a regular expression search in the query",
}
FIELDS_BY_KIND = {
    "pin": {"item", "position"}, "hide": {"item"}, "boost": {"attribute", "weight"},
    "bury": {"attribute", "weight"}, "synonym": {"terms"}, "rewrite": {"to"},
    "slot": {"attribute", "position"}, "redirect": {"url"},
}
RED = "#b42318"


def _qdate(day: Optional[str]) -> QDate:
    return QDate.fromString(day, "yyyy-MM-dd") if day else QDate.currentDate()


def _day(edit: QDateEdit) -> str:
    return edit.date().toString("yyyy-MM-dd")


class RulesScreen(Screen):
    """Rules list with status filter and activity log on the left; the rule form and its impact on the right."""

    title = "Rules"

    def __init__(self, window) -> None:
        super().__init__(window)
        self.io_runner = self.runner("rules-io")
        self.impact_runner = self.runner("rules-impact")
        self.encoder_spec: Optional[str] = None
        self.generation = 0
        self.all_rules: list[MerchRule] = []
        self.rules: list[MerchRule] = []  # the rows shown (after the status filter)
        self.editing_id: Optional[int] = None
        self.impact = None
        self.impacts_shown = 0
        self.conflicts: list = []  # of the last save or status change
        self._build()

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        lay = QHBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal)
        left, ll = bare_column()
        filters = QHBoxLayout()
        filters.addWidget(QLabel("Show:"))
        self.status_filter = QComboBox()
        self.status_filter.addItems(list(STATES))
        self.status_filter.setToolTip("Rules in this state on the 'as of' day")
        self.status_filter.currentIndexChanged.connect(self.refresh)
        filters.addWidget(self.status_filter)
        filters.addWidget(QLabel("as of"))
        self.as_of = QDateEdit(QDate.currentDate())
        self.as_of.setCalendarPopup(True)
        self.as_of.setDisplayFormat("yyyy-MM-dd")
        self.as_of.setToolTip("The day rules are shown and previewed as of: live rules apply only inside their "
                              "window on this day (pick next week to preview a campaign)")
        self.as_of.dateChanged.connect(self.refresh)
        filters.addWidget(self.as_of)
        filters.addStretch(1)
        ll.addLayout(filters)
        self.table = QTableWidget(0, len(RULE_COLUMNS))
        self.table.setHorizontalHeaderLabels(RULE_COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setToolTip("Tick 'on' to make a rule live, untick to put it back to draft")
        self.table.horizontalHeader().setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        for c, w in ((0, 30), (1, 30), (2, 68), (3, 104), (4, 56)):  # window: "12-10..12-13" whole
            self.table.setColumnWidth(c, w)
        self.table.itemChanged.connect(self._item_changed)
        self.table.currentCellChanged.connect(lambda row, *_: self._load_row(row))
        ll.addWidget(self.table, 3)
        row = QHBoxLayout()
        self.new_button = QPushButton("New rule")
        self.new_button.clicked.connect(self.new_rule)
        self.live_button = QPushButton("Make live")
        self.live_button.setToolTip("Apply the selected rule in ranking (inside its window); refused on a conflict "
                                    "unless you confirm")
        self.live_button.clicked.connect(lambda: self.set_status("live"))
        self.draft_button = QPushButton("Back to draft")
        self.draft_button.clicked.connect(lambda: self.set_status("draft"))
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_rule)
        for b in (self.new_button, self.live_button, self.draft_button, self.delete_button):
            row.addWidget(b)
        row.addStretch(1)
        ll.addLayout(row)
        self.conflict_label = QLabel()
        self.conflict_label.setWordWrap(True)
        self.conflict_label.setTextFormat(Qt.TextFormat.PlainText)
        self.conflict_label.setStyleSheet(f"color: {RED};")
        self.conflict_label.hide()
        ll.addWidget(self.conflict_label)
        self.below = QTabWidget()  # the selected rule's activity, and every rule's use of the search log
        activity, al = bare_column()
        self.log_title = QLabel("Activity: select a rule")
        self.log_title.setStyleSheet("font-weight: bold;")
        al.addWidget(self.log_title)
        self.log_table = SortableTable(["when (UTC)", "who", "what", "changes"], stretch=3)
        al.addWidget(self.log_table.view, 1)
        self.below.addTab(activity, "Activity")
        self.usage = UsagePanel(self)
        self.below.addTab(self.usage, "Usage")
        ll.addWidget(self.below, 2)
        split.addWidget(left)

        right, rl = bare_column()
        rl.addWidget(self._form())
        rl.addWidget(self._impact_box(), 1)
        split.addWidget(right)
        split.setSizes([440, 840])
        lay.addWidget(split)
        self._kind_changed()

    def _form(self) -> QGroupBox:
        box = QGroupBox("Rule")
        form = self.form = QFormLayout(box)
        form.setVerticalSpacing(4)
        self.kind = QComboBox()
        self.kind.addItems(list(RULE_KINDS))
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.kind_help = QLabel()
        self.kind_help.setStyleSheet("color: #555;")
        kind_row = QHBoxLayout()
        kind_row.addWidget(self.kind)
        kind_row.addWidget(self.kind_help, 1)
        self.pattern = QLineEdit("*")
        self.pattern.setToolTip("The query text the rule fires on, read as the match type; * = every query")
        self.match = QComboBox()
        self.match.addItems(list(MATCH_TYPES))
        self.match.setCurrentText("phrase")
        self.match.currentIndexChanged.connect(self._match_changed)
        pattern_row = QHBoxLayout()
        pattern_row.addWidget(self.pattern, 1)
        pattern_row.addWidget(self.match)
        self.match_help = QLabel()
        self.match_help.setStyleSheet("color: #555;")
        self.item = QLineEdit()
        self.position = QSpinBox()
        self.position.setRange(1, 100)
        self.attribute = QComboBox()
        self.attribute.addItems(list(ATTRIBUTES))
        self.attribute.currentIndexChanged.connect(self._kind_changed)
        self.value = QLineEdit()
        self.price_min, self.price_max = QDoubleSpinBox(), QDoubleSpinBox()
        for b in (self.price_min, self.price_max):
            b.setRange(-1, 1e6)
            b.setSpecialValueText("any")
            b.setValue(-1)
        self.weight = QDoubleSpinBox()
        self.weight.setRange(0.01, 10.0)
        self.weight.setSingleStep(0.05)
        self.weight.setValue(0.2)
        self.terms = QLineEdit()
        self.terms.setPlaceholderText("mug, cup, beaker")
        self.to = QLineEdit()
        self.url = QLineEdit()
        self.url.setPlaceholderText("https://shop.example/christmas")
        self.name = QLineEdit()
        self.name.setPlaceholderText("(default: a description)")
        price = QHBoxLayout()
        price.addWidget(self.price_min)
        price.addWidget(QLabel("–"))
        price.addWidget(self.price_max)
        self.status = QComboBox()
        self.status.addItems(list(STATUSES))
        self.status.setCurrentText("live")
        self.status.setToolTip("draft: does nothing until made live; live: applies inside its window; "
                               "expired: stopped by hand")
        self.priority = QSpinBox()
        self.priority.setRange(-1000, 1000)
        self.priority.setToolTip("Between two rules of one kind that disagree the higher priority wins, then the "
                                 "newer rule (hide > pin > slot > bury > boost first)")
        status_row = QHBoxLayout()
        status_row.addWidget(self.status)
        status_row.addWidget(QLabel("priority"))
        status_row.addWidget(self.priority)
        self.start_on, self.end_on = QCheckBox("from"), QCheckBox("until")
        self.start_date, self.end_date = QDateEdit(QDate.currentDate()), QDateEdit(QDate.currentDate())
        window_row = QHBoxLayout()
        for check, edit in ((self.start_on, self.start_date), (self.end_on, self.end_date)):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
            check.toggled.connect(edit.setEnabled)
            window_row.addWidget(check)
            window_row.addWidget(edit)
        window_row.addStretch(1)
        status_row.addSpacing(12)
        status_row.addLayout(window_row, 1)
        self.owner = QLineEdit()
        self.owner.setPlaceholderText("owner")
        self.tags = QLineEdit()
        self.tags.setPlaceholderText("tags: black friday, lights")
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("why the rule is there")
        meta = QHBoxLayout()
        meta.addWidget(self.owner, 1)
        meta.addWidget(self.tags, 2)
        self.rows = {}
        for key, label, w in (("kind", "Kind", kind_row), ("pattern", "Query pattern", pattern_row),
                              ("match_help", "", self.match_help), ("item", "Item id", self.item),
                              ("position", "Position", self.position), ("attribute", "Attribute", self.attribute),
                              ("value", "Value", self.value), ("price", "Price range", price),
                              ("weight", "Weight", self.weight), ("terms", "Synonyms", self.terms),
                              ("to", "Search instead", self.to), ("url", "Send to", self.url),
                              ("status", "Status", status_row),
                              ("meta", "Owner, tags", meta), ("comment", "Comment", self.comment),
                              ("name", "Name", self.name)):
            form.addRow(label, w)
            self.rows[key] = w
        buttons = QHBoxLayout()
        self.impact_button = QPushButton("Preview impact")
        self.impact_button.clicked.connect(self.preview_impact)
        self.save_button = QPushButton("Save rule")
        self.save_button.setStyleSheet("font-weight: bold;")
        self.save_button.clicked.connect(self.save_rule)
        buttons.addWidget(QLabel("Suite:"))
        self.suite_combo = QComboBox()
        buttons.addWidget(self.suite_combo, 1)
        buttons.addWidget(self.impact_button)
        buttons.addWidget(self.save_button)
        form.addRow(buttons)
        self._match_changed()
        return box

    def _impact_box(self) -> QGroupBox:
        box = QGroupBox("Impact before enabling: every query it fires on, on top of the live rules, as of the day "
                        "above")
        lay = QVBoxLayout(box)
        self.impact_label = QLabel("Preview the impact to see every query the rule fires on, the rank moves and "
                                   "the judged metric change per query and over the suite.")
        self.impact_label.setWordWrap(True)
        lay.addWidget(self.impact_label)
        self.metrics = SortableTable(["judgments", "metric", "before", "after", "Δ", "p-value"], stretch=0)
        self.metrics.view.setMaximumHeight(70)
        lay.addWidget(self.metrics.view)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.touched = SortableTable(["query", "from", "searches", "moved", "ΔNDCG"])
        self.touched.view.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        self.touched.view.setColumnWidth(1, 62)
        self.touched.view.selectionModel().currentRowChanged.connect(lambda cur, _p: self._show_moves(cur.row()))
        self.touched.view.doubleClicked.connect(lambda idx: self.window_.open_query(self.touched.text(idx.row())))
        split.addWidget(self.touched.view)
        self.slope = SlopeChart("Rank moves: without → with the rule", label_chars=9, min_height=180,
                                empty_text="Preview the impact, then pick\na query to see its rank moves")
        split.addWidget(self.slope.widget)
        split.setSizes([390, 330])
        lay.addWidget(split, 1)
        return box

    # ----------------------------------------------------------------- hooks
    def on_workspace_changed(self) -> None:
        self.generation += 1
        self.usage.clear()
        self.refresh()

    def on_data_changed(self) -> None:
        self.generation += 1

    def on_models_changed(self) -> None:
        self.generation += 1

    def on_rules_changed(self) -> None:
        self.generation += 1
        self.refresh()

    def on_suites_changed(self) -> None:
        self.refresh()  # the suite picker of the preview

    def on_shown(self) -> None:
        self.refresh()

    def as_of_day(self) -> str:
        """The 'as of' day of the table and the preview (``YYYY-MM-DD``)."""
        return _day(self.as_of)

    def refresh(self) -> None:
        """Reload rules and suites (quick reads on the GUI connection)."""
        db = self.ctx.db
        day = self.as_of_day()
        self.all_rules = load_rules(db) if db is not None else []
        wanted = self.status_filter.currentText()
        self.rules = [r for r in self.all_rules if wanted == "all" or r.state(day) == wanted]
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.rules))
        for i, r in enumerate(self.rules):
            on = QTableWidgetItem()
            on.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            on.setCheckState(Qt.CheckState.Checked if r.status == "live" else Qt.CheckState.Unchecked)
            self.table.setItem(i, 0, on)
            state = r.state(day)
            window = f"{_short_day(r.start, day)}..{_short_day(r.end, day)}" if (r.start or r.end) else ""
            tip = (f"{r.kind}, match {r.match}: {r.pattern!r}" + (f"\nfrom {r.start or '…'} until {r.end or '…'}"
                                                                  if window else "")
                   + (f"\ntags: {', '.join(r.tags)}" if r.tags else "") + (f"\n{r.comment}" if r.comment else ""))
            for c, v in enumerate((r.rule_id, state, window, r.owner, r.name), start=1):
                item = QTableWidgetItem(str(v))
                item.setToolTip(tip)
                if c == 2:
                    item.setForeground(QColor(STATE_COLOURS.get(state, "#222")))
                self.table.setItem(i, c, item)
        self.table.blockSignals(False)
        current = self.suite_combo.currentData()
        self.suite_combo.blockSignals(True)
        self.suite_combo.clear()
        self.suite_combo.addItem("(none: rank moves + behaviour only)", None)
        for s in list_suites(db) if db is not None else []:
            self.suite_combo.addItem(s["name"], s["name"])
        idx = self.suite_combo.findData(current) if current else (1 if self.suite_combo.count() > 1 else 0)
        self.suite_combo.setCurrentIndex(max(idx, 0))
        self.suite_combo.blockSignals(False)
        shown = next((i for i, r in enumerate(self.rules) if r.rule_id == self.editing_id), None)
        if shown is not None:
            self.table.blockSignals(True)
            self.table.selectRow(shown)
            self.table.blockSignals(False)
        self._show_log(self.editing_id)

    def _show_log(self, rule_id: Optional[int]) -> None:
        db = self.ctx.db
        if rule_id is None or db is None:
            self.log_title.setText("Activity: select a rule")
            self.log_table.set_rows([])
            return
        entries = rule_log(db, rule_id)
        self.log_title.setText(f"Activity of rule {rule_id} ({len(entries)} change{'s' if len(entries) != 1 else ''})")
        rows = []
        for e in entries:
            what = "created" if e["action"] == "created" else "; ".join(
                f"{f} {_short(old)} → {_short(new)}" for f, (old, new) in e["changes"].items())
            rows.append([cell(fmt_ts(e["ts"])), cell(e["actor"]), cell(e["action"]), cell(what)])
        self.log_table.set_rows(rows)

    # ------------------------------------------------------------------ form
    def _kind_changed(self) -> None:
        kind = self.kind.currentText()
        shown = FIELDS_BY_KIND[kind]
        attr = self.attribute.currentText()
        for key in ("item", "position", "attribute", "weight", "terms", "to", "url"):
            self._show_row(key, key in shown)
        self._show_row("value", "attribute" in shown and attr != "price")
        self._show_row("price", "attribute" in shown and attr == "price")
        self._show_row("pattern", kind != "synonym")
        self._show_row("match_help", kind != "synonym")
        self.kind_help.setText(KIND_HELP[kind])
        self.form.parentWidget().updateGeometry()  # else the column's cached size still counts the hidden rows

    def _match_changed(self) -> None:
        self.match_help.setText(f"{self.match.currentText()}: {MATCH_HELP[self.match.currentText()]}")
        self.match_help.setToolTip("Words match whole: an incomplete as-you-type word ('christm') never fires an "
                                   "exact, phrase or all-words rule; previews and usage counts leave out the "
                                   "searches a shopper was still typing.")

    def _show_row(self, key: str, visible: bool) -> None:
        self.form.setRowVisible(self.rows[key], visible)

    def draft(self) -> MerchRule:
        """The rule described by the form (validated; :class:`RuleError` explains what is wrong)."""
        kind, attr = self.kind.currentText(), self.attribute.currentText()
        params: dict = {}
        if kind in ("pin", "hide"):
            params["item_id"] = self.item.text().strip()
            if kind == "pin":
                params["position"] = self.position.value()
        elif kind in ("boost", "bury", "slot"):
            params.update(attribute=attr, **({"position": self.position.value()} if kind == "slot"
                                              else {"weight": self.weight.value()}))
            if attr == "price":
                params.update(min=None if self.price_min.value() < 0 else self.price_min.value(),
                              max=None if self.price_max.value() < 0 else self.price_max.value())
            else:
                params["value"] = self.value.text().strip()
        elif kind == "synonym":
            params["terms"] = self.terms.text()
        elif kind == "redirect":
            params["url"] = self.url.text().strip()
        else:
            params["to"] = self.to.text().strip()
        pattern = "*" if kind == "synonym" else (self.pattern.text().strip() or "*")
        return validate_rule(MerchRule(
            kind, pattern, params, self.name.text().strip(), rule_id=self.editing_id,
            priority=self.priority.value(), status=self.status.currentText(), match=self.match.currentText(),
            start=_day(self.start_date) if self.start_on.isChecked() else None,
            end=_day(self.end_date) if self.end_on.isChecked() else None, owner=self.owner.text(),
            comment=self.comment.text(), tags=self.tags.text()))

    def new_rule(self) -> None:
        self.editing_id = None
        self.table.clearSelection()
        for w in (self.item, self.value, self.terms, self.to, self.url, self.name, self.owner, self.tags,
                  self.comment):
            w.clear()
        self.pattern.setText("*")
        self.match.setCurrentText("phrase")
        self.status.setCurrentText("live")
        self.priority.setValue(0)
        self.start_on.setChecked(False)
        self.end_on.setChecked(False)
        self._show_log(None)

    def _load_row(self, row: int) -> None:
        if not 0 <= row < len(self.rules):
            return
        r = self.rules[row]
        self.editing_id = r.rule_id
        p = r.params
        self.kind.setCurrentText(r.kind)
        self.pattern.setText(r.pattern)
        self.match.setCurrentText(r.match)
        self.item.setText(str(p.get("item_id", "")))
        self.position.setValue(int(p.get("position", 1)))
        self.attribute.setCurrentText(p.get("attribute", "category"))
        self.value.setText(str(p.get("value", "")))
        self.price_min.setValue(-1 if p.get("min") is None else float(p["min"]))
        self.price_max.setValue(-1 if p.get("max") is None else float(p["max"]))
        self.weight.setValue(float(p.get("weight", 0.2)))
        self.terms.setText(", ".join(p.get("terms", [])))
        self.to.setText(str(p.get("to", "")))
        self.url.setText(str(p.get("url", "")))
        self.name.setText("" if r.name == r.describe() else r.name)
        self.status.setCurrentText(r.status)
        self.priority.setValue(int(r.priority or 0))
        for check, edit, day in ((self.start_on, self.start_date, r.start), (self.end_on, self.end_date, r.end)):
            check.setChecked(day is not None)
            edit.setDate(_qdate(day))
        self.owner.setText(r.owner)
        self.tags.setText(", ".join(r.tags))
        self.comment.setText(r.comment)
        self._show_log(r.rule_id)

    # --------------------------------------------------------------- actions
    def confirm_conflicts(self, message: str) -> bool:
        """Ask whether to save despite conflicts (True = save anyway); tests replace it."""
        answer = QMessageBox.question(self, "Conflicting rules", message + "\n\nSave anyway?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _show_conflicts(self, conflicts, saved: bool) -> None:
        self.conflicts = list(conflicts)
        if not conflicts:
            self.conflict_label.hide()
            return
        head = "Saved despite conflicts (ranking follows the precedence):" if saved else "Not saved, conflicts:"
        self.conflict_label.setText(head + "\n" + "\n".join(f"• {c.sentence()}" for c in conflicts))
        self.conflict_label.show()

    def _run_checked(self, job, done_text) -> None:
        """Run a checked save or status change; on a conflict show it, ask, and run again forced when confirmed."""
        def failed(exc, _tb) -> None:
            if isinstance(exc, RuleConflictError):
                self._show_conflicts(exc.conflicts, saved=False)
                if self.confirm_conflicts(str(exc)):
                    self.io_runner.start(lambda ctx: job(ctx, True), cancel_previous=False, keep_stale=True,
                                         on_result=done, on_error=lambda e, _t: self.show_error(error_text(e)))
                else:
                    self.refresh()
                return
            self.show_error(error_text(exc))
            self.refresh()

        def done(result) -> None:
            rule, conflicts = result
            self.editing_id = rule.rule_id
            self._show_conflicts(conflicts, saved=True)
            self.refresh()
            self.show_info(done_text(rule))

        self.io_runner.start(lambda ctx: job(ctx, False), cancel_previous=False, keep_stale=True, on_result=done,
                             on_error=failed)

    def save_rule(self) -> None:
        """Validate and store the form's rule (insert or update); a live rule is checked for conflicts first."""
        try:
            rule = self.draft()
        except RuleError as exc:
            self.show_error(f"Rule not saved: {exc}")
            return
        path, day = self.ctx.path, self.as_of_day()
        self._run_checked(lambda ctx, force: save_checked(ctx.db(path), rule, force=force, as_of=day),
                          lambda r: f"Rule {r.rule_id} saved ({r.state(day)}): {r.name}.")

    def set_status(self, status: str, rule_id: Optional[int] = None) -> None:
        """Make the selected rule (or ``rule_id``) live or a draft; going live is checked for conflicts."""
        if rule_id is None:
            row = self.table.currentRow()
            if not 0 <= row < len(self.rules):
                return
            rule_id = self.rules[row].rule_id
        path, day = self.ctx.path, self.as_of_day()
        self._run_checked(lambda ctx, force: set_status_checked(ctx.db(path), rule_id, status, force=force,
                                                                as_of=day),
                          lambda r: f"Rule {r.rule_id} is {r.status} ({r.state(day)} on {day}): {r.name}.")

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != 0 or not 0 <= item.row() < len(self.rules):
            return
        self.set_status("live" if item.checkState() == Qt.CheckState.Checked else "draft",
                        self.rules[item.row()].rule_id)

    def delete_rule(self) -> None:
        row = self.table.currentRow()
        if not 0 <= row < len(self.rules):
            return
        rule_id, path = self.rules[row].rule_id, self.ctx.path
        self.io_runner.start(lambda ctx: delete_rule(ctx.db(path), rule_id), cancel_previous=False, keep_stale=True,
                             on_result=lambda _r: (self.new_rule(), self.refresh()),
                             on_error=lambda exc, _tb: self.show_error(error_text(exc)))

    def preview_impact(self) -> None:
        """Compute the drafted rule's impact as of the chosen day in the worker (nothing is saved)."""
        try:
            rule = self.draft()
        except RuleError as exc:
            self.impact_label.setText(f"<span style='color:{RED}'>{exc}</span>")
            return
        suite, path, gen, enc = self.suite_combo.currentData(), self.ctx.path, self.generation, self.encoder_spec
        system, day = ej.System(weights=Weights()), self.as_of_day()
        self.impact_label.setText("Computing the impact…")
        self.impact_runner.start(lambda ctx: ej.impact_job(ctx, path, rule, suite, system, enc, gen, as_of=day),
                                 label="Rule impact", on_result=self._show_impact,
                                 on_error=lambda exc, _tb: self.impact_label.setText(
                                     f"<span style='color:{RED}'>{error_text(exc)}</span>"))

    def _show_impact(self, impact) -> None:
        self.impact = impact
        self.impacts_shown += 1
        notes = [f"{label}: {getattr(impact, label)['skipped']}" for label in ("suite", "behaviour")
                 if "skipped" in getattr(impact, label)]
        self.impact_label.setText(summarise(impact) + (f"<br><span style='color:#777'>{'; '.join(notes)}</span>"
                                                       if notes else ""))
        rows = []
        for label in ("suite", "behaviour"):
            block = getattr(impact, label)
            if "before" not in block:
                continue
            p = block["pair"]["test"]["p_value"]
            for m in block["before"].metric_names:
                b, a = block["before"].mean[m], block["after"].mean[m]
                rows.append([cell(f"{label}: {block['name']}"), cell(m), cell(b), cell(a), cell(a - b, signed=True),
                             cell(p if m == "ndcg@10" else None, digits=4)])
        self.metrics.set_rows(rows)
        touched = {t["query"]: t for t in impact.touched}
        table = []
        for q in impact.queries:
            t = touched.get(q["query"])
            judged = q["judged"][0]["delta"] if q["judged"] else None
            row = [cell(q["query"]), cell(", ".join(q["sources"])), cell(q["searches"]),
                   cell(len(t["moves"]) if t else 0), cell(judged, signed=True)]
            row[1].setToolTip(", ".join(q["sources"]))
            if q["judged"]:
                row[4].setToolTip("; ".join(f"{j['suite']}: {j['before']:.3f} → {j['after']:.3f}" for j in q["judged"]))
            table.append(row)
        self.touched.set_rows(table, sort_column=2, ascending=False)
        if impact.touched:
            first = next(i for i in range(self.touched.row_count()) if self.touched.text(i) in touched)
            self.touched.view.selectRow(first)
            self._show_moves(first)

    def _show_moves(self, view_row: int) -> None:
        if self.impact is None or view_row < 0:
            return
        query = self.touched.text(view_row)
        t = next((t for t in self.impact.touched if t["query"] == query), None)
        if t is None:
            self.slope.set_moves([], "without rule", "with rule", {}, self.impact.k,
                                 empty=f"No rank moves: the top {self.impact.k} is the same")
            self.slope.widget.setTitle(f"“{query}”: the rule fires, the top {self.impact.k} does not change",
                                       size="10pt", color="#222")
            return
        moves = rank_moves(t["before"], t["after"], self.impact.k)
        titles = {}
        if self.ctx.db is not None:
            found = item_titles(self.ctx.db, [m["item_id"] for m in moves])
            titles = {str(i): title for i, (title, _) in found.items()}
        self.slope.widget.setTitle(f"“{query}”: without → with the rule", size="10pt", color="#222")
        self.slope.set_moves(moves, "without rule", "with rule", titles, self.impact.k)


def _short_day(day: Optional[str], as_of: str) -> str:
    """``12-09`` for a day in the year of ``as_of``, else the whole date; ``…`` when open."""
    if not day:
        return "…"
    return day[5:] if day[:4] == as_of[:4] else day


def _short(value) -> str:
    if value in (None, "", [], {}):
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
