"""Item page of the Catalogue screen: events over time, funnel, buyers, queries, related items."""
from __future__ import annotations

import html
from typing import Any, Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QTableWidget, QVBoxLayout, QWidget

from merch_app.ui.charts import LineChart
from merch_app.ui.screens.common import entry_row, fill_table, header_label, make_table
from merch_app.ui.screens.insights_charts import EVENT_COLOURS, FunnelChart
from merch_app.ui.screens.insights_common import boxed, fmt_ts, note_label, selected_text


class ItemPagePanel(QWidget):
    """Shows one item; double-clicking an item id in any table opens that item.

    Signals
    -------
    item_requested(str)
        The user asked for an item (typed id or double-click).
    user_requested(str)
        A buyer was double-clicked (open the user on the Users screen).
    """

    item_requested = Signal(str)
    user_requested = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.page = None
        self.model_views: Optional[dict[str, Any]] = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row, self.id_box, self.open_button = entry_row("Item id (or click a point on the map)", "Open item",
                                                       self._ask)
        lay.addLayout(row)
        self.header = header_label("No item open.")
        lay.addWidget(self.header)

        grid = QGridLayout()
        self.activity = LineChart("Events over time", "events", "", date_axis=True, symbols=True)
        self.funnel = FunnelChart("Funnel of everyone who touched it")
        grid.addWidget(self.activity.widget, 0, 0)
        grid.addWidget(self.funnel.widget, 0, 1)
        self.buyers = self._table(self._buyer_clicked)
        self.queries = self._table(None)
        self.related_text = self._table(self._related_clicked)
        self.related_cf = self._table(self._related_clicked)
        grid.addWidget(boxed("Who buys it (double-click: open user)", self.buyers), 1, 0)
        grid.addWidget(boxed("Queries that lead to it, and its rank for them", self.queries), 1, 1)
        grid.addWidget(boxed("Related by text", self.related_text), 2, 0)
        grid.addWidget(boxed("Related by behaviour (CF)", self.related_cf), 2, 1)
        for r, stretch in ((0, 3), (1, 2), (2, 2)):
            grid.setRowStretch(r, stretch)
        lay.addLayout(grid, 1)
        self.note = note_label()
        lay.addWidget(self.note)

    def _table(self, on_double) -> QTableWidget:
        t = make_table()
        t.setMinimumHeight(110)
        if on_double is not None:
            t.cellDoubleClicked.connect(lambda _r, _c, t=t, f=on_double: f(t))
        return t

    def _ask(self) -> None:
        text = self.id_box.text().strip()
        if text:
            self.item_requested.emit(text)

    def _buyer_clicked(self, table: QTableWidget) -> None:
        user = selected_text(table, 0)
        if user:
            self.user_requested.emit(user)

    def _related_clicked(self, table: QTableWidget) -> None:
        item_id = selected_text(table, 1)
        if item_id:
            self.item_requested.emit(item_id)

    # ---------------------------------------------------------------- drawing
    def clear(self) -> None:
        """Show no item (another workspace was opened)."""
        self.page, self.model_views = None, None
        self.id_box.clear()
        self.header.setText("No item open.")
        self.activity.clear()
        self.funnel.set_funnel([], [], [], 0)
        for t in (self.buyers, self.queries, self.related_text, self.related_cf):
            t.clearSpans()
            fill_table(t, [], [])
        self.note.setText("")

    def loading(self, item_id: str) -> None:
        self.id_box.setText(item_id)
        self.header.setText(f"Loading {html.escape(item_id)}…")

    def show_page(self, page) -> None:
        """Fill the model-free part from an :class:`~merch_app.insights.item_page.ItemPage`."""
        self.page = page
        self.model_views = None
        it = page.item
        if not page.exists:
            self.header.setText(f"<b>{html.escape(str(it['item_id']))}</b> is not in the catalogue.")
        else:
            price = f" · price {it['price']:g}" if it.get("price") is not None else ""
            mix = ", ".join(f"{n:,} {t}" for t, n in page.event_mix.items()) or "no events"
            self.header.setText(
                f"<code>{html.escape(str(it['item_id']))}</code> <b>{html.escape(it.get('title') or '')}</b>"
                f" <span style='color:#555'>[{html.escape(it.get('category') or 'no category')}{price}]</span><br>"
                f"{page.n_events:,} events by {page.n_users:,} known users, {fmt_ts(page.first_ts)[:10]} … "
                f"{fmt_ts(page.last_ts)[:10]} — {mix}")
        a = page.activity
        self.activity.clear()
        for etype, counts in a.counts.items():
            self.activity.set_series(etype, a.epoch, counts, EVENT_COLOURS.get(etype))
        self.activity.widget.setTitle(f"Events per {a.bucket}", size="10pt", color="#222")
        f = page.funnel
        self.funnel.set_funnel(f.stages, f.reached, f.step_rate, f.returned)
        fill_table(self.buyers, ["user", "purchases", "quantity", "returns", "last"],
                   [[b["user_id"], b["purchases"], b["quantity"], b["returns"], fmt_ts(b["last_ts"])[:10]]
                    for b in page.buyers])
        self._fill_queries()
        for t in (self.related_text, self.related_cf):
            fill_table(t, ["rank", "item", "title"], [])
        why = ("A shopper in the funnel is a known user, or a session when the user is unknown, so it can count "
               f"more shoppers ({f.actors:,}) than known users ({page.n_users:,}).") if f.actors != page.n_users else ""
        returned = f"Returned by {f.returned} of {f.actors} shoppers. " if f.returned else ""
        self.note.setText(returned + why)

    def _fill_queries(self) -> None:
        views = self.model_views or {}
        ranks = {r["query"]: r for r in views.get("query_ranks", [])}
        queries = self.page.queries if self.page else []
        rows = []
        for q in queries:
            r = ranks.get(q["query"])
            rank = "…" if self.model_views is None else (r["rank"] if r and r["rank"] is not None else "—")
            rows.append([q["query"], q["actors"], rank])
        if not queries and views.get("probe"):  # no searches recorded: how it ranks for its own title words
            rows = [[f"{r['query']}", "(title words)", r["rank"] if r["rank"] is not None else "—"]
                    for r in views.get("query_ranks", [])]
        self.queries.clearSpans()
        fill_table(self.queries, ["query", "sessions", "rank now"], rows)
        self.queries.resizeColumnsToContents()
        self.queries.horizontalHeader().setStretchLastSection(True)
        if not rows:
            fill_table(self.queries, ["query", "sessions", "rank now"],
                       [["no searches recorded before events on this item", "", ""]])
            self.queries.setSpan(0, 0, 1, 3)

    def show_model_views(self, views: dict[str, Any]) -> None:
        """Related lists and query ranks from :func:`~merch_app.insights.item_page.item_model_views`."""
        self.model_views = views
        for key, table in (("related_text", self.related_text), ("related_cf", self.related_cf)):
            rows = [[r["rank"], r["item_id"], r["title"]] for r in views.get(key, [])]
            fill_table(table, ["rank", "item", "title"], rows or [["", "", "— none (needs a trained model) —"
                                                                    if key == "related_cf" else "— none —"]])
            table.resizeColumnsToContents()
            table.horizontalHeader().setStretchLastSection(True)
        self._fill_queries()
        notes = "; ".join(views.get("notes", []))
        model_name = views.get("model_name", "the active model")
        self.note.setText(f"Ranked with {model_name}." + (f" {notes}" if notes else ""))

    def sizes(self) -> dict[str, int]:
        curves = [c.getData()[1] for c in self.activity.curves.values()]
        return {"activity": int(sum(float(y.sum()) for y in curves if y is not None)),
                "funnel": len(self.funnel.values), "buyers": self.buyers.rowCount(),
                "related_text": self.related_text.rowCount(), "queries": self.queries.rowCount()}
