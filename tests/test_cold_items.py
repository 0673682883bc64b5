"""Cold-start items (model.cold_items, config cold_impute / cold_cf_map / cold_feature): known answers.

A planted catalogue: four text groups; one warm item of group 0 ("pop") is bought by most
users, again and again, up to the end; a planted item "new" whose text is nearly pop's has no
sales at all.  Without the imputation it ranks below the median of the users' lists; with it,
its trend row and item bias are its text neighbours' (pop first) and it ranks above the median,
and every explanation still adds up to the score.  The learned route (the default,
``cold_feature``) is checked on a shop whose internal cuts have new items that then sell: the
weight of "unsold" comes out positive and lifts "new", α_cold enters its bilinear part, and the
explanation adds up; where no new item ever sells after a cut, both weights stay 0.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from merch_app.model import cold_items
from merch_app.model.history_features import TREND_FEATURES, UNSOLD
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.interactions import from_arrays

GROUPS, PER_GROUP, USERS, DIM = 4, 8, 80, 16
FAST = dict(dim=8, epochs=6, batch_size=128, shared_negatives=32, lr=0.02, refit_epochs=1)


def planted(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(GROUPS, DIM))
    item_ids = [f"g{g}_{j}" for g in range(GROUPS) for j in range(PER_GROUP)] + ["new"]
    text = np.repeat(centres, PER_GROUP, 0) + 0.5 * rng.normal(size=(GROUPS * PER_GROUP, DIM))
    text = np.vstack([text, text[0] + 0.05 * rng.normal(size=DIM)])  # "new" reads like g0_0 ("pop")
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    users, items, ts = [], [], []
    for u in range(USERS):
        g = u % GROUPS
        for j in rng.choice(PER_GROUP, 3, replace=False):
            users.append(f"u{u}")
            items.append(f"g{g}_{j}")
            ts.append(19000.0 + rng.uniform(0, 120))
        if rng.random() < 0.8:  # pop: bought by most users, on many days, until the end
            for day in rng.uniform(0, 120, 4):
                users.append(f"u{u}")
                items.append("g0_0")
                ts.append(19000.0 + day)
    return from_arrays(users, items, ts, item_ids=item_ids), text


def percentile(model, item: str) -> float:
    """Mean over users of the share of other items scored below ``item`` (1 = top, 0.5 = median)."""
    j = model.item_pos[item]
    s = model.score_matrix(np.arange(len(model.user_ids)))
    return float(np.mean(1.0 - (s > s[:, [j]]).sum(1) / (model.n_items - 1)))


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def off(data):
    inter, text = data
    return HybridModel(HybridConfig(**FAST, cold_feature=False, cold_impute=False)).fit(inter, text)


@pytest.fixture(scope="module")
def on(data):
    inter, text = data
    cfg = HybridConfig(**FAST, cold_feature=False, cold_impute=True, cold_cf_map=True, cold_shrink=1.0,
                       cold_neighbours=3)
    return HybridModel(cfg).fit(inter, text)


def test_text_neighbours_and_their_mean_are_the_known_ones():
    text = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0], [0.6, 0.8]], np.float32)
    idx, w = cold_items.text_neighbours(text, np.array([4]), np.array([0, 1, 2, 3]), 2)
    assert idx.tolist() == [[1, 2]]  # cosines 0.96 and 0.8; item 3 (cosine -0.6) is not among them
    np.testing.assert_allclose(w, [[0.96 / 1.76, 0.8 / 1.76]], rtol=1e-6)
    vals = np.array([0.0, 1.0, 2.0, 5.0], np.float32)
    np.testing.assert_allclose(cold_items.neighbour_mean(vals, idx, w), [(0.96 + 1.6) / 1.76], rtol=1e-6)
    _, w_neg = cold_items.text_neighbours(text, np.array([3]), np.array([2]), 1)
    assert w_neg.tolist() == [[1.0]]  # only negative similarities: equal weights, not 0/0


def test_ridge_map_recovers_a_linear_text_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    m = rng.normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_allclose(cold_items.ridge_text_map(x, x @ m, alpha=1e-6), m, atol=1e-4)


def test_fill_cold_imputes_only_unsold_items_and_keeps_them_marked():
    text = np.eye(3, dtype=np.float32)[[0, 1, 0]]  # item 2 reads like item 0
    trend = np.array([[2.0] + [0.0] * (len(TREND_FEATURES) - 1)] * 2 + [[0.0] * len(TREND_FEATURES)], np.float32)
    trend[2, UNSOLD] = 1.0
    arrays = {"T_i": text, "trend": trend, "b_item": np.array([0.4, -0.2, -0.9], np.float32),
              "Q": np.array([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]], np.float32)}
    sold = np.array([True, True, False])
    assert cold_items.fill_cold(arrays, sold, 0.5, 1, cf_map=True) == 1
    assert arrays["trend"][2, 0] == pytest.approx(1.0) and arrays["trend"][2, UNSOLD] == 1.0
    assert arrays["b_item"].tolist() == pytest.approx([0.4, -0.2, 0.2])  # 0.5 x item 0's bias
    assert arrays["Q"][:2].tolist() == [[1.0, 2.0], [3.0, 4.0]]  # sold items keep theirs
    np.testing.assert_allclose(arrays["Q"][2], [1.0 / 2.0, 2.0 / 2.0], rtol=1e-6)  # ridge (α = 1): x/(1+1)
    assert cold_items.fill_cold(arrays, sold, 0.0, 1) == 0  # λ = 0: nothing changes


def test_planted_cold_item_rises_above_the_median_and_explains(off, on):
    assert percentile(off, "new") < 0.5  # text path only: below the median (the problem)
    assert percentile(on, "new") > 0.5 > percentile(off, "new")
    j = on.item_pos["new"]
    pop = on.item_pos["g0_0"]
    assert on.arrays["trend"][j, 0] > 0 and on.arrays["trend"][j, UNSOLD] == 1.0  # demand of its neighbours
    assert on.arrays["trend"][j, 0] <= on.arrays["trend"][pop, 0] + 1e-6  # a weighted mean: never above them all
    assert not off.arrays["trend"][j, :UNSOLD].any()
    for user in ("u0", "u1", "u5"):
        exp = on.explain(user, "new", top=100)
        s = on.score(user, [j])[0]
        assert abs(sum(exp["parts"].values()) - s) < 1e-5 and abs(exp["score"] - s) < 1e-5
        assert abs(sum(f["contribution"] for f in exp["factors"]) - exp["parts"]["bilinear"]) < 1e-4
        assert exp["parts"]["trend"] != 0.0  # the imputed trend is in the trend part


def test_imputation_survives_save_load_and_history_refresh(on, data, tmp_path):
    inter, _ = data
    on.save(tmp_path / "m")
    back = HybridModel.load(tmp_path / "m")
    np.testing.assert_allclose(back.score_matrix(np.arange(5)), on.score_matrix(np.arange(5)), rtol=1e-5, atol=1e-5)
    again = back.with_history(inter, float(inter.ts.max()) + 1e-6)  # trend rows rebuilt, "new" imputed again
    np.testing.assert_allclose(again.arrays["trend"], on.arrays["trend"], rtol=1e-5, atol=1e-6)


def test_added_item_takes_its_neighbours_parts(on, off):
    vec = on.arrays["T_i"][on.item_pos["g0_0"]][None, :]
    for model, imputed in ((on, True), (off, False)):
        m = copy.deepcopy(model)
        m.add_items(["added"], vec)
        j = m.item_pos["added"]
        assert bool(m.arrays["trend"][j, 0] > 0) == imputed
        assert bool(np.any(m.arrays["Q"][j])) == imputed  # off: no behaviour, Q = 0 (text path only)
        exp = m.explain("u0", "added")
        assert sum(exp["parts"].values()) == pytest.approx(exp["score"], abs=1e-5)
        assert (percentile(m, "added") > 0.5) == imputed


def test_cold_choice_on_the_validation_cut_is_recorded(data):
    inter, text = data
    cfg = HybridConfig(**FAST, cold_feature=False, cold_impute=True)
    reports = []
    model = HybridModel(cfg).fit(inter, text, progress=reports.append)
    grid = [p.data["cold_choice"] for p in reports if "cold_choice" in p.data]
    assert len(grid) == 1 and len(grid[0]) == 1 + len(cold_items.SHRINK_GRID) * len(cold_items.NEIGHBOUR_GRID)
    assert grid[0][0]["shrink"] == 0.0 and grid[0][0]["admissible"]
    chosen = [r for r in grid[0] if r["admissible"]]
    best = max(chosen, key=lambda r: r["pct"])
    assert model.config.cold_shrink == best["shrink"]
    assert model.config.cold_neighbours in cold_items.NEIGHBOUR_GRID


def launches(seed: int = 0):
    """Six groups of four items sold all along plus six launched per group on days 98-118 that then sell.

    Every internal cut (days ~60-96 of 120) has items not sold yet that are bought after it (36 at
    the main cut), so the default fit learns the weight of "unsold" and α_cold; "new" (text of g0_0,
    bought by most users) is never sold.
    """
    rng = np.random.default_rng(seed)
    groups, old, launched = 6, 4, 6
    centres = rng.normal(size=(groups, DIM))
    item_ids = [f"g{g}_{j}" for g in range(groups) for j in range(old + launched)] + ["new"]
    text = np.repeat(centres, old + launched, 0) + 0.5 * rng.normal(size=(groups * (old + launched), DIM))
    text = np.vstack([text, text[0] + 0.05 * rng.normal(size=DIM)])
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    users, items, ts = [], [], []
    for u in range(240):
        g = u % groups
        bought = [(f"g{g}_{j}", rng.uniform(0, 120)) for j in rng.choice(old, 3, replace=False)]
        bought += [(f"g{g}_{old + k}", rng.uniform(98 + 4 * k, 121)) for k in range(launched) if rng.random() < 0.5]
        bought += [("g0_0", day) for day in rng.uniform(0, 120, 4)] if rng.random() < 0.8 else []
        for item, day in bought:
            users.append(f"u{u}")
            items.append(item)
            ts.append(19000.0 + day)
    return from_arrays(users, items, ts, item_ids=item_ids), text


def test_learned_cold_weights_score_and_explain():
    inter, text = launches()
    model = HybridModel(HybridConfig(**FAST)).fit(inter, text)  # cold_feature: the default
    j, w = model.item_pos["new"], model.item_pos["g1_0"]
    assert model.arrays["trend"][j, UNSOLD] == 1.0 and model.arrays["trend"][w, UNSOLD] == 0.0
    assert model.eta[UNSOLD] > 0  # the cuts' new items sold: not having sold yet is no reason to rank low
    assert model.alpha_cold != 0.0
    raw = model.UW[0] @ model.V.T
    parts = model.score_parts("u0")
    assert parts["trend"][j] == pytest.approx(model.eta[UNSOLD])  # "unsold" is its only trend feature
    assert parts["bilinear"][j] == pytest.approx((model.alpha + model.alpha_cold) * raw[j], rel=1e-4, abs=1e-6)
    assert parts["bilinear"][w] == pytest.approx(model.alpha * raw[w], rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(model.score_matrix(np.array([0])), model.score("u0")[None, :], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.predict_pairs(np.zeros(model.n_items, np.int64), np.arange(model.n_items)),
                               model.score("u0"), rtol=1e-5, atol=1e-5)
    for user in ("u0", "u1", "u7"):
        exp = model.explain(user, "new", top=100)
        assert sum(exp["parts"].values()) == pytest.approx(exp["score"], abs=1e-5)
        assert exp["score"] == pytest.approx(model.score(user, [j])[0], abs=1e-5)
        assert sum(f["contribution"] for f in exp["factors"]) == pytest.approx(exp["parts"]["bilinear"], abs=1e-4)
    lifted = percentile(model, "new")
    model.arrays["combiner"][3 + len(model.gamma) + UNSOLD] = 0.0  # its learned lift taken away
    model._derive(vectors=False)
    assert lifted > percentile(model, "new")


def test_no_new_items_sold_at_the_cuts_learns_nothing_for_them(data, off):
    inter, text = data  # every item sells from the start: no cut has a new item bought after it
    model = HybridModel(HybridConfig(**FAST)).fit(inter, text)
    assert model.eta[UNSOLD] == 0.0 and model.alpha_cold == 0.0
    np.testing.assert_array_equal(model.score_matrix(np.arange(10)), off.score_matrix(np.arange(10)))


def test_format5_folder_loads_and_scores_as_before(off, tmp_path):
    from merch_app.model.safetensors_io import read_arrays, write_arrays

    folder = tmp_path / "m5"
    off.save(folder)
    arrays = read_arrays(folder / "arrays.safetensors")
    c, n_hist = arrays["combiner"], 16
    # format 5: α, β, μ, γ (16), η (7, no unsold), α_own; no α_cold
    arrays["combiner"] = np.concatenate([c[:3 + n_hist + UNSOLD], c[-2:-1]])
    arrays["trend"] = np.ascontiguousarray(arrays["trend"][:, :UNSOLD])  # nor the unsold column
    write_arrays(arrays, folder / "arrays.safetensors")
    meta = json.loads((folder / "config.json").read_text())
    meta.pop("sha256")
    meta["format"] = 5
    for key in ("cold_impute", "cold_shrink", "cold_neighbours", "cold_cf_map", "cold_feature"):
        meta["config"].pop(key)  # fields a format-5 config did not have
    (folder / "config.json").write_text(json.dumps(meta))
    old = HybridModel.load(folder)
    assert old.alpha_cold == 0.0 and old.eta[UNSOLD] == 0.0 and not old.arrays["trend"][:, UNSOLD].any()
    np.testing.assert_allclose(old.score_matrix(np.arange(6)), off.score_matrix(np.arange(6)), rtol=1e-5, atol=1e-5)
