"""User segments: seeded k-means over user vectors and segment × category affinity."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from merch_app.insights.heatmaps import HeatmapData
from merch_app.jobs import CancelToken


@dataclass
class KMeansResult:
    labels: np.ndarray  # (n,) int, segment per row
    centroids: np.ndarray  # (k, d)
    inertia: float  # sum of squared distances to the assigned centroid
    iterations: int

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.centroids))


def _sq_dist(x: np.ndarray, c: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    d = x_sq[:, None] - 2.0 * (x @ c.T) + np.einsum("ij,ij->i", c, c)[None, :]
    return np.maximum(d, 0.0)


def kmeans(x: np.ndarray, k: int, seed: int = 0, max_iter: int = 100, tol: float = 1e-6,
           cancel: Optional[CancelToken] = None) -> KMeansResult:
    """Lloyd's k-means with k-means++ seeding (deterministic for a given ``seed``).

    Segments are renumbered by size (segment 0 is the largest) so labels are
    stable across runs and readable in charts.  Empty clusters are re-seeded
    with the point farthest from its centroid.

    Raises
    ------
    ValueError
        If ``x`` is empty or ``k`` < 1.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError("k-means needs a non-empty 2-D array")
    if k < 1:
        raise ValueError("k must be at least 1")
    k = min(k, len(x))
    rng = np.random.default_rng(seed)
    x_sq = np.einsum("ij,ij->i", x, x)
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(len(x))]
    closest = _sq_dist(x, centroids[:1], x_sq)[:, 0]
    for j in range(1, k):
        total = closest.sum()
        idx = rng.choice(len(x), p=closest / total) if total > 0 else rng.integers(len(x))
        centroids[j] = x[idx]
        closest = np.minimum(closest, _sq_dist(x, centroids[j:j + 1], x_sq)[:, 0])
    labels = np.zeros(len(x), dtype=np.int64)
    prev = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        if cancel is not None:
            cancel.check()
        d = _sq_dist(x, centroids, x_sq)
        labels = d.argmin(axis=1)
        inertia = float(d[np.arange(len(x)), labels].sum())
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            far_first = np.argsort(-d[np.arange(len(x)), labels], kind="stable")
            for j, far in zip(empty, far_first):
                sums[labels[far]] -= x[far]
                counts[labels[far]] -= 1
                sums[j], counts[j] = x[far], 1
                labels[far] = j
            counts = np.maximum(counts, 1)
        centroids = sums / counts[:, None]
        if prev - inertia <= tol * max(abs(prev), 1e-12):
            break
        prev = inertia
    d = _sq_dist(x, centroids, x_sq)
    labels = d.argmin(axis=1)
    inertia = float(d[np.arange(len(x)), labels].sum())
    order = np.lexsort((np.arange(k), -np.bincount(labels, minlength=k)))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return KMeansResult(remap[labels], centroids[order], inertia, it)


def category_means(item_vectors: np.ndarray, item_categories: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Mean item vector per category, categories sorted by item count (largest first)."""
    cats = np.asarray([str(c) for c in item_categories], dtype=object)
    names, inverse, counts = np.unique(cats, return_inverse=True, return_counts=True)
    sums = np.zeros((len(names), item_vectors.shape[1]))
    np.add.at(sums, inverse, np.asarray(item_vectors, dtype=np.float64))
    means = sums / counts[:, None]
    order = np.lexsort((names, -counts))
    return [str(names[i]) for i in order], means[order]


def segment_category_affinity(user_vectors: np.ndarray, labels: np.ndarray, item_vectors: np.ndarray,
                              item_categories: Sequence[str], top_categories: int = 15,
                              centre: Union[bool, str] = True) -> HeatmapData:
    """Mean model score of each segment's users for each category's items.

    With a dot-product model the mean of ``u · v`` over the users ``u`` of a
    segment and the items ``v`` of a category equals ``mean(u) · mean(v)``,
    so the matrix is ``centroids @ category_means.T`` — exact and cheap.

    Parameters
    ----------
    centre
        True: subtract each category's mean over segments, so the colours show
        which segment likes a category *more than the others* rather than which
        categories are popular with everybody.  ``"both"``: also subtract each
        segment's mean (double centring), so a segment that scores everything
        low (few, inactive users) still shows what it prefers.  False: raw means.
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if len(labels) else 0
    u = np.asarray(user_vectors, dtype=np.float64)
    centroids = np.array([u[labels == s].mean(axis=0) for s in range(k)]) if k else np.zeros((0, u.shape[1]))
    names, means = category_means(item_vectors, item_categories)
    names, means = names[:top_categories], means[:top_categories]
    values = centroids @ means.T if k and len(names) else np.zeros((k, len(names)))
    if centre and k > 1:
        values = values - values.mean(axis=0, keepdims=True)
    if centre == "both" and values.size:
        values = values - values.mean(axis=1, keepdims=True)
    sizes = np.bincount(labels, minlength=k)
    rows = [f"segment {s + 1} ({sizes[s]} users)" for s in range(k)]
    return HeatmapData("User segment × category affinity" + (" (relative)" if centre else ""),
                       rows, names, values, sizes.astype(float))


def describe_segments(labels: np.ndarray, affinity: HeatmapData, n: int = 3) -> list[dict]:
    """Per segment: size and the categories it prefers most (by the affinity matrix)."""
    out = []
    sizes = np.bincount(np.asarray(labels), minlength=len(affinity.rows))
    for s, row in enumerate(affinity.values):
        best = np.argsort(-row, kind="stable")[:n]
        out.append({"segment": s + 1, "users": int(sizes[s]),
                    "top_categories": [affinity.cols[j] for j in best]})
    return out
