"""``merch-app user | users | item | funnel | heatmap | segments | doctor``: insight views."""
from __future__ import annotations

from typing import Any, Optional

import click

from merch_app.cli.common import TerminalProgress, emit_json, json_option, model_loading, workspace_db, workspace_option
from merch_app.data import id_case
from merch_app.insights.common import WEEKDAYS
from merch_app.insights.groups import item_groups
from merch_app.insights.heatmaps import category_hour_of_week
from merch_app.insights.item_page import item_model_views, item_page, probe_queries
from merch_app.insights.model_views import model_doctor, nearest_users, user_segments
from merch_app.insights.paths import item_funnel, query_funnel, user_sessions
from merch_app.insights.profiles import list_users, search_users, user_profile
from merch_app.insights.segments import describe_segments
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.types import RankRequest
from merch_app.services.ranking import ranking_bundle


def _bundle(db, model_id: Optional[str], encoder_spec: Optional[str], label: str):
    """The workspace's ranking bundle for an insight view, with a progress line while it loads."""
    bar = TerminalProgress(label)
    try:
        with model_loading(model_id):
            return ranking_bundle(db, model_id, encoder_spec, progress=bar)
    finally:
        bar.close()


def _model_options(f):
    f = click.option("--encoder", "encoder_spec", default=None, metavar="SPEC",
                     help="Encoder override (e.g. 'hashing'); default: the model's encoder.")(f)
    return click.option("--model", "model_id", default=None, help="Model version (default: the active one).")(f)


def _bar(value: float, top: float, width: int = 30) -> str:
    return "#" * int(round(width * value / top)) if top > 0 else ""


@click.command("user")
@click.argument("user_id")
@click.option("--history", default=20, show_default=True, type=click.IntRange(0, 100_000), help="History rows.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Recommendations shown.")
@click.option("--no-model", is_flag=True, help="Behaviour only: skip recommendations and nearest users.")
@_model_options
@json_option
@workspace_option
def user_command(user_id, history, k, no_model, model_id, encoder_spec, as_json, workspace):
    """Profile of USER_ID: activity, event mix, categories, interest terms, sessions, recommendations."""
    with workspace_db(workspace) as db:
        if db.execute("SELECT 1 FROM events WHERE user_id = ? LIMIT 1", [user_id]).fetchone() is None:
            raise click.ClickException(f"user {user_id!r} has no events in this workspace")
        bundle = None if no_model else _bundle(db, model_id, encoder_spec, "Loading model")
        groups = item_groups(db, [str(i) for i in bundle.item_ids], bundle.item_vectors) if bundle else None
        mapping = groups.mapping() if groups is not None and groups.source == "text clusters" else None
        profile = user_profile(db, user_id, history_limit=history, item_group=mapping)
        out: dict[str, Any] = profile.to_dict()
        out["category_source"] = "text clusters" if mapping else "category"
        out["sessions"] = user_sessions(db, user_id)[:20]
        if bundle is not None:
            out.update(_user_model_part(db, bundle, user_id, k))
    if as_json:
        emit_json(out)
        return
    click.echo(f"user {user_id}: {out['n_events']} events on {out['n_items']} items in {out['n_sessions']} "
               f"sessions, {out['first_ts']} … {out['last_ts']}")
    click.echo("events: " + ", ".join(f"{t} {n}" for t, n in out["event_mix"].items()))
    top = max((c["events"] for c in out["categories"]), default=0)
    for c in out["categories"][:8]:
        click.echo(f"  {c['category'][:28]:<28} {c['events']:>6}  {_bar(c['events'], top)}")
    click.echo("interest terms: " + ", ".join(t["term"] for t in out["interest_terms"]))
    for s in out["sessions"][:5]:
        click.echo(f"  session {s['session_id']:<12} {s['start']}  {' → '.join(s['sequence'])}")
    for h in out["history"][:history]:
        text = (h["title"] or h["query"] or "")[:50]
        click.echo(f"  {h['ts']}  {h['event_type']:<8} {h['item_id'] or '':<10} {text}")
    for r in out.get("recommendations", []):
        click.echo(f"  rec {r['rank']:>2}. {r['item_id']:<10} {r['title'][:50]:<50} {r['score']:.4f}")
    if out.get("nearest_users"):
        click.echo("nearest users: " + ", ".join(f"{n['user_id']} ({n['similarity']:.2f})"
                                                 for n in out["nearest_users"]))
    for note in out.get("notes", []):
        click.echo(f"note: {note}", err=True)


def _user_model_part(db, bundle, user_id, k) -> dict[str, Any]:
    ranked = Ranker.for_workspace(db, bundle).rank(RankRequest(mode="recommend", user_id=str(user_id), k=k))
    out: dict[str, Any] = {"recommendations": ranked.rows(), "notes": list(ranked.notes), "nearest_users": []}
    if bundle.model is not None and getattr(bundle.model, "U", None) is not None:
        out["nearest_users"] = nearest_users(bundle.model, user_id, 10)
    return out


@click.command("users")
@click.option("--kind", type=click.Choice(["active", "random", "cold"]), default="active", show_default=True)
@click.option("--n", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--search", "prefix", default=None, help="Users whose id starts with this text.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random list.")
@json_option
@workspace_option
def users_command(kind, n, prefix, seed, as_json, workspace):
    """Users to look at: most active, a random sample, cold (fewest events) or by id prefix."""
    with workspace_db(workspace) as db:
        rows = search_users(db, prefix, n) if prefix else list_users(db, kind, n, seed)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['user_id']:<16} {r['events']:>7} events  last {r['last_ts']}")


@click.command("item")
@click.argument("item_id")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Related items shown.")
@click.option("--no-model", is_flag=True, help="Behaviour only: skip related items and query ranks.")
@_model_options
@json_option
@workspace_option
def item_command(item_id, k, no_model, model_id, encoder_spec, as_json, workspace):
    """Item page of ITEM_ID: events, buyers, queries leading to it, funnel, related items, query ranks."""
    with workspace_db(workspace) as db:
        page = item_page(db, item_id)
        if not page.exists:
            raise click.ClickException(f"item {item_id!r} is not in the catalogue")
        if not no_model:
            ranker = Ranker.for_workspace(db, _bundle(db, model_id, encoder_spec, "Loading model"))
            queries = [q["query"] for q in page.queries[:10]]
            probe = not queries  # no recorded searches: rank for the item's own title words
            page.model = item_model_views(ranker, item_id, queries or probe_queries(db, item_id), k)
            page.model["probe"] = probe
        out = page.to_dict()
    if as_json:
        emit_json(out)
        return
    it = out["item"]
    click.echo(f"{it['item_id']}  {it.get('title') or ''}  [{it.get('category') or 'no category'}]")
    click.echo(f"{out['n_events']} events by {out['n_users']} users, {out['first_ts']} … {out['last_ts']}; "
               + ", ".join(f"{t} {n}" for t, n in out["event_mix"].items()))
    f = out["funnel"]
    click.echo("funnel: " + " → ".join(f"{s} {n}" for s, n in zip(f["stages"], f["reached"]))
               + f"; returned {f['returned']}")
    for b in out["buyers"][:10]:
        click.echo(f"  buyer {b['user_id']:<10} {b['purchases']:>4} purchases, quantity {b['quantity']:g}")
    for q in out["queries"][:10]:
        click.echo(f"  query {q['query']!r}: {q['actors']} sessions")
    model = out.get("model") or {}
    for by in ("text", "cf"):
        for r in model.get(f"related_{by}", []):
            click.echo(f"  related ({by}) {r['rank']:>2}. {r['item_id']:<10} {r['title'][:50]}")
    kind = "title words" if model.get("probe") else "query"
    for r in model.get("query_ranks", []):
        click.echo(f"  rank for {kind} {r['query']!r}: {r['rank'] if r['rank'] is not None else '-'} "
                   f"({r['status']})")


@click.command("funnel")
@click.option("--item", "item_id", default=None, help="Funnel of everyone who touched this item.")
@click.option("--query", default=None, help="Funnel of the searches for this query.")
@click.option("--window-hours", default=24.0, show_default=True, help="Follow-up window without sessions.")
@json_option
@workspace_option
def funnel_command(item_id, query, window_hours, as_json, workspace):
    """Aggregate funnel (search → view → click → cart → purchase) of an item or a query."""
    if (item_id is None) == (query is None):
        raise click.UsageError("give exactly one of --item or --query")
    with workspace_db(workspace) as db:
        f = item_funnel(db, item_id) if item_id is not None else query_funnel(db, query, window_hours)
    if as_json:
        emit_json(f.to_dict())
        return
    click.echo(f"{f.subject}: {f.actors} actors")
    top = max(f.reached, default=0)
    for s, n, r in zip(f.stages, f.reached, f.step_rate):
        click.echo(f"  {s:<9} {n:>7}  {r * 100:5.1f}%  {_bar(n, top)}")
    if f.returned:
        click.echo(f"  returned  {f.returned:>7}")


@click.command("heatmap")
@click.option("--top", default=12, show_default=True, type=click.IntRange(1, 200), help="Categories kept.")
@click.option("--type", "event_types", multiple=True, help="Event types counted (repeatable; default all).")
@json_option
@workspace_option
def heatmap_command(top, event_types, as_json, workspace):
    """Events per category and hour of the week (UTC)."""
    with workspace_db(workspace) as db:
        h = category_hour_of_week(db, list(event_types) or None, top)
    if as_json:
        emit_json(h.to_dict())
        return
    click.echo(f"{'':<28}" + "".join(f"{d:>8}" for d in WEEKDAYS) + "   busiest hour")
    for r, row in zip(h.rows, h.values):
        days = row.reshape(7, 24).sum(axis=1)
        peak = int(row.argmax())
        click.echo(f"{r[:28]:<28}" + "".join(f"{int(v):>8}" for v in days) + f"   {h.cols[peak]}")


@click.command("segments")
@click.option("--k", default=6, show_default=True, type=click.IntRange(1, 100), help="Number of segments.")
@click.option("--seed", default=0, show_default=True)
@_model_options
@json_option
@workspace_option
def segments_command(k, seed, model_id, encoder_spec, as_json, workspace):
    """k-means segments of the model's user vectors and the categories each prefers."""
    with workspace_db(workspace) as db:
        bundle = _bundle(db, model_id, encoder_spec, "Loading model")
        if bundle.model is None:
            raise click.ClickException("segments need a trained CF model; train one first (merch-app train)")
        groups = item_groups(db, bundle.model.item_ids, bundle.item_vectors if len(bundle.item_ids) == len(
            bundle.model.item_ids) else None)
        try:
            seg = user_segments(db, bundle.model, k=k, seed=seed, groups=groups.labels)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    out = {"segments": describe_segments(seg.result.labels, seg.affinity), "group_source": groups.source,
           "affinity": seg.affinity.to_dict()}
    if as_json:
        emit_json(out)
        return
    for s in out["segments"]:
        click.echo(f"segment {s['segment']}: {s['users']} users; prefers {', '.join(s['top_categories'])}")


@click.command("doctor")
@click.option("--no-model", is_flag=True, help="Text and behaviour checks only (no vectors, no model).")
@click.option("--users", "n_users", default=500, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Users sampled for the cold-start lens and popularity bias.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000), help="List length.")
@click.option("--threshold", default=0.95, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Cosine from which two items count as near-duplicates.")
@click.option("--limit", default=50, show_default=True, help="Rows per finding in the output.")
@_model_options
@json_option
@workspace_option
def doctor_command(no_model, n_users, k, threshold, limit, model_id, encoder_spec, as_json, workspace):
    """Catalogue doctor: empty/short/duplicate texts, near-duplicates, untouched items,
    cold-start lens and popularity bias of the model."""
    with workspace_db(workspace) as db:
        bundle = None if no_model else _bundle(db, model_id, encoder_spec, "Loading model")
        bar = TerminalProgress("Doctor")
        try:
            report = model_doctor(db, bundle, n_users=n_users, k=k, near_duplicate_threshold=threshold,
                                  progress=bar)
        finally:
            bar.close()
    out = report.to_dict(limit)
    if as_json:
        emit_json(out)
        return
    for key, value in out["summary"].items():
        click.echo(f"{key:<24} {value:.4f}" if isinstance(value, float) else f"{key:<24} {value}")
    for g in out["id_case_clashes"][:10]:
        click.echo(f"  item ids that differ only by case: {', '.join(g)}")
    if out["id_case_clashes"]:
        click.echo(f"  ({id_case.MERGE_HINT})")
    for g in out["duplicate_text_groups"][:10]:
        click.echo(f"  duplicate text: {', '.join(g[:8])}{' …' if len(g) > 8 else ''}")
    for p in (out["near_duplicates"] or [])[:10]:
        click.echo(f"  near-duplicate: {p['a']} ~ {p['b']} (cosine {p['cosine']:.3f})")
    for note in out["notes"]:
        click.echo(f"note: {note}", err=True)


def register(group: click.Group) -> None:
    for cmd in (user_command, users_command, item_command, funnel_command, heatmap_command,
                segments_command, doctor_command):
        group.add_command(cmd)
