"""Known-answer tests of the catalogue doctor."""
from __future__ import annotations

import numpy as np
import pytest

from merch_app.insights.doctor import (
    behaviour_doctor,
    cold_start_lens,
    near_duplicates,
    popularity_bias,
    text_findings,
    untouched_items,
)
from merch_app.jobs import CancelToken, Cancelled


def test_text_findings(insights_db):
    t = text_findings(insights_db)
    assert t.n_items == 7
    assert t.empty == ["E"]
    assert t.short == [{"item_id": "D", "text": "lamp"}]
    assert t.duplicate_groups == [["A", "F"]]  # "Tea mug" vs "Tea  mug": spaces and case ignored
    assert t.n_duplicate_items == 2


def test_short_means_few_content_words(ws):
    with ws.conn:
        ws.insert_rows("items", [
            dict(item_id="1", title="The set of 12", description=""),  # 13 chars but one content word
            dict(item_id="2", title="Enamel bread bin", description=""),
        ])
    assert [s["item_id"] for s in text_findings(ws).short] == ["1"]


def test_untouched_items(insights_db):
    assert untouched_items(insights_db) == (["D", "E", "F", "G"], 4)
    assert untouched_items(insights_db, limit=2) == (["D", "E"], 4)


def test_behaviour_doctor_summary(insights_db):
    r = behaviour_doctor(insights_db)
    assert r.summary() == {"items": 7, "empty_text": 1, "short_text": 1, "duplicate_text_groups": 1,
                           "duplicate_text_items": 2, "untouched": 4, "id_case_clash_groups": 0}
    d = r.to_dict()
    assert d["near_duplicates"] is None and d["untouched"] == ["D", "E", "F", "G"]


def test_near_duplicates_blocked_matches_brute_force():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(40, 16)).astype(np.float32)
    v[7] = v[3] + 0.01 * rng.normal(size=16)  # near-duplicate of 3
    v[30] = 2.0 * v[12]  # same direction, different length
    ids = [f"i{n}" for n in range(40)]
    pairs = near_duplicates(ids, v, threshold=0.95, block=6)
    assert [(a, b) for a, b, _ in pairs] == [("i12", "i30"), ("i3", "i7")]
    assert pairs[0][2] == pytest.approx(1.0, abs=1e-6) and pairs[1][2] > 0.99
    assert near_duplicates(ids, v, threshold=0.95, block=1000) == pairs
    assert near_duplicates(ids[:1], v[:1]) == []


def test_near_duplicates_progress_and_cancel():
    v = np.eye(10, dtype=np.float32)
    seen = []
    assert near_duplicates([str(i) for i in range(10)], v, block=3, progress=seen.append) == []
    assert seen[-1].done == 10 and seen[-1].total == 10
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        near_duplicates([str(i) for i in range(10)], v, cancel=token)


def test_cold_start_lens_known_ranks():
    # 5 items, items 3 and 4 are cold; user 0 ranks them last, user 1 puts item 4 first
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0],
                       [1.0, 2.0, 3.0, 4.0, 5.0]])
    cold = np.array([False, False, False, True, True])
    lens = cold_start_lens(scores, cold, k=2)
    # percentiles (rank / 4): user 0 cold ranks 3, 4; user 1 cold ranks 1, 0
    assert lens.cold_mean_percentile == pytest.approx((0.75 + 1.0 + 0.25 + 0.0) / 4)
    assert lens.warm_mean_percentile == pytest.approx((0 + 0.25 + 0.5 + 1.0 + 0.75 + 0.5) / 6)
    assert lens.cold_share_top_k == pytest.approx(0.5)  # user 0: none, user 1: both
    assert lens.cold_share_catalogue == pytest.approx(0.4)
    assert (lens.n_users, lens.n_cold, lens.n_warm, lens.k) == (2, 2, 3, 2)
    assert sum(lens.cold_hist) == 4 and sum(lens.warm_hist) == 6


def test_popularity_bias_known_answer():
    items = ["a", "b", "c", "d", "e"]
    popularity = [100, 50, 10, 5, 1]  # head (top 20%) = {a}
    rankings = [["a", "b"], ["a", "c"], ["a", "b"]]
    pb = popularity_bias(rankings, items, popularity, k=2)
    assert pb.coverage == pytest.approx(3 / 5)
    assert pb.long_tail_share == pytest.approx(3 / 6)
    assert pb.catalogue_tail_share == pytest.approx(4 / 5)
    # counts a=3, b=2, c=1, d=e=0 -> Gini of [0, 0, 1, 2, 3]
    assert pb.gini == pytest.approx((2 * (3 * 1 + 4 * 2 + 5 * 3)) / (5 * 6) - 6 / 5)
    assert pb.lorenz_x == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert pb.lorenz_y == pytest.approx([0, 0, 0, 1 / 6, 3 / 6, 1.0])
    # fewer items than deciles: one item per decile, most popular first
    assert pb.by_popularity == pytest.approx([3 / 6, 2 / 6, 1 / 6, 0, 0, 0, 0, 0, 0, 0])


def test_popularity_bias_deciles_on_larger_catalogue():
    items = [f"i{n}" for n in range(100)]
    pop = list(range(100, 0, -1))  # i0 most popular
    rankings = [["i0", "i1"], ["i50", "i99"]]
    pb = popularity_bias(rankings, items, pop, k=2)
    assert pb.by_popularity == pytest.approx([0.5, 0, 0, 0, 0, 0.25, 0, 0, 0, 0.25])
    assert len(pb.lorenz_x) == 101 and pb.lorenz_y[-1] == pytest.approx(1.0)


def test_cold_threshold_falls_back_to_thinly_known_items():
    from merch_app.insights.doctor import cold_threshold

    assert cold_threshold(np.array([0] * 5 + [9] * 95)) == 0  # 5% untouched: the strict lens
    assert cold_threshold(np.array([0] * 1 + [2] * 9 + [50] * 90)) == 2  # 1% untouched only
    assert cold_threshold(np.array([100] * 10)) == 10 and cold_threshold(np.array([])) == 0


def test_cold_start_lens_without_cold_items():
    lens = cold_start_lens(np.array([[1.0, 2.0]]), np.array([False, False]), k=1)
    assert lens.cold_mean_percentile is None and lens.warm_mean_percentile == pytest.approx(0.5)


def test_ids_that_differ_only_by_case_are_their_own_finding(ws):
    from merch_app.insights.doctor import behaviour_doctor
    from ranking_fixtures import insert_items

    insert_items(ws, [{"item_id": "85123A", "title": "WHITE HANGING HEART T-LIGHT HOLDER"},
                      {"item_id": "85123a", "title": "WHITE HANGING HEART T-LIGHT HOLDER"},
                      {"item_id": "84970S", "title": "HANGING HEART ZINC T-LIGHT HOLDER"},
                      {"item_id": "84970s", "title": "hanging heart zinc t-light holder, small"},
                      {"item_id": "22001", "title": "RED MUG"}, {"item_id": "22002", "title": "RED MUG"}])
    report = behaviour_doctor(ws)
    assert report.id_clashes == [["84970S", "84970s"], ["85123A", "85123a"]]
    assert report.text.duplicate_groups == [["22001", "22002"]]  # 85123A/a is filed as an id clash only
    assert report.summary()["id_case_clash_groups"] == 2
