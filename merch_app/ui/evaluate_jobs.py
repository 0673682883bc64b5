"""Worker-side jobs of the Evaluate and Rules screens (never touch widgets).

Every function takes the runner's :class:`~merch_app.ui.workers.JobContext`
first and opens the workspace through ``ctx.db(path)`` (the worker thread's
own connection).  Model bundles are cached in ``ctx.state`` per (workspace,
model, encoder, generation) so running a suite twice does not reload them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from merch_app.ranking.types import Weights

BEHAVIOUR = "(behaviour)"  # suite reference: judgments generated from events with queries
BUNDLE_KEY = "evaluate_bundle"


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
        from merch_app.model.registry import list_versions
    except ImportError:
        return out
    try:
        for v in list_versions(db):
            out.append((f"{v.name} ({v.model_id})", v.model_id))
    except Exception:  # noqa: BLE001 - an unreadable registry only hides the choice
        pass
    return out


def bundle(ctx, workspace: Path, model_id: Optional[str], encoder_spec: Optional[str], generation: int):
    """The model bundle for ``model_id`` (cached in the worker)."""
    from merch_app.evaluation.suite_run import load_ranking_bundle
    from merch_app.model.encoder import load_encoder

    key = (str(workspace), model_id, encoder_spec, generation)
    cached = ctx.state.get(BUNDLE_KEY)
    if cached is not None and cached[0] == key:
        return cached[1]
    ctx.state.pop(BUNDLE_KEY, None)
    db = ctx.db(workspace)
    if db.execute("SELECT count(*) FROM items").fetchone()[0] == 0:
        raise LookupError("The workspace has no items yet: import a catalogue on the Data screen.")
    encoder = load_encoder(encoder_spec) if encoder_spec else None
    b = load_ranking_bundle(db, model_id, encoder)
    ctx.state[BUNDLE_KEY] = (key, b)
    return b


def load_suite_ref(db, ref: str, cancel=None):
    """A stored suite by name, or the behaviour-derived one for :data:`BEHAVIOUR`."""
    from merch_app.evaluation.behaviour_suite import generate_from_behaviour
    from merch_app.evaluation.suites import load_suite

    if ref == BEHAVIOUR:
        return generate_from_behaviour(db, "behaviour", cancel=cancel)
    return load_suite(db, ref)


def rank_fn(ctx, workspace: Path, system: System, encoder_spec, generation: int, rules=None):
    """``(rank_fn, config)`` for ``system`` (``rules`` overrides the workspace's enabled rules)."""
    from merch_app.evaluation.suite_run import model_ranker

    db = ctx.db(workspace)
    b = bundle(ctx, workspace, system.model_id, encoder_spec, generation)
    chosen = rules if rules is not None else ("workspace" if system.rules_on else None)
    return model_ranker(db, b, weights=system.weights, rules=chosen)


def judge_results(ctx, workspace: Path, system: System, encoder_spec, generation: int, suite: str,
                  query: str, n: int) -> dict[str, Any]:
    """Results of ``query`` to rate, with the grades already given in ``suite``."""
    from merch_app.evaluation.suites import SuiteError, load_suite
    from merch_app.ranking.ranker import Ranker
    from merch_app.ranking.rules import load_rules
    from merch_app.ranking.types import RankRequest

    db = ctx.db(workspace)
    b = bundle(ctx, workspace, system.model_id, encoder_spec, generation)
    ranker = Ranker(db, b, rules=load_rules(db, enabled_only=True) if system.rules_on else None)
    rl = ranker.rank(RankRequest(query=query, k=n, weights=system.weights, prefix=False))
    try:
        grades = load_suite(db, suite).grades(query) if suite and suite != BEHAVIOUR else {}
    except SuiteError:
        grades = {}
    return {"query": query, "rows": rl.rows(), "grades": dict(grades), "notes": list(rl.notes)}


def save_grade(ctx, workspace: Path, suite: str, query: str, item_id: str, grade: Optional[int]) -> tuple:
    from merch_app.evaluation.suites import set_judgment

    set_judgment(ctx.db(workspace), suite, query, item_id, grade)
    return (query, item_id, grade)


def run_suite_job(ctx, workspace: Path, suite_ref: str, system: System, encoder_spec, generation: int, k: int):
    """Run a stored (or behaviour) suite with ``system``; progress per query."""
    from merch_app.evaluation.suite_run import run_suite

    db = ctx.db(workspace)
    suite = load_suite_ref(db, suite_ref, ctx.cancel)
    rank, config = rank_fn(ctx, workspace, system, encoder_spec, generation)
    run = run_suite(suite, rank, k=k, label=system.label, config=config, progress=ctx.progress, cancel=ctx.cancel)
    return run, suite.suite_id


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


def impact_job(ctx, workspace: Path, rule, suite_ref: Optional[str], system: System, encoder_spec,
               generation: int, k: int = 10):
    """:func:`merch_app.ranking.rule_impact.rule_impact` in the worker."""
    from merch_app.evaluation.suites import SuiteError
    from merch_app.ranking.rule_impact import rule_impact

    db = ctx.db(workspace)
    suite = None
    if suite_ref and suite_ref != BEHAVIOUR:
        try:
            suite = load_suite_ref(db, suite_ref, ctx.cancel)
        except SuiteError:
            suite = None
    b = bundle(ctx, workspace, system.model_id, encoder_spec, generation)
    return rule_impact(db, rule, bundle=b, suite=suite, weights=system.weights, k=k, progress=ctx.progress,
                       cancel=ctx.cancel)
