"""Searches and the behaviour credited to them: the one reading of a search log.

A click, cart or purchase is credited to a query when the event itself has a
``query``, or when the same session (``session_id``, else ``user_id``) ran a
search with that query at most ``gap_minutes`` earlier and no other search
came between.  Judged suites derived from behaviour
(:mod:`merch_app.evaluation.behaviour_suite`) and the search-log insights
(:mod:`merch_app.insights.search_log`) both read the log through
:func:`search_visits`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, NamedTuple, Optional

from merch_app.jobs import Progress, Throttle

CREDITED = ("click", "cart", "purchase")


def normalise_query(text: Optional[str]) -> str:
    """Whitespace-collapsed, stripped query (case is kept for display)."""
    return " ".join(str(text or "").split())


def query_key(text: Optional[str]) -> str:
    """The key under which queries compare: whitespace collapsed and case-folded."""
    return normalise_query(text).casefold()


def seconds(ts: Optional[str]) -> Optional[float]:
    """POSIX seconds of a workspace timestamp (``YYYY-MM-DDTHH:MM:SSZ``), None when unreadable."""
    if not ts:
        return None
    try:
        return datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


class Credit(NamedTuple):
    """One click, cart or purchase credited to a search."""

    event_type: str
    item_id: str
    ts: Optional[str]


@dataclass
class SearchVisit:
    """One search and what followed it in its session.

    Attributes
    ----------
    session
        ``session_id``, else ``user_id`` (None for anonymous events without a session).
    query, key
        The query as typed (whitespace collapsed) and its case-folded key.
    ts
        Timestamp text of the search (of the first credited event when the
        event carried its own query and no search preceded it).
    searched
        True when a search event started the visit.
    events
        The :class:`Credit` events credited to the query, in order.
    """

    session: Optional[str]
    query: str
    key: str
    ts: Optional[str]
    searched: bool = True
    events: list[Credit] = field(default_factory=list)

    @property
    def clicked(self) -> bool:
        """Anything was clicked, carted or bought after the search."""
        return bool(self.events)

    @property
    def bought(self) -> bool:
        return any(c.event_type == "purchase" for c in self.events)


def has_queries(db) -> bool:
    """True when some event carries a query."""
    return db.execute("SELECT 1 FROM events WHERE query IS NOT NULL AND query != '' LIMIT 1").fetchone() is not None


def search_visits(db, gap_minutes: float = 30.0, *, until_ts: Optional[str] = None,
                  progress: Optional[Callable[[Progress], None]] = None, cancel=None) -> Iterator[SearchVisit]:
    """Every search of the workspace with the events credited to it, session by session.

    Parameters
    ----------
    gap_minutes
        Longest time from a search to an event credited to it.
    until_ts
        Only events before this timestamp (an evaluation split).
    progress, cancel
        ``progress(Progress)`` now and then; ``cancel.check()`` every 5,000 rows.
    """
    cond, args = ("AND ts < ?", [until_ts]) if until_ts else ("", [])
    sql = f"""
        SELECT coalesce(session_id, user_id), ts, event_type, item_id, query FROM events
        WHERE ((query IS NOT NULL AND query != '')
           OR (event_type IN ('click', 'cart', 'purchase') AND coalesce(session_id, user_id) IN
               (SELECT DISTINCT coalesce(session_id, user_id) FROM events
                WHERE event_type = 'search' AND query IS NOT NULL AND query != ''))) {cond}
        ORDER BY 1, ts, id"""
    total = db.execute(f"SELECT count(*) FROM ({sql})", args).fetchone()[0] if progress is not None else 0
    gap = gap_minutes * 60.0
    current: Optional[SearchVisit] = None
    started: Optional[float] = None
    throttle = Throttle()
    for n, (session, ts, etype, item_id, query) in enumerate(db.execute(sql, args)):
        if cancel is not None and n % 5000 == 0:
            cancel.check()
        if progress is not None and throttle.ready():
            progress(Progress(n, total, "crediting events to queries"))
        q = normalise_query(query) if query else ""
        if etype == "search":
            if q:
                if current is not None:
                    yield current
                current, started = SearchVisit(session, q, query_key(q), ts), seconds(ts)
            continue
        if etype not in CREDITED or not item_id:
            continue
        credit = Credit(etype, str(item_id), ts)
        if q:
            if current is not None and current.session == session and current.key == query_key(q):
                current.events.append(credit)
            else:
                if current is not None:
                    yield current
                current, started = SearchVisit(session, q, query_key(q), ts, searched=False,
                                               events=[credit]), seconds(ts)
            continue
        t = seconds(ts)
        if current is not None and session is not None and current.session == session and t is not None \
                and started is not None and 0 <= t - started <= gap:
            current.events.append(credit)
    if current is not None:
        yield current
    if progress is not None:
        progress(Progress(total, total, "credited"))


TYPING_SECONDS = 60.0  # a search followed this soon by a longer one starting with it was still being typed


@dataclass
class QueryVolume:
    """How often one query was searched, by day (``YYYY-MM-DD``; ``""`` for an unreadable timestamp)."""

    query: str
    key: str
    searches: int = 0
    days: dict[str, int] = field(default_factory=dict)

    def searches_between(self, start: Optional[str], end: Optional[str]) -> int:
        """Searches on the days from ``start`` to ``end`` (inclusive; None = open)."""
        return sum(n for d, n in self.days.items()
                   if d and (start is None or d >= start) and (end is None or d <= end))


def _typing(first: SearchVisit, then: SearchVisit, typing_seconds: float) -> bool:
    """``first`` was an incomplete as-you-type search: ``then`` extends it soon after, nothing was clicked."""
    if not (first.searched and then.searched) or first.clicked or first.session is None:
        return False
    if then.session != first.session or then.key == first.key or not then.key.startswith(first.key):
        return False
    a, b = seconds(first.ts), seconds(then.ts)
    return a is not None and b is not None and 0 <= b - a <= typing_seconds


def query_volumes(db, *, include_prefixes: bool = False, typing_seconds: float = TYPING_SECONDS,
                  cancel=None) -> dict[str, QueryVolume]:
    """Searched queries by key with their searches per day, leaving out as-you-type prefixes.

    A search is an incomplete as-you-type prefix when the same session searched a longer
    query starting with it ("christm" → "christmas", "christmas l" → "christmas lights")
    within ``typing_seconds`` and nothing was clicked in between.

    Parameters
    ----------
    include_prefixes
        Count those searches too.
    cancel
        ``cancel.check()`` now and then (see :func:`search_visits`).

    Returns
    -------
    dict of str to QueryVolume
        Keyed by :func:`query_key`, most searched first.
    """
    out: dict[str, QueryVolume] = {}
    previous: Optional[SearchVisit] = None

    def count(v: SearchVisit) -> None:
        row = out.setdefault(v.key, QueryVolume(v.query, v.key))
        row.searches += 1
        day = (v.ts or "")[:10]
        row.days[day] = row.days.get(day, 0) + 1

    for v in search_visits(db, cancel=cancel):
        if not v.searched:
            continue
        if previous is not None and (include_prefixes or not _typing(previous, v, typing_seconds)):
            count(previous)
        previous = v
    if previous is not None:
        count(previous)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1].searches, kv[0])))
