"""Item metadata arrays aligned with a model bundle, loaded once per ranker.

Row ``i`` of every array describes ``bundle.item_ids[i]``.  Items that are in
the bundle but no longer in the ``items`` table keep an empty title and are
never lexical candidates; items in the table but not in the bundle (imported
after training) cannot be ranked and are ignored until the next training.
"""
from __future__ import annotations

import gc
import threading
from dataclasses import dataclass

import numpy as np

from merch_app.ranking.types import Filters


# Above this many items, the catalogue and model just loaded are moved out of
# the garbage collector's reach: a full collection walks every tracked object
# and at 1M items paused a query for ~270 ms (measured in bench_query).
FREEZE_HEAP_ITEMS = 50_000


def settle_heap() -> None:
    """Exempt every live object from later collections (``gc.freeze``), collecting first
    on the main thread only: in the GUI a collection in a worker thread may free Qt
    wrappers there (see ``merch_app.ui.gui_gc``)."""
    if threading.current_thread() is threading.main_thread():
        gc.collect()
    gc.freeze()


@dataclass
class ItemCatalog:
    """Per-item metadata for ranking, filtering and display.

    Attributes
    ----------
    titles, descriptions, tags
        Text fields (``""`` when missing).
    category_codes
        Index into ``category_names`` (-1 = no category).
    prices
        float64, NaN when unknown.
    has_events
        True if the item has at least one event.
    rowids
        SQLite rowid of the item in ``items`` (-1 when absent).
    rowid_to_pos
        Lookup array: ``rowid_to_pos[rowid]`` = bundle position or -1.
    """

    item_ids: list[str]
    titles: list[str]
    descriptions: list[str]
    tags: list[str]
    category_codes: np.ndarray
    category_names: list[str]
    prices: np.ndarray
    has_events: np.ndarray
    rowids: np.ndarray
    rowid_to_pos: np.ndarray

    @property
    def n(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_db(cls, db, item_ids, item_pos: dict[str, int] | None = None) -> "ItemCatalog":
        """Read titles, categories, prices and event presence for ``item_ids``.

        ``item_pos`` (id -> position) is reused when given (the bundle has one;
        another million-entry dict is ~0.1 GB).
        """
        ids = [str(i) for i in item_ids]
        pos = item_pos if item_pos is not None else {item_id: n for n, item_id in enumerate(ids)}
        n = len(ids)
        titles, descriptions, tags = [""] * n, [""] * n, [""] * n
        codes = np.full(n, -1, dtype=np.int32)
        prices = np.full(n, np.nan, dtype=np.float64)
        rowids = np.full(n, -1, dtype=np.int64)
        cat_index: dict[str, int] = {}
        cur = db.execute(
            "SELECT rowid, item_id, title, description, tags, category, price FROM items"
        )
        for rowid, item_id, title, desc, tag, cat, price in cur:
            p = pos.get(str(item_id))
            if p is None:
                continue
            rowids[p] = rowid
            titles[p] = title or ""
            descriptions[p] = desc or ""
            tags[p] = tag or ""
            if cat:
                codes[p] = cat_index.setdefault(cat, len(cat_index))
            if price is not None:
                try:
                    prices[p] = float(price)
                except (TypeError, ValueError):
                    pass
        has_events = np.zeros(n, dtype=bool)
        for (item_id,) in db.execute("SELECT DISTINCT item_id FROM events"):
            p = pos.get(str(item_id))
            if p is not None:
                has_events[p] = True
        max_rowid = int(rowids.max()) if n else -1
        rowid_to_pos = np.full(max(max_rowid + 1, 1), -1, dtype=np.int64)
        present = rowids >= 0
        rowid_to_pos[rowids[present]] = np.nonzero(present)[0]
        catalog = cls(ids, titles, descriptions, tags, codes, list(cat_index), prices, has_events,
                      rowids, rowid_to_pos)
        if n >= FREEZE_HEAP_ITEMS:
            settle_heap()
        return catalog

    def category(self, p: int) -> str:
        c = int(self.category_codes[p])
        return self.category_names[c] if c >= 0 else ""

    def positions_of_rowids(self, rowids: np.ndarray) -> np.ndarray:
        """Bundle positions of SQLite rowids (-1 for rows not in the bundle)."""
        rowids = np.asarray(rowids, dtype=np.int64)
        out = np.full(len(rowids), -1, dtype=np.int64)
        ok = (rowids >= 0) & (rowids < len(self.rowid_to_pos))
        out[ok] = self.rowid_to_pos[rowids[ok]]
        return out

    def filter_mask(self, filters: Filters, positions: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of the items passing ``filters`` (all items or ``positions``)."""
        sel = slice(None) if positions is None else np.asarray(positions, dtype=np.int64)
        size = self.n if positions is None else len(sel)
        mask = np.ones(size, dtype=bool)
        if filters.category:
            code = self.category_code(filters.category)
            mask &= self.category_codes[sel] == code
        if filters.price_min is not None:
            mask &= self.prices[sel] >= filters.price_min
        if filters.price_max is not None:
            mask &= self.prices[sel] <= filters.price_max
        if filters.has_events:
            mask &= self.has_events[sel]
        return mask

    def category_code(self, name: str) -> int:
        """Code of category ``name`` (case-insensitive); -2 when unknown (matches nothing)."""
        wanted = name.strip().casefold()
        for code, cat in enumerate(self.category_names):
            if cat.casefold() == wanted:
                return code
        return -2

    def failed_filters(self, filters: Filters, p: int) -> list[str]:
        """Names of the filters item ``p`` fails, e.g. ``["category=Home"]``."""
        failed = []
        if filters.category and self.category_codes[p] != self.category_code(filters.category):
            failed.append(f"category={filters.category}")
        price = self.prices[p]
        if filters.price_min is not None and not price >= filters.price_min:
            failed.append(f"price>={filters.price_min:g}")
        if filters.price_max is not None and not price <= filters.price_max:
            failed.append(f"price<={filters.price_max:g}")
        if filters.has_events and not self.has_events[p]:
            failed.append("has-events")
        return failed
