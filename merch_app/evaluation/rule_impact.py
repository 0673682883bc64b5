"""Impact of a drafted rule before it is enabled: every query it fires on, rank moves, metric change.

The rule is compared with the rules in force: *before* = the live rules without
it, *after* = the same plus the rule (made live), both as of one day (default
today, so a rule that starts next week is previewed as of next week).  Both rank:

* the queries of the search log the rule fires on (its pattern, or its synonym
  terms; as-you-type prefixes left out, see
  :func:`merch_app.data.search_log.query_volumes`), with their number of searches;
* the queries of every stored suite it fires on, and every query of the chosen
  suite and of the behaviour-derived suite (when events carry queries);
* a few probe queries taken from the rule itself (its pattern words, its synonym terms).

A query is *touched* when its top k changes.  Every checked query the rule fires
on, or whose top k changes, is listed in :attr:`RuleImpact.queries` with its
sources, searches, and the judged NDCG@10 before and after in each suite that
judges it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional, Sequence

from merch_app.data.search_log import QueryVolume, has_queries, query_key, query_volumes
from merch_app.evaluation.behaviour_suite import generate_from_behaviour
from merch_app.evaluation.starter_suite import derive_starter_suite
from merch_app.evaluation.compare import compare_runs, jaccard_at_k, rank_moves, rbo
from merch_app.evaluation.suite_run import NDCG_K, SuiteRun, run_suite, score_query
from merch_app.evaluation.suite_data import Suite, SuiteError
from merch_app.evaluation.suites import list_suites, load_suite
from merch_app.jobs import EtaClock, Progress
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.rules import MerchRule, load_rules, normalise, validate_rule
from merch_app.ranking.types import RankRequest, Weights

RankFn = Callable[[str, int], Sequence[str]]
MAX_LOG_QUERIES = 500  # most searched log queries checked for a rule that fires on every query
METRIC = f"ndcg@{NDCG_K}"


@dataclass
class RuleImpact:
    """What enabling one rule would change.

    Attributes
    ----------
    touched
        Per touched query: ``{query, sources, searches, before, after, moves, jaccard@k, rbo, judged}``
        where ``moves`` are the items whose rank changed (:func:`rank_moves` rows).
    queries
        Every checked query the rule fires on or whose top k changes: ``{query, sources,
        searches, fires, changed, judged}``; ``judged`` = ``[{suite, before, after, delta}]``
        (NDCG@10 in each suite judging the query).
    suite, behaviour
        ``{"name", "before": SuiteRun, "after": SuiteRun, "pair": {...}}`` or
        ``{"skipped": reason}``.
    as_of
        The day the rules were applied as of (None = today).
    """

    rule: dict[str, Any]
    k: int
    queries_checked: int
    touched: list[dict[str, Any]] = field(default_factory=list)
    suite: dict[str, Any] = field(default_factory=dict)
    behaviour: dict[str, Any] = field(default_factory=dict)
    queries: list[dict[str, Any]] = field(default_factory=list)
    as_of: Optional[str] = None

    @property
    def fired(self) -> list[dict[str, Any]]:
        """The :attr:`queries` rows the rule fires on."""
        return [q for q in self.queries if q["fires"]]

    def to_dict(self) -> dict[str, Any]:
        def block(b: dict) -> dict:
            if "before" not in b:
                return dict(b)
            return {"name": b["name"], "before": b["before"].mean, "after": b["after"].mean,
                    "delta": {m: b["after"].mean[m] - b["before"].mean[m] for m in b["before"].mean},
                    "pair": b["pair"]}
        return {"rule": self.rule, "k": self.k, "as_of": self.as_of, "queries_checked": self.queries_checked,
                "queries_touched": len(self.touched), "queries_fired": len(self.fired), "touched": self.touched,
                "queries": self.queries, "suite": block(self.suite), "behaviour": block(self.behaviour)}


def probe_queries(rule: MerchRule) -> list[str]:
    """Queries the rule is obviously about (its exact, phrase or all-words text; synonym terms)."""
    out = []
    if rule.kind == "synonym":
        out += list(rule.params.get("terms", []))
    elif not rule.every_query and rule.match != "regex":
        out.append(normalise(rule.pattern))
    return [q for q in out if q]


def _memo(rank: RankFn) -> RankFn:
    cache: dict[tuple[str, int], list[str]] = {}

    def ranked(query: str, n: int) -> list[str]:
        key = (query, n)
        if key not in cache:
            cache[key] = [str(i) for i in rank(query, n)]
        return cache[key]
    return ranked


def _judged(query: str, a: list[str], b: list[str], judges: Sequence[Suite]) -> list[dict[str, Any]]:
    out = []
    for s in judges:
        grades = s.grades(query)
        before, after = score_query(query, a, grades, NDCG_K).metrics[METRIC], \
            score_query(query, b, grades, NDCG_K).metrics[METRIC]
        if before is not None and not any(j["suite"] == s.name for j in out):
            out.append({"suite": s.name, "metric": METRIC, "before": before, "after": after,
                        "delta": after - before})
    return out


def impact_of(rank_before: RankFn, rank_after: RankFn, *, rule: Optional[MerchRule] = None,
              suite: Optional[Suite] = None, behaviour: Optional[Suite] = None,
              queries: Sequence[str] = (), k: int = 10, behaviour_skipped: str = "",
              log: Optional[Mapping[str, QueryVolume]] = None, suites: Sequence[Suite] = (),
              progress=None, cancel=None) -> RuleImpact:
    """Compare two rankers over the suite, behaviour, the log's and other suites' queries, and extra ``queries``.

    Parameters
    ----------
    rank_before, rank_after
        ``(query, n) -> item ids`` without and with the rule.
    suite, behaviour
        Judged suites for the metric change (either may be None); all their queries are checked.
    queries
        More queries to check for rank moves (no metrics).
    log
        Search-log queries (:func:`merch_app.data.search_log.query_volumes`) the rule fires on.
    suites
        Other suites: the queries the rule fires on are checked, and their judgments give
        per-query metric changes.
    """
    before, after = _memo(rank_before), _memo(rank_after)
    depth = max(k, 10)
    sources: dict[str, list[str]] = {}  # query as first seen -> where it came from
    keys: dict[str, str] = {}  # query_key -> query as first seen (ranking ignores case)
    searches: dict[str, int] = {}
    fires = (lambda q: rule.pattern_hits(q)) if rule is not None else (lambda q: True)
    other = [(f"suite {s.name}", [q for q in s.queries if fires(q)]) for s in suites
             if s is not suite and (suite is None or s.name != suite.name)]
    for v in (log or {}).values():
        searches[query_key(v.query)] = v.searches
    for label, qs in (("suite", suite.queries if suite else []),
                      ("behaviour", behaviour.queries if behaviour else []), ("probe", queries),
                      ("log", [v.query for v in (log or {}).values()]), *other):
        for q in qs:
            q = " ".join(str(q).split())
            if q:
                q = keys.setdefault(query_key(q), q)
                sources.setdefault(q, [])
                if label not in sources[q]:
                    sources[q].append(label)
    judges = [s for s in (suite, behaviour, *suites) if s is not None]
    clock = EtaClock()
    touched, listed = [], []
    for n, (q, src) in enumerate(sources.items()):
        if cancel is not None:
            cancel.check()
        a, b = before(q, depth), after(q, depth)
        changed, fired = a[:k] != b[:k], fires(q)
        judged = _judged(q, a, b, judges) if changed or fired else []
        if changed:
            moves = [m for m in rank_moves(a, b, k) if m["move"] != 0]
            touched.append({"query": q, "sources": src, "searches": searches.get(query_key(q), 0), "before": a[:k],
                            "after": b[:k], "moves": moves, f"jaccard@{k}": jaccard_at_k(a, b, k),
                            "rbo": rbo(a[:k], b[:k]), "judged": judged})
        if changed or fired:
            listed.append({"query": q, "sources": src, "searches": searches.get(query_key(q), 0), "fires": fired,
                           "changed": changed, "judged": judged})
        if progress is not None:
            progress(Progress(n + 1, len(sources), f"checking {q!r}", clock.eta(n + 1, len(sources))))
    listed.sort(key=lambda r: (-r["searches"], not r["changed"], r["query"]))
    impact = RuleImpact(rule.to_dict() if rule else {}, k, len(sources), touched, queries=listed)
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


def stored_suites(db) -> list[Suite]:
    """Every stored suite with at least one relevant judgment (for per-query metric changes)."""
    out = []
    for s in list_suites(db):
        try:
            suite = load_suite(db, s["name"])
        except SuiteError:
            continue
        if suite.relevant_queries():
            out.append(suite)
    return out


def log_queries_for(rule: MerchRule, log: Mapping[str, QueryVolume]) -> dict[str, QueryVolume]:
    """The search-log queries ``rule`` fires on (the most searched :data:`MAX_LOG_QUERIES` of them)."""
    hits = {key: v for key, v in log.items() if rule.pattern_hits(v.query)}
    return dict(list(hits.items())[:MAX_LOG_QUERIES])


DERIVED_NAME = "derived from purchases"


def rule_impact(db, rule: MerchRule, *, bundle, suite: Optional[Suite] = None, use_behaviour: bool = True,
                queries: Sequence[str] = (), weights=None, k: int = 10, as_of=None, use_log: bool = True,
                all_suites: bool = True, log: Optional[Mapping[str, QueryVolume]] = None, progress=None,
                cancel=None) -> RuleImpact:
    """Impact of making ``rule`` live on top of the workspace's other live rules, as of ``as_of``.

    Parameters
    ----------
    bundle
        The model bundle to rank with (see :func:`merch_app.model.bundle.load_bundle`).
    suite
        Judged suite for the metric change; None = rank moves only.
    use_behaviour
        Also measure over judgments generated from behaviour: searches followed by clicks when
        events carry queries, else the starter suite derived from purchases
        (:func:`merch_app.evaluation.starter_suite.derive_starter_suite`, named :data:`DERIVED_NAME`).
    as_of
        The day rules apply as of (``YYYY-MM-DD``; None = today).
    use_log, all_suites
        Also check the search-log queries and the stored suites' queries the rule fires on.
    log
        The search log's queries when the caller has read them already
        (:func:`merch_app.data.search_log.query_volumes`).

    Raises
    ------
    merch_app.ranking.rules.RuleError
        The drafted rule is invalid.
    """
    draft = validate_rule(replace(rule, status="live"))
    others = [r for r in load_rules(db, enabled_only=True) if r.rule_id is None or r.rule_id != rule.rule_id]
    weights = Weights.parse(weights) if weights is None or isinstance(weights, str) else weights
    r_before, r_after = Ranker(db, bundle, rules=others), Ranker(db, bundle, rules=others + [draft])

    def ranker_fn(ranker) -> RankFn:
        return lambda q, n: ranker.rank(RankRequest(query=q, k=n, weights=weights, prefix=False,
                                                    as_of=as_of)).item_ids

    behaviour, skipped = None, ""
    if use_behaviour:
        try:
            behaviour = generate_from_behaviour(db, "behaviour", cancel=cancel)
        except SuiteError as exc:
            skipped = str(exc)
        if behaviour is None and not has_queries(db):  # no search log: judge by what shoppers bought
            try:
                behaviour = derive_starter_suite(db, DERIVED_NAME, cancel=cancel)
            except SuiteError as exc:
                skipped = f"{skipped}; {exc}"
    else:
        skipped = "not requested"
    if use_log and log is None:
        log = query_volumes(db, cancel=cancel) if has_queries(db) else {}
    impact = impact_of(ranker_fn(r_before), ranker_fn(r_after), rule=draft, suite=suite, behaviour=behaviour,
                       queries=[*probe_queries(draft), *queries], k=k, behaviour_skipped=skipped,
                       log=log_queries_for(draft, log) if use_log and log else None,
                       suites=stored_suites(db) if all_suites else (), progress=progress, cancel=cancel)
    impact.as_of = as_of
    return impact


def summarise(impact: RuleImpact, metric: str = "ndcg@10") -> str:
    """One line for the UI/CLI: queries the rule fires on, touched queries and metric change."""
    fired = impact.fired
    from_log = sum(1 for q in fired if "log" in q["sources"])
    parts = []
    if impact.queries or impact.rule:
        searches = sum(q["searches"] for q in fired)
        parts.append(f"fires on {len(fired)} queries ({from_log} from the search log, {searches} searches)")
    parts.append(f"{len(impact.touched)} of {impact.queries_checked} queries change in the top {impact.k}")
    if impact.as_of:
        parts.append(f"as of {impact.as_of}")
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
