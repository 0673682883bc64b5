"""HybridModel on planted data: learns blocks, cold start by text, determinism, save/load, explain."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.hybrid_files import ModelLoadError
from merch_app.model.interactions import from_arrays

N_GROUPS, USERS_PER, ITEMS_PER, BUYS, TEXT_DIM = 3, 30, 20, 8, 32


def planted(seed: int = 0):
    """3 user groups × 3 item groups; each user buys 8 items of its group, 2 more are held out."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_GROUPS, TEXT_DIM))
    item_ids = [f"i{g}_{j}" for g in range(N_GROUPS) for j in range(ITEMS_PER)]
    text = np.repeat(centres, ITEMS_PER, 0) + 0.6 * rng.normal(size=(len(item_ids), TEXT_DIM))
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    users, items, ts, held = [], [], [], []
    for g in range(N_GROUPS):
        for k in range(USERS_PER):
            user = f"u{g}_{k}"
            chosen = rng.choice(ITEMS_PER, BUYS + 2, replace=False)
            for j in chosen[:BUYS]:
                users.append(user)
                items.append(f"i{g}_{j}")
                ts.append(19000.0 + rng.uniform(0, 100))
            held += [(user, f"i{g}_{j}") for j in chosen[BUYS:]]
    inter = from_arrays(users, items, ts, item_ids=item_ids)
    return inter, text, held, centres


FAST = dict(dim=16, epochs=25, batch_size=128, shared_negatives=64, lr=0.02, refit_epochs=1)


@pytest.fixture(scope="module")
def trained():
    inter, text, held, centres = planted()
    model = HybridModel(HybridConfig(**FAST)).fit(inter, text)
    return model, inter, text, held, centres


def test_planted_blocks_heldout_auc(trained):
    model, _, _, held, _ = trained
    rng = np.random.default_rng(1)
    pos, neg = [], []
    for user, item in held:
        g = user[1]
        other = f"i{(int(g) + rng.integers(1, N_GROUPS)) % N_GROUPS}_{rng.integers(ITEMS_PER)}"
        pos.append(model.score(user, [model.item_pos[item]])[0])
        neg.append(model.score(user, [model.item_pos[other]])[0])
    auc = (np.array(pos)[:, None] > np.array(neg)[None, :]).mean()
    assert auc > 0.9


def test_cold_start_item_ranks_high_for_its_group(trained):
    model, _, text, _, centres = trained
    model = copy.deepcopy(model)
    rng = np.random.default_rng(7)
    vec = centres[0] + 0.3 * rng.normal(size=TEXT_DIM)
    vec = (vec / np.linalg.norm(vec)).astype(np.float32)
    model.add_items(["new_a"], vec[None, :])
    j = model.item_pos["new_a"]
    assert np.allclose(model.arrays["Q"][j], 0)  # no behaviour: text path only
    ranks_a, ranks_b = [], []
    for k in range(USERS_PER):
        s_a = model.score(f"u0_{k}")
        s_b = model.score(f"u1_{k}")
        ranks_a.append((s_a > s_a[j]).sum())
        ranks_b.append((s_b > s_b[j]).sum())
    n_items = model.n_items
    assert np.mean(ranks_a) < 0.25 * n_items  # near the top for group-A users
    assert np.mean(ranks_a) < np.mean(ranks_b)


def test_same_seed_same_scores_and_different_seed_differs():
    inter, text, _, _ = planted()
    cfg = dict(FAST, epochs=4)
    a = HybridModel(HybridConfig(**cfg)).fit(inter, text)
    b = HybridModel(HybridConfig(**cfg)).fit(inter, text)
    c = HybridModel(HybridConfig(**dict(cfg, seed=7))).fit(inter, text)
    users = np.arange(10)
    np.testing.assert_array_equal(a.score_matrix(users), b.score_matrix(users))
    assert not np.allclose(a.score_matrix(users), c.score_matrix(users))


def test_save_load_identical(trained, tmp_path):
    model = trained[0]
    model.save(tmp_path / "m")
    loaded = HybridModel.load(tmp_path / "m")
    for user in ("u0_1", "u2_3"):
        np.testing.assert_array_equal(model.score(user), loaded.score(user))
    assert loaded.config == model.config
    ids, scores = loaded.recommend("u1_2", k=5)
    ids0, scores0 = model.recommend("u1_2", k=5)
    assert list(ids) == list(ids0) and np.allclose(scores, scores0)


def test_corrupted_arrays_raise_model_load_error(trained, tmp_path):
    trained[0].save(tmp_path / "m")
    path = tmp_path / "m" / "arrays.safetensors"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="arrays.safetensors"):
        HybridModel.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config"):
        HybridModel.load(tmp_path / "m")


def test_explain_parts_sum_to_score(trained):
    model = trained[0]
    for user, item in (("u0_0", "i0_3"), ("u1_4", "i2_7"), ("u2_9", "i2_1")):
        exp = model.explain(user, item, top=100)
        j = model.item_pos[item]
        assert abs(sum(exp["parts"].values()) - model.score(user, [j])[0]) < 1e-5
        assert abs(exp["score"] - model.score(user, [j])[0]) < 1e-5
        assert set(exp["parts"]) >= {"bilinear", "item_bias", "history", "trend"}
        assert abs(sum(f["contribution"] for f in exp["factors"]) - exp["parts"]["bilinear"]) < 1e-4
        history_items = {str(model.item_ids[i]) for i in model.state.user_items(model.user_pos[user])[0]}
        assert {b["item_id"] for b in exp["because"]} <= history_items


def test_history_part_only_for_bought_items(trained):
    model, inter = trained[0], trained[1]
    u = model.user_pos["u0_0"]
    bought = set(inter.item_idx[inter.user_idx == u].tolist())
    parts = model.score_parts("u0_0")
    hist = parts["history"]
    assert all(hist[j] == 0 for j in range(model.n_items) if j not in bought)
    assert any(hist[j] != 0 for j in bought)
    seen_ids, _ = model.recommend("u0_0", k=model.n_items, exclude_seen=True)
    assert not {model.item_pos[i] for i in seen_ids} & bought


def test_anonymous_and_text_only_users(trained):
    model, _, text, _, _ = trained
    assert np.all(model.score(None) == 0)
    assert np.all(model.score("nobody") == 0)
    s = model.score("nobody", user_text=text[:ITEMS_PER].mean(0))
    assert s.std() > 0
    assert s[:ITEMS_PER].mean() > s[ITEMS_PER:].mean()  # group-0 text -> group-0 items


def test_similar_items_share_group(trained):
    model = trained[0]
    ids, sims = model.similar_items("i1_0", k=5)
    assert "i1_0" not in ids
    assert np.all(np.diff(sims) <= 1e-6)
    assert sum(str(i).startswith("i1_") for i in ids) >= 4


def test_progress_and_cancel_during_fit():
    from merch_app.jobs import CancelToken, Cancelled

    inter, text, _, _ = planted()
    reports, token = [], CancelToken()

    def progress(p):
        reports.append(p)
        if p.data.get("epoch") == 2 and p.data.get("epoch_end"):
            token.cancel()

    with pytest.raises(Cancelled):
        HybridModel(HybridConfig(**FAST)).fit(inter, text, progress=progress, cancel=token)
    ends = [p for p in reports if p.data.get("epoch_end")]
    assert [p.data["epoch"] for p in ends] == [1, 2]
    assert all("loss" in p.data and p.data["phase"] == "train" for p in reports)
    assert "val_ndcg@10" in ends[0].data and ends[0].total >= ends[0].done


def test_explicit_ratings_beat_global_mean(synthetic_ratings):
    inter, text = synthetic_ratings
    model = HybridModel(HybridConfig(dim=8, epochs=60, batch_size=64, lr=0.03, early_stopping_patience=60,
                                     mode="auto")).fit(inter, text)
    assert model.explicit
    pred = model.predict_pairs(inter.user_idx, inter.item_idx)
    rmse = np.sqrt(np.mean((pred - inter.value) ** 2))
    base = np.sqrt(np.mean((inter.value.mean() - inter.value) ** 2))
    assert rmse < 0.8 * base
    assert set(model.score_parts("u1")) >= {"bilinear", "item_bias", "user_bias", "global"}
