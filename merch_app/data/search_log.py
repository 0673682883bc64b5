"""Searches and the behaviour credited to them: the one reading of a search log.

A click, cart or purchase is credited to a query when the event itself has a
``query``, or when the same session (``session_id``, else ``user_id``) ran a
search with that query at most ``gap_minutes`` earlier and no other search
came between.  Impressions (items shown in the result list, with the position
they were shown at) are credited to a query the same way.  Judged suites
derived from behaviour (:mod:`merch_app.evaluation.behaviour_suite`), the
click model (:mod:`merch_app.evaluation.click_model`) and the search-log
insights (:mod:`merch_app.insights.search_log`) all read the log through
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
    shown
        Items of the ``impression`` events credited to the query, in order, each
        with the 1-based position it was first shown at (None when no position
        was given; a credited event's own position fills it in).
    """

    session: Optional[str]
    query: str
    key: str
    ts: Optional[str]
    searched: bool = True
    events: list[Credit] = field(default_factory=list)
    shown: dict[str, Optional[int]] = field(default_factory=dict)

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

    An event carrying its own query that differs from the current search's
    starts a visit of its own (``searched`` False).

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
        SELECT coalesce(session_id, user_id), ts, event_type, item_id, query, position FROM events
        WHERE ((query IS NOT NULL AND query != '')
           OR (event_type IN ('click', 'cart', 'purchase', 'impression') AND coalesce(session_id, user_id) IN
               (SELECT DISTINCT coalesce(session_id, user_id) FROM events
                WHERE event_type IN ('search', 'impression') AND query IS NOT NULL AND query != ''))) {cond}
        ORDER BY 1, ts, id"""
    total = db.execute(f"SELECT count(*) FROM ({sql})", args).fetchone()[0] if progress is not None else 0
    gap = gap_minutes * 60.0
    current: Optional[SearchVisit] = None
    started: Optional[float] = None
    throttle = Throttle()
    for n, (session, ts, etype, item_id, query, position) in enumerate(db.execute(sql, args)):
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
        if not item_id or (etype not in CREDITED and etype != "impression"):
            continue
        if q:
            if current is None or current.session != session or current.key != query_key(q):
                if current is not None:
                    yield current
                current, started = SearchVisit(session, q, query_key(q), ts, searched=False), seconds(ts)
        else:
            t = seconds(ts)
            if current is None or session is None or current.session != session or t is None \
                    or started is None or not 0 <= t - started <= gap:
                continue
        item = str(item_id)
        if etype == "impression":
            if current.shown.get(item) is None:
                current.shown[item] = position
            continue
        current.events.append(Credit(etype, item, ts))
        if position is not None and item in current.shown and current.shown[item] is None:
            current.shown[item] = position
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


def completed_searches(db, gap_minutes: float = 30.0, *, include_prefixes: bool = False,
                       typing_seconds: float = TYPING_SECONDS, cancel=None) -> Iterator[SearchVisit]:
    """The searches of :func:`search_visits` that count as searches: incomplete as-you-type prefixes left out.

    This is the one count of searches: the Search log screen, rule usage and rule previews all
    read it, so "searched 12 times" means the same everywhere.  See :func:`query_volumes` for
    what an as-you-type prefix is; ``include_prefixes`` keeps them.
    """
    previous: Optional[SearchVisit] = None
    for v in search_visits(db, gap_minutes, cancel=cancel):
        if not v.searched:
            continue
        if previous is not None and (include_prefixes or not _typing(previous, v, typing_seconds)):
            yield previous
        previous = v
    if previous is not None:
        yield previous


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
    for v in completed_searches(db, include_prefixes=include_prefixes, typing_seconds=typing_seconds, cancel=cancel):
        row = out.setdefault(v.key, QueryVolume(v.query, v.key))
        row.searches += 1
        day = (v.ts or "")[:10]
        row.days[day] = row.days.get(day, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1].searches, kv[0])))
