"""Which query terms matched which fields, and each term's BM25 contribution.

Per-term BM25 comes from one FTS5 query per term restricted to the item's
rowid: FTS5's BM25 of an OR query is the sum over its phrases, and a
phrase's IDF and the average row length do not depend on the other phrases,
so these per-term values add up exactly to the item's BM25 for the query.
The fields a term matched come from column-filtered queries (``{title} :
"term"``).  The contribution to the final score is
``w_lex * term_bm25 / bm25_max`` with the request's normaliser, scaled down
alike for every term when the item's coverage of the query caps its lexical
score (see :func:`merch_app.ranking.fusion.lexical_score`).

A misspelt word searched as several weighted alternatives
(:mod:`merch_app.ranking.spelling`) counts with the best of them for the
item, its BM25 times its weight; ``alternatives`` says per corrected word
which alternative that was (None when the item has none of them).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np


def lexical_terms(ranker, sc, pos: int) -> Optional[dict[str, Any]]:
    """Lexical explanation of bundle position ``pos`` within scored request ``sc``.

    Returns
    -------
    dict or None
        ``{"bm25", "bm25_max", "terms": [{"term", "label", "prefix", "bm25",
        "weight", "contribution", "fields"}], "fields_matched", "corrections",
        "alternatives": [{"original", "matched", "weight", "alternatives"}],
        "backoffs", "corrected_query"}``; None when the request has no query terms.
    """
    terms = sc.terms
    if terms is None or not terms.terms:
        return None
    rowid = int(ranker.catalog.rowids[pos])
    parts = ranker.lexical.term_scores(terms, rowid) if rowid >= 0 else [
        {"term": t, "prefix": False, "bm25": 0.0, "fields": []} for t in terms.terms]
    w = sc.request.weights.lex
    norm = sc.bm25_max
    cand = sc.index_of(pos)
    if cand is not None and sc.coverage is not None:
        cover = float(sc.coverage[cand])
    else:
        cover = float(ranker.lexical.coverage(terms, np.array([[p["bm25"] for p in parts]]))[0])
    total = sum(p["bm25"] for p in parts)
    share = total / norm if norm > 0 else 0.0
    scale = min(share, cover) / share if share > 0 else 0.0
    labels = terms.labels()
    for part, label in zip(parts, labels):
        part["label"] = label
        part["contribution"] = w * part["bm25"] / norm * scale if norm > 0 else 0.0
    fields = sorted({f for p in parts for f in p["fields"]})
    analysis = sc.analysis
    return {"bm25": total, "bm25_max": norm, "coverage": cover, "terms": parts,
            "fields_matched": fields,
            "corrections": [c.to_dict() for c in analysis.corrections] if analysis else [],
            "alternatives": _matched_alternatives(analysis, parts) if analysis else [],
            "backoffs": [{"word": w_, "searched_as": list(p_)} for w_, p_ in analysis.backoffs] if analysis else [],
            "corrected_query": analysis.corrected_text if analysis else None}


def _matched_alternatives(analysis, parts: list[dict]) -> list[dict[str, Any]]:
    """Per corrected word: the alternative the item counted with (its term adds BM25), or None."""
    added = {p["term"]: p["bm25"] for p in parts}
    out = []
    for c in analysis.corrections:
        hit = next((a for a in c.alternatives if added.get(a.word, 0.0) > 0), None)
        out.append({"original": c.original, "matched": hit.word if hit else None,
                    "weight": hit.weight if hit else None, "alternatives": [a.word for a in c.alternatives]})
    return out
