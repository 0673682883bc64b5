"""Rules that disagree: two pins for one position, a boost and a bury of one item, a hide that cancels a pin.

Two rules conflict when they can be in force on the same day (both live, windows
overlapping from ``as_of`` on) and fire on the same query, and:

* ``pin position``  they pin different items to the same position;
* ``pin item``      they pin the same item to different positions;
* ``boost bury``    one boosts and the other buries the same items (same attribute and
                    value, or overlapping price ranges);
* ``hide pin``      one hides the item the other pins.

Whether two patterns fire on one query is decided on witness queries: each rule's
own words (a phrase rule for "christmas" fires on the words of one for "christmas
lights"), and the queries of the search log and the suites when the caller passes
them ("christmas" and "lights" as phrases conflict only once someone searched
"christmas lights").  A regular expression fires on the witnesses too; two rules
with the same expression, or one with every query, always share queries.  Ranking resolves every conflict by the
precedence of :data:`merch_app.ranking.rule_hook.PRECEDENCE_TEXT`; a conflict says
which rule wins and why.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from merch_app.ranking.rule_hook import PRECEDENCE, PRECEDENCE_TEXT, precedence_key
from merch_app.ranking.rules import MerchRule, as_of_day, normalise

CONFLICT_KINDS = ("pin position", "pin item", "boost bury", "hide pin", "slot position", "redirect")


@dataclass
class Conflict:
    """Two rules that disagree, where and when, and which one ranking follows."""

    kind: str
    first: MerchRule
    second: MerchRule
    query: str
    start: Optional[str]
    end: Optional[str]
    winner: MerchRule

    @property
    def loser(self) -> MerchRule:
        return self.second if self.winner is self.first else self.first

    def why(self) -> str:
        """Why the winner wins: its kind, its priority, or being newer."""
        w, lo = self.winner, self.loser
        if w.kind != lo.kind and w.kind in PRECEDENCE:
            return f"{w.kind} beats {lo.kind}"
        if (w.priority or 0) != (lo.priority or 0):
            return f"higher priority ({w.priority} over {lo.priority})"
        return "newer rule"

    def sentence(self) -> str:
        """One sentence for people, e.g. ``pin #5 and pin #3 pin different items to position 1 ...``."""
        a, b = self.first, self.second
        what = {
            "pin position": f"pin different items ({a.params.get('item_id')}, {b.params.get('item_id')}) to position "
                            f"{a.params.get('position')}",
            "pin item": f"pin item {a.params.get('item_id')} to different positions ({a.params.get('position')}, "
                        f"{b.params.get('position')})",
            "boost bury": f"boost and bury the same items ({_target(a if a.kind == 'boost' else b)})",
            "hide pin": f"hide and pin item {a.params.get('item_id')}",
            "slot position": f"both fill position {a.params.get('position')}",
            "redirect": f"send shoppers to different pages ({a.params.get('url')}, {b.params.get('url')})",
        }[self.kind]
        when = _window_text(self.start, self.end)
        return (f"{a.label()} ({a.name}) and {b.label()} ({b.name}) {what} for queries like {self.query!r}{when}; "
                f"{self.winner.label()} wins: {self.why()} (precedence: {PRECEDENCE_TEXT})")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rules": [self.first.rule_id, self.second.rule_id],
                "labels": [self.first.label(), self.second.label()], "query": self.query, "start": self.start,
                "end": self.end, "winner": self.winner.rule_id, "winner_label": self.winner.label(),
                "why": self.why(), "sentence": self.sentence()}


def _window_text(start: Optional[str], end: Optional[str]) -> str:
    if start and end:
        return f" from {start} to {end}"
    if start:
        return f" from {start} on"
    if end:
        return f" until {end}"
    return ""


def _target(rule: MerchRule) -> str:
    p = rule.params
    if p.get("attribute") == "price":
        lo, hi = p.get("min"), p.get("max")
        return f"price {'' if lo is None else f'{lo:g}'}..{'' if hi is None else f'{hi:g}'}"
    return f"{p.get('attribute')}={p.get('value')}"


def shared_window(a: MerchRule, b: MerchRule, as_of=None) -> Optional[tuple[Optional[str], Optional[str]]]:
    """The days from ``as_of`` (default today) on when both windows hold, as (start, end); None when there are none."""
    day = as_of_day(as_of)
    starts = [s for s in (a.start, b.start) if s]
    ends = [e for e in (a.end, b.end) if e]
    start, end = max(starts) if starts else None, min(ends) if ends else None
    if (start and end and start > end) or (end and end < day):
        return None
    return start, end


def shared_query(a: MerchRule, b: MerchRule, queries: Iterable[str] = ()) -> Optional[str]:
    """A query both patterns fire on (see the module docstring), or None when none is found.

    ``queries`` are more witnesses (the search log's and the suites' queries).
    """
    if a.every_query and b.every_query:
        return "*"
    for r, o in ((a, b), (b, a)):
        if r.match == "regex" and not r.every_query and (o.every_query or (o.match, o.pattern) == (r.match, r.pattern)):
            return f"a query matching {r.pattern!r}"
    texts = [normalise(r.pattern) for r in (a, b) if not r.every_query and r.match != "regex"]
    for w in dict.fromkeys([*texts, *(normalise(q) for q in queries)]):
        if w and a.pattern_hits(w) and b.pattern_hits(w):
            return w
    return None


def _same_items(boost: MerchRule, bury: MerchRule) -> bool:
    p, q = boost.params, bury.params
    if p.get("attribute") != q.get("attribute"):
        return False
    if p.get("attribute") == "price":
        lo = max(v for v in (p.get("min"), q.get("min"), float("-inf")) if v is not None)
        hi = min(v for v in (p.get("max"), q.get("max"), float("inf")) if v is not None)
        return lo <= hi
    return normalise(p.get("value", "")) == normalise(q.get("value", ""))


def conflict_kind(a: MerchRule, b: MerchRule) -> Optional[str]:
    """Which of :data:`CONFLICT_KINDS` the two rules' effects make, whatever their patterns and windows."""
    kinds = {a.kind, b.kind}
    pa, pb = a.params, b.params
    if kinds == {"pin"}:
        if str(pa.get("item_id")) != str(pb.get("item_id")) and pa.get("position") == pb.get("position"):
            return "pin position"
        if str(pa.get("item_id")) == str(pb.get("item_id")) and pa.get("position") != pb.get("position"):
            return "pin item"
    if kinds == {"boost", "bury"}:
        boost, bury = (a, b) if a.kind == "boost" else (b, a)
        if _same_items(boost, bury):
            return "boost bury"
    if kinds == {"hide", "pin"} and str(pa.get("item_id")) == str(pb.get("item_id")):
        return "hide pin"
    if kinds == {"slot", "pin"} or kinds == {"slot"}:
        if pa.get("position") == pb.get("position") and not (kinds == {"slot"} and _same_items(a, b)):
            return "slot position"
    if kinds == {"redirect"} and pa.get("url") != pb.get("url"):
        return "redirect"
    return None


def conflict_between(a: MerchRule, b: MerchRule, as_of=None, queries: Iterable[str] = ()) -> Optional[Conflict]:
    """The conflict of two rules (both treated as live), or None (``queries``: more witnesses)."""
    kind = conflict_kind(a, b)
    if kind is None:
        return None
    window = shared_window(a, b, as_of)
    if window is None:
        return None
    query = shared_query(a, b, queries)
    if query is None:
        return None
    return Conflict(kind, a, b, query, window[0], window[1], max((a, b), key=precedence_key))


def conflicts_of(rule: MerchRule, others: Iterable[MerchRule], as_of=None,
                 queries: Sequence[str] = ()) -> list[Conflict]:
    """Conflicts ``rule`` would have with the live ``others`` once live (other rules' ids differ from its own)."""
    return [c for o in others if o.status == "live" and (rule.rule_id is None or o.rule_id != rule.rule_id)
            for c in [conflict_between(rule, o, as_of, queries)] if c is not None]


def all_conflicts(rules: Iterable[MerchRule], as_of=None, queries: Sequence[str] = ()) -> list[Conflict]:
    """Every conflict between two live rules of ``rules`` (ordered by the rules' ids)."""
    live = [r for r in rules if r.status == "live"]
    return [c for i, a in enumerate(live) for b in live[i + 1:] for c in [conflict_between(a, b, as_of, queries)]
            if c is not None]
