"""Model registry: versions, activation, deletion, damaged files, bundles, offline evaluate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from merch_app.evaluation.offline import evaluate
from merch_app.model import registry
from merch_app.model.bundle import load_bundle
from merch_app.model.hybrid_files import ModelLoadError
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.hybrid import HybridConfig
from merch_app.services.training import train
from model_fixtures import planted_workspace

CFG = dict(dim=16, epochs=4, batch_size=256, shared_negatives=64, refit_epochs=1)


@pytest.fixture
def two_versions(ws):
    planted_workspace(ws)
    a = train(ws, HybridConfig(**CFG), encoder=HashingEncoder(32), name="first")
    b = train(ws, HybridConfig(**dict(CFG, seed=3)), encoder=HashingEncoder(32))
    return ws, a, b


def test_list_get_rename_activate_delete(two_versions):
    db, a, b = two_versions
    assert [v.model_id for v in registry.list_versions(db)] == [b.model_id, a.model_id]
    assert registry.get_version(db, a.model_id).name == "first"
    assert registry.rename(db, b.model_id, "  second ").name == "second"
    with pytest.raises(registry.RegistryError):
        registry.rename(db, b.model_id, " ")
    registry.activate(db, b.model_id)
    assert registry.active_version(db).model_id == b.model_id
    assert not registry.get_version(db, a.model_id).active
    assert (registry.version_folder(db, registry.get_version(db, b.model_id)) / "index.faiss").exists()
    folder = registry.version_folder(db, registry.get_version(db, b.model_id))
    registry.delete(db, b.model_id)
    assert not folder.exists() and registry.active_version(db) is None
    assert [v.model_id for v in registry.list_versions(db)] == [a.model_id]
    with pytest.raises(registry.RegistryError, match="no model version"):
        registry.get_version(db, b.model_id)
    assert sorted(p.name for p in registry.models_dir(db).iterdir()) == [a.model_id]


def test_damaged_files_raise_model_load_error(two_versions):
    db, a, _ = two_versions
    folder = registry.version_folder(db, a)
    arrays = folder / "arrays.safetensors"
    arrays.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="arrays.safetensors"):
        registry.load_model(db, a.model_id)
    with pytest.raises(ModelLoadError):
        load_bundle(db, a.model_id, encoder=HashingEncoder(32))
    (folder / "ids.json").unlink()
    with pytest.raises(ModelLoadError, match="ids.json"):
        registry.load_model(db, a.model_id)


def test_bundle_matches_model_and_adds_new_catalogue_items(two_versions):
    db, a, _ = two_versions
    bundle = load_bundle(db, encoder=HashingEncoder(32))
    assert bundle.version.model_id == a.model_id and bundle.model is not None
    assert list(bundle.item_ids) == list(bundle.model.item_ids)
    assert bundle.item_vectors.shape == (len(bundle.item_ids), 32)
    assert bundle.index.ntotal == len(bundle.item_ids)
    assert 0.0 <= bundle.popularity.min() and bundle.popularity.max() == pytest.approx(1.0)
    assert len(bundle.model.score("u000")) == len(bundle.item_ids)
    with db.conn:
        db.insert_rows("items", [{"item_id": "zz1", "title": "blue ceramic mug model 77", "category": "mug"}])
    bundle = load_bundle(db, encoder=HashingEncoder(32))
    assert bundle.item_ids[-1] == "zz1" and bundle.index.ntotal == len(bundle.item_ids)
    assert bundle.model.score("u001")[bundle.item_pos["zz1"]] != 0
    with pytest.raises(ModelLoadError, match="encoder"):
        load_bundle(db, encoder=HashingEncoder(16))


def test_text_only_bundle_without_models(ws):
    planted_workspace(ws)
    bundle = load_bundle(ws, encoder=HashingEncoder(32))
    assert bundle.model is None and bundle.version is None
    assert len(bundle.item_ids) == 45 and bundle.index.ntotal == 45


def test_offline_evaluate_shape_and_no_leak(two_versions):
    db, a, _ = two_versions
    result = evaluate(db)
    assert result["model_id"] == a.model_id and result["split_date"] == a.data_snapshot["split_ts"]
    assert set(result["baselines"]) == {"popularity", "user_history", "text_only", "cf_only"}
    for key in ("precision@10", "recall@10", "ndcg@10", "map@10", "hit_rate@10", "coverage", "gini"):
        assert key in result["model"]
    # evaluating the saved model (history refreshed to now) reproduces the training-time metrics
    assert result["model"]["ndcg@10"] == pytest.approx(a.metrics["model"]["ndcg@10"], abs=1e-9)
    assert result["n_test_users"] == a.metrics["n_test_users"]
    early = evaluate(db, k=5, split_date="2024-02-01")
    assert early["notes"] and "precision@5" in early["model"]
    assert np.isfinite(early["model"]["ndcg@5"])


def test_leftovers_of_killed_saves_are_removed_when_no_writer_holds_the_lock(two_versions):
    """Writers of model folders hold the write lock while the folder exists: without a lock holder, any age goes."""
    import sqlite3

    from merch_app.data.workspace import models_dir, remove_leftover_folders, sweep_leftovers, workspace_path

    db = two_versions[0]
    root = models_dir(db)
    for name, config in (("m1.tmp-dead", False), ("m2.scrub-dead", False), ("m3-unregistered", True),
                         ("notes", False), ("m4.deleted-ab", True)):
        folder = root / name
        folder.mkdir()
        if config:
            (folder / "config.json").write_text("{}")
    other = sqlite3.connect(workspace_path(db), timeout=0)
    other.execute("BEGIN IMMEDIATE")  # a live writer (a save in progress) holds the lock
    assert sweep_leftovers(db)["folders"] == []
    assert (root / "m1.tmp-dead").is_dir()
    other.rollback()
    other.close()
    assert sweep_leftovers(db)["folders"] == ["m1.tmp-dead", "m2.scrub-dead", "m3-unregistered"]
    assert (root / "notes").exists() and (root / "m4.deleted-ab").exists()  # not a model folder / a delete's
    for v in registry.list_versions(db):  # registered versions untouched
        assert registry.version_folder(db, v).is_dir()
    registry.load_model(db, registry.list_versions(db)[0].model_id)
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        assert remove_leftover_folders(db) == []


def test_ranking_bundle_serves_without_the_id_embeddings(two_versions):
    db, a, _ = two_versions
    full = registry.load_model(db, a.model_id)
    served = load_bundle(db, a.model_id, encoder=HashingEncoder(32)).model
    assert not {"P", "Q", "T_u"} & set(served.arrays)
    for user in ("u000", "u007"):
        np.testing.assert_array_equal(served.score(user), full.score(user))
        assert served.explain(user, "a01")["score"] == pytest.approx(full.explain(user, "a01")["score"])
    np.testing.assert_allclose(served.U, full.U)  # the user map still works
    with pytest.raises(RuntimeError, match="serving copy"):
        served.save(Path("/nonexistent"))
    with pytest.raises(RuntimeError, match="serving copy"):
        served.add_items(["new"], np.zeros((1, 32), np.float32))


@pytest.mark.parametrize("tampered", ["../victim", "../../victim", "absolute", "symlink", "sub/dir", ""])
def test_a_tampered_models_path_is_refused_and_nothing_outside_is_touched(two_versions, tmp_path, tampered):
    """``models.path`` comes from the workspace file: a path leading out of the model folder is refused."""
    import os

    from click.testing import CliRunner

    from merch_app.cli.main import cli
    from merch_app.data.workspace import models_dir, workspace_path
    from merch_app.services.forget import scrub_user_from_models

    db, a, b = two_versions
    root = models_dir(db)
    victim = root.parent / "victim" if tampered != "../../victim" else root.parent.parent / "victim"
    if tampered == "absolute":
        victim = tmp_path / "elsewhere" / "victim"
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    path = {"absolute": str(victim), "symlink": "link"}.get(tampered, tampered)
    if tampered == "symlink":
        os.symlink(victim, root / "link")
    with db.conn:
        db.execute("UPDATE models SET path = ? WHERE model_id = ?", [path or None, a.model_id])
        if not path:  # no path: the model id names the folder, and it is the bad part
            db.execute("UPDATE models SET model_id = '../victim' WHERE model_id = ?", [a.model_id])
    bad_id = "../victim" if not path else a.model_id
    version = registry.get_version(db, bad_id)
    with pytest.raises(registry.RegistryError, match="not inside this workspace's model folder"):
        registry.version_folder(db, version)
    for call in (registry.delete, registry.load_model, registry.activate):
        with pytest.raises(registry.RegistryError, match="refused"):
            call(db, bad_id)
    assert scrub_user_from_models(db, "u001") == 1  # the good version only; nothing written outside
    res = CliRunner().invoke(cli, ["models", "delete", bad_id, "-w", str(workspace_path(db))])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "not inside this workspace's model folder" in res.output and "nothing was read or deleted" in res.output
    assert (victim / "precious.txt").read_text() == "keep me"
    assert [v.model_id for v in registry.list_versions(db)] == [b.model_id, bad_id]  # the row is kept too
    # its own folder is now unowned: the CLI's opening for writing removed it (a leftover), nothing else
    assert not (root / a.model_id).exists()
    assert (victim / "precious.txt").read_text() == "keep me"
    assert registry.load_model(db, b.model_id).n_items == 45  # the good version still works
