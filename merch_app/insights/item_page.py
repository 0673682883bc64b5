"""The item page: events over time, who buys it, the queries that lead to it, related items."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from merch_app.data.search_log import query_key
from merch_app.data.workspace import EVENT_TYPES
from merch_app.insights.common import words
from merch_app.insights.paths import Funnel, item_funnel
from merch_app.insights.profiles import ActivitySeries, activity_series, catalogue_doc_freq
from merch_app.ranking.types import RankRequest

QUERY_LOOKBACK_HOURS = 2.0  # for events without a session: searches this long before count


@dataclass
class ItemPage:
    """What the item page shows (model-free part; see :func:`item_model_views`)."""

    item: dict[str, Any]
    exists: bool
    n_events: int
    n_users: int
    first_ts: Optional[str]
    last_ts: Optional[str]
    event_mix: dict[str, int]
    activity: ActivitySeries
    buyers: list[dict[str, Any]]
    queries: list[dict[str, Any]]
    funnel: Funnel
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "exists": self.exists, "n_events": self.n_events, "n_users": self.n_users,
                "first_ts": self.first_ts, "last_ts": self.last_ts, "event_mix": self.event_mix,
                "activity": self.activity.to_dict(), "buyers": self.buyers, "queries": self.queries,
                "funnel": self.funnel.to_dict(), "model": self.model}


def item_buyers(db, item_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """Users who bought the item, most purchases first: ``{user_id, purchases, quantity, returns, last_ts}``.

    ``quantity`` sums the purchase values (missing values count 1).
    """
    rows = db.execute(
        """SELECT user_id,
                  sum(event_type = 'purchase') AS p,
                  sum(CASE WHEN event_type = 'purchase' THEN coalesce(value, 1) ELSE 0 END),
                  sum(event_type = 'return'),
                  max(ts)
           FROM events WHERE item_id = ? AND user_id IS NOT NULL AND event_type IN ('purchase', 'return')
           GROUP BY user_id HAVING p > 0 ORDER BY p DESC, max(ts) DESC, user_id LIMIT ?""",
        [str(item_id), limit],
    ).fetchall()
    return [{"user_id": u, "purchases": int(p), "quantity": float(q), "returns": int(r), "last_ts": t}
            for u, p, q, r, t in rows]


def queries_leading_to(db, item_id: str, limit: int = 20, max_events: int = 5000,
                       lookback_hours: float = QUERY_LOOKBACK_HOURS) -> list[dict[str, Any]]:
    """Search queries followed by an event on the item: ``{query, actors, direct}``.

    A query leads to the item when a search for it precedes an event on the
    item in the same session (or, without a session, by the same user within
    ``lookback_hours``), or when the search event itself names the item.
    ``actors`` counts distinct sessions/users per query; ``direct`` how many of
    them came from search events naming the item.  The item's newest
    ``max_events`` events are examined.
    """
    events = db.execute(
        """SELECT user_id, session_id, ts, event_type, query FROM events WHERE item_id = ?
           ORDER BY ts DESC LIMIT ?""",
        [str(item_id), max_events],
    ).fetchall()
    actors: dict[str, set] = defaultdict(set)
    direct: Counter[str] = Counter()
    anonymous: dict[str, str] = {}  # session -> latest ts of an item event
    per_user: dict[str, list[tuple[Optional[str], str]]] = defaultdict(list)
    for user, session, ts, etype, query in events:
        actor = f"s:{session}" if session else f"u:{user}"
        if etype == "search" and query_key(query):
            q = query_key(query)
            if actor not in actors[q]:
                direct[q] += 1
            actors[q].add(actor)
            continue
        if user is not None:
            per_user[user].append((session, ts))
        elif session:
            anonymous[session] = max(ts, anonymous.get(session, ""))
    lookback = np.timedelta64(int(lookback_hours * 3600), "s")
    for user, item_events in per_user.items():
        searches = db.execute(
            "SELECT session_id, ts, query FROM events WHERE user_id = ? AND event_type = 'search' "
            "AND ts <= ? AND query IS NOT NULL",
            [user, max(ts for _, ts in item_events)],
        ).fetchall()
        for s_session, s_ts, query in searches:
            q = query_key(query)
            for session, ts in item_events:
                if s_ts > ts:
                    continue
                if session:
                    hit = s_session == session
                else:
                    hit = np.datetime64(ts[:19]) - np.datetime64(s_ts[:19]) <= lookback
                if hit and q:
                    actors[q].add(f"s:{session}" if session else f"u:{user}")
                    break
    sessions = list(anonymous)
    for start in range(0, len(sessions), 500):
        chunk = sessions[start:start + 500]
        for session, ts, query in db.execute(
            f"""SELECT session_id, ts, query FROM events WHERE event_type = 'search'
                AND session_id IN ({','.join('?' * len(chunk))})""",
            chunk,
        ):
            q = query_key(query)
            if q and ts <= anonymous[session]:
                actors[q].add(f"s:{session}")
    rows = [{"query": q, "actors": len(a), "direct": direct.get(q, 0)} for q, a in actors.items()]
    rows.sort(key=lambda r: (-r["actors"], r["query"]))
    return rows[:limit]


def item_page(db, item_id: str) -> ItemPage:
    """Everything about one item that needs no model; unknown ids give ``exists`` False."""
    item_id = str(item_id)
    row = db.execute(
        "SELECT item_id, title, description, tags, category, price FROM items WHERE item_id = ?", [item_id]
    ).fetchone()
    keys = ("item_id", "title", "description", "tags", "category", "price")
    item = dict(zip(keys, row)) if row else {"item_id": item_id}
    n, users, first, last = db.execute(
        "SELECT count(*), count(DISTINCT user_id), min(ts), max(ts) FROM events WHERE item_id = ? "
        "AND event_type IS NOT 'impression'", [item_id]
    ).fetchone()
    mix = dict(db.execute("SELECT event_type, count(*) FROM events WHERE item_id = ? GROUP BY event_type",
                          [item_id]).fetchall())
    return ItemPage(
        item=item, exists=row is not None, n_events=int(n), n_users=int(users), first_ts=first, last_ts=last,
        event_mix={t: int(mix[t]) for t in EVENT_TYPES if t in mix},
        activity=activity_series(db, "item_id = ?", [item_id]),
        buyers=item_buyers(db, item_id),
        queries=queries_leading_to(db, item_id),
        funnel=item_funnel(db, item_id),
    )


def probe_queries(db, item_id: str, n: int = 3) -> list[str]:
    """Queries a shopper might type for the item, for catalogues without recorded searches.

    The item's title (normalised), its last two content words (the product
    noun phrase in most titles, "light holder") and its rarest title word in
    the catalogue (the most specific one), without repeats.
    """
    row = db.execute("SELECT title FROM items WHERE item_id = ?", [str(item_id)]).fetchone()
    ws = words(row[0]) if row and row[0] else []
    if not ws:
        return []
    df, _ = catalogue_doc_freq(db, sorted(set(ws)))
    rarest = min(ws, key=lambda w: (df.get(w, 0), ws.index(w)))
    out = [" ".join(ws), " ".join(ws[-2:]), rarest]
    return list(dict.fromkeys(q for q in out if q))[:n]


def item_model_views(ranker, item_id: str, queries: list[str], k: int = 10) -> dict[str, Any]:
    """Related items (text and CF) and the item's rank for each query, from a ranker.

    Returns
    -------
    dict
        ``related_text`` / ``related_cf``: ranked rows (see ``RankedList.rows``)
        or an ``error`` string; ``query_ranks``: ``{query, rank, status, score}``.
    """
    out: dict[str, Any] = {"notes": []}
    for by in ("text", "cf"):
        try:
            ranked = ranker.rank(RankRequest(mode="related", item_id=str(item_id), k=k, related_by=by))
            out[f"related_{by}"] = ranked.rows()
            out["notes"].extend(ranked.notes)
        except (KeyError, ValueError) as exc:
            out[f"related_{by}"] = []
            out["notes"].append(f"related by {by}: {exc}")
    ranks = []
    for q in queries:
        rank, info = ranker.position_of(RankRequest(mode="search", query=q, k=k, prefix=False), str(item_id))
        ranks.append({"query": q, "rank": rank, "status": info.get("status"),
                      "score": info.get("score")})
    out["query_ranks"] = ranks
    return out
