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

Query patterns (case-insensitive, whitespace collapsed): ``*`` or empty =
every request (also recommendations); ``re:REGEX`` = regular expression
search; a pattern with ``*``/``?`` = glob over the whole query;
``exact:TEXT`` = exactly this query; otherwise plain words = the query
contains these words in this order (``mug`` matches "red mug").

``re:`` patterns run on the ``regex`` module with a time limit (:data:`REGEX_TIMEOUT_S` per
query): a pattern that backtracks for longer counts as no match and the results say so, so no
rule can hang ranking.  :func:`validate_rule` refuses such patterns when they are saved: nested
repetition (``(a+)+``, ``(ab*c?)*``) and any pattern slow on a few adversarial queries.
"""
from __future__ import annotations

import fnmatch
import functools
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Optional

import numpy as np
import regex

from merch_app.errors import MerchAppError
from merch_app.ranking.rule_hook import RuleContext, RuleEffect

# ------------------------------------------------------------ merch rules
RULE_KINDS = ("pin", "boost", "bury", "hide", "synonym", "rewrite")
ATTRIBUTES = ("category", "tag", "price", "item")
MAX_WEIGHT = 10.0
_TAG_SPLIT = re.compile(r"[,;|]")
REGEX_TIMEOUT_S = 0.05  # one search of a rule's regex over a query; longer counts as no match
TRIAL_TIMEOUT_S = 0.05  # one trial search when a pattern is saved (normal patterns take microseconds)


class RuleError(MerchAppError, ValueError):
    """A rule is invalid or missing (message is user-facing)."""


def normalise(text: str) -> str:
    return " ".join(str(text or "").casefold().split())


def pattern_matches(pattern: str, query: str) -> bool:
    """Whether ``query`` matches a rule ``pattern`` (syntax in the module docstring)."""
    return match_pattern(pattern, query)[0]


def match_pattern(pattern: str, query: str) -> tuple[bool, Optional[str]]:
    """``(matches, note)``: as :func:`pattern_matches`, with a note when a ``re:`` pattern was
    given up on (too slow on this query, or not a valid expression) and counted as no match."""
    pat = (pattern or "").strip()
    q = normalise(query)
    if pat in ("", "*"):
        return True, None
    if pat.startswith("re:"):
        found, problem = _regex_search(pat[3:], q)
        return found, problem and f"rule pattern {pat!r} {problem}: treated as no match"
    if pat.startswith("exact:"):
        return q == normalise(pat[6:]), None
    p = normalise(pat)
    if any(c in p for c in "*?["):
        return fnmatch.fnmatchcase(q, p), None
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


def _check_regex(pattern: str) -> None:
    """Refuse an invalid ``re:`` pattern, or one that may backtrack for a long time (RuleError)."""
    expr = pattern[3:]
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
    """One merchandising rule (see the module docstring for kinds and patterns).

    ``params`` by kind: pin ``{item_id, position}``; boost/bury ``{attribute,
    value | min/max, weight}``; hide ``{item_id}``; synonym ``{terms}``;
    rewrite ``{to}``.
    """

    kind: str
    pattern: str = "*"
    params: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    enabled: bool = True
    rule_id: Optional[int] = None
    priority: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.describe()

    def describe(self) -> str:
        """Short human-readable summary, e.g. ``pin 22004 at 1 for 'mug'``."""
        p, where = self.params, f" for {self.pattern!r}" if self.pattern not in ("", "*") else ""
        if self.kind == "pin":
            return f"pin {p.get('item_id')} at {p.get('position')}{where}"
        if self.kind in ("boost", "bury"):
            if p.get("attribute") == "price":
                lo = "" if p.get("min") is None else f"{p['min']:g}"
                hi = "" if p.get("max") is None else f"{p['max']:g}"
                what = f"price {lo}..{hi}"
            else:
                what = f"{p.get('attribute')}={p.get('value')}"
            return f"{self.kind} {what} by {p.get('weight')}{where}"
        if self.kind == "hide":
            return f"hide {p.get('item_id')}{where}"
        if self.kind == "synonym":
            terms = p.get("terms", [])
            return "synonyms " + (terms if isinstance(terms, str) else " = ".join(terms))
        if self.kind == "rewrite":
            return f"rewrite {self.pattern!r} -> {p.get('to')!r}"
        return self.kind

    def matches(self, query: str, notes: Optional[list[str]] = None) -> bool:
        """Whether the rule is on and its pattern matches ``query``; a pattern given up on adds a note to ``notes``."""
        if not self.enabled:
            return False
        found, note = match_pattern(self.pattern, query)
        if note and notes is not None and note not in notes:
            notes.append(note)
        return found

    # -- the ranker hook -------------------------------------------------
    def apply(self, ctx: RuleContext) -> RuleEffect:
        n = len(ctx.positions)
        query = getattr(ctx.request, "query", "") or ""
        if self.kind in ("synonym", "rewrite") or n == 0:
            return RuleEffect()
        notes: list[str] = []
        if not self.matches(query, notes):
            return RuleEffect(notes=notes)
        if self.kind in ("pin", "hide"):
            hits = self._item_mask(ctx)
            if self.kind == "hide":
                return RuleEffect(hide=hits)
            idx = np.flatnonzero(hits)
            return RuleEffect(pins={int(idx[0]): int(self.params["position"]) - 1} if idx.size else {})
        mask = self.attribute_mask(ctx.catalog, ctx.positions)
        sign = -1.0 if self.kind == "bury" else 1.0
        return RuleEffect(boost=np.where(mask, sign * float(self.params["weight"]), 0.0))

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

    def rewrite(self, query: str, notes: Optional[list[str]] = None) -> Optional[str]:
        """The query this rule turns ``query`` into, or None when it does not apply.

        A ``re:`` rewrite given up on (too slow, or a bad replacement) adds a note to ``notes``.
        """
        if not self.enabled or not (query or "").strip():
            return None
        if self.kind == "synonym":
            terms = [normalise(t) for t in self.params.get("terms", [])]
            q = normalise(query)
            if any(f" {t} " in f" {q} " for t in terms):
                extra = [t for t in terms if f" {t} " not in f" {q} "]
                return f"{query.strip()} {' '.join(extra)}" if extra else None
            return None
        if self.kind == "rewrite" and self.matches(query, notes):
            if self.pattern.strip().startswith("re:"):
                try:
                    return _compiled(self.pattern.strip()[3:]).sub(self.params["to"], normalise(query),
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
        return {"rule_id": self.rule_id, "name": self.name, "kind": self.kind, "pattern": self.pattern,
                "params": dict(self.params), "enabled": self.enabled, "priority": self.priority,
                "description": self.describe()}


def validate_rule(rule: MerchRule) -> MerchRule:
    """Check kind, pattern and parameters; returns the rule with cleaned params.

    Raises
    ------
    RuleError
        With a message naming the bad field.
    """
    if rule.kind not in RULE_KINDS:
        raise RuleError(f"unknown rule kind {rule.kind!r}; expected one of {', '.join(RULE_KINDS)}")
    if rule.pattern.strip().startswith("re:"):
        _check_regex(rule.pattern.strip())
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
    if rule.kind in ("boost", "bury"):
        if p.get("attribute") not in ATTRIBUTES:
            raise RuleError(f"{rule.kind} attribute must be one of {', '.join(ATTRIBUTES)}")
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
        if rule.pattern.strip() in ("", "*"):
            raise RuleError("a rewrite rule needs a query pattern (not '*')")
        if not normalise(p.get("to", "")):
            raise RuleError("a rewrite rule needs the text to search instead ('to')")
    auto = rule.name.strip() in ("", rule.describe())
    return replace(rule, params=p, name="" if auto else rule.name.strip())


def rewrite_query(rules, query: str) -> tuple[str, list[str]]:
    """Apply rewrite rules, then synonym expansions, to ``query``; returns (query, notes)."""
    notes: list[str] = []
    ordered = sorted((r for r in rules or () if getattr(r, "rewrite", None)),
                     key=lambda r: (getattr(r, "kind", "") != "rewrite", getattr(r, "priority", 0)))
    for rule in ordered:
        new = rule.rewrite(query, notes) if isinstance(rule, MerchRule) else rule.rewrite(query)
        if new is not None and normalise(new) != normalise(query):
            notes.append(f"query {query!r} searched as {new!r} (rule {rule.name!r})")
            query = new
    return query, notes


def pinned_item_ids(rules, query: str) -> list[str]:
    """Items that enabled pin rules want for ``query`` (added to the candidates)."""
    return [str(r.params["item_id"]) for r in rules or ()
            if getattr(r, "kind", None) == "pin" and r.matches(query)]


# ----------------------------------------------------------------- storage
def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_row(row) -> MerchRule:
    rule_id, name, kind, pattern, params, enabled, priority = row
    return MerchRule(kind, pattern or "*", json.loads(params or "{}"), name or "", bool(enabled), rule_id,
                     priority or 0)


def load_rules(db, enabled_only: bool = False) -> list[MerchRule]:
    """Stored rules by priority then id (only enabled ones with ``enabled_only``)."""
    sql = "SELECT rule_id, name, kind, pattern, params, enabled, priority FROM rules"
    if enabled_only:
        sql += " WHERE enabled = 1"
    return [_from_row(r) for r in db.execute(sql + " ORDER BY priority, rule_id")]


def get_rule(db, rule_id: int) -> MerchRule:
    row = db.execute("SELECT rule_id, name, kind, pattern, params, enabled, priority FROM rules "
                     "WHERE rule_id = ?", [int(rule_id)]).fetchone()
    if row is None:
        raise RuleError(f"no rule with id {rule_id}")
    return _from_row(row)


def save_rule(db, rule: MerchRule) -> MerchRule:
    """Validate and store ``rule`` (insert, or update when it has a ``rule_id``); returns the stored rule."""
    rule = validate_rule(rule)
    name = "" if rule.name == rule.describe() else rule.name  # auto names follow later edits
    now = _now()
    with db.conn:
        if rule.rule_id is None:
            cur = db.execute("INSERT INTO rules(name, kind, pattern, params, enabled, priority, created, updated) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             [name, rule.kind, rule.pattern, json.dumps(rule.params), int(rule.enabled),
                              rule.priority, now, now])
            rule_id = int(cur.lastrowid)
        else:
            get_rule(db, rule.rule_id)
            db.execute("UPDATE rules SET name = ?, kind = ?, pattern = ?, params = ?, enabled = ?, priority = ?, "
                       "updated = ? WHERE rule_id = ?", [name, rule.kind, rule.pattern, json.dumps(rule.params),
                                                         int(rule.enabled), rule.priority, now, rule.rule_id])
            rule_id = rule.rule_id
    return get_rule(db, rule_id)


def set_rule_enabled(db, rule_id: int, enabled: bool) -> MerchRule:
    get_rule(db, rule_id)
    with db.conn:
        db.execute("UPDATE rules SET enabled = ?, updated = ? WHERE rule_id = ?",
                   [int(bool(enabled)), _now(), int(rule_id)])
    return get_rule(db, rule_id)


def delete_rule(db, rule_id: int) -> None:
    get_rule(db, rule_id)
    with db.conn:
        db.execute("DELETE FROM rules WHERE rule_id = ?", [int(rule_id)])
