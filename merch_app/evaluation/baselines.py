"""Reference rankers every model is compared with, on the same split.

* **popularity**: the most bought items of the training period, same list for all;
* **user history**: the user's own items, most often bought first (ties by
  popularity), then popularity — strong wherever repeat purchases dominate;
* **text only**: cosine of the BERT user vector and the item vectors;
* **CF only**: the model's bilinear part plus item bias, without history or
  trend features.

Each function returns ``{user_id: [item ids, best first]}``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from merch_app.model import text_matrix
from merch_app.model.interactions import Interactions
from merch_app.model.topk import top_k_rows


# Scores held at once when ranking users against the whole catalogue: 512 users x 1M items
# would need ~2 GB per block (plus the int64 argpartition), so blocks shrink with the catalogue.
MAX_BLOCK_CELLS = 4_000_000


def row_block(n_items: int, max_rows: int = 512) -> int:
    """Users per scoring block for a catalogue of ``n_items`` (at most ``max_rows``, at least 1)."""
    return max(1, min(int(max_rows), MAX_BLOCK_CELLS // max(int(n_items), 1)))


def item_popularity(train: Interactions) -> np.ndarray:
    """Positive events per item in the training data (catalogue order)."""
    mask = train.weight > 0
    return np.bincount(train.item_idx[mask], minlength=train.n_items).astype(np.float64)


def popularity_ranking(train: Interactions, users: Iterable[str], k: int = 10) -> dict[str, list[str]]:
    """The same most-popular list for every user."""
    pop = item_popularity(train)
    order = np.lexsort((np.arange(len(pop)), -pop))[:k]
    top = [str(train.item_ids[i]) for i in order]
    return {str(u): list(top) for u in users}


def own_item_keys(train: Interactions, counts: bool = False):
    """Sorted distinct ``user * n_items + item`` keys of the positive events (and their event counts).

    One key array, sorted in place (``np.unique`` of a masked product held
    four arrays as long as the events: 0.15 GB at 5M events).
    """
    mask = train.weight > 0
    whole = bool(mask.all())
    key = (train.user_idx if whole else train.user_idx[mask]).astype(np.int64)  # always a new array
    key *= train.n_items
    key += train.item_idx if whole else train.item_idx[mask]
    del mask
    key.sort()
    first = np.ones(len(key), bool)
    np.not_equal(key[1:], key[:-1], out=first[1:])
    uniq = key[first]
    if not counts:
        return uniq
    starts = np.flatnonzero(first)
    return uniq, np.diff(np.append(starts, len(key)))


def user_history_ranking(train: Interactions, users: Iterable[str], k: int = 10) -> dict[str, list[str]]:
    """Own items by purchase count (ties: more popular first), then popular items."""
    pop = item_popularity(train)
    pop_order = np.lexsort((np.arange(len(pop)), -pop))
    rank_of = np.empty(len(pop), np.int64)
    rank_of[pop_order] = np.arange(len(pop))
    uniq, counts = own_item_keys(train, counts=True)
    upos = {str(u): n for n, u in enumerate(train.user_ids)}
    starts = np.searchsorted(uniq, np.arange(train.n_users + 1) * train.n_items)
    out: dict[str, list[str]] = {}
    for user in users:
        u = upos.get(str(user))
        own: list[int] = []
        if u is not None:
            lo, hi = starts[u], starts[u + 1]
            items, c = uniq[lo:hi] % train.n_items, counts[lo:hi]
            own = items[np.lexsort((rank_of[items], -c))][:k].tolist()
        chosen = set(own)
        for i in pop_order:
            if len(own) >= k:
                break
            if i not in chosen:
                own.append(int(i))
        out[str(user)] = [str(train.item_ids[i]) for i in own]
    return out


def score_ranking(scores: np.ndarray, user_ids: Sequence[str], item_ids: Sequence, k: int = 10
                  ) -> dict[str, list[str]]:
    """Rows of ``scores`` (one per user in ``user_ids``) -> top-``k`` item ids."""
    top = top_k_rows(np.asarray(scores), k)
    return {str(u): [str(item_ids[j]) for j in row] for u, row in zip(user_ids, top)}


def text_only_ranking(user_text: np.ndarray, item_text: np.ndarray, user_ids: Sequence[str],
                      item_ids: Sequence, k: int = 10, chunk: int = 512) -> dict[str, list[str]]:
    """Rank items by the cosine of the user's text vector with each item's text vector."""
    out: dict[str, list[str]] = {}
    chunk = row_block(len(item_ids), chunk)
    for lo in range(0, len(user_ids), chunk):
        s = text_matrix.scores(user_text[lo:lo + chunk], item_text)
        out.update(score_ranking(s, user_ids[lo:lo + chunk], item_ids, k))
    return out


def model_ranking(model, user_ids: Sequence[str], k: int = 10,
                  parts: tuple[str, ...] = ("bilinear", "item_bias", "history", "trend"),
                  chunk: int = 512) -> dict[str, list[str]]:
    """Top-``k`` of a :class:`HybridModel` using only the score ``parts`` given (CF only: bilinear + item bias)."""
    rows = np.array([model.user_pos[str(u)] for u in user_ids], dtype=np.int64)
    out: dict[str, list[str]] = {}
    chunk = row_block(model.n_items, chunk)
    for lo in range(0, len(rows), chunk):
        s = model.score_matrix(rows[lo:lo + chunk], parts)
        out.update(score_ranking(s, user_ids[lo:lo + chunk], model.item_ids, k))
    return out
