"""Request and result types of the ranker (plain dataclasses, no behaviour).

Every ranked list carries its score split into components so that the UI,
the CLI and the explanations never recompute anything:

* ``lexical``    w_lex  * min(BM25 / max BM25 over the candidates, query coverage) (in [0, w_lex])
* ``text``       w_text * cos(query vector, item vector)        (in [-w_text, w_text])
* ``cf``         w_cf   * sigmoid(z-score of the user's CF score over all items)
* ``popularity`` w_pop  * popularity prior in [0, 1]
* ``rules``      additive boosts / positional pins of merchandising rules

``components[name]`` is already multiplied by its weight and the components
sum to ``scores`` exactly (up to float rounding, 1e-6); the unweighted values
are in ``raw_components``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Optional

import numpy as np

COMPONENTS = ("lexical", "text", "cf", "popularity", "rules")
# The one name each part has wherever it is shown (screens, charts, CLI tables): the slider's word.
COMPONENT_NAMES = {"lexical": "keywords", "text": "meaning", "cf": "behaviour", "popularity": "popularity",
                   "rules": "rules"}
MODES = ("search", "recommend", "related")

# Chosen by the grid search documented in docs/quality.md (search section).
DEFAULT_WEIGHTS = {"lex": 0.5, "text": 0.5, "cf": 0.2, "pop": 0.1}

_WEIGHT_ALIASES = {
    "lex": "lex", "lexical": "lex", "bm25": "lex",
    "text": "text", "sem": "text", "semantic": "text",
    "cf": "cf", "behaviour": "cf", "behavior": "cf",
    "pop": "pop", "popularity": "pop",
}


@dataclass(frozen=True)
class Weights:
    """Fusion weights of the score components (rules are added unweighted)."""

    lex: float = DEFAULT_WEIGHTS["lex"]
    text: float = DEFAULT_WEIGHTS["text"]
    cf: float = DEFAULT_WEIGHTS["cf"]
    pop: float = DEFAULT_WEIGHTS["pop"]

    @classmethod
    def parse(cls, spec: str | None, base: "Weights | None" = None) -> "Weights":
        """Parse ``"lex=0.5,text=0.3"``; unnamed weights keep ``base`` values.

        Raises
        ------
        ValueError
            On an unknown name or a value that is not a finite number.
        """
        values = asdict(base or cls())
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, raw = part.partition("=")
            key = _WEIGHT_ALIASES.get(name.strip().lower())
            if not sep or key is None:
                raise ValueError(
                    f"bad weight {part!r}: expected NAME=NUMBER with NAME in lex, text, cf, pop"
                )
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"bad weight {part!r}: {raw.strip()!r} is not a number") from None
            if not np.isfinite(value):
                raise ValueError(f"bad weight {part!r}: must be finite")
            values[key] = value
        return cls(**values)

    def for_component(self, name: str) -> float:
        """Weight multiplying the raw value of component ``name``."""
        return {"lexical": self.lex, "text": self.text, "cf": self.cf,
                "popularity": self.pop, "rules": 1.0}[name]


@dataclass(frozen=True)
class Filters:
    """Hard filters applied to candidates before scoring.

    Attributes
    ----------
    category
        Keep only items whose category equals this (case-insensitive).
    price_min, price_max
        Inclusive price range; items without a price fail an active bound.
    has_events
        Keep only items with at least one event (any type).
    """

    category: Optional[str] = None
    price_min: Optional[float] = None
    price_max: Optional[float] = None
    has_events: bool = False

    @property
    def active(self) -> bool:
        return bool(self.category) or self.price_min is not None or self.price_max is not None \
            or self.has_events

    def describe(self) -> str:
        parts = []
        if self.category:
            parts.append(f"category={self.category}")
        if self.price_min is not None:
            parts.append(f"price>={self.price_min:g}")
        if self.price_max is not None:
            parts.append(f"price<={self.price_max:g}")
        if self.has_events:
            parts.append("has-events")
        return ", ".join(parts) or "none"


@dataclass
class RankRequest:
    """What to rank.

    Attributes
    ----------
    mode
        ``search`` (``query``, optionally as ``user_id``), ``recommend``
        (``user_id``) or ``related`` (``item_id``, by ``related_by``).
    k
        Number of results shown.
    candidates
        Candidates taken from each source (lexical, semantic, CF, popularity)
        before fusion; the union is scored.
    prefix
        Treat the last query token as a prefix (as-you-type).
    literal
        Search the query as typed: no spelling correction.
    as_of
        The day (``YYYY-MM-DD``, UTC) whose rules apply: live rules whose validity window
        holds it (None = today), so a merchandiser can preview next week.
    """

    mode: str = "search"
    query: str = ""
    user_id: Optional[str] = None
    item_id: Optional[str] = None
    k: int = 10
    weights: Weights = field(default_factory=Weights)
    filters: Filters = field(default_factory=Filters)
    candidates: int = 300
    related_by: str = "text"
    prefix: bool = True
    literal: bool = False
    as_of: Optional[str] = None

    def key(self) -> tuple:
        """Hashable identity of everything that changes the candidate scores (``as_of`` as a day)."""
        return (self.mode, self.query, self.user_id, self.item_id, self.weights, self.filters,
                int(self.candidates), self.related_by, self.prefix, self.literal,
                self.as_of or datetime.now(timezone.utc).strftime("%Y-%m-%d"))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (asdict(getattr(self, f.name)) if f.name in ("weights", "filters")
                         else getattr(self, f.name)) for f in fields(self)}


@dataclass
class RankedList:
    """The top-k result of one request with its score split.

    ``all_candidate_scores`` holds the final score of every scored candidate
    (sorted, best first) for the score distribution chart; the cut-off is the
    k-th value.  For a search, ``corrected_query`` is the query as searched
    when a misspelt word was corrected (``corrections`` says which), and
    ``item_terms`` lists the query terms each shown item matched.
    """

    request: RankRequest
    item_ids: list[str]
    scores: np.ndarray
    components: dict[str, np.ndarray]
    raw_components: dict[str, np.ndarray]
    titles: list[str]
    categories: list[str]
    prices: list[float]
    all_candidate_scores: np.ndarray
    n_candidates: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    rule_effects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    corrected_query: Optional[str] = None
    corrections: list[dict[str, Any]] = field(default_factory=list)
    item_terms: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.item_ids)

    def rows(self) -> list[dict[str, Any]]:
        """JSON-safe rows ``{rank, item_id, title, category, price, score, components, raw_components,
        matched_terms}``."""
        out = []
        for i, item_id in enumerate(self.item_ids):
            price = self.prices[i]
            out.append({
                "rank": i + 1,
                "item_id": item_id,
                "title": self.titles[i],
                "category": self.categories[i],
                "price": None if price is None or not np.isfinite(price) else float(price),
                "score": float(self.scores[i]),
                "components": {c: float(self.components[c][i]) for c in COMPONENTS},
                "raw_components": {c: float(self.raw_components[c][i]) for c in COMPONENTS},
                "matched_terms": list(self.item_terms[i]) if i < len(self.item_terms) else [],
            })
        return out
