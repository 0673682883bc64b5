"""The score of one item split into its weighted components."""
from __future__ import annotations

from typing import Any

from merch_app.ranking.types import COMPONENTS, Weights

LABELS = {  # long forms of ranking.types.COMPONENT_NAMES
    "lexical": "Keywords (BM25 match)",
    "text": "Meaning (text vectors)",
    "cf": "Behaviour (collaborative filtering)",
    "popularity": "Popularity",
    "rules": "Merchandising rules",
}


def score_split(raw: dict[str, float], weights: Weights) -> list[dict[str, Any]]:
    """One row per component: ``{component, label, raw, weight, contribution}``.

    ``contribution = weight * raw`` (rules are unweighted); the contributions
    add up to the item's score.
    """
    rows = []
    for name in COMPONENTS:
        w = weights.for_component(name)
        value = float(raw.get(name, 0.0))
        rows.append({"component": name, "label": LABELS[name], "raw": value, "weight": float(w),
                     "contribution": value * w})
    return rows


def largest_loss(mine: dict[str, float], theirs: dict[str, float]) -> tuple[str | None, dict[str, float]]:
    """Per-component difference ``mine - theirs`` and the most negative one.

    Returns
    -------
    component, deltas
        ``component`` is None when no component is lower than ``theirs``.
    """
    deltas = {c: float(mine.get(c, 0.0)) - float(theirs.get(c, 0.0)) for c in COMPONENTS}
    worst = min(deltas, key=lambda c: deltas[c])
    return (worst if deltas[worst] < 0 else None), deltas
