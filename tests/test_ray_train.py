"""Training on Ray Train (gloo DDP on CPU, 2 workers, local Ray): same model, metrics, registry."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from merch_app.engines import engine_label, get_engine
from merch_app.jobs import CancelToken, Cancelled
from merch_app.model import registry
from merch_app.model.bundle import load_bundle
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.services.training import train
from model_fixtures import planted_workspace
from ray_support import start_ray

CFG = dict(dim=16, epochs=6, batch_size=256, shared_negatives=64, refit_epochs=1, early_stopping_patience=10)


@pytest.fixture(scope="module")
def ray_runtime():
    ray = start_ray()
    yield ray
    ray.shutdown()


@pytest.fixture
def shop(ws):
    planted_workspace(ws, n_users=120)
    return ws


def test_ray_training_matches_local_and_registers_like_any_model(ray_runtime, shop):
    local = train(shop, HybridConfig(**CFG), encoder=HashingEncoder(32))
    reports = []
    ray_v = train(shop, HybridConfig(**CFG), encoder=HashingEncoder(32), progress=reports.append, name="on ray",
                  engine=get_engine("ray", workers=2))
    # registry row: engine and workers; the model loads through the registry like a local one
    assert ray_v.engine == "ray" and ray_v.data_snapshot["workers"] == 2
    assert engine_label(ray_v) == "ray x2" and engine_label(local) == "local"
    assert ray_v.data_snapshot["ray_events_per_s"] > 0 and ray_v.data_snapshot["ray_pairs_trained"] > 0
    assert ray_v.encoder_id == local.encoder_id == "hashing-32"
    # same evaluation; metrics within noise of single-process training on the planted groups
    m_ray, m_loc = ray_v.metrics["model"], local.metrics["model"]
    pop = local.metrics["baselines"]["popularity"]["ndcg@10"]
    assert m_ray["ndcg@10"] > pop + 0.1
    assert abs(m_ray["ndcg@10"] - m_loc["ndcg@10"]) < 0.06, (m_ray, m_loc)
    assert abs(m_ray["precision@10"] - m_loc["precision@10"]) < 0.05
    # progress came from rank 0 through the channel: every epoch end, with the validation metric
    ends = [p for p in reports if p.data.get("phase") == "train" and p.data.get("epoch_end")]
    assert [p.data["epoch"] for p in ends if not p.data.get("refit")] == list(range(1, 7))
    assert all(p.data["workers"] == 2 and "val_ndcg@10" in p.data for p in ends if not p.data.get("refit"))
    assert {"encode", "train", "evaluate"} <= {p.data.get("phase") for p in reports}
    # the checkpoint is in the model folder format and the app loads it
    model = registry.load_model(shop, ray_v.model_id)
    assert isinstance(model, HybridModel) and model.n_items == registry.load_model(shop, local.model_id).n_items
    registry.activate(shop, ray_v.model_id)
    bundle = load_bundle(shop, encoder=HashingEncoder(32))
    assert bundle.version.model_id == ray_v.model_id and bundle.version.engine == "ray"
    user = str(model.user_ids[0])
    ids, scores = model.recommend(user, k=5)
    assert len(ids) == 5 and np.all(np.diff(scores) <= 1e-6)
    # the two workers kept identical parameters: one history, losses going down
    losses = [h["loss"] for h in model.history if not h.get("refit")]
    assert losses[-1] < losses[0]


def test_ray_training_cancel_keeps_the_registry(ray_runtime, shop):
    first = train(shop, HybridConfig(**CFG), encoder=HashingEncoder(32))
    token = CancelToken()

    def progress(p):
        if p.data.get("phase") == "train" and p.data.get("epoch", 0) >= 2:
            token.cancel()

    with pytest.raises(Cancelled):
        train(shop, HybridConfig(**dict(CFG, activate="always")), encoder=HashingEncoder(32), progress=progress,
              cancel=token, engine=get_engine("ray", workers=2))
    assert [v.model_id for v in registry.list_versions(shop)] == [first.model_id]
    assert registry.active_version(shop).model_id == first.model_id
    assert [p.name for p in registry.models_dir(shop).iterdir()] == [first.model_id]


def test_cli_train_on_ray_and_models_list(ray_runtime, ws_path):
    from merch_app.cli.main import cli
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    planted_workspace(db)
    db.close()
    r = CliRunner().invoke(cli, ["train", "-w", str(ws_path), "--encoder", "hashing", "--epochs", "2", "--dim", "16",
                                 "--engine", "ray", "--workers", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["engine"] == "ray" and out["data_snapshot"]["workers"] == 2 and out["active"]
    listing = CliRunner().invoke(cli, ["models", "list", "-w", str(ws_path)])
    assert listing.exit_code == 0 and "ray x2" in listing.output


def test_ray_fit_on_ratings_matches_local(ray_runtime, synthetic_ratings):
    """Explicit feedback: the sharded MSE epochs fit ratings as well as local training."""
    from merch_app.engines.ray_train import fit_on_ray

    inter, text = synthetic_ratings
    cfg = HybridConfig(dim=8, epochs=15, batch_size=128, lr=0.05, early_stopping_patience=15)
    stats: dict = {}
    on_ray = fit_on_ray(cfg, inter, text, workers=2, stats=stats)
    local = HybridModel(cfg).fit(inter, text)
    assert on_ray.explicit and stats["workers"] == 2 and stats["pairs_trained"] > 0

    def rmse(m):
        return float(np.sqrt(np.mean((m.predict_pairs(inter.user_idx, inter.item_idx) - inter.value) ** 2)))

    base = float(np.sqrt(np.mean((inter.value.mean() - inter.value) ** 2)))
    assert rmse(on_ray) < 0.8 * base
    assert abs(rmse(on_ray) - rmse(local)) < 0.1 * base


def test_ivfpq_index_built_on_ray_is_shipped_to_the_app(ray_runtime, shop):
    """IVF-PQ trained and filled in shards on Ray: as good as the app's own build, loaded by the app."""
    from merch_app.engines.ray_index import build_index_on_ray, ship_index
    from merch_app.model.vector_index import VectorIndex

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 32))
    x = (centres[rng.integers(0, 50, 20000)] + 0.3 * rng.normal(size=(20000, 32))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = x[rng.choice(len(x), 100, replace=False)]
    _, truth = VectorIndex.from_vectors(x, kind="flat").search(queries, 10)
    reports = []
    on_ray = build_index_on_ray(x, "ivfpq", shard_rows=6000, progress=reports.append)
    local = VectorIndex.from_vectors(x, kind="ivfpq")
    assert on_ray.kind == "ivfpq" and on_ray.ntotal == len(x) and reports[-1].done == len(x)

    def recall(index):
        _, got = index.search(queries, 10)
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])

    assert recall(on_ray) >= recall(local) - 0.05
    np.testing.assert_allclose(on_ray._reconstruct(np.array([0, 19999])), local._reconstruct(np.array([0, 19999])),
                               atol=0.2)  # same row numbering (both are PQ approximations of x)
    # shipped into a model version's folder, the app's bundle uses it
    v = train(shop, HybridConfig(**CFG), encoder=HashingEncoder(32))
    model = registry.load_model(shop, v.model_id)
    ship_index(shop, v.model_id, build_index_on_ray(model.arrays["T_i"], "ivfpq"))
    bundle = load_bundle(shop, v.model_id, encoder=HashingEncoder(32))
    assert bundle.index.kind == "ivfpq" and bundle.index.ntotal == model.n_items
    with pytest.raises(ValueError, match="only IVF"):
        build_index_on_ray(x, "hnsw")
