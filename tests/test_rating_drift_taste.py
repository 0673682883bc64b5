"""The closed-form baseline parts of explicit mode beyond the damped biases (issue 22): the user-bias
drift b_u(t) = b_u + d_u·(t − t̄_u) and the user taste w_uᵀt_i in text space; their known answers, their
choice on the later training ratings, models that predict better with them, explain adding up."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.interactions import from_arrays
from merch_app.model.rating_bias import YEAR_DAYS, choose_drift, damped_biases, taste_vectors

CFG = dict(dim=8, epochs=30, batch_size=256, lr=0.02, early_stopping_patience=5, mode="explicit", seed=3)


def test_drift_known_answer():
    # one user rates 2, 3, 4 one year apart; items damped to 0, user bias undamped, slope undamped:
    # μ = 3, t̄ = 1 year, d = Σ(r − μ)·dt / Σdt² = (1 + 1) / 2 = 1 point per year, b_u = 0
    days = np.array([0.0, 1.0, 2.0]) * YEAR_DAYS
    b = damped_biases(np.zeros(3, int), np.array([0, 1, 2]), np.array([2.0, 3.0, 4.0]), 1, 3,
                      shrink_user=0.0, shrink_item=1e12, days=days, drift_shrink=0.0)
    assert b.mu == 3.0
    assert np.allclose(b.drift, [1.0], atol=1e-6) and np.allclose(b.b_user, [0.0], atol=1e-6)
    assert np.allclose(b.t_mean, [YEAR_DAYS])
    assert np.allclose(b.user_bias_at(2 * YEAR_DAYS), [1.0], atol=1e-6) and b.last_day == 2 * YEAR_DAYS
    assert np.allclose(b.user_bias_at(), [1.0], atol=1e-6)  # default: as of the last rating
    assert np.allclose(b.predict(np.array([0, 0]), np.array([0, 2]), days=days[[0, 2]]), [2.0, 4.0], atol=1e-5)
    # λ_drift = 2 year²: the slope is halved (Σdt² = 2)
    b2 = damped_biases(np.zeros(3, int), np.array([0, 1, 2]), np.array([2.0, 3.0, 4.0]), 1, 3,
                       shrink_user=0.0, shrink_item=1e12, days=days, drift_shrink=2.0)
    assert np.allclose(b2.drift, [0.5], atol=1e-6)


def test_without_times_the_plain_damped_biases():
    rng = np.random.default_rng(0)
    u, i, r = rng.integers(0, 5, 50), rng.integers(0, 7, 50), rng.integers(1, 6, 50).astype(float)
    plain = damped_biases(u, i, r, 5, 7)
    assert len(plain.drift) == 0
    assert np.array_equal(plain.user_bias_at(123.0), plain.b_user)
    again = damped_biases(u, i, r, 5, 7, days=rng.uniform(0, 900, 50), drift_shrink=None)
    assert np.array_equal(again.b_user, plain.b_user) and np.array_equal(again.b_item, plain.b_item)


def drifting(seed: int = 5, n_users: int = 60, n_items: int = 40, per_user: int = 40, sd_drift: float = 0.6):
    """Ratings over three years = 3.2 + b_u + d_u·years + b_i + noise; the last 20 % of times are the test."""
    rng = np.random.default_rng(seed)
    b_u, b_i = rng.normal(0, 0.4, n_users), rng.normal(0, 0.4, n_items)
    d_u = rng.normal(0, sd_drift, n_users)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False):
            t = rng.uniform(0, 3 * YEAR_DAYS)
            r = 3.2 + b_u[u] + d_u[u] * (t / YEAR_DAYS - 1.5) + b_i[i] + rng.normal(0, 0.3)
            rows.append((u, i, float(np.clip(np.round(r * 2) / 2, 0.5, 5.0)), 15000.0 + t))
    rows = np.array(rows)
    test = rows[:, 3] >= np.quantile(rows[:, 3], 0.8)
    item_ids = [f"i{i}" for i in range(n_items)]
    text = rng.normal(size=(n_items, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    r = rows[~test]
    train = from_arrays([f"u{int(a)}" for a in r[:, 0]], [f"i{int(b)}" for b in r[:, 1]], r[:, 3],
                        item_ids=item_ids, event_types=["rating"] * len(r), values=r[:, 2])
    return train, rows[test], text


def test_choose_drift_picks_a_drift_where_users_drift():
    train, _, _ = drifting()
    r = train
    order = np.argsort(r.ts, kind="stable")
    fit, val = order[: int(0.85 * len(order))], order[int(0.85 * len(order)):]
    chosen = choose_drift(r.user_idx, r.item_idx, r.value, r.ts, r.n_users, r.n_items, fit, val)
    assert chosen["shrink"] is not None
    assert chosen["val_mae"][f"{chosen['shrink']:g}"] < chosen["val_mae"]["off"] - 0.05


def _mae(model, test):
    users = np.array([model.user_pos[f"u{int(u)}"] for u in test[:, 0]])
    items = np.array([model.item_pos[f"i{int(i)}"] for i in test[:, 1]])
    return float(np.mean(np.abs(model.predict_ratings(users, items) - test[:, 2]))), users, items


@pytest.fixture(scope="module")
def pair():
    train, test, text = drifting()
    with_drift = HybridModel(HybridConfig(**CFG)).fit(train, text)
    without = HybridModel(HybridConfig(**CFG, rating_drift=False)).fit(train, text)
    return with_drift, without, test


def test_model_with_drift_predicts_later_ratings_better(pair):
    with_drift, without, test = pair
    assert with_drift.config.rating_drift and with_drift.config.rating_drift_shrink is not None  # recorded
    assert without.config.rating_drift_shrink is None
    mae_d, _, _ = _mae(with_drift, test)
    mae_0, _, _ = _mae(without, test)
    assert mae_d < mae_0 - 0.1, (mae_d, mae_0)


def test_drift_model_explains_saves_and_loads(pair, tmp_path):
    model, _, test = pair
    _, users, items = _mae(model, test)
    parts = model.explain(model.user_ids[users[0]], model.item_ids[items[0]])["parts"]
    assert np.isclose(sum(parts.values()), model.predict_ratings(users[:1], items[:1])[0], atol=1e-4)
    model.save(tmp_path / "m")
    back = HybridModel.load(tmp_path / "m")
    assert back.config.rating_drift_shrink == model.config.rating_drift_shrink
    assert np.allclose(back.predict_ratings(users, items), model.predict_ratings(users, items), atol=1e-6)


def test_taste_known_answer():
    # one user, items with text (1, 0) rated +1 above the biases and (0, 1) rated -1; λ = 1:
    # XᵀX = diag(2, 2), Xᵀe = (2, -2) -> w = (2/3, -2/3)
    text = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)
    w = taste_vectors(np.zeros(4, int), np.arange(4), np.array([1.0, 1.0, -1.0, -1.0]), text, 2, 1.0)
    assert np.allclose(w[0], [2 / 3, -2 / 3], atol=1e-6) and np.all(w[1] == 0)  # user 1: no ratings
    # dual form (fewer ratings than dimensions) gives the same ridge solution
    wide = np.hstack([text, np.zeros((4, 6), np.float32)])
    w2 = taste_vectors(np.zeros(4, int), np.arange(4), np.array([1.0, 1.0, -1.0, -1.0]), wide, 1, 1.0)
    assert np.allclose(w2[0, :2], [2 / 3, -2 / 3], atol=1e-6) and np.allclose(w2[0, 2:], 0)


def tasteful(seed: int = 9, n_users: int = 60, n_items: int = 50, per_user: int = 40):
    """Ratings = 3.3 + b_u + b_i + 0.9·(the user's liked direction · the item's text) + noise; random 20 % test."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n_items, 6)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    likes = rng.normal(size=(n_users, 6))
    likes /= np.linalg.norm(likes, axis=1, keepdims=True)
    b_u, b_i = rng.normal(0, 0.3, n_users), rng.normal(0, 0.3, n_items)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False):
            r = 3.3 + b_u[u] + b_i[i] + 1.5 * likes[u] @ text[i] + rng.normal(0, 0.2)
            rows.append((u, i, float(np.clip(np.round(r * 2) / 2, 0.5, 5.0)), 15000.0 + rng.uniform(0, 60)))
    rows = np.array(rows)
    test = rng.random(len(rows)) < 0.2
    r = rows[~test]
    train = from_arrays([f"u{int(a)}" for a in r[:, 0]], [f"i{int(b)}" for b in r[:, 1]], r[:, 3],
                        item_ids=[f"i{i}" for i in range(n_items)], event_types=["rating"] * len(r), values=r[:, 2])
    return train, rows[test], text


def test_taste_part_lowers_the_error_and_adds_up(tmp_path):
    train, test, text = tasteful()
    cfg = dict(CFG, epochs=3)  # the residual factors barely train: the gain must come from the taste part
    with_taste = HybridModel(HybridConfig(**cfg, rating_drift=False)).fit(train, text)
    without = HybridModel(HybridConfig(**cfg, rating_drift=False, rating_taste=False)).fit(train, text)
    assert with_taste.config.rating_taste_shrink is not None and "base_taste" in with_taste.arrays
    assert "base_taste" not in without.arrays
    mae_t, users, items = _mae(with_taste, test)
    mae_0, _, _ = _mae(without, test)
    assert mae_t < mae_0 - 0.1, (mae_t, mae_0)
    ex = with_taste.explain(with_taste.user_ids[users[0]], with_taste.item_ids[items[0]])
    assert ex["parts"]["user_taste"] != 0.0
    assert np.isclose(sum(ex["parts"].values()), with_taste.predict_ratings(users[:1], items[:1])[0], atol=1e-4)
    # the score matrix of a user holds the same predicted ratings
    row = with_taste.score_matrix(users[:1])[0]
    assert np.isclose(row[items[0]], with_taste.predict_ratings(users[:1], items[:1])[0], atol=1e-4)
    with_taste.save(tmp_path / "m")
    back = HybridModel.load(tmp_path / "m")
    assert np.allclose(back.predict_ratings(users, items), with_taste.predict_ratings(users, items), atol=1e-6)
    back.continue_training(train, epochs=2)  # more epochs learn the residual of the same baseline, taste included
    assert "base_taste" in back.arrays and _mae(back, test)[0] < mae_t + 0.02


def test_cli_train_names_the_chosen_baseline_parts(ws, ws_path):
    train, test, _ = drifting()
    rows = [{"user_id": str(train.user_ids[u]), "item_id": str(train.item_ids[i]), "event_type": "rating",
             "value": float(v), "ts": datetime.fromtimestamp(t * 86400.0, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for u, i, v, t in zip(train.user_idx, train.item_idx, train.value, train.ts)]
    with ws.conn:
        ws.insert_rows("items", [{"item_id": str(i), "title": f"film {i}"} for i in train.item_ids])
        ws.insert_rows("events", rows)
    res = CliRunner().invoke(cli, ["train", "-w", str(ws_path), "--encoder", "hashing", "--epochs", "2", "--dim", "8"])
    assert res.exit_code == 0, res.output
    assert "rating baseline parts: user-bias drift λ" in res.output, res.output
    res = CliRunner().invoke(cli, ["train", "-w", str(ws_path), "--encoder", "hashing", "--epochs", "2", "--dim", "8",
                                   "--json"])
    parts = json.loads(res.stdout)["metrics"]["rating_parts"]
    assert parts["drift_shrink"] is not None and set(parts) == {"drift_shrink", "taste_shrink"}
