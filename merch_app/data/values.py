"""Parsing of cell values: timestamps, numbers, ids and event types.

Everything here is called once per cell on the import hot path, so the
functions are small, avoid regexes on the common case and cache timestamps
(shop exports repeat the same invoice time on every line of an invoice).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Iterable, Optional

# ---------------------------------------------------------------- event types

_EVENT_SYNONYMS = {
    "search": ("search", "query", "searched", "搜索", "查询"),
    # Shown in a result list, not necessarily looked at: the denominator of click models, never behaviour.
    "impression": ("impression", "impressions", "viewimpression", "listimpression", "searchimpression",
                   "productimpression", "shown", "exposure", "曝光", "展现", "展示"),
    "view": ("view", "pv", "pageview", "viewed", "detail", "productview", "visit", "浏览", "查看"),
    "click": ("click", "clicked", "clk", "点击"),
    # Favourites / wish lists carry intent close to a cart add; the schema has no own type for them.
    "cart": ("cart", "addtocart", "add2cart", "addcart", "cartadd", "basket", "fav", "favorite",
             "favourite", "wishlist", "like", "加购", "加入购物车", "购物车", "收藏"),
    "purchase": ("purchase", "buy", "order", "bought", "transaction", "checkout", "sale", "购买",
                 "下单", "成交", "支付"),
    "return": ("return", "refund", "returned", "cancel", "cancellation", "退货", "退款"),
    "rating": ("rating", "review", "rate", "rated", "stars", "score", "评分", "评价", "打分"),
}
EVENT_TYPE_SYNONYMS: dict[str, str] = {
    syn: canonical for canonical, syns in _EVENT_SYNONYMS.items() for syn in syns
}
_EVENT_CLEAN = str.maketrans("", "", " _-.")


def normalise_event_type(raw: str) -> Optional[str]:
    """Canonical event type for a raw label (``'PV'`` → ``'view'``), None if unknown."""
    key = raw.strip().lower().translate(_EVENT_CLEAN)
    return EVENT_TYPE_SYNONYMS.get(key)


# ------------------------------------------------------------------- numbers

MAX_ABS_NUMBER = 1e9  # quantities, prices and values beyond this are export errors, not data
_CURRENCY = str.maketrans("", "", "£$€¥￥元 \u00a0'")


def parse_number(raw: str) -> Optional[float]:
    """Parse a number written the way shop exports write them.

    Accepts ``12``, ``-3.5``, ``1,234.50``, ``1.234,50`` and ``3,50`` (decimal
    comma), ``£2.55``, ``1e3``.  A file's own convention is applied by
    :class:`NumberParser`.  Returns None when the text is not a finite number
    within ±:data:`MAX_ABS_NUMBER`.
    """
    try:
        value = float(raw)
    except ValueError:
        text = raw.strip().translate(_CURRENCY)
        if text.upper().startswith(("GBP", "USD", "EUR", "RMB", "CNY")):
            text = text[3:]
        if "," in text:
            if "." in text:  # the last mark is the decimal one: 1,234.50 and 1.234,50 are both 1234.5
                text = (text.replace(".", "").replace(",", ".") if text.rfind(",") > text.rfind(".")
                        else text.replace(",", ""))
            elif re.fullmatch(r"-?\d+,\d{1,2}", text):
                text = text.replace(",", ".")
            else:
                text = text.replace(",", "")
        try:
            value = float(text)
        except ValueError:
            return None
    if not -MAX_ABS_NUMBER <= value <= MAX_ABS_NUMBER:  # also false for NaN
        return None
    return value


def in_range(value: float) -> bool:
    """True for a finite number within ±:data:`MAX_ABS_NUMBER` (the import hot path's check)."""
    return -MAX_ABS_NUMBER <= value <= MAX_ABS_NUMBER


def number_detail(label: str, raw: str) -> str:
    """Reject detail for a number cell: ``"price 'ten'"``, ``"value '1e300' is out of range ..."``."""
    try:
        value = float(raw)
    except ValueError:
        return f"{label} {raw!r}"
    if value != value:
        return f"{label} {raw!r} is not a number"
    return f"{label} {raw!r} is out of range (more than {MAX_ABS_NUMBER:.0e} in size)"


MAX_POSITION = 100_000  # a rank beyond this is an export error, not a result list


def parse_position(raw: str) -> Optional[int]:
    """The 1-based rank at which an item was shown: ``'3'`` → 3 (``'3.0'`` too); None when not a positive whole number."""
    text = raw.strip()
    if text.isascii() and text.isdigit():
        value = int(text)
    else:
        try:
            number = float(text)
        except ValueError:
            return None
        if not number.is_integer():
            return None
        value = int(number)
    return value if 1 <= value <= MAX_POSITION else None


def position_problem(column: str, raw: str) -> tuple[str, str]:
    """``(reason code, detail)`` for a position cell :func:`parse_position` refused."""
    return "bad_position", (f"column {column!r}: {raw.strip()!r} is not a positive whole number "
                            f"(1 to {MAX_POSITION:,}: the rank at which the item was shown, 1 = first)")


def clean_id(raw: str) -> str:
    """Strip an id and undo spreadsheet damage (``'17850.0'`` → ``'17850'``)."""
    text = raw.strip()
    if text.endswith(".0") and text[:-2].isdigit():
        return text[:-2]
    return text


# ------------------------------------------- a file's decimal convention and id form

DECIMAL_POINT = "point"  # 1,234.56 / 12.5 (and the odd 3,50): parse_number as it is
DECIMAL_COMMA = "comma"  # 1.234,56 / 2.500,00 / 3,5: '.' groups thousands, ',' is the decimal mark
DECIMAL_MIXED = "mixed"  # both forms in one file: a cell that reads two ways is refused, never guessed
_COMMA_DECIMAL = re.compile(r"[-+]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+", re.ASCII)
_POINT_DECIMAL = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)\.\d+", re.ASCII)
_DOT_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:\.\d{3})+", re.ASCII)  # 1.234: 1234 with a decimal comma
COMMA_DELIMITERS = (";", "\t")  # where a decimal comma cannot be the cell separator


def _bare_number(raw: str) -> str:
    text = raw.strip().translate(_CURRENCY)
    return text[3:] if text.upper().startswith(("GBP", "USD", "EUR", "RMB", "CNY")) else text


def guess_decimal(samples: Iterable[str], delimiter: str) -> str:
    """The decimal convention of a file's number cells (a sample of its price/value/quantity columns).

    :data:`DECIMAL_COMMA` when the delimiter is ``;`` or a tab and some cells
    are written ``1.234,56`` or ``3,5`` while none is written with a decimal
    point (``12.5``, ``1,234.56``); :data:`DECIMAL_MIXED` when both forms
    occur; otherwise :data:`DECIMAL_POINT` (``1.234`` alone could be either
    and is read as a decimal point, as before).
    """
    if delimiter not in COMMA_DELIMITERS:
        return DECIMAL_POINT
    comma = point = False
    for raw in samples:
        text = _bare_number(raw)
        if _COMMA_DECIMAL.fullmatch(text):
            comma = True
        elif _POINT_DECIMAL.fullmatch(text) and not _DOT_THOUSANDS.fullmatch(text):
            point = True
        if comma and point:
            return DECIMAL_MIXED
    return DECIMAL_COMMA if comma else DECIMAL_POINT


class NumberParser:
    """Number cells of one file, read with its decimal convention (see :func:`guess_decimal`).

    With :data:`DECIMAL_POINT` it is :func:`parse_number` behind a plain
    ``float`` fast path.  With :data:`DECIMAL_COMMA` ``1.234,56`` is 1234.56,
    ``1.234`` is 1234, and a cell with a decimal point (``12.5``) is refused.
    With :data:`DECIMAL_MIXED` a cell holding a comma or written ``1.234`` is
    refused (:meth:`problem` says it reads two ways).  Returns None for a
    refused cell, like :func:`parse_number`.
    """

    def __init__(self, decimal: str = DECIMAL_POINT) -> None:
        self.decimal = decimal

    def __call__(self, raw: str) -> Optional[float]:
        if self.decimal == DECIMAL_POINT:
            try:
                value = float(raw)
            except ValueError:
                return parse_number(raw)
            return value if in_range(value) else None
        text = _bare_number(raw)
        if "," not in text and "." not in text:
            return parse_number(text)
        if self.decimal == DECIMAL_MIXED:
            return None if "," in text or _DOT_THOUSANDS.fullmatch(text) else parse_number(text)
        if _COMMA_DECIMAL.fullmatch(text):
            value = float(text.replace(".", "").replace(",", "."))
        elif _DOT_THOUSANDS.fullmatch(text):
            value = float(text.replace(".", ""))
        else:
            return None
        return value if in_range(value) else None

    def problem(self, label: str, raw: str) -> tuple[str, str]:
        """``(reason code, detail)`` for a cell this parser refused."""
        text = _bare_number(raw)
        if self.decimal == DECIMAL_MIXED and ("," in text or _DOT_THOUSANDS.fullmatch(text)):
            return "ambiguous_number", (
                f"{label} {raw!r} reads two ways: this file writes numbers both with a decimal comma "
                "(1.234,56) and with a decimal point (12.5); export it with one of them")
        if self.decimal == DECIMAL_COMMA and ("," in text or "." in text) and not (
                _COMMA_DECIMAL.fullmatch(text) or _DOT_THOUSANDS.fullmatch(text)):
            return "bad_number", f"{label} {raw!r} does not use the file's decimal comma (1.234,56)"
        return "bad_number", number_detail(label, raw)


_SPREADSHEET_ID = re.compile(r"[0-9]+\.0")


def spreadsheet_id_column(samples: Iterable[str]) -> bool:
    """True when every non-empty id of the sample is written as a spreadsheet number (``17850.0``)."""
    seen = False
    for raw in samples:
        text = raw.strip()
        if not text:
            continue
        if not _SPREADSHEET_ID.fullmatch(text):
            return False
        seen = True
    return seen


class IdReader:
    """The ids of one column of one file.

    ``17850.0`` is read as ``17850`` (:func:`clean_id`) only when the whole
    column is written that way (``spreadsheet``, decided by
    :func:`spreadsheet_id_column` from the file's sample); otherwise ids are
    kept as written, so ``123.0`` and ``123`` stay two ids.  In a spreadsheet
    column a later id of plain digits would be merged with a rewritten one
    (``123`` and ``123.0``): it is refused (None, :meth:`problem`).  Other ids
    (``85123A``) are kept as written.
    """

    def __init__(self, spreadsheet: bool = False) -> None:
        self.spreadsheet = spreadsheet

    def __call__(self, raw: str) -> Optional[str]:
        text = raw.strip()
        if not self.spreadsheet:
            return text
        if text.endswith(".0") and text[:-2].isascii() and text[:-2].isdigit():
            return text[:-2]
        if text.isascii() and text.isdigit():
            return None
        return text

    @staticmethod
    def problem(label: str, raw: str) -> tuple[str, str]:
        """``(reason code, detail)`` for an id this reader refused."""
        text = raw.strip()
        return "id_form", (f"{label} {text!r} is plain digits while the rest of the column is written as "
                           f"spreadsheet numbers ({text}.0, read as {text}): refused so that two ids are not "
                           "merged; export the column in one form")


# ---------------------------------------------------------------- timestamps

_ISO = re.compile(
    r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
    r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?"
    r"\s*(Z|UTC|[+-]\d{2}:?\d{2})?"
)
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})(?:[ T]?(\d{2}):?(\d{2}):?(\d{2}))?")
_DMY = re.compile(
    r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})"
    r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?\s*([AaPp][Mm])?)?"
)
_CJK = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日\s*(?:(\d{1,2})[:时](\d{2})分?(?:[:]?(\d{2})秒?)?)?")
_EPOCH = re.compile(r"-?\d{9,13}(?:\.\d+)?")

DAY_FIRST = "day-first"
MONTH_FIRST = "month-first"


def guess_date_order(samples: Iterable[str]) -> Optional[str]:
    """Decide day-first vs month-first from slash dates like ``31/01/2011``.

    Returns None when no sample is a two-number-first date or all are
    ambiguous (both numbers ≤ 12).
    """
    for s in samples:
        m = _DMY.fullmatch(s.strip())
        if not m:
            continue
        a, b = int(m.group(1)), int(m.group(2))
        if a > 12 >= b:
            return DAY_FIRST
        if b > 12 >= a:
            return MONTH_FIRST
    return None


def is_numeric_dmy(s: str) -> bool:
    """True for dates like ``01/02/2011`` whose day/month order needs deciding."""
    return _DMY.fullmatch(s.strip()) is not None


def _iso(y: int, mo: int, d: int, h: int, mi: int, s: int, tz: Optional[str]) -> Optional[str]:
    try:
        dt = datetime(y, mo, d, h, mi, s)
    except ValueError:
        return None
    if tz and tz not in ("Z", "UTC"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        dt -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    if not 1900 <= dt.year <= 2200:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(raw: str, date_order: Optional[str] = None) -> Optional[str]:
    """Parse a timestamp to ``'YYYY-MM-DDTHH:MM:SSZ'`` (UTC); None if unparsable.

    Understands ISO 8601 (with or without ``T``, seconds, fraction, ``Z`` or
    an offset), ``YYYYMMDD``, ``2017年11月25日``, epoch seconds or
    milliseconds, and ``dd/mm/yyyy`` or ``mm/dd/yyyy`` (with ``date_order``;
    day-first when None).  Naive times are taken as UTC.
    """
    s = raw.strip()
    if not s:
        return None
    # Fast path: 'YYYY-MM-DD HH:MM:SS' / 'YYYY-MM-DDTHH:MM:SS'
    if len(s) == 19 and s[4] == "-" and s[7] == "-" and s[13] == ":" and s[16] == ":":
        try:
            return _iso(int(s[:4]), int(s[5:7]), int(s[8:10]), int(s[11:13]), int(s[14:16]),
                        int(s[17:19]), None)
        except ValueError:
            return None
    m = _ISO.fullmatch(s)
    if m:
        y, mo, d, h, mi, sec, tz = m.groups()
        return _iso(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0), tz)
    if _EPOCH.fullmatch(s):
        value = float(s)
        if abs(value) >= 1e11:  # milliseconds
            value /= 1000.0
        try:
            dt = datetime.fromtimestamp(int(value), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if 1970 <= dt.year <= 2200 else None
    m = _COMPACT.fullmatch(s)
    if m:
        y, mo, d, h, mi, sec = m.groups()
        return _iso(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0), None)
    m = _DMY.fullmatch(s)
    if m:
        a, b, y, h, mi, sec, ampm = m.groups()
        day, month = (int(b), int(a)) if date_order == MONTH_FIRST else (int(a), int(b))
        year = int(y) + (2000 if len(y) == 2 else 0)
        hour = int(h or 0)
        if ampm:
            if hour > 12:
                return None
            hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
        return _iso(year, month, day, hour, int(mi or 0), int(sec or 0), None)
    m = _CJK.fullmatch(s)
    if m:
        y, mo, d, h, mi, sec = m.groups()
        return _iso(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0), None)
    return None


FUTURE_GRACE = timedelta(days=2)  # time zones and clock skew; later dates are export errors
# Behaviour data older than this is a placeholder (1900-01-01, epoch 0 = 1970-01-01), not an event:
# one such row stretched the event time range so far that the default time split left nothing to train on.
EARLIEST_EVENT = "1990-01-01T00:00:00Z"


class TimestampParser:
    """Cached :func:`parse_timestamp` for one file (fixed date order).

    Dates later than now + :data:`FUTURE_GRACE` or before :data:`EARLIEST_EVENT`
    parse to None (a shop export cannot hold events that did not happen yet,
    nor web-shop events from before 1990); :meth:`problem` says why a cell was
    refused.  The cache is cleared when it grows past ``max_size``
    so memory stays bounded whatever the file size.
    """

    def __init__(self, date_order: Optional[str] = None, max_size: int = 200_000,
                 now: Optional[datetime] = None) -> None:
        self.date_order = date_order
        self.max_size = max_size
        self.cache: dict[str, Optional[str]] = {}
        latest = (now or datetime.now(timezone.utc)) + FUTURE_GRACE
        self.latest = latest.strftime("%Y-%m-%dT%H:%M:%SZ")

    def problem(self, raw: str) -> tuple[str, str]:
        """``(reason code, detail)`` for a cell this parser refused."""
        if not raw.strip():
            return "missing_date", ""
        value = parse_timestamp(raw, self.date_order)
        if value is not None and value > self.latest:
            return "future_date", f"{raw!r} is after {self.latest[:10]}"
        if value is not None and value < EARLIEST_EVENT:
            return "early_date", f"{raw!r} is before {EARLIEST_EVENT[:10]} (a placeholder date, not an event)"
        return "bad_date", repr(raw)

    def __call__(self, raw: str) -> Optional[str]:
        cache = self.cache
        try:
            return cache[raw]
        except KeyError:
            pass
        if len(cache) >= self.max_size:
            cache.clear()
        value = parse_timestamp(raw, self.date_order)
        if value is not None and not EARLIEST_EVENT <= value <= self.latest:
            value = None
        cache[raw] = value
        return value
