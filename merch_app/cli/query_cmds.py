"""``merch-app query | recommend | related | explain``: the ranker on the command line."""
from __future__ import annotations

import math
from typing import Any, Optional

import click

from merch_app.cli.common import emit_json, json_option, model_loading, pad, workspace_db, workspace_option
from merch_app.explain.explanation import explain_item
from merch_app.explain.model_parts import model_parts_text
from merch_app.model.encoder import workspace_encoder
from merch_app.ranking.rule_hook import describe_effect
from merch_app.ranking.rules import RuleError, as_of_day
from merch_app.ranking.types import COMPONENT_NAMES, COMPONENTS, Filters, RankRequest, Weights
from merch_app.services.ranking import open_ranker

_TITLE_WIDTH = 42


def _weights(_ctx, _param, value):
    try:
        return Weights.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _remember_int8(ctx, _param, value):
    ctx.meta["merch_app.int8"] = value
    return value


def _common(f):
    f = click.option("--int8/--fp32", default=None, expose_value=False, callback=_remember_int8,
                     help="Query with the int8 / fp32 BERT encoder (must match the model's; without a model "
                          "default: the workspace setting encoder_int8).")(f)
    f = click.option("--encoder", "encoder_spec", default=None, metavar="SPEC",
                     help="Query encoder override (e.g. 'hashing'); default: the model's encoder.")(f)
    f = click.option("--model", "model_id", default=None, help="Model version (default: the active one).")(f)
    f = click.option("--k", default=10, show_default=True, type=click.IntRange(1, 10_000),
                     help="Results shown.")(f)
    f = json_option(f)
    return workspace_option(f)


def _filters_options(f):
    f = click.option("--category", default=None, help="Only items of this category.")(f)
    f = click.option("--price-min", type=float, default=None, help="Minimum price.")(f)
    f = click.option("--price-max", type=float, default=None, help="Maximum price.")(f)
    f = click.option("--has-events", is_flag=True, help="Only items with behaviour data.")(f)
    return click.option("--weights", default=None, callback=_weights, metavar="lex=..,text=..,cf=..,pop=..",
                        help="Fusion weights (unnamed ones keep their defaults).")(f)


def _day(_ctx, _param, value):
    try:
        return as_of_day(value) if value else None
    except RuleError as exc:
        raise click.BadParameter(str(exc)) from None


_as_of = click.option("--as-of", "as_of", default=None, metavar="DATE", callback=_day,
                      help="Apply the rules live on this day (YYYY-MM-DD, default today), e.g. next week's.")
_literal = click.option("--literal", is_flag=True,
                        help="Search the words as typed: no spelling correction.")
_whole_words = click.option("--whole-words", is_flag=True,
                            help="Do not treat the last word as a prefix (default: 'hear' also finds 'heart').")


def _ranker(db, model_id: Optional[str], encoder_spec: Optional[str]):
    """The workspace's ranker (:func:`merch_app.services.ranking.open_ranker`) for one command."""
    ctx = click.get_current_context(silent=True)
    int8 = ctx.meta.get("merch_app.int8") if ctx is not None else None
    with model_loading():
        encoder = workspace_encoder(db, encoder_spec, int8) if encoder_spec or int8 is not None else None
        return open_ranker(db, model_id, encoder)


def _rank(workspace, model_id, encoder_spec, request):
    with workspace_db(workspace) as db:
        ranker = _ranker(db, model_id, encoder_spec)
        try:
            return ranker.rank(request)
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0] if exc.args else exc)) from exc


def _rows(rl) -> list[dict[str, Any]]:
    extra = {"corrected_query": rl.corrected_query} if rl.corrected_query is not None else {}
    return [{"rank": r["rank"], "item_id": r["item_id"], "title": r["title"], "score": r["score"],
             "components": r["components"], "matched_terms": r["matched_terms"], **extra} for r in rl.rows()]


def _fmt(x: float) -> str:
    return f"{x:7.4f}" if x is not None and math.isfinite(x) else "      -"


def _print_notes(rl) -> None:
    """The ranker's notes (meaning match off, text fallback, ...) on stderr, so stdout stays the result."""
    for note in rl.notes:
        click.echo(f"note: {note}", err=True)


def _print_table(rl) -> None:
    _print_notes(rl)
    if not rl.item_ids:
        click.echo("No results.")
        return
    id_w = max(7, *(len(i) for i in rl.item_ids))
    head = f"{'rank':>4}  {'item_id':<{id_w}}  {'title':<{_TITLE_WIDTH}}  {'score':>7}  " \
           + "  ".join(f"{COMPONENT_NAMES[c]:>9}" for c in COMPONENTS)
    click.echo(head)
    click.echo("-" * len(head))
    for r in rl.rows():
        c = r["components"]
        click.echo(f"{r['rank']:>4}  {r['item_id']:<{id_w}}  {pad(r['title'], _TITLE_WIDTH)}  {_fmt(r['score'])}  "
                   + "  ".join(f"{_fmt(c[name]):>9}" for name in COMPONENTS))
    click.echo(f"{rl.n_candidates} candidates scored in {rl.seconds * 1000:.1f} ms")


def _output(rl, as_json: bool) -> None:
    if as_json:
        _print_notes(rl)
        emit_json(_rows(rl))
    else:
        _print_table(rl)


def _filters(category, price_min, price_max, has_events):
    return Filters(category=category, price_min=price_min, price_max=price_max, has_events=has_events)


@click.command("query")
@click.argument("text")
@click.option("--user", default=None, help="Rank as this user (adds the CF component).")
@_whole_words
@_literal
@_as_of
@_filters_options
@_common
def query_command(text, user, weights, whole_words, literal, as_of, category, price_min, price_max, has_events, k,
                  as_json, model_id, encoder_spec, workspace) -> None:
    """Hybrid search for TEXT (keywords + meaning + behaviour + popularity).

    A word that matches no item is corrected to the nearest catalogue word
    (the output says so); --literal searches the words as typed.
    """
    req = RankRequest(query=text, user_id=user, k=k, weights=weights, prefix=not whole_words, literal=literal,
                      filters=_filters(category, price_min, price_max, has_events), as_of=as_of)
    _output(_rank(workspace, model_id, encoder_spec, req), as_json)


@click.command("recommend")
@click.option("--user", required=True, help="User to recommend for.")
@_filters_options
@_common
def recommend_command(user, weights, category, price_min, price_max, has_events, k, as_json,
                      model_id, encoder_spec, workspace) -> None:
    """Recommendations for a user (CF + popularity)."""
    req = RankRequest(mode="recommend", user_id=user, k=k, weights=weights,
                      filters=_filters(category, price_min, price_max, has_events))
    _output(_rank(workspace, model_id, encoder_spec, req), as_json)


@click.command("related")
@click.argument("item")
@click.option("--by", "related_by", type=click.Choice(["text", "cf"]), default="text", show_default=True,
              help="Similar text vectors or co-behaviour (CF).")
@_filters_options
@_common
def related_command(item, related_by, weights, category, price_min, price_max, has_events, k, as_json,
                    model_id, encoder_spec, workspace) -> None:
    """Items related to ITEM (an item id)."""
    req = RankRequest(mode="related", item_id=item, related_by=related_by, k=k, weights=weights,
                      filters=_filters(category, price_min, price_max, has_events))
    _output(_rank(workspace, model_id, encoder_spec, req), as_json)


@click.command("explain")
@click.argument("text")
@click.option("--item", "item_ref", required=True, help="Item id (or title) to explain.")
@click.option("--user", default=None, help="Rank as this user.")
@_whole_words
@_literal
@_as_of
@_filters_options
@_common
def explain_command(text, item_ref, user, weights, whole_words, literal, as_of, category, price_min, price_max,
                    has_events, k, as_json, model_id, encoder_spec, workspace) -> None:
    """Explain the score of --item for the query TEXT (with "why not" when it is not in the top k)."""
    req = RankRequest(query=text, user_id=user, k=k, weights=weights, prefix=not whole_words, literal=literal,
                      filters=_filters(category, price_min, price_max, has_events), as_of=as_of)
    with workspace_db(workspace) as db:
        ranker = _ranker(db, model_id, encoder_spec)
        exp = explain_item(ranker, req, item_ref)
    if as_json:
        emit_json(exp.to_dict())
    else:
        _print_explanation(exp)


def _print_explanation(exp) -> None:
    rank = f"rank {exp.rank}" if exp.rank else exp.status
    click.echo(f"{exp.item_id}  {exp.title}  ({rank}, score {exp.score:.4f})")
    if exp.reason:
        click.echo(f"  {exp.reason}")
    click.echo("\nScore split")
    for c in exp.components:
        click.echo(f"  {c['label']:<38} raw {_fmt(c['raw'])} × {c['weight']:<5g} = {_fmt(c['contribution'])}")
    if exp.lexical:
        click.echo("\nKeyword terms")
        matched = {m["original"]: m["matched"] for m in exp.lexical.get("alternatives", [])}
        for c in exp.lexical.get("corrections", []):
            alts = " | ".join(f"{a['word']} {a['weight']:.2g}" for a in c.get("alternatives", [])) or c["corrected"]
            hit = matched.get(c["original"])
            click.echo(f"  searched {alts} for {c['original']} (spelling, {c['distance']} edit(s)); "
                       + (f"this item matched {hit}" if hit else "this item has none of them"))
        for b in exp.lexical.get("backoffs", []):
            click.echo(f"  searched {' + '.join(b['searched_as'])} for {b['word']} (not an indexed word)")
        for t in exp.lexical["terms"]:
            fields = ", ".join(t["fields"]) or "no match"
            click.echo(f"  {pad(t['label'], 20)} BM25 {t['bm25']:7.3f}  → {_fmt(t['contribution'])}  in {fields}")
    if exp.semantic and exp.semantic["drops"]:
        click.echo(f"\nMeaning (cosine {exp.semantic['cosine']:.3f}); drop when a word is left out")
        best = {b["query_word"]: b for b in exp.semantic["best_matches"]}
        for d in exp.semantic["drops"]:
            b = best.get(d["word"])
            near = f"  nearest item word: {b['item_word']} ({b['field']}, {b['similarity']:.2f})" if b else ""
            click.echo(f"  {d['word']:<20} {d['drop']:+.3f}{near}")
    if exp.cf.get("model_score") is not None:
        click.echo(f"\nBehaviour model: {model_parts_text(exp.cf)}")
    if exp.cf.get("because"):
        click.echo("\nBecause you bought")
        for b in exp.cf["because"]:
            click.echo(f"  {b['item_id']:<10} {b['title'][:50]:<50} {b['contribution']:+.4f}")
    for r in exp.rules:
        click.echo(f"\nRule {r['rule']}: {describe_effect(r)}")
    if exp.why_not:
        click.echo("\nWhy not higher: " + exp.why_not.summary())


def register(group: click.Group) -> None:
    for cmd in (query_command, recommend_command, related_command, explain_command):
        group.add_command(cmd)
