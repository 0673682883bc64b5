"""``explain_item``: everything the UI draws about one ranked item, as data."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from merch_app.explain.lexical_terms import lexical_terms
from merch_app.explain.score_split import score_split
from merch_app.explain.why_not import WhyNot, resolve_item, why_not
from merch_app.explain.word_attribution import item_words, word_attribution
from merch_app.ranking.types import RankRequest


@dataclass
class Explanation:
    """Why one item scored what it did for one request.

    Attributes
    ----------
    components
        Rows ``{component, label, raw, weight, contribution}``; the
        contributions add up to ``score``.
    lexical
        Matched terms, their fields and BM25 shares (search only), else None.
    semantic
        Cosine, leave-one-word-out drops and the word similarity matrix
        (search, and related-by-text with the source item's title as query).
    cf
        ``{"because": [{item_id, title, contribution}], "factors": [...], ...}``;
        empty for anonymous requests or bundles without a CF model.
    popularity
        ``{"value", "contribution"}``.
    rules
        ``[{"rule", "effect"}]`` of rules that moved the item.
    why_not
        Comparison with the last shown result when the item is not in the top k.
    """

    item_id: str
    title: str
    request: dict[str, Any]
    rank: Optional[int]
    status: str
    reason: Optional[str]
    score: float
    components: list[dict[str, Any]]
    lexical: Optional[dict[str, Any]] = None
    semantic: Optional[dict[str, Any]] = None
    cf: dict[str, Any] = field(default_factory=dict)
    popularity: dict[str, float] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)
    why_not: Optional[WhyNot] = None
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (numpy values converted)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["why_not"] = self.why_not.to_dict() if self.why_not else None
        return _json_safe(out)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def explain_item(ranker, request: RankRequest, item_id: str) -> Explanation:
    """Explain ``item_id`` (an id or a title reference) for ``request``.

    Raises
    ------
    merch_app.explain.why_not.ItemNotFound
        The item reference matches nothing.
    """
    item_id, _ = resolve_item(ranker, item_id)
    rank, info = ranker.position_of(request, item_id)
    sc = ranker.score_candidates(request)
    pos = ranker.bundle.item_pos[item_id]
    raw = info["raw_components"]
    exp = Explanation(item_id=item_id, title=info["title"], request=request.to_dict(), rank=rank,
                      status=info["status"], reason=info["reason"], score=float(info["score"]),
                      components=score_split(raw, request.weights), sources=info.get("sources", []))
    if request.mode == "search":
        exp.lexical = lexical_terms(ranker, sc, pos)
    semantic_query = _semantic_query(ranker, request)
    if request.mode == "search" and sc.analysis is not None and sc.analysis.corrected_text:
        semantic_query = sc.analysis.corrected_text.strip()  # what the query vector was made from
    if semantic_query:
        # related: the source title stands in for a query, so the drops are
        # measured against the encoded title (not the source item vector)
        qvec = ranker.query_vector(semantic_query) if request.mode == "search" else None
        exp.semantic = word_attribution(ranker.bundle.encoder, semantic_query, ranker.item_vectors[pos],
                                        item_words(ranker.catalog, pos), query_vector=qvec)
    exp.cf = _cf_part(ranker, request, item_id, raw)
    exp.popularity = {"value": float(raw.get("popularity", 0.0)),
                      "contribution": float(info["components"].get("popularity", 0.0))}
    cand = sc.index_of(pos)
    if cand is not None:
        exp.rules = list(sc.effects.get(cand, []))
    if info["status"] != "shown":
        exp.why_not = why_not(ranker, request, item_id)
    return exp


def _semantic_query(ranker, request: RankRequest) -> str:
    if request.mode == "search":
        return (request.query or "").strip()
    if request.mode == "related" and request.related_by == "text":
        p = ranker.bundle.item_pos.get(str(request.item_id))
        return ranker.catalog.titles[p] if p is not None else ""
    return ""


def _cf_part(ranker, request: RankRequest, item_id: str, raw: dict) -> dict[str, Any]:
    model = ranker.bundle.model
    if request.user_id is None or model is None or ranker.user_cf(request.user_id) is None \
            or request.mode == "related":
        return {}
    detail = model.explain(request.user_id, item_id, top=5)
    titles = ranker.catalog.titles
    because = []
    for b in detail.get("because", []):
        p = ranker.bundle.item_pos.get(str(b["item_id"]))
        because.append({"item_id": str(b["item_id"]), "title": titles[p] if p is not None else "",
                        "contribution": float(b["contribution"])})
    return {"model_score": float(detail.get("score", 0.0)), "squashed": float(raw.get("cf", 0.0)),
            "parts": detail.get("parts", {}), "because": because,
            "factors": list(detail.get("factors", []))}
