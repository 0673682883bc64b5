"""One transaction per import: failure/cancel leave the workspace as it was; re-import; append; progress."""
from __future__ import annotations

from pathlib import Path

import pytest

from merch_app.data import import_batches
from merch_app.data.importer import ImportFailed, import_file, preview_file
from merch_app.jobs import CancelToken, Cancelled

DATA = Path(__file__).parent / "data" / "import"
TABLES = ("items", "events", "rejected_rows", "mappings")


def snapshot(ws) -> dict:
    """Everything an import may touch, plus the schema (indexes dropped in bulk mode)."""
    snap = {t: ws.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}
    snap["fts"] = ws.execute("SELECT rowid, * FROM items_fts ORDER BY rowid").fetchall()
    snap["schema"] = ws.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    snap["ok_imports"] = ws.execute("SELECT * FROM imports WHERE status = 'ok' ORDER BY id").fetchall()
    return snap


def big_events_file(path: Path, rows: int = 60_000, start: int = 0) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.write("user_id,item_id,event_type,ts\n")
        for i in range(start, start + rows):
            f.write(f"u{i % 997},i{i % 1511},{'view' if i % 3 else 'buy'},2011-01-{1 + i % 28:02d} 10:00:00\n")
        f.write("u1,i1,view,not a date\n")
    return path


@pytest.fixture
def populated(ws):
    import_file(ws, DATA / "transactions_small.csv")
    import_file(ws, DATA / "catalogue_gbk.csv")
    return ws


def test_failure_injected_mid_file_leaves_workspace_unchanged(populated, tmp_path, monkeypatch):
    ws = populated
    before = snapshot(ws)
    f = big_events_file(tmp_path / "big.csv")  # 60k rows: bulk mode drops + rebuilds event indexes
    calls = {"n": 0}
    real_flush = import_batches.ImportContext.flush_events

    def failing_flush(self):
        calls["n"] += 1
        if calls["n"] == 3:  # 20,000 events were already written inside the transaction
            raise OSError("disk on fire")
        real_flush(self)

    monkeypatch.setattr(import_batches.ImportContext, "flush_events", failing_flush)
    with pytest.raises(ImportFailed) as err:
        import_file(ws, f)
    assert "big.csv" in str(err.value) and "disk on fire" in str(err.value) and "line 30001:" in str(err.value)
    assert snapshot(ws) == before
    status, message = ws.execute("SELECT status, message FROM imports ORDER BY id DESC LIMIT 1").fetchone()
    assert status == "failed" and "disk on fire" in message
    # the same file imports fine afterwards (a failed attempt is not a duplicate)
    monkeypatch.undo()
    r = import_file(ws, f)
    assert r.status == "ok" and r.events_added == 60_000 and r.rejected_reasons == {"bad_date": 1}
    assert {row[1] for row in snapshot(ws)["schema"]} == {row[1] for row in before["schema"]}


def test_exception_from_progress_callback_rolls_back(populated, tmp_path):
    ws = populated
    before = snapshot(ws)

    def progress(p):
        if p.data.get("rows", 0) > 0:
            raise RuntimeError("UI went away")

    f = big_events_file(tmp_path / "p.csv", rows=30_000)
    import merch_app.data.import_batches as ib
    throttle_ready = ib.Throttle.ready
    ib.Throttle.ready = lambda self: True  # report at every check
    try:
        with pytest.raises(ImportFailed, match="UI went away"):
            import_file(ws, f, progress=progress)
    finally:
        ib.Throttle.ready = throttle_ready
    assert snapshot(ws) == before


class CancelAfter(CancelToken):
    def __init__(self, checks: int) -> None:
        super().__init__()
        self.left = checks

    def check(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.cancel()
        super().check()


def test_cancel_mid_file_raises_and_leaves_workspace_unchanged(populated, tmp_path):
    ws = populated
    before = snapshot(ws)
    f = big_events_file(tmp_path / "c.csv")
    with pytest.raises(Cancelled):
        import_file(ws, f, cancel=CancelAfter(5))  # ~16k rows in
    assert snapshot(ws) == before
    assert ws.execute("SELECT status FROM imports ORDER BY id DESC LIMIT 1").fetchone()[0] == "cancelled"
    assert not preview_file(ws, f).already_imported


def test_reimport_skip_replace_append_error(ws, tmp_path):
    f = DATA / "transactions_small.csv"
    first = import_file(ws, f)
    assert preview_file(ws, f).already_imported
    skipped = import_file(ws, f)
    assert (skipped.status, skipped.import_id, skipped.events, skipped.events_added) == ("skipped", first.import_id, 9, 0)
    with pytest.raises(ImportFailed, match="already imported"):
        import_file(ws, f, on_duplicate="error")
    replaced = import_file(ws, f, on_duplicate="replace")
    assert (replaced.status, replaced.items, replaced.events, replaced.items_added) == ("ok", 4, 9, 0)
    statuses = dict(ws.execute("SELECT id, status FROM imports").fetchall())
    assert statuses == {first.import_id: "replaced", replaced.import_id: "ok"}
    assert ws.execute("SELECT DISTINCT import_id FROM events").fetchall() == [(replaced.import_id,)]
    assert ws.execute("SELECT count(*) FROM rejected_rows").fetchone()[0] == 8  # old rejects removed
    appended = import_file(ws, f, on_duplicate="append")
    assert (appended.events, appended.events_added, appended.items) == (18, 9, 4)
    with pytest.raises(ValueError):
        import_file(ws, f, on_duplicate="overwrite")


def test_replace_keeps_items_used_by_other_imports(ws, tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("user,item,event,time\nu1,shared,view,2011-01-01\nu1,only_a,view,2011-01-01\n")
    b = tmp_path / "b.csv"
    b.write_text("user,item,event,time\nu2,shared,buy,2011-01-02\n")
    import_file(ws, a)
    import_file(ws, b)
    a.write_text(a.read_text())  # same bytes, same sha256
    r = import_file(ws, a, on_duplicate="replace")
    assert r.events == 3 and r.items == 2


def test_append_new_events_to_existing_workspace(ws, tmp_path):
    f1 = big_events_file(tmp_path / "jan.csv", rows=5_000)
    f2 = tmp_path / "feb.csv"
    f2.write_text("user_id,item_id,event_type,ts\nu1,i1,view,2011-02-01 10:00:00\nnew_user,new_item,cart,2011-02-02\n")
    r1 = import_file(ws, f1)
    r2 = import_file(ws, f2)
    assert r2.events == r1.events + 2 and r2.events_added == 2
    assert r2.items == r1.items + 1 and r2.items_added == 1
    users = ws.execute("SELECT count(DISTINCT user_id) FROM events").fetchone()[0]
    assert users == 998
    # indexes are in place after both imports
    names = {r[0] for r in ws.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='events'")}
    assert {"idx_events_user", "idx_events_item", "idx_events_ts", "idx_events_import"} <= names


def test_progress_reports_bytes_rows_and_eta(ws, tmp_path):
    f = big_events_file(tmp_path / "prog.csv", rows=20_000)
    reports = []
    import_file(ws, f, progress=reports.append, cancel=CancelToken())
    assert reports, "no progress reported"
    last = reports[-1]
    size = f.stat().st_size
    assert last.total == size and last.done == size and last.fraction == 1.0
    assert last.data == {"rows": 20_001, "bytes": size}
    assert last.message == "20,001 rows"
    assert all(0 <= p.done <= size for p in reports)


def test_import_nested_in_callers_transaction(ws, tmp_path):
    ws.conn.execute("INSERT INTO settings(key, value) VALUES ('x', '1')")
    assert ws.conn.in_transaction
    r = import_file(ws, DATA / "events_zh.tsv")
    assert r.status == "ok" and ws.conn.in_transaction
    ws.conn.rollback()  # the caller's rollback takes the import with it
    assert ws.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_path_instead_of_open_workspace(ws_path):
    r = import_file(ws_path, DATA / "events_zh.tsv")
    assert r.status == "ok" and r.events == 6
