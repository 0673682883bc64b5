"""Semantic candidates: encode the query, search the bundle's vector index.

Query vectors are cached (LRU, :data:`QUERY_CACHE_SIZE` entries) because the
UI ranks on every keystroke and revisits the same prefixes, and kept in the
workspace (:class:`~merch_app.model.query_vectors.QueryVectorStore`) so a
repeated command-line query does not load the encoder.  With filters,
when few items pass (<= :data:`BRUTE_FORCE_MAX`) they are scored by brute
force, which is then both exact and cheaper than the index; otherwise the
index filters natively (``search(q, k, subset=...)``) or, for an index
without that, is asked for more neighbours (``k / pass rate``, doubling until
enough pass).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional

import numpy as np

from merch_app.model import text_matrix

QUERY_CACHE_SIZE = 256
BRUTE_FORCE_MAX = 50_000


class QueryVectorCache:
    """LRU cache of unit query vectors for one encoder (thread-safe), over an optional persistent store.

    Parameters
    ----------
    encoder
        The bundle's encoder; asked only for texts neither cache has.
    size
        Entries kept in memory.
    store
        A :class:`~merch_app.model.query_vectors.QueryVectorStore` (vectors
        kept in the workspace across processes) or None.
    """

    def __init__(self, encoder, size: int = QUERY_CACHE_SIZE, store=None) -> None:
        self.encoder = encoder
        self.size = size
        self.store = store
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, text: str) -> np.ndarray:
        """Unit float32 vector of ``text`` (read-only array)."""
        with self._lock:
            vec = self._cache.get(text)
            if vec is not None:
                self._cache.move_to_end(text)
                self.hits += 1
                return vec
        vec = self.store.get(text) if self.store is not None else None
        encoded = vec is None
        if encoded:
            vec = np.asarray(self.encoder.encode([text]), dtype=np.float32).reshape(-1).copy()
        norm = float(np.linalg.norm(vec))
        if norm > 0 and abs(norm - 1.0) > 1e-3:
            vec /= norm
        vec.setflags(write=False)
        if encoded and self.store is not None:
            self.store.put(text, vec)
        with self._lock:
            self.misses += 1
            self._cache[text] = vec
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return vec


def search_index(index, item_vectors: np.ndarray, qvec: np.ndarray, k: int,
                 mask: Optional[np.ndarray] = None,
                 exclude: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by cosine, restricted to ``mask`` when given.

    Parameters
    ----------
    index
        Object with ``search(q (1, dim) float32, k) -> (scores, idx)``.
    item_vectors
        Unit item vectors (for the brute-force path on small filtered sets).
    qvec
        Unit query vector.
    mask
        Boolean per item; None means every item is allowed.
    exclude
        A position never returned (the item itself, for related items).

    Returns
    -------
    positions, cosines
        Best first, at most ``k``.
    """
    n = len(item_vectors)
    if k <= 0 or n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    q = np.ascontiguousarray(qvec, dtype=np.float32).reshape(1, -1)
    allowed = None if mask is None else np.flatnonzero(mask)
    if allowed is not None and len(allowed) <= BRUTE_FORCE_MAX:
        if exclude is not None:
            allowed = allowed[allowed != exclude]
        sims = text_matrix.times(item_vectors[allowed], q[0])
        top = _top(sims, k)
        return allowed[top].astype(np.int64), sims[top].astype(np.float32)
    pass_rate = 1.0 if allowed is None else max(len(allowed) / n, 1e-6)
    want = k + (1 if exclude is not None else 0)
    fetch = min(n, int(np.ceil(want / pass_rate * 1.2)) + 8)
    if allowed is not None:
        try:  # VectorIndex filters natively (IDSelector / exact subset)
            scores, idx = index.search(q, want, subset=allowed)
        except TypeError:  # an index without ``subset``: over-fetch below
            pass
        else:
            idx = np.asarray(idx).reshape(-1).astype(np.int64)
            scores = np.asarray(scores).reshape(-1).astype(np.float32)
            keep = (idx >= 0) & (idx != (-1 if exclude is None else exclude))
            return idx[keep][:k], scores[keep][:k]
    while True:
        scores, idx = index.search(q, fetch)
        idx = np.asarray(idx).reshape(-1).astype(np.int64)
        scores = np.asarray(scores).reshape(-1).astype(np.float32)
        keep = idx >= 0
        if mask is not None:
            keep &= mask[np.clip(idx, 0, n - 1)]
        if exclude is not None:
            keep &= idx != exclude
        idx, scores = idx[keep], scores[keep]
        if len(idx) >= k or fetch >= n:
            return idx[:k], scores[:k]
        fetch = min(n, fetch * 2)


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, best first (stable on ties)."""
    if len(values) <= k:
        return np.argsort(-values, kind="stable")
    part = np.argpartition(-values, k - 1)[:k]
    return part[np.argsort(-values[part], kind="stable")]
