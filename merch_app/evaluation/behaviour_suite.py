"""Derive a judged suite from behaviour: searches followed by clicks, carts and purchases."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from merch_app.evaluation.suite_data import Suite, SuiteError, normalise_query
from merch_app.jobs import Progress, Throttle

EVENT_GRADES = {"click": 1, "cart": 2, "purchase": 3}


def generate_from_behaviour(db, name: str = "behaviour", *, min_events: int = 2, max_queries: int = 500,
                            session_gap_minutes: float = 30.0, progress=None, cancel=None) -> Suite:
    """Derive a suite from events that carry a query.

    A click/cart/purchase is credited to a query when the event itself has a
    ``query``, or when the same session (``session_id``, else ``user_id``) ran
    a search with that query at most ``session_gap_minutes`` earlier and no
    other search came between.  An item's grade is the best credited event:
    click = 1, cart = 2, purchase = 3.

    Parameters
    ----------
    min_events
        Keep queries with at least this many credited events.
    max_queries
        Keep the most frequent queries only.

    Raises
    ------
    SuiteError
        No event carries a query, or none passes ``min_events``.
    """
    (n_q,) = db.execute("SELECT count(*) FROM events WHERE query IS NOT NULL AND query != ''").fetchone()
    if not n_q:
        raise SuiteError("no event in this workspace carries a query: a suite can be generated only "
                         "from search events (with a query) followed by click/cart/purchase")
    sql = """
        SELECT coalesce(session_id, user_id), ts, event_type, item_id, query FROM events
        WHERE (query IS NOT NULL AND query != '')
           OR (event_type IN ('click', 'cart', 'purchase') AND coalesce(session_id, user_id) IN
               (SELECT DISTINCT coalesce(session_id, user_id) FROM events
                WHERE event_type = 'search' AND query IS NOT NULL AND query != ''))
        ORDER BY 1, ts, id"""
    (total,) = db.execute(f"SELECT count(*) FROM ({sql})").fetchone()
    gap = session_gap_minutes * 60.0
    grades: dict[str, dict[str, int]] = {}
    support: dict[str, int] = {}
    display: dict[str, str] = {}
    current: tuple = (None, None, None)  # session, query key, search time
    throttle = Throttle()
    for n, (session, ts, etype, item_id, query) in enumerate(db.execute(sql)):
        if cancel is not None and n % 5000 == 0:
            cancel.check()
        if progress is not None and throttle.ready():
            progress(Progress(n, total, "crediting events to queries"))
        t = _seconds(ts)
        q = normalise_query(query) if query else ""
        if etype == "search":
            if q:
                current = (session, q.casefold(), t)
                display.setdefault(q.casefold(), q)
            continue
        grade = EVENT_GRADES.get(etype)
        if grade is None or not item_id:
            continue
        if q:
            key = q.casefold()
            display.setdefault(key, q)
        elif session is not None and current[0] == session and t is not None and current[2] is not None \
                and 0 <= t - current[2] <= gap:
            key = current[1]
        else:
            continue
        item_grades = grades.setdefault(key, {})
        item_grades[str(item_id)] = max(grade, item_grades.get(str(item_id), 0))
        support[key] = support.get(key, 0) + 1
    kept = sorted((k for k in grades if support[k] >= min_events), key=lambda k: (-support[k], k))
    if not kept:
        raise SuiteError(f"no query has {min_events} or more clicks/carts/purchases credited to it")
    suite = Suite(name, source="behaviour",
                  description=f"generated from behaviour: click=1, cart=2, purchase=3; "
                              f"queries with >= {min_events} credited events")
    for key in kept[:max_queries]:
        for item_id, g in grades[key].items():
            suite.set_grade(display[key], item_id, g)
    if progress is not None:
        progress(Progress(total, total, f"{len(suite.queries)} queries"))
    return suite


def _seconds(ts: Optional[str]) -> Optional[float]:
    if not ts:
        return None
    try:
        return datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None
