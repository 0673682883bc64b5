"""Explicit ratings (issue 22): baseline-plus-factors beats the damped biases, explain adds up,
older model folders load, the percentile split leaves test users known."""
from __future__ import annotations

import json

import numpy as np
import pytest

from merch_app.evaluation.offline import rating_report
from merch_app.evaluation.split import time_split
from merch_app.model.history_features import N_HIST
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.interactions import from_arrays
from merch_app.model.rating_bias import damped_biases

CFG = dict(dim=8, epochs=40, batch_size=256, lr=0.02, early_stopping_patience=5, mode="explicit", seed=7)


def planted(seed: int = 11, n_users: int = 80, n_items: int = 60, per_user: int = 30):
    """Ratings = 3.5 + b_u + b_i + rank-2 taste + noise (0.5-5, half steps); 80 % train / 20 % test by a seeded draw."""
    rng = np.random.default_rng(seed)
    b_u, b_i = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    pu, qi = rng.normal(0, 0.8, (n_users, 2)), rng.normal(0, 0.8, (n_items, 2))
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False):
            r = 3.5 + b_u[u] + b_i[i] + pu[u] @ qi[i] + rng.normal(0, 0.3)
            rows.append((u, i, float(np.clip(np.round(r * 2) / 2, 0.5, 5.0)), 19000.0 + rng.uniform(0, 100)))
    rows = np.array(rows)
    test = rng.random(len(rows)) < 0.2
    text = rng.normal(size=(n_items, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    item_ids = [f"i{i}" for i in range(n_items)]

    def inter(mask):
        r = rows[mask]
        return from_arrays([f"u{int(u)}" for u in r[:, 0]], [f"i{int(i)}" for i in r[:, 1]], r[:, 3],
                           item_ids=item_ids, event_types=["rating"] * len(r), values=r[:, 2])
    return inter(~test), rows[test], text


@pytest.fixture(scope="module")
def fitted():
    train, test, text = planted()
    model = HybridModel(HybridConfig(**CFG)).fit(train, text)
    upos = model.user_pos
    tu = np.array([upos.get(f"u{int(u)}", -1) for u in test[:, 0]])
    ti = np.array([model.item_pos[f"i{int(i)}"] for i in test[:, 1]])
    return model, train, (tu, ti, test[:, 2])


def test_damped_biases_known_answer():
    # μ = 3; item 0: 5, 5 -> b_i = 4 / (2 + 2) = 1; item 1: 1, 1 -> -4 / 4 = -1
    # user 0: residual 5 - 3 - 1 = 1 -> 1 / (1 + 1) = 0.5; user 1: 1 - 1 - 1 = -1 -> -1 / (3 + 1) = -0.25
    b = damped_biases(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), np.array([5.0, 5.0, 1.0, 1.0]), 2, 3, 1.0, 2.0)
    assert b.mu == 3.0
    assert np.allclose(b.b_item, [1.0, -1.0, 0.0])  # item 2: no ratings, bias 0
    assert np.allclose(b.b_user, [0.5, -0.25])
    assert b.predict(np.array([-1]), np.array([2]))[0] == 3.0  # unknown user, unrated item: the mean


def test_model_beats_the_damped_biases_on_planted_structure(fitted):
    model, train, test = fitted
    rep = rating_report(model, train, test)
    known = rep["known"]
    assert known["n"] > 300
    assert known["damped_biases"]["mae"] < known["global_mean"]["mae"] - 0.1  # the biases are real
    # the rank-2 taste is what only the factors can learn: a clear margin, not noise
    assert known["model"]["mae"] < known["damped_biases"]["mae"] - 0.1
    assert rep["paired"]["known"]["p_t"] < 1e-3 and rep["paired"]["known"]["mae_delta"] < 0


def test_biases_are_the_closed_form_and_saved(fitted, tmp_path):
    model, train, test = fitted
    cfg = model.config  # the user-bias drift chosen at fit is recorded there (test_rating_drift.py)
    b = damped_biases(train.user_idx, train.item_idx, train.value, train.n_users, train.n_items, 10.0, 25.0,
                      days=train.ts, drift_shrink=cfg.rating_drift_shrink if cfg.rating_drift else None)
    assert model.mu == pytest.approx(b.mu, abs=1e-6)
    # saved: each user's bias as of the last training rating
    assert np.allclose(model.arrays["base_user"], b.user_bias_at(float(train.ts.max())))
    assert np.allclose(model.arrays["base_item"], b.b_item)
    model.save(tmp_path / "m")
    again = HybridModel.load(tmp_path / "m")
    assert again.checksums_verified and again.explicit
    assert np.allclose(again.predict_ratings(*test[:2]), model.predict_ratings(*test[:2]))


def test_explain_parts_add_up_to_the_predicted_rating(fitted):
    model, _train, test = fitted
    for u, i in zip(test[0][:20], test[1][:20]):
        user, item = str(model.user_ids[u]), str(model.item_ids[i])
        ex = model.explain(user, item)
        assert {"global", "user_bias", "item_bias_damped", "bilinear", "item_bias"} <= set(ex["parts"])
        assert ex["parts"]["global"] == pytest.approx(model.mu)
        assert ex["parts"]["user_bias"] == pytest.approx(float(model.arrays["base_user"][u]), abs=1e-6)
        assert ex["parts"]["item_bias_damped"] == pytest.approx(float(model.arrays["base_item"][i]), abs=1e-6)
        assert sum(ex["parts"].values()) == pytest.approx(ex["score"], abs=1e-9)
        assert ex["score"] == pytest.approx(float(model.predict_ratings([u], [i])[0]), abs=1e-4)


def test_unknown_user_gets_bias_zero(fitted):
    model, _train, _test = fitted
    i = model.item_pos["i3"]
    pred = model.predict_ratings(np.array([-1]), np.array([i]))[0]
    want = model.mu + model.arrays["base_item"][i] + model.beta * model.item_bias[i]
    assert pred == pytest.approx(want, abs=1e-5)


def test_older_model_folder_without_biases_loads(fitted, tmp_path):
    from merch_app.model.safetensors_io import read_arrays, write_arrays

    model, _train, test = fitted
    folder = tmp_path / "old"
    model.save(folder)
    arrays = {k: v for k, v in read_arrays(folder / "arrays.safetensors").items()
              if not k.startswith("base_") and k not in ("hist_last_year", "hist_xmas")}
    c = arrays["combiner"]  # the format-3 layout: no seasonal weights (13 history, 3 trend)
    arrays["combiner"] = np.concatenate([c[:3 + 13], c[3 + N_HIST:3 + N_HIST + 3], c[-2:-1]])  # α_own
    arrays["trend"] = np.ascontiguousarray(arrays["trend"][:, :3])
    write_arrays(arrays, folder / "arrays.safetensors")
    meta = json.loads((folder / "config.json").read_text())
    meta.pop("sha256")
    meta["format"] = 3
    for key in ("split", "rating_baseline", "bias_shrink_user", "bias_shrink_item", "rating_l2"):
        meta["config"].pop(key)  # fields a format-3 config did not have
    (folder / "config.json").write_text(json.dumps(meta))
    old = HybridModel.load(folder)
    assert old.explicit and "base_user" not in old.arrays
    # scores as such a model did: without the damped biases
    u, i = test[0][:5], test[1][:5]
    gone = model.arrays["base_user"][u] + model.arrays["base_item"][i]
    assert np.allclose(old.predict_ratings(u, i), model.predict_ratings(u, i) - gone, atol=1e-5)
    ex = old.explain(str(old.user_ids[u[0]]), str(old.item_ids[i[0]]))
    assert ex["parts"]["item_bias_damped"] == 0.0 and sum(ex["parts"].values()) == pytest.approx(ex["score"])


def test_percentile_split_leaves_most_test_users_known(ws):
    # 40 users rate over 300 days; 5 early users in the first days stretch the time range far back
    rng = np.random.default_rng(5)
    rows = []
    for u in range(40):
        for d in rng.uniform(200, 300, 10):
            rows.append({"user_id": f"u{u}", "item_id": f"i{int(rng.integers(20))}", "event_type": "rating",
                         "value": 4.0, "ts": f"2024-{1 + int(d) // 31 % 12:02d}-{1 + int(d) % 28:02d}T00:00:00Z"})
    for u in range(40, 45):
        rows.append({"user_id": f"u{u}", "item_id": "i1", "event_type": "rating", "value": 3.0,
                     "ts": "2022-01-01T00:00:00Z"})
    with ws.conn:
        ws.insert_rows("items", [{"item_id": f"i{i}", "title": f"item {i}"} for i in range(20)])
        ws.insert_rows("events", rows)

    def known_share(split):
        before = {r[0] for r in ws.execute("SELECT user_id FROM events WHERE ts < ?", [split.split_ts])}
        after = {r[0] for r in ws.execute("SELECT user_id FROM events WHERE ts >= ?", [split.split_ts])}
        n = ws.execute("SELECT count(*) FROM events WHERE ts < ?", [split.split_ts]).fetchone()[0]
        return len(after & before) / max(len(after), 1), n / len(rows)

    q = time_split(ws, method="auto")  # ratings: the 80th percentile of the event times
    assert q.method == "quantile" and "percentile" in q.describe()
    share, train_share = known_share(q)
    assert share > 0.8 and train_share == pytest.approx(0.8, abs=0.05)
    r = time_split(ws, method="range")
    assert known_share(r)[0] < share  # 80 % of the range: later, fewer test users seen before
