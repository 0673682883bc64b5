"""Damaged files on disk: workspaces (newer schema, read-only, full disk, corrupt) and model/index files.

Every case ends in a clear message (no traceback), and nothing that was there
before is lost.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data import workspace as workspace_mod
from merch_app.data.importer import ImportFailed, import_file
from merch_app.data.workspace import WorkspaceError, open_workspace

DATA = Path(__file__).parent / "data" / "import"


def small_events(path: Path, n: int = 200, prefix: str = "u") -> Path:
    path.write_text("user_id,item_id,event_type,ts\n" + "".join(
        f"{prefix}{i % 9},I{i % 17},view,2011-03-{1 + i % 28:02d} 10:00:00\n" for i in range(n)), encoding="utf-8")
    return path


def table_rows(path: Path) -> dict:
    """All rows of the data tables, read through a read-only connection (no side effects)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in ("items", "events", "rejected_rows", "mappings", "settings", "models")}
    finally:
        conn.close()


@pytest.fixture
def filled(ws_path, tmp_path) -> Path:
    db = open_workspace(ws_path)
    import_file(db, DATA / "transactions_small.csv")
    import_file(db, small_events(tmp_path / "ev.csv"))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return ws_path


# --------------------------------------------------------------- workspaces
def test_newer_schema_version_is_refused_and_left_alone(filled, tmp_path):
    conn = sqlite3.connect(filled)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = table_rows(filled)
    with pytest.raises(WorkspaceError, match=r"schema version 99 is newer than this merch_app supports"):
        open_workspace(filled)
    with pytest.raises(WorkspaceError, match=r"newer than this merch_app"):
        open_workspace(filled, readonly=True)
    res = CliRunner().invoke(cli, ["import", str(small_events(tmp_path / "more.csv", prefix="w")), "-w", str(filled)])
    assert res.exit_code == 1 and "schema version 99 is newer" in res.output and "Traceback" not in res.output
    assert table_rows(filled) == before
    assert sqlite3.connect(filled).execute("PRAGMA user_version").fetchone()[0] == 99


def test_readonly_workspace_reads_and_refuses_writes_clearly(filled, tmp_path):
    before = table_rows(filled)
    db = open_workspace(filled, readonly=True)
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == len(before["events"])
    with pytest.raises(ImportFailed) as err:
        import_file(db, small_events(tmp_path / "more.csv", prefix="w"))
    assert str(err.value).startswith(f"{tmp_path / 'more.csv'}: import: the workspace {filled} is read-only "
                                     "(it was opened read-only): nothing was changed")
    db.close()
    assert table_rows(filled) == before


def test_workspace_file_that_cannot_be_written(filled, tmp_path, monkeypatch):
    """chmod 0444 as a normal user (tests run as root, which chmod does not stop): every connection read-only."""
    real_connect = sqlite3.connect

    def readonly_connect(path, *args, **kwargs):
        if kwargs.pop("uri", False):
            return real_connect(path, *args, uri=True, **kwargs)
        return real_connect(f"file:{path}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(workspace_mod.sqlite3, "connect", readonly_connect)
    before = table_rows(filled)
    res = CliRunner().invoke(cli, ["import", str(small_events(tmp_path / "more.csv", prefix="w")),
                                   "-w", str(filled), "--json"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"the workspace {filled} is read-only (" in res.stderr and "nothing was changed" in res.stderr
    res = CliRunner().invoke(cli, ["forget", "u1", "-w", str(filled), "--yes"])
    assert res.exit_code == 1 and "the workspace is read-only" in res.output
    monkeypatch.undo()
    assert table_rows(filled) == before


def test_new_workspace_in_a_folder_that_cannot_be_created(tmp_path, monkeypatch):
    def no_mkdir(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", no_mkdir)
    with pytest.raises(WorkspaceError, match=r"cannot open the workspace \(\[Errno 13\] Permission denied"):
        open_workspace(tmp_path / "locked" / "ws.sqlite")


def test_full_disk_during_import_changes_nothing(filled, tmp_path):
    db = open_workspace(filled)
    before = table_rows(filled)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + 8}")  # the "disk" has 32 KiB left
    big = small_events(tmp_path / "big.csv", n=30_000, prefix="b")
    with pytest.raises(ImportFailed) as err:
        import_file(db, big)
    assert "the disk is full (database or disk is full): nothing was changed; free space and try again" in str(
        err.value) and str(err.value).startswith(str(big))
    assert table_rows(filled) == before
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    status, message = db.execute("SELECT status, message FROM imports ORDER BY id DESC LIMIT 1").fetchone()
    assert status == "failed" and "disk is full" in message
    db.execute("PRAGMA max_page_count = 1073741823")  # space freed: the same import now works
    assert import_file(db, big).rows_accepted == 30_000
    db.close()


def test_full_disk_message_through_the_cli(filled, tmp_path, monkeypatch):
    """The CLI turns a storage error anywhere in a command into one line (no traceback)."""
    from merch_app.cli import import_cmd

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(import_cmd, "import_one", full)
    res = CliRunner().invoke(cli, ["import", str(small_events(tmp_path / "x.csv")), "-w", str(filled)])
    assert res.exit_code == 1 and "Error: workspace: the disk is full" in res.output and "Traceback" not in res.output


def test_corrupt_workspace_files(filled, tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(WorkspaceError, match=r"garbage\.sqlite: not a merch_app workspace"):
        open_workspace(garbage)
    res = CliRunner().invoke(cli, ["users", "-w", str(garbage)])
    assert res.exit_code == 1 and "not a merch_app workspace" in res.output
    assert garbage.read_bytes() == bytes(range(256)) * 64

    data = bytearray(filled.read_bytes())
    n = len(data)
    data[n // 3: 2 * n // 3] = b"\x5a" * (2 * n // 3 - n // 3)  # a damaged middle third
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(bytes(data))
    res = CliRunner().invoke(cli, ["users", "-w", str(damaged)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "the workspace file is damaged" in res.output and ".recover" in res.output


# ------------------------------------------------------------- model files
@pytest.fixture(scope="module")
def model_template(tmp_path_factory):
    """A workspace with a shop and two model versions: ``old`` (inactive) and ``new`` (active)."""
    from merch_app.model.encoder import load_encoder
    from merch_app.model.hybrid import HybridConfig
    from merch_app.services.training import train
    from ui_support import write_shop

    folder = tmp_path_factory.mktemp("models")
    cat, ev = write_shop(folder / "shop")
    path = folder / "ws.merch.sqlite"
    db = open_workspace(path)
    import_file(db, cat)
    import_file(db, ev)
    enc = load_encoder("hashing")
    old = train(db, HybridConfig(epochs=2, encoder="hashing", activate="never"), encoder=enc, name="old")
    new = train(db, HybridConfig(epochs=2, encoder="hashing", activate="always"), encoder=enc, name="new")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path, old.model_id, new.model_id


@pytest.fixture
def models_ws(model_template, tmp_path):
    import shutil

    src, old, new = model_template
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copytree(src.with_name(src.name + ".models"), dst.with_name(dst.name + ".models"))
    return dst, old, new


def version_dir(path: Path, model_id: str) -> Path:
    return path.with_name(path.name + ".models") / model_id


def query_json(path: Path, *extra: str):
    return CliRunner().invoke(cli, ["query", "red mug", "-w", str(path), "--json", "--k", "5", *extra])


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_damaged_vector_index_is_rebuilt(models_ws, damage):
    path, _, new = models_ws
    expected = json.loads(query_json(path).stdout)
    index = version_dir(path, new) / "index.faiss"
    if damage == "missing":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"FAISS? no." * 100)
    else:
        index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    res = query_json(path)
    assert res.exit_code == 0, res.output
    assert [r["item_id"] for r in json.loads(res.stdout)] == [r["item_id"] for r in expected]


def _break(folder: Path, damage: str) -> str:
    """Damage one model file; returns words the error message must contain."""
    if damage == "arrays_truncated":
        f = folder / "arrays.safetensors"
        f.write_bytes(f.read_bytes()[:1000])
        return "arrays.safetensors: cannot read model arrays"
    if damage == "arrays_missing":
        (folder / "arrays.safetensors").unlink()
        return "arrays.safetensors: cannot read model arrays"
    if damage == "config_garbage":
        (folder / "config.json").write_text("{not json")
        return "config.json: cannot read"
    if damage == "config_not_an_object":
        (folder / "config.json").write_text("[1, 2, 3]")
        return "config.json"
    if damage == "ids_without_users":
        (folder / "ids.json").write_text('{"item_ids": []}')
        return "ids.json"
    if damage == "ids_wrong_count":  # no checksum (a folder saved before them): the shapes catch it
        ids = json.loads((folder / "ids.json").read_text())
        ids.pop("sha256")
        ids["user_ids"] = ids["user_ids"][:-3]
        (folder / "ids.json").write_text(json.dumps(ids))
        return "array shapes do not match ids.json"
    if damage == "ids_reversed":  # same lengths, every id on another row: only the checksum sees it
        ids = json.loads((folder / "ids.json").read_text())
        ids["item_ids"] = ids["item_ids"][::-1]
        (folder / "ids.json").write_text(json.dumps(ids))
        return "ids.json: file is damaged or was edited (checksum mismatch)"
    if damage == "ids_repeated":
        ids = json.loads((folder / "ids.json").read_text())
        ids.pop("sha256")
        ids["item_ids"][1] = ids["item_ids"][0]
        (folder / "ids.json").write_text(json.dumps(ids))
        return "item ids repeat"
    if damage in ("item_vectors_nan", "history_keys_random", "arrays_bitflip"):
        return _break_arrays(folder / "arrays.safetensors", damage)
    if damage == "config_deeply_nested":
        (folder / "config.json").write_text('{"format": 3, "config": ' + "[" * 200_000 + "]" * 200_000 + "}")
        return "config.json: cannot read (JSON nested too deeply)"
    if damage == "config_wrong_types":
        meta = json.loads((folder / "config.json").read_text())
        meta.pop("sha256")
        meta["config"]["history_half_life_days"] = "sixty"
        (folder / "config.json").write_text(json.dumps(meta))
        return "config field 'history_half_life_days' has the value 'sixty'"
    if damage == "folder_missing":
        import shutil

        shutil.rmtree(folder)
        return "is missing"
    raise AssertionError(damage)


def _break_arrays(path: Path, damage: str) -> str:
    """Rewrite the arrays as another program would (no checksums), or flip one byte of ours."""
    import numpy as np
    from safetensors.numpy import save_file

    from merch_app.model.safetensors_io import read_arrays

    if damage == "arrays_bitflip":
        data = bytearray(path.read_bytes())
        data[-5] ^= 0x40  # inside the last tensor's data
        path.write_bytes(bytes(data))
        return "is damaged (checksum mismatch)"
    arrays = read_arrays(path)
    if damage == "item_vectors_nan":
        arrays["T_i"][3, 5] = np.nan
        words = "T_i holds NaN or infinite values"
    else:
        keys = arrays["hist_keys"]
        arrays["hist_keys"] = np.random.default_rng(0).integers(-2**40, 2**40, len(keys))
        words = "history keys are not sorted, repeat, or point outside the user x item range"
    save_file(arrays, str(path))
    return words


DAMAGES = ["arrays_truncated", "arrays_missing", "config_garbage", "config_not_an_object", "ids_without_users",
           "ids_wrong_count", "folder_missing", "ids_reversed", "ids_repeated", "item_vectors_nan",
           "history_keys_random", "arrays_bitflip", "config_deeply_nested", "config_wrong_types"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_model_gives_a_clear_message_and_loses_nothing(models_ws, damage):
    from merch_app.model.bundle import load_bundle
    from merch_app.model.registry import load_model
    from merch_app.model.hybrid_files import ModelLoadError

    path, old, new = models_ws
    before = table_rows(path)
    words = _break(version_dir(path, new), damage)
    db = open_workspace(path)
    with pytest.raises(ModelLoadError) as err:
        load_bundle(db)
    assert words in str(err.value)
    assert load_model(db, old).n_items == 60  # the other version is untouched
    db.close()
    for args in (["query", "red mug"], ["recommend", "--user", "U01"], ["explain", "red mug", "--item", "SKU001"]):
        res = CliRunner().invoke(cli, [*args, "-w", str(path)])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        assert "cannot load the model" in res.output and words in res.output
    # recover: activate the other version; everything works again
    res = CliRunner().invoke(cli, ["models", "activate", old, "-w", str(path)])
    assert res.exit_code == 0, res.output
    assert query_json(path).exit_code == 0
    after = table_rows(path)
    assert after["events"] == before["events"] and after["items"] == before["items"]


def test_model_folders_saved_before_checksums_still_load(models_ws):
    """A folder without checksums (older merch_app) loads unverified and scores as before; values are still checked."""
    import numpy as np
    from safetensors.numpy import save_file

    from merch_app.model.registry import load_model
    from merch_app.model.safetensors_io import read_arrays

    path, _, new = models_ws
    db = open_workspace(path)
    model = load_model(db, new)
    assert model.checksums_verified
    want = model.score_matrix(np.arange(4))
    folder = version_dir(path, new)
    for name in ("config.json", "ids.json"):
        data = json.loads((folder / name).read_text())
        assert len(data.pop("sha256")) == 64
        (folder / name).write_text(json.dumps(data))
    save_file(read_arrays(folder / "arrays.safetensors"), str(folder / "arrays.safetensors"))  # no metadata
    old = load_model(db, new)
    assert not old.checksums_verified
    np.testing.assert_array_equal(old.score_matrix(np.arange(4)), want)
    db.close()
    assert query_json(path).exit_code == 0


def test_forget_scrub_leaves_a_verified_model(models_ws):
    """forget rewrites ids.json and the arrays one by one: each file carries its own checksum, so both states load."""
    from merch_app.model.registry import load_model
    from merch_app.services.forget import scrub_user_from_models

    path, old, new = models_ws
    db = open_workspace(path)
    assert scrub_user_from_models(db, "U01") == 2
    for model_id in (old, new):
        model = load_model(db, model_id)
        assert model.checksums_verified and "U01" not in set(model.user_ids)
    db.close()


def test_query_screen_falls_back_to_text_with_a_broken_model(models_ws):
    from merch_app.model.bundle import load_bundle

    path, _, new = models_ws
    _break(version_dir(path, new), "arrays_truncated")
    db = open_workspace(path)
    bundle = load_bundle(db, None, "hashing:64", fallback=True)
    db.close()
    assert bundle.model is None and len(bundle.item_ids) == 60
    assert "cannot be loaded" in bundle.warning and "ranking by text only" in bundle.warning


@pytest.mark.parametrize("error", [(28, "No space left on device", "the disk is full"),
                                   (30, "Read-only file system", "the workspace is read-only")])
def test_model_save_on_a_full_or_readonly_disk(models_ws, monkeypatch, error):
    import merch_app.model.hybrid_files as hf

    path, old, new = models_ws
    before = table_rows(path)
    folders = sorted(p.name for p in path.with_name(path.name + ".models").iterdir())
    code, text, words = error

    def failing_save_file(arrays, target):
        with open(target, "wb") as f:
            f.write(b"\x00" * 100)  # part of the file was written
        raise OSError(code, text)

    monkeypatch.setattr(hf, "write_arrays", failing_save_file)
    res = CliRunner().invoke(cli, ["train", "-w", str(path), "--encoder", "hashing", "--epochs", "1",
                                   "--activate", "always"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert words in res.output and "nothing was changed" in res.output
    monkeypatch.undo()
    assert table_rows(path) == before
    assert sorted(p.name for p in path.with_name(path.name + ".models").iterdir()) == folders  # no temp folder
    assert query_json(path).exit_code == 0


def test_safetensors_reader_matches_the_library_and_rejects_damage(tmp_path):
    import numpy as np
    from safetensors.numpy import load_file, save_file

    from merch_app.model.safetensors_io import read_arrays

    rng = np.random.default_rng(0)
    arrays = {"f": rng.standard_normal((5, 3)).astype(np.float32), "d": rng.standard_normal(4),
              "i": np.arange(7, dtype=np.int64), "b": np.array([True, False, True]),
              "e": np.zeros((0, 8), np.float32), "s": np.array(3.5, np.float32)}
    path = tmp_path / "a.safetensors"
    save_file(arrays, str(path), metadata={"k": "v"})
    ours, ref = read_arrays(path), load_file(str(path))
    assert set(ours) == set(ref)
    for k in ref:
        assert ours[k].dtype == ref[k].dtype and ours[k].shape == ref[k].shape
        np.testing.assert_array_equal(ours[k], ref[k])
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-5])
    with pytest.raises(ValueError, match="do not fit|truncated"):
        read_arrays(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="header length"):
        read_arrays(tmp_path / "junk.safetensors")


def test_safetensors_writer_is_read_by_the_library(tmp_path):
    import numpy as np
    from safetensors.numpy import load_file

    from merch_app.model.safetensors_io import read_arrays, write_arrays

    rng = np.random.default_rng(1)
    arrays = {"f": rng.standard_normal((5, 3)).astype(np.float32), "h": rng.standard_normal((4, 2)).astype(np.float16),
              "i": np.arange(7, dtype=np.int64), "b": np.array([True, False, True]),
              "e": np.zeros((0, 8), np.float32), "s": np.array(3.5, np.float32),
              "t": np.asfortranarray(rng.standard_normal((3, 4)))}  # not C-contiguous: written in C order
    path = tmp_path / "w.safetensors"
    write_arrays(arrays, path)
    for got in (load_file(str(path)), read_arrays(path)):
        assert set(got) == set(arrays)
        for k, a in arrays.items():
            assert got[k].dtype == a.dtype and got[k].shape == a.shape
            np.testing.assert_array_equal(got[k], a)
    with pytest.raises(ValueError, match="cannot be stored"):
        write_arrays({"c": np.zeros(2, np.complex64)}, tmp_path / "c.safetensors")


@pytest.mark.parametrize("apart", [0, 1 << 40])  # every tensor hashed in the second thread / none
def test_safetensors_checksums_catch_one_flipped_byte(tmp_path, monkeypatch, apart):
    import numpy as np
    from safetensors.numpy import save_file

    from merch_app.model import safetensors_io as sio

    monkeypatch.setattr(sio, "_HASH_APART", apart)
    rng = np.random.default_rng(2)
    arrays = {"a": rng.standard_normal((50, 8)).astype(np.float32), "b": np.arange(9, dtype=np.int64)}
    path = tmp_path / "s.safetensors"
    sio.write_arrays(arrays, path)
    got, verified = sio.read_arrays_checked(path)
    assert verified and all(np.array_equal(got[k], arrays[k]) for k in arrays)
    data = bytearray(path.read_bytes())
    data[len(data) - 9 * 8 - 100] ^= 1  # one bit inside tensor "a"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="tensor 'a' is damaged \\(checksum mismatch\\)"):
        sio.read_arrays(path)
    save_file(arrays, str(path))  # another program's file: no checksums, read unverified
    assert sio.read_arrays_checked(path)[1] is False
