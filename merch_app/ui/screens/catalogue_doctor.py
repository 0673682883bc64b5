"""Catalogue doctor panel: text and duplicate findings, untouched items, cold start, popularity bias."""
from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from merch_app.data import id_case
from merch_app.insights.doctor import NEAR_DUPLICATE_MAX
from merch_app.services import insight_jobs as ij
from merch_app.ui.charts import LineChart
from merch_app.ui.screens.common import fill_table, make_table
from merch_app.ui.screens.insights_charts import VBarChart
from merch_app.ui.screens.insights_common import note_label, selected_text

ROWS_SHOWN = ij.DOCTOR_ROWS  # the doctor job looks up the titles of these rows


class DoctorPanel(QWidget):
    """Run button, summary, three charts and the finding tables.

    Signals
    -------
    run_requested()
    item_requested(str)
        An item id was double-clicked in a finding table.
    """

    run_requested = Signal()
    item_requested = Signal(str)
    INTRO = ("Checks item texts, duplicates and untouched items; with a model also near-duplicates, the "
             "cold-start lens and popularity bias.")

    def __init__(self) -> None:
        super().__init__()
        self.report = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run catalogue doctor")
        self.run_button.setStyleSheet("font-weight: bold;")
        self.run_button.clicked.connect(self.run_requested.emit)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(240)
        self.status = note_label(self.INTRO)
        row.addWidget(self.run_button)
        row.addWidget(self.progress)
        row.addWidget(self.status, 1)
        lay.addLayout(row)
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)

        charts = QGridLayout()
        # legends top left: the equality diagonal and the cold items' curve rise to the right
        self.lorenz = LineChart("Popularity bias: who gets the recommendation slots", "share of slots",
                                "share of items (least recommended first)", legend_offset=(10, 10))
        self.lorenz_curve = self.lorenz.curve("model", "#d62728")
        self.equality = self.lorenz.curve("perfect equality", "#9a9a9a")
        self.deciles = VBarChart("Slots per popularity tenth (10% = most popular)", "share of slots",
                                 colour="#9467bd", label_chars=8)
        self.cold = LineChart("Cold-start lens: where items rank for users", "share of the group",
                              "rank position (0% = top of the list)", symbols=True, legend_offset=(10, 10))
        self.cold_curve = self.cold.curve("cold items", "#1f77b4")
        self.warm_curve = self.cold.curve("established items", "#ff7f0e")
        charts.addWidget(self.lorenz.widget, 0, 0)
        charts.addWidget(self.deciles.widget, 0, 1)
        charts.addWidget(self.cold.widget, 0, 2)
        lay.addLayout(charts, 2)

        self.tabs = QTabWidget()
        self.tables: dict[str, QTableWidget] = {}
        for key, label in (("text", "Empty / short text"), ("dups", "Duplicate text"),
                           ("near", "Near-duplicates"), ("untouched", "No behaviour")):
            t = make_table()
            t.cellDoubleClicked.connect(lambda _r, _c, t=t: self._open(t))
            self.tables[key] = t
            self.tabs.addTab(t, label)
        lay.addWidget(self.tabs, 2)

    def clear(self) -> None:
        """Forget the report (another workspace was opened)."""
        self.report = None
        self.progress.setValue(0)
        self.status.setText(self.INTRO)
        self.summary.setText("")
        self._charts(None, None)
        for n, (key, table) in enumerate(self.tables.items()):
            fill_table(table, [], [])
            self.tabs.setTabText(n, self.tabs.tabText(n).split(" (")[0])

    def _open(self, table: QTableWidget) -> None:
        item_id = selected_text(table, 0)
        if item_id:
            self.item_requested.emit(item_id)

    def set_progress(self, p) -> None:
        frac = p.fraction
        self.progress.setValue(int((frac or 0) * 1000))
        self.status.setText(p.message or "working…")

    def show_report(self, result: dict[str, Any]) -> None:
        r, titles = result["report"], result["titles"]
        self.report = r
        self.progress.setValue(1000)
        self.status.setText(f"Done with {result['model_name']}. " + " ".join(r.notes))
        s = r.summary()
        parts = [f"<b>{s['items']:,}</b> items: <b>{s['empty_text']:,}</b> without text, "
                 f"<b>{s['short_text']:,}</b> with very short text, <b>{s['duplicate_text_items']:,}</b> in "
                 f"{s['duplicate_text_groups']:,} groups of identical text, <b>{s['untouched']:,}</b> no one touched"]
        if r.id_clashes:
            shown = "; ".join(" / ".join(g) for g in r.id_clashes[:3]) + (" …" if len(r.id_clashes) > 3 else "")
            parts.append(f"<b>{len(r.id_clashes):,}</b> item ids that differ only by case ({shown}): "
                         f"probably one product typed two ways; {escape(id_case.MERGE_HINT)}")
        if r.near_duplicates is not None:
            n_near = len(r.near_duplicates)
            parts.append(f"<b>{n_near:,}</b> near-duplicate pairs (cosine ≥ 0.95)" if n_near < NEAR_DUPLICATE_MAX
                         else f"at least <b>{n_near:,}</b> near-duplicate pairs (cosine ≥ 0.95; the {n_near:,} most "
                              f"similar are listed)")
        pb, cs = r.popularity_bias, r.cold_start
        if pb is not None:
            parts.append(f"model top-{pb.k} over {pb.n_users} users: coverage <b>{pb.coverage:.1%}</b>, "
                         f"long-tail share <b>{pb.long_tail_share:.1%}</b> (tail is {pb.catalogue_tail_share:.0%} "
                         f"of the catalogue), Gini <b>{pb.gini:.2f}</b>")
        if cs is not None and cs.cold_mean_percentile is not None and cs.warm_mean_percentile is not None:
            what = "items without behaviour" if cs.cold_max_events == 0 else \
                f"items with ≤ {cs.cold_max_events} event{'s' if cs.cold_max_events > 1 else ''} " \
                "(every item has some behaviour)"
            parts.append(f"cold-start lens — {what}: they rank at the <b>{cs.cold_mean_percentile:.0%}</b> mark "
                         f"on average vs <b>{cs.warm_mean_percentile:.0%}</b> for the others, and fill "
                         f"<b>{cs.cold_share_top_k:.1%}</b> of top-{cs.k} slots while being "
                         f"{cs.cold_share_catalogue:.1%} of the catalogue")
        self.summary.setText("<br>".join(parts))
        self._charts(pb, cs)
        self._tables(r, titles)

    def _charts(self, pb, cs) -> None:
        if pb is not None:
            self.lorenz.set_series("model", pb.lorenz_x, pb.lorenz_y)
            self.lorenz.set_series("perfect equality", [0, 1], [0, 1])
            labels = [f"{10 * d + 10}%" for d in range(len(pb.by_popularity))]
            self.deciles.set_bars(labels, pb.by_popularity, [f"{v:.0%}" if v >= 0.005 else "" for v in
                                                             pb.by_popularity])
        else:
            self.lorenz.clear()
            self.deciles.set_bars([], [])
        if cs is not None:
            cold = np.asarray(cs.cold_hist, float)
            warm = np.asarray(cs.warm_hist, float)
            x = np.arange(len(cold)) * 10 + 5  # bin centres in %
            self.cold_curve.setData(x, cold / max(cold.sum(), 1))
            self.warm_curve.setData(x, warm / max(warm.sum(), 1))
            name = "no behaviour" if cs.cold_max_events == 0 else \
                f"≤ {cs.cold_max_events} event{'s' if cs.cold_max_events > 1 else ''}"
            if self.cold.legend is not None and self.cold.legend.items:
                self.cold.legend.items[0][1].setText(f"cold items ({name})")
        else:
            self.cold.clear()

    def _tables(self, r, titles: dict[str, str]) -> None:
        t = r.text
        rows = [[i, "empty", ""] for i in t.empty[:ROWS_SHOWN]] + \
               [[s["item_id"], "short", s["text"]] for s in t.short[:ROWS_SHOWN]]
        fill_table(self.tables["text"], ["item", "problem", "text"], rows)
        fill_table(self.tables["dups"], ["item", "group", "same text as", "title"],
                   [[i, g + 1, ", ".join(x for x in group if x != i)[:80], titles.get(i, "")]
                    for g, group in enumerate(t.duplicate_groups[:ROWS_SHOWN]) for i in group])
        fill_table(self.tables["near"], ["item", "title", "near-duplicate", "its title", "cosine"],
                   [[a, titles.get(a, ""), b, titles.get(b, ""), round(c, 4)]
                    for a, b, c in (r.near_duplicates or [])[:ROWS_SHOWN]])
        fill_table(self.tables["untouched"], ["item", "title"],
                   [[i, titles.get(i, "")] for i in r.untouched[:ROWS_SHOWN]])
        counts = {"text": len(t.empty) + len(t.short), "dups": t.n_duplicate_items,
                  "near": len(r.near_duplicates or []), "untouched": r.n_untouched}
        for n, key in enumerate(("text", "dups", "near", "untouched")):
            more = "+" if key == "near" and counts[key] >= NEAR_DUPLICATE_MAX else ""  # the list is capped
            self.tabs.setTabText(n, f"{self.tabs.tabText(n).split(' (')[0]} ({counts[key]:,}{more})")
            self.tables[key].resizeColumnsToContents()
