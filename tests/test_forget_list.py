"""Forget as a logged, resumable operation that every writer honours (issue 23, Privacy).

Reproductions: a ``forget`` killed (SIGKILL, real process) while a ``.scrub-*`` folder exists and then
re-run; an ``update`` / ``train`` that registers while a forget runs; imports after a forget; raw ids in
rejected lines of pseudonymised imports; rejected lines holding the spreadsheet form ``99887.0``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.forget_list import unfinished_entries
from merch_app.data.importer import import_file
from merch_app.data.privacy import PrivacyError, pseudonym, workspace_key
from merch_app.data.rejected import rejected_rows
from merch_app.data.workspace import open_workspace
from merch_app.jobs import PAUSE_ENV
from merch_app.model.encoder import load_encoder
from merch_app.model.hybrid import HybridConfig
from merch_app.model.registry import active_version, list_versions, load_model
from merch_app.services import forget as forget_service
from merch_app.services import training
from merch_app.services.forget import forget_user
from process_support import kill_when_said

ROOT = Path(__file__).resolve().parents[1]
SECRET = "SECRETCUSTOMER5"  # distinctive, so a byte search cannot hit anything else


def _shop(folder: Path) -> tuple[Path, Path]:
    """A small shop (30 items, 10 users, 300 events) whose user U05 is called SECRET."""
    from ui_support import write_shop

    cat, ev = write_shop(folder, n_items=30, n_users=10, n_events=300)
    lines = ev.read_text(encoding="utf-8").splitlines(keepends=True)
    ev.write_text("".join(SECRET + line[3:] if line.startswith("U05,") else line for line in lines),
                  encoding="utf-8")
    with ev.open("a", encoding="utf-8") as f:
        f.write(f"{SECRET},SKU001,view,not a date\n")  # a rejected line of theirs
    return cat, ev


@pytest.fixture
def trained(tmp_path, ws_path):
    cat, ev = _shop(tmp_path / "shop")
    db = open_workspace(ws_path)
    import_file(db, cat)
    import_file(db, ev)
    version = training.train(db, HybridConfig(epochs=1, encoder="hashing"), encoder=load_encoder("hashing"))
    assert SECRET in load_model(db, version.model_id).user_pos
    yield db, version
    db.close()


def _files_holding(ws_path: Path, needle: str) -> list[str]:
    """Every file of the workspace (the file, its -wal/-shm, model and encoder folders) holding ``needle``."""
    data = needle.encode("utf-8")
    files = [p for p in ws_path.parent.glob(ws_path.name + "*") if p.is_file()]
    for folder in (ws_path.with_name(ws_path.name + ".models"), ws_path.with_name(ws_path.name + ".encoders")):
        if folder.is_dir():
            files += [p for p in folder.rglob("*") if p.is_file()]
    return sorted(str(p.relative_to(ws_path.parent)) for p in files if data in p.read_bytes())


# ------------------------------------------------------------------ (a) kill
def test_forget_killed_while_scrubbing_is_finished_by_running_it_again(trained, ws_path):
    db, version = trained
    db.close()
    env = dict(os.environ, **{PAUSE_ENV: "forget.scrub"}, PYTHONUNBUFFERED="1")
    env.pop("PYTEST_CURRENT_TEST", None)
    models = ws_path.with_name(ws_path.name + ".models")

    def scrub_copy_exists() -> None:
        assert [p.name for p in models.iterdir() if ".scrub-" in p.name]  # the scrub copy is being written

    kill_when_said([sys.executable, "-m", "merch_app", "forget", SECRET, "--yes", "--no-retrain", "-w", str(ws_path)],
                   "paused at forget.scrub", env=env, cwd=ROOT, before_kill=scrub_copy_exists)
    db = open_workspace(ws_path)  # opening for writing removes the killed scrub's copy (sweep_leftovers)
    assert not [p.name for p in models.iterdir() if ".scrub-" in p.name]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT count(*) FROM events WHERE user_id = ?", [SECRET]).fetchone()[0] == 0  # committed
    assert SECRET in load_model(db, version.model_id).user_pos  # ... but the model still holds the user
    assert [e.missing for e in unfinished_entries(db)] == [["models", "folders", "exports", "storage", "refresh"]]
    db.close()
    res = CliRunner().invoke(cli, ["forget", SECRET, "--yes", "--no-retrain", "-w", str(ws_path)])
    assert res.exit_code == 0, res.output
    assert "1 saved model version(s) scrubbed" in res.output
    assert "finished an earlier forget that had stopped before: models, folders, exports, storage, refresh" in res.output
    db = open_workspace(ws_path)
    assert unfinished_entries(db) == []
    model = load_model(db, version.model_id)
    assert SECRET not in model.user_pos and model.checksums_verified
    db.close()
    assert _files_holding(ws_path, SECRET) == []  # workspace file, WAL, model folders: not one byte
    res = CliRunner().invoke(cli, ["forget", SECRET, "--yes", "-w", str(ws_path)])
    assert res.exit_code == 1 and "already forgotten" in res.output


# --------------------------------------------------- (b) update / train during a forget
@pytest.mark.parametrize("job", ["update", "train"])
def test_a_model_fitted_while_a_forget_ran_never_registers_the_user(trained, ws_path, monkeypatch, job):
    """The forget runs (on its own connection, as another process would) between the fit and the registration."""
    db, first = trained
    real_save = training.save_version
    forgot = []

    def forget_then_save(*args, **kwargs):
        other = open_workspace(ws_path)
        try:
            forgot.append(forget_user(other, SECRET, retrain=False))
        finally:
            other.close()
        return real_save(*args, **kwargs)

    monkeypatch.setattr(training, "save_version", forget_then_save)
    if job == "update":
        new = training.update_with_new_events(db)
    else:
        new = training.train(db, HybridConfig(epochs=1, encoder="hashing", activate="always"),
                             encoder=load_encoder("hashing"))
    assert forgot[0].models_scrubbed == 1 and forgot[0].events_removed > 0
    assert active_version(db).model_id == new.model_id
    for version in list_versions(db):
        assert SECRET not in load_model(db, version.model_id).user_pos
    assert _files_holding(ws_path, SECRET) == []
    with pytest.raises(PrivacyError, match="already forgotten"):
        forget_user(db, SECRET)


# ---------------------------------------------------------- (c) imports honour the list
def test_import_after_forget_drops_the_users_rows_also_from_rejected_rows(ws, ws_path, tmp_path):
    f = tmp_path / "ev.csv"
    f.write_text("user_id,item_id,event_type,ts\nkeep1,I1,view,2011-01-01 10:00:00\n"
                 f"{SECRET},I2,view,2011-01-01 10:00:00\n", encoding="utf-8")
    import_file(ws, f)
    forget_user(ws, SECRET, retrain=False)
    again = tmp_path / "again.csv"
    again.write_text("user_id,item_id,event_type,ts\n"
                     f"{SECRET},I3,view,2011-02-01 10:00:00\n"
                     f"{SECRET},I4,teleport,2011-02-01 10:00:00\n"  # would be a rejected line
                     f"keep2,I5,view,2011-02-01 10:00:00\n"
                     f'keep3,"I6,view,2011-02-01 10:00:00\n{SECRET},I7,view,2011-02-01 10:00:00\n',  # swallowed
                     encoding="utf-8")
    result = import_file(ws, again)
    assert result.rows_forgotten == 3 and result.rows_accepted == 1 and result.rows_rejected == 0
    assert "3 rows of forgotten users dropped" in result.message
    assert ws.execute("SELECT count(*) FROM events WHERE user_id = ?", [SECRET]).fetchone()[0] == 0
    assert not any(SECRET in (r["raw"] or "") for r in rejected_rows(ws))
    ws.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert _files_holding(ws_path, SECRET) == []


def test_import_honours_a_forget_by_pseudonym_and_the_spreadsheet_form(ws, tmp_path):
    f = tmp_path / "tx.csv"
    f.write_text("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
                 "1,A1,MUG,2,2011-01-02 10:00:00,1.5,99887.0,UK\n2,A2,PLATE,1,2011-01-02 10:00:00,3,12345.0,UK\n",
                 encoding="utf-8")
    import_file(ws, f, pseudonymise=True)
    anon = pseudonym(workspace_key(ws), "99887")
    assert forget_user(ws, anon, retrain=False).events_removed == 1  # forgotten by pseudonym
    g = tmp_path / "tx2.csv"
    g.write_text(f.read_text(encoding="utf-8").replace("2011-01-02", "2011-03-02"), encoding="utf-8")
    result = import_file(ws, g)
    assert result.rows_forgotten == 1 and result.rows_accepted == 1
    assert ws.execute("SELECT count(*) FROM events WHERE user_id = ?", [anon]).fetchone()[0] == 0


# --------------------------------------------- (d) pseudonymised rejected lines
UNBALANCED = ("user_id,item_id,event_type,ts\n"
              "u1,A1,view,2011-01-01 10:00:00\n"
              'u2,"A2,view,2011-01-01 10:00:00\n'
              "CUSTOMER_SECRET_7,A3,view,2011-01-01 10:00:00\n"
              "u3,A4,view,2011-01-01 10:00:00\n")


def test_pseudonymised_rejected_lines_hold_no_raw_id(ws, ws_path, tmp_path):
    f = tmp_path / "quote.csv"
    f.write_text(UNBALANCED, encoding="utf-8")
    result = import_file(ws, f, pseudonymise=True)
    assert result.rows_accepted == 1 and result.rows_rejected == 1
    raws = [r["raw"] for r in rejected_rows(ws)]
    assert raws == ["(line withheld: user ids are pseudonymised in this workspace)"]
    ws.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for raw_id in ("CUSTOMER_SECRET_7", "u2", "u3"):
        assert not [r for (r,) in ws.execute("SELECT raw FROM rejected_rows") if raw_id in r]
    assert _files_holding(ws_path, "CUSTOMER_SECRET_7") == []


def test_forget_finds_a_user_who_is_only_in_a_swallowed_rejected_line(ws, ws_path, tmp_path):
    f = tmp_path / "quote.csv"
    f.write_text(UNBALANCED, encoding="utf-8")
    import_file(ws, f)  # not pseudonymised: the raw text is kept
    assert any("CUSTOMER_SECRET_7" in r["raw"] for r in rejected_rows(ws))
    result = forget_user(ws, "CUSTOMER_SECRET_7", retrain=False)  # before: "has no events ... nothing to forget"
    assert result.events_removed == 0 and result.rejected_rows_removed == 1
    assert rejected_rows(ws) == []
    assert _files_holding(ws_path, "CUSTOMER_SECRET_7") == []


# ------------------------------------------------------------ (e) 99887.0
def test_forget_removes_rejected_lines_in_the_spreadsheet_form(ws, ws_path, tmp_path):
    f = tmp_path / "ev.csv"
    f.write_text("user_id,item_id,event_type,ts\n99887,I1,view,2011-01-01 10:00:00\n"
                 "99887.0,I2,view,not a date\n99887.0,I3,teleport,2011-01-01 10:00:00\n"
                 "998870,I4,view,never\n", encoding="utf-8")
    import_file(ws, f)
    assert len(rejected_rows(ws)) == 3
    result = forget_user(ws, "99887", retrain=False)
    assert result.events_removed == 1 and result.rejected_rows_removed == 2
    assert "2 rejected lines" in result.message
    assert [r["raw"] for r in rejected_rows(ws)] == ["998870,I4,view,never"]  # another user's line stays


# ------------------------------------------------------------ resuming
def test_forget_of_a_user_left_only_in_models_still_works(trained):
    """The state an old forget killed after the event deletion left behind: events gone, models holding the id."""
    db, version = trained
    with db.conn:
        db.execute("DELETE FROM events WHERE user_id = ?", [SECRET])
        db.execute("DELETE FROM rejected_rows WHERE raw LIKE ?", [f"%{SECRET}%"])
    result = forget_user(db, SECRET, retrain=False)  # before: refused, "has no events"
    assert result.events_removed == 0 and result.models_scrubbed == 1
    assert SECRET not in load_model(db, version.model_id).user_pos


def test_resume_finishes_a_stopped_forget_without_the_id(trained, ws_path, monkeypatch):
    db, version = trained

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(forget_service, "scrub_folder", disk_full)
    with pytest.raises(OSError):
        forget_user(db, SECRET)
    monkeypatch.undo()
    assert [e.missing for e in unfinished_entries(db)] == [["models", "folders", "exports", "storage", "refresh"]]
    res = CliRunner().invoke(cli, ["forget", "--resume", "--no-retrain", "-w", str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc) == 1 and doc[0]["models_scrubbed"] == 1 and doc[0]["unfinished"] == []
    assert unfinished_entries(db) == [] and SECRET not in load_model(db, version.model_id).user_pos
    db.close()
    assert _files_holding(ws_path, SECRET) == []


def test_forget_reaches_the_files_the_app_exported(trained, ws_path, tmp_path):
    """A rejected-rows CSV loses the user's rows, a query export about them is deleted, an edited one is named."""
    import json as _json

    from merch_app.data.export_log import record_export
    from merch_app.data.rejected import export_rejected_csv

    db, _version = trained
    out = tmp_path / "exports"
    out.mkdir()
    rejected = out / "rejected_rows.csv"
    assert export_rejected_csv(db, None, rejected) >= 1
    assert SECRET in rejected.read_text(encoding="utf-8")
    about = out / "results_as_user.json"
    about.write_text(_json.dumps({"request": {"user_id": SECRET}, "results": []}), encoding="utf-8")
    record_export(db, about, "query_results")
    edited = out / "edited.json"
    edited.write_text(_json.dumps({"request": {"user_id": SECRET}}), encoding="utf-8")
    record_export(db, edited, "query_results")
    edited.write_text(_json.dumps({"request": {"user_id": SECRET}, "note": "edited by hand"}), encoding="utf-8")
    other = out / "results_other.json"
    other.write_text(_json.dumps({"request": {"user_id": "U01"}}), encoding="utf-8")
    record_export(db, other, "query_results")

    result = forget_user(db, SECRET, retrain=False)
    text = rejected.read_text(encoding="utf-8")
    assert SECRET not in text and text.startswith("import_id,line_no,reason,raw")
    assert not about.exists() and other.exists() and edited.exists()
    assert f"rows removed from 1 exported file(s) ({rejected.resolve()})" in result.message
    assert f"{edited.resolve()} (changed since it was exported)" in result.message
    assert "exports" in result.unfinished  # the edited file still holds the user: the step stays open
