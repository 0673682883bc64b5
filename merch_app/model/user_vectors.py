"""User text vectors: a weighted mean of what each user searched and touched.

u = normalise( sum_e w(e) * v(e) ), where v(e) is the text vector of the
event's item (or of its search query) and w(e) = type weight x recency decay.
This is the design's "user vector from BERT": it lives in the same space as
the item vectors, so cosine(u, t_i) is a content-based user-item score.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from merch_app.model.item_vectors import encode_texts_cached

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "purchase": 3.0,
    "cart": 2.0,
    "click": 1.0,
    "view": 0.5,
    "search": 1.0,
    "rating": 2.0,  # scale: a rating of value v weighs v / 5 * 2
    "return": 0.0,  # returns say nothing good about taste: excluded
    "impression": 0.0,  # shown in a result list, not chosen: excluded
}
RATING_SCALE = 5.0
_DAY = 86400.0


def _event_type_weights(event_weights: Optional[dict]) -> dict[str, float]:
    weights = dict(DEFAULT_EVENT_WEIGHTS)
    if event_weights:
        unknown = set(event_weights) - set(DEFAULT_EVENT_WEIGHTS)
        if unknown:
            raise ValueError(
                f"unknown event type(s) in event_weights: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(DEFAULT_EVENT_WEIGHTS)}"
            )
        weights.update({k: float(v) for k, v in event_weights.items()})
    return weights


_BLOCK = 50_000  # events per block: fetchall() of 8M events held ~5 GB of row tuples; a block's
# C-level work (zip(*rows), object comparisons) holds the GIL, so blocks stay small for the GUI


def _load_events(db, until_ts: Optional[str]):
    """Cursor over (user, item, type, value, unix seconds, query) of the counted events."""
    sql = (
        "SELECT user_id, item_id, event_type, value, CAST(strftime('%s', ts) AS INTEGER), query "
        "FROM events WHERE user_id IS NOT NULL AND user_id != '' AND ts IS NOT NULL"
    )
    params: list = []
    if until_ts is not None:
        sql += " AND ts < ?"
        params.append(until_ts)
    return db.execute(sql, params)


def user_text_vectors(
    db,
    item_ids,
    item_vectors: np.ndarray,
    encoder,
    *,
    until_ts: Optional[str] = None,
    event_weights: Optional[dict] = None,
    half_life_days: float = 90.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Text vectors of every user with usable events.

    Parameters
    ----------
    db
        Open workspace of the calling thread.
    item_ids, item_vectors
        Catalogue ids and their text vectors (from :func:`item_text_vectors`);
        events on items not in ``item_ids`` are ignored.
    encoder
        Encodes search queries (through the workspace embedding cache).
    until_ts
        Only events with ``ts < until_ts`` count (time-split training).
    event_weights
        Overrides of :data:`DEFAULT_EVENT_WEIGHTS`; ``"rating"`` is the scale
        of ``value / 5``.  A weight <= 0 excludes that event type.
    half_life_days
        An event ``d`` days before the user's last counted event weighs
        ``0.5 ** (d / half_life_days)``; None or <= 0 disables decay.
        (Decay relative to ``until_ts`` would only rescale each user's
        weights by a constant, which the normalisation removes.)

    Returns
    -------
    (user_ids, vectors)
        Object array of user ids (sorted) and ``(n_users, dim)`` float32
        unit-norm rows.  Anonymous events are ignored; users whose events all
        weigh 0 (or hit unknown items) are omitted.
    """
    dim = item_vectors.shape[1]
    type_w = _event_type_weights(event_weights)
    empty = (np.array([], dtype=object), np.zeros((0, dim), dtype=np.float32))
    item_pos = {str(i): n for n, i in enumerate(item_ids)}
    n_items = len(item_pos)
    qpos: dict[str, int] = {}  # search text -> column after the items
    upos: dict[str, int] = {}  # user -> index in order of first counted event
    parts = []
    cur = _load_events(db, until_ts)
    while True:
        rows = cur.fetchmany(_BLOCK)
        if not rows:
            break
        parts.append(list(_block_columns(rows, type_w, item_pos, n_items, qpos, upos)))
    if not upos:
        return empty
    uu, col, w, sec_arr = (np.concatenate([p.pop(0) for p in parts]) for _ in range(4))  # frees as it goes
    del parts
    # Users sorted by id, as np.unique would give them.
    first_seen = np.array(list(upos), dtype=object)
    order = np.argsort(first_seen.astype(str), kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    user_ids, user_idx = first_seen[order], rank[uu]
    if half_life_days is not None and half_life_days > 0:
        last = np.full(len(user_ids), -np.inf)
        np.maximum.at(last, user_idx, sec_arr)
        age_days = (last[user_idx] - sec_arr) / _DAY
        w = w * np.exp2(-age_days / float(half_life_days))
        del last, age_days
    del uu, sec_arr

    is_item = col < n_items
    vectors = np.zeros((len(user_ids), dim), np.float32)
    _add_weighted_sums(vectors, user_idx[is_item], col[is_item], w[is_item], item_vectors)
    if qpos:  # the item matrix is not copied next to the query vectors (1.5 GB at 1M items)
        query_vectors, _ = encode_texts_cached(db, encoder, list(qpos))
        if query_vectors.shape[1] != dim:
            raise ValueError(
                f"encoder {encoder.encoder_id} gives {query_vectors.shape[1]}-d query vectors "
                f"but the item vectors are {dim}-d"
            )
        q = ~is_item
        _add_weighted_sums(vectors, user_idx[q], col[q] - n_items, w[q], query_vectors)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))  # no (n_users, dim) temporary
    ok = norms > 1e-9
    vectors /= np.where(ok, norms, 1.0)[:, None]  # in place: the matrix is 0.4 GB at 250k users
    if not ok.all():
        vectors = vectors[ok]
    return user_ids[ok].astype(object), vectors


def _block_columns(rows, type_w: dict, item_pos: dict, n_items: int, qpos: dict, upos: dict):
    """(user index, source column, weight, seconds) of the counted events of one block."""
    users, items, etypes, values, secs, queries = zip(*rows)
    n_ev = len(rows)
    etype_arr = np.array(etypes, dtype=object)
    w = np.zeros(n_ev, dtype=np.float64)
    for etype, weight in type_w.items():
        if weight != 0.0:
            w[etype_arr == etype] = weight
    is_rating = etype_arr == "rating"
    if is_rating.any():
        vals = np.array([values[i] for i in np.flatnonzero(is_rating)], dtype=object)
        vals = np.array([v if isinstance(v, (int, float)) else 0.0 for v in vals], dtype=np.float64)
        w[is_rating] = np.clip(vals, 0.0, None) / RATING_SCALE * type_w["rating"]
    # Column of each event in the sources [item vectors; query vectors].
    col = np.array([item_pos.get(i, -1) if i is not None else -1 for i in items], dtype=np.int64)
    for e in np.flatnonzero(etype_arr == "search"):
        q = queries[e]
        if q is None or not str(q).strip():
            continue  # a search without text counts via its item (if any)
        col[e] = n_items + qpos.setdefault(str(q).strip(), len(qpos))
    sec_arr = np.array([np.nan if s is None else s for s in secs], dtype=np.float64)
    keep = np.flatnonzero((col >= 0) & (w > 0) & ~np.isnan(sec_arr))
    uu = np.fromiter((upos.setdefault(str(users[e]), len(upos)) for e in keep), np.int64, len(keep))
    return uu, col[keep], w[keep], sec_arr[keep]


# Source rows gathered per block by _add_weighted_sums (x dim x 4 bytes of scratch memory).
_SUM_BLOCK = 32_768


def _add_weighted_sums(out: np.ndarray, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray,
                       sources: np.ndarray) -> None:
    """``out[r] += w * sources[c]`` for every triple (r, c, w), in blocks.

    Parameters
    ----------
    out
        ``(n_rows, dim)`` float32, updated in place.
    rows, cols, weights
        The triples (duplicates add up).
    sources
        ``(n_sources, dim)`` float32 or float16 vectors (float16 rows are
        widened per block).

    Notes
    -----
    A sparse matrix product over all triples at once held several copies of
    the output and of the triples (2 GB at 250k users / 10M events); blocks
    keep the scratch memory to one block of gathered rows, and the torch
    kernels release the GIL (the GUI stays responsive).
    """
    target = torch.from_numpy(out)
    src = torch.from_numpy(np.ascontiguousarray(sources))
    for s in range(0, len(rows), _SUM_BLOCK):
        r = torch.from_numpy(np.ascontiguousarray(rows[s:s + _SUM_BLOCK], dtype=np.int64))
        c = torch.from_numpy(np.ascontiguousarray(cols[s:s + _SUM_BLOCK], dtype=np.int64))
        w = torch.from_numpy(np.ascontiguousarray(weights[s:s + _SUM_BLOCK], dtype=np.float32))
        target.index_add_(0, r, src.index_select(0, c).float() * w[:, None])


def user_vector_from_history(
    item_idx: np.ndarray,
    weights: np.ndarray,
    item_vectors: np.ndarray,
    query_vectors: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Text vector of an ad-hoc user from an explicit history.

    Parameters
    ----------
    item_idx
        Row numbers into ``item_vectors`` of the items in the history.
    weights
        One weight per item, optionally followed by one weight per query
        vector; when only item weights are given each query weighs 1 (the
        default search weight).
    item_vectors
        ``(n_items, dim)`` text vectors.
    query_vectors
        Optional ``(n_queries, dim)`` vectors of the user's search queries.

    Returns
    -------
    np.ndarray
        ``(dim,)`` float32, unit norm; all zeros if the history weighs nothing.
    """
    item_idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    item_vectors = np.asarray(item_vectors)  # only the history rows are widened (float16 catalogues)
    n_q = 0 if query_vectors is None else len(query_vectors)
    if len(weights) not in (len(item_idx), len(item_idx) + n_q):
        raise ValueError(
            f"got {len(weights)} weights for {len(item_idx)} items and {n_q} queries"
        )
    total = weights[: len(item_idx)] @ item_vectors[item_idx].astype(np.float64) if len(item_idx) else 0.0
    if n_q:
        qw = weights[len(item_idx) :] if len(weights) > len(item_idx) else np.ones(n_q)
        total = total + qw @ np.asarray(query_vectors, dtype=np.float64)
    vec = np.zeros(item_vectors.shape[1], dtype=np.float64) + total
    norm = np.linalg.norm(vec)
    return (vec / norm if norm > 1e-12 else vec).astype(np.float32)
