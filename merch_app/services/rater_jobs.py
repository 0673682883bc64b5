"""The Judge tab's team judging, run in its worker threads: a rater's grades, the blind queue, the rater's name.

Like :mod:`merch_app.services.evaluate_jobs`, every function takes the runner's job context
first (``ctx.db(path)``: the worker thread's own connection).  The grades and the queue are
:mod:`merch_app.evaluation.raters`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from merch_app.data.workspace import get_setting, set_setting
from merch_app.evaluation.raters import judging_queue, rate, rater_grades
from merch_app.insights.common import item_titles
from merch_app.services import evaluate_jobs as ej

RATER_SETTING = "judge_rater"  # the name last typed in the Judge tab's Rater box, per workspace


def rater_name(db) -> str:
    """The rater name remembered in this workspace ('' if none)."""
    return str(get_setting(db, RATER_SETTING, "") or "")


def save_rater_name(ctx, workspace: Path, name: str) -> str:
    """Remember ``name`` (whitespace collapsed; '' forgets it) as this workspace's rater."""
    name = " ".join(str(name or "").split())
    set_setting(ctx.db(workspace), RATER_SETTING, name)
    return name


def judge_results_as(ctx, workspace: Path, system: ej.System, encoder_spec, generation: int, suite: str,
                     query: str, n: int, rater: Optional[str]) -> dict[str, Any]:
    """:func:`~merch_app.services.evaluate_jobs.judge_results`; with ``rater`` the grades shown are that rater's own."""
    res = ej.judge_results(ctx, workspace, system, encoder_spec, generation, suite, query, n)
    if rater and suite and suite != ej.BEHAVIOUR:
        res["grades"] = dict(rater_grades(ctx.db(workspace), suite, rater).get(query, {}))
    return res


def save_rater_grade(ctx, workspace: Path, suite: str, query: str, item_id: str, grade: Optional[int],
                     rater: str) -> tuple:
    """:func:`merch_app.evaluation.raters.rate` in the worker; returns ``(query, item_id, grade)``."""
    rate(ctx.db(workspace), suite, query, item_id, grade, rater)
    return (query, item_id, grade)


def blind_queue(ctx, workspace: Path, system: ej.System, encoder_spec, generation: int, suite: str, rater: str,
                depth: int, seed: int = 0) -> list[dict[str, str]]:
    """``{query, item_id, title}`` of :func:`~merch_app.evaluation.raters.judging_queue` ranked by ``system``."""
    rank, _config = ej.rank_fn(ctx, workspace, system, encoder_spec, generation)
    db = ctx.db(workspace)
    pairs = judging_queue(db, suite, rank, rater, depth=depth, seed=seed)
    titles = item_titles(db, [i for _q, i in pairs])
    return [{"query": q, "item_id": i, "title": titles.get(i, ("", ""))[0]} for q, i in pairs]
