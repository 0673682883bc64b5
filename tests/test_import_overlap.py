"""Overlapping exports are not double-counted: rows an earlier import holds are skipped and counted."""
from __future__ import annotations

import json

from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.importer import import_file

HEAD = "user_id,item_id,event_type,timestamp,rating\n"
WEEK1 = ["u1,A,view,2026-01-01 10:00:00,", "u1,A,view,2026-01-01 10:00:00,",  # a real repeat in the log
         "u2,B,purchase,2026-01-02 11:00:00,", "u3,C,rating,2026-01-03 12:00:00,4"]
WEEK2 = ["u2,B,purchase,2026-01-02 11:00:00,",  # overlap with week 1
         "u3,C,rating,2026-01-03 12:00:00,5",  # same key but another value: a new row
         "u4,D,click,2026-01-08 09:00:00,"]


def _write(path, rows):
    path.write_text(HEAD + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_rows_already_imported_are_skipped_and_counted(ws, tmp_path):
    first = import_file(ws, _write(tmp_path / "w1.csv", WEEK1))
    assert first.rows_duplicate == 0 and first.events_added == 4  # repeats inside one file are kept
    second = import_file(ws, _write(tmp_path / "w2.csv", WEEK2))
    assert (second.rows_duplicate, second.rows_accepted, second.events_added) == (1, 2, 2)
    assert "1 rows were already in the workspace (skipped)" in second.message
    assert ws.execute("SELECT count(*) FROM events").fetchone()[0] == 6
    assert ws.execute("SELECT message FROM imports WHERE id = ?", [second.import_id]).fetchone()[0] == second.message
    # the whole first export again (another file, same rows): nothing new
    again = import_file(ws, _write(tmp_path / "w1-copy.csv", WEEK1 + ["u9,Z,view,2026-02-01 10:00:00,"]))
    assert (again.rows_duplicate, again.events_added) == (4, 1)


def test_keep_overlap_and_cli_json(ws, ws_path, tmp_path):
    import_file(ws, _write(tmp_path / "w1.csv", WEEK1))
    res = CliRunner().invoke(cli, ["import", str(_write(tmp_path / "w2.csv", WEEK2)), "-w", str(ws_path), "--json"])
    doc = json.loads(res.output)
    assert doc["rows_duplicate"] == 1 and doc["files"][0]["rows_duplicate"] == 1
    res = CliRunner().invoke(cli, ["import", str(_write(tmp_path / "w3.csv", WEEK2 + ["u5,E,view,2026-01-09 09:00:00,"])),
                                   "-w", str(ws_path), "--json", "--keep-overlap"])
    assert json.loads(res.output)["rows_duplicate"] == 0
    assert ws.execute("SELECT count(*) FROM events").fetchone()[0] == 4 + 2 + 4
