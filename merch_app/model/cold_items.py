"""Items never sold before the reference time: their missing parts imputed from their text neighbours.

An item without sales has trend features 0 (no recent sales, no novelty), an
item bias ``b_i`` and ID embedding ``Q_i`` that only ever met it as a sampled
negative, so it scores through ``B·t_i`` alone and ranks below most of the
catalogue (Online Retail: 0.29 mean percentile for the buyers who later buy it).
With the imputation (config ``cold_impute``), each such item takes

* trend row and ``b_i`` = λ · the similarity-weighted mean over its k nearest
  sold items in text space (cosine of the BERT vectors, negative similarities
  weigh 0), λ = ``cold_shrink`` and k = ``cold_neighbours``;
* with ``cold_cf_map``, ``Q_i`` = a ridge map text → ID embedding fitted on the
  sold items (the content-to-CF mapping of cold-start recommenders).

λ and k are chosen on the internal validation cut of the fit (items unsold at
that cut, labels after it) from :data:`SHRINK_GRID` x :data:`NEIGHBOUR_GRID`;
the chosen values are written into the config.  The imputed values live in the
model's own arrays (``trend``, ``b_item``, ``Q``; the imputed trend rows keep
``unsold`` = 1), so every score part and ``explain()`` see them like any other
value.  Off by default: the default model learns how to score unsold items from
the internal cuts instead (config ``cold_feature``), and with those weights the
validation cut chooses λ = 0 on Online Retail (docs/quality.md, cold start).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from merch_app.model import text_matrix
from merch_app.model.history_features import UNSOLD

SHRINK_GRID = (0.25, 0.5, 0.75, 1.0)  # λ candidates (0 = no imputation is always a candidate too)
NEIGHBOUR_GRID = (5, 10, 20, 50)  # k candidates
RIDGE_ALPHA = 1.0  # L2 of the text -> ID-embedding map (unit-norm text vectors, 384 dims)
_BLOCK = 1024  # unsold items whose similarities to every sold item are held at once


def text_neighbours(item_text: np.ndarray, cold: np.ndarray, warm: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest ``warm`` items of each ``cold`` item by text cosine, with normalised weights.

    Parameters
    ----------
    item_text
        ``(n_items, d)`` unit-norm text vectors (float16 or float32).
    cold, warm
        Item indices.
    k
        Neighbours per cold item (at most ``len(warm)``).

    Returns
    -------
    (np.ndarray, np.ndarray)
        ``(len(cold), k)`` item indices (nearest first) and weights summing to 1 per row
        (similarities clipped at 0; uniform when all are 0).
    """
    cold, warm = np.asarray(cold, np.int64), np.asarray(warm, np.int64)
    k = int(min(max(int(k), 1), len(warm)))
    idx = np.zeros((len(cold), k), np.int64)
    wts = np.zeros((len(cold), k), np.float32)
    if not len(cold) or not k:
        return idx, wts
    warm_text = text_matrix.rows(item_text, warm)
    for lo in range(0, len(cold), _BLOCK):
        sim = text_matrix.rows(item_text, cold[lo:lo + _BLOCK]) @ warm_text.T
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < sim.shape[1] else np.tile(
            np.arange(sim.shape[1]), (len(sim), 1))
        s = np.take_along_axis(sim, top, 1)
        order = np.argsort(-s, axis=1, kind="stable")
        top, s = np.take_along_axis(top, order, 1), np.maximum(np.take_along_axis(s, order, 1), 0.0)
        total = s.sum(1, keepdims=True)
        w = np.where(total > 0, s / np.where(total > 0, total, 1.0), 1.0 / k)
        idx[lo:lo + len(s)], wts[lo:lo + len(s)] = warm[top], w
    return idx, wts


def neighbour_mean(values: np.ndarray, idx: np.ndarray, wts: np.ndarray) -> np.ndarray:
    """Weighted mean of ``values`` rows (or entries) over each row of neighbours.

    Parameters
    ----------
    values
        ``(n_items,)`` or ``(n_items, d)`` per-item values.
    idx, wts
        ``(n, k)`` neighbour item indices and weights (rows summing to 1), from :func:`text_neighbours`.

    Returns
    -------
    np.ndarray
        ``(n,)`` or ``(n, d)`` float32.
    """
    v = np.asarray(values, np.float32)[idx]
    return np.einsum("nk,nk...->n...", wts, v).astype(np.float32)


def ridge_text_map(text: np.ndarray, target: np.ndarray, alpha: float = RIDGE_ALPHA) -> np.ndarray:
    """The ridge solution M of ``text @ M ≈ target``: ``(XᵀX + alpha·I)⁻¹ Xᵀ target``.

    Parameters
    ----------
    text
        ``(n, d_text)`` text vectors of the items the map learns from.
    target
        ``(n, dim)`` their learned ID embeddings.
    alpha
        L2 weight.

    Returns
    -------
    np.ndarray
        ``(d_text, dim)`` float32.
    """
    x = np.asarray(text, np.float64)
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += alpha
    return np.linalg.solve(gram, x.T @ np.asarray(target, np.float64)).astype(np.float32)


def fill_cold(arrays: dict, sold: np.ndarray, shrink: float, k: int, cf_map: bool = False,
              params: bool = True, only: Optional[np.ndarray] = None) -> int:
    """Impute the trend rows (and with ``params`` ``b_item``, ``Q``) of the items not in ``sold``, in place.

    Parameters
    ----------
    arrays
        The model's arrays (``T_i``, ``trend``, ``b_item``, ``Q``).
    sold
        ``(n_items,)`` bool: items with sales (the neighbours are taken among them).
    shrink, k
        λ and the number of text neighbours.
    cf_map
        Also set ``Q`` of the unsold items from the ridge map text → ``Q`` fitted on the sold ones.
    params
        Impute the learned parameters ``b_item`` / ``Q`` too (after a fit or when items are
        added); False: only the trend rows (the history moved to another reference time).
    only
        Item indices to impute (default: every item not in ``sold``); the others keep their values.

    Returns
    -------
    int
        The number of items imputed (0 when λ is 0: nothing is changed).
    """
    sold = np.asarray(sold, bool)
    cold = np.flatnonzero(~sold) if only is None else np.asarray(only, np.int64)
    cold = cold[~sold[cold]]  # an item with sales keeps its own values
    warm = np.flatnonzero(sold)
    if shrink <= 0 or not len(cold) or not len(warm):
        return 0
    idx, wts = text_neighbours(arrays["T_i"], cold, warm, k)
    for name in ("trend",) + (("b_item",) if params else ()):
        if not arrays[name].flags.writeable:
            arrays[name] = arrays[name].copy()
        arrays[name][cold] = shrink * neighbour_mean(arrays[name], idx, wts)
    arrays["trend"][cold, UNSOLD] = 1.0  # the imputed rows stay marked as unsold items
    if params and cf_map:
        if not arrays["Q"].flags.writeable:
            arrays["Q"] = arrays["Q"].copy()
        text = arrays["T_i"]
        m = ridge_text_map(text_matrix.rows(text, warm), arrays["Q"][warm])
        arrays["Q"][cold] = text_matrix.rows(text, cold) @ m
    return len(cold)
