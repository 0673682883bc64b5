"""Behaviour files (one row per event) → ``events`` rows (+ stub items).

Event types are normalised through :data:`values.EVENT_TYPE_SYNONYMS`
(``pv``/``浏览`` → view, ``buy``/``购买`` → purchase, ...); an unknown type
rejects the row.  Without an event-type column every row gets one type:
``rating`` when the value column is a rating/score, ``purchase`` when it is a
quantity, else ``view``.  A blank value means 1 except for ratings, which need
one.  A search row needs a query; every other row an item id.  An empty user
id is an anonymous event (``user_id`` NULL).  A position (the 1-based rank
at which the item was shown; impressions and clicks carry it for click
models) must be a positive whole number when given; blank means unknown.

Items referenced by the events but missing from the workspace are added as
stubs (item id only) so every event points at an item; a later catalogue
import fills them in.
"""
from __future__ import annotations

from typing import Optional

from merch_app.data.header_mapping import normalise_header
from merch_app.data.import_batches import BATCH_ROWS, ImportContext
from merch_app.data.values import TimestampParser, normalise_event_type, parse_position, position_problem

_RATING_HEADERS = {"rating", "score", "stars", "评分", "打分", "rate"}
_QUANTITY_HEADERS = {"quantity", "qty", "units", "数量", "购买数量"}


def default_event_type(value_header: Optional[str]) -> str:
    """Event type for files without an event-type column."""
    norm = normalise_header(value_header or "")
    if norm in _RATING_HEADERS:
        return "rating"
    if norm in _QUANTITY_HEADERS:
        return "purchase"
    return "view"


def run(ctx: ImportContext, mapping: dict[str, str], parse_ts: TimestampParser) -> int:
    """Stream the file into events; returns the number of stub items added."""
    headers = ctx.source.headers
    col = {field: headers.index(src) for src, field in mapping.items()}
    i_item, i_ts = col["item_id"], col["ts"]
    i_user, i_type, i_value = col.get("user_id"), col.get("event_type"), col.get("value")
    i_query, i_session, i_position = col.get("query"), col.get("session_id"), col.get("position")
    position_src = headers[i_position] if i_position is not None else ""
    value_src = next((s for s, f in mapping.items() if f == "value"), None)
    fixed_type = None if i_type is not None else default_event_type(value_src)
    text_cols = frozenset(c for c in (i_query,) if c is not None)
    import_id = ctx.import_id
    events = ctx.events
    append = events.append
    reject = ctx.reject
    forgotten = ctx.forgotten if i_user is not None else None
    type_cache: dict[str, Optional[str]] = {}
    items_seen: set[str] = set()
    item_id, user_id, number = ctx.item_ids, ctx.user_ids, ctx.numbers
    for first, last, row in ctx.checked_records(text_cols):
        if forgotten is not None and forgotten(row[i_user]):  # on the forget list: dropped, never stored
            ctx.rows_forgotten += 1
            continue
        if fixed_type is None:
            raw_type = row[i_type]
            try:
                etype = type_cache[raw_type]
            except KeyError:
                etype = type_cache[raw_type] = normalise_event_type(raw_type)
                if len(type_cache) > 10_000:
                    type_cache.clear()
            if etype is None:
                if raw_type.strip():
                    reject(first, last, row, "unknown_event_type", repr(raw_type))
                else:
                    reject(first, last, row, "missing_event_type")
                continue
        else:
            etype = fixed_type
        item = item_id(row[i_item])
        if item is None:
            reject(first, last, row, *item_id.problem("item id", row[i_item]))
            continue
        query = row[i_query].strip() if i_query is not None else ""
        if not item:
            if etype != "search":
                reject(first, last, row, "missing_item_id")
                continue
            if not query:
                reject(first, last, row, "missing_query", "search event without query or item")
                continue
        raw_ts = row[i_ts]
        ts = parse_ts(raw_ts)
        if ts is None:
            reject(first, last, row, *parse_ts.problem(raw_ts))
            continue
        value = 1.0
        raw_value = row[i_value].strip() if i_value is not None else ""
        if raw_value:
            parsed = number(raw_value)  # nan, inf, 1e300 refused; the file's decimal convention
            if parsed is None:
                reject(first, last, row, *number.problem("value", raw_value))
                continue
            value = parsed
            if etype == "return":
                value = abs(value)
        elif etype == "rating":
            reject(first, last, row, "missing_value", "rating without a value")
            continue
        user = user_id(row[i_user]) if i_user is not None else ""
        if user is None:
            reject(first, last, row, *user_id.problem("user id", row[i_user]))
            continue
        position = None
        raw_position = row[i_position].strip() if i_position is not None else ""
        if raw_position:
            position = parse_position(raw_position)
            if position is None:
                reject(first, last, row, *position_problem(position_src, raw_position))
                continue
        session = row[i_session].strip() if i_session is not None else ""
        append((user or None, item or None, etype, value, ts, query or None, session or None, import_id, position))
        if item:
            items_seen.add(item)
        if len(events) >= BATCH_ROWS:
            ctx.flush_events()
    ctx.flush()
    before = ctx.conn.total_changes
    ctx.conn.executemany(
        "INSERT OR IGNORE INTO items(item_id, import_id) VALUES (?, ?)",
        ((item, import_id) for item in items_seen),
    )
    return ctx.conn.total_changes - before
