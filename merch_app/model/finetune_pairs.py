"""Training pairs for fine-tuning the text encoder on the shop's own behaviour.

Three kinds of (anchor text, positive item) pairs come out of the workspace:

* ``query``: a search followed by a click, cart or purchase, credited as
  :func:`merch_app.data.search_log.search_visits` reads the log (the event
  carries the query, or the session searched for it at most
  ``session_gap_minutes`` earlier with no other search in between).  Weight: the event type's
  (click 1, cart 2, purchase 3), summed over the credited events.  A query
  that no later event follows gives no pair.
* ``item``: two items in one basket, i.e. bought (or carted, clicked, viewed)
  in the same session / invoice, or by the same user on the same day when the
  events carry no session.  Weight: the number of baskets that hold both
  (each counted with the weaker of the two event types).
* ``history``: the text of a user's last items before a day (most recent first)
  and an item the user bought that day for the first time.

Every event read is before ``until_ts`` (the evaluation split: what comes
after it is for testing only), and with ``since_ts`` only positives from that
time on are kept (the held-out pairs: their anchors may use earlier history).
Item texts are the ones the item vectors use
(:func:`merch_app.model.item_vectors.item_texts`).

:func:`mine_hard_negatives` adds, for each pair, an item the frozen encoder
ranks high for the anchor (plain text cosine) that is not a positive of it.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np

from merch_app.data.search_log import search_visits
from merch_app.errors import MerchAppError
from merch_app.jobs import CancelToken, EtaClock, Progress, ProgressCallback, Throttle
from merch_app.model.item_vectors import item_texts

QUERY_EVENT_WEIGHTS = {"click": 1.0, "cart": 2.0, "purchase": 3.0}
BASKET_EVENT_WEIGHTS = {"purchase": 1.0, "cart": 0.7, "click": 0.4, "view": 0.3}
HISTORY_WEIGHT = 0.5
KINDS = ("query", "item", "history")
MAX_BASKET_ITEMS = 40  # a bigger basket is sampled down (an invoice of 500 lines says little per pair)


class PairsError(MerchAppError, ValueError):
    """No training pairs can be made (message is user-facing)."""


@dataclass(frozen=True)
class Pair:
    """One weighted training pair: the anchor text should land near the positive item's text.

    Attributes
    ----------
    kind
        ``query``, ``item`` or ``history``.
    anchor
        The anchor text (a query, an item text, a user's recent items).
    item_id
        The positive item.
    weight
        Strength of the evidence (see the module docstring).
    ts
        Time of the (latest) positive event.
    anchor_items
        Items the anchor is made of (the anchor item, the history items):
        never a negative, never ranked for it.
    negatives
        Hard negative item ids (filled by :func:`mine_hard_negatives`).
    """

    kind: str
    anchor: str
    item_id: str
    weight: float
    ts: str
    anchor_items: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()


@dataclass
class PairSet:
    """The pairs (in time order) with the item texts they refer to."""

    pairs: list[Pair]
    item_text: dict[str, str]
    counts: dict[str, int] = field(default_factory=dict)
    snapshot: dict = field(default_factory=dict)


def _until_clause(until_ts: Optional[str]) -> tuple[str, list]:
    return ("AND ts < ?", [until_ts]) if until_ts else ("", [])


def _query_pairs(db, until_ts, since_ts, gap_minutes, item_text, tick) -> dict[tuple[str, str], list]:
    """(query key, item) -> [weight, latest ts, display query], from :func:`search_visits`."""
    out: dict[tuple[str, str], list] = {}
    for visit in search_visits(db, gap_minutes, until_ts=until_ts):
        tick()
        for etype, item_id, ts in visit.events:
            tick()
            if item_id not in item_text or (since_ts and (ts or "") < since_ts):
                continue
            entry = out.setdefault((visit.key, item_id), [0.0, ts, visit.query])
            entry[0] += QUERY_EVENT_WEIGHTS[etype]
            entry[1] = max(entry[1], ts)
    return out


def _baskets(db, until_ts, tick):
    """Yield (user, ts of the basket, {item: best event weight}) per session / user-day, in user order."""
    cond, args = _until_clause(until_ts)
    types = list(BASKET_EVENT_WEIGHTS)
    marks = ",".join("?" * len(types))
    sql = (f"SELECT user_id, session_id, substr(ts, 1, 10), ts, item_id, event_type FROM events "
           f"WHERE item_id IS NOT NULL AND event_type IN ({marks}) {cond} "
           f"AND (user_id IS NOT NULL OR session_id IS NOT NULL) ORDER BY user_id, ts, id")
    baskets: dict[tuple, list] = {}
    last_user = object()
    for user, session, day, ts, item, etype in db.execute(sql, types + args):
        tick()
        if user != last_user:
            yield from (tuple(v) for v in baskets.values())
            baskets, last_user = {}, user
        key = (session,) if session else (None, day)
        entry = baskets.setdefault(key, [user, ts, {}])
        w = BASKET_EVENT_WEIGHTS[etype]
        items = entry[2]
        items[str(item)] = max(w, items.get(str(item), 0.0))
    yield from (tuple(v) for v in baskets.values())


def _co_pairs(baskets, since_ts, item_text, rng, per_item: int) -> dict[tuple[str, str], list]:
    """Unordered item pair -> [weight, latest ts]; a pair counts once per basket."""
    out: dict[tuple[str, str], list] = {}
    for _user, ts, items in baskets:
        if since_ts and ts < since_ts:
            continue
        ids = [i for i in items if i in item_text]
        if len(ids) < 2:
            continue
        if len(ids) > MAX_BASKET_ITEMS:
            ids = [ids[j] for j in sorted(rng.choice(len(ids), MAX_BASKET_ITEMS, replace=False))]
        n = len(ids)
        keys: set[tuple[str, str]] = set()
        for a in range(n):
            partners = [b for b in range(n) if b != a]
            if len(partners) > per_item:
                partners = [partners[j] for j in sorted(rng.choice(len(partners), per_item, replace=False))]
            for b in partners:
                x, y = ids[a], ids[b]
                keys.add((x, y) if x < y else (y, x))
        for key in sorted(keys):
            w = min(items[key[0]], items[key[1]])
            entry = out.setdefault(key, [0.0, ts])
            entry[0] += w
            entry[1] = max(entry[1], ts)
    return out


def _history_pairs(db, until_ts, since_ts, item_text, n_history: int, per_day: int, rng, tick) -> list[Pair]:
    """(recent items of a user, an item bought that day for the first time)."""
    cond, args = _until_clause(until_ts)
    sql = (f"SELECT user_id, substr(ts, 1, 10), ts, item_id FROM events WHERE user_id IS NOT NULL "
           f"AND item_id IS NOT NULL AND event_type = 'purchase' {cond} ORDER BY user_id, ts, id")
    pairs: list[Pair] = []

    def flush(days: list) -> None:
        seen: list[str] = []  # distinct items in order of last purchase
        for day_ts, items in days:
            if seen:
                history = tuple(reversed(seen[-n_history:]))
                fresh = [i for i in dict.fromkeys(items) if i not in seen]
                if fresh and not (since_ts and day_ts < since_ts):
                    if len(fresh) > per_day:
                        fresh = [fresh[j] for j in sorted(rng.choice(len(fresh), per_day, replace=False))]
                    text = "; ".join(item_text[h] for h in history)
                    pairs.extend(Pair("history", text, i, HISTORY_WEIGHT, day_ts, history) for i in fresh)
            for i in items:
                if i in seen:
                    seen.remove(i)
                seen.append(i)

    user, days = object(), []
    for u, day, ts, item in db.execute(sql, args):
        tick()
        if u != user:
            flush(days)
            user, days = u, []
        if str(item) not in item_text:
            continue
        if days and days[-1][0][:10] == day:
            days[-1][1].append(str(item))
        else:
            days.append((ts, [str(item)]))
    flush(days)
    return pairs


def _weighted_sample(pairs: list[Pair], n: int, rng) -> list[Pair]:
    """``n`` pairs drawn without replacement with probability ~ weight (Efraimidis-Spirakis keys)."""
    if len(pairs) <= n:
        return pairs
    if n <= 0:
        return []
    w = np.array([max(p.weight, 1e-6) for p in pairs])
    keys = np.log(rng.random(len(pairs))) / w  # larger is better
    keep = np.argpartition(-keys, n - 1)[:n]
    return [pairs[i] for i in sorted(keep)]


def sample_pairs(pairs: list[Pair], n: int, rng) -> list[Pair]:
    """At most ``n`` pairs: search pairs first (by weight when there are more), the rest by weight.

    Search pairs are the direct evidence of what a query should find; basket and
    history pairs fill what is left of the budget (see docs/quality.md, fine-tuning).
    """
    queries = _weighted_sample([p for p in pairs if p.kind == "query"], n, rng)
    others = [p for p in pairs if p.kind != "query"]
    return queries + _weighted_sample(others, n - len(queries), rng)


def training_pairs(db, *, until_ts: Optional[str] = None, since_ts: Optional[str] = None,
                   max_pairs: Optional[int] = 20000, kinds: Sequence[str] = KINDS,
                   session_gap_minutes: float = 30.0, history_items: int = 4, partners_per_item: int = 3,
                   history_per_day: int = 2, seed: int = 0, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelToken] = None) -> PairSet:
    """Weighted (anchor text, item) pairs from the workspace's behaviour (see the module docstring).

    Parameters
    ----------
    db
        Open workspace of the calling thread.
    until_ts
        Only events before this time are read (the evaluation split); None = all.
    since_ts
        Keep only pairs whose positive event is from this time on (held-out pairs).
    max_pairs
        Keep at most this many (:func:`sample_pairs`: search pairs first, seeded); None = all.
    kinds
        Which kinds to make (``query``, ``item``, ``history``).
    session_gap_minutes
        A click/cart/purchase is credited to the session's last search at most this long before.
    history_items
        Items in a history anchor (most recent first).
    partners_per_item
        Basket partners drawn per item and basket.
    history_per_day
        History pairs per user and day at most.
    seed
        Seed of every random draw.
    progress, cancel
        Job protocol: ``progress`` gets events read so far / events in the workspace;
        ``cancel.check()`` runs every 5,000 events.

    Returns
    -------
    PairSet
        Pairs in time order, the item texts, counts per kind, and the data snapshot
        (events read, last event time).
    """
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise PairsError(f"unknown pair kind(s) {', '.join(sorted(unknown))}; use {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    ids, texts = item_texts(db)
    item_text = dict(zip(ids, texts))
    cond, args = _until_clause(until_ts)
    total, last_ts = db.execute(f"SELECT count(*), max(ts) FROM events WHERE 1 {cond}", args).fetchone()
    passes = ("query" in kinds) + ("item" in kinds) + ("history" in kinds)
    total = int(total or 0) * max(passes, 1)
    clock, throttle = EtaClock(), Throttle(0.1)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if done[0] % 5000 == 0 and cancel is not None:
            cancel.check()
        if progress is not None and throttle.ready():
            progress(Progress(done[0], total, f"reading behaviour: {done[0]:,}/{total:,} events",
                              clock.eta(done[0], total), data={"phase": "pairs"}))

    pairs: list[Pair] = []
    if "query" in kinds:
        for (key, item), (w, ts, shown) in _query_pairs(db, until_ts, since_ts, session_gap_minutes,
                                                         item_text, tick).items():
            pairs.append(Pair("query", shown, item, float(w), ts))
    if "item" in kinds:
        co = _co_pairs(_baskets(db, until_ts, tick), since_ts, item_text, rng, partners_per_item)
        for (x, y), (w, ts) in co.items():
            a, b = (x, y) if rng.random() < 0.5 else (y, x)  # one direction: the loss sees both texts anyway
            weight = 1.0 + math.log(w) if w >= 1.0 else w  # repeated co-purchase: more, but not linearly more
            pairs.append(Pair("item", item_text[a], b, float(weight), ts, (a,)))
    if "history" in kinds:
        pairs.extend(_history_pairs(db, until_ts, since_ts, item_text, history_items, history_per_day, rng, tick))
    counts_all = {k: sum(1 for p in pairs if p.kind == k) for k in KINDS}
    if max_pairs is not None:
        pairs = sample_pairs(pairs, int(max_pairs), rng)
    pairs.sort(key=lambda p: (p.ts, p.kind, p.anchor, p.item_id))
    if progress is not None:
        progress(Progress(total, total, f"{len(pairs):,} pairs", 0.0, data={"phase": "pairs"}))
    counts = {k: sum(1 for p in pairs if p.kind == k) for k in KINDS}
    snapshot = {"events": int(db.execute(f"SELECT count(*) FROM events WHERE 1 {cond}", args).fetchone()[0]),
                "max_ts": last_ts, "until_ts": until_ts, "since_ts": since_ts, "available": counts_all}
    return PairSet(pairs, item_text, counts, snapshot)


def positives_by_anchor(pairs: Sequence[Pair]) -> dict[tuple[str, str], set[str]]:
    """(kind, anchor) -> every positive item of that anchor; an item anchor also counts its reverse pairs."""
    pos: dict[tuple[str, str], set[str]] = defaultdict(set)
    by_item_text: dict[str, str] = {}
    for p in pairs:
        pos[(p.kind, p.anchor)].add(p.item_id)
        if p.kind == "item" and p.anchor_items:
            by_item_text[p.anchor_items[0]] = p.anchor
    for p in pairs:  # b is a positive of a, so a is one of b
        if p.kind == "item" and p.anchor_items and p.item_id in by_item_text:
            pos[("item", by_item_text[p.item_id])].add(p.anchor_items[0])
    return dict(pos)


def anchor_vectors(pairs: Sequence[Pair], item_ids: Sequence[str], item_vectors: np.ndarray,
                   encode: Callable[[list[str]], np.ndarray]) -> tuple[list[tuple[str, str]], np.ndarray]:
    """One unit vector per distinct anchor: the anchor item's vector, the mean of the history items'
    vectors, or ``encode`` of the query text.

    Returns
    -------
    (keys, vectors)
        ``(kind, anchor)`` keys in first-seen order and a float32 array, one row each.
    """
    pos = {str(i): n for n, i in enumerate(item_ids)}
    first: dict[tuple[str, str], Pair] = {}
    for p in pairs:
        first.setdefault((p.kind, p.anchor), p)
    keys = list(first)
    dim = item_vectors.shape[1]
    out = np.zeros((len(keys), dim), np.float32)
    queries = [n for n, k in enumerate(keys) if not first[k].anchor_items]
    if queries:
        out[queries] = np.asarray(encode([keys[n][1] for n in queries]), np.float32)
    for n, k in enumerate(keys):
        rows = [pos[i] for i in first[k].anchor_items if i in pos]
        if rows:
            v = np.asarray(item_vectors[rows], np.float32).mean(axis=0)
            out[n] = v / max(float(np.linalg.norm(v)), 1e-12)
    return keys, out


def mine_hard_negatives(pairs: Sequence[Pair], item_ids: Sequence[str], item_vectors: np.ndarray,
                        encode: Callable[[list[str]], np.ndarray], *, item_text: Optional[dict[str, str]] = None,
                        top_k: int = 30, per_pair: int = 1, seed: int = 0, cancel: Optional[CancelToken] = None,
                        progress: Optional[ProgressCallback] = None) -> list[Pair]:
    """Give each pair ``per_pair`` hard negatives: items among the ``top_k`` nearest to the anchor by
    text cosine (the current, frozen encoder) that are not positives of the anchor.

    Items made of the anchor, items whose text equals the positive's (duplicate
    listings) and every positive of the anchor (:func:`positives_by_anchor`)
    are never negatives.

    Parameters
    ----------
    item_ids, item_vectors
        The catalogue and its text vectors (unit rows) under the current encoder.
    encode
        Encodes query anchors (texts -> unit rows).
    item_text
        Item texts (items with the positive's exact text are not negatives).

    Returns
    -------
    list of Pair
        The pairs in the same order with ``negatives`` set.
    """
    if not pairs:
        return []
    rng = np.random.default_rng(seed)
    ids = [str(i) for i in item_ids]
    keys, vecs = anchor_vectors(pairs, ids, item_vectors, encode)
    positives = positives_by_anchor(pairs)
    by_anchor: dict[tuple[str, str], list[int]] = defaultdict(list)
    for n, p in enumerate(pairs):
        by_anchor[(p.kind, p.anchor)].append(n)
    items = np.asarray(item_vectors, np.float32)
    k = min(top_k + 8, len(ids))
    out = list(pairs)
    clock, throttle = EtaClock(), Throttle(0.1)
    for start in range(0, len(keys), 256):
        if cancel is not None:
            cancel.check()
        block = vecs[start:start + 256] @ items.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        for r in range(block.shape[0]):
            key = keys[start + r]
            order = top[r][np.argsort(-block[r, top[r]])]
            pos = positives.get(key, set())
            for n in by_anchor[key]:
                p = pairs[n]
                twin = item_text.get(p.item_id) if item_text else None
                banned = pos | set(p.anchor_items)
                cand = [ids[j] for j in order if ids[j] not in banned
                        and (twin is None or item_text.get(ids[j]) != twin)][:top_k]
                if not cand:
                    continue
                pick = rng.choice(len(cand), min(per_pair, len(cand)), replace=False)
                out[n] = replace(p, negatives=tuple(cand[j] for j in sorted(pick)))
        if progress is not None and throttle.ready():
            done = min(start + 256, len(keys))
            progress(Progress(done, len(keys), f"hard negatives: {done:,}/{len(keys):,} anchors",
                              clock.eta(done, len(keys)), data={"phase": "negatives"}))
    return out
