"""Rules screen: merchandising rules (pin, boost, bury, hide, synonyms, rewrites) with impact before saving."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from merch_app.evaluation.compare import rank_moves
from merch_app.evaluation.rule_impact import summarise
from merch_app.evaluation.suites import list_suites
from merch_app.insights.common import item_titles
from merch_app.ranking.rules import (
    ATTRIBUTES, RULE_KINDS, MerchRule, RuleError, delete_rule, load_rules, save_rule, set_rule_enabled, validate_rule,
)
from merch_app.ranking.types import Weights
from merch_app.services import evaluate_jobs as ej
from merch_app.ui.screens.base import Screen
from merch_app.ui.screens.common import bare_column
from merch_app.ui.screens.evaluate_widgets import SlopeChart, SortableTable, cell
from merch_app.ui.workers import error_text

RULE_COLUMNS = ["on", "id", "kind", "pattern", "rule"]
KIND_HELP = {
    "pin": "Put an item at a fixed position for matching queries.",
    "boost": "Add the weight to the score of items with the attribute.",
    "bury": "Subtract the weight from the score of items with the attribute.",
    "hide": "Never show the item for matching queries.",
    "synonym": "A query with one of the terms also searches the others.",
    "rewrite": "Search matching queries as another text.",
}
FIELDS_BY_KIND = {
    "pin": {"item", "position"}, "hide": {"item"}, "boost": {"attribute", "weight"},
    "bury": {"attribute", "weight"}, "synonym": {"terms"}, "rewrite": {"to"},
}


class RulesScreen(Screen):
    """Rules list on the left; the rule form and its impact (shown before saving) on the right."""

    title = "Rules"

    def __init__(self, window) -> None:
        super().__init__(window)
        self.io_runner = self.runner("rules-io")
        self.impact_runner = self.runner("rules-impact")
        self.encoder_spec: Optional[str] = None
        self.generation = 0
        self.rules: list[MerchRule] = []
        self.editing_id: Optional[int] = None
        self.impact = None
        self.impacts_shown = 0
        self._build()

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        lay = QHBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal)
        left, ll = bare_column()
        intro = QLabel("Rules in this workspace. Tick to switch on; enabled rules apply in ranking, the CLI "
                       "and explanations.")
        intro.setWordWrap(True)
        ll.addWidget(intro)
        self.table = QTableWidget(0, len(RULE_COLUMNS))
        self.table.setHorizontalHeaderLabels(RULE_COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        for c, w in ((0, 34), (1, 34), (2, 60), (3, 110)):
            self.table.setColumnWidth(c, w)
        self.table.itemChanged.connect(self._item_changed)
        self.table.currentCellChanged.connect(lambda row, *_: self._load_row(row))
        ll.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.new_button = QPushButton("New rule")
        self.new_button.clicked.connect(self.new_rule)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_rule)
        row.addWidget(self.new_button)
        row.addWidget(self.delete_button)
        row.addStretch(1)
        ll.addLayout(row)
        split.addWidget(left)

        right, rl = bare_column()
        rl.addWidget(self._form())
        rl.addWidget(self._impact_box(), 1)
        split.addWidget(right)
        split.setSizes([330, 1000])
        lay.addWidget(split)
        self._kind_changed()

    def _form(self) -> QGroupBox:
        box = QGroupBox("Rule")
        form = self.form = QFormLayout(box)
        self.kind = QComboBox()
        self.kind.addItems(list(RULE_KINDS))
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.kind_help = QLabel()
        self.kind_help.setStyleSheet("color: #555;")
        self.pattern = QLineEdit("*")
        self.pattern.setToolTip("words ('mug'), glob ('mug*'), 'exact:TEXT', 're:REGEX', or * for every query")
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
        self.name = QLineEdit()
        self.name.setPlaceholderText("(default: a description)")
        self.enabled = QCheckBox("switched on")
        self.enabled.setChecked(True)
        price = QHBoxLayout()
        price.addWidget(self.price_min)
        price.addWidget(QLabel("–"))
        price.addWidget(self.price_max)
        self.rows = {}
        for key, label, w in (("kind", "Kind", self.kind), ("help", "", self.kind_help),
                              ("pattern", "Query pattern", self.pattern), ("item", "Item id", self.item),
                              ("position", "Position", self.position), ("attribute", "Attribute", self.attribute),
                              ("value", "Value", self.value), ("price", "Price range", price),
                              ("weight", "Weight", self.weight), ("terms", "Synonyms", self.terms),
                              ("to", "Search instead", self.to), ("name", "Name", self.name),
                              ("enabled", "", self.enabled)):
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
        return box

    def _impact_box(self) -> QGroupBox:
        box = QGroupBox("Impact before enabling (this rule on top of the other enabled rules)")
        lay = QVBoxLayout(box)
        self.impact_label = QLabel("Preview the impact to see the queries the rule touches, the rank moves and the "
                                   "metric change over the suite and over behaviour-derived judgments.")
        self.impact_label.setWordWrap(True)
        lay.addWidget(self.impact_label)
        split = QSplitter(Qt.Orientation.Horizontal)
        tables, tl = bare_column()
        self.metrics = SortableTable(["judgments", "metric", "before", "after", "Δ", "p-value"], stretch=0)
        self.metrics.view.setMaximumHeight(150)
        tl.addWidget(self.metrics.view)
        self.touched = SortableTable(["query", "from", "moved", "Jaccard@k", "RBO"])
        self.touched.view.selectionModel().currentRowChanged.connect(lambda cur, _p: self._show_moves(cur.row()))
        self.touched.view.doubleClicked.connect(lambda idx: self.window_.open_query(self.touched.text(idx.row())))
        tl.addWidget(self.touched.view, 1)
        split.addWidget(tables)
        self.slope = SlopeChart("Rank moves: without → with the rule")
        split.addWidget(self.slope.widget)
        split.setSizes([400, 500])
        lay.addWidget(split, 1)
        return box

    # ----------------------------------------------------------------- hooks
    def on_workspace_changed(self) -> None:
        self.generation += 1
        self.refresh()

    def on_data_changed(self) -> None:
        self.generation += 1

    def on_models_changed(self) -> None:
        self.generation += 1

    def on_shown(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Reload rules and suites (quick reads on the GUI connection)."""
        db = self.ctx.db
        self.rules = load_rules(db) if db is not None else []
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.rules))
        for i, r in enumerate(self.rules):
            on = QTableWidgetItem()
            on.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            on.setCheckState(Qt.CheckState.Checked if r.enabled else Qt.CheckState.Unchecked)
            self.table.setItem(i, 0, on)
            for c, v in enumerate((r.rule_id, r.kind, r.pattern, r.name), start=1):
                self.table.setItem(i, c, QTableWidgetItem(str(v)))
        self.table.blockSignals(False)
        current = self.suite_combo.currentData()
        self.suite_combo.clear()
        self.suite_combo.addItem("(none: rank moves + behaviour only)", None)
        for s in list_suites(db) if db is not None else []:
            self.suite_combo.addItem(s["name"], s["name"])
        idx = self.suite_combo.findData(current) if current else (1 if self.suite_combo.count() > 1 else 0)
        self.suite_combo.setCurrentIndex(max(idx, 0))

    # ------------------------------------------------------------------ form
    def _kind_changed(self) -> None:
        kind = self.kind.currentText()
        shown = FIELDS_BY_KIND[kind]
        attr = self.attribute.currentText()
        for key in ("item", "position", "attribute", "weight", "terms", "to"):
            self._show_row(key, key in shown)
        self._show_row("value", "attribute" in shown and attr != "price")
        self._show_row("price", "attribute" in shown and attr == "price")
        self._show_row("pattern", kind != "synonym")
        self.kind_help.setText(KIND_HELP[kind])

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
        elif kind in ("boost", "bury"):
            params.update(attribute=attr, weight=self.weight.value())
            if attr == "price":
                params.update(min=None if self.price_min.value() < 0 else self.price_min.value(),
                              max=None if self.price_max.value() < 0 else self.price_max.value())
            else:
                params["value"] = self.value.text().strip()
        elif kind == "synonym":
            params["terms"] = self.terms.text()
        else:
            params["to"] = self.to.text().strip()
        pattern = "*" if kind == "synonym" else (self.pattern.text().strip() or "*")
        return validate_rule(MerchRule(kind, pattern, params, self.name.text().strip(), self.enabled.isChecked(),
                                       self.editing_id))

    def new_rule(self) -> None:
        self.editing_id = None
        self.table.clearSelection()
        for w in (self.item, self.value, self.terms, self.to, self.name):
            w.clear()
        self.pattern.setText("*")
        self.enabled.setChecked(True)

    def _load_row(self, row: int) -> None:
        if not 0 <= row < len(self.rules):
            return
        r = self.rules[row]
        self.editing_id = r.rule_id
        p = r.params
        self.kind.setCurrentText(r.kind)
        self.pattern.setText(r.pattern)
        self.item.setText(str(p.get("item_id", "")))
        self.position.setValue(int(p.get("position", 1)))
        self.attribute.setCurrentText(p.get("attribute", "category"))
        self.value.setText(str(p.get("value", "")))
        self.price_min.setValue(-1 if p.get("min") is None else float(p["min"]))
        self.price_max.setValue(-1 if p.get("max") is None else float(p["max"]))
        self.weight.setValue(float(p.get("weight", 0.2)))
        self.terms.setText(", ".join(p.get("terms", [])))
        self.to.setText(str(p.get("to", "")))
        self.name.setText("" if r.name == r.describe() else r.name)
        self.enabled.setChecked(r.enabled)

    # --------------------------------------------------------------- actions
    def save_rule(self) -> None:
        """Validate and store the form's rule (insert or update)."""
        try:
            rule = self.draft()
        except RuleError as exc:
            self.show_error(f"Rule not saved: {exc}")
            return
        path = self.ctx.path
        self.io_runner.start(lambda ctx: save_rule(ctx.db(path), rule), cancel_previous=False, keep_stale=True,
                             on_result=self._saved, on_error=lambda exc, _tb: self.show_error(error_text(exc)))

    def _saved(self, rule: MerchRule) -> None:
        self.editing_id = rule.rule_id
        self.refresh()
        self.show_info(f"Rule {rule.rule_id} saved: {rule.name}{'' if rule.enabled else ' (off)'}.")

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != 0 or not 0 <= item.row() < len(self.rules):
            return
        rule_id, on, path = self.rules[item.row()].rule_id, item.checkState() == Qt.CheckState.Checked, self.ctx.path
        self.io_runner.start(lambda ctx: set_rule_enabled(ctx.db(path), rule_id, on), cancel_previous=False,
                             keep_stale=True, on_result=lambda _r: self.refresh(),
                             on_error=lambda exc, _tb: self.show_error(error_text(exc)))

    def delete_rule(self) -> None:
        row = self.table.currentRow()
        if not 0 <= row < len(self.rules):
            return
        rule_id, path = self.rules[row].rule_id, self.ctx.path
        self.io_runner.start(lambda ctx: delete_rule(ctx.db(path), rule_id), cancel_previous=False, keep_stale=True,
                             on_result=lambda _r: (self.new_rule(), self.refresh()),
                             on_error=lambda exc, _tb: self.show_error(error_text(exc)))

    def preview_impact(self) -> None:
        """Compute the drafted rule's impact in the worker (nothing is saved)."""
        try:
            rule = self.draft()
        except RuleError as exc:
            self.impact_label.setText(f"<span style='color:#b42318'>{exc}</span>")
            return
        suite, path, gen, enc = self.suite_combo.currentData(), self.ctx.path, self.generation, self.encoder_spec
        system = ej.System(weights=Weights())
        self.impact_label.setText("Computing the impact…")
        self.impact_runner.start(lambda ctx: ej.impact_job(ctx, path, rule, suite, system, enc, gen),
                                 label="Rule impact", on_result=self._show_impact,
                                 on_error=lambda exc, _tb: self.impact_label.setText(
                                     f"<span style='color:#b42318'>{error_text(exc)}</span>"))

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
        self.touched.set_rows([[cell(t["query"]), cell(", ".join(t["sources"])), cell(len(t["moves"])),
                                cell(t[f"jaccard@{impact.k}"]), cell(t["rbo"])] for t in impact.touched],
                              sort_column=4, ascending=True)
        if impact.touched:
            self.touched.view.selectRow(0)
            self._show_moves(0)

    def _show_moves(self, view_row: int) -> None:
        if self.impact is None or view_row < 0:
            return
        query = self.touched.text(view_row)
        t = next((t for t in self.impact.touched if t["query"] == query), None)
        if t is None:
            return
        moves = rank_moves(t["before"], t["after"], self.impact.k)
        titles = {}
        if self.ctx.db is not None:
            found = item_titles(self.ctx.db, [m["item_id"] for m in moves])
            titles = {str(i): title for i, (title, _) in found.items()}
        self.slope.widget.setTitle(f"Rank moves for “{query}”: without → with the rule", size="10pt", color="#222")
        self.slope.set_moves(moves, "without rule", "with rule", titles, self.impact.k)
