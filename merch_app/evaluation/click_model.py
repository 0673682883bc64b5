"""Judgments from clicks corrected for position bias: COEC (clicks over expected clicks).

Items shown first are clicked more because they are shown first.  COEC
(Zhang & Jones 2007; the ``coec`` click model of OpenSearch's Search
Relevance Workbench over UBI events) compares an item's clicks with the
clicks an average item would have had at the positions where it was shown:

* ``ctr(p)`` = clicked impressions at position p / impressions at position p,
  over the whole log (the position prior);
* for each (query, item) with impressions:
  ``expected = sum over its impressions of ctr(position)`` and
  ``coec = clicks / expected``.  COEC 1 is an average item for where it was
  shown, 2 twice as many clicks as expected, 0.5 half.

The log is read through :func:`merch_app.data.search_log.search_visits`:
``impression`` events (with a ``position``) and clicks are credited to a
query like every other event.  Within one search visit an item counts as one
impression (its first position) and at most one click (a click, cart or
purchase credited to the visit on an item shown in it); so ``ctr(p)`` is a
share of impressions and the sum of all expected clicks equals the clicks.
OpenSearch multiplies the impressions by the CTR of the item's lowest rank;
here each impression brings the CTR of its own position.

Grades (fixed thresholds on COEC, :data:`COEC_THRESHOLDS`, halving and
doubling around the average so they mean the same in every log, whereas
quantiles would force a share of 0s on a search engine that ranks well):

====  ==============  ====================================================
0     coec < 0.5      clicked less than half as often as expected
1     0.5 <= coec < 1 below average for its positions
2     1 <= coec < 2   as clicked as an average item there, or up to twice
3     coec >= 2       at least twice the clicks its positions explain
====  ==============  ====================================================

Pairs with fewer than ``min_impressions`` impressions are left out (few
impressions make a noisy ratio), and so are pairs shown only at positions
nobody clicked (no expectation to compare with).
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from typing import Optional

from merch_app.data.search_log import query_key, search_visits
from merch_app.evaluation.suite_data import Suite, SuiteError
from merch_app.jobs import Progress

COEC_THRESHOLDS = (0.5, 1.0, 2.0)  # grade = how many of these COEC reaches (0-3)
DEFAULT_MIN_IMPRESSIONS = 5
CLICK_MODELS = ("coec",)


@dataclass(frozen=True)
class PairEvidence:
    """What one (query, item) judgment of the click model rests on.

    Attributes
    ----------
    query
        The query as first seen (whitespace collapsed).
    impressions, clicks
        Search visits that showed the item for the query, and those of them that clicked it.
    expected
        Clicks an average item would have had at the same positions (sum of ``ctr(position)``).
    coec
        ``clicks / expected``.
    grade
        0-3 by :data:`COEC_THRESHOLDS`.
    """

    query: str
    item_id: str
    impressions: int
    clicks: int
    expected: float
    coec: float
    grade: int


@dataclass
class ClickJudgments:
    """A suite of COEC judgments with their evidence.

    Attributes
    ----------
    suite
        The judgments as a :class:`Suite` (source ``clicks:coec``).
    pairs
        Evidence of every judged pair, in suite order.
    position_ctr
        ``position -> ctr(position)`` over the whole log.
    position_impressions
        ``position -> impressions`` behind each CTR.
    excluded
        Pairs left out: ``few_impressions`` (below ``min_impressions``),
        ``no_expected`` (shown only where nobody clicked), ``unplaced`` (impressions
        without a position, not counted).
    """

    suite: Suite
    pairs: list[PairEvidence]
    position_ctr: dict[int, float]
    position_impressions: dict[int, int]
    min_impressions: int
    thresholds: tuple[float, ...]
    excluded: dict[str, int] = field(default_factory=dict)

    def evidence(self, query: str, item_id: str) -> Optional[PairEvidence]:
        """Evidence of one judged pair (queries compared by :func:`query_key`), None when not judged."""
        key = query_key(query)
        return next((p for p in self.pairs if p.item_id == item_id and query_key(p.query) == key), None)

    def to_dict(self) -> dict:
        return {**self.suite.summary(), "click_model": "coec", "min_impressions": self.min_impressions,
                "thresholds": list(self.thresholds), "excluded": dict(self.excluded),
                "position_ctr": {str(p): c for p, c in sorted(self.position_ctr.items())},
                "position_impressions": {str(p): n for p, n in sorted(self.position_impressions.items())},
                "pairs": [asdict(p) for p in self.pairs]}


def coec_grade(coec: float, thresholds: tuple[float, ...] = COEC_THRESHOLDS) -> int:
    """Grade 0-3 of a COEC value: how many of ``thresholds`` (ascending) it reaches."""
    return bisect_right(thresholds, coec)


def _has_positioned_impressions(db) -> bool:
    return db.execute("SELECT 1 FROM events WHERE event_type = 'impression' AND position IS NOT NULL "
                      "AND item_id IS NOT NULL LIMIT 1").fetchone() is not None


def coec_judgments(db, name: str = "clicks (COEC)", *, min_impressions: int = DEFAULT_MIN_IMPRESSIONS,
                   max_queries: int = 500, thresholds: tuple[float, ...] = COEC_THRESHOLDS,
                   session_gap_minutes: float = 30.0, progress=None, cancel=None) -> ClickJudgments:
    """Judge (query, item) pairs by clicks over expected clicks (see the module docstring).

    Parameters
    ----------
    min_impressions
        Judge only pairs shown at least this often for the query.
    max_queries
        Keep the queries with the most impressions only.
    thresholds
        Three ascending COEC values where grades 1, 2 and 3 begin.
    session_gap_minutes
        Longest time from a search to an event credited to it (:func:`search_visits`).
    progress, cancel
        ``progress(Progress)`` now and then; ``cancel.check()`` while the log is read.

    Raises
    ------
    SuiteError
        No impression carries a position, bad parameters, or no pair passes ``min_impressions``.
    """
    thresholds = tuple(float(t) for t in thresholds)
    if len(thresholds) != 3 or list(thresholds) != sorted(thresholds) or thresholds[0] <= 0:
        raise SuiteError(f"COEC thresholds must be three ascending positive numbers, not {list(thresholds)}")
    if min_impressions < 1:
        raise SuiteError(f"min_impressions must be at least 1, not {min_impressions}")
    if not _has_positioned_impressions(db):
        raise SuiteError("no impression event with a position in this workspace: a click model needs the "
                         "result lists that were shown; import events of type 'impression' with the query and "
                         "a position (rank) column, plus the clicks")
    # (query key, item) -> {position: [impressions, clicks]}
    stats: dict[tuple[str, str], dict[int, list[int]]] = {}
    display: dict[str, str] = {}
    unplaced = 0
    for visit in search_visits(db, session_gap_minutes, progress=progress, cancel=cancel):
        if not visit.shown:
            continue
        display.setdefault(visit.key, visit.query)
        clicked = {c.item_id for c in visit.events}
        for item_id, position in visit.shown.items():
            if position is None:
                unplaced += 1
                continue
            cell = stats.setdefault((visit.key, item_id), {}).setdefault(position, [0, 0])
            cell[0] += 1
            cell[1] += item_id in clicked
    if progress is not None:
        progress(Progress(0, None, "clicks over expected clicks"))
    totals: dict[int, list[int]] = {}
    for by_position in stats.values():
        for position, (shown, clicks) in by_position.items():
            t = totals.setdefault(position, [0, 0])
            t[0] += shown
            t[1] += clicks
    ctr = {p: clicks / shown for p, (shown, clicks) in totals.items()}
    excluded = {"few_impressions": 0, "no_expected": 0, "unplaced": unplaced}
    judged: dict[str, list[PairEvidence]] = {}
    for (key, item_id), by_position in stats.items():
        shown = sum(v[0] for v in by_position.values())
        if shown < min_impressions:
            excluded["few_impressions"] += 1
            continue
        expected = sum(v[0] * ctr[p] for p, v in by_position.items())
        if expected <= 0:
            excluded["no_expected"] += 1
            continue
        clicks = sum(v[1] for v in by_position.values())
        coec = clicks / expected
        judged.setdefault(key, []).append(
            PairEvidence(display[key], item_id, shown, clicks, expected, coec, coec_grade(coec, thresholds)))
    if not judged:
        most = max((sum(v[0] for v in bp.values()) for bp in stats.values()), default=0)
        raise SuiteError(f"no (query, item) pair was shown {min_impressions} or more times with a position "
                         f"(the most: {most}); lower --min-impressions or import a longer log")
    volume = {k: sum(p.impressions for p in pairs) for k, pairs in judged.items()}
    kept = sorted(judged, key=lambda k: (-volume[k], k))[:max_queries]
    suite = Suite(name, source="clicks:coec",
                  description=f"clicks over expected clicks (position-corrected); pairs with >= {min_impressions} "
                              f"impressions; grade 1/2/3 from COEC {thresholds[0]:g}/{thresholds[1]:g}/"
                              f"{thresholds[2]:g}")
    pairs: list[PairEvidence] = []
    for key in kept:
        for p in sorted(judged[key], key=lambda e: (-e.coec, e.item_id)):
            suite.set_grade(p.query, p.item_id, p.grade)
            pairs.append(p)
    return ClickJudgments(suite, pairs, ctr, {p: t[0] for p, t in totals.items()}, min_impressions,
                          thresholds, excluded)
