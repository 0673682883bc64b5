"""``merch-app rules list | add | enable | disable | delete | impact``: merchandising rules."""
from __future__ import annotations

from typing import Optional

import click

from merch_app.cli.common import TerminalProgress, emit_json, json_option, user_errors, workspace_db, workspace_option
from merch_app.cli.suite_inputs import command_bundle, command_suite
from merch_app.evaluation.rule_impact import rule_impact, summarise
from merch_app.ranking.rules import (
    MerchRule, RuleError, delete_rule, get_rule, load_rules, save_rule, set_rule_enabled, validate_rule,
)


def _print_rules(rules) -> None:
    if not rules:
        click.echo("No rules. Add one with 'merch-app rules add KIND ...'.")
        return
    for r in rules:
        state = "on " if r.enabled else "off"
        click.echo(f"{r.rule_id:>4}  [{state}]  {r.kind:<8} {r.pattern!r:<20} {r.name}")


@click.group("rules")
def rules_group() -> None:
    """Merchandising rules: pin, boost, bury, hide, synonyms, query rewrites."""


@rules_group.command("list")
@json_option
@workspace_option
def rules_list(as_json, workspace) -> None:
    """List the workspace's rules (enabled and disabled)."""
    with workspace_db(workspace) as db:
        rules = load_rules(db)
    if as_json:
        emit_json([r.to_dict() for r in rules])
    else:
        _print_rules(rules)


def _draft(kind, pattern, item, position, category, tag, price_min, price_max, weight, terms, to, name,
           disabled):
    params: dict = {}
    if kind in ("pin", "hide"):
        params["item_id"] = item
        if kind == "pin":
            params["position"] = position
    elif kind in ("boost", "bury"):
        chosen = [(a, v) for a, v in (("category", category), ("tag", tag), ("item", item)) if v]
        if price_min is not None or price_max is not None:
            chosen.append(("price", None))
        if len(chosen) != 1:
            raise RuleError(f"a {kind} rule needs exactly one of --category, --tag, --item, --price-min/--price-max")
        attr, value = chosen[0]
        params.update(attribute=attr, weight=weight)
        if attr == "price":
            params.update(min=price_min, max=price_max)
        else:
            params["value"] = value
    elif kind == "synonym":
        params["terms"] = terms or ""
    elif kind == "rewrite":
        params["to"] = to or ""
    return MerchRule(kind, pattern, params, name or "", enabled=not disabled)


@rules_group.command("add")
@click.argument("kind", type=click.Choice(["pin", "boost", "bury", "hide", "synonym", "rewrite"]))
@click.option("--pattern", default="*", show_default=True,
              help="Query pattern: words ('mug'), glob ('mug*'), 'exact:TEXT', 're:REGEX' or '*' (all).")
@click.option("--item", default=None, help="Item id (pin, hide, or boost/bury one item).")
@click.option("--position", type=int, default=1, show_default=True, help="Pin position (1 = first).")
@click.option("--category", default=None, help="Boost/bury items of this category.")
@click.option("--tag", default=None, help="Boost/bury items with this tag.")
@click.option("--price-min", type=float, default=None, help="Boost/bury items priced at least this.")
@click.option("--price-max", type=float, default=None, help="Boost/bury items priced at most this.")
@click.option("--weight", type=float, default=0.2, show_default=True, help="Score added (boost) or taken (bury).")
@click.option("--terms", default=None, help="Synonyms, comma separated: 'mug,cup,beaker'.")
@click.option("--to", default=None, help="Rewrite: the query to search instead.")
@click.option("--name", default=None, help="Name shown in explanations (default: a description).")
@click.option("--disabled", is_flag=True, help="Store the rule switched off (a draft).")
@click.option("--dry-run", is_flag=True, help="Show its impact and do not save it.")
@click.option("--suite", default=None, help="With --dry-run: suite (file or stored name) for the metric change.")
@click.option("--model", "model_id", default=None)
@click.option("--encoder", "encoder_spec", default=None, metavar="SPEC")
@json_option
@workspace_option
@user_errors()
def rules_add(kind, pattern, item, position, category, tag, price_min, price_max, weight, terms, to, name,
              disabled, dry_run, suite, model_id, encoder_spec, as_json, workspace) -> None:
    """Add a rule of KIND (or with --dry-run only show what it would change)."""
    rule = validate_rule(_draft(kind, pattern, item, position, category, tag, price_min, price_max, weight, terms,
                                to, name, disabled))
    if dry_run:
        _impact(rule, suite, model_id, encoder_spec, 10, as_json, workspace)
        return
    with workspace_db(workspace) as db:
        stored = save_rule(db, rule)
    if as_json:
        emit_json(stored.to_dict())
    else:
        click.echo(f"rule {stored.rule_id} added{' (disabled)' if disabled else ''}: {stored.name}")


def _switch(rule_id: int, enabled: bool, as_json: bool, workspace) -> None:
    with workspace_db(workspace) as db:
        rule = set_rule_enabled(db, rule_id, enabled)
    if as_json:
        emit_json(rule.to_dict())
    else:
        click.echo(f"rule {rule_id} {'enabled' if enabled else 'disabled'}: {rule.name}")


@rules_group.command("enable")
@click.argument("rule_id", type=int)
@json_option
@workspace_option
@user_errors()
def rules_enable(rule_id, as_json, workspace) -> None:
    """Switch rule RULE_ID on."""
    _switch(rule_id, True, as_json, workspace)


@rules_group.command("disable")
@click.argument("rule_id", type=int)
@json_option
@workspace_option
@user_errors()
def rules_disable(rule_id, as_json, workspace) -> None:
    """Switch rule RULE_ID off."""
    _switch(rule_id, False, as_json, workspace)


@rules_group.command("delete")
@click.argument("rule_id", type=int)
@workspace_option
@user_errors()
def rules_delete(rule_id, workspace) -> None:
    """Delete rule RULE_ID."""
    with workspace_db(workspace) as db:
        delete_rule(db, rule_id)
    click.echo(f"rule {rule_id} deleted")


@rules_group.command("impact")
@click.argument("rule_id", type=int)
@click.option("--suite", default=None, help="Suite (file or stored name) for the metric change.")
@click.option("--model", "model_id", default=None)
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--encoder", "encoder_spec", default=None, metavar="SPEC")
@json_option
@workspace_option
@user_errors()
def rules_impact(rule_id, suite, model_id, k, encoder_spec, as_json, workspace) -> None:
    """What enabling rule RULE_ID changes: touched queries, rank moves, metric change."""
    with workspace_db(workspace) as db:
        rule = get_rule(db, rule_id)
    _impact(rule, suite, model_id, encoder_spec, k, as_json, workspace)


def _impact(rule, suite: Optional[str], model_id, encoder_spec, k, as_json, workspace) -> None:
    bar = TerminalProgress("impact:", enabled=None if not as_json else False)
    with workspace_db(workspace) as db:
        try:
            s = command_suite(db, suite) if suite else None
            impact = rule_impact(db, rule, bundle=command_bundle(db, model_id, encoder_spec), suite=s, k=k,
                                 progress=bar)
        finally:
            bar.close()
    if as_json:
        emit_json(impact.to_dict())
        return
    click.echo(f"rule: {rule.name}")
    click.echo(summarise(impact))
    for t in impact.touched[:30]:
        moves = ", ".join(f"{m['item_id']} {m['left'] or '-'}→{m['right'] or '-'}" for m in t["moves"][:6])
        click.echo(f"  {t['query']!r}: {moves}{' …' if len(t['moves']) > 6 else ''}")
    for label in ("suite", "behaviour"):
        block = getattr(impact, label)
        if "skipped" in block:
            click.echo(f"{label}: skipped ({block['skipped']})")
