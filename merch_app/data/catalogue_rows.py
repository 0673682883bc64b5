"""Catalogue files (one row per item) → ``items`` rows.

A catalogue is authoritative for what it states: an existing item gets the
non-empty values of the new row (empty cells keep what was there).  Columns
mapped to ``attrs*`` are merged into the item's ``attrs`` JSON object under
their header names.  A later row with the same item id wins.
"""
from __future__ import annotations

import json

from merch_app.data.header_mapping import ATTRS
from merch_app.data.import_batches import BATCH_ROWS, ImportContext


UPSERT_ITEM = (
    "INSERT INTO items(item_id, title, description, tags, category, price, attrs, import_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(item_id) DO UPDATE SET "
    "title = coalesce(excluded.title, items.title), "
    "description = coalesce(excluded.description, items.description), "
    "tags = coalesce(excluded.tags, items.tags), "
    "category = coalesce(excluded.category, items.category), "
    "price = coalesce(excluded.price, items.price), "
    "attrs = CASE WHEN excluded.attrs IS NULL THEN items.attrs WHEN items.attrs IS NULL THEN excluded.attrs "
    "ELSE json_patch(items.attrs, excluded.attrs) END, "
    "import_id = excluded.import_id"
)


def run(ctx: ImportContext, mapping: dict[str, str]) -> int:
    """Stream the file into ``items``; returns the number of item rows written."""
    headers = ctx.source.headers
    col = {field: headers.index(src) for src, field in mapping.items() if field != ATTRS}
    attr_cols = [(headers[headers.index(src)], headers.index(src)) for src, f in mapping.items() if f == ATTRS]
    i_item = col["item_id"]
    text_fields = [col.get(f) for f in ("title", "description", "tags", "category")]
    i_price = col.get("price")
    text_cols = frozenset(c for c in text_fields if c is not None) | {c for _, c in attr_cols}
    import_id = ctx.import_id
    reject = ctx.reject
    batch: list[tuple] = []
    written = 0
    item_id, number = ctx.item_ids, ctx.numbers
    for first, last, row in ctx.checked_records(text_cols):
        item = item_id(row[i_item])
        if item is None:
            reject(first, last, row, *item_id.problem("item id", row[i_item]))
            continue
        if not item:
            reject(first, last, row, "missing_item_id")
            continue
        price = None
        if i_price is not None:
            raw_price = row[i_price].strip()
            if raw_price:
                price = number(raw_price)
                if price is None:
                    reject(first, last, row, *number.problem("price", raw_price))
                    continue
        texts = [(row[c].strip() or None) if c is not None else None for c in text_fields]
        attrs = {name: row[c].strip() for name, c in attr_cols if row[c].strip()}
        batch.append((item, *texts, price, json.dumps(attrs, ensure_ascii=False) if attrs else None,
                      import_id))
        if len(batch) >= BATCH_ROWS:
            ctx.conn.executemany(UPSERT_ITEM, batch)
            written += len(batch)
            batch.clear()
    if batch:
        ctx.conn.executemany(UPSERT_ITEM, batch)
        written += len(batch)
    ctx.flush()
    return written
