"""Damaged files on disk: workspaces (newer schema, read-only, full disk, corrupt) and model/index files.

Every case ends in a clear message (no traceback), and nothing that was there
before is lost.
"""
from __future__ import annotations

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
    assert str(err.value).startswith(f"{tmp_path / 'more.csv'}: import: the workspace is read-only")
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
    assert "the workspace is read-only" in res.stderr and "nothing was changed" in res.stderr
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
    assert "the disk is full; nothing was changed" in str(err.value) and str(err.value).startswith(str(big))
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
