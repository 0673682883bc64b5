"""Transaction exports (invoice lines, like Online Retail) → items + purchase/return events.

Per line: one event, ``purchase`` with value = quantity, or ``return`` with
value = |quantity| when the invoice is a cancellation (starts with ``C``) or
the quantity is negative.  The invoice number becomes ``session_id``; a line
without customer becomes an anonymous event (``user_id`` NULL) that counts for
popularity only.

Per item code: one item whose title is the most frequent non-empty
description (ties: the first seen), whose price is the median unit price of
its purchase lines with a positive price, and whose ``attrs`` hold the
three countries it sold to most (``{"countries": {"United Kingdom": 120}}``).
Aggregation keeps only per-item counters, so memory is bounded by the number of
distinct items and prices, not by the file size.

Non-product lines — postage, carriage, fees, manual adjustments, discounts,
samples, bank charges, gift vouchers and bad-debt adjustments (invoices
starting with ``A``) — are **skipped** and counted under the reject reason
``non_product`` (their lines stay visible in ``rejected_rows``): a
merchandiser does not want postage recommended next to a lamp.
"""
from __future__ import annotations

import json
from typing import Optional

from merch_app.data.import_batches import BATCH_ROWS, ImportContext
from merch_app.data.values import TimestampParser, in_range

# Upper-cased stock codes that are not products (Online Retail and common shop exports).
NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "M", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "ADJUST",
     "ADJUST2", "CARRIAGE", "SHIPPING", "POSTAGE", "FEE", "DISCOUNT", "MANUAL", "SAMPLES"}
)
NON_PRODUCT_PREFIXES = ("gift_", "giftcard", "voucher")


def non_product_reason(code: str, invoice: str) -> Optional[str]:
    """Why a line is not a product line (``"'POST'"``, ...), or None for a product."""
    if code.upper() in NON_PRODUCT_CODES:
        return repr(code)
    if code.lower().startswith(NON_PRODUCT_PREFIXES):
        return f"{code!r} (gift voucher)"
    if invoice[:1] in ("A", "a"):
        return f"{code!r} (bad-debt adjustment)"
    return None


def _median(counts: dict[float, int]) -> Optional[float]:
    """Median of values given as ``{value: count}`` (mean of the middle two when even)."""
    total = sum(counts.values())
    if not total:
        return None
    lo_rank, hi_rank = (total - 1) // 2, total // 2
    lo = hi = None
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if lo is None and seen > lo_rank:
            lo = value
        if seen > hi_rank:
            hi = value
            break
    return round((lo + hi) / 2, 4)  # type: ignore[operator]


def _title(descriptions: dict[str, int]) -> Optional[str]:
    best, best_n = None, 0
    for text, n in descriptions.items():
        if n > best_n:
            best, best_n = text, n
    return best


def run(ctx: ImportContext, mapping: dict[str, str], parse_ts: TimestampParser) -> int:
    """Stream the file into events and aggregate items; returns the number of item codes written."""
    col = {field: ctx.source.headers.index(src) for src, field in mapping.items()}
    i_inv, i_item, i_qty, i_ts = col["invoice"], col["item_id"], col["quantity"], col["ts"]
    i_title, i_price = col.get("title"), col.get("price")
    i_user, i_country = col.get("user_id"), col.get("country")
    text_cols = frozenset(c for c in (i_title, i_country) if c is not None)
    import_id = ctx.import_id
    events = ctx.events
    append = events.append
    reject = ctx.reject
    forgotten = ctx.forgotten if i_user is not None else None
    # item code -> [descriptions {text: n}, purchase prices {price: n}, countries {name: n}]
    agg: dict[str, list[dict]] = {}
    non_product: dict[tuple[str, str], Optional[str]] = {}
    item_id, user_id, number = ctx.item_ids, ctx.user_ids, ctx.numbers
    for first, last, row in ctx.checked_records(text_cols):
        if forgotten is not None and forgotten(row[i_user]):  # on the forget list: dropped, never stored
            ctx.rows_forgotten += 1
            continue
        item = item_id(row[i_item])
        if item is None:
            reject(first, last, row, *item_id.problem("item id", row[i_item]))
            continue
        if not item:
            reject(first, last, row, "missing_item_id")
            continue
        invoice = row[i_inv].strip()
        if not invoice:
            reject(first, last, row, "missing_invoice")
            continue
        key = (item, invoice[0])
        try:
            np_reason = non_product[key]
        except KeyError:
            np_reason = non_product[key] = non_product_reason(item, invoice)
        if np_reason is not None:
            reject(first, last, row, "non_product", np_reason)
            continue
        raw_qty = row[i_qty]
        try:
            qty = int(raw_qty)
            if not in_range(qty):
                raise ValueError(raw_qty)
        except ValueError:
            qty = number(raw_qty) if raw_qty.strip() else None
            if qty is None:
                if raw_qty.strip():
                    reject(first, last, row, *number.problem("Quantity", raw_qty))
                else:
                    reject(first, last, row, "missing_quantity", "")
                continue
        if qty == 0:
            reject(first, last, row, "zero_quantity")
            continue
        raw_ts = row[i_ts]
        ts = parse_ts(raw_ts)
        if ts is None:
            reject(first, last, row, *parse_ts.problem(raw_ts))
            continue
        price = None
        if i_price is not None:
            raw_price = row[i_price]
            if raw_price.strip():
                price = number(raw_price)
                if price is None:
                    reject(first, last, row, *number.problem("price", raw_price))
                    continue
        user = user_id(row[i_user]) if i_user is not None else ""
        if user is None:
            reject(first, last, row, *user_id.problem("user id", row[i_user]))
            continue
        a = agg.get(item)
        if a is None:
            a = agg[item] = [{}, {}, {}]
        if qty < 0 or invoice[0] in ("C", "c"):
            append((user or None, item, "return", float(abs(qty)), ts, None, invoice, import_id, None))
        else:
            append((user or None, item, "purchase", float(qty), ts, None, invoice, import_id, None))
            if price is not None and price > 0:
                prices = a[1]
                prices[price] = prices.get(price, 0) + 1
        if i_title is not None:
            title = row[i_title].strip()
            if title:
                titles = a[0]
                titles[title] = titles.get(title, 0) + 1
        if i_country is not None:
            country = row[i_country].strip()
            if country:
                countries = a[2]
                countries[country] = countries.get(country, 0) + 1
        if len(events) >= BATCH_ROWS:
            ctx.flush_events()
    ctx.flush()
    write_items(ctx, agg)
    return len(agg)


def write_items(ctx: ImportContext, agg: dict[str, list[dict]]) -> None:
    """Insert the aggregated items; an existing item only gets its blanks filled."""
    rows = []
    for item, (titles, prices, countries) in agg.items():
        top = sorted(countries.items(), key=lambda kv: -kv[1])[:3]
        attrs = json.dumps({"countries": dict(top)}, ensure_ascii=False) if top else None
        rows.append((item, _title(titles), _median(prices), attrs, ctx.import_id))
    ctx.conn.executemany(
        "INSERT INTO items(item_id, title, price, attrs, import_id) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(item_id) DO UPDATE SET title = coalesce(items.title, excluded.title), "
        "price = coalesce(items.price, excluded.price), attrs = coalesce(items.attrs, excluded.attrs)",
        rows,
    )
