"""Known-answer tests of behaviour paths, sessions and funnels."""
from __future__ import annotations

import pytest

from merch_app.insights.paths import (
    behaviour_path,
    item_funnel,
    query_funnel,
    sessionize,
    top_queries,
    user_sessions,
    workspace_stages,
)


def test_user_path_in_time_order_with_levels(insights_db):
    p = behaviour_path(insights_db, user_id="u1")
    assert [s.event_type for s in p.steps] == ["search", "view", "click", "cart", "purchase", "view", "return"]
    assert p.levels.tolist() == [0, 1, 2, 3, 4, 1, 5]
    assert p.epoch[1] - p.epoch[0] == 60
    assert p.steps[0].query == "red mug" and p.steps[1].title == "Red ceramic mug"
    assert not p.truncated


def test_session_path_and_truncation(insights_db):
    p = behaviour_path(insights_db, session_id="s5")
    assert p.sequence() == ["search", "view", "cart"]
    assert p.subject == "session s5"
    p = behaviour_path(insights_db, user_id="u1", session_id="s1")
    assert p.sequence() == ["search", "view", "click", "cart", "purchase"]
    p = behaviour_path(insights_db, user_id="u1", limit=2)
    assert p.truncated and [s.event_type for s in p.steps] == ["view", "return"]
    with pytest.raises(ValueError):
        behaviour_path(insights_db)


def test_sequence_collapses_repeats(insights_db):
    assert behaviour_path(insights_db, user_id="u2").sequence() == ["search", "view"]


def test_sessionize_gaps_and_recorded_ids():
    assert sessionize([0, 60, 7200], [None, None, None]) == ["auto-1", "auto-1", "auto-2"]
    assert sessionize([0, 60, 120, 180], [None, "x", None, None]) == ["auto-1", "x", "auto-2", "auto-2"]
    assert sessionize([0, 1000], [None, None], gap_minutes=10) == ["auto-1", "auto-2"]


def test_user_sessions_newest_first(insights_db):
    s = user_sessions(insights_db, "u1")
    assert [x["session_id"] for x in s] == ["s3", "s2", "s1"]
    assert s[2]["sequence"] == ["search", "view", "click", "cart", "purchase"] and s[2]["purchased"]
    assert s[2]["events"] == 5 and not s[0]["purchased"]
    assert [x["session_id"] for x in user_sessions(insights_db, "u3")] == ["auto-1"]


def test_item_funnel_deepest_stage(insights_db):
    assert workspace_stages(insights_db) == ["search", "view", "click", "cart", "purchase"]
    f = item_funnel(insights_db, "A")
    # actors on A: u1 (… purchase, return), u2 (view), session s5 (view, cart)
    assert f.stages == ["view", "click", "cart", "purchase"]
    assert f.reached == [3, 2, 2, 1]
    assert f.present == [3, 1, 2, 1]
    assert f.step_rate == pytest.approx([1.0, 2 / 3, 1.0, 0.5])
    assert f.returned == 1 and f.actors == 3


def test_item_funnel_counts_buyers_without_earlier_steps(insights_db):
    f = item_funnel(insights_db, "B")  # u2 viewed, u3 bought without a recorded view
    assert f.reached == [2, 1, 1, 1] and f.present == [1, 0, 0, 1]
    f = item_funnel(insights_db, "C")  # u1 and an anonymous event (own actor)
    assert f.reached[0] == 2 and f.actors == 2
    f = item_funnel(insights_db, "G")
    assert f.reached == [0, 0, 0, 0] and f.step_rate == [1.0, 0.0, 0.0, 0.0]


def test_query_funnel_follows_sessions(insights_db):
    f = query_funnel(insights_db, "RED mug ")
    assert f.stages == ["search", "view", "click", "cart", "purchase"]
    # searches in s1 (bought), s4 (viewed), s5 anonymous (carted)
    assert f.reached == [3, 3, 2, 2, 1]
    assert f.present == [3, 3, 1, 2, 1]
    assert query_funnel(insights_db, "blue vase").reached == [0, 0, 0, 0, 0]


def test_query_funnel_without_session_uses_window(ws):
    with ws.conn:
        ws.insert_rows("events", [
            dict(user_id="v", event_type="search", ts="2024-02-01T10:00:00Z", query="lamp"),
            dict(user_id="v", item_id="X", event_type="cart", ts="2024-02-01T12:00:00Z"),
            dict(user_id="v", item_id="X", event_type="purchase", ts="2024-02-03T12:00:00Z"),
        ])
    f = query_funnel(ws, "lamp")
    assert f.stages == ["search", "cart", "purchase"]  # only stages the workspace records
    assert f.reached == [1, 1, 0]
    assert query_funnel(ws, "lamp", window_hours=72).reached == [1, 1, 1]


def test_top_queries_normalised(insights_db):
    assert top_queries(insights_db) == [{"query": "red mug", "searches": 3, "users": 2}]


def test_group_steps_collapses_baskets(ws):
    from merch_app.insights.paths import group_steps

    with ws.conn:
        ws.insert_rows("events", [
            dict(user_id="b", item_id=i, event_type="purchase", ts="2024-03-01T10:00:00Z", session_id="inv1")
            for i in ("X", "Y", "Z")
        ] + [dict(user_id="b", item_id="X", event_type="return", ts="2024-03-01T10:00:00Z", session_id="inv2"),
             dict(user_id="b", item_id="Y", event_type="purchase", ts="2024-03-05T10:00:00Z", session_id="inv3")])
    groups = group_steps(behaviour_path(ws, user_id="b").steps, max_titles=2)
    assert [(g.event_type, g.count) for g in groups] == [("purchase", 3), ("return", 1), ("purchase", 1)]
    assert groups[0].titles == ["X", "Y"] and groups[1].level == 5
