"""The Users, Catalogue and Search log screens' use cases, run in their worker threads (never touch widgets).

Every function takes the runner's job context first (``ctx.db(path)``: the
worker thread's own connection; ``ctx.progress``, ``ctx.cancel``, ``ctx.state``:
the runner's own cache) and returns plain data for the GUI thread.  Jobs that
need a ranker share the Query screen's worker engine
(:func:`merch_app.services.query_engine.get_engine`), so its bundle comes from the
process's shared cache.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from merch_app.data.search_log import has_queries, query_key
from merch_app.explain.explanation import explain_item
from merch_app.insights.common import InsightError, item_titles
from merch_app.insights.embedding_map import item_map, user_map
from merch_app.insights.groups import item_groups
from merch_app.insights.heatmaps import category_hour_of_week
from merch_app.insights.item_page import item_model_views, item_page, probe_queries
from merch_app.insights.model_views import model_doctor, nearest_users, user_segments
from merch_app.insights.paths import behaviour_path, item_funnel, query_funnel, top_queries, user_sessions
from merch_app.insights.profiles import list_users, search_users, user_profile
from merch_app.insights.search_log import (
    log_end, no_click_queries, query_rows, synonym_suggestions, weekly_trend, with_trend, zero_result_queries,
)
from merch_app.insights.segments import describe_segments
from merch_app.jobs import Progress
from merch_app.ranking.rules import MerchRule, load_rules, normalise, save_rule, validate_rule
from merch_app.ranking.types import RankRequest
from merch_app.services.query_engine import QueryEngine, get_engine

GROUPS_KEY = "insight_item_groups"  # runner state: (engine key, item groups)
LIST_SIZE = 200  # users listed on the Users screen
RECS_K = 20  # recommendations shown for one user
MAP_POINTS = 200_000  # more are thinned by a seeded sample
DOCTOR_ROWS = 500  # rows of each doctor finding whose titles are looked up (and shown)


# ------------------------------------------------------------- shared
def engine(ctx, path: Path, generation: int, encoder_spec: Optional[str]) -> QueryEngine:
    """The worker engine (ranker + bundle), cached in this runner's state.

    Parameters
    ----------
    ctx
        The runner's job context.
    path
        The workspace file.
    generation
        The GUI's workspace generation (bumped after imports and trainings).
    encoder_spec
        The text encoder to use, or None for the bundle's own.

    Returns
    -------
    QueryEngine
        See :func:`merch_app.services.query_engine.get_engine`.
    """
    return get_engine(ctx, path, generation, encoder_spec)


def item_groups_job(ctx, path: Path, generation: int, encoder_spec: Optional[str]):
    """Item groups (categories or named text clusters) of the engine's bundle, cached per engine.

    Parameters
    ----------
    ctx, path, generation, encoder_spec
        As for :func:`engine`.

    Returns
    -------
    merch_app.insights.groups.ItemGroups
        The groups of the bundle's items (computed once per engine).
    """
    eng = engine(ctx, path, generation, encoder_spec)
    hit = ctx.state.get(GROUPS_KEY)
    if hit is not None and hit[0] == eng.key:
        return hit[1]
    b = eng.ranker.bundle
    groups = item_groups(ctx.db(path), [str(i) for i in b.item_ids], b.item_vectors, cancel=ctx.cancel)
    ctx.state[GROUPS_KEY] = (eng.key, groups)
    return groups


def model_of(eng: QueryEngine) -> Any:
    """The CF model of an engine's bundle.

    Parameters
    ----------
    eng
        A worker engine from :func:`engine`.

    Returns
    -------
    HybridModel or None
        None when the bundle is text only.
    """
    return getattr(eng.ranker.bundle, "model", None)


# ------------------------------------------------------------- Users screen
def list_job(ctx, path: Path, kind: str, text: str) -> list[dict]:
    """Users to list: those matching ``text``, or else a list of ``kind``.

    Parameters
    ----------
    ctx, path
        The job context and the workspace file.
    kind
        ``"active"``, ``"random"`` or ``"cold"`` (used when ``text`` is empty).
    text
        A user id fragment to search for.

    Returns
    -------
    list of dict
        At most :data:`LIST_SIZE` users (see :mod:`merch_app.insights.profiles`).
    """
    db = ctx.db(path)
    return search_users(db, text, LIST_SIZE) if text else list_users(db, kind, LIST_SIZE)


def profile_job(ctx, path: Path, user_id: str, item_group: Optional[dict]) -> dict[str, Any]:
    """One user's profile with their sessions and the workspace's top queries.

    Parameters
    ----------
    ctx, path
        The job context and the workspace file.
    user_id
        The user.
    item_group
        ``{item_id: group}`` to profile by (text clusters), or None for categories.

    Returns
    -------
    dict
        ``{"profile", "sessions", "queries"}`` (the 200 most frequent queries).
    """
    db = ctx.db(path)
    profile = user_profile(db, user_id, item_group=item_group)
    ctx.cancel.check()
    return {"profile": profile, "sessions": user_sessions(db, user_id),
            "queries": [q["query"] for q in top_queries(db, 200)]}


def path_job(ctx, path: Path, user_id: str, session_id: Optional[str]):
    """The behaviour path of one user, or of one of their sessions.

    Parameters
    ----------
    ctx, path
        The job context and the workspace file.
    user_id
        The user.
    session_id
        One session, or None for all of the user's events.

    Returns
    -------
    merch_app.insights.paths.BehaviourPath
        See :func:`merch_app.insights.paths.behaviour_path`.
    """
    return behaviour_path(ctx.db(path), user_id=user_id, session_id=session_id)


def funnel_job(ctx, path: Path, kind: str, text: str):
    """The event funnel of one item or of one query.

    Parameters
    ----------
    ctx, path
        The job context and the workspace file.
    kind
        ``"item"`` for an item funnel, anything else for a query funnel.
    text
        The item id or the query.

    Returns
    -------
    Funnel
        See :func:`merch_app.insights.paths.item_funnel` / ``query_funnel``.
    """
    db = ctx.db(path)
    return item_funnel(db, text) if kind == "item" else query_funnel(db, text)


def recs_job(ctx, path: Path, generation: int, encoder_spec: Optional[str], user_id: str) -> dict[str, Any]:
    """Recommendations for one user, with their nearest users and the item groups.

    Parameters
    ----------
    ctx, path, generation, encoder_spec
        As for :func:`engine`.
    user_id
        The user.

    Returns
    -------
    dict
        ``{"ranked", "request", "nearest", "info", "groups"}``; ``nearest`` is empty
        without a CF model, ``groups`` is ``{item_id: cluster}`` for text clusters, else None.
    """
    eng = engine(ctx, path, generation, encoder_spec)
    request = RankRequest(mode="recommend", user_id=user_id, k=RECS_K)
    ranked = eng.ranker.rank(request)
    model = model_of(eng)
    nearest = nearest_users(model, user_id, 10) if model is not None and getattr(model, "U", None) is not None \
        else []
    groups = item_groups_job(ctx, path, generation, encoder_spec)
    return {"ranked": ranked, "request": request, "nearest": nearest, "info": eng.info,
            "groups": groups.mapping() if groups.source == "text clusters" else None}


def explain_job(ctx, path: Path, generation: int, encoder_spec: Optional[str], request: RankRequest,
                item_id: str):
    """Why ``item_id`` ranks where it does for ``request``.

    Parameters
    ----------
    ctx, path, generation, encoder_spec
        As for :func:`engine`.
    request
        The request that ranked the item (e.g. ``recs_job``'s).
    item_id
        The item to explain.

    Returns
    -------
    Explanation
        See :func:`merch_app.explain.explanation.explain_item`.
    """
    return explain_item(engine(ctx, path, generation, encoder_spec).ranker, request, item_id)


# ------------------------------------------------------------- Catalogue screen
def map_job(ctx, path: Path, generation: int, encoder_spec: Optional[str], kind: str) -> dict[str, Any]:
    """A 2-D embedding map of the items (text or CF vectors) or of the users.

    Parameters
    ----------
    ctx, path, generation, encoder_spec
        As for :func:`engine`.
    kind
        ``"items-text"``, ``"items-model"`` or ``"users"``.

    Returns
    -------
    dict
        ``{"map", "groups", "model_name"}``.

    Raises
    ------
    InsightError
        ``kind`` needs a trained CF model and the bundle has none.
    """
    eng = engine(ctx, path, generation, encoder_spec)
    groups = item_groups_job(ctx, path, generation, encoder_spec)
    db, b, model = ctx.db(path), eng.ranker.bundle, model_of(eng)
    if kind != "items-text" and (model is None or getattr(model, "V", None) is None):
        raise InsightError("this map needs a trained CF model; train one on the Train screen "
                           "(the text-vector map works without)")
    if kind == "users":
        m = user_map(db, [str(u) for u in model.user_ids], model.U, MAP_POINTS, item_group=groups.mapping(),
                     cancel=ctx.cancel)
    else:
        vectors = b.item_vectors if kind == "items-text" else model.V
        ids = [str(i) for i in (b.item_ids if kind == "items-text" else model.item_ids)]
        labels = groups.labels if ids == groups.item_ids else None
        m = item_map(db, ids, vectors, MAP_POINTS, groups=labels, cancel=ctx.cancel)
    return {"map": m, "groups": groups, "model_name": eng.info.model_name}


def heatmap_job(ctx, path: Path, event_types: Optional[list[str]], item_group: Optional[dict]):
    """Events per category (or item group) and hour of the week.

    Parameters
    ----------
    ctx, path
        The job context and the workspace file.
    event_types
        The event types to count, or None for all.
    item_group
        ``{item_id: group}`` to group by, or None for categories.

    Returns
    -------
    Heatmap
        The 14 busiest rows; see :func:`merch_app.insights.heatmaps.category_hour_of_week`.
    """
    return category_hour_of_week(ctx.db(path), event_types, top=14, item_group=item_group)


def segments_job(ctx, path: Path, generation: int, encoder_spec: Optional[str], k: int):
    """``k`` user segments of the CF model's user vectors, described in words.

    Parameters
    ----------
    ctx, path, generation, encoder_spec
        As for :func:`engine`.
    k
        The number of segments.

    Returns
    -------
    dict or None
        ``{"segments", "described"}``, or None without a CF model with user vectors.
    """
    eng = engine(ctx, path, generation, encoder_spec)
    model = model_of(eng)
    if model is None or getattr(model, "U", None) is None:
        return None
    groups = item_groups_job(ctx, path, generation, encoder_spec)
    labels = groups.labels if [str(i) for i in model.item_ids] == groups.item_ids else None
    seg = user_segments(ctx.db(path), model, k=k, groups=labels, top_categories=14, cancel=ctx.cancel)
    return {"segments": seg, "described": describe_segments(seg.result.labels, seg.affinity)}


def item_page_job(ctx, path: Path, item_id: str):
    """One item's page: its data, events over time, funnel and buyers.

    Parameters
    ----------
    ctx, path
        The job context and the workspace file.
    item_id
        The item.

    Returns
    -------
    dict
        See :func:`merch_app.insights.item_page.item_page`.
    """
    return item_page(ctx.db(path), item_id)


def item_model_job(ctx, path: Path, generation: int, encoder_spec: Optional[str], item_id: str,
                   queries: list[str]) -> dict[str, Any]:
    """What the model says about one item: related items and its rank for some queries.

    Parameters
    ----------
    ctx, path, generation, encoder_spec
        As for :func:`engine`.
    item_id
        The item.
    queries
        Queries to rank it for; when empty, probe queries are made from the item's own text.

    Returns
    -------
    dict
        :func:`merch_app.insights.item_page.item_model_views` plus ``probe``, ``model_name``
        and ``item_id``.
    """
    eng = engine(ctx, path, generation, encoder_spec)
    probe = not queries
    if probe:
        queries = probe_queries(ctx.db(path), item_id)
    out = item_model_views(eng.ranker, item_id, queries, k=10)
    out["probe"] = probe
    out["model_name"] = eng.info.model_name
    out["item_id"] = str(item_id)
    return out


def doctor_job(ctx, path: Path, generation: int, encoder_spec: Optional[str]) -> dict[str, Any]:
    """The full catalogue doctor report plus the titles of the items it names.

    Parameters
    ----------
    ctx, path, generation, encoder_spec
        As for :func:`engine`; progress and cancel come from ``ctx``.

    Returns
    -------
    dict
        ``{"report", "titles", "model_name"}``; titles cover the first
        :data:`DOCTOR_ROWS` rows of each finding.
    """
    eng = engine(ctx, path, generation, encoder_spec)
    db = ctx.db(path)
    report = model_doctor(db, eng.ranker.bundle, progress=ctx.progress, cancel=ctx.cancel)
    ids = report.untouched[:DOCTOR_ROWS] + [i for g in report.text.duplicate_groups[:DOCTOR_ROWS] for i in g]
    ids += [i for a, b, _ in (report.near_duplicates or [])[:DOCTOR_ROWS] for i in (a, b)]
    return {"report": report, "titles": {k: v[0] for k, v in item_titles(db, ids).items()},
            "model_name": eng.info.model_name}


# ------------------------------------------------------------- Search log screen
SEARCH_LOG_ROWS = 500  # rows of each Search log table
TREND_QUERIES = 5000  # the weekly zero-result / no-click trend is counted over the most searched queries


def search_log_job(ctx, path: Path, limit: int = SEARCH_LOG_ROWS) -> dict[str, Any]:
    """Everything the Search log screen shows (see :mod:`merch_app.insights.search_log`).

    Parameters
    ----------
    ctx, path
        The job context and the workspace file.
    limit
        Rows of each list.

    Returns
    -------
    dict
        ``{"has_log": False}`` when no event carries a query; else also ``"top"``,
        ``"zero"``, ``"no_clicks"`` and ``"synonyms"`` (rows as the CLI's ``--json``, with
        ``recent``/``previous``: searches in the log's last 28 days and the 28 before),
        ``"totals"`` (``searches``, ``queries``: over the whole log) and ``"trend"``
        (:func:`~merch_app.insights.search_log.weekly_trend`: searches per week, of them
        zero-result and never-clicked, over the :data:`TREND_QUERIES` most searched queries).
    """
    db = ctx.db(path)
    if not has_queries(db):
        return {"has_log": False}
    cancel = ctx.cancel
    ctx.progress(Progress(0, 4, "Reading the search log: top queries"))
    rows = query_rows(db, cancel=cancel)
    totals = {"searches": sum(r.searches for r in rows), "queries": len(rows)}
    last = log_end(rows)
    top = [with_trend(r.to_dict(), r, last) for r in rows[:limit]]
    cancel.check()
    ctx.progress(Progress(1, 4, "Reading the search log: zero results"))
    trend_rows = rows[:TREND_QUERIES]
    zero_all = zero_result_queries(db, limit=len(trend_rows), rows=trend_rows)
    zero = zero_all[:limit]
    cancel.check()
    ctx.progress(Progress(2, 4, "Reading the search log: no clicks"))
    no_click_all = no_click_queries(db, min_searches=1, limit=len(trend_rows), rows=trend_rows)
    no_clicks = [r for r in no_click_all if r["searches"] >= 2][:limit]
    cancel.check()
    ctx.progress(Progress(3, 4, "Reading the search log: synonym suggestions"))
    synonyms = synonym_suggestions(db, limit=limit, cancel=cancel)
    trend = weekly_trend(trend_rows, {"zero": {query_key(r["query"]) for r in zero_all},
                                      "no_click": {query_key(r["query"]) for r in no_click_all}})
    return {"has_log": True, "top": top, "zero": zero, "no_clicks": no_clicks, "synonyms": synonyms,
            "totals": totals, "trend": trend, "trend_queries": len(trend_rows)}


def add_synonym_rule_job(ctx, path: Path, source: str, target: str) -> tuple[MerchRule, bool]:
    """Save ``source`` ↔ ``target`` as a synonym rule, switched off (a draft to preview on the Rules screen).

    Parameters
    ----------
    ctx, path
        The job context and the workspace file.
    source, target
        The two terms (as in a synonym suggestion).

    Returns
    -------
    tuple of (MerchRule, bool)
        The stored rule and True when it was new; an existing synonym rule with the
        same terms (on or off) is returned instead of adding a second one.
    """
    db = ctx.db(path)
    rule = validate_rule(MerchRule("synonym", "*", {"terms": f"{source},{target}"}, enabled=False))
    wanted = set(rule.params["terms"])
    for old in load_rules(db):
        if old.kind == "synonym" and wanted <= {normalise(t) for t in old.params.get("terms", [])}:
            return old, False
    return save_rule(db, rule), True
