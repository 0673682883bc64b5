"""``merch-app rules list | add | set-status | enable | disable | delete | impact | conflicts | usage | log``."""
from __future__ import annotations

from typing import Optional

import click

from merch_app.cli.common import TerminalProgress, emit_json, json_option, user_errors, workspace_db, workspace_option
from merch_app.cli.suite_inputs import command_bundle, command_suite
from merch_app.data.workspace import NoItemsError, require_items
from merch_app.evaluation.rule_impact import rule_impact, summarise
from merch_app.evaluation.rule_usage import rule_usage
from merch_app.ranking.rule_hook import PRECEDENCE_TEXT
from merch_app.ranking.rules import (
    MATCH_TYPES, RULE_KINDS, STATUSES, MerchRule, RuleError, as_of_day, delete_rule, get_rule, load_rules, rule_log,
    validate_rule,
)
from merch_app.services.rule_edits import save_checked, set_status_checked, workspace_conflicts

as_of_option = click.option("--as-of", "as_of", default=None, metavar="DATE",
                            help="Apply the rules as of this day (YYYY-MM-DD, default today): preview next week.")
by_option = click.option("--by", "actor", default=None, help="Who makes the change, for the activity log "
                                                              "(default: your user name).")
force_option = click.option("--force", is_flag=True, help="Save even when the rule conflicts with a live rule "
                                                          "(ranking follows the precedence shown).")


def _window(r: MerchRule) -> str:
    if not (r.start or r.end):
        return ""
    return f"{r.start or '…'}..{r.end or '…'}"


def _print_rules(rules, as_of=None) -> None:
    if not rules:
        click.echo("No rules. Add one with 'merch-app rules add KIND ...'.")
        return
    for r in rules:
        on = "on " if r.in_force(as_of) else "off"
        extra = "  ".join(x for x in (_window(r), r.owner and f"owner {r.owner}", ", ".join(r.tags)) if x)
        click.echo(f"{r.rule_id:>4}  [{on}]  {r.kind:<8} {r.state(as_of):<9} {r.match:<6} {r.pattern!r:<20} "
                   f"{r.name}{'  ' + extra if extra else ''}")


def _print_conflicts(conflicts) -> None:
    for c in conflicts:
        click.echo(f"  {c.sentence()}", err=True)


@click.group("rules")
def rules_group() -> None:
    """Merchandising rules: pin, boost, bury, hide, synonyms, query rewrites; lifecycle, conflicts, usage."""


@rules_group.command("list")
@click.option("--status", "status", type=click.Choice(["draft", "live", "scheduled", "expired"]), default=None,
              help="Only rules in this state (as of --as-of).")
@as_of_option
@json_option
@workspace_option
@user_errors()
def rules_list(status, as_of, as_json, workspace) -> None:
    """List the workspace's rules (every status)."""
    as_of = as_of_day(as_of)
    with workspace_db(workspace) as db:
        rules = [r for r in load_rules(db) if status is None or r.state(as_of) == status]
    if as_json:
        emit_json([{**r.to_dict(), "state": r.state(as_of)} for r in rules])
    else:
        _print_rules(rules, as_of)


def _draft(kind, pattern, item, position, category, tag, price_min, price_max, weight, terms, to, name,
           disabled, url=None):
    params: dict = {}
    if kind in ("pin", "hide"):
        params["item_id"] = item
        if kind == "pin":
            params["position"] = position
    elif kind in ("boost", "bury", "slot"):
        chosen = [(a, v) for a, v in (("category", category), ("tag", tag), ("item", item)) if v]
        if price_min is not None or price_max is not None:
            chosen.append(("price", None))
        if len(chosen) != 1:
            raise RuleError(f"a {kind} rule needs exactly one of --category, --tag, --item, --price-min/--price-max")
        attr, value = chosen[0]
        params.update(attribute=attr, **({"position": position} if kind == "slot" else {"weight": weight}))
        if attr == "price":
            params.update(min=price_min, max=price_max)
        else:
            params["value"] = value
    elif kind == "synonym":
        params["terms"] = terms or ""
    elif kind == "rewrite":
        params["to"] = to or ""
    elif kind == "redirect":
        params["url"] = url or ""
    return MerchRule(kind, pattern, params, name or "", enabled=not disabled)


@rules_group.command("add")
@click.argument("kind", type=click.Choice(list(RULE_KINDS)))
@click.option("--pattern", default="*", show_default=True,
              help="Query pattern, read as --match says; '*' = every request. Without --match the old forms "
                   "work: words ('mug'), glob ('mug*'), 'exact:TEXT', 're:REGEX'.")
@click.option("--match", "match", type=click.Choice(list(MATCH_TYPES)), default=None,
              help="exact = the whole query; phrase = these words together, in order (also in longer queries); "
                   "all = every word, any order; regex = a regular expression search. A word rule never fires on "
                   "an incomplete word ('christm').")
@click.option("--item", default=None, help="Item id (pin, hide, or boost/bury one item).")
@click.option("--position", type=int, default=1, show_default=True,
              help="Pin or slot position (1 = first); a slot puts the best item with --category/--tag/--price-* "
                   "there.")
@click.option("--category", default=None, help="Boost/bury (or slot) items of this category.")
@click.option("--tag", default=None, help="Boost/bury (or slot) items with this item tag.")
@click.option("--price-min", type=float, default=None, help="Boost/bury items priced at least this.")
@click.option("--price-max", type=float, default=None, help="Boost/bury items priced at most this.")
@click.option("--weight", type=float, default=0.2, show_default=True, help="Score added (boost) or taken (bury).")
@click.option("--terms", default=None, help="Synonyms, comma separated: 'mug,cup,beaker'.")
@click.option("--to", default=None, help="Rewrite: the query to search instead.")
@click.option("--url", default=None, help="Redirect: the page shoppers who search the pattern are sent to.")
@click.option("--name", default=None, help="Name shown in explanations (default: a description).")
@click.option("--status", "status", type=click.Choice(list(STATUSES)), default=None,
              help="draft (does nothing until made live) or live (default); expired stops it.")
@click.option("--start", default=None, metavar="DATE", help="First day the rule applies (YYYY-MM-DD, UTC).")
@click.option("--end", default=None, metavar="DATE", help="Last day the rule applies (inclusive).")
@click.option("--owner", default="", help="Who looks after the rule.")
@click.option("--comment", default="", help="Why the rule is there.")
@click.option("--rule-tag", "rule_tags", multiple=True, metavar="TAG",
              help="A label of the rule (repeat for more), e.g. --rule-tag 'black friday'. (--tag is the item tag "
                   "a boost/bury targets.)")
@click.option("--priority", type=int, default=0, show_default=True,
              help="Between two rules of one kind that disagree, the higher priority wins (then the newer).")
@click.option("--disabled", is_flag=True, help="Store the rule as a draft (same as --status draft).")
@click.option("--dry-run", is_flag=True, help="Show its impact and do not save it.")
@click.option("--suite", default=None, help="With --dry-run: suite (file or stored name) for the metric change.")
@click.option("--model", "model_id", default=None)
@click.option("--encoder", "encoder_spec", default=None, metavar="SPEC")
@force_option
@as_of_option
@by_option
@json_option
@workspace_option
@user_errors()
def rules_add(kind, pattern, match, item, position, category, tag, price_min, price_max, weight, terms, to, url,
              name, status, start, end, owner, comment, rule_tags, priority, disabled, dry_run, suite, model_id,
              encoder_spec, force, as_of, actor, as_json, workspace) -> None:
    """Add a rule of KIND (or with --dry-run only show what it would change).

    A live rule that conflicts with another live rule (two pins for one position, a boost and a bury of the
    same items, a hide that cancels a pin, on a query both fire on) is refused unless --force.
    """
    rule = _draft(kind, pattern, item, position, category, tag, price_min, price_max, weight, terms, to, name,
                  disabled, url)
    rule = MerchRule(rule.kind, rule.pattern, rule.params, rule.name, priority=priority,
                     status=status or ("draft" if disabled else "live"), match=match or "", start=start, end=end,
                     owner=owner, comment=comment, tags=list(rule_tags))
    rule = validate_rule(rule)  # without --match the pattern's old prefixes give the match type
    if dry_run:
        _impact(rule, suite, model_id, encoder_spec, 10, as_of, as_json, workspace)
        return
    with workspace_db(workspace) as db:
        stored, conflicts = save_checked(db, rule, force=force, actor=actor, as_of=as_of)
    if as_json:
        emit_json({**stored.to_dict(), "conflicts": [c.to_dict() for c in conflicts]})
        return
    click.echo(f"rule {stored.rule_id} added ({stored.state(as_of)}): {stored.name}")
    if conflicts:
        click.echo(f"saved despite {len(conflicts)} conflict(s); ranking follows the precedence:", err=True)
        _print_conflicts(conflicts)


def _set_status(rule_id: int, status: str, force: bool, actor, as_json: bool, workspace) -> None:
    with workspace_db(workspace) as db:
        rule, conflicts = set_status_checked(db, rule_id, status, force=force, actor=actor)
    if as_json:
        emit_json({**rule.to_dict(), "conflicts": [c.to_dict() for c in conflicts]})
        return
    click.echo(f"rule {rule_id} is {rule.status}{'' if rule.state() == rule.status else f' ({rule.state()} today)'}"
               f": {rule.name}")
    if conflicts:
        click.echo(f"made live despite {len(conflicts)} conflict(s); ranking follows the precedence:", err=True)
        _print_conflicts(conflicts)


@rules_group.command("set-status")
@click.argument("rule_id", type=int)
@click.argument("status", type=click.Choice(list(STATUSES)))
@force_option
@by_option
@json_option
@workspace_option
@user_errors()
def rules_set_status(rule_id, status, force, actor, as_json, workspace) -> None:
    """Make rule RULE_ID a draft, live or expired (going live is refused on a conflict unless --force)."""
    _set_status(rule_id, status, force, actor, as_json, workspace)


@rules_group.command("enable")
@click.argument("rule_id", type=int)
@force_option
@by_option
@json_option
@workspace_option
@user_errors()
def rules_enable(rule_id, force, actor, as_json, workspace) -> None:
    """Make rule RULE_ID live (same as 'set-status RULE_ID live')."""
    _set_status(rule_id, "live", force, actor, as_json, workspace)


@rules_group.command("disable")
@click.argument("rule_id", type=int)
@by_option
@json_option
@workspace_option
@user_errors()
def rules_disable(rule_id, actor, as_json, workspace) -> None:
    """Make rule RULE_ID a draft again (same as 'set-status RULE_ID draft')."""
    _set_status(rule_id, "draft", False, actor, as_json, workspace)


@rules_group.command("delete")
@click.argument("rule_id", type=int)
@by_option
@json_option
@workspace_option
@user_errors()
def rules_delete(rule_id, actor, as_json, workspace) -> None:
    """Delete rule RULE_ID (its activity log is kept)."""
    with workspace_db(workspace) as db:
        delete_rule(db, rule_id, actor)
    if as_json:
        emit_json({"deleted": rule_id})
    else:
        click.echo(f"rule {rule_id} deleted")


@rules_group.command("impact")
@click.argument("rule_id", type=int)
@click.option("--suite", default=None, help="Suite (file or stored name) for the metric change.")
@click.option("--model", "model_id", default=None)
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--encoder", "encoder_spec", default=None, metavar="SPEC")
@as_of_option
@json_option
@workspace_option
@user_errors()
def rules_impact(rule_id, suite, model_id, k, encoder_spec, as_of, as_json, workspace) -> None:
    """What making rule RULE_ID live changes: every query it fires on (search log, suites), rank moves, metrics."""
    with workspace_db(workspace) as db:
        rule = get_rule(db, rule_id)
    _impact(rule, suite, model_id, encoder_spec, k, as_of, as_json, workspace)


def _impact(rule, suite: Optional[str], model_id, encoder_spec, k, as_of, as_json, workspace) -> None:
    bar = TerminalProgress("impact:", enabled=None if not as_json else False)
    with workspace_db(workspace) as db:
        try:
            s = command_suite(db, suite) if suite else None
            impact = rule_impact(db, rule, bundle=command_bundle(db, model_id, encoder_spec), suite=s, k=k,
                                 as_of=as_of_day(as_of) if as_of else None, progress=bar)
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
    quiet = [q for q in impact.queries if not q["changed"]]
    if quiet:
        click.echo(f"fires without changing the top {impact.k} on: "
                   + ", ".join(repr(q["query"]) for q in quiet[:20]) + (" …" if len(quiet) > 20 else ""))
    judged = [(q["query"], j) for q in impact.queries for j in q["judged"] if abs(j["delta"]) > 1e-12]
    for query, j in judged[:30]:
        click.echo(f"  judged {query!r} in {j['suite']!r}: {j['metric']} {j['before']:.3f} -> {j['after']:.3f} "
                   f"({j['delta']:+.3f})")
    for label in ("suite", "behaviour"):
        block = getattr(impact, label)
        if "skipped" in block:
            click.echo(f"{label}: skipped ({block['skipped']})")


@rules_group.command("conflicts")
@as_of_option
@json_option
@workspace_option
@user_errors()
def rules_conflicts(as_of, as_json, workspace) -> None:
    """Every conflict between two live rules (from --as-of on), with the rule ranking follows."""
    with workspace_db(workspace) as db:
        found = workspace_conflicts(db, as_of_day(as_of))
    if as_json:
        emit_json({"precedence": PRECEDENCE_TEXT, "conflicts": [c.to_dict() for c in found]})
        return
    if not found:
        click.echo("No conflicts between live rules.")
        return
    click.echo(f"{len(found)} conflict(s); precedence: {PRECEDENCE_TEXT}")
    for c in found:
        click.echo(f"- {c.sentence()}")


@rules_group.command("usage")
@click.option("--include-prefixes", is_flag=True, help="Count as-you-type prefixes ('christm') as searches too.")
@click.option("--impact/--no-impact", default=True, show_default=True,
              help="Measure each rule's impact on the stored judged suites (needs a model bundle; slower).")
@click.option("--model", "model_id", default=None)
@click.option("--encoder", "encoder_spec", default=None, metavar="SPEC")
@as_of_option
@json_option
@workspace_option
@user_errors()
def rules_usage(include_prefixes, impact, model_id, encoder_spec, as_of, as_json, workspace) -> None:
    """How often each rule would have fired on the search log, rules that never fire, rules that hurt."""
    bar = TerminalProgress("usage:", enabled=None if not as_json else False)
    with workspace_db(workspace) as db:
        try:
            bundle = command_bundle(db, model_id, encoder_spec) if impact and _has_items(db) else None
            report = rule_usage(db, bundle=bundle, include_prefixes=include_prefixes,
                                as_of=as_of_day(as_of) if as_of else None, progress=bar)
        finally:
            bar.close()
    if as_json:
        emit_json(report.to_dict())
        return
    if not report.has_log:
        click.echo("No event carries a query: no search log to count rule use on.")
    else:
        click.echo(f"{report.searches} searches in the log"
                   f"{'' if report.prefixes_included else ' (as-you-type prefixes left out)'}.")
    for r in report.rows:
        tops = ", ".join(f"{q!r} {n}" for q, n in r.top_queries[:3])
        impact_text = "; ".join(f"{i['suite']}: {i['metric']} {i['delta']:+.3f}" for i in r.impact)
        window = f", {r.in_window} in its window" if (r.rule.start or r.rule.end) else ""
        flag = "  NEGATIVE" if r.negative else ("  never fires" if r.searches == 0 else "")
        click.echo(f"{r.rule.rule_id:>4}  {r.rule.state():<9} {r.searches:>6} searches on {r.queries} queries"
                   f"{window}{(' (' + tops + ')') if tops else ''}{('  ' + impact_text) if impact_text else ''}"
                   f"  {r.rule.name}{flag}")
    if not report.suites and impact:
        click.echo("impact: no stored suite with judgments (import or generate one with 'merch-app suite').")



def _has_items(db) -> bool:
    try:
        require_items(db)
    except NoItemsError:
        return False
    return True


def _change_text(field: str, old, new) -> str:
    def short(v) -> str:
        return "-" if v in (None, "", [], {}) else (", ".join(v) if isinstance(v, list) else str(v))
    return f"{field} {short(old)} → {short(new)}"


@rules_group.command("log")
@click.argument("rule_id", type=int, required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@json_option
@workspace_option
@user_errors()
def rules_log(rule_id, limit, as_json, workspace) -> None:
    """The activity log, newest first: who changed which rule when, old → new (of RULE_ID only when given)."""
    with workspace_db(workspace) as db:
        entries = rule_log(db, rule_id, limit=limit)
    if as_json:
        emit_json(entries)
        return
    if not entries:
        click.echo("No changes logged" + (f" for rule {rule_id}." if rule_id is not None else "."))
        return
    for e in entries:
        changes = "; ".join(_change_text(f, *v) for f, v in e["changes"].items()) if e["action"] != "created" \
            else "created"
        click.echo(f"{e['ts']}  rule {e['rule_id']:>4}  {e['actor']:<12} {e['action']:<8} {changes}")
