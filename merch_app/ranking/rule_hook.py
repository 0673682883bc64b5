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


# Which kind wins when two rules disagree about one item, strongest first; then the higher
# priority, then the newer rule (the larger id; a rule not stored yet counts as newest).
PRECEDENCE = ("hide", "pin", "slot", "bury", "boost")
PRECEDENCE_TEXT = "hide > pin > slot > bury > boost, then the higher priority, then the newer rule"


def precedence_key(rule) -> tuple:
    """Sort key of a rule by precedence: the larger key wins (see :data:`PRECEDENCE`)."""
    kind = getattr(rule, "kind", None)
    strength = len(PRECEDENCE) - PRECEDENCE.index(kind) if kind in PRECEDENCE else 0
    rule_id = getattr(rule, "rule_id", None)
    return strength, getattr(rule, "priority", 0) or 0, float("inf") if rule_id is None else float(rule_id)


def rule_label(rule) -> str:
    """How precedence sentences name a rule: ``pin #12``, or its name when it has no id."""
    label = getattr(rule, "label", None)
    return label() if callable(label) else str(getattr(rule, "name", type(rule).__name__))


def effect_label(effect: dict[str, Any]) -> str:
    """The :func:`rule_label` of the rule behind an entry of :attr:`AppliedRules.effects`."""
    if not effect.get("kind"):
        return str(effect.get("rule"))
    rule_id = effect.get("rule_id")
    return f"{effect['kind']} #{rule_id}" if rule_id is not None else f"this {effect['kind']}"


def beat(winner, loser) -> str:
    """``"pin #12 beat boost #7"``."""
    return f"{rule_label(winner)} beat {rule_label(loser)}"


@dataclass
class AppliedRules:
    """Combined effect of all rules on one candidate set.

    ``pin_rules`` holds, per kept pin, ``{"rule": rule, "precedence": [sentences]}`` (the pins it
    beat; the ranker adds the boosts it beat, which only the final order shows).
    """

    boost: np.ndarray
    hidden: np.ndarray
    hidden_by: dict[int, str]
    pins: dict[int, tuple[int, str]]
    effects: dict[int, list[dict[str, Any]]]
    notes: list[str] = field(default_factory=list)
    pin_rules: dict[int, Any] = field(default_factory=dict)


def _note(entry: dict[str, Any], text: str) -> None:
    entry.setdefault("precedence", [])
    if text not in entry["precedence"]:
        entry["precedence"].append(text)


def apply_rules(rules, ctx: RuleContext) -> AppliedRules:
    """Run every rule on ``ctx`` and combine their effects by precedence.

    Parameters
    ----------
    rules
        Objects with ``apply(ctx) -> RuleEffect`` (see :class:`Rule`); None = no rules.
    ctx
        The request and its candidates before rules apply.

    Returns
    -------
    AppliedRules
        Where rules disagree about one candidate the stronger one wins (:data:`PRECEDENCE_TEXT`):
        a hide drops the pins of the item; of several pins of one item, or of several items to
        one position, the winner's is kept; a bury drops the boosts of the item (buries add up,
        boosts add up).  The loser's effect is listed with ``effect`` 0, ``overruled`` and a
        ``precedence`` sentence ("hide #4 beat pin #12"), the winner's with the same sentence.
    """
    n = len(ctx.positions)
    hidden = np.zeros(n, dtype=bool)
    hidden_by: dict[int, str] = {}
    hiders: dict[int, Any] = {}
    effects: dict[int, list[dict[str, Any]]] = {}
    notes: list[str] = []
    scored: dict[int, list[tuple[Any, float]]] = {}
    wanted: list[tuple[int, int, Any]] = []  # (candidate, 0-based position, rule)
    for rule in rules or ():
        eff = rule.apply(ctx)
        notes.extend(n for n in getattr(eff, "notes", ()) if n not in notes)
        if eff.boost is not None:
            b = np.asarray(eff.boost, dtype=np.float64)
            for i in np.flatnonzero(b):
                scored.setdefault(int(i), []).append((rule, float(b[i])))
        if eff.hide is not None:
            for i in np.flatnonzero(np.asarray(eff.hide, dtype=bool)):
                if not hidden[i]:
                    hidden_by[int(i)] = getattr(rule, "name", type(rule).__name__)
                    hiders[int(i)] = rule
                hidden[i] = True
        wanted.extend((int(i), int(where), rule) for i, where in eff.pins.items())
    boost = np.zeros(n, dtype=np.float64)
    for i, hits in scored.items():
        buries = [r for r, v in hits if _kind(r, v) == "bury"]
        winner = max(buries, key=precedence_key) if buries else None
        entries, beaten = effects.setdefault(i, []), []
        for rule, value in hits:
            entry = {"rule": getattr(rule, "name", type(rule).__name__), "effect": value, **describe_rule(rule)}
            if winner is not None and _kind(rule, value) == "boost":
                entry.update(effect=0.0, overruled=True)
                beaten.append(beat(winner, rule))
                _note(entry, beaten[-1])
            else:
                boost[i] += value
            entries.append(entry)
        for (rule, _), entry in zip(hits, entries):
            if rule is winner:
                for text in beaten:
                    _note(entry, text)
    pins, pin_rules = _resolve_pins(wanted, hidden, hiders, effects)
    return AppliedRules(boost, hidden, hidden_by, pins, effects, notes, pin_rules)


def _kind(rule, value: float) -> str:
    kind = getattr(rule, "kind", None)
    return kind if kind in ("boost", "bury") else ("bury" if value < 0 else "boost")


def _resolve_pins(wanted, hidden, hiders, effects) -> tuple[dict[int, tuple[int, str]], dict[int, dict]]:
    """Keep one pin per item and one item per position, by precedence; losers are explained.

    Returns the pins (candidate -> (0-based position, rule name)) and, per kept pin,
    ``{"rule": rule, "precedence": [sentences]}``.
    """
    kept: dict[int, tuple[int, Any]] = {}
    won: dict[int, list[str]] = {}
    ranked = sorted(enumerate(wanted), key=lambda w: (precedence_key(w[1][2]), w[0]), reverse=True)
    for _, (i, where, rule) in ranked:
        holder = next((j for j, (w, _) in kept.items() if w == where), None)
        winner = hiders[i] if hidden[i] else kept[i][1] if i in kept else kept[holder][1] if holder is not None \
            else None
        if winner is None:
            kept[i] = (where, rule)
            continue
        entry = {"rule": getattr(rule, "name", type(rule).__name__), "effect": 0.0, "pinned_to": None,
                 "wanted_position": where + 1, "overruled": True, **describe_rule(rule)}
        _note(entry, beat(winner, rule))
        effects.setdefault(i, []).append(entry)
        if hidden[i]:
            hide = next((e for e in effects[i] if e.get("hidden")), None)
            if hide is None:
                hide = {"rule": getattr(winner, "name", type(winner).__name__), "effect": 0.0, "hidden": True,
                        **describe_rule(winner)}
                effects[i].insert(0, hide)
            _note(hide, beat(winner, rule))
        else:
            won.setdefault(i if i in kept else holder, []).append(beat(winner, rule))
    pins = {i: (where, getattr(rule, "name", type(rule).__name__)) for i, (where, rule) in kept.items()}
    return pins, {i: {"rule": rule, "precedence": won.get(i, [])} for i, (_, rule) in kept.items()}


def describe_rule(rule) -> dict[str, Any]:
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
        ``from_rank``, ``to_rank``, ``pinned_to``, ``overruled``, ``hidden``, ``precedence``).

    Returns
    -------
    str
    """
    if effect.get("hidden"):
        text = "hidden"
    elif effect.get("overruled"):
        text = "not applied"
        if effect.get("wanted_position") is not None:
            text += f" (wanted position {effect['wanted_position']})"
    else:
        text = f"score {float(effect.get('effect', 0.0)):+.3f}"
        a, b = effect.get("from_rank"), effect.get("to_rank")
        if a is not None or b is not None:
            text += f", moved {a if a is not None else '-'} → {b if b is not None else '-'}"
        if effect.get("pinned_to") is not None:
            text += f" (pinned to {effect['pinned_to']})"
    if effect.get("precedence"):
        text += "; " + "; ".join(effect["precedence"]) + f" (precedence: {PRECEDENCE_TEXT})"
    return text
