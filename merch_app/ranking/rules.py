"""The hook merchandising rules plug into (the rules themselves come later).

A rule looks at the scored candidates of one request and returns a
:class:`RuleEffect`: an additive boost per candidate (which goes into the
``rules`` score component), candidates to hide (a filter the merchandiser
set, reported by "why not") and positional pins.  A pin is turned into an
additive amount too (see :func:`merch_app.ranking.fusion.apply_pins`) so that
components still add up to the score and sorting by score gives the order.
With no rules (the default) the ``rules`` component is zero everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import numpy as np


@dataclass
class RuleContext:
    """What a rule sees: the request and the candidates before rules apply.

    Attributes
    ----------
    positions
        Bundle positions of the candidates.
    scores
        Fused scores without rules, aligned with ``positions``.
    """

    request: Any
    positions: np.ndarray
    scores: np.ndarray
    catalog: Any


@dataclass
class RuleEffect:
    """Effect of one rule on the candidates of a request (arrays aligned with them).

    ``pins`` maps a candidate index to a 0-based result position.
    """

    boost: Optional[np.ndarray] = None
    hide: Optional[np.ndarray] = None
    pins: dict[int, int] = field(default_factory=dict)


class Rule(Protocol):
    """A merchandising rule."""

    name: str

    def apply(self, ctx: RuleContext) -> RuleEffect:
        ...


@dataclass
class AppliedRules:
    """Combined effect of all rules on one candidate set."""

    boost: np.ndarray
    hidden: np.ndarray
    hidden_by: dict[int, str]
    pins: dict[int, tuple[int, str]]
    effects: dict[int, list[dict[str, Any]]]


def apply_rules(rules, ctx: RuleContext) -> AppliedRules:
    """Run every rule on ``ctx`` and combine their effects (boosts add up)."""
    n = len(ctx.positions)
    boost = np.zeros(n, dtype=np.float64)
    hidden = np.zeros(n, dtype=bool)
    hidden_by: dict[int, str] = {}
    pins: dict[int, tuple[int, str]] = {}
    effects: dict[int, list[dict[str, Any]]] = {}
    for rule in rules or ():
        eff = rule.apply(ctx)
        name = getattr(rule, "name", type(rule).__name__)
        if eff.boost is not None:
            b = np.asarray(eff.boost, dtype=np.float64)
            boost += b
            for i in np.flatnonzero(b):
                effects.setdefault(int(i), []).append({"rule": name, "effect": float(b[i])})
        if eff.hide is not None:
            for i in np.flatnonzero(np.asarray(eff.hide, dtype=bool)):
                if not hidden[i]:
                    hidden_by[int(i)] = name
                hidden[i] = True
        for i, where in eff.pins.items():
            pins[int(i)] = (int(where), name)
    return AppliedRules(boost, hidden, hidden_by, pins, effects)
