"""Small helpers shared by the insight modules: words, tags, times, actors."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

import numpy as np

from merch_app.errors import MerchAppError

# Stages of the shopping funnel in order; ``return`` and ``rating`` follow a purchase.
FUNNEL_STAGES = ("search", "view", "click", "cart", "purchase")
PATH_LEVELS = ("search", "view", "click", "cart", "purchase", "return", "rating")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NO_CATEGORY = "(no category)"


class InsightError(MerchAppError, ValueError):
    """An insight cannot be computed from this workspace or model (message is user-facing)."""


STOPWORDS = frozenset(
    """a an and are as at be but by for from has have in into is it its of on or set
    so than that the this to was were will with without x pack pcs piece pieces
    de la le les des et du un une en und der die das""".split()
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_TAG_SPLIT = re.compile(r"[,;|/]")


def words(text: Optional[str], min_len: int = 2) -> list[str]:
    """Lower-case word tokens of ``text`` without stop words and pure numbers.

    >>> words("The RED mug, 2 pcs")
    ['red', 'mug']
    """
    if not text:
        return []
    out = []
    for w in _WORD.findall(str(text).lower()):
        if len(w) >= min_len and w not in STOPWORDS and not w.isdigit():
            out.append(w)
    return out


def parse_tags(raw: Any) -> list[str]:
    """Tags of an item: a JSON list or a string split on , ; | /.

    >>> parse_tags('["Red", " mug "]'), parse_tags("red; mug|kitchen")
    (['red', 'mug'], ['red', 'mug', 'kitchen'])
    """
    if raw is None:
        return []
    raw = str(raw).strip()
    if not raw:
        return []
    if raw.startswith("["):
        try:
            value = json.loads(raw)
            if isinstance(value, list):
                return [str(t).strip().lower() for t in value if str(t).strip()]
        except ValueError:
            pass
    return [t.strip().lower() for t in _TAG_SPLIT.split(raw) if t.strip()]


def ts_to_epoch(ts: Iterable[str]) -> np.ndarray:
    """'YYYY-MM-DDTHH:MM:SSZ' strings -> float seconds since 1970 (UTC)."""
    arr = np.array([str(s)[:19] for s in ts], dtype="datetime64[s]")
    return arr.astype(np.int64).astype(np.float64)


def epoch_to_ts(seconds: float) -> str:
    return datetime.fromtimestamp(float(seconds), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pick_bucket(first_ts: Optional[str], last_ts: Optional[str]) -> str:
    """Time bucket for an activity chart: day up to ~4 months, then week, then month."""
    if not first_ts or not last_ts:
        return "day"
    span = (ts_to_epoch([last_ts])[0] - ts_to_epoch([first_ts])[0]) / 86400.0
    if span <= 120:
        return "day"
    if span <= 3 * 365:
        return "week"
    return "month"


def bucket_sql(bucket: str, column: str = "ts") -> str:
    """SQL expression giving the bucket start date ('YYYY-MM-DD') of ``column``."""
    if bucket == "day":
        return f"substr({column}, 1, 10)"
    if bucket == "week":  # Monday of the ISO week
        day = f"substr({column}, 1, 10)"
        return f"date({day}, '-' || ((CAST(strftime('%w', {day}) AS INTEGER) + 6) % 7) || ' days')"
    if bucket == "month":
        return f"substr({column}, 1, 7) || '-01'"
    raise ValueError(f"unknown time bucket {bucket!r}: use day, week or month")


def date_to_epoch(dates: Iterable[str]) -> np.ndarray:
    """'YYYY-MM-DD' strings -> float seconds since 1970 (midnight UTC)."""
    arr = np.array(list(dates), dtype="datetime64[D]")
    return arr.astype("datetime64[s]").astype(np.int64).astype(np.float64)


def placeholders(n: int) -> str:
    return ",".join("?" * n)


def item_titles(db, item_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``{item_id: (title, category)}`` for the given ids (missing ids left out)."""
    ids = list(dict.fromkeys(str(i) for i in item_ids if i is not None))
    out: dict[str, tuple[str, str]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for item_id, title, category in db.execute(
            f"SELECT item_id, title, category FROM items WHERE item_id IN ({placeholders(len(chunk))})", chunk
        ):
            out[item_id] = (title or "", category or NO_CATEGORY)
    return out
