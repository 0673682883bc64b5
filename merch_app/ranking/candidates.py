"""Scored candidate sets: what the ranker computes once per request.

A :class:`ScoredCandidates` keeps every scored candidate (not just the top
k) with raw and weighted components, so ``rank``, ``position_of``, the score
distribution chart and the explanations all read the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from merch_app.ranking.lexical import QueryAnalysis, QueryTerms
from merch_app.ranking.types import RankRequest


@dataclass
class ScoredCandidates:
    """All candidates of one request with their score split.

    Attributes
    ----------
    positions
        Bundle positions of every scored candidate (hidden ones included).
    raw, comps
        Raw and weighted components aligned with ``positions``.
    scores
        Final scores (sum of ``comps``).
    order
        Indices into ``positions`` of the visible candidates, best first.
    hidden_by
        Candidate index -> name of the rule that hid it.
    sources
        Candidate index -> set of sources that proposed it
        ("lexical", "semantic", "cf", "popularity", "related").
    bm25_max
        The BM25 normaliser of this request (0 when nothing matched).
    coverage
        Per candidate, the share of the query terms' IDF it matches (the
        lexical component is ``min(bm25 / bm25_max, coverage)``).
    analysis
        The lexical searcher's reading of the query: terms, spelling
        corrections, Han back-offs.
    term_hits
        Candidate index -> which query terms it matched, where computed
        (coverage, truncated lexical list, shown results).
    lexical_cutoff, semantic_cutoff
        Lowest BM25 / cosine that still made a candidate when the source was
        truncated (None when the source returned everything it matched).
    """

    request: RankRequest
    positions: np.ndarray
    raw: dict[str, np.ndarray]
    comps: dict[str, np.ndarray]
    scores: np.ndarray
    order: np.ndarray
    hidden_by: dict[int, str] = field(default_factory=dict)
    effects: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    sources: dict[int, set[str]] = field(default_factory=dict)
    terms: Optional[QueryTerms] = None
    analysis: Optional[QueryAnalysis] = None
    coverage: Optional[np.ndarray] = None
    term_hits: dict[int, np.ndarray] = field(default_factory=dict)
    qvec: Optional[np.ndarray] = None
    bm25_max: float = 0.0
    lexical_cutoff: Optional[float] = None
    semantic_cutoff: Optional[float] = None
    filter_mask: Optional[np.ndarray] = None
    raw_bm25: Optional[np.ndarray] = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    _index: dict[int, int] = field(default_factory=dict, repr=False)

    def index_of(self, pos: int) -> Optional[int]:
        """Candidate index of bundle position ``pos`` (None if not a candidate)."""
        if not self._index and len(self.positions):
            self._index = {int(p): i for i, p in enumerate(self.positions)}
        return self._index.get(int(pos))

    def rank_of(self, cand: int) -> Optional[int]:
        """1-based rank of candidate index ``cand`` among visible ones (None if hidden)."""
        hits = np.flatnonzero(self.order == cand)
        return int(hits[0]) + 1 if hits.size else None

    def why_not_candidate(self, cosine: float, bm25: Optional[float]) -> str:
        """Why an item with this query cosine and BM25 score is not among the candidates (user-facing)."""
        req = self.request
        if req.mode == "search" and self.terms is not None and self.terms.terms:
            if bm25:
                lex = (f"lexical match (BM25 {bm25:.3g}) below the lexical cut-off "
                       f"({self.lexical_cutoff:.3g})" if self.lexical_cutoff is not None
                       else "lexical match not retrieved")
            else:
                lex = "no lexical match"
            cut = f" ({self.semantic_cutoff:.3f})" if self.semantic_cutoff is not None else ""
            return f"not a candidate: {lex} and cosine {cosine:.3f} below semantic cut-off{cut}"
        if req.mode == "related":
            return f"not a candidate: not among the top {req.candidates} {req.related_by} neighbours"
        return f"not a candidate: outside the top {req.candidates} by CF and by popularity"


def union_positions(*arrays: np.ndarray) -> np.ndarray:
    """Distinct positions from several candidate sources, in first-seen order."""
    seen: dict[int, None] = {}
    for arr in arrays:
        for p in np.asarray(arr, dtype=np.int64).tolist():
            if p >= 0:
                seen.setdefault(p, None)
    return np.fromiter(seen.keys(), dtype=np.int64, count=len(seen))


def top_positions(values: np.ndarray, k: int, mask: Optional[np.ndarray] = None,
                  exclude: Optional[int] = None) -> np.ndarray:
    """Positions of the ``k`` largest ``values`` (allowed by ``mask``), best first."""
    vals = np.asarray(values, dtype=np.float64)
    if mask is not None or exclude is not None:
        vals = vals.copy()
        if mask is not None:
            vals[~mask] = -np.inf
        if exclude is not None:
            vals[exclude] = -np.inf
    k = min(k, len(vals))
    if k <= 0:
        return np.zeros(0, np.int64)
    part = np.argpartition(-vals, k - 1)[:k] if k < len(vals) else np.arange(len(vals))
    part = part[np.isfinite(vals[part])]
    return part[np.lexsort((part, -vals[part]))].astype(np.int64)
