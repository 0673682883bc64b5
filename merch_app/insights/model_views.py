"""Insight views that need a trained model: nearest users, segments, maps, full doctor.

The model is duck-typed on :class:`~merch_app.model.hybrid.HybridModel`:
``user_ids``, ``item_ids``, ``U`` (user vectors), ``UW`` (user vectors
through the bilinear matrix, so ``UW[u] @ V[i]`` is the bilinear score), ``V``
(item vectors) and ``score(user_id)``; ``score_matrix(user_idx)`` is used when
present.  Functions return None-free results or raise ``ValueError`` with a
message the UI can show when the model lacks what they need.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from merch_app.insights.common import NO_CATEGORY, InsightError, item_titles
from merch_app.insights.doctor import (
    NEAR_DUPLICATE_COSINE,
    DoctorReport,
    behaviour_doctor,
    cold_start_parts,
    cold_threshold,
    combine_cold_start,
    near_duplicates,
    popularity_bias,
)
from merch_app.insights.heatmaps import HeatmapData
from merch_app.insights.segments import KMeansResult, kmeans, segment_category_affinity
from merch_app.jobs import CancelToken, Progress, ProgressCallback


def _need(model, *attrs: str) -> None:
    if model is None:
        raise InsightError("no trained model: train one on the Train screen first")
    missing = [a for a in attrs if getattr(model, a, None) is None]
    if missing:
        raise InsightError(f"the active model has no {', '.join(missing)} (not a hybrid CF model)")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _centred_unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows minus their mean, scaled to unit length.

    Learned user vectors share a large common component (everyone's text
    vector has the shop's "average product" in it), so raw cosines are all
    near 1; centring compares what is particular to each user.
    """
    x = np.asarray(x, dtype=np.float32)
    return _unit_rows(x - x.mean(axis=0, keepdims=True))


def nearest_users(model, user_id: str, k: int = 10, centre: bool = True) -> list[dict[str, Any]]:
    """Users whose model vectors ``U`` are closest by cosine: ``{user_id, similarity}``.

    ``centre`` subtracts the mean user vector first (see :func:`_centred_unit_rows`).
    An unknown user gives an empty list.
    """
    _need(model, "U", "user_ids")
    ids = [str(u) for u in model.user_ids]
    try:
        u = ids.index(str(user_id))
    except ValueError:
        return []
    vecs = _centred_unit_rows(model.U) if centre else _unit_rows(model.U)
    sims = vecs @ vecs[u]
    sims[u] = -np.inf
    k = min(k, len(ids) - 1)
    if k <= 0:
        return []
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.argsort(-sims[top], kind="stable")]
    return [{"user_id": ids[j], "similarity": float(sims[j])} for j in top]


@dataclass
class Segments:
    """k-means segments of (a seeded sample of) the model's users."""

    user_ids: list[str]
    rows: np.ndarray  # row of each clustered user in model.user_ids
    result: KMeansResult
    affinity: HeatmapData


def user_segments(db, model, k: int = 6, max_users: int = 20000, seed: int = 0,
                  top_categories: int = 15, groups: Optional[Sequence[str]] = None,
                  cancel: Optional[CancelToken] = None) -> Segments:
    """Cluster users by direction of their centred ``U`` (cosine k-means) and score segments × categories.

    The affinity matrix uses ``UW`` and ``V`` so each cell is the mean
    bilinear score of the segment's users for the category's items, double
    centred (per category and per segment; see
    :func:`~merch_app.insights.segments.segment_category_affinity`).
    ``groups`` (one label per model item) replaces the catalogue category.
    """
    _need(model, "U", "UW", "V", "user_ids", "item_ids")
    n = len(model.user_ids)
    if n == 0:
        raise InsightError("the model knows no users")
    rows = np.arange(n)
    if n > max_users:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_users, replace=False))
    result = kmeans(_centred_unit_rows(np.asarray(model.U)[rows]), k, seed=seed, cancel=cancel)
    if groups is None:
        meta = item_titles(db, model.item_ids)
        groups = [meta.get(str(i), ("", NO_CATEGORY))[1] for i in model.item_ids]
    alpha = float(getattr(model, "alpha", 1.0))
    affinity = segment_category_affinity(alpha * np.asarray(model.UW)[rows], result.labels, model.V, groups,
                                         top_categories=top_categories, centre="both")
    return Segments([str(model.user_ids[r]) for r in rows], rows, result, affinity)


def score_rows(model, user_rows: np.ndarray) -> np.ndarray:
    """Scores of model users (row indices) × all items."""
    if hasattr(model, "score_matrix"):
        return np.asarray(model.score_matrix(np.asarray(user_rows, dtype=np.int64)))
    return np.stack([np.asarray(model.score(model.user_ids[r]), dtype=np.float32) for r in user_rows])


def sample_user_rows(model, n_users: int, seed: int = 0) -> np.ndarray:
    n = len(model.user_ids)
    if n <= n_users:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=n_users, replace=False))


def item_event_counts(db, item_ids: Sequence[str]) -> np.ndarray:
    """Events per item in the order of ``item_ids`` (0 for items without events; impressions are not events of the item)."""
    counts = dict(db.execute("SELECT item_id, count(*) FROM events WHERE item_id IS NOT NULL "
                             "AND event_type IS NOT 'impression' GROUP BY item_id"))
    return np.array([counts.get(str(i), 0) for i in item_ids], dtype=np.float64)


def model_doctor(db, bundle, n_users: int = 500, k: int = 10, near_duplicate_threshold: float = NEAR_DUPLICATE_COSINE,
                 seed: int = 0, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> DoctorReport:
    """The full catalogue doctor: text and behaviour checks, near-duplicates, and —
    when the bundle has a CF model — the cold-start lens and popularity bias over
    a seeded sample of ``n_users`` users' top-``k`` lists.

    Parameters
    ----------
    bundle
        A :class:`~merch_app.model.bundle.ModelBundle` (text-only bundles skip
        the model checks with a note) or None (text and behaviour checks only).
    """
    report_progress = progress or (lambda _p: None)
    report_progress(Progress(0, 3, "text and behaviour checks"))
    report = behaviour_doctor(db)
    if bundle is None:
        report.notes.append("no model: near-duplicates, cold-start lens and popularity bias need one")
        return report
    if cancel is not None:
        cancel.check()

    def dup_progress(p: Progress) -> None:
        report_progress(Progress(1 + (p.fraction or 0), 3, "near-duplicate items", p.eta_seconds))

    report.near_duplicates = near_duplicates(bundle.item_ids, bundle.item_vectors, near_duplicate_threshold,
                                             progress=dup_progress, cancel=cancel)
    model = bundle.model
    if model is None or not len(getattr(model, "user_ids", [])):
        report.notes.append("text-only model: cold-start lens and popularity bias need a trained CF model")
        report_progress(Progress(3, 3, "done"))
        return report
    report_progress(Progress(2, 3, "scoring sampled users"))
    rows = sample_user_rows(model, n_users, seed)
    model_items = [str(i) for i in model.item_ids]
    counts = item_event_counts(db, model_items)
    cold_max = cold_threshold(counts)
    cold = counts <= cold_max
    rankings: list[list[str]] = []
    parts = []
    for start in range(0, len(rows), 64):  # 64 users × n_items scores at a time
        if cancel is not None:
            cancel.check()
        s = score_rows(model, rows[start:start + 64])
        parts.append(cold_start_parts(s, cold, k))
        kk = min(k, s.shape[1])
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        for r, t in zip(s, top):
            t = t[np.argsort(-r[t], kind="stable")]
            rankings.append([model_items[j] for j in t])
    if parts:
        report.cold_start = combine_cold_start(parts, cold, k, cold_max)
    report.popularity_bias = popularity_bias(rankings, model_items, counts, k)
    report.notes.append(f"model checks over {len(rows)} sampled users, top {k}")
    report_progress(Progress(3, 3, "done"))
    return report
