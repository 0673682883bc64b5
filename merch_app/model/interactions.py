"""Behaviour data as index arrays.

:class:`Interactions` holds one row per event (user index, item index, type
weight, time in days).  :func:`load_interactions` builds it from the
``events`` table.  The history and trend features computed from it live in
:mod:`merch_app.model.history_features`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "purchase": 1.0,
    "cart": 0.6,
    "click": 0.3,
    "view": 0.1,
    "rating": 1.0,
    "return": 0.0,  # 0 = dropped; a negative weight subtracts from the pair
    "impression": 0.0,  # shown in a result list, not chosen: never behaviour (click models read it)
}
EPOCH = np.datetime64("1970-01-01T00:00:00", "s")
_LOAD_BLOCK = 50_000  # events per block by load_interactions (a block's C-level work holds the GIL: GUI stalls)


def ts_to_days(ts: Sequence[str]) -> np.ndarray:
    """ISO-8601 UTC strings ('YYYY-MM-DDTHH:MM:SSZ') -> float days since 1970."""
    arr = np.array([s[:19] for s in ts], dtype="datetime64[s]")
    return (arr - EPOCH).astype(np.float64) / 86400.0


def days_to_ts(day: float) -> str:
    """Float days since 1970 -> 'YYYY-MM-DDTHH:MM:SSZ'."""
    return str(EPOCH + np.timedelta64(int(round(day * 86400.0)), "s")) + "Z"


class EventTypes:
    """Per-event type names stored as small integer codes (1 byte per event instead of an 8-byte pointer).

    Behaves like the object array it replaces where the model uses it:
    ``types == "rating"`` is a boolean mask, ``types[mask]`` a subset,
    ``np.asarray(types)`` the names.
    """

    def __init__(self, codes: np.ndarray, names: Sequence[str]) -> None:
        self.names = tuple(str(n) for n in names)
        self.codes = np.asarray(codes, np.uint8 if len(self.names) <= 256 else np.uint16)

    @classmethod
    def of(cls, types) -> "EventTypes":
        """From a sequence of type names (or an :class:`EventTypes`, returned as is)."""
        if isinstance(types, EventTypes):
            return types
        arr = np.asarray(types, dtype=object).reshape(-1)
        if len(arr) == 0:
            return cls(np.zeros(0, np.uint8), ())
        names, codes = np.unique(arr.astype(str), return_inverse=True)
        return cls(codes.reshape(-1), names.tolist())

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index) -> "EventTypes":
        return EventTypes(np.atleast_1d(self.codes[index]), self.names)

    def __eq__(self, name) -> np.ndarray:  # type: ignore[override]
        code = self.names.index(name) if isinstance(name, str) and name in self.names else -1
        return self.codes == code if code >= 0 else np.zeros(len(self.codes), bool)

    def __ne__(self, name) -> np.ndarray:  # type: ignore[override]
        return ~(self == name)

    __hash__ = None  # type: ignore[assignment]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.asarray(self.names, dtype=object)[self.codes] if self.names else np.zeros(0, object)
        return out if dtype is None else out.astype(dtype)

    def tolist(self) -> list[str]:
        return np.asarray(self).tolist()


@dataclass
class Interactions:
    """Events as parallel arrays over a fixed user and item index.

    Attributes
    ----------
    user_ids, item_ids
        Index -> id (object arrays); ``item_ids`` is the whole catalogue.
    user_idx, item_idx
        Per event (int32).
    weight
        Event-type weight per event (float32).
    ts
        Event time in days since 1970 (float64).
    event_type
        Per event (:class:`EventTypes`; built from any sequence of names).
    value
        Event value (ratings); NaN when absent (float32).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_idx: np.ndarray
    item_idx: np.ndarray
    weight: np.ndarray
    ts: np.ndarray
    event_type: EventTypes
    value: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        # int32: half the memory of int64 (40 MB per 10M events each); keys built from them
        # (user * n_items + item) must widen to int64 first, as pairs() does
        self.user_idx = np.asarray(self.user_idx, dtype=np.int32)
        self.item_idx = np.asarray(self.item_idx, dtype=np.int32)
        self.weight = np.asarray(self.weight, dtype=np.float32)
        self.ts = np.asarray(self.ts, dtype=np.float64)
        self.event_type = EventTypes.of(self.event_type)
        if self.value is None:
            self.value = np.full(len(self.user_idx), np.nan, dtype=np.float32)
        self.value = np.asarray(self.value, dtype=np.float32)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user_idx)

    def subset(self, mask: np.ndarray) -> "Interactions":
        """The events where ``mask`` is true (same user/item index)."""
        return Interactions(
            self.user_ids, self.item_ids, self.user_idx[mask], self.item_idx[mask],
            self.weight[mask], self.ts[mask], self.event_type[mask], self.value[mask],
        )

    def before(self, day: float) -> "Interactions":
        return self.subset(self.ts < day)

    def since(self, day: float) -> "Interactions":
        return self.subset(self.ts >= day)

    def pairs(self, positive_only: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct (user, item) pairs with summed weight (types like 'rating' included)."""
        if len(self) == 0:
            e = np.zeros(0, np.int64)
            return e, e, np.zeros(0, np.float32)
        key = self.user_idx.astype(np.int64) * self.n_items + self.item_idx
        uniq, inv = np.unique(key, return_inverse=True)
        w = np.bincount(inv, weights=self.weight, minlength=len(uniq)).astype(np.float32)
        u, i = uniq // self.n_items, uniq % self.n_items
        if positive_only:
            keep = w > 0
            u, i, w = u[keep], i[keep], w[keep]
        return u, i, w


def _positions(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Index of each value in ``ids`` (-1 if absent), via the distinct values only."""
    if len(values) == 0:
        return np.zeros(0, np.int64)
    uniq, inv = np.unique(np.asarray(values).astype(str), return_inverse=True)
    pos = {str(x): n for n, x in enumerate(ids)}
    return np.array([pos.get(u, -1) for u in uniq.tolist()], dtype=np.int64)[inv.reshape(-1)]


def from_arrays(
    users: Sequence, items: Sequence, ts: Sequence, *, item_ids: Sequence | None = None,
    event_types: Sequence[str] | None = None, values: Sequence | None = None,
    event_weights: dict[str, float] | None = None, user_ids: Sequence | None = None,
) -> Interactions:
    """Build :class:`Interactions` from parallel id lists (tests, benchmarks).

    ``ts`` may be ISO strings or float days.  Events whose item is not in
    ``item_ids`` (when given) are dropped; users get an index in order of first
    appearance unless ``user_ids`` fixes it (events of other users dropped).
    """
    weights = {**DEFAULT_EVENT_WEIGHTS, **(event_weights or {})}
    users = np.asarray(users, dtype=object)
    items = np.asarray(items, dtype=object)
    types = np.asarray(event_types if event_types is not None else ["purchase"] * len(users), dtype=object)
    t = np.asarray(ts)
    t = ts_to_days(t) if t.dtype.kind in "OU" else t.astype(np.float64)
    if item_ids is None:
        item_ids = np.asarray(list(dict.fromkeys(items.tolist())), dtype=object)
    item_ids = np.asarray(item_ids, dtype=object)
    if user_ids is None:
        user_ids = np.asarray(list(dict.fromkeys(users.tolist())), dtype=object)
    user_ids = np.asarray(user_ids, dtype=object)
    ii = _positions(items, item_ids)
    uu = _positions(users, user_ids)
    type_names, type_inv = np.unique(types.astype(str), return_inverse=True) if len(types) else ([], np.zeros(0, int))
    w = np.array([weights.get(str(x), 0.0) for x in type_names], dtype=np.float32)[type_inv] \
        if len(types) else np.zeros(0, np.float32)
    vals = np.asarray(values if values is not None else np.full(len(users), np.nan), dtype=np.float32)
    keep = (ii >= 0) & (uu >= 0) & ((w != 0) | (types == "rating"))
    return Interactions(user_ids, item_ids, uu[keep], ii[keep], w[keep], t[keep], types[keep], vals[keep])


def load_interactions(
    db, item_ids: Sequence, *, until_ts: Optional[str] = None, since_ts: Optional[str] = None,
    event_weights: dict[str, float] | None = None, user_ids: Sequence | None = None,
) -> Interactions:
    """Events of known users from the workspace as :class:`Interactions`.

    Parameters
    ----------
    db
        Open workspace.
    item_ids
        The catalogue order (usually the ids from ``item_text_vectors``);
        events on items outside it are dropped.
    until_ts, since_ts
        Keep events with ``since_ts <= ts < until_ts`` (ISO strings).
    event_weights
        Overrides of :data:`DEFAULT_EVENT_WEIGHTS`; types with weight 0 (and
        'search') are dropped, except ratings.  Impressions (weight 0 unless
        overridden) are not even read: a user who was only shown items is no user.
    user_ids
        Fix the user index (e.g. a trained model's users).
    """
    sql = "SELECT user_id, item_id, event_type, value, ts FROM events WHERE user_id IS NOT NULL " \
          "AND item_id IS NOT NULL AND event_type != 'search'"
    args: list = []
    weights = {**DEFAULT_EVENT_WEIGHTS, **(event_weights or {})}
    if not weights.get("impression"):  # result lists are 10-50x the clicks: not read to be dropped
        sql += " AND event_type != 'impression'"
    if until_ts:
        sql += " AND ts < ?"
        args.append(until_ts)
    if since_ts:
        sql += " AND ts >= ?"
        args.append(since_ts)
    # Read in blocks and keep only index arrays: fetchall() of 6M events held ~5 GB of row
    # tuples at 10M events; this way the peak is one block plus the final arrays.
    item_ids = np.asarray(item_ids, dtype=object)
    item_pos = {str(x): n for n, x in enumerate(item_ids)}
    fixed = None if user_ids is None else {str(x): n for n, x in enumerate(user_ids)}
    seen: dict[str, int] = {}  # users in order of first appearance (when not fixed)
    names: dict[str, int] = {}  # event type -> code
    parts = []
    cur = db.execute(sql + " ORDER BY ts, id", args)
    while True:
        rows = cur.fetchmany(_LOAD_BLOCK)
        if not rows:
            break
        users, items, types, values, ts = zip(*rows)
        n = len(rows)
        ii = np.fromiter((item_pos.get(str(x), -1) for x in items), np.int32, n)
        uu = np.fromiter((seen.setdefault(str(x), len(seen)) for x in users) if fixed is None
                         else (fixed.get(str(x), -1) for x in users), np.int32, n)
        tt = np.fromiter((names.setdefault(str(t), len(names)) for t in types), np.uint16, n)
        rating = names.get("rating")
        w = np.fromiter((weights.get(str(t), 0.0) for t in types), np.float32, n)
        vals = np.fromiter((np.nan if v is None else float(v) for v in values), np.float32, n)
        keep = (ii >= 0) & (uu >= 0) & ((w != 0) | ((tt == rating) if rating is not None else False))
        days = ts_to_days([t for t, k in zip(ts, keep.tolist()) if k])
        parts.append((uu[keep], ii[keep], w[keep], days, tt[keep], vals[keep]))
    uids = np.asarray(list(seen) if fixed is None else user_ids, dtype=object)
    if not parts:
        empty = np.zeros(0, dtype=object)
        return from_arrays(empty, empty, np.zeros(0), item_ids=item_ids, event_types=empty, user_ids=uids)
    cols = [np.concatenate([p[j] for p in parts]) for j in range(6)]
    cols[4] = EventTypes(cols[4], list(names))
    return Interactions(uids, item_ids, *cols)

