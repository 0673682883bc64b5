"""Map the columns of a shop export to merch_app fields and guess the file's kind.

Headers are compared after normalisation (case, width, spaces, ``_ - . #``
removed), so ``Customer ID``, ``customer_id`` and ``CUSTOMERID`` are the same
column.  Each target field has synonyms (English and Chinese); an exact synonym
gives confidence 1.0 for the field's first name and 0.9 for the others, a
synonym contained in a longer header 0.6 (not for ``position``: only its
whole-header synonyms count).

Saved mappings live in the ``mappings`` table keyed by the normalised header
list, so a file with the same headers is mapped the same way next time.
"""
from __future__ import annotations

import json
import unicodedata
from datetime import datetime, timezone
from typing import Optional

KINDS = ("catalogue", "events", "transactions")
ATTRS = "attrs*"  # catalogue: the column goes into the item's attrs JSON under its header name
FIELDS: dict[str, list[str]] = {
    "catalogue": ["item_id", "title", "description", "tags", "category", "price", ATTRS],
    "events": ["user_id", "item_id", "event_type", "value", "ts", "query", "session_id", "position"],
    "transactions": ["invoice", "item_id", "title", "quantity", "ts", "price", "user_id", "country"],
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "catalogue": ("item_id",),
    "events": ("item_id", "ts"),
    "transactions": ("invoice", "item_id", "quantity", "ts"),
}

_SYNONYMS: dict[str, list[str]] = {
    "item_id": ["itemid", "item", "sku", "stockcode", "productid", "product", "productcode", "itemcode",
                "articleid", "article", "articleno", "goodsid", "asin", "code", "itemno", "productno",
                # catalogues of other kinds of things (MovieLens movieId, Book-Crossing ISBN, ...)
                "movieid", "movie", "bookid", "isbn", "songid", "trackid", "videoid", "listingid", "offerid",
                "recipeid", "courseid", "gameid", "appid", "contentid", "variantid",
                "商品id", "商品编号", "商品", "货号", "宝贝id", "物品id"],
    "user_id": ["userid", "user", "customerid", "customer", "clientid", "client", "buyerid", "buyer",
                "memberid", "member", "visitorid", "visitor", "shopperid", "customerno", "用户id", "用户",
                "会员id", "客户id", "客户", "买家id"],
    "title": ["title", "name", "productname", "itemname", "producttitle", "itemtitle", "商品名称", "标题",
              "名称", "商品标题", "品名"],
    "description": ["description", "desc", "details", "body", "longdescription", "productdescription",
                    "描述", "商品描述", "详情"],
    "tags": ["tags", "tag", "keywords", "labels", "genres", "genre", "标签", "关键词"],
    "category": ["category", "categoryname", "cat", "department", "productcategory", "categoryid",
                 "productgroup", "categorypath", "类目", "分类", "品类", "类别", "商品类别", "类目id", "商品类目id",
                 "商品类目"],
    "price": ["price", "unitprice", "saleprice", "listprice", "cost", "amount", "价格", "单价", "售价"],
    "event_type": ["eventtype", "event", "type", "action", "behavior", "behaviortype", "behaviour",
                   "behaviourtype", "interaction", "行为类型", "行为", "事件", "事件类型"],
    "value": ["value", "rating", "score", "quantity", "qty", "weight", "评分", "数量", "值"],
    "ts": ["ts", "timestamp", "time", "date", "datetime", "eventtime", "eventdate", "invoicedate",
           "orderdate", "createdat", "created", "时间", "日期", "时间戳", "行为时间"],
    "query": ["query", "searchterm", "searchquery", "searchkeyword", "keyword", "searchtext", "q",
              "搜索词", "关键字", "搜索"],
    "session_id": ["sessionid", "session", "visitid", "会话id", "会话"],
    # the 1-based rank at which the item was shown (click models correct clicks for it)
    "position": ["position", "pos", "rank", "ranking", "slot", "displayposition", "resultposition",
                 "searchrank", "位置", "排名", "排序"],
    "invoice": ["invoiceno", "invoice", "invoiceid", "invoicenumber", "orderid", "order", "orderno",
                "ordernumber", "transactionid", "receiptno", "订单号", "订单id", "订单编号"],
    "quantity": ["quantity", "qty", "units", "count", "数量", "购买数量"],
    "country": ["country", "region", "countrycode", "国家", "地区"],
}
# Fields whose synonyms count only as the whole header: a position cell that is not a whole number rejects
# its row, so "sales_rank" or "rank_score" must not become the position by containing "rank".
_EXACT_ONLY = frozenset({"position"})
# Transaction exports call the product name "Description" (Online Retail does).
_KIND_EXTRA = {"transactions": {"title": ["description", "desc", "productdescription", "商品描述"]}}

_DROP = str.maketrans("", "", " _-.#:()[]/\\\t\u3000")


def normalise_header(name: str) -> str:
    """``' Customer_ID '`` → ``'customerid'`` (NFKC, lower case, separators removed)."""
    text = unicodedata.normalize("NFKC", name).lower().translate(_DROP).strip().lstrip("\ufeff").strip()
    return unicodedata.normalize("NFKC", text)  # removing separators can leave composable pairs


def header_key(headers: list[str]) -> str:
    """Key of a header list in the ``mappings`` table."""
    return json.dumps([normalise_header(h) for h in headers], ensure_ascii=False)


def _field_confidence(norm: str, field: str, kind: str) -> float:
    syns = _SYNONYMS.get(field, []) + _KIND_EXTRA.get(kind, {}).get(field, [])
    if norm == field.replace("_", ""):
        return 1.0
    if norm in syns:
        return 1.0 if syns.index(norm) == 0 else 0.9
    if field in _EXACT_ONLY:
        return 0.0
    for s in syns:
        long_enough = len(s) >= 4 or (len(s) >= 2 and not s.isascii())
        if long_enough and s in norm:
            return 0.6
    return 0.0


def guess_columns(headers: list[str], kind: str) -> list[tuple[str, Optional[str], float]]:
    """Best field per column for ``kind``: ``[(source, field or None, confidence)]``.

    Each field is given to at most one column (the most confident; ties go to
    the leftmost column).  In a catalogue, columns that match nothing go to
    ``attrs*`` with confidence 0.3.
    """
    fields = [f for f in FIELDS[kind] if f != ATTRS]
    candidates = []
    for col, name in enumerate(headers):
        norm = normalise_header(name)
        for rank, field in enumerate(fields):
            conf = _field_confidence(norm, field, kind)
            if conf > 0:
                candidates.append((-conf, col, rank, field))
    candidates.sort()
    taken_cols: dict[int, tuple[str, float]] = {}
    taken_fields: set[str] = set()
    for neg_conf, col, _rank, field in candidates:
        if col in taken_cols or field in taken_fields:
            continue
        taken_cols[col] = (field, -neg_conf)
        taken_fields.add(field)
    out: list[tuple[str, Optional[str], float]] = []
    for col, name in enumerate(headers):
        if col in taken_cols:
            field, conf = taken_cols[col]
            out.append((name, field, conf))
        elif kind == "catalogue" and name.strip():
            out.append((name, ATTRS, 0.3))
        else:
            out.append((name, None, 0.0))
    return out


def kind_scores(headers: list[str]) -> dict[str, float]:
    """Confidence (0..1) that a file with these headers is of each kind."""
    conf: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        conf[kind] = {f: c for _, f, c in guess_columns(headers, kind) if f and f != ATTRS}
    scores: dict[str, float] = {}
    ev, tr, cat = conf["events"], conf["transactions"], conf["catalogue"]
    if tr.get("item_id") and tr.get("invoice") and tr.get("quantity"):
        parts = [tr.get(f, 0.0) for f in ("invoice", "item_id", "quantity", "ts")]
        scores["transactions"] = sum(parts) / len(parts)
    else:
        scores["transactions"] = 0.0
    if ev.get("item_id") and (ev.get("user_id") or ev.get("event_type")):
        parts = [ev.get(f, 0.0) for f in ("user_id", "item_id", "event_type", "ts")]
        scores["events"] = sum(parts) / len(parts) * (0.5 if tr.get("invoice") else 1.0)
    else:
        scores["events"] = 0.0
    if cat.get("item_id"):
        descriptive = max(cat.get("title", 0.0), cat.get("description", 0.0), cat.get("price", 0.0),
                          cat.get("category", 0.0))
        score = (cat["item_id"] + descriptive) / 2
        if ev.get("user_id") or ev.get("ts"):  # behaviour columns: rather events
            score *= 0.4
        scores["catalogue"] = score
    else:
        scores["catalogue"] = 0.0
    return scores


def detect_kind(headers: list[str]) -> tuple[str, float]:
    """Most likely kind and its confidence; ``('catalogue', 0.0)`` when nothing fits."""
    scores = kind_scores(headers)
    kind = max(KINDS, key=lambda k: (scores[k], -KINDS.index(k)))
    return kind, round(scores[kind], 3)


def resolve_source(headers: list[str], source: str) -> Optional[str]:
    """The header matching ``source`` exactly, else after normalisation."""
    if source in headers:
        return source
    norm = normalise_header(source)
    for h in headers:
        if normalise_header(h) == norm:
            return h
    return None


def apply_overrides(
    headers: list[str], kind: str, mapping: dict[str, str], overrides: dict[str, str]
) -> dict[str, str]:
    """Merge user choices ``{source: field}`` into ``mapping``.

    A field given to a column is taken away from any other column (except
    ``attrs*``); an empty field, ``-`` or ``ignore`` drops the column.

    Raises
    ------
    ValueError
        Unknown column or a field that ``kind`` does not have.
    """
    out = dict(mapping)
    valid = set(FIELDS[kind]) | {"attrs"}
    for source, field in overrides.items():
        header = resolve_source(headers, source)
        if header is None:
            raise ValueError(f"--map {source}={field}: no column {source!r} (columns: {', '.join(headers)})")
        field = (field or "").strip()
        if field.lower() in ("", "-", "ignore", "none"):
            out.pop(header, None)
            continue
        if field not in valid:
            raise ValueError(
                f"--map {source}={field}: {kind} files have no field {field!r} "
                f"(fields: {', '.join(FIELDS[kind])})"
            )
        if field == "attrs":
            field = ATTRS
        if field != ATTRS:
            for other in [s for s, f in out.items() if f == field]:
                del out[other]
        out[header] = field
    return out


def load_saved_mapping(db, headers: list[str]) -> Optional[tuple[str, dict[str, str]]]:
    """``(kind, mapping)`` saved for files with these headers, or None."""
    row = db.execute("SELECT kind, mapping FROM mappings WHERE header_key = ?", [header_key(headers)]).fetchone()
    if not row:
        return None
    try:
        mapping = json.loads(row[1])
    except (TypeError, ValueError):
        return None
    if row[0] not in KINDS or not isinstance(mapping, dict):
        return None
    out = {}
    for source, field in mapping.items():  # same normalised headers, maybe spelt differently
        header = resolve_source(headers, source)
        if header is not None and field in FIELDS[row[0]]:
            out[header] = field
    return row[0], out


def save_mapping(conn, headers: list[str], kind: str, mapping: dict[str, str]) -> None:
    """Remember ``mapping`` for files with these headers (runs in the caller's transaction)."""
    conn.execute(
        "INSERT INTO mappings(header_key, kind, mapping, updated) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(header_key) DO UPDATE SET kind = excluded.kind, mapping = excluded.mapping, "
        "updated = excluded.updated",
        [header_key(headers), kind, json.dumps(mapping, ensure_ascii=False),
         datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")],
    )
