"""``merch-app suite rate | queue | agreement``: judging a suite as a team (:mod:`merch_app.evaluation.raters`).

The commands join the ``suite`` group (:mod:`merch_app.cli.suite_cmds` adds :data:`RATER_COMMANDS`).
"""
from __future__ import annotations

from typing import Optional

import click

from merch_app.cli.common import emit_json, json_option, workspace_db, workspace_option
from merch_app.cli.suite_inputs import command_bundle
from merch_app.evaluation.raters import agreement, check_rater, judging_queue, rate
from merch_app.evaluation.suite_run import model_ranker
from merch_app.insights.common import item_titles

CLEAR = ("none", "clear", "-")
rater_option = click.option("--rater", required=True, metavar="NAME", help="Who grades (e.g. ann).")


def _num(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3f}"


@click.command("rate")
@click.argument("name")
@click.argument("query")
@click.argument("item")
@click.argument("grade")
@rater_option
@json_option
@workspace_option
def suite_rate(name, query, item, grade, rater, as_json, workspace) -> None:
    """Save a rater's GRADE (0-3, or 'none' to clear) of ITEM for QUERY in the suite NAME (created if missing)."""
    value = None if grade.strip().lower() in CLEAR else grade
    with workspace_db(workspace) as db:
        merged = rate(db, name, query, item, value, rater)
    rater = check_rater(rater)
    if as_json:
        emit_json({"suite": name, "query": " ".join(query.split()), "item_id": item, "rater": rater,
                   "grade": None if value is None else int(value), "merged": merged})
        return
    given = "cleared" if value is None else f"graded {int(value)}"
    click.echo(f"{rater} {given} ({query!r}, {item}) in suite {name!r}; merged grade "
               f"{'none (unjudged)' if merged is None else merged}")


@click.command("queue")
@click.argument("name")
@rater_option
@click.option("--depth", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="How many top results of each query to judge.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the blind order.")
@click.option("--model", "model_id", default=None, help="Model version that ranks (default: the active one).")
@click.option("--no-rules", is_flag=True, help="Rank without the workspace's merchandising rules.")
@click.option("--encoder", "encoder_spec", default=None, metavar="SPEC",
              help="Query encoder override (e.g. 'hashing'); default: the model's encoder.")
@json_option
@workspace_option
def suite_queue(name, rater, depth, seed, model_id, no_rules, encoder_spec, as_json, workspace) -> None:
    """The results in the top DEPTH of the suite NAME's queries that a rater has not graded, in a blind order."""
    with workspace_db(workspace) as db:
        bundle = command_bundle(db, model_id, encoder_spec)
        rank, _config = model_ranker(db, bundle, rules=None if no_rules else "workspace")
        pairs = judging_queue(db, name, rank, rater, depth=depth, seed=seed)
        titles = item_titles(db, [i for _q, i in pairs])
    rater = check_rater(rater)
    rows = [{"query": q, "item_id": i, "title": titles.get(i, ("", ""))[0]} for q, i in pairs]
    if as_json:
        emit_json({"suite": name, "rater": rater, "depth": depth, "seed": seed, "pairs": rows})
        return
    for n, r in enumerate(rows, 1):
        click.echo(f"{n:>4}  {r['query']}\t{r['item_id']}\t{r['title']}")
    click.echo(f"{len(rows)} results to grade for {rater} (top {depth}, seed {seed}); grade each with "
               f"merch-app suite rate {name} QUERY ITEM GRADE --rater {rater}")


@click.command("agreement")
@click.argument("name")
@click.option("--min-spread", default=1, show_default=True, type=click.IntRange(1, 3),
              help="List pairs whose grades differ by at least this much.")
@json_option
@workspace_option
def suite_agreement(name, min_spread, as_json, workspace) -> None:
    """Agreement between the raters of the suite NAME: Cohen's and Fleiss' kappa, and the pairs they disagree on."""
    with workspace_db(workspace) as db:
        a = agreement(db, name, min_spread=min_spread)
    if as_json:
        emit_json(a.to_dict())
        return
    if len(a.raters) < 2:
        click.echo(f"suite {name!r} has {len(a.raters)} rater(s): agreement needs two raters grading the same "
                   "results (merch-app suite rate ... --rater NAME)")
        return
    click.echo(f"suite {name!r}: {len(a.raters)} raters ({', '.join(a.raters)}), {a.n_rated} results graded, "
               f"{a.n_pairs} by two or more; all agree on {_num(a.agreement)} of them")
    for p in a.pairwise:
        click.echo(f"  {p.rater_a} vs {p.rater_b}: n {p.n}, agreement {_num(p.agreement)}, Cohen's kappa "
                   f"{_num(p.kappa)}, linear-weighted {_num(p.weighted_kappa)}")
    click.echo(f"  Fleiss' kappa {_num(a.fleiss)} over {a.fleiss_pairs} results graded by {a.fleiss_raters} raters")
    click.echo(f"{len(a.disagreements)} disagreements (grades {min_spread} or more apart), widest first:")
    for d in a.disagreements:
        grades = ", ".join(f"{r} {g}" for r, g in d["grades"].items())
        click.echo(f"  spread {d['spread']}  {d['query']}\t{d['item_id']}\t{grades}")


RATER_COMMANDS = (suite_rate, suite_queue, suite_agreement)
