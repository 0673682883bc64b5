"""Two processes on one workspace: registrations at the same time never corrupt the registry, and a
connection sees another's commits through ``PRAGMA data_version`` (what the window polls)."""
from __future__ import annotations

import multiprocessing as mp

from merch_app.data.workspace import change_marks, data_version, open_workspace
from merch_app.model import registry
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.interactions import load_interactions
from merch_app.model.item_vectors import item_text_vectors
from model_fixtures import planted_workspace


def _register(path: str, model_dir: str, start, name: str) -> None:
    """In a child process: wait for the start signal, then register the model saved in ``model_dir``."""
    db = open_workspace(path)
    model = HybridModel.load(model_dir)
    start.wait(60)
    registry.save_version(db, model, name=name, encoder_id="hashing-32", activate_mode="if_none")
    db.close()


def _small_model(db) -> HybridModel:
    ids, vectors = item_text_vectors(db, HashingEncoder(32))
    return HybridModel(HybridConfig(dim=8, epochs=1, refit_epochs=1, batch_size=1024)).fit(
        load_interactions(db, ids), vectors)


def test_two_processes_register_at_once_one_active_both_rows(ws_path, tmp_path):
    db = open_workspace(ws_path)
    planted_workspace(db)
    model_dir = tmp_path / "fitted"
    _small_model(db).save(model_dir)
    db.close()
    spawn = mp.get_context("spawn")  # no fork of a process that may hold Qt or torch threads
    start = spawn.Event()
    procs = [spawn.Process(target=_register, args=(str(ws_path), str(model_dir), start, name))
             for name in ("window one", "window two")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    db = open_workspace(ws_path)
    versions = registry.list_versions(db)
    assert sorted(v.name for v in versions) == ["window one", "window two"]
    assert sum(v.active for v in versions) == 1  # "if_none": only the first registration took the slot
    for v in versions:  # both folders complete and loadable
        assert registry.load_model(db, v.model_id).config.dim == 8
    assert not [f for f in registry.version_folder(db, versions[0]).parent.iterdir() if ".tmp-" in f.name]
    db.close()


def test_data_version_sees_only_other_connections(ws_path):
    mine, other = open_workspace(ws_path), open_workspace(ws_path)
    planted_workspace(mine)
    v0, marks0 = data_version(mine), change_marks(mine)
    with mine.conn:
        mine.execute("INSERT OR REPLACE INTO settings(key, value) VALUES ('x', '1')")
    assert data_version(mine) == v0  # its own commit does not count
    registry.save_version(other, _small_model(other), name="from the CLI", encoder_id="hashing-32")
    assert data_version(mine) != v0
    marks = change_marks(mine)
    assert marks["models"] != marks0["models"] and marks["data"] == marks0["data"]
    assert marks["models"][0] == 1  # one version
    mine.close()
    other.close()
