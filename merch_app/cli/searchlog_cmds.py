"""``merch-app searchlog top | zero-results | no-clicks | synonyms``: what the search log says."""
from __future__ import annotations

from typing import Any

import click

from merch_app.cli.common import emit_json, json_option, pad, workspace_db, workspace_option
from merch_app.data.search_log import has_queries
from merch_app.insights.search_log import no_click_queries, synonym_suggestions, top_queries, zero_result_queries


def _limit(f):
    return click.option("--limit", type=click.IntRange(1, 100_000), default=30, show_default=True,
                        help="Rows shown.")(f)


@click.group("searchlog")
def searchlog_group() -> None:
    """Search-log insight: top queries, zero results, no clicks, synonym suggestions."""


def _run(workspace, fn, **kwargs) -> list[dict[str, Any]]:
    with workspace_db(workspace) as db:
        if not has_queries(db):
            raise click.ClickException("no event in this workspace carries a query: import search events "
                                       "(a query column) to see the search log")
        return fn(db, **kwargs)


def _print_queries(rows: list[dict[str, Any]], extra: str = "") -> None:
    if not rows:
        click.echo("No queries.")
        return
    click.echo(f"{'query':<32} {'searches':>8} {'CTR':>6} {'conv.':>6}  {extra}")
    for r in rows:
        tail = f"  → {r['corrected']}" if r.get("corrected") else ""
        click.echo(f"{pad(r['query'], 32)} {r['searches']:>8} {r['ctr']:>6.1%} {r['conversion']:>6.1%}{tail}")


@searchlog_group.command("top")
@workspace_option
@_limit
@json_option
def top_command(workspace, limit, as_json) -> None:
    """The most searched queries with click-through rate and conversion."""
    rows = _run(workspace, top_queries, limit=limit)
    emit_json(rows) if as_json else _print_queries(rows)


@searchlog_group.command("zero-results")
@workspace_option
@_limit
@json_option
def zero_command(workspace, limit, as_json) -> None:
    """Searched queries whose words match no item (with the spelling correction that would help)."""
    rows = _run(workspace, zero_result_queries, limit=limit)
    emit_json(rows) if as_json else _print_queries(rows, "corrected to")


@searchlog_group.command("no-clicks")
@workspace_option
@_limit
@click.option("--min-searches", type=click.IntRange(1, None), default=2, show_default=True)
@json_option
def no_clicks_command(workspace, limit, min_searches, as_json) -> None:
    """Queries searched at least --min-searches times and never followed by a click, cart or purchase."""
    rows = _run(workspace, no_click_queries, limit=limit, min_searches=min_searches)
    emit_json(rows) if as_json else _print_queries(rows)


@searchlog_group.command("synonyms")
@workspace_option
@_limit
@click.option("--min-sessions", type=click.IntRange(1, None), default=2, show_default=True)
@click.option("--window", "window_minutes", type=float, default=10.0, show_default=True,
              help="Minutes between the failed search and the reformulation.")
@json_option
def synonyms_command(workspace, limit, min_sessions, window_minutes, as_json) -> None:
    """Synonyms mined from reformulations: searched A, clicked nothing, searched B, clicked."""
    rows = _run(workspace, synonym_suggestions, limit=limit, min_sessions=min_sessions,
                window_minutes=window_minutes)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("No reformulations with enough evidence.")
    for r in rows:
        click.echo(f"{pad(r['source'], 20)} → {pad(r['target'], 20)} {r['kind']:<8} {r['sessions']:>4} sessions, "
                   f"{r['bought']} bought   {r['rule'] if r['kind'] == 'synonym' else ''}")


def register(group: click.Group) -> None:
    group.add_command(searchlog_group)
