"""Dense retrieval quality of a text encoder on behaviour pairs: before / after fine-tuning.

Each distinct anchor of the pairs (a query, an item, a user's recent items) is
one test case: the catalogue is ranked by cosine to the anchor's vector (the
item's own vector, the mean of the history items' vectors as the user text
vectors do, or the encoded query), the anchor's own items are left out, and
its positives are the relevant items.  :func:`compare_encoders` runs two
encoders on the same cases and tests the per-anchor differences with the
paired test of :mod:`merch_app.evaluation.compare`.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from merch_app.evaluation.compare import paired_test, wins_losses_ties
from merch_app.evaluation.metrics import ndcg_at_k, recall_at_k
from merch_app.jobs import CancelToken
from merch_app.model.finetune_pairs import Pair, anchor_vectors, positives_by_anchor

METRICS = ("ndcg@10", "recall@10", "recall@50")
_BLOCK = 256


def _k_of(name: str) -> int:
    return int(name.split("@")[1])


def retrieval_scores(pairs: Sequence[Pair], item_ids: Sequence[str], item_vectors: np.ndarray,
                     encode: Callable[[list[str]], np.ndarray], *, metrics: Sequence[str] = METRICS,
                     cancel: Optional[CancelToken] = None) -> dict[str, Any]:
    """Per-anchor retrieval metrics of one encoder.

    Parameters
    ----------
    pairs
        Held-out pairs; anchors are grouped (all positives of an anchor are relevant).
    item_ids, item_vectors
        The items ranked (unit rows of the encoder under test).
    encode
        The encoder's ``texts -> unit rows`` (for query anchors).
    metrics
        Names ``ndcg@K`` / ``recall@K``.

    Returns
    -------
    dict
        ``anchors``: the ``(kind, anchor)`` keys; ``kinds``: their kinds;
        one list per metric (aligned with ``anchors``); ``mean``: the means.
    """
    ids = [str(i) for i in item_ids]
    pos = {i: n for n, i in enumerate(ids)}
    keys, vecs = anchor_vectors(pairs, ids, item_vectors, encode)
    relevant = positives_by_anchor(pairs)
    own: dict[tuple[str, str], tuple[str, ...]] = {}
    for p in pairs:
        own.setdefault((p.kind, p.anchor), p.anchor_items)
    depth = min(len(ids), max(_k_of(m) for m in metrics))
    items = np.asarray(item_vectors, np.float32)
    out: dict[str, Any] = {m: [] for m in metrics}
    for start in range(0, len(keys), _BLOCK):
        if cancel is not None:
            cancel.check()
        scores = vecs[start:start + _BLOCK] @ items.T
        for r in range(scores.shape[0]):
            key = keys[start + r]
            for i in own.get(key, ()):
                if i in pos:
                    scores[r, pos[i]] = -np.inf
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        for r in range(scores.shape[0]):
            ranked = [ids[j] for j in top[r][np.argsort(-scores[r, top[r]], kind="stable")]]
            rel = relevant.get(keys[start + r], set())
            for m in metrics:
                k = _k_of(m)
                out[m].append(ndcg_at_k(ranked, rel, k) if m.startswith("ndcg") else recall_at_k(ranked, rel, k))
    out["anchors"] = keys
    out["kinds"] = [k[0] for k in keys]
    out["mean"] = {m: float(np.mean(out[m])) if out[m] else float("nan") for m in metrics}
    return out


def compare_encoders(before: dict[str, Any], after: dict[str, Any], *, metrics: Sequence[str] = METRICS,
                     seed: int = 0) -> dict[str, Any]:
    """Before/after table of two :func:`retrieval_scores` results on the same pairs.

    Returns
    -------
    dict
        Per metric: ``before``, ``after``, ``delta``, ``p_value``, ``ci_delta``,
        wins/losses/ties (paired randomisation test over anchors); ``by_kind``:
        the means per anchor kind; ``n_anchors``.
    """
    if before["anchors"] != after["anchors"]:
        raise ValueError("before and after were scored on different anchors")
    table: dict[str, Any] = {"n_anchors": len(before["anchors"])}
    for m in metrics:
        test = paired_test(before[m], after[m], seed=seed)
        table[m] = {"before": test.mean_a, "after": test.mean_b, "delta": test.mean_delta, "p_value": test.p_value,
                    "ci_delta": list(test.ci_delta), "test": test.method, **wins_losses_ties(before[m], after[m])}
    kinds = np.array(before["kinds"], dtype=object)
    by_kind: dict[str, Any] = {}
    for kind in sorted(set(before["kinds"])):
        sel = kinds == kind
        by_kind[kind] = {"n": int(sel.sum()), **{
            m: {"before": float(np.mean(np.asarray(before[m])[sel])), "after": float(np.mean(np.asarray(after[m])[sel]))}
            for m in metrics}}
    table["by_kind"] = by_kind
    return table
