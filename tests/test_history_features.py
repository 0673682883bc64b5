"""Repeat-consumption history features (model format 3): known answers, no leakage, persistence.

Hand-built purchases (days since 1970, all before ``REF`` unless said otherwise):

=====  ====  ==========================  =====================================
user   item  purchase days               what it tests
=====  ====  ==========================  =====================================
a      x     0, 10, 20                   3 distinct days, interval 10
a      y     5, 5.5                      2 events on 1 day (count 2, days 1)
b      x     1                           one-off buyer of x
b      y     2, 12                       2 days, interval 10
c      y     3                           one-off buyer of y
d      z     0, 1                        interval 1: overdue is capped
=====  ====  ==========================  =====================================
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.history_features import N_HIST, N_TREND
from merch_app.model.hybrid_files import FORMAT_VERSION, N_COMBINER, ModelLoadError
from merch_app.model.interactions import from_arrays
from merch_app.model.history_features import HISTORY_FEATURES, OVERDUE_CAP, TREND_FEATURES, HistoryState

REF = 35.0
ITEMS = ["x", "y", "z", "w"]
EVENTS = [("a", "x", 0.0), ("a", "x", 10.0), ("a", "x", 20.0), ("a", "y", 5.0), ("a", "y", 5.5),
          ("b", "x", 1.0), ("b", "y", 2.0), ("b", "y", 12.0), ("c", "y", 3.0), ("d", "z", 0.0), ("d", "z", 1.0)]
F = {name: n for n, name in enumerate(HISTORY_FEATURES)}


def inter_of(events):
    users, items, ts = zip(*events)
    return from_arrays(list(users), list(items), np.array(ts), item_ids=ITEMS, user_ids=["a", "b", "c", "d"])


def feats(state, user, item):
    return state.features(np.array([["a", "b", "c", "d"].index(user)]), np.array([ITEMS.index(item)]))[0]


@pytest.fixture(scope="module")
def state():
    return HistoryState.build(inter_of(EVENTS), REF, half_life_days=60.0)


def test_feature_names_keep_the_format2_order():
    assert HISTORY_FEATURES[:5] == ("log_count", "log_recent_count", "recent_repeat", "has_history",
                                    "share_of_user")
    assert HISTORY_FEATURES[13:] == ("log_last_year", "log_xmas", "log_xmas_near")  # format 5 appends
    assert TREND_FEATURES[:3] == ("log_sales_30d", "log_sales_90d", "novelty") and len(TREND_FEATURES) == 8
    assert TREND_FEATURES[7] == "unsold"  # format 6 appends


def test_distinct_days_and_counts(state):
    ax, ay, by = feats(state, "a", "x"), feats(state, "a", "y"), feats(state, "b", "y")
    assert ax[F["log_count"]] == pytest.approx(math.log1p(3))
    assert ax[F["log_days"]] == pytest.approx(math.log1p(3))
    assert ay[F["log_count"]] == pytest.approx(math.log1p(2))
    assert ay[F["log_days"]] == pytest.approx(math.log1p(1))  # two purchases on one day
    assert by[F["log_days"]] == pytest.approx(math.log1p(2))
    assert (ax[F["has_interval"]], ay[F["has_interval"]], by[F["has_interval"]]) == (1.0, 0.0, 1.0)


def test_repeat_propensity_is_the_smoothed_share_of_repeat_buyers(state):
    # x: buyers a (3 days) and b (1 day) -> (1 + 0.5) / (2 + 1); y: a (1 day), b (2 days), c (1 day)
    # -> (1 + 0.5) / (3 + 1); z: d (2 days) -> (1 + 0.5) / (1 + 1)
    assert feats(state, "b", "x")[F["repeat_propensity"]] == pytest.approx(0.5)
    assert feats(state, "a", "y")[F["repeat_propensity"]] == pytest.approx(0.375)
    assert feats(state, "d", "z")[F["repeat_propensity"]] == pytest.approx(0.75)
    np.testing.assert_allclose(state.item_repeat, [0.5, 0.375, 0.75, 0.5], rtol=1e-6)  # w: no buyers


def test_days_since_and_overdue(state):
    ax, by, bx, dz = (feats(state, u, i) for u, i in (("a", "x"), ("b", "y"), ("b", "x"), ("d", "z")))
    assert ax[F["log_days_since"]] == pytest.approx(math.log1p(15))  # last bought day 20
    assert bx[F["log_days_since"]] == pytest.approx(math.log1p(34))
    assert ax[F["overdue"]] == pytest.approx(math.log1p(15 / 10))  # interval (20 - 0) / 2
    assert by[F["overdue"]] == pytest.approx(math.log1p(23 / 10))  # interval 12 - 2
    assert bx[F["overdue"]] == 0.0  # one purchase day: no interval of its own
    assert dz[F["overdue"]] == pytest.approx(math.log1p(OVERDUE_CAP))  # 34 days / 1-day interval, capped


def test_own_item_sales(state):
    # x sold on days 0, 1, 10, 20 (ages 35, 34, 25, 15): 4 in total, 2 in the last 30 days, 4 in 90
    ax = feats(state, "a", "x")
    assert ax[F["hist_log_sales"]] == pytest.approx(math.log1p(4))
    assert ax[F["hist_log_sales_30d"]] == pytest.approx(math.log1p(2))
    assert ax[F["hist_log_sales_90d"]] == pytest.approx(math.log1p(4))


def test_pairs_outside_the_history_are_all_zero(state):
    assert not feats(state, "c", "x").any()
    assert not feats(state, "a", "w").any()
    out = state.features(np.array([-1, 0]), np.array([0, 0]))
    assert not out[0].any() and out[1, F["has_history"]] == 1.0


def test_no_leakage_past_the_reference_time(state):
    later = EVENTS + [("a", "x", 40.0), ("c", "x", 36.0), ("b", "y", REF), ("d", "w", 50.0)]
    again = HistoryState.build(inter_of(later), REF, half_life_days=60.0)
    pairs = np.array([(u, i) for u in range(4) for i in range(len(ITEMS))])
    np.testing.assert_array_equal(state.features(pairs[:, 0], pairs[:, 1]),
                                  again.features(pairs[:, 0], pairs[:, 1]))


def test_relative_recency_leaves_the_absolute_features_alone(state):
    rel = HistoryState.build(inter_of(EVENTS), REF, half_life_days=60.0, relative=True)
    pairs = np.array([(u, i) for u in range(4) for i in range(len(ITEMS))])
    a, b = state.features(pairs[:, 0], pairs[:, 1]), rel.features(pairs[:, 0], pairs[:, 1])
    for name in ("log_days", "repeat_propensity", "log_days_since", "overdue", "has_interval",
                 "hist_log_sales", "hist_log_sales_30d", "hist_log_sales_90d"):
        np.testing.assert_allclose(a[:, F[name]], b[:, F[name]], rtol=1e-6, err_msg=name)


def test_arrays_round_trip_select_and_resize(state):
    back = HistoryState.from_arrays(state.arrays())
    pairs = (np.array([0, 0, 1, 1, 3]), np.array([0, 1, 0, 1, 2]))
    np.testing.assert_array_equal(back.features(*pairs), state.features(*pairs))
    gone = state.without_user(0)
    assert not gone.features(np.array([0]), np.array([0])).any()
    np.testing.assert_array_equal(gone.features(*pairs)[2:], state.features(*pairs)[2:])
    big = state.resized(6, 6)
    np.testing.assert_array_equal(big.features(*pairs), state.features(*pairs))
    assert not big.features(np.array([0]), np.array([5])).any()


def test_format2_state_arrays_still_build(state):
    old = {k: v for k, v in state.arrays().items()
           if k in ("hist_keys", "hist_count", "hist_recent", "hist_last_age", "hist_meta")}
    back = HistoryState.from_arrays(old)
    f = back.features(np.array([0]), np.array([0]))[0]
    np.testing.assert_allclose(f[:5], feats(state, "a", "x")[:5], rtol=1e-6)


# ------------------------------------------------------------------ the model around the features

def small_model():
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    item_ids = [f"i{j}" for j in range(30)]
    for u in range(40):
        favourites = rng.choice(30, 4, replace=False)
        for day in np.sort(rng.uniform(0, 200, 12)):
            users.append(f"u{u}")
            items.append(item_ids[favourites[rng.integers(4)]] if rng.random() < 0.7 else item_ids[rng.integers(30)])
            ts.append(19000.0 + day)
    inter = from_arrays(users, items, ts, item_ids=item_ids)
    text = rng.normal(size=(30, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    cfg = HybridConfig(dim=8, epochs=4, batch_size=64, shared_negatives=16, lr=0.02, refit_epochs=1)
    return HybridModel(cfg).fit(inter, text), inter


@pytest.fixture(scope="module")
def model():
    return small_model()[0]


def test_combiner_layout_and_own_item_cf_weight(model):
    assert model.combiner.shape == (N_COMBINER,) == (3 + N_HIST + N_TREND + 2,)  # ..., α_own, α_cold
    assert model.alpha_own == pytest.approx(float(model.combiner[-2]))
    assert model.alpha_cold == pytest.approx(float(model.combiner[-1]))
    u = 0
    own, _, _ = model.state.user_items(u)
    other = np.setdiff1d(np.arange(model.n_items), own)
    raw = model.UW[u] @ model.V.T
    parts = model.score_parts(model.user_ids[u])
    np.testing.assert_allclose(parts["bilinear"], model.alpha * raw, rtol=1e-4, atol=1e-6)
    # the history part of an own item = γ·h + α_own·uᵀWv (the CF weight on own items is α + α_own)
    h = model.state.features(np.full(len(own), u), own) @ model.gamma
    np.testing.assert_allclose(parts["history"][own], h + model.alpha_own * raw[own], rtol=1e-4, atol=1e-5)
    assert not parts["history"][other].any()
    assert model.alpha_own != 0.0


def test_explain_adds_up_for_own_and_other_items(model):
    user = model.user_ids[3]
    own, _, _ = model.state.user_items(3)
    other = np.setdiff1d(np.arange(model.n_items), own)
    for j in (int(own[0]), int(other[0])):
        exp = model.explain(user, model.item_ids[j], top=100)
        s = model.score(user, [j])[0]
        assert abs(sum(exp["parts"].values()) - s) < 1e-5 and abs(exp["score"] - s) < 1e-5
        assert abs(sum(f["contribution"] for f in exp["factors"]) - exp["parts"]["bilinear"]) < 1e-4
    users = np.arange(5)
    full = model.score_matrix(users)
    for u in users:
        np.testing.assert_allclose(full[u], model.score(model.user_ids[u]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(model.predict_pairs(np.full(model.n_items, u), np.arange(model.n_items)),
                                   full[u], rtol=1e-5, atol=1e-5)
    shuffled = model.score_matrix(np.array([4, 1, 1]))  # any order, repeats included
    for row, u in zip(shuffled, (4, 1, 1)):
        np.testing.assert_allclose(row, full[u], rtol=1e-6, atol=1e-6)


def test_format2_model_loads_and_scores_without_the_new_parts(model, tmp_path):
    old = HybridModel.load(_saved(model, tmp_path / "m3"))
    # what a format-2 model is: combiner α, β, μ, γ(5), η(3); trend (n_items, 3); no format-3 history arrays
    c = old.combiner
    old.arrays["combiner"] = np.concatenate([c[:3 + 5], np.zeros(N_HIST - 5, np.float32),
                                             c[3 + N_HIST:3 + N_HIST + 3], np.zeros(N_TREND - 3, np.float32),
                                             [0.0, 0.0]]).astype(np.float32)
    old.combiner = old.arrays["combiner"].copy()
    old._derive()
    want = old.score_matrix(np.arange(6))
    folder = _saved(old, tmp_path / "m2")
    meta = json.loads((folder / "config.json").read_text())
    meta.pop("sha256")  # format 2 files had no checksums
    meta["format"] = 2
    (folder / "config.json").write_text(json.dumps(meta))
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(folder / "arrays.safetensors"))
    arrays["combiner"] = np.concatenate([c[:3 + 5], c[3 + N_HIST:3 + N_HIST + 3]]).astype(np.float32)
    arrays["trend"] = np.ascontiguousarray(arrays["trend"][:, :3])
    for name in ("days", "span", "abs_age", "item_repeat", "item_sales", "last_year", "xmas"):
        arrays.pop("hist_" + name)
    save_file(arrays, str(folder / "arrays.safetensors"))
    loaded = HybridModel.load(folder)
    assert loaded.alpha_own == 0.0 and not loaded.gamma[5:].any()
    np.testing.assert_allclose(loaded.score_matrix(np.arange(6)), want, rtol=1e-5, atol=1e-5)


def test_unknown_format_is_a_clear_load_error(model, tmp_path):
    folder = _saved(model, tmp_path / "m")
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format"] == FORMAT_VERSION == 6
    meta.pop("sha256")  # an older merch_app wrote no checksum
    meta["format"] = 1
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="format 1"):
        HybridModel.load(folder)


def _saved(model, folder):
    model.save(folder)
    return folder


def test_paired_user_comparison_known_answer():
    from merch_app.evaluation.offline import paired_user_comparison

    relevant = {"u1": {"a"}, "u2": {"b"}, "u3": {"c"}, "u4": {"d"}}
    model = {"u1": ["a", "x"], "u2": ["b", "x"], "u3": ["x", "c"], "u4": ["x", "y"]}
    base = {"u1": ["x", "a"], "u2": ["b", "x"], "u3": ["x", "y"], "u4": ["x", "y"]}
    out = paired_user_comparison(model, base, relevant, k=2, n_resamples=2000)
    nd = out["ndcg@2"]
    # per-user NDCG@2 model - baseline: u1 1 - 1/log2(3), u2 0, u3 1/log2(3) - 0, u4 0
    assert nd["delta"] == pytest.approx(0.25)
    assert (nd["wins"], nd["losses"], nd["ties"]) == (2, 0, 2)
    assert nd["n_users"] == 4 and 0 < nd["p_randomization"] <= 1 and 0 < nd["p_t"] <= 1
    p = out["precision@2"]
    assert p["delta"] == pytest.approx(0.125) and (p["wins"], p["losses"], p["ties"]) == (1, 0, 3)


def test_combiner_examples_sample_label_users_beyond_the_cap(state):
    from merch_app.model import cf_module as cf

    lu, li, lw = np.array([0, 1, 2, 3]), np.array([3, 3, 3, 3]), np.ones(4)  # a, b, c, d buy w
    counts = np.array([3, 4, 2, 0])
    trend = np.zeros((4, 2), np.float32)
    full = cf.combiner_examples(lu, li, lw, state, trend, counts, 2, np.random.default_rng(0))
    assert set(full.u[full.y == 1].tolist()) == {0, 1, 2, 3}
    capped = cf.combiner_examples(lu, li, lw, state, trend, counts, 2, np.random.default_rng(0), max_users=2)
    kept = set(capped.u[capped.y == 1].tolist())
    assert len(kept) == 2
    assert set(capped.u.tolist()) == kept  # history items and negatives only of the sampled users
    same = cf.combiner_examples(lu, li, lw, state, trend, counts, 2, np.random.default_rng(0), max_users=4)
    np.testing.assert_array_equal(same.u, full.u)  # at or under the cap nothing changes


def _naive_history_text(state: HistoryState, item_text: np.ndarray) -> np.ndarray:
    out = np.zeros((state.n_users, item_text.shape[1]))
    w = state.recent + 1e-3 * state.count
    for key, weight in zip(state.keys, w):
        out[key // state.n_items] += weight * item_text[key % state.n_items]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def test_history_text_vectors_match_the_definition_across_chunks(monkeypatch):
    from merch_app.model import text_matrix
    from merch_app.model.history_features import history_text_vectors, users_history_text

    rng = np.random.default_rng(3)
    n_users, n_items, n_ev = 300, 50, 4000
    users = [f"u{u}" for u in rng.integers(0, n_users - 5, n_ev)]  # the last 5 users have no events
    items = [f"i{i}" for i in rng.integers(0, n_items, n_ev)]
    inter = from_arrays(users, items, rng.uniform(100, 200, n_ev), item_ids=[f"i{i}" for i in range(n_items)],
                        user_ids=[f"u{u}" for u in range(n_users)])
    item_text = rng.normal(size=(n_items, 8)).astype(np.float32)
    state = HistoryState.build(inter, 201.0, 30.0)
    expect = _naive_history_text(state, item_text)
    got = history_text_vectors(state, item_text)
    assert got.dtype == np.float32 and np.allclose(got, expect, atol=1e-5)
    assert not got[-5:].any()  # no history: zero vectors
    # compact output switches to float16 at COMPACT_MIN_ROWS users; each row is rounded once
    monkeypatch.setattr(text_matrix, "COMPACT_MIN_ROWS", 100)
    small = history_text_vectors(state, item_text, compact=True)
    assert small.dtype == np.float16 and np.abs(small.astype(np.float32) - expect).max() < 2e-3
    # only some users: the same rows, in the order asked for
    some = np.array([7, 2, 299, 40])
    sub = users_history_text(inter, some, 201.0, 30.0, item_text)
    assert sub.shape == (4, 8) and np.allclose(sub, expect[some], atol=1e-5)


def test_history_text_chunks_end_where_a_user_starts(monkeypatch):
    """A user whose history spans a chunk boundary is summed whole (chunk size forced tiny)."""
    from merch_app.model import history_features

    rng = np.random.default_rng(4)
    users = ["a"] * 30 + ["b"] * 3 + ["c"] * 25
    items = [f"i{i}" for i in rng.integers(0, 40, len(users))]
    inter = from_arrays(users, items, rng.uniform(0, 10, len(users)), item_ids=[f"i{i}" for i in range(40)])
    item_text = rng.normal(size=(40, 4)).astype(np.float32)
    state = HistoryState.build(inter, 11.0, 5.0)
    expect = _naive_history_text(state, item_text)
    monkeypatch.setattr(history_features, "TEXT_CHUNK_ROWS", 7)
    got = history_features.history_text_vectors(state, item_text)
    assert np.allclose(got, expect, atol=1e-5)


def test_pairs_of_finds_each_users_history(state):
    users = np.array([2, 0, 2, 1])
    rows, items = state.pairs_of(users)
    expect = [(n, int(k % state.n_items)) for n, u in enumerate(users) for k in state.keys
              if k // state.n_items == u]
    assert sorted(zip(rows.tolist(), items.tolist())) == sorted(expect) and len(expect) > 0
    empty_rows, empty_items = state.pairs_of(np.zeros(0, np.int64))
    assert len(empty_rows) == 0 and len(empty_items) == 0
