"""``merch-app import`` and ``merch-app demo`` through click, plus the demo workspace helpers."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.demo import ensure_demo_workspace
from merch_app.data.summary import data_summary, long_tail_curve
from merch_app.paths import demo_files

DATA = Path(__file__).parent / "data" / "import"


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_import_json_aggregates_files(ws_path):
    res = run("import", str(DATA / "transactions_small.csv"), str(DATA / "events_zh.tsv"),
              "--workspace", str(ws_path), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["rows_read"], out["rows_accepted"], out["rows_rejected"]) == (17 + 7, 9 + 6, 8 + 1)
    assert (out["items"], out["events"]) == (4 + 3, 9 + 6)
    assert out["rejected_reasons"] == {"non_product": 3, "bad_date": 2, "bad_number": 1, "missing_item_id": 1,
                                       "wrong_column_count": 1, "unknown_event_type": 1}
    assert [f["kind"] for f in out["files"]] == ["transactions", "events"]
    assert set(out) >= {"rows_read", "rows_accepted", "rows_rejected", "items", "events", "seconds",
                        "rejected_reasons", "files"}
    again = json.loads(run("import", str(DATA / "events_zh.tsv"), "-w", str(ws_path), "--json").output)
    assert again["files"][0]["status"] == "skipped" and again["events"] == 15


def test_import_map_and_kind_options(ws_path, tmp_path):
    f = tmp_path / "odd.csv"
    f.write_text("who,thing,when,what happened,note\nu1,i1,2011-01-01,buy,x\nu2,i2,2011-01-02,view,y\n")
    res = run("import", str(f), "-w", str(ws_path), "--kind", "events", "--map", "who=user_id",
              "--map", "thing=item_id", "--map", "when=ts", "--map", "what happened=event_type", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["events"] == 2
    assert out["files"][0]["mapping"] == {"who": "user_id", "thing": "item_id", "when": "ts",
                                          "what happened": "event_type"}


def test_import_bad_map_and_bad_file_exit_non_zero(ws_path, tmp_path):
    res = run("import", str(DATA / "events_zh.tsv"), "-w", str(ws_path), "--map", "nope=user_id")
    assert res.exit_code == 1 and "no column 'nope'" in res.output
    res = run("import", str(DATA / "events_zh.tsv"), "-w", str(ws_path), "--map", "nonsense")
    assert res.exit_code == 2 and "SOURCE=FIELD" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("alpha,beta\n1,2\n")
    res = run("import", str(bad), str(DATA / "events_zh.tsv"), "-w", str(ws_path), "--json")
    assert res.exit_code == 1
    assert "no column for item_id" in res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert [f["status"] for f in out["files"]] == ["failed", "ok"] and out["events"] == 6


def test_import_text_output(ws_path):
    res = run("import", str(DATA / "catalogue_gbk.csv"), "-w", str(ws_path))
    assert res.exit_code == 0
    assert "catalogue_gbk.csv: catalogue" in res.output and "2 items" in res.output


def test_demo_files_and_demo_command(tmp_path):
    files = demo_files()
    assert [f.name for f in files] == ["online_retail_demo.csv.gz"]
    assert files[0].stat().st_size < 1_500_000
    ws = tmp_path / "demo.sqlite"
    res = run("demo", "--workspace", str(ws), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    # numbers of resources/demo/README.md
    assert (out["items"], out["users"], out["events"], out["anonymous_events"]) == (2910, 300, 47098, 5707)
    assert out["events_by_type"] == {"purchase": 46221, "return": 877}
    assert out["first_ts"].startswith("2010-12-01") and out["last_ts"].startswith("2011-12-09")
    assert out["top_items"][0]["item_id"] == "85123A"
    text = run("demo", "--workspace", str(ws)).output  # second run: already imported, still summarises
    assert "2,910 items, 300 users, 47,098 events" in text


def test_ensure_demo_workspace_default_path_and_progress():
    reports = []
    path = ensure_demo_workspace(progress=reports.append)
    assert path.exists() and path.name == "demo.merch.sqlite"
    assert reports and reports[-1].fraction == 1.0
    assert reports[-1].data["file"] == "online_retail_demo.csv.gz"
    s = data_summary(path)
    assert s.items == 2910 and len(s.imports) == 1 and s.imports[0]["status"] == "ok"
    assert ensure_demo_workspace(path) == path  # second call skips by sha256
    assert len(data_summary(path).imports) == 1


def test_data_summary_known_answers(ws):
    from merch_app.data.importer import import_file

    import_file(ws, DATA / "transactions_small.csv")
    s = data_summary(ws)
    assert (s.items, s.users, s.events, s.anonymous_events) == (4, 4, 9, 3)
    assert (s.first_ts, s.last_ts) == ("2011-01-02T10:00:00Z", "2011-01-11T10:00:00Z")
    assert s.events_per_day[0][:3] == ["2011-01-02", "2011-01-03", "2011-01-04"]
    assert s.events_per_day[1][:3] == [2, 2, 1]
    assert sum(s.events_per_day[1]) == 9
    assert s.events_by_type == {"purchase": 7, "return": 2}
    # popularity without returns: A1 3 purchases, B2 2, C3 1, D4 1
    assert s.top_items == [("A1", "RED MUG", 3), ("B2", "BLUE PLATE", 2), ("C3", "GREEN BOWL", 1),
                           ("D4", "LAMP\nWITH SHADE", 1)]
    xs, ys = s.long_tail
    assert xs == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert ys == [0.0, 3 / 7, 5 / 7, 6 / 7, 1.0]
    assert s.imports[0]["file_name"] == "transactions_small.csv"


def test_long_tail_counts_items_without_events():
    xs, ys = long_tail_curve([6, 2], n_items=4)
    assert xs == [0.0, 0.25, 0.5, 0.75, 1.0] and ys == [0.0, 0.75, 1.0, 1.0, 1.0]
    xs, ys = long_tail_curve(list(range(1, 1001)), n_items=1000, points=100)
    assert len(xs) == 101 and ys[-1] == 1.0 and all(a <= b for a, b in zip(ys, ys[1:]))
    assert long_tail_curve([], 0) == ([], [])
