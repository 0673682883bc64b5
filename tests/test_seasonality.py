"""Seasonal features (model format 5): a planted December item, known answers, explain adds up.

Three years of generated purchases (2021-01-01 .. 2023-11-30): 60 users buy from 20 everyday
items all year; item ``xmas`` is bought 40 times in each of the Decembers 2021 and 2022 and never
otherwise; item ``flat`` is bought 80 times spread evenly over the three years, so both have the
same overall popularity.  The model is trained as of 2023-12-01 (the next December) and then scored as of
2023-06-01 (history and trend rebuilt at that date), where ``xmas`` must rank below ``flat``.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from merch_app.model.history_features import (
    HISTORY_FEATURES, SEASON_LEAD_DAYS, TREND_FEATURES, HistoryState, christmas_closeness, item_trend_features,
)
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.interactions import from_arrays, ts_to_days

DEC_2023, JUN_2023 = (float(ts_to_days([d])[0]) for d in ("2023-12-01T00:00:00Z", "2023-06-01T00:00:00Z"))
START, END = float(ts_to_days(["2021-01-01T00:00:00Z"])[0]), DEC_2023 - 1.0
ITEMS = ["xmas", "flat"] + [f"e{j}" for j in range(20)]
USERS = [f"u{n}" for n in range(60)]


def _days(iso: str) -> float:
    return float(ts_to_days([iso + "T00:00:00Z"])[0])


def seasonal_data():
    rng = np.random.default_rng(3)
    users, items, ts = [], [], []
    for u in USERS:  # everyday shopping: about two items a month all year
        for day in rng.uniform(START, END, 70):
            users.append(u)
            items.append(ITEMS[2 + int(rng.integers(20))])
            ts.append(day)
    for year in (2021, 2022):  # the December item; 2023's December is what the model predicts
        lo = _days(f"{year}-12-01")
        for u in rng.choice(len(USERS), 40, replace=False):
            users.append(USERS[u])
            items.append("xmas")
            ts.append(lo + rng.uniform(0, 24))
    for day in np.linspace(START + 3, END - 3, 80):  # the same sales spread over the year
        users.append(USERS[int(rng.integers(len(USERS)))])
        items.append("flat")
        ts.append(day)
    return from_arrays(users, items, np.array(ts), item_ids=ITEMS, user_ids=USERS)


def fit(seasonal_features=None):
    cfg = HybridConfig(dim=8, epochs=3, batch_size=256, shared_negatives=16, lr=0.02, refit_epochs=0, seed=0,
                       label_horizon_days=31.0, min_epochs=1)
    if seasonal_features is not None:
        cfg.seasonal_features = seasonal_features
    inter = seasonal_data()
    rng = np.random.default_rng(1)
    text = rng.normal(size=(len(ITEMS), 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return HybridModel(cfg).fit(inter, text, ref_day=DEC_2023), inter


@pytest.fixture(scope="module")
def fitted():
    return fit()


def _xmas_minus_flat(model) -> np.ndarray:
    return np.array([s[0] - s[1] for s in (model.score(u, [0, 1]) for u in USERS)])


def test_equal_overall_popularity_is_planted():
    inter = seasonal_data()
    counts = np.bincount(inter.item_idx, minlength=len(ITEMS))
    assert counts[0] == counts[1] == 80


def test_december_item_ranks_above_the_flat_item_in_december_and_below_in_june(fitted):
    model, inter = fitted
    assert model.config.season_window_days > 0  # resolved at fit from the cuts' horizon
    december = _xmas_minus_flat(model)
    assert (december > 0).mean() >= 0.9 and december.mean() > 0
    june = _xmas_minus_flat(model.with_history(inter, JUN_2023))
    assert (june < 0).mean() >= 0.9 and june.mean() < 0
    # item level (same for every user): the trend part alone orders them the same way
    assert model.trend_score[0] > model.trend_score[1]
    assert model.with_history(inter, JUN_2023).trend_score[0] < model.trend_score[1]


def test_without_the_seasonal_features_the_december_item_loses_in_december():
    model, _ = fit(seasonal_features=[])
    assert model.season() is None
    assert _xmas_minus_flat(model).mean() < 0  # no recent sales: recency alone buries it


def test_seasonal_weights_are_learned_from_the_same_season(fitted):
    model, _ = fitted
    eta = dict(zip(TREND_FEATURES, model.eta))
    assert eta["log_sales_last_year"] > 0 or eta["season_lift"] > 0


def test_explain_parts_add_up_with_the_seasonal_features(fitted):
    model, _ = fitted
    trend_row = model.arrays["trend"][0]
    assert trend_row[TREND_FEATURES.index("log_sales_last_year")] > 0  # the features are really in play
    for user in USERS[:5]:
        for item in ("xmas", "flat", "e3"):
            exp = model.explain(user, item, top=50)
            s = float(model.score(user, [model.item_pos[item]])[0])
            assert sum(exp["parts"].values()) == pytest.approx(s, abs=1e-5)
            assert exp["score"] == pytest.approx(s, abs=1e-5)
            assert exp["parts"]["trend"] == pytest.approx(float(model.arrays["trend"][model.item_pos[item]]
                                                                @ model.eta), abs=1e-5)


def test_season_features_known_answers():
    # u0 bought item a on days 0 and 2 and item b on day 40; the season window of ref 380 with
    # (lag 364, length 10) is [9, 26): nothing; of ref 370 it is [-1, 16): both purchases of a
    inter = from_arrays(["u0", "u0", "u0", "u1"], ["a", "a", "b", "b"], np.array([0.0, 2.0, 40.0, 300.0]),
                        item_ids=["a", "b"])
    assert SEASON_LEAD_DAYS == 7.0
    st = HistoryState.build(inter, 370.0, season=(364.0, 10.0))
    f = st.features(np.array([0, 0]), np.array([0, 1]))
    col = HISTORY_FEATURES.index("log_last_year")
    assert f[0, col] == pytest.approx(math.log1p(2.0)) and f[1, col] == 0.0
    assert not HistoryState.build(inter, 380.0, season=(364.0, 10.0)).features(
        np.array([0]), np.array([0]))[0, col]
    tr = item_trend_features(inter, 370.0, season=(364.0, 10.0))
    ly, lift = TREND_FEATURES.index("log_sales_last_year"), TREND_FEATURES.index("season_lift")
    assert tr[0, ly] == pytest.approx(math.log1p(2.0)) and tr[1, ly] == 0.0
    # the events start before the window (day 0 >= -1 is false): no year to compare with, lift 0
    assert tr[0, lift] == 0.0
    tr = item_trend_features(inter, 371.0, season=(364.0, 10.0))  # window [0, 17): covered
    assert tr[0, lift] == pytest.approx(math.log1p(2.0) - math.log1p(0.0))  # a: no sales in the last 364 days
    assert tr[1, lift] == pytest.approx(-math.log1p(2.0 * 17.0 / 364.0))  # b: 2 sales in the year, none then
    # without a season window every seasonal column is 0 (older models score as before)
    assert not item_trend_features(inter, 371.0)[:, 3:].any()


def test_christmas_share_and_closeness():
    assert christmas_closeness(_days("2023-12-25")) == 1.0
    assert christmas_closeness(_days("2023-06-27")) == pytest.approx(1.0 - 181 / 365)
    inter = from_arrays(["u0"] * 4, ["a", "a", "b", "b"],
                        np.array([_days("2022-11-05"), _days("2022-12-24"), _days("2022-12-25"), _days("2023-03-01")]),
                        item_ids=["a", "b"])
    ref = _days("2023-09-01")
    tr = item_trend_features(inter, ref, season=(364.0, 30.0))
    share, near = TREND_FEATURES.index("xmas_share"), TREND_FEATURES.index("xmas_share_near")
    assert tr[0, share] == pytest.approx(2.0 / 7.0) and tr[1, share] == 0.0  # Dec 25 is after the season
    assert tr[0, near] == pytest.approx(2.0 / 7.0 * christmas_closeness(ref))
    # the user's own Christmas purchases of an item (history features; only with a season window)
    f = HistoryState.build(inter, ref, season=(364.0, 30.0)).features(np.array([0, 0]), np.array([0, 1]))
    col, near_col = HISTORY_FEATURES.index("log_xmas"), HISTORY_FEATURES.index("log_xmas_near")
    assert f[0, col] == pytest.approx(math.log1p(2.0)) and f[1, col] == 0.0
    assert f[0, near_col] == pytest.approx(math.log1p(2.0) * christmas_closeness(ref))
    assert not HistoryState.build(inter, ref).features(np.array([0]), np.array([0]))[0, col:].any()


def test_format4_folder_loads_and_scores_without_the_seasonal_parts(fitted, tmp_path):
    from merch_app.model.hybrid_files import N_COMBINER
    from merch_app.model.safetensors_io import read_arrays, write_arrays

    model, _ = fitted
    folder = tmp_path / "m"
    model.save(folder)
    # what format 4 stored: 13 history and 3 trend weights, a 3-column trend array, no hist_last_year
    arrays = {k: v for k, v in read_arrays(folder / "arrays.safetensors").items()
              if k not in ("hist_last_year", "hist_xmas")}
    c = arrays["combiner"]
    n_hist = len(HISTORY_FEATURES)
    arrays["combiner"] = np.concatenate([c[:3 + 13], c[3 + n_hist:3 + n_hist + 3], c[-2:-1]])  # α_own
    arrays["trend"] = np.ascontiguousarray(arrays["trend"][:, :3])
    write_arrays(arrays, folder / "arrays.safetensors")
    meta = json.loads((folder / "config.json").read_text())
    meta.pop("sha256")
    meta["format"] = 4
    for key in ("seasonal_features", "season_lag_days", "season_window_days", "season_cut"):
        meta["config"].pop(key)  # fields a format-4 config did not have
    (folder / "config.json").write_text(json.dumps(meta))
    old = HybridModel.load(folder)
    assert old.combiner.shape == (N_COMBINER,) and old.season() is None
    assert not old.gamma[13:].any() and not old.eta[3:].any() and not old.arrays["trend"][:, 3:].any()
    np.testing.assert_array_equal(old.gamma[:13], model.gamma[:13])  # every older weight in its place
    np.testing.assert_array_equal(old.eta[:3], model.eta[:3])
    assert old.alpha_own == model.alpha_own and old.alpha == model.alpha
    same = HybridModel.load(folder)  # the fitted model with its seasonal weights set to 0
    same.arrays["combiner"] = model.combiner.copy()
    same.arrays["combiner"][3 + 13:3 + n_hist] = 0.0
    same.arrays["combiner"][3 + n_hist + 3:3 + n_hist + len(TREND_FEATURES)] = 0.0
    same._derive(vectors=False)
    np.testing.assert_allclose(old.score_matrix(np.arange(6)), same.score_matrix(np.arange(6)), rtol=1e-5, atol=1e-5)
    exp = old.explain(USERS[0], "xmas")
    assert sum(exp["parts"].values()) == pytest.approx(exp["score"], abs=1e-6)
