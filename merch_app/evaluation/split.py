"""Time split of the behaviour data for offline evaluation.

Train on events before the cut-off, test on purchases from the cut-off on, for
users seen in training; a user's relevant items are the distinct items bought
in the test period.  The default cut-off is the time at 80 % of the event
time range (``method="range"``) or the 80th percentile of the event times
(``"quantile"``: 80 % of the events train, so most test users are known; the
default for rating data, see :func:`split_method`); an explicit date overrides it.  Neither side is ever empty: a cut-off that
leaves one side (almost) nothing is a :class:`SplitError` that says why (typically a few
events dated far from the rest, e.g. a placeholder 1970-01-01 imported by an older version).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Optional

from merch_app.errors import MerchAppError

DEFAULT_FRACTION = 0.8
MIN_SIDE_SHARE = 0.01  # the default cut-off must leave at least this share of the events on each side,
MIN_SIDE_EVENTS = 2  # and at least this many
# behaviour events of known users: min and max time, count; those before / from a time, counted up to a
# limit (the ts index: stops early)
_STATS_SQL = ("SELECT min(ts), max(ts), count(*) FROM events WHERE user_id IS NOT NULL "
              "AND event_type NOT IN ('search', 'impression')")
_SIDE_SQL = {
    "<": "SELECT count(*) FROM (SELECT 1 FROM events WHERE ts < ? AND user_id IS NOT NULL "
         "AND event_type NOT IN ('search', 'impression') LIMIT ?)",
    ">=": "SELECT count(*) FROM (SELECT 1 FROM events WHERE ts >= ? AND user_id IS NOT NULL "
          "AND event_type NOT IN ('search', 'impression') LIMIT ?)",
}
TEST_EVENT_TYPES = ("purchase",)
SPLIT_METHODS = ("auto", "range", "quantile")
_NTH_SQL = ("SELECT ts FROM events WHERE user_id IS NOT NULL AND event_type NOT IN ('search', 'impression') "
            "ORDER BY ts LIMIT 1 OFFSET ?")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SplitError(MerchAppError, ValueError):
    """The split cannot be made (message is user-facing)."""


@dataclass
class TimeSplit:
    """Where train ends and test begins (ISO-8601 UTC strings)."""

    split_ts: str
    first_ts: Optional[str]
    last_ts: Optional[str]
    fraction: Optional[float]  # None when an explicit date was given
    method: str = "range"  # range | quantile | date (an explicit date)

    def to_dict(self) -> dict:
        return {"split_ts": self.split_ts, "first_ts": self.first_ts, "last_ts": self.last_ts,
                "fraction": self.fraction, "method": self.method}

    def describe(self) -> str:
        """How the cut-off was chosen, for the CLI and the screens."""
        return describe_split(self.method, self.fraction)


def describe_split(method: Optional[str], fraction: Optional[float]) -> str:
    """'80th percentile of the event times', '80 % of the event time range' or 'the date given'."""
    if method == "quantile":
        return f"{round(100 * (fraction or DEFAULT_FRACTION))}th percentile of the event times"
    if method == "date" or fraction is None:
        return "the date given"
    return f"{fraction:.0%} of the event time range"


def split_method(db, method: str = "auto") -> str:
    """``range`` or ``quantile``: ``auto`` is quantile when the workspace has rating events, else range.

    With ratings the time-range cut can leave every test user new (a few early years with few
    ratings stretch the range), so rating data is cut at the 80th percentile of the event times.
    """
    if method not in SPLIT_METHODS:
        raise SplitError(f"split method {method!r} is not one of {', '.join(SPLIT_METHODS)}")
    if method != "auto":
        return method
    row = db.execute("SELECT 1 FROM events WHERE event_type = 'rating' LIMIT 1").fetchone()
    return "quantile" if row else "range"


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def _fmt(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise_date(value: str) -> str:
    """'YYYY-MM-DD', 'YYYY-MM-DD HH:MM[:SS]' or ISO with 'T'/'Z' -> 'YYYY-MM-DDTHH:MM:SSZ'.

    Raises
    ------
    SplitError
        The text is not a date.
    """
    text = str(value).strip().replace(" ", "T").rstrip("Z")
    if _DATE.match(text):
        text += "T00:00:00"
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"):
        try:
            return _fmt(datetime.strptime(text, fmt).replace(tzinfo=timezone.utc))
        except ValueError:
            continue
    raise SplitError(f"split date {value!r} is not a date (use YYYY-MM-DD)")


def event_time_range(db) -> tuple[Optional[str], Optional[str]]:
    """First and last timestamp of behaviour events of known users."""
    return _event_stats(db)[:2]


def _event_stats(db) -> tuple[Optional[str], Optional[str], int]:
    row = db.execute(_STATS_SQL).fetchone()
    return row[0], row[1], int(row[2] or 0)


def _count_upto(db, side: str, ts: str, limit: int) -> int:
    """Behaviour events before (``<``) or from (``>=``) ``ts``, counted up to ``limit``."""
    return int(db.execute(_SIDE_SQL[side], [ts, limit]).fetchone()[0])


def _check_sides(db, split: TimeSplit, n: int) -> None:
    """SplitError when the default cut-off leaves fewer than :data:`MIN_SIDE_SHARE` of the events
    (or :data:`MIN_SIDE_EVENTS`) on a side."""
    need = max(MIN_SIDE_EVENTS, math.ceil(MIN_SIDE_SHARE * n))
    cut, first, last = split.split_ts, split.first_ts, split.last_ts
    if first == last:
        raise SplitError(f"every behaviour event has the same time ({first}): a time split needs events "
                         "at more than one moment")
    where = (f"the default cut-off {cut[:10]} ({split.describe()}, "
             f"{first[:10]} .. {last[:10]})")
    before = _count_upto(db, "<", cut, need)
    if before < need:
        raise SplitError(f"{where} leaves {before:,} of {n:,} events to train on: a few events are dated far "
                         f"earlier than the rest (the first is {first[:10]}, a placeholder date?): choose the "
                         "cut-off with --split-date YYYY-MM-DD")
    after = _count_upto(db, ">=", cut, need)
    if after < need:
        raise SplitError(f"{where} leaves {after:,} of {n:,} events to test on: a few events are dated far "
                         f"later than the rest (the last is {last[:10]}): choose the cut-off "
                         "with --split-date YYYY-MM-DD")


def time_split(db, split_date: Optional[str] = None, fraction: float = DEFAULT_FRACTION,
               method: str = "range") -> TimeSplit:
    """The cut-off: ``split_date`` if given, else the time at ``fraction`` of the event range
    (``method="range"``) or the ``fraction`` quantile of the event times (``"quantile"``; ``"auto"``:
    see :func:`split_method`).

    Raises
    ------
    SplitError
        No events, or the cut-off leaves no training or no test events (the default one: fewer
        than :data:`MIN_SIDE_SHARE` of them).
    """
    first, last, n = _event_stats(db)
    if first is None:
        raise SplitError("the workspace has no behaviour events of known users: import transactions first")
    if split_date:
        split_ts = normalise_date(split_date)
        if not (first < split_ts <= last):
            raise SplitError(f"split date {split_ts[:10]} is outside the event range "
                             f"{first[:10]} .. {last[:10]}: no training or no test events")
        return TimeSplit(split_ts, first, last, None, "date")
    if not 0.0 < fraction < 1.0:
        raise SplitError("split fraction must be between 0 and 1")
    method = split_method(db, method)
    if method == "quantile":
        # the first event time at or after the fraction-th event: events from it on are the test
        cut_ts = db.execute(_NTH_SQL, [min(int(n * fraction), n - 1)]).fetchone()[0]
        split = TimeSplit(_fmt(_parse(cut_ts)), first, last, fraction, "quantile")
        _check_sides(db, split, n)
        return split
    a, b = _parse(first), _parse(last)
    cut = a + timedelta(seconds=round((b - a).total_seconds() * fraction))
    split = TimeSplit(_fmt(cut), first, last, fraction, "range")
    _check_sides(db, split, n)
    return split


def relevant_items(db, split_ts: str, train_users: Iterable[str], item_ids: Iterable[str] | None = None,
                   event_types: tuple[str, ...] = TEST_EVENT_TYPES, until_ts: Optional[str] = None
                   ) -> dict[str, set[str]]:
    """user -> distinct items bought from ``split_ts`` on, for users seen in training.

    When the workspace has no events of ``event_types`` at all after the cut
    (e.g. click-only data), carts and clicks count instead.
    """
    users = {str(u) for u in train_users}
    catalogue = None if item_ids is None else {str(i) for i in item_ids}

    def load(types: tuple[str, ...]) -> dict[str, set[str]]:
        marks = ",".join("?" * len(types))
        sql = (f"SELECT user_id, item_id FROM events WHERE user_id IS NOT NULL AND item_id IS NOT NULL "
               f"AND ts >= ? AND event_type IN ({marks})")
        args: list = [split_ts, *types]
        if until_ts:
            sql += " AND ts < ?"
            args.append(until_ts)
        rel: dict[str, set[str]] = defaultdict(set)
        for u, i in db.execute(sql, args):
            if u in users and (catalogue is None or i in catalogue):
                rel[u].add(i)
        return dict(rel)

    rel = load(event_types)
    if not rel and event_types == TEST_EVENT_TYPES:
        rel = load(("purchase", "cart", "click"))
    return rel
