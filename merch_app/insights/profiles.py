"""User profiles (用户画像): activity, event mix, categories, tags, interest terms, history.

Everything is computed from the ``events`` and ``items`` tables with a few
indexed queries (``idx_events_user``), so a profile opens in milliseconds even
on the full Online Retail workspace.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from merch_app.data.workspace import EVENT_TYPES
from merch_app.insights.common import (
    NO_CATEGORY,
    bucket_sql,
    date_to_epoch,
    parse_tags,
    pick_bucket,
    placeholders,
    words,
)

USER_LIST_KINDS = ("active", "random", "cold")


@dataclass
class ActivitySeries:
    """Event counts per time bucket and event type.

    ``dates[b]`` is the bucket start ('YYYY-MM-DD'), ``epoch[b]`` the same in
    seconds (for date axes) and ``counts[type][b]`` the number of events.
    """

    bucket: str
    dates: list[str]
    epoch: np.ndarray
    counts: dict[str, np.ndarray]

    def total(self) -> np.ndarray:
        if not self.counts:
            return np.zeros(len(self.dates))
        return np.sum(list(self.counts.values()), axis=0)

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "dates": self.dates,
                "counts": {k: v.astype(int).tolist() for k, v in self.counts.items()}}


@dataclass
class UserProfile:
    """Everything the Users screen shows about one user (JSON via :meth:`to_dict`)."""

    user_id: str
    n_events: int
    n_items: int
    n_sessions: int
    first_ts: Optional[str]
    last_ts: Optional[str]
    event_mix: dict[str, int]
    activity: ActivitySeries
    categories: list[dict[str, Any]]  # {category, events, items, share}
    tags: list[tuple[str, int]]
    interest_terms: list[tuple[str, float, int]]  # (term, score, count)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.n_events > 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["activity"] = self.activity.to_dict()
        d["tags"] = [{"tag": t, "count": c} for t, c in self.tags]
        d["interest_terms"] = [{"term": t, "score": round(s, 4), "count": c} for t, s, c in self.interest_terms]
        return d


def activity_series(db, where: str, args: list, bucket: Optional[str] = None) -> ActivitySeries:
    """Events matching ``where`` (SQL over ``events``) per time bucket and event type.

    ``bucket`` is day/week/month, chosen from the span if None.  Buckets
    without events between the first and the last are included with zeros so
    the series plots as a proper time axis.
    """
    first, last = db.execute(f"SELECT min(ts), max(ts) FROM events WHERE {where}", args).fetchone()
    bucket = bucket or pick_bucket(first, last)
    expr = bucket_sql(bucket)
    rows = db.execute(
        f"SELECT {expr} AS b, event_type, count(*) FROM events WHERE {where} GROUP BY b, event_type ORDER BY b",
        args,
    ).fetchall()
    if not rows:
        return ActivitySeries(bucket, [], np.zeros(0), {})
    dates = _bucket_range(rows[0][0], rows[-1][0], bucket)
    pos = {d: n for n, d in enumerate(dates)}
    counts: dict[str, np.ndarray] = {}
    for b, etype, n in rows:
        counts.setdefault(etype, np.zeros(len(dates)))[pos[b]] += n
    ordered = {t: counts[t] for t in EVENT_TYPES if t in counts}
    ordered.update({t: c for t, c in counts.items() if t not in ordered})
    return ActivitySeries(bucket, dates, date_to_epoch(dates), ordered)


def user_activity(db, user_id: str, bucket: Optional[str] = None) -> ActivitySeries:
    """Events of ``user_id`` per time bucket (see :func:`activity_series`)."""
    return activity_series(db, "user_id = ?", [str(user_id)], bucket)


def _bucket_range(first: str, last: str, bucket: str) -> list[str]:
    start, end = np.datetime64(first, "D"), np.datetime64(last, "D")
    if bucket == "day":
        days = np.arange(start, end + 1, dtype="datetime64[D]")
    elif bucket == "week":
        days = np.arange(start, end + 1, 7, dtype="datetime64[D]")
    else:
        months = np.arange(np.datetime64(first[:7], "M"), np.datetime64(last[:7], "M") + 1)
        days = months.astype("datetime64[D]")
    return [str(d) for d in days]


def user_categories(db, user_id: str, limit: int = 15,
                    item_group: Optional[Mapping[str, str]] = None) -> list[dict[str, Any]]:
    """Categories (or ``item_group`` labels) of the items the user touched.

    Rows ``{category, events, items, share}``, share = of the user's item events.
    """
    if item_group is None:
        rows = db.execute(
            """SELECT coalesce(nullif(i.category, ''), ?) AS c, count(*), count(DISTINCT e.item_id)
               FROM events e LEFT JOIN items i ON i.item_id = e.item_id
               WHERE e.user_id = ? AND e.item_id IS NOT NULL
               GROUP BY c ORDER BY count(*) DESC, c""",
            [NO_CATEGORY, user_id],
        ).fetchall()
    else:
        events: Counter[str] = Counter()
        items: dict[str, set] = {}
        for item_id, n in db.execute(
            "SELECT item_id, count(*) FROM events WHERE user_id = ? AND item_id IS NOT NULL GROUP BY item_id",
            [user_id],
        ):
            g = item_group.get(item_id, NO_CATEGORY)
            events[g] += n
            items.setdefault(g, set()).add(item_id)
        rows = sorted(((g, events[g], len(items[g])) for g in events), key=lambda r: (-r[1], r[0]))
    total = sum(r[1] for r in rows) or 1
    return [{"category": c, "events": n, "items": k, "share": n / total} for c, n, k in rows[:limit]]


def user_tags(db, user_id: str, limit: int = 20) -> list[tuple[str, int]]:
    """Tags of the touched items, counted once per event."""
    counter: Counter[str] = Counter()
    for (raw,) in db.execute(
        "SELECT i.tags FROM events e JOIN items i ON i.item_id = e.item_id WHERE e.user_id = ?", [user_id]
    ):
        counter.update(parse_tags(raw))
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def catalogue_doc_freq(db, terms: list[str]) -> tuple[dict[str, int], int]:
    """Number of catalogue items containing each term (from the FTS5 vocabulary) and the item count.

    Uses a temporary ``fts5vocab`` table over ``items_fts`` so no words are
    re-tokenised; terms absent from the catalogue get 0.
    """
    n_items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    if not terms:
        return {}, n_items
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.items_vocab USING fts5vocab(main, items_fts, 'row')")
    df: dict[str, int] = {}
    for start in range(0, len(terms), 500):
        chunk = terms[start:start + 500]
        for term, doc in db.execute(
            f"SELECT term, doc FROM temp.items_vocab WHERE term IN ({placeholders(len(chunk))})", chunk
        ):
            df[term] = doc
    return df, n_items


def interest_terms(db, user_id: str, k: int = 15, query_weight: float = 2.0) -> list[tuple[str, float, int]]:
    """Most characteristic words of the user's queries and touched items.

    Term frequency counts each word once per event (item title + tags, and
    the query text with weight ``query_weight``); the score is
    ``tf * idf`` with the smoothed catalogue idf ``ln((1 + N) / (1 + df)) + 1``,
    so words every item shares ("set", the shop's brand) sink and rare,
    specific words rise.

    Returns
    -------
    list of (term, score, count)
        Best first; ``count`` is the number of events the word came from.
    """
    tf: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for title, tags, query in db.execute(
        """SELECT i.title, i.tags, e.query FROM events e LEFT JOIN items i ON i.item_id = e.item_id
           WHERE e.user_id = ?""",
        [user_id],
    ):
        item_words = set(words(title)) | {w for t in parse_tags(tags) for w in words(t)}
        query_words = set(words(query))
        for w in item_words:
            tf[w] += 1.0
        for w in query_words:
            tf[w] += query_weight
        seen.update(item_words | query_words)
    if not tf:
        return []
    df, n_items = catalogue_doc_freq(db, sorted(tf))
    scored = [(w, tf[w] * (math.log((1 + n_items) / (1 + df.get(w, 0))) + 1.0), seen[w]) for w in tf]
    scored.sort(key=lambda r: (-r[1], r[0]))
    return scored[:k]


def user_history(db, user_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The user's latest events (newest first) with item titles."""
    rows = db.execute(
        """SELECT e.ts, e.event_type, e.item_id, i.title, coalesce(nullif(i.category, ''), ?), e.value,
                  e.query, e.session_id
           FROM events e LEFT JOIN items i ON i.item_id = e.item_id
           WHERE e.user_id = ? ORDER BY e.ts DESC, e.id DESC LIMIT ?""",
        [NO_CATEGORY, user_id, limit],
    ).fetchall()
    keys = ("ts", "event_type", "item_id", "title", "category", "value", "query", "session_id")
    return [dict(zip(keys, r)) for r in rows]


def user_profile(db, user_id: str, history_limit: int = 200, terms: int = 15,
                 item_group: Optional[Mapping[str, str]] = None) -> UserProfile:
    """The full profile of ``user_id``; an unknown user gives an empty profile (``exists`` False).

    ``item_group`` (item id -> label) replaces the catalogue category in the
    category distribution (see :mod:`merch_app.insights.groups`).
    """
    user_id = str(user_id)
    n, n_items, n_sessions, first, last = db.execute(
        """SELECT count(*), count(DISTINCT item_id), count(DISTINCT session_id), min(ts), max(ts)
           FROM events WHERE user_id = ?""",
        [user_id],
    ).fetchone()
    mix = dict(db.execute(
        "SELECT event_type, count(*) FROM events WHERE user_id = ? GROUP BY event_type", [user_id]
    ).fetchall())
    event_mix = {t: int(mix[t]) for t in EVENT_TYPES if t in mix}
    event_mix.update({t: int(c) for t, c in mix.items() if t not in event_mix})
    return UserProfile(
        user_id=user_id,
        n_events=int(n),
        n_items=int(n_items),
        n_sessions=int(n_sessions),
        first_ts=first,
        last_ts=last,
        event_mix=event_mix,
        activity=user_activity(db, user_id),
        categories=user_categories(db, user_id, item_group=item_group),
        tags=user_tags(db, user_id),
        interest_terms=interest_terms(db, user_id, k=terms),
        history=user_history(db, user_id, history_limit),
    )


def list_users(db, kind: str = "active", n: int = 50, seed: int = 0) -> list[dict[str, Any]]:
    """Users to pick from: most ``active``, a seeded ``random`` sample, or ``cold`` (fewest events).

    Returns
    -------
    list of dict
        ``{user_id, events, last_ts}`` rows; ``cold`` lists the most recent of
        the users with the fewest events first.
    """
    if kind not in USER_LIST_KINDS:
        raise ValueError(f"unknown user list {kind!r}: use one of {', '.join(USER_LIST_KINDS)}")
    base = ("SELECT user_id, count(*) AS n, max(ts) AS last FROM events WHERE user_id IS NOT NULL "
            "AND event_type IS NOT 'impression' GROUP BY user_id")  # being shown an item is not activity
    if kind == "active":
        rows = db.execute(f"{base} ORDER BY n DESC, user_id LIMIT ?", [n]).fetchall()
    elif kind == "cold":
        rows = db.execute(f"{base} ORDER BY n ASC, last DESC, user_id LIMIT ?", [n]).fetchall()
    else:
        rows = db.execute(f"{base} ORDER BY user_id").fetchall()
        if len(rows) > n:
            pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=n, replace=False))
            rows = [rows[i] for i in pick]
    return [{"user_id": u, "events": int(c), "last_ts": t} for u, c, t in rows]


def search_users(db, text: str, n: int = 50) -> list[dict[str, Any]]:
    """Users whose id starts with ``text`` (exact match first); uses the user index."""
    text = (text or "").strip()
    if not text:
        return []
    pattern = "".join(f"[{c}]" if c in "*?[]" else c for c in text) + "*"
    rows = db.execute(
        """SELECT user_id, count(*) AS n, max(ts) FROM events WHERE user_id GLOB ?
           GROUP BY user_id ORDER BY user_id <> ?, n DESC, user_id LIMIT ?""",
        [pattern, text, n],
    ).fetchall()
    return [{"user_id": u, "events": int(c), "last_ts": t} for u, c, t in rows]
