"""Impact of a drafted rule before it is enabled: touched queries, rank moves, metric change.

The rule is compared with the rules in force: *before* = the enabled rules
without it, *after* = the same plus the rule (switched on).  Both rank the
queries of a judged suite, of the behaviour-derived suite (when events carry
queries) and a few probe queries taken from the rule itself (its pattern
words, its synonym terms); a query is *touched* when its top k changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

from merch_app.evaluation.behaviour_suite import generate_from_behaviour
from merch_app.evaluation.compare import compare_runs, jaccard_at_k, rank_moves, rbo
from merch_app.evaluation.suite_run import SuiteRun, run_suite
from merch_app.evaluation.suite_data import Suite, SuiteError
from merch_app.jobs import EtaClock, Progress
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.rules import MerchRule, load_rules, normalise, validate_rule
from merch_app.ranking.types import RankRequest, Weights

RankFn = Callable[[str, int], Sequence[str]]


@dataclass
class RuleImpact:
    """What enabling one rule would change.

    Attributes
    ----------
    touched
        Per touched query: ``{query, sources, before, after, moves, jaccard@k, rbo}``
        where ``moves`` are the items whose rank changed (:func:`rank_moves` rows).
    suite, behaviour
        ``{"name", "before": SuiteRun, "after": SuiteRun, "pair": {...}}`` or
        ``{"skipped": reason}``.
    """

    rule: dict[str, Any]
    k: int
    queries_checked: int
    touched: list[dict[str, Any]] = field(default_factory=list)
    suite: dict[str, Any] = field(default_factory=dict)
    behaviour: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def block(b: dict) -> dict:
            if "before" not in b:
                return dict(b)
            return {"name": b["name"], "before": b["before"].mean, "after": b["after"].mean,
                    "delta": {m: b["after"].mean[m] - b["before"].mean[m] for m in b["before"].mean},
                    "pair": b["pair"]}
        return {"rule": self.rule, "k": self.k, "queries_checked": self.queries_checked,
                "queries_touched": len(self.touched), "touched": self.touched,
                "suite": block(self.suite), "behaviour": block(self.behaviour)}


def probe_queries(rule: MerchRule) -> list[str]:
    """Queries the rule is obviously about (pattern words, exact query, synonym terms)."""
    pat = (rule.pattern or "").strip()
    out = []
    if rule.kind == "synonym":
        out += list(rule.params.get("terms", []))
    elif pat.startswith("exact:"):
        out.append(normalise(pat[6:]))
    elif pat and pat != "*" and not pat.startswith("re:") and not any(c in pat for c in "*?["):
        out.append(normalise(pat))
    return [q for q in out if q]


def _memo(rank: RankFn) -> RankFn:
    cache: dict[tuple[str, int], list[str]] = {}

    def ranked(query: str, n: int) -> list[str]:
        key = (query, n)
        if key not in cache:
            cache[key] = [str(i) for i in rank(query, n)]
        return cache[key]
    return ranked


def impact_of(rank_before: RankFn, rank_after: RankFn, *, rule: Optional[MerchRule] = None,
              suite: Optional[Suite] = None, behaviour: Optional[Suite] = None,
              queries: Sequence[str] = (), k: int = 10, behaviour_skipped: str = "",
              progress=None, cancel=None) -> RuleImpact:
    """Compare two rankers over the suite, behaviour and extra ``queries``.

    Parameters
    ----------
    rank_before, rank_after
        ``(query, n) -> item ids`` without and with the rule.
    suite, behaviour
        Judged suites for the metric change (either may be None).
    queries
        More queries to check for rank moves (no metrics).
    """
    before, after = _memo(rank_before), _memo(rank_after)
    depth = max(k, 10)
    sources: dict[str, list[str]] = {}
    for label, qs in (("suite", suite.queries if suite else []),
                      ("behaviour", behaviour.queries if behaviour else []), ("probe", queries)):
        for q in qs:
            q = " ".join(str(q).split())
            if q:
                sources.setdefault(q, [])
                if label not in sources[q]:
                    sources[q].append(label)
    clock = EtaClock()
    touched = []
    for n, (q, src) in enumerate(sources.items()):
        if cancel is not None:
            cancel.check()
        a, b = before(q, depth), after(q, depth)
        if a[:k] != b[:k]:
            moves = [m for m in rank_moves(a, b, k) if m["move"] != 0]
            touched.append({"query": q, "sources": src, "before": a[:k], "after": b[:k], "moves": moves,
                            f"jaccard@{k}": jaccard_at_k(a, b, k), "rbo": rbo(a[:k], b[:k])})
        if progress is not None:
            progress(Progress(n + 1, len(sources), f"checking {q!r}", clock.eta(n + 1, len(sources))))
    impact = RuleImpact(rule.to_dict() if rule else {}, k, len(sources), touched)
    for attr, s, skipped in (("suite", suite, "no suite chosen"),
                             ("behaviour", behaviour, behaviour_skipped or "no behaviour-derived judgments")):
        if s is None or not s.relevant_queries():
            setattr(impact, attr, {"skipped": skipped if s is None else f"suite {s.name!r} has no relevant "
                                                                        f"judgments"})
            continue
        run_a = run_suite(s, before, k=k, label="without rule", cancel=cancel)
        run_b = run_suite(s, after, k=k, label="with rule", cancel=cancel)
        pair = compare_runs([run_a, run_b]).pairs[0]
        setattr(impact, attr, {"name": s.name, "before": run_a, "after": run_b, "pair": pair})
    return impact


def rule_impact(db, rule: MerchRule, *, bundle, suite: Optional[Suite] = None, use_behaviour: bool = True,
                queries: Sequence[str] = (), weights=None, k: int = 10, progress=None,
                cancel=None) -> RuleImpact:
    """Impact of enabling ``rule`` on top of the workspace's other enabled rules.

    Parameters
    ----------
    bundle
        The model bundle to rank with (see :func:`merch_app.model.bundle.load_bundle`).
    suite
        Judged suite for the metric change; None = rank moves only.
    use_behaviour
        Also measure over judgments generated from behaviour (when events carry queries).

    Raises
    ------
    merch_app.ranking.rules.RuleError
        The drafted rule is invalid.
    """
    draft = validate_rule(replace(rule, enabled=True))
    others = [r for r in load_rules(db, enabled_only=True) if r.rule_id is None or r.rule_id != rule.rule_id]
    weights = Weights.parse(weights) if weights is None or isinstance(weights, str) else weights
    r_before, r_after = Ranker(db, bundle, rules=others), Ranker(db, bundle, rules=others + [draft])

    def ranker_fn(ranker) -> RankFn:
        return lambda q, n: ranker.rank(RankRequest(query=q, k=n, weights=weights, prefix=False)).item_ids

    behaviour, skipped = None, ""
    if use_behaviour:
        try:
            behaviour = generate_from_behaviour(db, "behaviour", cancel=cancel)
        except SuiteError as exc:
            skipped = str(exc)
    else:
        skipped = "not requested"
    return impact_of(ranker_fn(r_before), ranker_fn(r_after), rule=draft, suite=suite, behaviour=behaviour,
                     queries=[*probe_queries(draft), *queries], k=k, behaviour_skipped=skipped,
                     progress=progress, cancel=cancel)


def summarise(impact: RuleImpact, metric: str = "ndcg@10") -> str:
    """One line for the UI/CLI: touched queries and metric change."""
    parts = [f"{len(impact.touched)} of {impact.queries_checked} queries change in the top {impact.k}"]
    for label in ("suite", "behaviour"):
        block = getattr(impact, label)
        if "before" in block:
            b: SuiteRun = block["before"]
            a: SuiteRun = block["after"]
            p = block["pair"]["test"]["p_value"]
            parts.append(f"{label} {block['name']!r}: {metric} {b.mean[metric]:.3f} -> {a.mean[metric]:.3f} "
                         f"({a.mean[metric] - b.mean[metric]:+.3f}, p={p:.3g}; "
                         f"{block['pair']['wins']} up / {block['pair']['losses']} down)")
    return "; ".join(parts)
