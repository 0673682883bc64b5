"""Item groups for colouring and heatmap rows: the category, or text clusters when there is none.

Many shop exports (Online Retail among them) carry no category at all; every
view that groups by category would then show one row.  When fewer than
``min_category_share`` of the items have a category, items are grouped by
k-means over their text vectors instead and each group is named by its most
characteristic title words ("bag · jumbo · retrospot").
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from merch_app.insights.common import NO_CATEGORY, placeholders, words
from merch_app.insights.segments import kmeans
from merch_app.jobs import CancelToken

DEFAULT_TEXT_GROUPS = 12
MIN_CATEGORY_SHARE = 0.5


@dataclass
class ItemGroups:
    """Group label per item (aligned with ``item_ids``) and where the labels came from."""

    item_ids: list[str]
    labels: list[str]
    source: str  # "category" | "text clusters" | "none"

    def mapping(self) -> dict[str, str]:
        return dict(zip(self.item_ids, self.labels))


def _item_rows(db, item_ids: Sequence[str]) -> dict[str, tuple[str, Optional[str]]]:
    ids = [str(i) for i in item_ids]
    out: dict[str, tuple[str, Optional[str]]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for item_id, title, category in db.execute(
            f"SELECT item_id, title, category FROM items WHERE item_id IN ({placeholders(len(chunk))})", chunk
        ):
            out[item_id] = (title or "", category or None)
    return out


def name_clusters(titles: Sequence[str], labels: np.ndarray, n_words: int = 3) -> list[str]:
    """A name per cluster: its ``n_words`` title words with the highest tf-idf.

    tf is the share of the cluster's items whose title has the word, idf is
    ``ln(N / df)`` over all items, so words shared by every cluster sink.
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if len(labels) else 0
    docs = [set(words(t, min_len=3)) for t in titles]
    df = Counter(w for d in docs for w in d)
    n = max(len(docs), 1)
    names = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        tf = Counter(w for m in members for w in docs[m])
        scored = sorted(tf, key=lambda w: (-(tf[w] / max(len(members), 1)) * math.log(n / df[w]), w))
        names.append(" · ".join(scored[:n_words]) or f"group {c + 1}")
    # two clusters with the same name get their number appended
    seen = Counter(names)
    return [f"{nm} ({c + 1})" if seen[nm] > 1 else nm for c, nm in enumerate(names)]


def item_groups(db, item_ids: Sequence[str], item_vectors: Optional[np.ndarray] = None,
                k: int = DEFAULT_TEXT_GROUPS, seed: int = 0, max_fit: int = 20000,
                min_category_share: float = MIN_CATEGORY_SHARE,
                cancel: Optional[CancelToken] = None) -> ItemGroups:
    """Categories when the catalogue has them, else named text clusters, else "(no category)".

    Parameters
    ----------
    item_vectors
        Unit text vectors aligned with ``item_ids`` (e.g. ``bundle.item_vectors``).
    max_fit
        k-means is fitted on a seeded sample of at most this many items; all
        items are then assigned to the nearest centroid.
    """
    ids = [str(i) for i in item_ids]
    rows = _item_rows(db, ids)
    cats = [rows.get(i, ("", None))[1] for i in ids]
    has_cat = sum(c is not None for c in cats)
    if ids and has_cat / len(ids) >= min_category_share:
        return ItemGroups(ids, [c or NO_CATEGORY for c in cats], "category")
    if item_vectors is None or len(ids) < 2:
        return ItemGroups(ids, [NO_CATEGORY] * len(ids), "none")
    v = np.asarray(item_vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    fit_rows = np.arange(len(v))
    if len(v) > max_fit:
        fit_rows = np.sort(np.random.default_rng(seed).choice(len(v), size=max_fit, replace=False))
    fit = kmeans(v[fit_rows], k, seed=seed, cancel=cancel)
    centroids = fit.centroids.astype(np.float32)
    labels = np.empty(len(v), dtype=np.int64)
    for start in range(0, len(v), 20000):  # nearest centroid = largest dot product minus half its norm²
        block = v[start:start + 20000]
        d = block @ centroids.T - 0.5 * np.einsum("ij,ij->i", centroids, centroids)[None, :]
        labels[start:start + 20000] = d.argmax(axis=1)
    titles = [rows.get(i, ("", None))[0] for i in ids]
    names = name_clusters(titles, labels)
    return ItemGroups(ids, [names[c] for c in labels], "text clusters")
