"""Behaviour paths (search → view → click → cart → purchase, or return) and funnels.

A *path* is one user's or one session's events in time order, each placed on
a level of :data:`~merch_app.insights.common.PATH_LEVELS` so it can be drawn
as a step line over time.  A *funnel* aggregates many actors (a user, or a
session for anonymous events) for one item or one query: how many reached
each stage.

Funnel semantics (pinned by the tests): an actor *reaches* stage ``s`` when
their deepest funnel stage on the subject is ``s`` or later — a shopper who
bought without a recorded click still counts as having clicked.  Only stages
that occur somewhere in the workspace are shown, so a transaction-only import
(purchases and returns) is not drawn as a funnel that loses everyone before
the purchase.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from merch_app.data.search_log import query_key
from merch_app.insights.common import FUNNEL_STAGES, PATH_LEVELS, ts_to_epoch

LEVEL = {name: n for n, name in enumerate(PATH_LEVELS)}
STAGE = {name: n for n, name in enumerate(FUNNEL_STAGES)}
DEFAULT_SESSION_GAP_MINUTES = 30.0


@dataclass
class PathStep:
    ts: str
    event_type: str
    item_id: Optional[str]
    title: str
    query: Optional[str]
    session_id: Optional[str]
    value: Optional[float] = None

    @property
    def level(self) -> int:
        return LEVEL.get(self.event_type, len(PATH_LEVELS))


@dataclass
class BehaviourPath:
    """Events of one user/session in time order, ready to draw as levels over time."""

    subject: str
    steps: list[PathStep]
    truncated: bool = False

    @property
    def epoch(self) -> np.ndarray:
        return ts_to_epoch([s.ts for s in self.steps]) if self.steps else np.zeros(0)

    @property
    def levels(self) -> np.ndarray:
        return np.array([s.level for s in self.steps], dtype=float)

    def sequence(self) -> list[str]:
        """Event types in order with consecutive repeats collapsed ("view ×3" → "view")."""
        out: list[str] = []
        for s in self.steps:
            if not out or out[-1] != s.event_type:
                out.append(s.event_type)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "truncated": self.truncated,
                "sequence": self.sequence(), "steps": [asdict(s) for s in self.steps]}


@dataclass
class StepGroup:
    """Consecutive path steps of one type at one time (e.g. the lines of one invoice)."""

    ts: str
    event_type: str
    level: int
    count: int
    titles: list[str]  # first few titles (or queries)


def group_steps(steps: list[PathStep], max_titles: int = 5) -> list[StepGroup]:
    """Collapse runs of steps with the same timestamp and event type into one group.

    Transaction exports record a whole basket at one instant; drawing each line
    as its own point hides the path, one point per basket shows it.
    """
    out: list[StepGroup] = []
    for s in steps:
        label = s.title or s.query or (s.item_id or "")
        last = out[-1] if out else None
        if last is not None and last.ts == s.ts and last.event_type == s.event_type:
            last.count += 1
            if len(last.titles) < max_titles and label:
                last.titles.append(label)
        else:
            out.append(StepGroup(s.ts, s.event_type, s.level, 1, [label] if label else []))
    return out


def behaviour_path(db, user_id: Optional[str] = None, session_id: Optional[str] = None,
                   limit: int = 2000) -> BehaviourPath:
    """The events of a user (optionally one session of theirs) or of a session, oldest first.

    Parameters
    ----------
    user_id, session_id
        At least one is required; both together restrict the user to one session.
    limit
        Most recent events kept (``truncated`` says whether older ones were cut).
    """
    if user_id is None and session_id is None:
        raise ValueError("behaviour path needs a user id or a session id")
    where, args = [], []
    if user_id is not None:
        where.append("e.user_id = ?")
        args.append(str(user_id))
    if session_id is not None:
        where.append("e.session_id = ?")
        args.append(str(session_id))
    rows = db.execute(
        f"""SELECT e.ts, e.event_type, e.item_id, coalesce(i.title, ''), e.query, e.session_id, e.value
            FROM events e LEFT JOIN items i ON i.item_id = e.item_id
            WHERE {' AND '.join(where)} ORDER BY e.ts DESC, e.id DESC LIMIT ?""",
        args + [limit + 1],
    ).fetchall()
    truncated = len(rows) > limit
    steps = [PathStep(*r) for r in reversed(rows[:limit])]
    subject = " / ".join(p for p in (f"user {user_id}" if user_id is not None else "",
                                     f"session {session_id}" if session_id is not None else "") if p)
    return BehaviourPath(subject, steps, truncated)


def sessionize(epoch: Sequence[float], session_ids: Sequence[Optional[str]],
               gap_minutes: float = DEFAULT_SESSION_GAP_MINUTES) -> list[str]:
    """Session label per event (events sorted by time): the recorded id, or an inferred one.

    Events without a session id are grouped into ``auto-<n>`` sessions that
    end after ``gap_minutes`` of inactivity.

    >>> sessionize([0, 60, 7200], [None, None, None])
    ['auto-1', 'auto-1', 'auto-2']
    """
    out: list[str] = []
    n_auto, last = 0, None
    for t, sid in zip(epoch, session_ids):
        if sid:
            out.append(str(sid))
            continue
        if last is None or t - last > gap_minutes * 60 or not out or not out[-1].startswith("auto-"):
            n_auto += 1
        out.append(f"auto-{n_auto}")
        last = t
    return out


def user_sessions(db, user_id: str, gap_minutes: float = DEFAULT_SESSION_GAP_MINUTES,
                  limit: int = 2000) -> list[dict[str, Any]]:
    """The user's sessions, newest first: ``{session_id, start, end, events, sequence, purchased}``."""
    path = behaviour_path(db, user_id=user_id, limit=limit)
    labels = sessionize(path.epoch, [s.session_id for s in path.steps], gap_minutes)
    groups: dict[str, list[PathStep]] = defaultdict(list)
    for label, step in zip(labels, path.steps):
        groups[label].append(step)
    out = []
    for label, steps in groups.items():
        seq = BehaviourPath(label, steps).sequence()
        out.append({"session_id": label, "start": steps[0].ts, "end": steps[-1].ts, "events": len(steps),
                    "sequence": seq, "purchased": "purchase" in seq})
    out.sort(key=lambda s: s["start"], reverse=True)
    return out


@dataclass
class Funnel:
    """How many actors reached each stage for one item or query.

    Attributes
    ----------
    stages
        Funnel stages shown (those present in the workspace), in order.
    reached
        Actors whose deepest stage is this one or later.
    present
        Actors with at least one event of exactly this type.
    step_rate
        ``reached[s] / reached[s-1]`` (1.0 for the first stage, 0 when undefined).
    returned
        Actors who returned the item (item funnels only).
    """

    subject: str
    stages: list[str]
    reached: list[int]
    present: list[int]
    step_rate: list[float] = field(default_factory=list)
    returned: int = 0
    actors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def workspace_stages(db) -> list[str]:
    """Funnel stages that occur anywhere in the workspace."""
    present = {r[0] for r in db.execute("SELECT DISTINCT event_type FROM events")}
    return [s for s in FUNNEL_STAGES if s in present]


def _actor(user_id: Optional[str], session_id: Optional[str], event_id: int) -> str:
    if user_id is not None:
        return f"u:{user_id}"
    if session_id:
        return f"s:{session_id}"
    return f"e:{event_id}"


def _build_funnel(subject: str, stages: list[str], deepest: dict[str, int],
                  kinds: dict[str, set], returned: int) -> Funnel:
    reached, present = [], []
    for s in stages:
        level = STAGE[s]
        reached.append(sum(1 for d in deepest.values() if d >= level))
        present.append(len(kinds.get(s, ())))
    rates = [1.0 if reached else 0.0] + [
        (reached[n] / reached[n - 1]) if reached[n - 1] else 0.0 for n in range(1, len(reached))
    ]
    return Funnel(subject, stages, reached, present, rates[: len(reached)], returned, len(deepest))


def item_funnel(db, item_id: str, stages: Optional[list[str]] = None) -> Funnel:
    """Funnel of everyone who touched ``item_id`` (actor = user, else session, else the event).

    The ``search`` stage is shown only if some search event names the item.
    """
    stages = stages if stages is not None else workspace_stages(db)
    deepest: dict[str, int] = {}
    kinds: dict[str, set] = defaultdict(set)
    returned: set = set()
    for eid, user, session, etype in db.execute(
        "SELECT id, user_id, session_id, event_type FROM events WHERE item_id = ?", [str(item_id)]
    ):
        actor = _actor(user, session, eid)
        if etype == "return":
            returned.add(actor)
            deepest.setdefault(actor, -1)
            continue
        if etype not in STAGE:
            continue
        kinds[etype].add(actor)
        deepest[actor] = max(deepest.get(actor, -1), STAGE[etype])
    deepest = {a: d for a, d in deepest.items() if d >= 0}
    if not kinds.get("search"):  # searches rarely name an item; a funnel starting at 0 says nothing
        stages = [s for s in stages if s != "search"]
    return _build_funnel(f"item {item_id}", stages, deepest, kinds, len(returned))


def query_funnel(db, query: str, window_hours: float = 24.0, stages: Optional[list[str]] = None) -> Funnel:
    """Funnel of the searches for ``query``: what the searcher did next.

    For each search (matched case- and space-insensitively) the actor is its
    session (or user when the event has no session); the stages reached are
    the deepest event of that actor after the search — in the same session,
    or within ``window_hours`` for events without a session.
    """
    stages = stages if stages is not None else workspace_stages(db)
    q = query_key(query)
    searches = [
        r for r in db.execute(
            "SELECT id, user_id, session_id, ts, query FROM events WHERE event_type = 'search' "
            "AND lower(trim(query)) LIKE ?", [q.split(" ")[0] + "%" if q else ""]
        )
        if query_key(r[4]) == q
    ]
    deepest: dict[str, int] = {}
    kinds: dict[str, set] = defaultdict(set)
    window = np.timedelta64(int(window_hours * 3600), "s")
    anonymous_sessions: dict[str, list[tuple[str, str]]] = defaultdict(list)  # session -> [(actor, ts)]
    for eid, user, session, ts, _ in searches:
        actor = f"s:{session}" if session else _actor(user, None, eid)
        deepest.setdefault(actor, STAGE["search"])
        kinds["search"].add(actor)
        if user is None:
            if session:
                anonymous_sessions[session].append((actor, ts))
            continue
        # the (user_id, ts) index serves both cases; the session is filtered here
        end = np.datetime_as_string(np.datetime64(ts[:19]) + window) + "Z"
        sql = "SELECT event_type, session_id FROM events WHERE user_id = ? AND ts >= ?"
        args = [user, ts]
        if not session:
            sql += " AND ts <= ?"
            args.append(end)
        for etype, sid in db.execute(sql, args):
            if (not session or sid == session) and etype in STAGE and etype != "search":
                kinds[etype].add(actor)
                deepest[actor] = max(deepest[actor], STAGE[etype])
    ids = list(anonymous_sessions)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for etype, sid, ts in db.execute(
            f"SELECT event_type, session_id, ts FROM events WHERE session_id IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            if etype not in STAGE or etype == "search":
                continue
            for actor, search_ts in anonymous_sessions[sid]:
                if ts >= search_ts:
                    kinds[etype].add(actor)
                    deepest[actor] = max(deepest[actor], STAGE[etype])
    if "search" not in stages and searches:
        stages = ["search"] + list(stages)
    return _build_funnel(f"query {q!r}", stages, deepest, kinds, 0)


def top_queries(db, n: int = 50) -> list[dict[str, Any]]:
    """Most frequent search queries (normalised): ``{query, searches, users}``."""
    counts: dict[str, list] = {}
    for query, c, u in db.execute(
        """SELECT lower(trim(query)), count(*), count(DISTINCT user_id) FROM events
           WHERE event_type = 'search' AND query IS NOT NULL AND trim(query) <> ''
           GROUP BY lower(trim(query))"""
    ):
        key = query_key(query)
        entry = counts.setdefault(key, [0, 0])
        entry[0] += c
        entry[1] += u
    rows = sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0]))[:n]
    return [{"query": q, "searches": c, "users": u} for q, (c, u) in rows]
