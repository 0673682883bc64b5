"""The training job on a small planted workspace: register, progress, cancel, update."""
from __future__ import annotations

import pytest

from merch_app.jobs import CancelToken, Cancelled
from merch_app.model import registry
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.hybrid import HybridConfig
from merch_app.services.training import TrainingError, train, update_with_new_events
from model_fixtures import planted_workspace

CFG = dict(dim=16, epochs=6, batch_size=256, shared_negatives=64, refit_epochs=1)


@pytest.fixture
def shop(ws):
    planted_workspace(ws)
    return ws


def test_train_registers_an_active_version_with_metrics(shop):
    reports = []
    v = train(shop, HybridConfig(**CFG), progress=reports.append, encoder=HashingEncoder(32))
    assert v.active and registry.active_version(shop).model_id == v.model_id
    m = v.metrics
    assert set(m["baselines"]) == {"popularity", "user_history", "text_only", "cf_only"}
    assert m["n_test_users"] > 20 and m["split_date"] == v.data_snapshot["split_ts"]
    for key in ("precision@10", "recall@10", "ndcg@10", "map@10", "hit_rate@10", "coverage", "gini"):
        assert 0.0 <= m["model"][key] <= 1.0
    # planted groups: the model must do far better than popularity
    assert m["model"]["ndcg@10"] > m["baselines"]["popularity"]["ndcg@10"] + 0.1
    assert "cold_start" in m and v.encoder_id == "hashing-32"
    phases = {p.data.get("phase") for p in reports}
    assert {"encode", "train", "evaluate"} <= phases
    ends = [p for p in reports if p.data.get("epoch_end") and not p.data.get("refit")]
    assert ends and all("val_ndcg@10" in p.data and "loss" in p.data for p in ends)
    assert all(p.total and p.done <= p.total for p in reports if p.data.get("phase") == "train")
    folder = registry.version_folder(shop, v)
    assert {"config.json", "ids.json", "arrays.safetensors", "index.faiss"} <= {p.name for p in folder.iterdir()}


def test_cancel_keeps_previous_model_and_leaves_no_temp_folder(shop):
    first = train(shop, HybridConfig(**CFG), encoder=HashingEncoder(32))
    token = CancelToken()

    def progress(p):
        if p.data.get("phase") == "train" and p.data.get("batch") == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        train(shop, HybridConfig(**dict(CFG, activate="always")), progress=progress, cancel=token,
              encoder=HashingEncoder(32))
    assert [v.model_id for v in registry.list_versions(shop)] == [first.model_id]
    assert registry.active_version(shop).model_id == first.model_id
    assert [p.name for p in registry.models_dir(shop).iterdir()] == [first.model_id]


def test_activate_modes(shop):
    a = train(shop, HybridConfig(**CFG), encoder=HashingEncoder(32))
    b = train(shop, HybridConfig(**CFG), encoder=HashingEncoder(32))
    assert registry.active_version(shop).model_id == a.model_id and not b.active
    c = train(shop, HybridConfig(**dict(CFG, activate="always")), encoder=HashingEncoder(32))
    assert registry.active_version(shop).model_id == c.model_id


def test_no_events_is_a_clear_error(ws):
    with ws.conn:
        ws.insert_rows("items", [{"item_id": "x", "title": "thing"}])
    from merch_app.evaluation.split import SplitError

    with pytest.raises((TrainingError, SplitError), match="no behaviour events"):
        train(ws, HybridConfig(**CFG), encoder=HashingEncoder(32))
    assert registry.list_versions(ws) == []


def test_update_with_new_events_adds_items_and_users(shop):
    v = train(shop, HybridConfig(**CFG), encoder=HashingEncoder(32))
    with shop.conn:
        shop.insert_rows("items", [{"item_id": "a99", "title": "red candle wax model 99", "category": "wax"}])
        shop.insert_rows("events", [
            {"user_id": "newbie", "item_id": "a99", "event_type": "purchase", "ts": "2024-06-01T10:00:00Z"},
            {"user_id": "u000", "item_id": "a99", "event_type": "purchase", "ts": "2024-06-02T10:00:00Z"},
        ])
    new = update_with_new_events(shop, epochs=1)
    assert new.active and new.data_snapshot["parent"] == v.model_id and new.data_snapshot["new_items"] == 1
    model = registry.load_model(shop, new.model_id)
    assert "a99" in model.item_pos and "newbie" in model.user_pos
    assert model.score("newbie")[model.item_pos["a99"]] != 0
    assert len(registry.list_versions(shop)) == 2


def test_users_first_seen_after_the_split_get_their_history_text_vector(shop):
    import numpy as np

    from merch_app.model.interactions import load_interactions
    from merch_app.model.history_features import HistoryState, history_text_vectors

    with shop.conn:  # a shopper who only appears after the training cut-off
        shop.conn.executemany("INSERT INTO events (user_id, item_id, event_type, ts) VALUES (?, ?, 'purchase', ?)",
                              [("late", "a01", "2024-06-01T00:00:00Z"), ("late", "a02", "2024-06-02T00:00:00Z")])
    v = train(shop, HybridConfig(**CFG), encoder=HashingEncoder(32))
    model = registry.load_model(shop, v.model_id)
    assert "late" in model.user_pos
    everything = load_interactions(shop, model.item_ids, user_ids=[str(u) for u in model.user_ids])
    now = float(everything.ts.max()) + 1e-6
    expect = history_text_vectors(HistoryState.build(everything, now, model.config.user_text_half_life_days),
                                  model.arrays["T_i"])[model.user_pos["late"]]
    np.testing.assert_allclose(model.arrays["T_u"][model.user_pos["late"]], expect, atol=1e-6)
    assert model.recommend("late", 5)[0].size == 5


def test_user_vectors_are_parked_in_a_nameless_file_and_mapped_back_intact(shop):
    import numpy as np

    from merch_app.data.workspace import workspace_path
    from merch_app.services.training import _parked

    folder = workspace_path(shop).parent
    before = set(folder.iterdir())
    vectors = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float16)
    back = _parked(vectors.copy(), shop)
    assert set(folder.iterdir()) == before  # nothing named is left beside the workspace
    got = back()
    assert isinstance(got, np.memmap) and got.dtype == np.float16 and np.array_equal(got, vectors)
    got[0] = 0  # a private mapping: the parked copy is unchanged
    assert np.array_equal(back()[0], vectors[0])
    assert _parked(None, shop)() is None
