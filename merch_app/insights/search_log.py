"""What the search log says: top queries, zero-result queries, queries nobody clicks, synonyms to add.

Read through :func:`merch_app.data.search_log.completed_searches` (one search and
the clicks, carts and purchases credited to it).

* **Zero results**: no word of the query matches an item's text, even after
  Han back-off; the ranker then shows only meaning matches.  When the
  spelling corrector would rescue the query, the row says what it would
  search instead.
* **No clicks**: queries searched at least ``min_searches`` times whose
  searches were never followed by a click, cart or purchase.
* **Synonym suggestions** from reformulations: in one session a search *A*
  with no click, then within ``window_minutes`` a search *B* that was
  clicked.  The words of *A* not in *B* and of *B* not in *A* (at most two
  each) form a candidate pair; pairs that are spelling variants of each
  other (a few edits apart) are labelled ``spelling`` (the corrector handles
  them), the rest ``synonym``, with the number of sessions and how many of
  them ended in a purchase.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any, Optional

from rapidfuzz.distance import OSA

from merch_app.data.search_log import SearchVisit, completed_searches, query_key, seconds
from merch_app.model.encoder import workspace_encoder
from merch_app.ranking.lexical import LexicalSearcher, tokenize


TREND_DAYS = 28  # a query's trend: its searches in the log's last 28 days against the 28 before


@dataclass
class QueryRow:
    """Volume and outcome of one query."""

    query: str
    searches: int
    clicked: int
    bought: int
    last_seen: Optional[str]
    days: dict[str, int] = field(default_factory=dict)  # searches per day ("YYYY-MM-DD")

    @property
    def ctr(self) -> float:
        """Share of the searches followed by a click, cart or purchase."""
        return self.clicked / self.searches if self.searches else 0.0

    @property
    def conversion(self) -> float:
        return self.bought / self.searches if self.searches else 0.0

    def recent(self, last_day: str, days: int = TREND_DAYS) -> tuple[int, int]:
        """Searches in the ``days`` up to ``last_day`` and in the ``days`` before those."""
        end = date.fromisoformat(last_day)
        start, before = end - timedelta(days=days - 1), end - timedelta(days=2 * days - 1)
        now = prev = 0
        for day, n in self.days.items():
            d = _day(day)
            if d is None or d > end:
                continue
            if d >= start:
                now += n
            elif d >= before:
                prev += n
        return now, prev

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "days"}
        return {**out, "ctr": self.ctr, "conversion": self.conversion}


def _day(text: str) -> Optional[date]:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def log_end(rows: list[QueryRow]) -> Optional[str]:
    """The last day a search was seen (``YYYY-MM-DD``), or None."""
    days = [d for r in rows for d in r.days if _day(d) is not None]
    return max(days) if days else None


def with_trend(row: dict[str, Any], r: QueryRow, last_day: Optional[str]) -> dict[str, Any]:
    """``row`` (a :meth:`QueryRow.to_dict`) with ``recent``/``previous``: searches in the last
    :data:`TREND_DAYS` days of the log and in the days before them."""
    now, prev = r.recent(last_day) if last_day else (0, 0)
    return {**row, "recent": now, "previous": prev}


def weekly_trend(rows: list[QueryRow], groups: dict[str, set[str]]) -> dict[str, Any]:
    """Searches per week (weeks start on Monday), in all and for each named group of query keys.

    Returns
    -------
    dict
        ``{"weeks": ["YYYY-MM-DD", ...], "all": [...], <group>: [...]}``, weeks in order, every
        week from the first to the last search present (0 where nothing was searched).
    """
    per: dict[str, dict[date, int]] = {"all": {}, **{g: {} for g in groups}}
    for r in rows:
        key = query_key(r.query)
        for day, n in r.days.items():
            d = _day(day)
            if d is None:
                continue
            week = d - timedelta(days=d.weekday())
            per["all"][week] = per["all"].get(week, 0) + n
            for g, keys in groups.items():
                if key in keys:
                    per[g][week] = per[g].get(week, 0) + n
    if not per["all"]:
        return {"weeks": [], "all": [], **{g: [] for g in groups}}
    first, last = min(per["all"]), max(per["all"])
    weeks = [first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]
    return {"weeks": [w.isoformat() for w in weeks],
            **{g: [counts.get(w, 0) for w in weeks] for g, counts in per.items()}}


def query_rows(db, gap_minutes: float = 30.0, cancel=None) -> list[QueryRow]:
    """Every query searched at least once, most searched first (ties: alphabetical).

    As-you-type prefixes are not searches (:func:`merch_app.data.search_log.completed_searches`).
    """
    rows: dict[str, QueryRow] = {}
    for v in completed_searches(db, gap_minutes, cancel=cancel):
        row = rows.setdefault(v.key, QueryRow(v.query, 0, 0, 0, None))
        row.searches += 1
        row.clicked += v.clicked
        row.bought += v.bought
        day = (v.ts or "")[:10]
        row.days[day] = row.days.get(day, 0) + 1
        if v.ts and (row.last_seen is None or v.ts > row.last_seen):
            row.last_seen = v.ts
    return sorted(rows.values(), key=lambda r: (-r.searches, r.query.casefold()))


def top_queries(db, limit: int = 50, **kwargs) -> list[dict[str, Any]]:
    """The most searched queries with click-through and conversion."""
    rows = query_rows(db, **kwargs)
    last = log_end(rows)
    return [with_trend(r.to_dict(), r, last) for r in rows[:limit]]


def zero_result_queries(db, limit: int = 50, rows: Optional[list[QueryRow]] = None,
                        **kwargs) -> list[dict[str, Any]]:
    """Searched queries no item's text matches (see the module docstring), most searched first.

    ``rows`` are :func:`query_rows` when the caller has them already (else they are read).
    """
    lexical = LexicalSearcher(db, known_word=getattr(workspace_encoder(db), "knows_word", None))  # as the ranker
    out = []
    rows = rows if rows is not None else query_rows(db, **kwargs)
    last = log_end(rows)
    for r in rows:
        literal = lexical.analyse(r.query, prefix=False, correct=False)
        if any(lexical.stats.doc_freq(t, False) for t in literal.terms.terms):
            continue
        fixed = lexical.analyse(r.query, prefix=False, correct=True)
        out.append({**with_trend(r.to_dict(), r, last), "corrected": fixed.corrected_text})
        if len(out) >= limit:
            break
    return out


def no_click_queries(db, min_searches: int = 2, limit: int = 50, rows: Optional[list[QueryRow]] = None,
                     **kwargs) -> list[dict[str, Any]]:
    """Queries searched at least ``min_searches`` times and never clicked, most searched first (``rows``: as above)."""
    rows = rows if rows is not None else query_rows(db, **kwargs)
    last = log_end(rows)
    return [with_trend(r.to_dict(), r, last) for r in rows if r.searches >= min_searches and not r.clicked][:limit]


@dataclass
class SynonymSuggestion:
    """A pair of words shoppers swapped, with the evidence."""

    source: str
    target: str
    kind: str  # "synonym" | "spelling"
    sessions: int
    bought: int
    examples: list[tuple[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "examples": [list(e) for e in self.examples],
                "rule": f"merch-app rules add synonym --terms '{self.source},{self.target}'"}


def _difference(a: str, b: str) -> Optional[tuple[str, str]]:
    wa, wb = tokenize(a), tokenize(b)
    only_a = [w for w in wa if w not in wb]
    only_b = [w for w in wb if w not in wa]
    if not only_a or not only_b or len(only_a) > 2 or len(only_b) > 2:
        return None
    return " ".join(only_a), " ".join(only_b)


def synonym_suggestions(db, window_minutes: float = 10.0, min_sessions: int = 2, limit: int = 50,
                        gap_minutes: float = 30.0, cancel=None) -> list[dict[str, Any]]:
    """Word pairs from "searched A, nothing clicked, searched B, clicked" (see the module docstring)."""
    pairs: dict[tuple[str, str], SynonymSuggestion] = {}
    previous: Optional[SearchVisit] = None
    for v in completed_searches(db, gap_minutes, cancel=cancel):  # "christm" → "christmas" is typing, not a rewrite
        p, previous = previous, v
        if p is None or p.session is None or p.session != v.session or p.clicked or not v.clicked \
                or p.key == v.key or not _within(p.ts, v.ts, window_minutes):
            continue
        diff = _difference(p.query, v.query)
        if diff is None:
            continue
        kind = "spelling" if OSA.distance(*diff) <= max(1, min(len(diff[0]), len(diff[1])) // 4) else "synonym"
        s = pairs.setdefault(diff, SynonymSuggestion(diff[0], diff[1], kind, 0, 0, []))
        s.sessions += 1
        s.bought += v.bought
        if len(s.examples) < 3 and (p.query, v.query) not in s.examples:
            s.examples.append((p.query, v.query))
    kept = [s for s in pairs.values() if s.sessions >= min_sessions]
    kept.sort(key=lambda s: (s.kind != "synonym", -s.sessions, -s.bought, s.source))
    return [s.to_dict() for s in kept[:limit]]


def _within(a: Optional[str], b: Optional[str], minutes: float) -> bool:
    ta, tb = seconds(a), seconds(b)
    return ta is not None and tb is not None and 0 <= tb - ta <= minutes * 60.0
