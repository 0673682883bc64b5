"""Per-user history features and item trend features of the hybrid model.

:class:`HistoryState` summarises each user's history at a reference time
(weighted counts, recency-weighted counts, last time, repeat-purchase
statistics) and turns (user, item) pairs into the history features the hybrid
model scores with; :func:`item_trend_features` does the same for item-level
recent popularity and the item's seasonal profile (sales in the same weeks a
year earlier, Christmas share); :func:`history_text_vectors` makes user text
vectors from a history.  They read the event arrays of
:class:`merch_app.model.interactions.Interactions`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from merch_app.model import text_matrix
from merch_app.model.interactions import Interactions

HISTORY_FEATURES = (
    "log_count", "log_recent_count", "recent_repeat", "has_history", "share_of_user",
    # added in model format 3 (repeat-consumption signals; all 0 for items outside the user's history):
    "log_days",            # log(1 + distinct days the user bought the item)
    "repeat_propensity",   # share of the item's buyers who bought it on >= 2 distinct days (smoothed)
    "log_days_since",      # log(1 + days since the user last bought the item)
    "overdue",             # log(1 + min(days since last / user's own re-buy interval, 20)); 0 if bought on 1 day
    "has_interval",        # 1 if the user bought the item on >= 2 distinct days
    "hist_log_sales",      # log(1 + the item's sales before the reference time), own items only
    "hist_log_sales_30d",  # log(1 + its sales in the last 30 days), own items only
    "hist_log_sales_90d",  # log(1 + its sales in the last 90 days), own items only
    # added in model format 5 (seasonality; 0 when the model has no season window, e.g. older files):
    "log_last_year",       # log(1 + the user's purchases of the item in the season window a year earlier)
    "log_xmas",            # log(1 + the user's purchases of the item in a Christmas season, Nov 1 - Dec 24)
    "log_xmas_near",       # log_xmas x closeness of the next Christmas (christmas_closeness)
)
OVERDUE_CAP = 20.0  # elapsed / interval ratios above this count as this (long-lapsed repeat items)
TREND_FEATURES = (
    "log_sales_30d", "log_sales_90d", "novelty",
    # format 5 (seasonality; 0 without a season window):
    "log_sales_last_year",  # log(1 + the item's sales in the season window a year earlier)
    "season_lift",          # log of those sales over the item's mean sales per window length in the last year
    "xmas_share",           # share of the item's sales that fell in a Christmas season (Nov 1 - Dec 24)
    "xmas_share_near",      # xmas_share x closeness of the next Christmas (1 on Dec 25, 0 a year before)
    # format 6 (cold start; its weight is learned only with the config's cold_feature, else 0):
    "unsold",               # 1 when the item has no sales before the reference time (a new item)
)
# The season window of a reference time t: [t - lag - SEASON_LEAD_DAYS, t - lag + length), i.e. the
# weeks a year earlier that match the period being predicted (lag and length come from the config).
SEASON_LEAD_DAYS = 7.0
SEASON_FEATURE_COLUMNS = {  # config ``seasonal_features`` name -> (history columns, trend columns)
    "user_last_year": (("log_last_year",), ()),
    "item_last_year": ((), ("log_sales_last_year",)),
    "calendar": ((), ("season_lift",)),
    "christmas_item": ((), ("xmas_share", "xmas_share_near")),
    "christmas_user": (("log_xmas", "log_xmas_near"), ()),
}
XMAS_SMOOTHING = 5.0  # sales added to an item's total before its Christmas share is taken
N_HIST, N_TREND = len(HISTORY_FEATURES), len(TREND_FEATURES)
HAS_HISTORY = HISTORY_FEATURES.index("has_history")
UNSOLD = TREND_FEATURES.index("unsold")


def key_pairs_of(keys: np.ndarray, n_items: int, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in ``users``, item) of every key of ``users`` in sorted ``user * n_items + item`` keys.

    Binary search per user: no array as long as all the keys (testing every
    key of a 5M-pair history per block of users took ~100 MB per call).
    """
    users = np.asarray(users, np.int64)
    lo = np.searchsorted(keys, users * n_items)
    hi = np.searchsorted(keys, (users + 1) * n_items)
    counts = hi - lo
    rows = np.repeat(np.arange(len(users)), counts)
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    return rows, keys[starts + np.arange(len(rows))] % n_items


@dataclass
class HistoryState:
    """Each user's purchase history summarised at ``ref_day`` (sorted by user*n_items+item)."""

    ref_day: float
    n_users: int
    n_items: int
    keys: np.ndarray  # int64, user * n_items + item, sorted
    count: np.ndarray  # weighted count
    recent: np.ndarray  # recency-weighted count
    last_age: np.ndarray  # days between the last event and ref_day (from the user's last event if relative)
    # Format 3 additions (optional so that code building a state from the seven fields above
    # still works; missing ones are filled by __post_init__ from those fields):
    days: Optional[np.ndarray] = None  # distinct days with an event, per pair
    span: Optional[np.ndarray] = None  # days between the pair's first and last event
    abs_age: Optional[np.ndarray] = None  # days between the pair's last event and ref_day (absolute)
    item_repeat: Optional[np.ndarray] = None  # per item: smoothed share of its buyers with >= 2 days
    item_sales: Optional[np.ndarray] = None  # per item: log1p sales before ref_day, last 30 d, last 90 d
    # Format 5: weighted count per pair in the season window a year before ref_day and in Christmas
    # seasons (both 0 without a season window)
    last_year: Optional[np.ndarray] = None
    xmas: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        # Fallbacks (a state rebuilt from the seven format-2 fields, e.g. an old saved model): one
        # purchase day per pair, no own re-buy interval, no item statistics.  Callers that filter
        # pairs should use select()/without_user(), which keep every array.
        n = len(self.keys)
        if self.days is None or len(self.days) != n:
            self.days = np.minimum(np.asarray(self.count, np.float32), 1.0) if n else np.zeros(0, np.float32)
        if self.span is None or len(self.span) != n:
            self.span = np.zeros(n, np.float32)
        if self.abs_age is None or len(self.abs_age) != n:
            self.abs_age = np.asarray(self.last_age, np.float32).copy()
        if self.item_repeat is None or len(self.item_repeat) != self.n_items:
            self.item_repeat = np.zeros(self.n_items, np.float32)
        if self.item_sales is None or len(self.item_sales) != self.n_items:
            self.item_sales = np.zeros((self.n_items, 3), np.float32)
        if self.last_year is None or len(self.last_year) != n:
            self.last_year = np.zeros(n, np.float32)
        if self.xmas is None or len(self.xmas) != n:
            self.xmas = np.zeros(n, np.float32)

    @classmethod
    def build(cls, inter: Interactions, ref_day: float, half_life_days: float = 60.0,
              relative: bool = False, season: Optional[tuple[float, float]] = None) -> "HistoryState":
        """Summarise the events before ``ref_day``.

        ``season`` = (lag, length) in days: also count each pair's events in
        the season window a year earlier (:func:`season_window`) and in
        Christmas seasons; None: no season window (those features are 0).

        ``relative`` measures ages from each user's own last event instead of
        ``ref_day``: items of the user's latest basket count as recent even
        after a pause (a customer back after months still re-buys what they
        bought last time), which keeps the learned recency weights valid
        across seasons.
        """
        mask = (inter.ts < ref_day) & (inter.weight > 0)
        if mask.all():  # e.g. refreshing to now: the event arrays are read, never written, so no copies
            u, i, w, t = inter.user_idx, inter.item_idx, inter.weight, inter.ts
        else:
            u, i, w, t = inter.user_idx[mask], inter.item_idx[mask], inter.weight[mask], inter.ts[mask]
        del mask  # per-event temporaries are freed as soon as they are used (8M events: 64 MB each)
        n_i = inter.n_items
        key = u.astype(np.int64) * n_i + i  # int32 indices: the key needs 64 bits
        uniq, inv = np.unique(key, return_inverse=True)
        del key
        inv = inv.reshape(-1)
        # absolute timing (only events before ref_day: no leakage past an internal cut)
        first_abs = np.full(len(uniq), np.inf)
        np.minimum.at(first_abs, inv, t)
        last_abs = np.full(len(uniq), -np.inf)
        np.maximum.at(last_abs, inv, t)
        days = _distinct_days(inv, t, len(uniq))
        last_year = np.zeros(len(uniq), np.float32)
        xmas = np.zeros(len(uniq), np.float32)
        if season is not None and len(t):
            lo, hi = season_window(ref_day, season)
            last_year = np.bincount(inv, weights=w * ((t >= lo) & (t < hi)), minlength=len(uniq)).astype(np.float32)
            xmas = np.bincount(inv, weights=w * in_christmas_season(t), minlength=len(uniq)).astype(np.float32)
        pair_item = uniq % n_i if len(uniq) else np.zeros(0, np.int64)
        buyers = np.bincount(pair_item, minlength=n_i).astype(np.float64)
        repeaters = np.bincount(pair_item, weights=(days >= 2).astype(np.float64), minlength=n_i)
        item_repeat = ((repeaters + 0.5) / (buyers + 1.0)).astype(np.float32)
        del pair_item, buyers, repeaters
        age = ref_day - t
        item_sales = np.stack([np.log1p(np.bincount(i, weights=w * sel, minlength=n_i))
                               for sel in (1.0, age <= 30, age <= 90)], axis=1).astype(np.float32)
        del age, i
        if relative and len(t):
            last_u = np.full(inter.n_users, -np.inf)
            np.maximum.at(last_u, u, t)
            t = t + (ref_day - last_u[u])
        decay = np.exp2(-(ref_day - t) / half_life_days)
        count = np.bincount(inv, weights=w, minlength=len(uniq))
        decay *= w
        recent = np.bincount(inv, weights=decay, minlength=len(uniq))
        del decay, u, w
        last = np.full(len(uniq), -np.inf)
        np.maximum.at(last, inv, t)
        return cls(float(ref_day), inter.n_users, n_i, uniq.astype(np.int64),
                   count.astype(np.float32), recent.astype(np.float32),
                   (ref_day - last).astype(np.float32), days, (last_abs - first_abs).astype(np.float32),
                   (ref_day - last_abs).astype(np.float32), item_repeat, item_sales, last_year, xmas)

    @classmethod
    def empty(cls, n_users: int, n_items: int, ref_day: float = 0.0) -> "HistoryState":
        z = np.zeros(0, np.float32)
        return cls(float(ref_day), n_users, n_items, np.zeros(0, np.int64), z, z.copy(), z.copy())

    def resized(self, n_users: int, n_items: int) -> "HistoryState":
        """The same history over a larger user/item index (new ids have none)."""
        keys = (self.keys // self.n_items) * n_items + self.keys % self.n_items
        extra = n_items - self.n_items
        return HistoryState(self.ref_day, n_users, n_items, keys.astype(np.int64), self.count,
                            self.recent, self.last_age, self.days, self.span, self.abs_age,
                            np.concatenate([self.item_repeat, np.zeros(extra, np.float32)]),
                            np.vstack([self.item_sales, np.zeros((extra, 3), np.float32)]), self.last_year, self.xmas)

    def select(self, mask: np.ndarray) -> "HistoryState":
        """The pairs where ``mask`` (over :attr:`keys`) is true, every per-pair array kept aligned."""
        return HistoryState(self.ref_day, self.n_users, self.n_items, self.keys[mask], self.count[mask],
                            self.recent[mask], self.last_age[mask], self.days[mask], self.span[mask],
                            self.abs_age[mask], self.item_repeat, self.item_sales, self.last_year[mask],
                            self.xmas[mask])

    def without_user(self, u: int) -> "HistoryState":
        """The state with user ``u``'s pairs removed (privacy: forget a user)."""
        return self.select((self.keys // max(self.n_items, 1)) != u)

    _PAIR_ARRAYS = ("keys", "count", "recent", "last_age", "days", "span", "abs_age")
    _ITEM_ARRAYS = ("item_repeat", "item_sales")
    _SEASON_ARRAYS = ("last_year", "xmas")  # format 5, per pair

    def arrays(self, prefix: str = "hist_") -> dict[str, np.ndarray]:
        out = {prefix + name: getattr(self, name)
               for name in self._PAIR_ARRAYS + self._ITEM_ARRAYS + self._SEASON_ARRAYS}
        out[prefix + "meta"] = np.array([self.ref_day, self.n_users, self.n_items], np.float64)
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], prefix: str = "hist_") -> "HistoryState":
        """Inverse of :meth:`arrays`; KeyError when a format-2 array is missing.

        States saved before format 3 lack ``days`` ... ``item_sales``: those
        are filled in by ``__post_init__`` (such models give the newer
        features weight 0); states saved before format 5 lack ``last_year`` and ``xmas``.
        """
        ref, nu, ni = a[prefix + "meta"].tolist()
        base = [a[prefix + name] for name in cls._PAIR_ARRAYS[:4]]
        extra = [a.get(prefix + name) for name in cls._PAIR_ARRAYS[4:] + cls._ITEM_ARRAYS + cls._SEASON_ARRAYS]
        return cls(ref, int(nu), int(ni), *base, *extra)

    def user_items(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item idx, count, recent count) of user ``u``."""
        lo = np.searchsorted(self.keys, u * self.n_items)
        hi = np.searchsorted(self.keys, (u + 1) * self.n_items)
        return self.keys[lo:hi] % self.n_items, self.count[lo:hi], self.recent[lo:hi]

    def lookup(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Row into the state arrays per (user, item) pair, -1 when absent."""
        q = np.asarray(users, np.int64) * self.n_items + np.asarray(items, np.int64)
        if len(self.keys) == 0:
            return np.full(len(q), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return np.where(self.keys[pos] == q, pos, -1)

    def pairs_of(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``users``, item) of every history pair of ``users``, found by binary search.

        Scanning all keys for a block of users built several arrays as long as
        the whole history for every block (5M pairs: ~100 MB per call; the
        evaluation at 1M items took 302 s with it, 267 s without).
        """
        return key_pairs_of(self.keys, self.n_items, users)

    def features(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """History features (:data:`HISTORY_FEATURES`) per pair, shape (n, len(HISTORY_FEATURES)) float32.

        Every feature is 0 for pairs outside the user's history (and for users
        < 0), so the history part of a score only moves the user's own items.
        """
        users, items = np.broadcast_arrays(np.asarray(users, np.int64), np.asarray(items, np.int64))
        out = np.zeros((users.size, len(HISTORY_FEATURES)), np.float32)
        users = users.ravel()
        inside = users >= 0
        row = np.full(users.size, -1)
        if inside.any():
            row[inside] = self.lookup(users[inside], items.ravel()[inside])
        hit = row >= 0
        r = row[hit]
        it = items.ravel()[hit]
        out[hit, 0] = np.log1p(self.count[r])
        out[hit, 1] = np.log1p(self.recent[r])
        out[hit, 2] = np.exp(-self.last_age[r] / 30.0)
        out[hit, 3] = 1.0
        out[hit, 4] = self.count[r] / self.user_totals()[users[hit]]
        days = self.days[r]
        out[hit, 5] = np.log1p(days)
        out[hit, 6] = self.item_repeat[it]
        out[hit, 7] = np.log1p(np.maximum(self.abs_age[r], 0.0))
        repeat = days >= 2
        interval = self.span[r] / np.maximum(days - 1.0, 1.0)
        ratio = np.maximum(self.abs_age[r], 0.0) / np.maximum(interval, 1.0)
        out[hit, 8] = np.where(repeat, np.log1p(np.minimum(ratio, OVERDUE_CAP)), 0.0)
        out[hit, 9] = repeat
        out[hit, 10:13] = self.item_sales[it]
        out[hit, 13] = np.log1p(self.last_year[r])
        out[hit, 14] = np.log1p(self.xmas[r])
        out[hit, 15] = out[hit, 14] * christmas_closeness(self.ref_day)
        return out

    def user_totals(self) -> np.ndarray:
        """Weighted event count per user (cached; the denominator of ``share_of_user``)."""
        tot = getattr(self, "_totals", None)
        if tot is None or len(tot) != self.n_users:
            tot = np.bincount(self.keys // max(self.n_items, 1), weights=self.count, minlength=self.n_users)
            tot = np.maximum(tot, 1e-9).astype(np.float32)
            self._totals = tot
        return tot

    def user_features(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """(item idx, features) for every item in user ``u``'s history."""
        items, _, _ = self.user_items(u)
        return items, self.features(np.full(len(items), u), items)


def _distinct_days(pair: np.ndarray, t: np.ndarray, n_pairs: int) -> np.ndarray:
    """Number of distinct calendar days (of ``t``) per pair, for events labelled with their pair index.

    One int64 per event, sorted in place (``np.unique`` over 10M events held
    ~0.5 GB of copies and hash tables next to the event arrays).
    """
    if len(t) == 0:
        return np.zeros(n_pairs, np.float32)
    first = np.floor(t.min())
    span = int(np.floor(t.max()) - first) + 1
    code = pair.astype(np.int64)
    code *= span
    code += (np.floor(t) - first).astype(np.int64)
    code.sort()
    new = np.empty(len(code), bool)
    new[0] = True
    np.not_equal(code[1:], code[:-1], out=new[1:])
    return np.bincount(code[new] // span, minlength=n_pairs).astype(np.float32)


def season_window(ref_day: float, season: tuple[float, float]) -> tuple[float, float]:
    """[start, end) in days of the season window of ``ref_day`` for ``season`` = (lag, length).

    The weeks a year earlier that match the period being predicted, starting
    :data:`SEASON_LEAD_DAYS` before the matching day.
    """
    lag, length = season
    return ref_day - lag - SEASON_LEAD_DAYS, ref_day - lag + length


def item_trend_features(inter: Interactions, ref_day: float,
                        season: Optional[tuple[float, float]] = None) -> np.ndarray:
    """Item-level recent popularity at ``ref_day`` (:data:`TREND_FEATURES`), (n_items, 8).

    Counts events of all known users with positive weight before ``ref_day``;
    the features let the model prefer what currently sells over items that
    stopped selling (discontinued stock is common in shop data).  With
    ``season`` = (lag, length) in days: the item's sales in the season window a
    year earlier (:func:`season_window`) and its season lift, log((those + 1) /
    (its sales in the ``lag`` days before ``ref_day`` × window / lag + 1)), > 0
    for items that sell more in the coming weeks of the year than on average
    (a calendar profile per item).  The lift is 0 unless the events reach
    back to the window's start (no year to compare with).  The Christmas
    columns (also with ``season``): the item's share of its sales that fell in
    a Christmas season, alone and times how close the next Christmas is
    (:func:`christmas_closeness`), so that cuts at different times of the year
    learn how that share's effect grows towards Christmas.  ``unsold`` is 1 for
    the items without such events (new items; the internal cuts have them too).
    """
    mask = (inter.ts < ref_day) & (inter.weight > 0)
    i, w, t = inter.item_idx[mask], inter.weight[mask], inter.ts[mask]
    age = ref_day - t
    out = np.zeros((inter.n_items, len(TREND_FEATURES)), np.float32)
    out[:, 0] = np.log1p(np.bincount(i, weights=w * (age <= 30), minlength=inter.n_items))
    out[:, 1] = np.log1p(np.bincount(i, weights=w * (age <= 90), minlength=inter.n_items))
    first = np.full(inter.n_items, np.inf)
    np.minimum.at(first, i, t)
    sold = np.isfinite(first)
    out[sold, 2] = np.exp(-(ref_day - first[sold]) / 60.0)
    out[~sold, UNSOLD] = 1.0
    if season is not None and len(t):
        lo, hi = season_window(ref_day, season)
        in_window = np.log1p(np.bincount(i, weights=w * ((t >= lo) & (t < hi)), minlength=inter.n_items))
        out[:, 3] = in_window
        if float(t.min()) <= lo:
            year = np.bincount(i, weights=w * (age <= season[0]), minlength=inter.n_items)
            out[:, 4] = in_window - np.log1p(year * (hi - lo) / season[0])
        xmas = in_christmas_season(t)
        total = np.bincount(i, weights=w, minlength=inter.n_items)
        out[:, 5] = np.bincount(i, weights=w * xmas, minlength=inter.n_items) / (total + XMAS_SMOOTHING)
        out[:, 6] = out[:, 5] * christmas_closeness(ref_day)
    return out


def in_christmas_season(t: np.ndarray) -> np.ndarray:
    """Per time (days since 1970): True from Nov 1 to Dec 24 of any year."""
    day = np.floor(t).astype(np.int64).astype("datetime64[D]")
    month_start = day.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    return (month == 11) | ((month == 12) & ((day - month_start).astype(np.int64) < 24))


def christmas_closeness(ref_day: float) -> float:
    """1 - (days from ``ref_day`` to the next Dec 25) / 365: 0 just after Christmas, 1 on it."""
    day = np.datetime64(int(np.floor(ref_day)), "D")
    year = day.astype("datetime64[Y]").astype(np.int64) + 1970
    xmas = np.datetime64(f"{year}-12-25", "D")
    if xmas < day:
        xmas = np.datetime64(f"{year + 1}-12-25", "D")
    return float(1.0 - (xmas - day).astype(np.int64) / 365.0)


TEXT_CHUNK_ROWS = 20_000  # history rows whose item vectors are gathered at once (memory bound)


def history_text_vectors(state: HistoryState, item_text: np.ndarray, compact: bool = False) -> np.ndarray:
    """User text vectors: recency-weighted mean of history item vectors, unit norm.

    Users without history get a zero vector.  ``compact`` returns the matrix
    in its storage dtype (float16 from ``text_matrix.COMPACT_MIN_ROWS`` users);
    each user's sum is completed and normalised in float32 first, so only
    the final vectors are rounded.
    """
    dtype = text_matrix.storage_dtype(state.n_users) if compact else np.dtype(np.float32)
    out = np.zeros((state.n_users, item_text.shape[1]), dtype)
    if len(state.keys) == 0:
        return out
    users = state.keys // state.n_items
    items = state.keys % state.n_items
    w = state.recent + 1e-3 * state.count  # old-only histories still count a little
    order = np.argsort(users, kind="stable")
    users, items, w = users[order], items[order], w[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(users)) + 1])
    lo = 0
    while lo < len(users):
        k = int(np.searchsorted(starts, lo + TEXT_CHUNK_ROWS))  # chunks end where a user starts
        hi = int(starts[k]) if k < len(starts) else len(users)
        seg = starts[np.searchsorted(starts, lo):k] - lo
        contrib = text_matrix.rows(item_text, items[lo:hi]) * w[lo:hi, None]
        sums = np.add.reduceat(contrib, seg, axis=0)
        norms = np.sqrt(np.einsum("ij,ij->i", sums, sums))
        sums /= np.where(norms > 0, norms, 1.0)[:, None]
        out[users[lo + seg]] = sums
        lo = hi
    return out


def users_history_text(inter: Interactions, users: np.ndarray, ref_day: float, half_life_days: float,
                       item_text: np.ndarray) -> np.ndarray:
    """:func:`history_text_vectors` of the users ``users`` (indices into ``inter.user_ids``) only.

    Returns ``(len(users), dim)`` float32 rows in the order of ``users``;
    nothing of size ``n_users x dim`` is built.
    """
    users = np.asarray(users, np.int64)
    remap = np.full(inter.n_users, -1, np.int64)
    remap[users] = np.arange(len(users))
    mine = remap[inter.user_idx] >= 0
    sub = Interactions(inter.user_ids[users], inter.item_ids, remap[inter.user_idx[mine]], inter.item_idx[mine],
                       inter.weight[mine], inter.ts[mine], inter.event_type[mine], inter.value[mine])
    return history_text_vectors(HistoryState.build(sub, ref_day, half_life_days), item_text)
