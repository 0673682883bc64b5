"""2-D maps of item (and user) vectors by PCA, coloured by category."""
from __future__ import annotations

from dataclasses import dataclass, field
from collections import Counter
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from merch_app.insights.common import NO_CATEGORY, item_titles
from merch_app.jobs import CancelToken

MAX_CATEGORY_COLOURS = 12  # further categories are drawn as "(other)"


@dataclass
class Projection:
    """A fitted PCA: ``(x - mean) @ components.T`` gives the coordinates."""

    mean: np.ndarray
    components: np.ndarray  # (n_components, d)
    explained_ratio: np.ndarray  # share of the total variance per component

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T).astype(np.float32)


def fit_pca(x: np.ndarray, n_components: int = 2, block: int = 20000, max_rows: Optional[int] = 50000,
            seed: int = 0, cancel: Optional[CancelToken] = None) -> Projection:
    """Principal axes of ``x`` from the d × d covariance (cheap for many rows, few dims).

    The axes are fitted on a seeded sample of ``max_rows`` rows when ``x`` is
    larger (the two leading axes of 100k text vectors barely move; the fit
    drops from ~14 s to ~1 s on two cores); large inputs are multiplied in
    float32.  The sign of each axis is fixed (its largest loading is
    positive) so maps do not flip between runs.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 rows.
    """
    x = np.asarray(x)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError("PCA needs at least 2 vectors")
    if max_rows is not None and len(x) > max_rows:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), size=max_rows, replace=False))]
    mean = x.mean(axis=0, dtype=np.float64)
    dtype = np.float64 if x.size <= 2_000_000 else np.float32
    cov = np.zeros((x.shape[1], x.shape[1]))
    for start in range(0, len(x), block):
        if cancel is not None:
            cancel.check()
        xc = (np.asarray(x[start:start + block], dtype=np.float64) - mean).astype(dtype, copy=False)
        cov += (xc.T @ xc).astype(np.float64)
    cov /= len(x) - 1
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][:n_components]
    comps = eigvec[:, order].T
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    total = float(np.clip(eigval, 0, None).sum())
    ratio = np.clip(eigval[order], 0, None) / total if total > 0 else np.zeros(len(order))
    if len(order) < n_components:  # fewer dims than components asked
        pad = n_components - len(order)
        comps = np.vstack([comps, np.zeros((pad, x.shape[1]))])
        ratio = np.concatenate([ratio, np.zeros(pad)])
    return Projection(mean, comps, ratio)


@dataclass
class EmbeddingMap:
    """Points on a 2-D map with what the UI needs to colour, label and open them.

    ``category_codes[i]`` indexes ``categories``; the last name is "(other)"
    when there were more categories than colours.
    """

    kind: str  # "item" | "user"
    ids: list[str]
    xy: np.ndarray  # (n, 2) float32
    titles: list[str]
    category_codes: np.ndarray
    categories: list[str]
    explained_ratio: np.ndarray
    projection: Optional[Projection] = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self, limit: int = 50) -> dict[str, Any]:
        return {
            "kind": self.kind, "points": len(self.ids), "categories": self.categories,
            "explained_ratio": [round(float(r), 4) for r in self.explained_ratio],
            "sample": [{"id": self.ids[i], "title": self.titles[i], "x": float(self.xy[i, 0]),
                        "y": float(self.xy[i, 1]), "category": self.categories[self.category_codes[i]]}
                       for i in range(min(limit, len(self.ids)))],
        }


def encode_categories(labels: Sequence[str], max_colours: int = MAX_CATEGORY_COLOURS) -> tuple[np.ndarray, list[str]]:
    """Codes per label with the most frequent ``max_colours`` categories kept, the rest "(other)"."""
    labels = [str(c) if c else NO_CATEGORY for c in labels]
    names, inverse, counts = np.unique(np.asarray(labels, dtype=object), return_inverse=True, return_counts=True)
    order = np.lexsort((names, -counts))
    keep = order[:max_colours]
    code_of = np.full(len(names), len(keep), dtype=np.int32)
    code_of[keep] = np.arange(len(keep), dtype=np.int32)
    cats = [str(names[i]) for i in keep] + (["(other)"] if len(names) > len(keep) else [])
    return code_of[inverse.ravel()], cats


def build_map(kind: str, ids: Sequence[str], vectors: np.ndarray, titles: Sequence[str],
              categories: Sequence[str], max_points: Optional[int] = None, seed: int = 0,
              cancel: Optional[CancelToken] = None) -> EmbeddingMap:
    """PCA-project ``vectors`` to 2-D; a seeded sample of ``max_points`` rows if given.

    The projection is fitted on all rows (sampling only thins the drawing).
    """
    vectors = np.asarray(vectors)
    projection = fit_pca(vectors, 2, cancel=cancel)
    rows = np.arange(len(vectors))
    if max_points is not None and len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_points, replace=False))
    xy = projection.transform(vectors[rows])
    codes, names = encode_categories([categories[i] for i in rows])
    return EmbeddingMap(kind, [str(ids[i]) for i in rows], xy, [str(titles[i]) for i in rows],
                        codes, names, projection.explained_ratio, projection)


def item_map(db, item_ids: Sequence[str], item_vectors: np.ndarray, max_points: Optional[int] = None,
             seed: int = 0, groups: Optional[Sequence[str]] = None,
             cancel: Optional[CancelToken] = None) -> EmbeddingMap:
    """Map of catalogue items (e.g. ``bundle.item_ids`` / ``bundle.item_vectors``), coloured by category.

    ``groups`` (one label per item) replaces the category as colour, e.g.
    text clusters for catalogues without categories.
    """
    meta = item_titles(db, item_ids)
    titles = [meta.get(str(i), ("", NO_CATEGORY))[0] or str(i) for i in item_ids]
    cats = list(groups) if groups is not None else [meta.get(str(i), ("", NO_CATEGORY))[1] for i in item_ids]
    return build_map("item", item_ids, item_vectors, titles, cats, max_points, seed, cancel)


def user_map(db, user_ids: Sequence[str], user_vectors: np.ndarray, max_points: Optional[int] = None,
             seed: int = 0, item_group: Optional[Mapping[str, str]] = None,
             cancel: Optional[CancelToken] = None) -> EmbeddingMap:
    """Map of users coloured by the category (or ``item_group`` label) they touched most."""
    per_user: dict[str, Counter] = {}
    if item_group is None:
        sql = """SELECT e.user_id, coalesce(nullif(i.category, ''), ?), count(*)
                 FROM events e LEFT JOIN items i ON i.item_id = e.item_id
                 WHERE e.user_id IS NOT NULL AND e.event_type IS NOT 'impression' GROUP BY 1, 2"""
        rows = db.execute(sql, [NO_CATEGORY])
    else:
        rows = ((u, item_group.get(i, NO_CATEGORY), n) for u, i, n in db.execute(
            "SELECT user_id, item_id, count(*) FROM events WHERE user_id IS NOT NULL "
            "AND event_type IS NOT 'impression' GROUP BY 1, 2"))
    for user, cat, n in rows:
        per_user.setdefault(user, Counter())[cat] += n
    top = {u: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for u, c in per_user.items()}
    titles = [f"user {u}" for u in user_ids]
    cats = [top.get(str(u), NO_CATEGORY) for u in user_ids]
    return build_map("user", user_ids, user_vectors, titles, cats, max_points, seed, cancel)
