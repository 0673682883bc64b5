"""Score fusion: normalise raw signals, weight them, order the candidates.

Normalisations (documented in docs/quality.md, search section):

* BM25 is divided by its maximum over the scored candidates of the request
  and capped by the item's coverage of the query (the share of the query
  terms' IDF it matches), so the best match with every query word has 1, an
  item with one of two words at most that word's share, and non-matching
  items 0 (:func:`lexical_score`).
* The CF score of a user is squashed per user: ``sigmoid((s - mean_u) / std_u)``
  with the mean and standard deviation over *all* items for that user, so a
  typical item gets ~0.5, the user's top items approach 1 and the value does
  not depend on which candidates happen to be scored.  Anonymous users (or a
  user unknown to the model) get 0: no CF evidence.
* Text cosine and popularity are used as they are (cosine of unit vectors,
  popularity already in [0, 1]).
"""
from __future__ import annotations

import numpy as np

from merch_app.ranking.types import COMPONENTS, Weights


def normalise_by_max(raw: np.ndarray) -> np.ndarray:
    """``raw / max(raw)`` (zeros when the maximum is not positive, e.g. nothing matched)."""
    raw = np.asarray(raw, dtype=np.float64)
    top = float(raw.max()) if raw.size else 0.0
    return raw / top if top > 0 else np.zeros_like(raw)


def lexical_score(bm25: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Lexical component: ``min(bm25 / max(bm25), coverage)`` (coverage in [0, 1] per item).

    The cap leaves every item that has all query words as it was and stops an
    item with one of two words from taking the whole keyword weight (chosen
    over ``bm25 / max * coverage`` on the known-item set, docs/quality.md).
    """
    return np.minimum(normalise_by_max(bm25), np.asarray(coverage, dtype=np.float64))


def squash_cf(user_scores: np.ndarray) -> np.ndarray:
    """Per-user logistic squashing of CF scores over all items to (0, 1)."""
    s = np.asarray(user_scores, dtype=np.float64)
    if s.size == 0:
        return s
    sd = float(s.std())
    if not np.isfinite(sd) or sd <= 1e-12:
        return np.full_like(s, 0.5)
    z = np.clip((s - float(s.mean())) / sd, -30, 30)
    return 1.0 / (1.0 + np.exp(-z))


def weigh(raw: dict[str, np.ndarray], weights: Weights) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Multiply each raw component by its weight; return them and their sum."""
    n = len(next(iter(raw.values()))) if raw else 0
    comps = {}
    total = np.zeros(n, dtype=np.float64)
    for name in COMPONENTS:
        values = np.asarray(raw.get(name, np.zeros(n)), dtype=np.float64)
        comps[name] = values * weights.for_component(name)
        total += comps[name]
    return comps, total


def order_by_score(scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Candidate indices by descending score; ties by catalogue position."""
    return np.lexsort((positions, -scores))


def apply_pins(scores: np.ndarray, order: np.ndarray,
               pins: dict[int, tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Move pinned candidates to their positions; return (order, score delta).

    The delta is what each pinned candidate's score must change by so that
    it sits between its new neighbours (midpoint); it is added to the
    ``rules`` component, which keeps "components sum to the score" and
    "sorted by score" true.
    """
    delta = np.zeros(len(scores), dtype=np.float64)
    if not pins:
        return order, delta
    live = set(int(i) for i in order)
    pinned = sorted((where, i) for i, (where, _) in pins.items() if i in live)
    rest = [int(i) for i in order if int(i) not in {i for _, i in pinned}]
    final = list(rest)
    for where, i in pinned:
        final.insert(min(max(where, 0), len(final)), i)
    pinned_set = {i for _, i in pinned}
    new = scores.astype(np.float64).copy()
    for j, c in enumerate(final):
        if c not in pinned_set:
            continue
        above = new[final[j - 1]] if j > 0 else None
        below = next((scores[x] for x in final[j + 1:] if x not in pinned_set), None)
        if above is None and below is None:
            value = scores[c]
        elif above is None:
            value = below + 0.01
        elif below is None:
            value = above - 0.01
        else:
            value = (above + below) / 2.0
        new[c] = value
        delta[c] = value - scores[c]
    return np.array(final, dtype=np.int64), delta
