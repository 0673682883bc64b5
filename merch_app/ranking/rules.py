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
"""
from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Optional

import numpy as np

from merch_app.errors import MerchAppError
from merch_app.ranking.rule_hook import RuleContext, RuleEffect

# ------------------------------------------------------------ merch rules
RULE_KINDS = ("pin", "boost", "bury", "hide", "synonym", "rewrite")
ATTRIBUTES = ("category", "tag", "price", "item")
MAX_WEIGHT = 10.0
_TAG_SPLIT = re.compile(r"[,;|]")


class RuleError(MerchAppError, ValueError):
    """A rule is invalid or missing (message is user-facing)."""


def normalise(text: str) -> str:
    return " ".join(str(text or "").casefold().split())


def pattern_matches(pattern: str, query: str) -> bool:
    """Whether ``query`` matches a rule ``pattern`` (syntax in the module docstring)."""
    pat = (pattern or "").strip()
    q = normalise(query)
    if pat in ("", "*"):
        return True
    if pat.startswith("re:"):
        return re.search(pat[3:], q, re.IGNORECASE) is not None
    if pat.startswith("exact:"):
        return q == normalise(pat[6:])
    p = normalise(pat)
    if any(c in p for c in "*?["):
        return fnmatch.fnmatchcase(q, p)
    return f" {p} " in f" {q} "


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

    def matches(self, query: str) -> bool:
        return self.enabled and pattern_matches(self.pattern, query)

    # -- the ranker hook -------------------------------------------------
    def apply(self, ctx: RuleContext) -> RuleEffect:
        n = len(ctx.positions)
        query = getattr(ctx.request, "query", "") or ""
        if self.kind in ("synonym", "rewrite") or not self.matches(query) or n == 0:
            return RuleEffect()
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

    def rewrite(self, query: str) -> Optional[str]:
        """The query this rule turns ``query`` into, or None when it does not apply."""
        if not self.enabled or not (query or "").strip():
            return None
        if self.kind == "synonym":
            terms = [normalise(t) for t in self.params.get("terms", [])]
            q = normalise(query)
            if any(f" {t} " in f" {q} " for t in terms):
                extra = [t for t in terms if f" {t} " not in f" {q} "]
                return f"{query.strip()} {' '.join(extra)}" if extra else None
            return None
        if self.kind == "rewrite" and self.matches(query):
            if self.pattern.startswith("re:"):
                return re.sub(self.pattern[3:], self.params["to"], normalise(query), flags=re.IGNORECASE)
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
    if rule.pattern.startswith("re:"):
        try:
            re.compile(rule.pattern[3:])
        except re.error as exc:
            raise RuleError(f"pattern {rule.pattern!r} is not a valid regular expression: {exc}") from None
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
        new = rule.rewrite(query)
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
