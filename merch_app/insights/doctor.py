"""Catalogue doctor: text problems, duplicates, untouched items, cold start, popularity bias.

The text and behaviour checks need only the workspace; near-duplicates need
item vectors, and the cold-start lens and popularity bias need a score
function (a trained model) — see :func:`merch_app.insights.model_views`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from merch_app.data.id_case import case_groups
from merch_app.evaluation.metrics import gini, long_tail_items
from merch_app.insights.common import words
from merch_app.jobs import CancelToken, EtaClock, Progress, ProgressCallback, Throttle

MIN_TEXT_CHARS = 12
MIN_TEXT_WORDS = 2
NEAR_DUPLICATE_COSINE = 0.95


def _norm_text(title: Optional[str], description: Optional[str]) -> str:
    return " ".join(f"{title or ''} {description or ''}".lower().split())


@dataclass
class TextFindings:
    """Items whose text cannot carry a good text vector."""

    empty: list[str]  # no title and no description
    short: list[dict[str, Any]]  # {item_id, text}: fewer than MIN chars or words
    duplicate_groups: list[list[str]]  # items with identical normalised title + description
    n_items: int = 0

    @property
    def n_duplicate_items(self) -> int:
        return sum(len(g) for g in self.duplicate_groups)


def text_findings(db, min_chars: int = MIN_TEXT_CHARS, min_words: int = MIN_TEXT_WORDS) -> TextFindings:
    """Empty, very short and exactly duplicated item texts (title + description).

    "Short" means fewer than ``min_chars`` characters or fewer than
    ``min_words`` content words (stop words and numbers do not count);
    empty items are not also listed as short.
    """
    empty, short = [], []
    groups: dict[str, list[str]] = defaultdict(list)
    n = 0
    for item_id, title, description in db.execute("SELECT item_id, title, description FROM items ORDER BY item_id"):
        n += 1
        text = _norm_text(title, description)
        if not text:
            empty.append(item_id)
            continue
        if len(text) < min_chars or len(words(text)) < min_words:
            short.append({"item_id": item_id, "text": text})
        groups[text].append(item_id)
    dups = sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    return TextFindings(empty, short, dups, n)


def untouched_items(db, limit: Optional[int] = None) -> tuple[list[str], int]:
    """Items with no event of any kind: (first ``limit`` ids, total count)."""
    sql = ("SELECT item_id FROM items i WHERE NOT EXISTS "
           "(SELECT 1 FROM events e WHERE e.item_id = i.item_id) ORDER BY item_id")
    ids = [r[0] for r in db.execute(sql)]
    return (ids[:limit] if limit else ids), len(ids)


NEAR_DUPLICATE_MAX = 5000  # pairs kept: a report listing exactly this many may have found more


def near_duplicates(item_ids: Sequence[str], vectors: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE,
                    max_pairs: int = NEAR_DUPLICATE_MAX, block: int = 512, progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None) -> list[tuple[str, str, float]]:
    """Pairs of items whose unit vectors have cosine ≥ ``threshold`` (most similar first).

    Blocked brute force (``block`` rows × all items per step), so memory
    stays at ``block × n`` floats; reports progress per block and honours
    ``cancel``.
    """
    v = np.asarray(vectors, dtype=np.float32)
    n = len(v)
    if n < 2:
        return []
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.maximum(norms, 1e-12)
    pairs: list[tuple[int, int, float]] = []
    throttle, clock = Throttle(), EtaClock()
    for start in range(0, n, block):
        if cancel is not None:
            cancel.check()
        sims = v[start:start + block] @ v[start:].T  # only j >= i: each pair once
        rows, cols = np.nonzero(sims >= threshold)
        keep = cols > rows
        for r, c in zip(rows[keep], cols[keep]):
            pairs.append((start + int(r), start + int(c), float(sims[r, c])))
        if len(pairs) > 4 * max_pairs:  # keep memory bounded on degenerate catalogues
            pairs.sort(key=lambda p: -p[2])
            del pairs[max_pairs:]
        done = min(start + block, n)
        if progress is not None and (throttle.ready() or done == n):
            progress(Progress(done, n, "near-duplicates", clock.eta(done, n)))
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return [(str(item_ids[i]), str(item_ids[j]), round(s, 6)) for i, j, s in pairs[:max_pairs]]


@dataclass
class ColdStartLens:
    """Where items without behaviour land in users' rankings, compared with established ones.

    ``percentile`` is the rank position as a share of the catalogue (0 = top,
    1 = bottom), averaged over the sampled users.
    """

    n_users: int
    n_cold: int
    n_warm: int
    cold_mean_percentile: Optional[float]  # None when there are no cold (or no warm) items
    warm_mean_percentile: Optional[float]
    cold_share_catalogue: float
    cold_share_top_k: float
    k: int
    cold_hist: list[int] = field(default_factory=list)  # percentile histogram (10 bins)
    warm_hist: list[int] = field(default_factory=list)
    cold_max_events: int = 0  # "cold" = at most this many events


COLD_STEPS = (0, 1, 2, 3, 5, 10)


def cold_threshold(event_counts: np.ndarray, min_share: float = 0.05) -> int:
    """Largest event count that still makes an item "cold".

    0 (no behaviour at all) when at least ``min_share`` of the catalogue has
    none; otherwise the smallest of 1, 2, 3, 5, 10 events that reaches that
    share — transaction exports, where every item was bought at least once,
    still get a lens on their thinly-known items.
    """
    counts = np.asarray(event_counts)
    if counts.size == 0:
        return 0
    for t in COLD_STEPS:
        if float(np.mean(counts <= t)) >= min_share:
            return t
    return COLD_STEPS[-1]


def cold_start_parts(score_rows: np.ndarray, cold_mask: np.ndarray, k: int = 10) -> dict[str, Any]:
    """Sums behind :class:`ColdStartLens` for one chunk of users (add chunks with ``+``)."""
    s = np.atleast_2d(np.asarray(score_rows, dtype=np.float64))
    cold = np.asarray(cold_mask, dtype=bool)
    n_users, n_items = s.shape
    # rank 0 = best; ties broken by item order for determinism
    order = np.argsort(-s, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(n_users)[:, None], order] = np.arange(n_items)[None, :]
    pct = ranks / max(n_items - 1, 1)
    k = min(k, n_items)
    bins = np.linspace(0, 1, 11)
    cold_p, warm_p = pct[:, cold].ravel(), pct[:, ~cold].ravel()
    return {"n_users": n_users, "cold_sum": float(cold_p.sum()), "cold_n": cold_p.size,
            "warm_sum": float(warm_p.sum()), "warm_n": warm_p.size,
            "top_cold": int(cold[order[:, :k]].sum()), "top_n": n_users * k,
            "cold_hist": np.histogram(cold_p, bins)[0], "warm_hist": np.histogram(warm_p, bins)[0]}


def combine_cold_start(parts: list[dict[str, Any]], cold_mask: np.ndarray, k: int,
                       cold_max_events: int = 0) -> ColdStartLens:
    """The lens from the parts of several user chunks."""
    cold = np.asarray(cold_mask, dtype=bool)
    tot = {key: sum(p[key] for p in parts) for key in ("n_users", "cold_sum", "cold_n", "warm_sum", "warm_n",
                                                       "top_cold", "top_n")}
    hist = {key: np.sum([p[key] for p in parts], axis=0) if parts else np.zeros(10, int)
            for key in ("cold_hist", "warm_hist")}
    return ColdStartLens(
        n_users=int(tot["n_users"]), n_cold=int(cold.sum()), n_warm=int((~cold).sum()),
        cold_mean_percentile=tot["cold_sum"] / tot["cold_n"] if tot["cold_n"] else None,
        warm_mean_percentile=tot["warm_sum"] / tot["warm_n"] if tot["warm_n"] else None,
        cold_share_catalogue=float(cold.mean()) if cold.size else 0.0,
        cold_share_top_k=tot["top_cold"] / tot["top_n"] if tot["top_n"] else 0.0,
        k=min(k, cold.size),
        cold_hist=np.asarray(hist["cold_hist"]).astype(int).tolist(),
        warm_hist=np.asarray(hist["warm_hist"]).astype(int).tolist(),
        cold_max_events=cold_max_events,
    )


def cold_start_lens(score_rows: np.ndarray, cold_mask: np.ndarray, k: int = 10) -> ColdStartLens:
    """Compare rank positions of cold (``cold_mask``) and warm items.

    Parameters
    ----------
    score_rows
        (n_users, n_items) scores, higher = better.
    cold_mask
        (n_items,) bool, True for items without behaviour.
    """
    return combine_cold_start([cold_start_parts(score_rows, cold_mask, k)], cold_mask, k)


@dataclass
class PopularityBias:
    """How concentrated the model's top-k lists are on popular items.

    ``lorenz_x``/``lorenz_y``: share of items (least recommended first) vs
    cumulative share of recommendation slots; the diagonal is perfect equality.
    ``by_popularity``: recommendation slots per popularity decile (0 = most
    popular tenth of the catalogue).
    """

    n_users: int
    k: int
    coverage: float
    long_tail_share: float
    catalogue_tail_share: float
    gini: float
    lorenz_x: list[float]
    lorenz_y: list[float]
    by_popularity: list[float]


def popularity_bias(rankings: Sequence[Sequence[str]], item_ids: Sequence[str], popularity: Sequence[float],
                    k: int = 10, head_share: float = 0.2) -> PopularityBias:
    """Coverage, long-tail share and Gini of the top-``k`` lists, with chart series.

    ``popularity`` is per item of ``item_ids`` (e.g. event counts); the tail is
    everything outside the most popular ``head_share`` of the catalogue.
    """
    ids = [str(i) for i in item_ids]
    pos = {i: n for n, i in enumerate(ids)}
    counts = np.zeros(len(ids))
    slots = 0
    for ranked in rankings:
        for r in list(ranked)[:k]:
            if str(r) in pos:
                counts[pos[str(r)]] += 1
                slots += 1
    pop = dict(zip(ids, np.asarray(popularity, dtype=float)))
    tail = long_tail_items(pop, head_share)
    tail_mask = np.array([i in tail for i in ids], dtype=bool)
    sorted_counts = np.sort(counts)
    lorenz_y = np.concatenate([[0.0], np.cumsum(sorted_counts) / max(sorted_counts.sum(), 1e-12)])
    lorenz_x = np.linspace(0.0, 1.0, len(ids) + 1)
    if len(lorenz_x) > 201:  # enough points for a smooth curve
        pick = np.linspace(0, len(ids), 201).round().astype(int)
        lorenz_x, lorenz_y = lorenz_x[pick], lorenz_y[pick]
    pop_order = sorted(range(len(ids)), key=lambda n: (-pop[ids[n]], ids[n]))
    deciles = np.array_split(np.array(pop_order, dtype=int), 10) if ids else []
    by_pop = [float(counts[d].sum() / slots) if slots and len(d) else 0.0 for d in deciles]
    return PopularityBias(
        n_users=len(rankings), k=k,
        coverage=float((counts > 0).mean()) if len(ids) else 0.0,
        long_tail_share=float(counts[tail_mask].sum() / slots) if slots else 0.0,
        catalogue_tail_share=float(tail_mask.mean()) if len(ids) else 0.0,
        gini=gini(counts),
        lorenz_x=[float(v) for v in lorenz_x], lorenz_y=[float(v) for v in lorenz_y],
        by_popularity=by_pop,
    )


@dataclass
class DoctorReport:
    """All findings of one doctor run (model parts None when there is no model)."""

    n_items: int
    text: TextFindings
    untouched: list[str]
    n_untouched: int
    id_clashes: list[list[str]] = field(default_factory=list)
    near_duplicates: Optional[list[tuple[str, str, float]]] = None
    cold_start: Optional[ColdStartLens] = None
    popularity_bias: Optional[PopularityBias] = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {
            "items": self.n_items,
            "empty_text": len(self.text.empty),
            "short_text": len(self.text.short),
            "duplicate_text_groups": len(self.text.duplicate_groups),
            "duplicate_text_items": self.text.n_duplicate_items,
            "untouched": self.n_untouched,
            "id_case_clash_groups": len(self.id_clashes),
        }
        if self.near_duplicates is not None:
            out["near_duplicate_pairs"] = len(self.near_duplicates)
        if self.popularity_bias is not None:
            pb = self.popularity_bias
            out.update(coverage=pb.coverage, long_tail_share=pb.long_tail_share, gini=pb.gini)
        if self.cold_start is not None:
            out.update(cold_mean_percentile=self.cold_start.cold_mean_percentile,
                       warm_mean_percentile=self.cold_start.warm_mean_percentile)
        return out

    def to_dict(self, limit: int = 100) -> dict[str, Any]:
        t = self.text
        return {
            "summary": self.summary(),
            "empty_text": t.empty[:limit],
            "short_text": t.short[:limit],
            "duplicate_text_groups": t.duplicate_groups[:limit],
            "untouched": self.untouched[:limit],
            "id_case_clashes": self.id_clashes[:limit],
            "near_duplicates": None if self.near_duplicates is None else [
                {"a": a, "b": b, "cosine": s} for a, b, s in self.near_duplicates[:limit]],
            "cold_start": None if self.cold_start is None else asdict(self.cold_start),
            "popularity_bias": None if self.popularity_bias is None else asdict(self.popularity_bias),
            "notes": self.notes,
        }


def behaviour_doctor(db, untouched_limit: int = 5000) -> DoctorReport:
    """The checks that need no model: text findings and untouched items."""
    text = text_findings(db)
    clashes = case_groups(db)
    clash_of = {i: n for n, g in enumerate(clashes) for i in g}
    # a group of duplicate texts that is one id typed two ways is filed as an id clash only
    text.duplicate_groups = [g for g in text.duplicate_groups
                             if len({clash_of.get(i, i) for i in g}) > 1 or g[0] not in clash_of]
    untouched, n_untouched = untouched_items(db, untouched_limit)
    return DoctorReport(text.n_items, text, untouched, n_untouched, id_clashes=clashes)

