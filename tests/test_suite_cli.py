"""CLI: merch-app suite run/import/export/list/generate/compare and merch-app rules."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from ranking_fixtures import SAMPLE_ITEMS, insert_items

ENC = ["--encoder", "hashing"]


@pytest.fixture
def shop(ws_path):
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    insert_items(db, SAMPLE_ITEMS)
    with db.conn:
        db.insert_rows("events", [
            {"user_id": "u1", "session_id": "s1", "ts": "2024-01-01T10:00:00Z", "event_type": "search",
             "query": "candle"},
            {"user_id": "u1", "session_id": "s1", "ts": "2024-01-01T10:01:00Z", "event_type": "purchase",
             "item_id": "22002"},
            {"user_id": "u2", "session_id": "s2", "ts": "2024-01-01T11:00:00Z", "event_type": "search",
             "query": "candle"},
            {"user_id": "u2", "session_id": "s2", "ts": "2024-01-01T11:01:00Z", "event_type": "click",
             "item_id": "22001"},
        ])
    db.close()
    return ws_path


@pytest.fixture
def suite_csv(tmp_path):
    p = tmp_path / "hand.csv"
    p.write_text("query,item_id,grade\nheart,22003,3\nheart,85123A,2\nred candle,22001,3\n"
                 "red candle,22002,1\nmug,22004,3\nlantern,71053,3\n", encoding="utf-8")
    return p


def invoke(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def test_suite_run_json_shape(shop, suite_csv):
    res = invoke("suite", "run", suite_csv, "-w", shop, "--json", *ENC)
    d = json.loads(res.output)
    assert set(d["mean"]) >= {"ndcg@10", "p@10", "mrr", "unjudged@10"}
    assert [q["query"] for q in d["queries"]] == ["heart", "red candle", "mug", "lantern"]
    assert {"query", "ndcg@10", "p@10", "mrr", "unjudged@10"} <= set(d["queries"][0])
    by_q = {q["query"]: q for q in d["queries"]}
    assert by_q["mug"]["mrr"] == 1.0  # the only mug is the first lexical hit
    assert 0 < d["mean"]["ndcg@10"] <= 1


def test_suite_run_table_report_and_k(shop, suite_csv, tmp_path):
    res = invoke("suite", "run", suite_csv, "-w", shop, "--k", "3", *ENC, "--html", tmp_path / "r.html",
                 "--csv", tmp_path / "r.csv")
    assert "ndcg@10" in res.output and "p@3" in res.output and "95% CI" in res.output
    assert "<svg" in (tmp_path / "r.html").read_text(encoding="utf-8")
    assert (tmp_path / "r.csv").read_text(encoding="utf-8").startswith("query,ndcg@10,ndcg@3,p@3,mrr")


def test_import_export_list_and_snapshots(shop, suite_csv, tmp_path):
    invoke("suite", "import", suite_csv, "--name", "hand", "-w", shop)
    res = invoke("suite", "import", suite_csv, "--name", "hand", "-w", shop, ok=False)
    assert res.exit_code != 0 and "already exists" in res.output
    listed = json.loads(invoke("suite", "list", "-w", shop, "--json").output)
    assert listed[0]["name"] == "hand" and listed[0]["judgments"] == 6
    demo = json.loads(invoke("suite", "import", "--demo", "-w", shop, "--json").output)
    assert demo["name"] == "demo" and demo["queries"] == 34
    invoke("suite", "export", "hand", tmp_path / "out.qrels", "-w", shop)
    assert (tmp_path / "out.qrels").read_text().startswith("1 0 ")
    invoke("suite", "export", "hand", tmp_path / "out.csv", "-w", shop)
    assert (tmp_path / "out.csv").read_text().splitlines()[1] == "heart,22003,3"
    snap = json.loads(invoke("suite", "run", "hand", "-w", shop, "--json", "--snapshot", "v1", *ENC).output)
    diff = json.loads(invoke("suite", "run", "hand", "-w", shop, "--json", "--against", snap["snapshot_id"],
                             *ENC).output)["diff"]
    assert diff["regressions"] == [] and diff["changed_lists"] == 0
    # a bury rule makes "heart" regress against the snapshot
    invoke("rules", "add", "bury", "--pattern", "heart", "--item", "22003", "--weight", "5", "-w", shop)
    res = invoke("suite", "run", "hand", "-w", shop, "--against", snap["snapshot_id"], *ENC)
    assert "REGRESSION heart" in res.output


def test_bad_suite_file_is_a_clear_error(shop, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("query,item_id,grade\nheart,22003,9\n", encoding="utf-8")
    res = invoke("suite", "run", bad, "-w", shop, *ENC, ok=False)
    assert res.exit_code == 1 and "line 2: grade 9 is outside 0-3" in res.output
    res = invoke("suite", "run", "nosuch", "-w", shop, *ENC, ok=False)
    assert "no suite named 'nosuch'" in res.output


def test_generate_and_compare(shop, suite_csv):
    d = json.loads(invoke("suite", "generate", "-w", shop, "--json").output)
    assert d["queries"] == 1 and d["judgments"] == 2
    res = invoke("suite", "compare", suite_csv, "-w", shop, *ENC, "--json",
                 "--system", "label=lexical weights=lex=1,text=0,cf=0,pop=0",
                 "--system", "label=same weights=lex=1,text=0,cf=0,pop=0",
                 "--system", "label=text weights=lex=0,text=1,cf=0,pop=0")
    cmp = json.loads(res.output)
    same, text = cmp["pairs"]
    assert same["test"]["p_value"] == 1.0 and same["ties"] == 4 and same["mean_rbo"] == pytest.approx(1.0)
    assert text["system"] == "text" and 0 <= text["test"]["p_value"] <= 1
    assert cmp["queries"][0]["query"] == "heart"
    res = invoke("suite", "compare", "--behaviour", "-w", shop, *ENC, "--system", "label=a", "--system", "label=b")
    assert "b vs a" in res.output and "p = 1" in res.output
    res = invoke("suite", "compare", suite_csv, "-w", shop, *ENC, "--system", "label=a", ok=False)
    assert "at least two systems" in res.output


def test_rules_cli_round_trip(shop):
    out = json.loads(invoke("rules", "add", "pin", "--pattern", "candle", "--item", "22004", "--position", "1",
                            "-w", shop, "--json").output)
    rid = out["rule_id"]
    assert out["name"] == "pin 22004 at 1 for 'candle'" and out["enabled"]
    invoke("rules", "add", "synonym", "--terms", "mug,cup", "-w", shop, "--disabled")
    res = invoke("rules", "list", "-w", shop)
    assert "[on ]  pin" in res.output and "[off]  synonym" in res.output
    invoke("rules", "disable", rid, "-w", shop)
    imp = json.loads(invoke("rules", "impact", rid, "-w", shop, *ENC, "--json").output)
    assert imp["queries_touched"] == 1 and imp["touched"][0]["after"][0] == "22004"
    assert imp["behaviour"]["name"] == "behaviour"  # the candle searches give judgments
    assert imp["behaviour"]["delta"]["ndcg@10"] < 0  # pinning a mug hurts candle searches
    dry = invoke("rules", "add", "hide", "--pattern", "heart", "--item", "22003", "--dry-run", "-w", shop, *ENC)
    assert "1 of 2 queries change" in dry.output and "22003 1→-" in dry.output
    assert len(json.loads(invoke("rules", "list", "-w", shop, "--json").output)) == 2  # dry run saved nothing
    invoke("rules", "delete", rid, "-w", shop)
    res = invoke("rules", "enable", rid, "-w", shop, ok=False)
    assert f"no rule with id {rid}" in res.output
    res = invoke("rules", "add", "boost", "--category", "Home", "--tag", "x", "-w", shop, ok=False)
    assert "exactly one of" in res.output


def test_rules_apply_in_query_and_explain(shop):
    invoke("rules", "add", "pin", "--pattern", "candle", "--item", "22004", "--position", "1", "-w", shop,
           "--name", "mug first")
    rows = json.loads(invoke("query", "candle", "-w", shop, *ENC, "--json").output)
    assert rows[0]["item_id"] == "22004" and rows[0]["components"]["rules"] > 0
    exp = json.loads(invoke("explain", "candle", "--item", "22004", "-w", shop, *ENC, "--json").output)
    assert exp["rules"][0]["rule"] == "mug first" and exp["rules"][0]["to_rank"] == 1
    assert exp["rules"][0]["from_rank"] > 1
    text = invoke("explain", "candle", "--item", "22004", "-w", shop, *ENC).output
    assert "Rule mug first: score +" in text and "→ 1 (pinned to 1)" in text
