"""How often each rule would have fired on the search log, which never fire, which measurably hurt.

* **Fires**: the searches of the log (as-you-type prefixes left out, see
  :func:`merch_app.data.search_log.query_volumes`) whose query the rule's pattern
  matches (a synonym rule: holds one of its terms), whatever the rule's status; and how
  many of them fell inside the rule's validity window.
* **Impact**: with a model bundle and stored suites that have judgments, the offline
  impact preview (:func:`merch_app.evaluation.rule_impact.rule_impact`) of the rule on top
  of the other live rules, per suite: mean NDCG@10 without and with it.  A rule whose
  change is below zero in some suite is listed as negative.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from merch_app.data.search_log import has_queries, query_volumes
from merch_app.evaluation.rule_impact import METRIC, rule_impact, stored_suites
from merch_app.evaluation.suite_data import Suite
from merch_app.jobs import Progress
from merch_app.ranking.rules import MerchRule, load_rules

TOP_QUERIES = 5


@dataclass
class RuleUsage:
    """One rule's use of the log and its measured impact."""

    rule: MerchRule
    searches: int = 0
    queries: int = 0
    in_window: int = 0
    top_queries: list[tuple[str, int]] = field(default_factory=list)
    impact: list[dict[str, Any]] = field(default_factory=list)  # {suite, before, after, delta}

    @property
    def negative(self) -> bool:
        return any(i["delta"] < -1e-9 for i in self.impact)

    def to_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule.rule_id, "label": self.rule.label(), "name": self.rule.name,
                "status": self.rule.status, "state": self.rule.state(), "searches": self.searches,
                "queries": self.queries, "in_window": self.in_window,
                "top_queries": [{"query": q, "searches": n} for q, n in self.top_queries],
                "impact": self.impact, "negative": self.negative}


@dataclass
class UsageReport:
    """Usage of every rule (``rows`` in rule order) over a log of ``searches`` searches."""

    rows: list[RuleUsage]
    searches: int
    has_log: bool
    prefixes_included: bool
    suites: list[str]

    @property
    def never_fire(self) -> list[RuleUsage]:
        return [r for r in self.rows if r.searches == 0]

    @property
    def negative(self) -> list[RuleUsage]:
        return [r for r in self.rows if r.negative]

    def to_dict(self) -> dict[str, Any]:
        return {"searches": self.searches, "has_log": self.has_log, "prefixes_included": self.prefixes_included,
                "suites": self.suites, "rules": [r.to_dict() for r in self.rows],
                "never_fire": [r.rule.rule_id for r in self.never_fire],
                "negative": [r.rule.rule_id for r in self.negative]}


def rule_usage(db, *, rules: Optional[Sequence[MerchRule]] = None, bundle=None,
               suites: Optional[Sequence[Suite]] = None, include_prefixes: bool = False, as_of=None, k: int = 10,
               progress=None, cancel=None) -> UsageReport:
    """Usage of ``rules`` (default: every stored rule) over the workspace's search log.

    Parameters
    ----------
    bundle
        Model bundle for the impact per suite; None = no impact.
    suites
        Judged suites for the impact (default: the stored ones with judgments).
    include_prefixes
        Count as-you-type prefixes as searches too.
    as_of
        The day the other rules apply as of in the impact runs (None = today).
    """
    rules = list(load_rules(db) if rules is None else rules)
    volumes = query_volumes(db, include_prefixes=include_prefixes, cancel=cancel) if has_queries(db) else {}
    judged = list(stored_suites(db) if suites is None else suites) if bundle is not None else []
    rows = []
    for n, rule in enumerate(rules):
        if cancel is not None:
            cancel.check()
        if progress is not None:
            progress(Progress(n, len(rules), f"rule {rule.label()}"))
        row = RuleUsage(rule)
        hits = [v for v in volumes.values() if rule.pattern_hits(v.query)]
        row.searches = sum(v.searches for v in hits)
        row.queries = len(hits)
        row.in_window = sum(v.searches_between(rule.start, rule.end) for v in hits)
        row.top_queries = [(v.query, v.searches) for v in hits[:TOP_QUERIES]]
        for s in judged:
            imp = rule_impact(db, rule, bundle=bundle, suite=s, use_behaviour=False, use_log=False, all_suites=False,
                              as_of=as_of, k=k, cancel=cancel)
            if "before" in imp.suite:
                b, a = imp.suite["before"].mean[METRIC], imp.suite["after"].mean[METRIC]
                row.impact.append({"suite": s.name, "metric": METRIC, "before": b, "after": a, "delta": a - b})
        rows.append(row)
    if progress is not None:
        progress(Progress(len(rules), len(rules), "rules checked"))
    return UsageReport(rows, sum(v.searches for v in volumes.values()), bool(volumes), include_prefixes,
                       [s.name for s in judged])
