"""Item page and the model-based insight views (nearest users, segments, full doctor)."""
from __future__ import annotations

import numpy as np
import pytest

from insights_data import DotModel
from merch_app.insights.item_page import item_buyers, item_page, queries_leading_to
from merch_app.insights.model_views import model_doctor, nearest_users, user_segments
from merch_app.model.bundle import ModelBundle

ITEM_IDS = ["A", "B", "C", "D", "E", "F", "G"]
V = [[3, 0], [2, 0], [0, 3], [0, 2], [1, 0], [0, 1], [0, 0]]


def test_item_page_known_answers(insights_db):
    page = item_page(insights_db, "A")
    assert page.exists and page.item["title"] == "Red ceramic mug"
    assert (page.n_events, page.n_users) == (8, 2)
    assert page.event_mix == {"view": 3, "click": 1, "cart": 2, "purchase": 1, "return": 1}
    assert page.activity.total().sum() == 8 and page.activity.dates[0] == "2024-01-01"
    assert page.buyers == [{"user_id": "u1", "purchases": 1, "quantity": 1.0, "returns": 1,
                            "last_ts": "2024-01-10T09:00:00Z"}]
    assert page.queries == [{"query": "red mug", "actors": 3, "direct": 0}]
    assert page.funnel.reached == [3, 2, 2, 1]
    assert page.to_dict()["funnel"]["stages"][0] == "view"


def test_queries_leading_to_sessions_and_lookback(insights_db):
    assert queries_leading_to(insights_db, "B") == [{"query": "red mug", "actors": 1, "direct": 0}]
    assert queries_leading_to(insights_db, "C") == []  # u1 searched in another session
    with insights_db.conn:
        insights_db.insert_rows("events", [
            dict(user_id="v", event_type="search", ts="2024-02-01T10:00:00Z", query="Lamp"),
            dict(user_id="v", item_id="D", event_type="view", ts="2024-02-01T11:00:00Z"),
            dict(user_id="v", item_id="G", event_type="view", ts="2024-02-01T15:00:00Z"),
            dict(user_id="w", item_id="G", event_type="search", ts="2024-02-01T15:00:00Z", query="cushion"),
        ])
    assert queries_leading_to(insights_db, "D") == [{"query": "lamp", "actors": 1, "direct": 0}]
    assert queries_leading_to(insights_db, "G") == [{"query": "cushion", "actors": 1, "direct": 1}]
    assert queries_leading_to(insights_db, "G", lookback_hours=6)[1] == {"query": "lamp", "actors": 1, "direct": 0}


def test_item_page_unknown_item(insights_db):
    page = item_page(insights_db, "nope")
    assert not page.exists and page.n_events == 0 and page.buyers == [] and page.queries == []
    assert item_buyers(insights_db, "C") == []


def test_nearest_users_cosine():
    m = DotModel(["a", "b", "c", "d"], ["x"], [[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], [[1, 0]])
    raw = nearest_users(m, "a", k=3, centre=False)
    assert [n["user_id"] for n in raw] == ["b", "c", "d"]
    assert raw[0]["similarity"] == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-6)
    assert raw[2]["similarity"] == pytest.approx(-1.0)
    # centred: the mean user (0.225, 0.275) is subtracted before the cosine
    near = nearest_users(m, "a", k=3)
    c = np.array(m.U) - np.array(m.U).mean(axis=0)
    cos = (c @ c[0]) / (np.linalg.norm(c, axis=1) * np.linalg.norm(c[0]))
    assert [n["user_id"] for n in near] == ["b", "c", "d"]
    assert [n["similarity"] for n in near] == pytest.approx(cos[1:].tolist(), abs=1e-6)
    assert nearest_users(m, "zz") == []
    with pytest.raises(ValueError, match="no trained model"):
        nearest_users(None, "a")


def test_user_segments_and_affinity(insights_db):
    users = [f"k{n}" for n in range(6)] + [f"g{n}" for n in range(4)]
    U = [[1, 0.05 * n] for n in range(6)] + [[0.05 * n, 1] for n in range(4)]
    m = DotModel(users, ITEM_IDS, U, V)
    seg = user_segments(insights_db, m, k=2, seed=0)
    assert seg.result.sizes.tolist() == [6, 4]
    assert seg.result.labels.tolist() == [0] * 6 + [1] * 4
    aff = seg.affinity
    assert aff.rows == ["segment 1 (6 users)", "segment 2 (4 users)"]
    assert aff.cols[0] == "Kitchen"  # most items (A, B, F)
    k, g = aff.cols.index("Kitchen"), aff.cols.index("Garden")
    assert aff.values[0, k] > aff.values[1, k] and aff.values[1, g] > aff.values[0, g]
    assert user_segments(insights_db, m, k=2, max_users=5).result.labels.shape == (5,)


def _bundle(model):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(7, 8)).astype(np.float32)
    vecs[5] = vecs[0]  # F's text vector equals A's
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return ModelBundle(item_ids=np.array(ITEM_IDS, dtype=object), item_vectors=vecs,
                       popularity=np.zeros(7, np.float32), encoder=None, index=None, model=model)


def test_model_doctor_known_answers(insights_db):
    m = DotModel(["u1", "u2"], ITEM_IDS, [[1, 0], [0, 1]], V)
    seen = []
    r = model_doctor(insights_db, _bundle(m), k=2, progress=seen.append)
    assert r.near_duplicates == [("A", "F", pytest.approx(1.0, abs=1e-6))]
    # top 2: u1 -> A, B; u2 -> C, D.  Events: A 8, B 3, C 2; cold = D, E, F, G
    pb = r.popularity_bias
    assert pb.coverage == pytest.approx(4 / 7)
    assert pb.long_tail_share == pytest.approx(0.5)  # head = A, B
    cs = r.cold_start
    assert (cs.n_cold, cs.n_warm, cs.n_users) == (4, 3, 2)
    assert cs.cold_share_top_k == pytest.approx(0.25)
    # u1 ranks (stable ties): A0 B1 E2 C3 D4 F5 G6; u2: C0 D1 F2 A3 B4 E5 G6; percentile = rank / 6
    assert cs.cold_mean_percentile == pytest.approx((4 + 2 + 5 + 6 + 1 + 5 + 2 + 6) / 8 / 6)
    assert seen[-1].done == seen[-1].total == 3
    s = r.summary()
    assert s["near_duplicate_pairs"] == 1 and s["coverage"] == pytest.approx(4 / 7)


def test_model_doctor_without_model(insights_db):
    r = model_doctor(insights_db, None)
    assert r.near_duplicates is None and r.popularity_bias is None and "no model" in r.notes[0]
    r = model_doctor(insights_db, _bundle(None))
    assert r.near_duplicates is not None and r.popularity_bias is None
    assert "text-only" in r.notes[0]


def test_probe_queries_from_title(insights_db):
    from merch_app.insights.item_page import probe_queries

    # "Red ceramic mug": df red 2, ceramic 3, mug 3 -> rarest "red"
    assert probe_queries(insights_db, "A") == ["red ceramic mug", "ceramic mug", "red"]
    # two words: the noun phrase is the title; garden and lantern are both in one item, the first wins
    assert probe_queries(insights_db, "C") == ["garden lantern", "garden"]
    assert probe_queries(insights_db, "E") == [] and probe_queries(insights_db, "nope") == []
