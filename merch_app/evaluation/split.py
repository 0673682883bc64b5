"""Time split of the behaviour data for offline evaluation.

Train on events before the cut-off, test on purchases from the cut-off on, for
users seen in training; a user's relevant items are the distinct items bought
in the test period.  The default cut-off is the time at 80 % of the event
time range; an explicit date overrides it.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Optional

from merch_app.errors import MerchAppError

DEFAULT_FRACTION = 0.8
TEST_EVENT_TYPES = ("purchase",)
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

    def to_dict(self) -> dict:
        return {"split_ts": self.split_ts, "first_ts": self.first_ts, "last_ts": self.last_ts,
                "fraction": self.fraction}


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
    row = db.execute(
        "SELECT min(ts), max(ts) FROM events WHERE user_id IS NOT NULL AND event_type != 'search'"
    ).fetchone()
    return row[0], row[1]


def time_split(db, split_date: Optional[str] = None, fraction: float = DEFAULT_FRACTION) -> TimeSplit:
    """The cut-off: ``split_date`` if given, else the time at ``fraction`` of the event range.

    Raises
    ------
    SplitError
        No events, or the cut-off leaves no training or no test events.
    """
    first, last = event_time_range(db)
    if first is None:
        raise SplitError("the workspace has no behaviour events of known users: import transactions first")
    if split_date:
        split_ts = normalise_date(split_date)
        if not (first < split_ts <= last):
            raise SplitError(f"split date {split_ts[:10]} is outside the event range "
                             f"{first[:10]} .. {last[:10]}: no training or no test events")
        return TimeSplit(split_ts, first, last, None)
    if not 0.0 < fraction < 1.0:
        raise SplitError("split fraction must be between 0 and 1")
    a, b = _parse(first), _parse(last)
    cut = a + timedelta(seconds=round((b - a).total_seconds() * fraction))
    return TimeSplit(_fmt(cut), first, last, fraction)


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
