"""Ranking, rating and catalogue metrics with known-answer semantics.

Per-user ranking metrics take ``ranked`` (recommended ids, best first) and
``relevant`` (a set of ids for binary relevance, or a mapping id -> gain for
graded relevance).  :func:`ranking_report` averages them over users.

Conventions (the ones the tests pin down):

* precision@k divides by ``k`` even when fewer than ``k`` items were ranked;
* recall@k divides by the number of relevant items (0 when there are none);
* nDCG uses linear gains ``g / log2(rank + 1)`` (rank from 1); the ideal DCG
  sorts all relevant gains descending;
* AP@k divides by ``min(|relevant|, k)``; MAP@k is its mean over users;
* MRR is the reciprocal rank of the first relevant item (0 if none in the list).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Iterable, Mapping, Sequence, Union

import numpy as np

Relevant = Union[set, frozenset, Mapping[Hashable, float]]


def _gains(relevant: Relevant) -> Mapping[Hashable, float]:
    if isinstance(relevant, Mapping):
        return relevant
    return {r: 1.0 for r in relevant}


def precision_at_k(ranked: Sequence, relevant: Relevant, k: int) -> float:
    """Share of the top ``k`` slots holding a relevant item."""
    if k <= 0:
        raise ValueError("k must be positive")
    return sum(1 for r in list(ranked)[:k] if r in relevant) / k


def recall_at_k(ranked: Sequence, relevant: Relevant, k: int) -> float:
    """Share of the relevant items found in the top ``k``."""
    if not relevant:
        return 0.0
    return sum(1 for r in list(ranked)[:k] if r in relevant) / len(relevant)


def hit_rate_at_k(ranked: Sequence, relevant: Relevant, k: int) -> float:
    """1.0 if any of the top ``k`` is relevant, else 0.0."""
    return 1.0 if any(r in relevant for r in list(ranked)[:k]) else 0.0


def dcg_at_k(ranked: Sequence, relevant: Relevant, k: int) -> float:
    """Discounted cumulative gain with linear gains."""
    gains = _gains(relevant)
    return sum(gains.get(r, 0.0) / math.log2(i + 2) for i, r in enumerate(list(ranked)[:k]))


def ndcg_at_k(ranked: Sequence, relevant: Relevant, k: int) -> float:
    """Normalised DCG@k; binary (set) or graded (mapping id -> gain) relevance."""
    gains = _gains(relevant)
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    if idcg <= 0:
        return 0.0
    return dcg_at_k(ranked, gains, k) / idcg


def average_precision_at_k(ranked: Sequence, relevant: Relevant, k: int) -> float:
    """AP@k = sum over relevant hits of precision@rank, divided by min(|rel|, k)."""
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for i, r in enumerate(list(ranked)[:k]):
        if r in relevant:
            hits += 1
            total += hits / (i + 1)
    return total / min(len(relevant), k)


def reciprocal_rank(ranked: Sequence, relevant: Relevant, k: int | None = None) -> float:
    """1 / rank of the first relevant item (within ``k`` if given), else 0."""
    items = list(ranked) if k is None else list(ranked)[:k]
    for i, r in enumerate(items):
        if r in relevant:
            return 1.0 / (i + 1)
    return 0.0


def mae(pred: Iterable[float], true: Iterable[float]) -> float:
    """Mean absolute error."""
    p, t = np.asarray(list(pred), float), np.asarray(list(true), float)
    if p.shape != t.shape:
        raise ValueError("pred and true differ in length")
    return float(np.mean(np.abs(p - t))) if p.size else float("nan")


def rmse(pred: Iterable[float], true: Iterable[float]) -> float:
    """Root mean squared error."""
    p, t = np.asarray(list(pred), float), np.asarray(list(true), float)
    if p.shape != t.shape:
        raise ValueError("pred and true differ in length")
    return float(np.sqrt(np.mean((p - t) ** 2))) if p.size else float("nan")


def catalogue_coverage(rankings: Iterable[Sequence], n_items: int, k: int | None = None) -> float:
    """Share of the catalogue (``n_items``) recommended to at least one user."""
    if n_items <= 0:
        return 0.0
    seen: set = set()
    for ranked in rankings:
        seen.update(list(ranked)[:k] if k else ranked)
    return len(seen) / n_items


def gini(counts: Iterable[float]) -> float:
    """Gini coefficient of non-negative counts (0 = equal, -> 1 = concentrated).

    Pass one count per catalogue item (zeros included) to measure how unevenly
    recommendations are spread.
    """
    x = np.sort(np.asarray(list(counts), dtype=float))
    n = x.size
    if n == 0 or x.sum() <= 0:
        return 0.0
    if (x < 0).any():
        raise ValueError("gini needs non-negative counts")
    ranks = np.arange(1, n + 1)
    return float((2.0 * np.sum(ranks * x)) / (n * x.sum()) - (n + 1.0) / n)


def recommendation_counts(rankings: Iterable[Sequence], catalogue: Sequence, k: int | None = None) -> np.ndarray:
    """How often each catalogue item was recommended (order of ``catalogue``)."""
    c: Counter = Counter()
    for ranked in rankings:
        c.update(list(ranked)[:k] if k else ranked)
    return np.array([c.get(i, 0) for i in catalogue], dtype=float)


def long_tail_items(popularity: Mapping[Hashable, float], head_share: float = 0.2) -> set:
    """Items outside the head: the most popular ``head_share`` of the catalogue."""
    ordered = sorted(popularity, key=lambda i: (-popularity[i], str(i)))
    n_head = int(math.ceil(head_share * len(ordered)))
    return set(ordered[n_head:])


def long_tail_share(rankings: Iterable[Sequence], tail: set, k: int | None = None) -> float:
    """Share of recommendation slots that went to long-tail items."""
    total = hits = 0
    for ranked in rankings:
        for r in list(ranked)[:k] if k else ranked:
            total += 1
            hits += r in tail
    return hits / total if total else 0.0


def ranking_report(
    rankings: Mapping[Hashable, Sequence],
    relevant: Mapping[Hashable, Relevant],
    k: int = 10,
    *,
    catalogue: Sequence | None = None,
    popularity: Mapping[Hashable, float] | None = None,
) -> dict[str, float]:
    """Mean ranking metrics over the users in ``relevant``.

    Parameters
    ----------
    rankings
        user -> recommended ids (best first); users missing here count as
        empty lists.
    relevant
        user -> relevant ids (set) or id -> gain (mapping).
    k
        Cut-off.
    catalogue
        All item ids; adds ``coverage`` and ``gini``.
    popularity
        item -> popularity count; adds ``long_tail_share``.

    Returns
    -------
    dict
        ``precision@k``, ``recall@k``, ``ndcg@k``, ``map@k``, ``hit_rate@k``,
        ``mrr``, ``n_users`` and the optional catalogue metrics.
    """
    users = [u for u in relevant if relevant[u]]
    sums = Counter()
    for u in users:
        ranked, rel = list(rankings.get(u, []))[:k], relevant[u]
        sums["precision"] += precision_at_k(ranked, rel, k)
        sums["recall"] += recall_at_k(ranked, rel, k)
        sums["ndcg"] += ndcg_at_k(ranked, rel, k)
        sums["map"] += average_precision_at_k(ranked, rel, k)
        sums["hit_rate"] += hit_rate_at_k(ranked, rel, k)
        sums["mrr"] += reciprocal_rank(ranked, rel)
    n = max(len(users), 1)
    out = {f"{m}@{k}": sums[m] / n for m in ("precision", "recall", "ndcg", "map", "hit_rate")}
    out["mrr"] = sums["mrr"] / n
    out["n_users"] = len(users)
    lists = [list(rankings.get(u, []))[:k] for u in users]
    if catalogue is not None:
        out["coverage"] = catalogue_coverage(lists, len(catalogue))
        out["gini"] = gini(recommendation_counts(lists, catalogue))
    if popularity is not None:
        out["long_tail_share"] = long_tail_share(lists, long_tail_items(popularity))
    return out
