"""Top-k per row of a block of scores, without holding the GIL.

``np.argpartition`` over a block of a few million scores (validation and
evaluation rank users against the whole catalogue block by block) holds the
GIL for 50-100 ms, and the GUI thread stalls for that long while a model
trains (``benchmarks/bench_responsiveness.py``).  ``torch.topk`` releases it.
"""
from __future__ import annotations

import numpy as np
import torch


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores per row, best first (equal scores by index).

    Which of several items tied at the k-th score get in is left to the
    selection (as with ``np.argpartition``); the returned order is by score,
    then index.
    """
    scores = np.asarray(scores)
    k = min(int(k), scores.shape[1])
    if k <= 0 or scores.shape[0] == 0:
        return np.zeros((scores.shape[0], max(k, 0)), np.int64)
    if scores.shape[0] > 1 and scores.strides[0] == 0:  # one row broadcast to all (popularity): ranked once
        return np.repeat(top_k_rows(np.array(scores[:1]), k), scores.shape[0], axis=0)
    with torch.no_grad():
        vals, top = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1)
    vals, top = vals.numpy(), top.numpy()
    order = np.lexsort((top, -vals), axis=1)
    return np.take_along_axis(top, order, axis=1)
