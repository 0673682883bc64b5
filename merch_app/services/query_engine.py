"""The Query screen's use case: one Ranker per (workspace, bundle) in the query worker thread.

Everything here runs inside the Query screen's worker thread (never the GUI
thread): it loads the model bundle, builds the :class:`Ranker` on the worker's
own connection, and answers rank / explain / why-not / profile requests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from merch_app.explain.explanation import explain_item
from merch_app.explain.why_not import resolve_item, why_not
from merch_app.insights.embedding_map import fit_pca, item_map
from merch_app.model.encoder_versions import EncoderVersionError, get_encoder_version, is_version_id
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.rules import load_rules
from merch_app.services.bundles import SHARED
from merch_app.services.ranking import ranking_bundle

STATE_KEY = "query_engine"
MAP_POINTS = 4000


@dataclass
class EngineInfo:
    """What the GUI shows about the loaded ranker."""

    model_name: str
    model_id: Optional[str]
    encoder_id: str
    n_items: int
    warning: Optional[str] = None
    categories: list[str] = field(default_factory=list)
    price_range: tuple[float, float] = (0.0, 0.0)
    users: list[tuple[str, int]] = field(default_factory=list)  # (user_id, events), most active first
    encoder_name: str = ""  # for display: "all-MiniLM-L6-v2", "shop-v2 (fine-tuned)", "hashing:64"


@dataclass
class ItemMap:
    """PCA map of item vectors (a sample when the catalogue is large)."""

    ids: list[str]
    xy: np.ndarray
    titles: list[str]
    pos: dict[str, int]


class QueryEngine:
    """A Ranker bound to one workspace connection and one model version."""

    def __init__(self, key: tuple, ranker, info: EngineInfo) -> None:
        self.key = key
        self.ranker = ranker
        self.info = info
        self.map: Optional[ItemMap] = None

    def item_map(self, cancel=None) -> ItemMap:
        """PCA map of the bundle's item vectors (computed once)."""
        if self.map is None:
            b = self.ranker.bundle
            m = item_map(self.ranker.db, list(map(str, b.item_ids)), b.item_vectors, max_points=MAP_POINTS,
                         cancel=cancel)
            self.map = ItemMap(m.ids, m.xy, m.titles, {i: n for n, i in enumerate(m.ids)})
        return self.map

    def project(self, item_ids: list[str]) -> np.ndarray:
        """Map coordinates of any items (projected with the fitted PCA)."""
        b = self.ranker.bundle
        if not hasattr(self, "_projection"):
            self._projection = fit_pca(b.item_vectors, 2)
        rows = [b.item_pos[i] for i in item_ids if i in b.item_pos]
        if not rows:
            return np.zeros((0, 2), np.float32)
        return self._projection.transform(b.item_vectors[rows])


def get_engine(ctx, workspace: Path, generation: int, encoder_spec: Optional[str]) -> QueryEngine:
    """The engine cached in the worker thread, rebuilt when the workspace's bundle changed.

    The bundle comes from the process's shared cache (:data:`merch_app.services.bundles.SHARED`)
    through :func:`merch_app.services.ranking.ranking_bundle`, so every screen ranks with the
    same bundle; ``generation`` (bumped by the GUI after imports and trainings) also renews
    the worker's ranker.  A broken active model falls back to text only with a warning.
    """
    db = ctx.db(workspace)
    bundle = ranking_bundle(db, None, encoder_spec, fallback=True, cache=SHARED, cancel=ctx.cancel)
    key = (str(workspace), generation, encoder_spec, id(bundle))
    engine: Optional[QueryEngine] = ctx.state.get(STATE_KEY)
    if engine is not None and engine.key == key:
        engine.ranker.set_rules(load_rules(db, enabled_only=True))  # edited on the Rules screen
        return engine
    ctx.state.pop(STATE_KEY, None)
    ctx.cancel.check()
    ranker = Ranker.for_workspace(db, bundle)
    v = bundle.version
    cats = [r[0] for r in db.execute(
        "SELECT category FROM items WHERE category IS NOT NULL AND category != '' "
        "GROUP BY category ORDER BY count(*) DESC LIMIT 200").fetchall()]
    lo, hi = db.execute("SELECT min(price), max(price) FROM items").fetchone()
    users = db.execute("SELECT user_id, count(*) AS n FROM events WHERE user_id IS NOT NULL "
                       "GROUP BY user_id ORDER BY n DESC LIMIT 2000").fetchall()
    info = EngineInfo(model_name=v.name if v else "text only (no model)", model_id=v.model_id if v else None,
                      encoder_id=getattr(bundle.encoder, "encoder_id", "?"), n_items=len(bundle.item_ids),
                      warning=bundle.warning, categories=cats, price_range=(float(lo or 0), float(hi or 0)),
                      users=[(str(u), int(n)) for u, n in users],
                      encoder_name=encoder_display_name(db, getattr(bundle.encoder, "encoder_id", "?")))
    engine = QueryEngine(key, ranker, info)
    ctx.state[STATE_KEY] = engine
    return engine


def encoder_display_name(db, encoder_id: str) -> str:
    """A readable name of the encoder that ranks: the base model's name, or a fine-tuned version's name.

    ``all-MiniLM-L6-v2@ab12…`` -> ``all-MiniLM-L6-v2``; ``ft20260101-…@…`` -> ``<version name> (fine-tuned)``
    (with its id when the name differs; "deleted" when it is no longer registered); ``+int8`` -> `` int8``.
    """
    name, _, rest = (encoder_id or "?").partition("@")
    int8 = " int8" if "+int8" in rest else ""
    if not is_version_id(name):
        return name + int8
    try:
        version = get_encoder_version(db, name)
    except EncoderVersionError:
        return f"{name}{int8} (fine-tuned, deleted)"
    label = version.name if version.name == name else f"{version.name} [{name}]"
    return f"{label}{int8} (fine-tuned)"


def user_profile_line(db, user_id: str) -> str:
    """'#events · top category · last seen' for the user picker."""
    n, last = db.execute("SELECT count(*), max(ts) FROM events WHERE user_id = ?", [user_id]).fetchone()
    if not n:
        return f"{user_id}: no events (new user — recommendations fall back to popularity)"
    row = db.execute(
        "SELECT i.category, count(*) AS c FROM events e JOIN items i ON i.item_id = e.item_id "
        "WHERE e.user_id = ? AND i.category IS NOT NULL AND i.category != '' "
        "GROUP BY i.category ORDER BY c DESC LIMIT 1", [user_id]).fetchone()
    top = f"top category {row[0]}" if row else "no category data"
    bought = db.execute("SELECT count(*) FROM events WHERE user_id = ? AND event_type = 'purchase'",
                        [user_id]).fetchone()[0]
    return f"{user_id}: {n:,} events ({bought:,} purchases) · {top} · last seen {str(last)[:10]}"


@dataclass
class QueryResult:
    """One answered request, plus map positions of its results."""

    ranked: Any  # RankedList
    request: Any
    info: EngineInfo
    hits_xy: np.ndarray
    map: Optional[ItemMap] = None  # sent with the first result of an engine


def run_query(ctx, workspace: Path, generation: int, encoder_spec: Optional[str], request,
              send_map: bool) -> QueryResult:
    """Rank ``request`` (resolving an item title for related mode) in the worker."""
    engine = get_engine(ctx, workspace, generation, encoder_spec)
    if request.mode == "related" and request.item_id:
        request.item_id, _ = resolve_item(engine.ranker, request.item_id)
    ranked = engine.ranker.rank(request)
    ctx.cancel.check()
    item_map = engine.item_map(ctx.cancel) if send_map else None
    return QueryResult(ranked, request, engine.info, engine.project(ranked.item_ids), item_map)


def run_explain(ctx, workspace: Path, generation: int, encoder_spec: Optional[str], request, item_id: str):
    """``explain_item`` for one result."""
    engine = get_engine(ctx, workspace, generation, encoder_spec)
    return explain_item(engine.ranker, request, item_id)


def run_why_not(ctx, workspace: Path, generation: int, encoder_spec: Optional[str], request, item_ref: str):
    """``why_not`` for any item id or title."""
    engine = get_engine(ctx, workspace, generation, encoder_spec)
    return why_not(engine.ranker, request, item_ref)
