"""Derive a judged suite from behaviour: searches followed by clicks, carts and purchases."""
from __future__ import annotations

from merch_app.data.search_log import has_queries, search_visits
from merch_app.evaluation.suite_data import Suite, SuiteError

EVENT_GRADES = {"click": 1, "cart": 2, "purchase": 3}


def generate_from_behaviour(db, name: str = "behaviour", *, min_events: int = 2, max_queries: int = 500,
                            session_gap_minutes: float = 30.0, progress=None, cancel=None) -> Suite:
    """Derive a suite from events that carry a query.

    Events are credited to queries by :func:`merch_app.data.search_log.search_visits`
    (same session, at most ``session_gap_minutes`` after the search, no other
    search between).  An item's grade is the best credited event: click = 1,
    cart = 2, purchase = 3.

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
    if not has_queries(db):
        raise SuiteError("no event in this workspace carries a query: a suite can be generated only "
                         "from search events (with a query) followed by click/cart/purchase")
    grades: dict[str, dict[str, int]] = {}
    support: dict[str, int] = {}
    display: dict[str, str] = {}
    for visit in search_visits(db, session_gap_minutes, progress=progress, cancel=cancel):
        display.setdefault(visit.key, visit.query)
        for etype, item_id, _ts in visit.events:
            item_grades = grades.setdefault(visit.key, {})
            item_grades[item_id] = max(EVENT_GRADES[etype], item_grades.get(item_id, 0))
            support[visit.key] = support.get(visit.key, 0) + 1
    kept = sorted((k for k in grades if support[k] >= min_events), key=lambda k: (-support[k], k))
    if not kept:
        raise SuiteError(f"no query has {min_events} or more clicks/carts/purchases credited to it")
    suite = Suite(name, source="behaviour",
                  description=f"generated from behaviour: click=1, cart=2, purchase=3; "
                              f"queries with >= {min_events} credited events")
    for key in kept[:max_queries]:
        for item_id, g in grades[key].items():
            suite.set_grade(display[key], item_id, g)
    return suite

