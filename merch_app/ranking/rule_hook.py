"""The ranker's rules hook: what a rule sees, what it returns, how effects combine.

A rule looks at the scored candidates of one request and returns a
:class:`RuleEffect`: an additive boost per candidate (which goes into the
``rules`` score component), candidates to hide (a filter the merchandiser
set, reported by "why not") and positional pins.  A pin is turned into an
additive amount too (see :func:`merch_app.ranking.fusion.apply_pins`) so that
components still add up to the score and sorting by score gives the order.
With no rules (the default) the ``rules`` component is zero everywhere.

The rules merchandisers write are in :mod:`merch_app.ranking.rules`.
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

    ``pins`` maps a candidate index to a 0-based result position; ``notes`` are shown with the
    results (e.g. a rule pattern that took too long and was treated as no match).
    """

    boost: Optional[np.ndarray] = None
    hide: Optional[np.ndarray] = None
    pins: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


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
    notes: list[str] = field(default_factory=list)


def apply_rules(rules, ctx: RuleContext) -> AppliedRules:
    """Run every rule on ``ctx`` and combine their effects (boosts add up).

    Parameters
    ----------
    rules
        Objects with ``apply(ctx) -> RuleEffect`` (see :class:`Rule`); None = no rules.
    ctx
        The request and its candidates before rules apply.

    Returns
    -------
    AppliedRules
        Summed boosts, the hidden candidates (and the first rule hiding each),
        pins (the last rule pinning a candidate wins), per-candidate effects and the rules' notes.
    """
    n = len(ctx.positions)
    boost = np.zeros(n, dtype=np.float64)
    hidden = np.zeros(n, dtype=bool)
    hidden_by: dict[int, str] = {}
    pins: dict[int, tuple[int, str]] = {}
    effects: dict[int, list[dict[str, Any]]] = {}
    notes: list[str] = []
    for rule in rules or ():
        eff = rule.apply(ctx)
        name = getattr(rule, "name", type(rule).__name__)
        notes.extend(n for n in getattr(eff, "notes", ()) if n not in notes)
        if eff.boost is not None:
            b = np.asarray(eff.boost, dtype=np.float64)
            boost += b
            for i in np.flatnonzero(b):
                effects.setdefault(int(i), []).append({"rule": name, "effect": float(b[i]),
                                                       **_describe(rule)})
        if eff.hide is not None:
            for i in np.flatnonzero(np.asarray(eff.hide, dtype=bool)):
                if not hidden[i]:
                    hidden_by[int(i)] = name
                hidden[i] = True
        for i, where in eff.pins.items():
            pins[int(i)] = (int(where), name)
    return AppliedRules(boost, hidden, hidden_by, pins, effects, notes)


def _describe(rule) -> dict[str, Any]:
    """Extra fields an effect carries for explanations (kind and id of a stored rule)."""
    out = {}
    if getattr(rule, "kind", None):
        out["kind"] = rule.kind
    if getattr(rule, "rule_id", None) is not None:
        out["rule_id"] = rule.rule_id
    return out


def describe_effect(effect: dict[str, Any]) -> str:
    """One rule effect for people: ``score +0.200, moved 7 → 2 (pinned to 2)``.

    Parameters
    ----------
    effect
        An entry of :attr:`AppliedRules.effects` (``effect``, optionally
        ``from_rank``, ``to_rank``, ``pinned_to``).

    Returns
    -------
    str
    """
    text = f"score {float(effect.get('effect', 0.0)):+.3f}"
    a, b = effect.get("from_rank"), effect.get("to_rank")
    if a is not None or b is not None:
        text += f", moved {a if a is not None else '-'} → {b if b is not None else '-'}"
    if effect.get("pinned_to") is not None:
        text += f" (pinned to {effect['pinned_to']})"
    return text
