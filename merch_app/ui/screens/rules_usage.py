"""Usage tab of the Rules screen: how often each rule fired in the search log, rules that never fire or hurt."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from merch_app.evaluation.rule_usage import UsageReport
from merch_app.services import evaluate_jobs as ej
from merch_app.ui.screens.evaluate_widgets import SortableTable, cell
from merch_app.ui.widgets import shrinkable
from merch_app.ui.workers import error_text

if TYPE_CHECKING:
    from merch_app.ui.screens.rules_screen import RulesScreen

COLUMNS = ["rule", "searches", "queries", "in window", "top queries", "Δ NDCG@10"]
NEVER = QColor("#888888")
HINT = "Count how often each rule fires on the search log (as-you-type prefixes left out)."


def usage_sentence(report: UsageReport) -> str:
    """One line over the table: the log counted, rules that never fire, rules whose impact is negative."""
    if not report.has_log:
        return ("No event carries a query, so there is no search log to count rule use on; "
                "tick 'impact on suites' to measure the rules on the judged suites instead.")
    parts = [f"{report.searches:,} searches counted"]
    if report.never_fire:
        parts.append(f"{len(report.never_fire)} of {len(report.rows)} rules never fire")
    if report.suites:
        parts.append(f"{len(report.negative)} lower NDCG@10 on {', '.join(report.suites)}")
    return " · ".join(parts) + "."


class UsagePanel(QWidget):
    """A button that counts rule use in the worker, and the table of what it found."""

    def __init__(self, screen: "RulesScreen") -> None:
        super().__init__()
        self.screen = screen
        self.runner = screen.runner("rules-usage")
        self.report: Optional[UsageReport] = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        self.count_button = QPushButton("Count usage")
        self.count_button.clicked.connect(self.count)
        self.with_impact = QCheckBox("impact on suites")
        self.with_impact.setToolTip("Also run every judged suite with and without each rule (slower)")
        row.addWidget(self.count_button)
        row.addWidget(self.with_impact)
        row.addStretch(1)
        lay.addLayout(row)
        self.summary = shrinkable(QLabel(HINT))
        lay.addWidget(self.summary)
        self.table = SortableTable(COLUMNS, stretch=4)
        lay.addWidget(self.table.view, 1)

    def count(self) -> None:
        """Count every rule's use (and impact, when ticked) in the worker, as of the screen's day."""
        s = self.screen
        path, enc, gen, day, impact = s.ctx.path, s.encoder_spec, s.generation, s.as_of_day(), self.with_impact.isChecked()
        if path is None:
            return
        self.summary.setText("Counting…")
        self.runner.start(lambda ctx: ej.usage_job(ctx, path, impact, enc, gen, as_of=day), label="Rule usage",
                          on_result=self.show_report,
                          on_error=lambda exc, _tb: self.summary.setText(error_text(exc)))

    def show_report(self, report: UsageReport) -> None:
        self.report = report
        rows = []
        for r in report.rows:
            delta = min((i["delta"] for i in r.impact), default=None)
            items = [cell(r.rule.label()), cell(r.searches), cell(r.queries), cell(r.in_window),
                     cell(", ".join(f"{q} ({n})" for q, n in r.top_queries)), cell(delta, signed=True)]
            if r.searches == 0 and report.has_log:
                for it in items[:5]:
                    it.setForeground(QBrush(NEVER))
                items[0].setToolTip("never fires on the search log")
            rows.append(items)
        self.table.set_rows(rows, sort_column=1, ascending=False)
        text = usage_sentence(report)
        self.summary.setText(text)
        self.summary.setToolTip(text)

    def clear(self) -> None:
        self.report = None
        self.table.set_rows([])
        self.summary.setText(HINT)
