"""Merchandising rules: the rules merchandisers write, and their storage.

The ranker's rules hook (:class:`RuleContext`, :class:`RuleEffect`,
:func:`apply_rules`, ...) is in :mod:`merch_app.ranking.rule_hook`.

The rules (:class:`MerchRule`, stored in the workspace table ``rules``):

* ``pin``      put ``item_id`` at ``position`` (1-based) for matching queries;
* ``boost``    add ``weight`` to items whose ``category`` / ``tag`` / ``price``
               range / ``item`` matches; ``bury`` subtracts it;
* ``hide``     never show ``item_id`` for matching queries;
* ``synonym``  a query containing one of ``terms`` also searches the others;
* ``rewrite``  a matching query is searched as ``to`` instead.

What a rule's ``pattern`` matches is its explicit ``match`` type; the query and the
pattern are compared case-insensitively with whitespace collapsed, word by word:

* ``exact``  the query is exactly the pattern ("christmas" fires on "christmas" only);
* ``phrase`` the query holds the pattern's words next to each other, in this order, maybe
             with more words around them ("christmas" fires on "christmas lights" and on
             "red christmas lights"; "christmas lights" does not fire on "lights christmas");
* ``all``    the query holds every word of the pattern, in any order, maybe with more
             ("christmas lights" fires on "lights for christmas" too);
* ``regex``  a regular expression search in the query (``^...$`` to anchor it).

A pattern ``*`` (or empty) means every request, also recommendations.  Words match whole:
an incomplete as-you-type query ("christm") never fires a rule for "christmas" (only a
regex can match inside a word), and the log-based previews and usage counts leave out the
searches a shopper was still typing (see :mod:`merch_app.evaluation.rule_usage`).  A rule
made without a match type reads the old prefixes (``re:``, ``exact:``, a glob, plain words:
:func:`merch_app.data.rule_patterns.legacy_pattern`).

Lifecycle: a rule is a ``draft`` (never applies; the impact preview shows what it would do),
``live`` or ``expired`` (set by hand).  A live rule applies only inside its validity window
(``start`` / ``end`` dates, inclusive, UTC; either may be open) *as of* the request's date
(:attr:`merch_app.ranking.types.RankRequest.as_of`, default today), so past the end it is
shown as expired and before the start as scheduled (:meth:`MerchRule.state`).  Every change
is kept in the ``rule_log`` table (:func:`rule_log`).

``re:`` patterns run on the ``regex`` module with a time limit (:data:`REGEX_TIMEOUT_S` per
query): a pattern that backtracks for longer counts as no match and the results say so, so no
rule can hang ranking.  :func:`validate_rule` refuses such patterns when they are saved: nested
repetition (``(a+)+``, ``(ab*c?)*``) and any pattern slow on a few adversarial queries.
"""
from __future__ import annotations

import functools
import getpass
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any, Optional

import numpy as np
import regex

from merch_app.data.rule_patterns import legacy_pattern
from merch_app.errors import MerchAppError
from merch_app.jobs import pause_point
from merch_app.ranking.rule_hook import RuleContext, RuleEffect

# ------------------------------------------------------------ merch rules
RULE_KINDS = ("pin", "slot", "boost", "bury", "hide", "synonym", "rewrite", "redirect")
MATCH_TYPES = ("exact", "phrase", "all", "regex")
STATUSES = ("draft", "live", "expired")
ATTRIBUTES = ("category", "tag", "price", "item")
REDIRECT_NOTE = "redirect to"
MAX_WEIGHT = 10.0
_TAG_SPLIT = re.compile(r"[,;|]")
REGEX_TIMEOUT_S = 0.05  # one search of a rule's regex over a query; longer counts as no match
TRIAL_TIMEOUT_S = 0.05  # one trial search when a pattern is saved (normal patterns take microseconds)


class RuleError(MerchAppError, ValueError):
    """A rule is invalid or missing (message is user-facing)."""


def normalise(text: str) -> str:
    return " ".join(str(text or "").casefold().split())


def as_of_day(as_of=None) -> str:
    """The day ``as_of`` names, ``'YYYY-MM-DD'``: today (UTC) for None, else a date, datetime or ISO text.

    Raises
    ------
    RuleError
        ``as_of`` is text that is not a date.
    """
    if as_of is None:
        return datetime.now(timezone.utc).strftime("%Y-%m-%d")
    if isinstance(as_of, (date, datetime)):
        return as_of.strftime("%Y-%m-%d")
    return _day(str(as_of), "as-of date")


def _day(text: str, what: str) -> str:
    try:
        return date.fromisoformat(text.strip()[:10]).isoformat()
    except ValueError:
        raise RuleError(f"{what} {text!r} is not a date; write it as YYYY-MM-DD (e.g. 2026-11-27)") from None


def pattern_matches(pattern: str, query: str, match: Optional[str] = None) -> bool:
    """Whether ``query`` matches ``pattern`` as ``match`` type (None: the old prefixes, see the module docstring)."""
    return match_pattern(pattern, query, match)[0]


def match_pattern(pattern: str, query: str, match: Optional[str] = None) -> tuple[bool, Optional[str]]:
    """``(matches, note)``: as :func:`pattern_matches`, with a note when a regex was given up on
    (too slow on this query, or not a valid expression) and counted as no match."""
    if match is None:
        match, pattern = legacy_pattern(pattern)
    pat = (pattern or "").strip()
    if pat in ("", "*"):
        return True, None
    q = normalise(query)
    if match == "regex":
        found, problem = _regex_search(pat, q)
        return found, problem and f"rule pattern {pat!r} {problem}: treated as no match"
    p = normalise(pat)
    if match == "exact":
        return q == p, None
    if match == "all":
        return set(p.split()) <= set(q.split()), None
    return f" {p} " in f" {q} ", None


@functools.lru_cache(maxsize=512)
def _compiled(expr: str):
    return regex.compile(expr, regex.IGNORECASE)


@functools.lru_cache(maxsize=4096)  # a slow pattern costs its time limit once per query, not per call
def _regex_search(expr: str, text: str) -> tuple[bool, Optional[str]]:
    try:
        return _compiled(expr).search(text, timeout=REGEX_TIMEOUT_S) is not None, None
    except TimeoutError:
        return False, f"took longer than {REGEX_TIMEOUT_S * 1000:.0f} ms on this query"
    except (regex.error, ValueError, TypeError) as exc:  # stored before validation, or edited in the file
        return False, f"is not a valid regular expression ({exc})"


_QUANTIFIER = regex.compile(r"[*+?]|\{(\d*)(,?)(\d*)\}")


def _quantifier_at(expr: str, i: int) -> tuple[Optional[float], int]:
    """(most repetitions, length) of the quantifier starting at ``expr[i]``, or (None, 0)."""
    m = _QUANTIFIER.match(expr, i)
    if m is None or (m.group(0).startswith("{") and not (m.group(1) or m.group(3))):
        return None, 0
    text, end = m.group(0), m.end()
    if end < len(expr) and expr[end] in "?+":  # lazy or possessive
        end += 1
    if text in ("*", "+"):
        return math.inf, end - i
    if text == "?":
        return 1, end - i
    if not m.group(2):
        return int(m.group(1)), end - i
    return (int(m.group(3)) if m.group(3) else math.inf), end - i


def _nested_repeat(expr: str) -> Optional[str]:
    """The first repeated group that itself holds an unbounded repeat (``(a+)+``), or None.

    Such a group can split a long run of matching characters in exponentially many ways,
    and a backtracking engine tries them all when the rest of the pattern fails.
    """
    stack: list[list] = [[0, False]]  # per open group: where it starts, whether it holds an unbounded repeat
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":  # a character class: quantifier characters inside are literal
            j = i + 1 + (expr[i + 1:i + 2] == "^")
            j += expr[j:j + 1] == "]"
            while j < n and expr[j] != "]":
                j += 2 if expr[j] == "\\" else 1
            i = j + 1
            continue
        if c == "(":
            stack.append([i, False])
            i += 1
            continue
        if c == ")" and len(stack) > 1:
            start, unbounded = stack.pop()
            most, length = _quantifier_at(expr, i + 1)
            if unbounded and most is not None and most > 1:
                return expr[start:i + 1 + length]
            stack[-1][1] = stack[-1][1] or unbounded or most == math.inf
            i += 1 + length
            continue
        most, length = _quantifier_at(expr, i)
        if most == math.inf:
            stack[-1][1] = True
        i += max(length, 1)
    return None


def _trial_queries(expr: str) -> list[str]:
    """Long runs of the pattern's own letters (and a few usual ones), each ending in a mismatch."""
    chars = dict.fromkeys([c for c in regex.sub(r"\\.", "", expr).casefold() if c.isalnum()][:12] + list("a0"))
    runs = [c * 30 for c in chars] + [f"{c} " * 15 for c in chars]
    return [r + tail for r in runs for tail in ("!", " !")]


def _check_regex(expr: str) -> None:
    """Refuse an invalid regular expression, or one that may backtrack for a long time (RuleError)."""
    pattern = expr
    try:
        compiled = regex.compile(expr, regex.IGNORECASE)
    except (regex.error, ValueError) as exc:
        raise RuleError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
    nested = _nested_repeat(expr)
    if nested:
        raise RuleError(f"pattern {pattern!r} repeats a group that itself repeats ({nested}): such a pattern can "
                        "take exponentially long on some queries; write it without the nested repetition "
                        "(e.g. 'a+' instead of '(a+)+')")
    for text in _trial_queries(expr):
        try:
            compiled.search(text, timeout=TRIAL_TIMEOUT_S)
        except TimeoutError:
            raise RuleError(f"pattern {pattern!r} takes too long on a query like {text[:40]!r} (the regular "
                            "expression backtracks); simplify it, e.g. remove alternatives that can match the "
                            "same text") from None


def _tags(text: str) -> set[str]:
    parts = [t.strip().casefold() for t in _TAG_SPLIT.split(text or "")]
    words = {w for t in parts for w in t.split()}
    return {t for t in parts if t} | words


@dataclass
class MerchRule:
    """One merchandising rule (see the module docstring for kinds, match types and the lifecycle).

    ``params`` by kind: pin ``{item_id, position}``; boost/bury ``{attribute,
    value | min/max, weight}``; hide ``{item_id}``; synonym ``{terms}``;
    rewrite ``{to}``; slot ``{attribute, value | min/max, position}`` (the best-scored item with the
    attribute that is not already above the position is put there: "any item of category X at 3");
    redirect ``{url}`` (shoppers searching it are sent to a page: the results say so, as a note).
    ``match`` empty = read from old pattern prefixes.
    ``enabled`` mirrors ``status == "live"`` (a rule made with ``enabled=False`` and no
    status is a draft); change ``status`` to switch a rule.
    """

    kind: str
    pattern: str = "*"
    params: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    enabled: bool = True
    rule_id: Optional[int] = None
    priority: int = 0
    status: str = ""
    match: str = ""
    start: Optional[str] = None
    end: Optional[str] = None
    owner: str = ""
    comment: str = ""
    tags: list[str] = field(default_factory=list)
    created: Optional[str] = None
    updated: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.match:
            self.match, self.pattern = legacy_pattern(self.pattern)
        if not self.status:
            self.status = "live" if self.enabled else "draft"
        self.enabled = self.status == "live"
        if not self.name:
            self.name = self.describe()

    @property
    def every_query(self) -> bool:
        """The pattern is ``*`` (or empty): every request."""
        return (self.pattern or "").strip() in ("", "*")

    def describe(self) -> str:
        """Short human-readable summary, e.g. ``pin 22004 at 1 for 'mug'`` (``exact 'mug'`` etc. for other match types)."""
        p = self.params
        shown = {"phrase": "", "exact": "exact ", "all": "all of ", "regex": "regex "}.get(self.match, "")
        where = f" for {shown}{self.pattern!r}" if not self.every_query else ""
        if self.kind == "pin":
            return f"pin {p.get('item_id')} at {p.get('position')}{where}"
        if self.kind in ("boost", "bury", "slot"):
            if p.get("attribute") == "price":
                lo = "" if p.get("min") is None else f"{p['min']:g}"
                hi = "" if p.get("max") is None else f"{p['max']:g}"
                what = f"price {lo}..{hi}"
            else:
                what = f"{p.get('attribute')}={p.get('value')}"
            if self.kind == "slot":
                return f"slot {what} at {p.get('position')}{where}"
            return f"{self.kind} {what} by {p.get('weight')}{where}"
        if self.kind == "redirect":
            return f"redirect {shown}{self.pattern!r} to {p.get('url')}"
        if self.kind == "hide":
            return f"hide {p.get('item_id')}{where}"
        if self.kind == "synonym":
            terms = p.get("terms", [])
            return "synonyms " + (terms if isinstance(terms, str) else " = ".join(terms))
        if self.kind == "rewrite":
            return f"rewrite {shown}{self.pattern!r} -> {p.get('to')!r}"
        return self.kind

    def label(self) -> str:
        """``pin #12`` (``this pin`` before it is stored): how precedence and conflicts name it."""
        return f"{self.kind} #{self.rule_id}" if self.rule_id is not None else f"this {self.kind}"

    # -- lifecycle -------------------------------------------------------
    def in_window(self, as_of=None) -> bool:
        """Whether the day ``as_of`` (default today, UTC) is inside the validity window."""
        day = as_of_day(as_of)
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)

    def in_force(self, as_of=None) -> bool:
        """Live and inside its window on ``as_of``: the rule applies in ranking."""
        return self.status == "live" and self.in_window(as_of)

    def state(self, as_of=None) -> str:
        """What the rule is on ``as_of``: ``draft``, ``live``, ``scheduled`` (live, window not started) or
        ``expired`` (set by hand, or live past the end of its window)."""
        if self.status != "live":
            return self.status
        day = as_of_day(as_of)
        if self.end is not None and day > self.end:
            return "expired"
        if self.start is not None and day < self.start:
            return "scheduled"
        return "live"

    def pattern_hits(self, query: str, notes: Optional[list[str]] = None) -> bool:
        """Whether the pattern (whatever the status and window) matches ``query``; a given-up regex adds a note."""
        if self.kind == "synonym":
            return self._synonym_term(query) is not None
        found, note = match_pattern(self.pattern, query, self.match)
        if note and notes is not None and note not in notes:
            notes.append(note)
        return found

    def matches(self, query: str, notes: Optional[list[str]] = None, as_of=None) -> bool:
        """Whether the rule is in force on ``as_of`` and its pattern matches ``query``."""
        if not self.in_force(as_of):
            return False
        found, note = match_pattern(self.pattern, query, self.match)
        if note and notes is not None and note not in notes:
            notes.append(note)
        return found

    # -- the ranker hook -------------------------------------------------
    def apply(self, ctx: RuleContext) -> RuleEffect:
        n = len(ctx.positions)
        query = getattr(ctx.request, "query", "") or ""
        if self.kind in ("synonym", "rewrite") or (n == 0 and self.kind != "redirect"):
            return RuleEffect()
        notes: list[str] = []
        if not self.matches(query, notes, getattr(ctx.request, "as_of", None)):
            return RuleEffect(notes=notes)
        if self.kind == "redirect":  # also, and most of all, for a query with no results
            return RuleEffect(notes=notes + [f"{REDIRECT_NOTE} {self.params['url']} ({self.label()}: "
                                             f"the storefront sends shoppers there; the results below are "
                                             f"what the search itself would show)"])
        if self.kind == "slot":
            return RuleEffect(pins=self._slot_pin(ctx), notes=notes)
        if self.kind in ("pin", "hide"):
            hits = self._item_mask(ctx)
            if self.kind == "hide":
                return RuleEffect(hide=hits)
            idx = np.flatnonzero(hits)
            return RuleEffect(pins={int(idx[0]): int(self.params["position"]) - 1} if idx.size else {})
        mask = self.attribute_mask(ctx.catalog, ctx.positions)
        sign = -1.0 if self.kind == "bury" else 1.0
        return RuleEffect(boost=np.where(mask, sign * float(self.params["weight"]), 0.0))

    def _slot_pin(self, ctx: RuleContext) -> dict[int, int]:
        """The slot's pin: the best-scored candidate with the attribute not already above the slot."""
        where = int(self.params["position"]) - 1
        order = np.argsort(-np.asarray(ctx.scores, dtype=np.float64), kind="stable")
        mask = self.attribute_mask(ctx.catalog, ctx.positions)
        below = [int(i) for i in order[where:] if mask[i]]
        return {below[0]: where} if below else {}

    def _item_mask(self, ctx: RuleContext) -> np.ndarray:
        wanted = str(self.params.get("item_id"))
        return np.array([ctx.catalog.item_ids[int(p)] == wanted for p in ctx.positions], dtype=bool)

    def attribute_mask(self, catalog, positions: np.ndarray) -> np.ndarray:
        """Which of ``positions`` have the boosted/buried attribute."""
        p = self.params
        attr = p.get("attribute")
        pos = np.asarray(positions, dtype=np.int64)
        if attr == "price":
            prices = catalog.prices[pos]
            mask = np.isfinite(prices)
            if p.get("min") is not None:
                mask &= prices >= float(p["min"])
            if p.get("max") is not None:
                mask &= prices <= float(p["max"])
            return mask
        value = normalise(p.get("value", ""))
        if attr == "category":
            return np.array([normalise(catalog.category(int(i))) == value for i in pos], dtype=bool)
        if attr == "tag":
            return np.array([value in _tags(catalog.tags[int(i)]) for i in pos], dtype=bool)
        return np.array([catalog.item_ids[int(i)] == str(p.get("value")) for i in pos], dtype=bool)

    def _synonym_term(self, query: str) -> Optional[str]:
        q = normalise(query)
        return next((t for t in (normalise(t) for t in self.params.get("terms", [])) if f" {t} " in f" {q} "), None)

    def rewrite(self, query: str, notes: Optional[list[str]] = None, as_of=None) -> Optional[str]:
        """The query this rule turns ``query`` into on ``as_of``, or None when it does not apply.

        A regex rewrite given up on (too slow, or a bad replacement) adds a note to ``notes``.
        """
        if not self.in_force(as_of) or not (query or "").strip():
            return None
        if self.kind == "synonym":
            terms = [normalise(t) for t in self.params.get("terms", [])]
            q = normalise(query)
            if self._synonym_term(query) is not None:
                extra = [t for t in terms if f" {t} " not in f" {q} "]
                return f"{query.strip()} {' '.join(extra)}" if extra else None
            return None
        if self.kind == "rewrite" and self.matches(query, notes, as_of):
            if self.match == "regex":
                try:
                    return _compiled(self.pattern.strip()).sub(self.params["to"], normalise(query),
                                                               timeout=REGEX_TIMEOUT_S)
                except (TimeoutError, regex.error, IndexError, ValueError, TypeError) as exc:
                    why = "took too long" if isinstance(exc, TimeoutError) else f"failed ({exc})"
                    note = f"rewrite of rule {self.name!r} {why}: the query was searched as typed"
                    if notes is not None and note not in notes:
                        notes.append(note)
                    return None
            return str(self.params["to"])
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "name": self.name, "kind": self.kind, "match": self.match,
                "pattern": self.pattern, "params": dict(self.params), "status": self.status,
                "state": self.state(), "enabled": self.enabled, "priority": self.priority, "start": self.start,
                "end": self.end, "owner": self.owner, "comment": self.comment, "tags": list(self.tags),
                "created": self.created, "updated": self.updated, "description": self.describe()}


def validate_rule(rule: MerchRule) -> MerchRule:
    """Check kind, match type, pattern, parameters, status and window; returns the rule cleaned.

    Raises
    ------
    RuleError
        With a message naming the bad field.
    """
    if rule.kind not in RULE_KINDS:
        raise RuleError(f"unknown rule kind {rule.kind!r}; expected one of {', '.join(RULE_KINDS)}")
    if rule.match not in MATCH_TYPES:
        raise RuleError(f"unknown match type {rule.match!r}; expected one of {', '.join(MATCH_TYPES)}")
    if rule.status not in STATUSES:
        raise RuleError(f"unknown status {rule.status!r}; expected one of {', '.join(STATUSES)}")
    pattern = (rule.pattern or "").strip() or "*"
    if rule.match == "regex" and pattern != "*":
        _check_regex(pattern)
    start = _day(rule.start, "start date") if rule.start else None
    end = _day(rule.end, "end date") if rule.end else None
    if start and end and start > end:
        raise RuleError(f"the start date {start} is after the end date {end}")
    p = dict(rule.params)
    if rule.kind in ("pin", "hide"):
        if not str(p.get("item_id") or "").strip():
            raise RuleError(f"a {rule.kind} rule needs an item_id")
        p["item_id"] = str(p["item_id"]).strip()
    if rule.kind == "pin":
        try:
            p["position"] = int(p.get("position"))
        except (TypeError, ValueError):
            raise RuleError("a pin rule needs a whole-number position (1 = first)") from None
        if p["position"] < 1:
            raise RuleError("pin position must be 1 or more")
    if rule.kind == "slot":
        try:
            p["position"] = int(p.get("position"))
        except (TypeError, ValueError):
            raise RuleError("a slot rule needs a whole-number position (1 = first)") from None
        if p["position"] < 1:
            raise RuleError("slot position must be 1 or more")
    if rule.kind == "redirect":
        url = str(p.get("url") or "").strip()
        if not url or any(c.isspace() for c in url):
            raise RuleError("a redirect rule needs the address to send shoppers to (--url), without spaces")
        if pattern == "*":
            raise RuleError("a redirect rule needs a query pattern (not '*'): every search cannot go to one page")
        p["url"] = url
    if rule.kind in ("boost", "bury", "slot"):
        if p.get("attribute") not in ATTRIBUTES:
            raise RuleError(f"{rule.kind} attribute must be one of {', '.join(ATTRIBUTES)}")
        if rule.kind != "slot":
            try:
                p["weight"] = float(p.get("weight"))
            except (TypeError, ValueError):
                raise RuleError(f"a {rule.kind} rule needs a numeric weight") from None
            if not (math.isfinite(p["weight"]) and 0 < p["weight"] <= MAX_WEIGHT):
                raise RuleError(f"weight must be in (0, {MAX_WEIGHT:g}]; use 'bury' to push items down")
        if p["attribute"] == "price":
            for b in ("min", "max"):
                if p.get(b) is not None:
                    p[b] = float(p[b])
            if p.get("min") is None and p.get("max") is None:
                raise RuleError("a price rule needs min and/or max")
            if p.get("min") is not None and p.get("max") is not None and p["min"] > p["max"]:
                raise RuleError("price min is above price max")
        elif not str(p.get("value") or "").strip():
            raise RuleError(f"a {rule.kind} rule on {p['attribute']} needs a value")
    if rule.kind == "synonym":
        terms = p.get("terms")
        terms = [normalise(t) for t in (terms.split(",") if isinstance(terms, str) else terms or [])]
        p["terms"] = [t for t in dict.fromkeys(terms) if t]
        if len(p["terms"]) < 2:
            raise RuleError("a synonym rule needs at least two terms")
    if rule.kind == "rewrite":
        if pattern == "*":
            raise RuleError("a rewrite rule needs a query pattern (not '*')")
        if not normalise(p.get("to", "")):
            raise RuleError("a rewrite rule needs the text to search instead ('to')")
    tags = rule.tags.split(",") if isinstance(rule.tags, str) else list(rule.tags or [])
    tags = [t for t in dict.fromkeys(" ".join(str(t).split()) for t in tags) if t]
    auto = rule.name.strip() in ("", rule.describe())
    return replace(rule, pattern=pattern, params=p, name="" if auto else rule.name.strip(), start=start, end=end,
                   owner=" ".join(str(rule.owner or "").split()), comment=str(rule.comment or "").strip(),
                   tags=tags)


def rewrite_query(rules, query: str, as_of=None) -> tuple[str, list[str]]:
    """Apply rewrite rules, then synonym expansions in force on ``as_of``, to ``query``; returns (query, notes)."""
    notes: list[str] = []
    ordered = sorted((r for r in rules or () if getattr(r, "rewrite", None)),
                     key=lambda r: (getattr(r, "kind", "") != "rewrite", getattr(r, "priority", 0)))
    for rule in ordered:
        new = rule.rewrite(query, notes, as_of) if isinstance(rule, MerchRule) else rule.rewrite(query)
        if new is not None and normalise(new) != normalise(query):
            notes.append(f"query {query!r} searched as {new!r} (rule {rule.name!r})")
            query = new
    return query, notes


def pinned_item_ids(rules, query: str, as_of=None) -> list[str]:
    """Items that pin rules in force on ``as_of`` want for ``query`` (added to the candidates)."""
    return [str(r.params["item_id"]) for r in rules or ()
            if getattr(r, "kind", None) == "pin" and r.matches(query, as_of=as_of)]


# ----------------------------------------------------------------- storage
_COLUMNS = ("rule_id, name, kind, pattern, params, enabled, priority, status, match, start_date, end_date, owner, "
            "comment, tags, created, updated")
LOGGED = ("name", "kind", "match", "pattern", "params", "status", "priority", "start", "end", "owner", "comment",
          "tags")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_actor() -> str:
    """Who is changing rules: the operating-system user name ("unknown" when it cannot be read)."""
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError, ImportError):  # no user name in the environment or the password database
        return "unknown"


def _from_row(row) -> MerchRule:
    (rule_id, name, kind, pattern, params, enabled, priority, status, match, start, end, owner, comment, tags,
     created, updated) = row
    return MerchRule(kind, pattern or "*", json.loads(params or "{}"), name or "", bool(enabled), rule_id,
                     priority or 0, status or "", match or "", start or None, end or None, owner or "",
                     comment or "", json.loads(tags or "[]"), created, updated)


def load_rules(db, enabled_only: bool = False) -> list[MerchRule]:
    """Stored rules by priority then id (only live ones with ``enabled_only``; windows are checked per request)."""
    sql = f"SELECT {_COLUMNS} FROM rules"
    if enabled_only:
        sql += " WHERE coalesce(status, CASE WHEN enabled THEN 'live' ELSE 'draft' END) = 'live'"
    return [_from_row(r) for r in db.execute(sql + " ORDER BY priority, rule_id")]


def get_rule(db, rule_id: int) -> MerchRule:
    row = db.execute(f"SELECT {_COLUMNS} FROM rules WHERE rule_id = ?", [int(rule_id)]).fetchone()
    if row is None:
        raise RuleError(f"no rule with id {rule_id}")
    return _from_row(row)


def _logged(rule: Optional[MerchRule]) -> dict[str, Any]:
    if rule is None:
        return {}
    out = {f: getattr(rule, f) for f in LOGGED}
    out["name"] = "" if rule.name == rule.describe() else rule.name
    return out


def _log(db, rule_id: int, action: str, before: Optional[MerchRule], after: Optional[MerchRule], actor, now) -> None:
    old, new = _logged(before), _logged(after)
    changes = {f: [old.get(f), new.get(f)] for f in LOGGED if old.get(f) != new.get(f)}
    if action == "changed" and not changes:
        return
    db.execute("INSERT INTO rule_log(rule_id, ts, actor, action, changes) VALUES (?, ?, ?, ?, ?)",
               [rule_id, now, actor or default_actor(), action, json.dumps(changes, sort_keys=True)])


def save_rule(db, rule: MerchRule, actor: Optional[str] = None) -> MerchRule:
    """Validate and store ``rule`` (insert, or update when it has a ``rule_id``); returns the stored rule.

    The change goes into the activity log (:func:`rule_log`) in the same transaction, as ``actor``
    (default: :func:`default_actor`).  Conflicts with other rules are checked by
    :func:`merch_app.services.rule_edits.save_checked`, which the CLI and the Rules screen call.
    """
    rule = validate_rule(rule)
    name = "" if rule.name == rule.describe() else rule.name  # auto names follow later edits
    now = _now()
    values = [name, rule.kind, rule.pattern, json.dumps(rule.params), int(rule.enabled), rule.priority, rule.status,
              rule.match, rule.start, rule.end, rule.owner, rule.comment, json.dumps(rule.tags)]
    with db.conn:
        if rule.rule_id is None:
            cur = db.execute("INSERT INTO rules(name, kind, pattern, params, enabled, priority, status, match, "
                             "start_date, end_date, owner, comment, tags, created, updated) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values + [now, now])
            rule_id = int(cur.lastrowid)
            pause_point("rules.save")  # kill tests: the rule is written, its log row not yet
            _log(db, rule_id, "created", None, rule, actor, now)
        else:
            before = get_rule(db, rule.rule_id)
            db.execute("UPDATE rules SET name = ?, kind = ?, pattern = ?, params = ?, enabled = ?, priority = ?, "
                       "status = ?, match = ?, start_date = ?, end_date = ?, owner = ?, comment = ?, tags = ?, "
                       "updated = ? WHERE rule_id = ?", values + [now, rule.rule_id])
            rule_id = rule.rule_id
            _log(db, rule_id, "changed", before, rule, actor, now)
    return get_rule(db, rule_id)


def set_rule_status(db, rule_id: int, status: str, actor: Optional[str] = None) -> MerchRule:
    """Make rule ``rule_id`` a ``draft``, ``live`` or ``expired`` (logged as a status change)."""
    if status not in STATUSES:
        raise RuleError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    before = get_rule(db, rule_id)
    now = _now()
    with db.conn:
        db.execute("UPDATE rules SET status = ?, enabled = ?, updated = ? WHERE rule_id = ?",
                   [status, int(status == "live"), now, int(rule_id)])
        pause_point("rules.status")  # kill tests: the status is written, its log row not yet
        if before.status != status:
            _log(db, int(rule_id), "status", before, replace(before, status=status), actor, now)
    return get_rule(db, rule_id)


def delete_rule(db, rule_id: int, actor: Optional[str] = None) -> None:
    before = get_rule(db, rule_id)
    now = _now()
    with db.conn:
        db.execute("DELETE FROM rules WHERE rule_id = ?", [int(rule_id)])
        _log(db, int(rule_id), "deleted", before, None, actor, now)


def rule_log(db, rule_id: Optional[int] = None, limit: int = 500) -> list[dict[str, Any]]:
    """The activity log, newest first: ``{log_id, rule_id, ts, actor, action, changes}`` (one rule's with ``rule_id``).

    ``changes`` maps each changed field to ``[old, new]`` (None where the rule did not exist).
    """
    where, args = ("WHERE rule_id = ?", [int(rule_id)]) if rule_id is not None else ("", [])
    rows = db.execute(f"SELECT log_id, rule_id, ts, actor, action, changes FROM rule_log {where} "
                      "ORDER BY log_id DESC LIMIT ?", args + [int(limit)]).fetchall()
    return [{"log_id": r[0], "rule_id": r[1], "ts": r[2], "actor": r[3], "action": r[4],
             "changes": json.loads(r[5] or "{}")} for r in rows]
