"""Known-answer tests of user profiles and user lists."""
from __future__ import annotations

import math

import numpy as np
import pytest

from merch_app.insights.profiles import (
    interest_terms,
    list_users,
    search_users,
    user_activity,
    user_profile,
)


def test_profile_counts_mix_and_categories(insights_db):
    p = user_profile(insights_db, "u1")
    assert p.exists
    assert (p.n_events, p.n_items, p.n_sessions) == (7, 2, 3)
    assert (p.first_ts, p.last_ts) == ("2024-01-01T10:00:00Z", "2024-01-10T09:00:00Z")
    assert p.event_mix == {"search": 1, "view": 2, "click": 1, "cart": 1, "purchase": 1, "return": 1}
    assert list(p.event_mix) == ["search", "view", "click", "cart", "purchase", "return"]
    assert [(c["category"], c["events"], c["items"]) for c in p.categories] == [("Kitchen", 5, 1), ("Garden", 1, 1)]
    assert p.categories[0]["share"] == pytest.approx(5 / 6)
    assert p.tags == [("mug", 5), ("red", 5), ("garden", 1), ("lantern", 1)]
    assert [h["event_type"] for h in p.history] == ["return", "view", "purchase", "cart", "click", "view", "search"]
    assert p.history[0]["title"] == "Red ceramic mug"


def test_interest_terms_tf_idf(insights_db):
    terms = interest_terms(insights_db, "u1")
    assert [t for t, _, _ in terms] == ["red", "mug", "ceramic", "garden", "lantern"]
    scores = {t: s for t, s, _ in terms}
    # N = 7 items; red in A, F (df 2); mug in A, B, F (df 3); query words weigh 2
    assert scores["red"] == pytest.approx(7 * (math.log(8 / 3) + 1))
    assert scores["mug"] == pytest.approx(7 * (math.log(8 / 4) + 1))
    assert scores["ceramic"] == pytest.approx(5 * (math.log(8 / 4) + 1))
    counts = {t: c for t, _, c in terms}
    assert counts["red"] == 6 and counts["lantern"] == 1


def test_activity_series_daily_with_gaps(insights_db):
    a = user_activity(insights_db, "u1")
    assert a.bucket == "day"
    assert a.dates[0] == "2024-01-01" and a.dates[-1] == "2024-01-10" and len(a.dates) == 10
    assert a.counts["view"].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert a.total().sum() == 7
    assert a.epoch[1] - a.epoch[0] == 86400
    weekly = user_activity(insights_db, "u1", bucket="week")
    assert weekly.dates == ["2024-01-01", "2024-01-08"]
    assert weekly.total().tolist() == [6, 1]
    monthly = user_activity(insights_db, "u1", bucket="month")
    assert monthly.dates == ["2024-01-01"] and monthly.total().tolist() == [7]


def test_unknown_user_gives_empty_profile(insights_db):
    p = user_profile(insights_db, "nobody")
    assert not p.exists and p.n_events == 0
    assert p.activity.dates == [] and p.categories == [] and p.interest_terms == [] and p.history == []
    d = p.to_dict()
    assert d["user_id"] == "nobody"


def test_profile_to_dict_is_json_safe(insights_db):
    import json

    d = user_profile(insights_db, "u1").to_dict()
    text = json.dumps(d)
    assert '"interest_terms"' in text
    assert d["activity"]["counts"]["view"][:3] == [1, 0, 1]


def test_user_lists(insights_db):
    assert [u["user_id"] for u in list_users(insights_db, "active")] == ["u1", "u2", "u3"]
    assert list_users(insights_db, "active", n=1)[0] == {"user_id": "u1", "events": 7,
                                                         "last_ts": "2024-01-10T09:00:00Z"}
    assert [u["user_id"] for u in list_users(insights_db, "cold")] == ["u3", "u2", "u1"]
    r1 = list_users(insights_db, "random", n=2, seed=3)
    assert len(r1) == 2 and r1 == list_users(insights_db, "random", n=2, seed=3)
    with pytest.raises(ValueError, match="unknown user list"):
        list_users(insights_db, "hot")


def test_search_users_prefix_exact_first(insights_db):
    assert [u["user_id"] for u in search_users(insights_db, "u")] == ["u1", "u2", "u3"]
    assert search_users(insights_db, "u2")[0]["user_id"] == "u2"
    assert search_users(insights_db, "x") == [] and search_users(insights_db, "  ") == []
    assert search_users(insights_db, "u[") == []  # glob characters are literal


def test_empty_workspace_profile_and_lists(ws):
    assert list_users(ws, "active") == [] and list_users(ws, "random") == []
    assert interest_terms(ws, "u1") == []
    assert np.size(user_activity(ws, "u1").epoch) == 0
