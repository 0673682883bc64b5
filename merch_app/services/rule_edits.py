"""Saving rules as the CLI and the Rules screen do: conflicts with the live rules are checked first.

A rule that would be live is compared with the other live rules
(:mod:`merch_app.ranking.rule_conflicts`); a conflicting save is refused with a
sentence naming the rules, the query and the winner by precedence, unless forced
(``--force`` on the command line, "Save anyway" on the Rules screen).  A draft is
never refused: it does nothing until it is made live, and that is checked too.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from merch_app.data.search_log import has_queries, query_volumes
from merch_app.evaluation.suites import list_suites, suite_queries
from merch_app.ranking.rule_conflicts import Conflict, all_conflicts, conflict_kind, conflicts_of
from merch_app.ranking.rules import MerchRule, RuleError, get_rule, load_rules, save_rule, set_rule_status, validate_rule


class RuleConflictError(RuleError):
    """A save would make two live rules disagree (message is user-facing; ``conflicts`` has them)."""

    def __init__(self, message: str, conflicts: list[Conflict]) -> None:
        super().__init__(message)
        self.conflicts = conflicts


def _refuse(conflicts: list[Conflict], what: str) -> RuleConflictError:
    lines = "; ".join(c.sentence() for c in conflicts)
    n = len(conflicts)
    return RuleConflictError(f"{what} refused: it conflicts with {n} live rule{'s' if n != 1 else ''}: {lines}. "
                             "Change it, or save it anyway (--force on the command line, 'Save anyway' on the "
                             "Rules screen); ranking then follows the precedence shown.", conflicts)


def known_queries(db, cancel=None) -> list[str]:
    """The queries of the search log (as-you-type prefixes left out) and of the stored suites: conflict witnesses."""
    logged = [v.query for v in query_volumes(db, cancel=cancel).values()] if has_queries(db) else []
    return list(dict.fromkeys(logged + [q for s in list_suites(db) for q in suite_queries(db, s["suite_id"])]))


def check_conflicts(db, rule: MerchRule, as_of=None, queries: Optional[list[str]] = None) -> list[Conflict]:
    """Conflicts ``rule`` (validated, treated as live) would have with the workspace's other live rules.

    ``queries`` are the witnesses besides the rules' own words (default: :func:`known_queries`).
    """
    rule = replace(validate_rule(rule), status="live")
    others = load_rules(db, enabled_only=True)
    if not any(conflict_kind(rule, o) for o in others):
        return []
    return conflicts_of(rule, others, as_of, known_queries(db) if queries is None else queries)


def save_checked(db, rule: MerchRule, *, force: bool = False, actor: Optional[str] = None,
                 as_of=None) -> tuple[MerchRule, list[Conflict]]:
    """Validate and store ``rule`` unless, being live, it conflicts with another live rule.

    Parameters
    ----------
    force
        Store it anyway (the conflicts are still returned).
    actor
        Who saves it, for the activity log (default: the operating-system user).

    Returns
    -------
    tuple of (MerchRule, list of Conflict)
        The stored rule and its conflicts (empty for a draft).

    Raises
    ------
    RuleConflictError
        Conflicts and not ``force``; nothing was stored.
    RuleError
        The rule is invalid.
    """
    rule = validate_rule(rule)
    found = check_conflicts(db, rule, as_of) if rule.status == "live" else []
    if found and not force:
        raise _refuse(found, f"Saving rule {rule.rule_id}" if rule.rule_id is not None else "Saving the rule")
    stored = save_rule(db, rule, actor)
    return stored, [_as_stored(c, rule, stored) for c in found]


def _as_stored(conflict: Conflict, rule: MerchRule, stored: MerchRule) -> Conflict:
    """``conflict`` naming the stored rule (with its id) instead of the one before saving."""
    def swap(r: MerchRule) -> MerchRule:  # the others are stored rules: only this one has its id (or none)
        return stored if r.rule_id == rule.rule_id else r
    return replace(conflict, first=swap(conflict.first), second=swap(conflict.second), winner=swap(conflict.winner))


def set_status_checked(db, rule_id: int, status: str, *, force: bool = False, actor: Optional[str] = None,
                       as_of=None) -> tuple[MerchRule, list[Conflict]]:
    """:func:`merch_app.ranking.rules.set_rule_status`, refused when going live makes a conflict (unless ``force``)."""
    rule = get_rule(db, rule_id)
    found = check_conflicts(db, rule, as_of) if status == "live" else []
    if found and not force:
        raise _refuse(found, f"Making rule {rule_id} live")
    return set_rule_status(db, rule_id, status, actor), found


def workspace_conflicts(db, as_of=None, cancel=None) -> list[Conflict]:
    """Every conflict between two live rules of the workspace (``merch-app rules conflicts``)."""
    return all_conflicts(load_rules(db, enabled_only=True), as_of, known_queries(db, cancel))
