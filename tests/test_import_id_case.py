"""Item ids that differ only by case: kept apart by default, merged at import when the setting is on."""
from __future__ import annotations

import json

from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.id_case import SETTING
from merch_app.data.importer import import_file
from merch_app.data.workspace import set_setting
from merch_app.insights.doctor import behaviour_doctor

CATALOGUE = ("item_id,title,description,price\n"
             "85123A,WHITE HANGING HEART T-LIGHT HOLDER,,2.55\n"
             "85123a,white hanging heart t-light holder,heart-shaped holder for tea lights,\n"
             "84970S,HANGING HEART ZINC T-LIGHT HOLDER,,0.85\n"
             "84970s,hanging heart zinc t-light holder,,0.85\n"
             "22001,RED MUG,,1.25\n")
EVENTS = ("user_id,item_id,event_type,timestamp\n"
          "u1,85123A,purchase,2026-01-01 10:00:00\n"
          "u2,85123A,purchase,2026-01-02 10:00:00\n"
          "u3,85123a,purchase,2026-01-03 10:00:00\n"
          "u1,84970s,purchase,2026-01-04 10:00:00\n"
          "u2,22001,view,2026-01-05 10:00:00\n")


def _files(tmp_path):
    (tmp_path / "items.csv").write_text(CATALOGUE, encoding="utf-8")
    (tmp_path / "events.csv").write_text(EVENTS, encoding="utf-8")
    return tmp_path / "items.csv", tmp_path / "events.csv"


def _ids(ws):
    return [r[0] for r in ws.execute("SELECT item_id FROM items ORDER BY item_id")]


def test_by_default_case_variants_stay_apart_and_the_doctor_names_them(ws, tmp_path):
    items, events = _files(tmp_path)
    import_file(ws, items)
    res = import_file(ws, events)
    assert res.ids_merged == [] and "Merged" not in res.message
    assert _ids(ws) == ["22001", "84970S", "84970s", "85123A", "85123a"]
    assert behaviour_doctor(ws).id_clashes == [["84970S", "84970s"], ["85123A", "85123a"]]


def test_with_the_setting_each_group_becomes_the_most_used_spelling(ws, tmp_path):
    set_setting(ws, SETTING, True)
    items, events = _files(tmp_path)
    import_file(ws, items)
    res = import_file(ws, events)
    # 85123A has 2 events vs 1; 84970s has the only event, so it is kept over the upper-case spelling
    assert [(m.kept, m.merged) for m in res.ids_merged] == [("84970s", ("84970S",)), ("85123A", ("85123a",))]
    assert "Merged 2 item id(s) that differ only by case into 2" in res.message
    assert "85123a → 85123A" in res.message
    assert _ids(ws) == ["22001", "84970s", "85123A"]
    counts = dict(ws.execute("SELECT item_id, count(*) FROM events GROUP BY item_id").fetchall())
    assert counts == {"85123A": 3, "84970s": 1, "22001": 1}
    title, desc, price = ws.execute("SELECT title, description, price FROM items WHERE item_id = '85123A'").fetchone()
    assert (title, desc, price) == ("WHITE HANGING HEART T-LIGHT HOLDER", "heart-shaped holder for tea lights", 2.55)
    assert behaviour_doctor(ws).id_clashes == []
    hits = ws.execute("SELECT count(*) FROM items_fts WHERE items_fts MATCH 'heart'").fetchone()[0]
    assert hits == 2  # the search index holds the merged catalogue
    logged = ws.execute("SELECT message FROM imports WHERE id = ?", [res.import_id]).fetchone()[0]
    assert logged == res.message


def test_cli_turning_the_setting_on_merges_now_and_imports_report_it(ws_path, tmp_path):
    items, events = _files(tmp_path)
    runner = CliRunner()
    runner.invoke(cli, ["import", str(items), "-w", str(ws_path)])
    res = runner.invoke(cli, ["import", str(events), "-w", str(ws_path), "--json"])
    assert json.loads(res.output)["files"][0]["ids_merged"] == []
    res = runner.invoke(cli, ["settings", "set", SETTING, "on", "-w", str(ws_path)])
    assert res.exit_code == 0 and "85123a → 85123A" in res.output and "84970S → 84970s" in res.output
    (tmp_path / "more.csv").write_text("user_id,item_id,event_type,timestamp\n"
                                       "u5,85123a,purchase,2026-02-01 10:00:00\n", encoding="utf-8")
    res = runner.invoke(cli, ["import", str(tmp_path / "more.csv"), "-w", str(ws_path), "--json"])
    assert json.loads(res.output)["files"][0]["ids_merged"] == [{"kept": "85123A", "merged": ["85123a"]}]
    res = runner.invoke(cli, ["doctor", "-w", str(ws_path), "--json"])
    assert json.loads(res.output)["id_case_clashes"] == []
