"""The Evaluate and Rules screens' use cases, run in their worker threads (never touch widgets).

Every function takes the runner's job context first (``ctx.db(path)``: the
worker thread's own connection; ``ctx.progress``, ``ctx.cancel``).  Bundles
come from the process's shared cache (:data:`merch_app.services.bundles.SHARED`),
so running a suite twice, or on two screens, loads a model once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from merch_app.evaluation.behaviour_suite import generate_from_behaviour
from merch_app.evaluation.rule_impact import rule_impact
from merch_app.evaluation.rule_usage import rule_usage
from merch_app.evaluation.suite_history import GateResult, check_run, previous_run, record_run
from merch_app.evaluation.suite_run import SuiteRun, model_ranker, run_suite
from merch_app.evaluation.suites import load_suite, set_judgment
from merch_app.evaluation.suite_data import SuiteError
from merch_app.model.registry import list_versions
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.types import RankRequest, Weights
from merch_app.services.bundles import SHARED
from merch_app.services.ranking import ranking_bundle

BEHAVIOUR = "(behaviour)"  # suite reference: judgments generated from events with queries
REGRESSION_DROP = 0.05  # an NDCG@10 fall larger than this since the previous run is a regression


@dataclass(frozen=True)
class System:
    """A ranking system to evaluate: model version + fusion weights + rules on/off."""

    label: str = "active model"
    model_id: Optional[str] = None
    weights: Weights = field(default_factory=Weights)
    rules_on: bool = True

    def describe(self) -> str:
        w = self.weights
        return (f"{self.model_id or 'active model'} · lex {w.lex:g} text {w.text:g} cf {w.cf:g} pop {w.pop:g}"
                f" · rules {'on' if self.rules_on else 'off'}")


def model_choices(db) -> list[tuple[str, Optional[str]]]:
    """``(label, model_id)`` for the model picker: the active model, then every stored version."""
    out: list[tuple[str, Optional[str]]] = [("active model", None)]
    try:
        for v in list_versions(db):
            out.append((f"{v.name} ({v.model_id})", v.model_id))
    except Exception:  # noqa: BLE001 - an unreadable registry only hides the choice
        pass
    return out


def bundle(ctx, workspace: Path, model_id: Optional[str], encoder_spec: Optional[str], generation: int):
    """The bundle of ``model_id`` (default: the active model) from the shared cache.

    ``generation`` is part of the screens' own cache keys; the shared cache
    already sees every change of the workspace that alters a bundle.
    """
    return ranking_bundle(ctx.db(workspace), model_id, encoder_spec, cache=SHARED, cancel=ctx.cancel)


def load_suite_ref(db, ref: str, cancel=None):
    """A stored suite by name, or the behaviour-derived one for :data:`BEHAVIOUR`."""
    if ref == BEHAVIOUR:
        return generate_from_behaviour(db, "behaviour", cancel=cancel)
    return load_suite(db, ref)


def rank_fn(ctx, workspace: Path, system: System, encoder_spec, generation: int, rules=None):
    """``(rank_fn, config)`` for ``system`` (``rules`` overrides the workspace's enabled rules)."""
    db = ctx.db(workspace)
    b = bundle(ctx, workspace, system.model_id, encoder_spec, generation)
    chosen = rules if rules is not None else ("workspace" if system.rules_on else None)
    return model_ranker(db, b, weights=system.weights, rules=chosen)


def judge_results(ctx, workspace: Path, system: System, encoder_spec, generation: int, suite: str,
                  query: str, n: int) -> dict[str, Any]:
    """Results of ``query`` to rate, with the grades already given in ``suite``."""
    db = ctx.db(workspace)
    b = bundle(ctx, workspace, system.model_id, encoder_spec, generation)
    ranker = Ranker.for_workspace(db, b, rules="workspace" if system.rules_on else None)
    rl = ranker.rank(RankRequest(query=query, k=n, weights=system.weights, prefix=False))
    try:
        grades = load_suite(db, suite).grades(query) if suite and suite != BEHAVIOUR else {}
    except SuiteError:
        grades = {}
    return {"query": query, "rows": rl.rows(), "grades": dict(grades), "notes": list(rl.notes)}


def save_grade(ctx, workspace: Path, suite: str, query: str, item_id: str, grade: Optional[int]) -> tuple:
    set_judgment(ctx.db(workspace), suite, query, item_id, grade)
    return (query, item_id, grade)


@dataclass
class KeptRun:
    """A suite run, and for a stored suite where it was kept and how it compares with the run before."""

    run: SuiteRun
    suite_id: Optional[int] = None
    snapshot_id: Optional[int] = None
    gate: Optional[GateResult] = None
    not_kept: str = ""  # why a stored suite's run was not kept (a read-only workspace)


def run_and_keep(db, suite, rank, config, *, label: str, k: int, threshold: float = REGRESSION_DROP,
                 fail_below: Optional[float] = None, fail_on_regression: bool = False, keep: bool = True,
                 progress=None, cancel=None) -> KeptRun:
    """Run ``suite`` with ``rank``; a stored suite's run is kept in its history and checked against the one before.

    This is the one way a suite is run for the Evaluate screen and ``merch-app suite run``.
    """
    run = run_suite(suite, rank, k=k, label=label, config=config, progress=progress, cancel=cancel)
    if suite.suite_id is None:
        return KeptRun(run, gate=check_run(run, fail_below=fail_below))
    previous = previous_run(db, suite.suite_id)
    gate = check_run(run, fail_below=fail_below, previous=previous, threshold=threshold,
                     fail_on_regression=fail_on_regression)
    if keep and db.readonly:
        return KeptRun(run, suite.suite_id, None, gate,
                       f"the run was not kept in the suite's history: the workspace is read-only ({db.readonly_reason})")
    snapshot_id = record_run(db, run, suite.suite_id) if keep else None
    return KeptRun(run, suite.suite_id, snapshot_id, gate)


def run_suite_job(ctx, workspace: Path, suite_ref: str, system: System, encoder_spec, generation: int, k: int,
                  threshold: float = REGRESSION_DROP) -> KeptRun:
    """Run a stored (or behaviour) suite with ``system``; progress per query; a stored suite's run is kept."""
    db = ctx.db(workspace)
    suite = load_suite_ref(db, suite_ref, ctx.cancel)
    rank, config = rank_fn(ctx, workspace, system, encoder_spec, generation)
    return run_and_keep(db, suite, rank, config, label=system.label, k=k, threshold=threshold,
                        progress=ctx.progress, cancel=ctx.cancel)


def ranked_pair(ctx, workspace: Path, left: System, right: System, encoder_spec, generation: int, query: str,
                k: int) -> tuple[list[str], list[str], dict[str, str]]:
    """Top k of one query for two systems, plus titles (for the slope chart)."""
    a, _ = rank_fn(ctx, workspace, left, encoder_spec, generation)
    b, _ = rank_fn(ctx, workspace, right, encoder_spec, generation)
    la, lb = list(a(query, k)), list(b(query, k))
    db = ctx.db(workspace)
    ids = list(dict.fromkeys(la + lb))
    marks = ",".join("?" * len(ids))
    titles = dict(db.execute(f"SELECT item_id, title FROM items WHERE item_id IN ({marks})", ids).fetchall()) \
        if ids else {}
    return la, lb, {str(i): t or "" for i, t in titles.items()}


def usage_job(ctx, workspace: Path, with_impact: bool, encoder_spec, generation: int, as_of: Optional[str] = None):
    """:func:`merch_app.evaluation.rule_usage.rule_usage` in the worker; the impact on suites only when asked."""
    db = ctx.db(workspace)
    b = bundle(ctx, workspace, None, encoder_spec, generation) if with_impact else None
    return rule_usage(db, bundle=b, as_of=as_of, progress=ctx.progress, cancel=ctx.cancel)


def impact_job(ctx, workspace: Path, rule, suite_ref: Optional[str], system: System, encoder_spec,
               generation: int, k: int = 10, as_of: Optional[str] = None):
    """:func:`merch_app.evaluation.rule_impact.rule_impact` in the worker (rules as of the day ``as_of``)."""
    db = ctx.db(workspace)
    suite = None
    if suite_ref and suite_ref != BEHAVIOUR:
        try:
            suite = load_suite_ref(db, suite_ref, ctx.cancel)
        except SuiteError:
            suite = None
    b = bundle(ctx, workspace, system.model_id, encoder_spec, generation)
    return rule_impact(db, rule, bundle=b, suite=suite, weights=system.weights, k=k, as_of=as_of,
                       progress=ctx.progress, cancel=ctx.cancel)
