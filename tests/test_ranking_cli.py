"""CLI: query, recommend, related, explain (fake bundle; text-only fallback with hashing)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from merch_app.cli import query_cmds
from merch_app.cli.main import cli
from merch_app.model.bundle import load_bundle
from merch_app.ranking.ranker import Ranker
from ranking_fixtures import (SAMPLE_ITEMS, SAMPLE_SYNONYMS, TableCFModel,
                                       WordVectorEncoder, insert_items, make_bundle)
from merch_app.ranking.types import COMPONENTS, RankRequest


@pytest.fixture
def ws_file(ws, ws_path, monkeypatch):
    insert_items(ws, SAMPLE_ITEMS)

    def fake_ranker(db, model_id, encoder_spec):
        bundle = make_bundle(db, WordVectorEncoder(synonyms=SAMPLE_SYNONYMS),
                             popularity={"22004": 1.0, "85123A": 0.5})
        ids = [str(i) for i in bundle.item_ids]
        table = np.zeros((1, len(ids)))
        table[0, ids.index("22003")] = 2.0
        table[0, ids.index("22001")] = 1.0
        bundle.model = TableCFModel(["u1"], ids, table)
        return Ranker(db, bundle)

    monkeypatch.setattr(query_cmds, "_ranker", fake_ranker)
    return str(ws_path)


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result


def test_query_json(ws_file):
    r = run("query", "85123A", "-w", ws_file, "--json", "--k", "3")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [x["rank"] for x in rows] == [1, 2, 3]
    assert rows[0]["item_id"] == "85123A"
    assert set(rows[0]["components"]) == set(COMPONENTS)
    for x in rows:
        assert sum(x["components"].values()) == pytest.approx(x["score"], abs=1e-6)


def test_query_json_notes_go_to_stderr(ws_file):
    r = run("query", "candle", "--user", "nobody", "-w", ws_file, "--json", "--k", "2")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)  # stdout is the result alone
    assert len(rows) == 2
    assert "note: " in r.stderr and "no CF component" in r.stderr


def test_query_table_weights_category(ws_file):
    r = run("query", "candle", "-w", ws_file, "--weights", "lex=1,text=0,pop=0", "--category", "Home")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:3] == ["rank", "item_id", "title"]
    assert lines[2].split()[1] == "22001"
    assert "22004" not in r.output  # Kitchen filtered out


def test_bad_weights_is_a_usage_error(ws_file):
    r = run("query", "x", "-w", ws_file, "--weights", "lex=abc")
    assert r.exit_code == 2 and "not a number" in r.output


def test_recommend_and_related(ws_file):
    r = run("recommend", "--user", "u1", "-w", ws_file, "--json", "--k", "2", "--weights", "cf=1,pop=0.01")
    assert [x["item_id"] for x in json.loads(r.output)] == ["22003", "22001"]
    r = run("related", "22001", "-w", ws_file, "--json", "--k", "2")
    assert r.exit_code == 0 and "22001" not in [x["item_id"] for x in json.loads(r.output)]
    r = run("related", "22001", "--by", "cf", "-w", ws_file, "--json")
    assert r.exit_code == 0
    r = run("related", "missing", "-w", ws_file)
    assert r.exit_code == 1 and "not in the model's catalogue" in r.output


def test_explain_with_why_not(ws_file):
    r = run("explain", "white heart", "--item", "blue mug", "--k", "1", "-w", ws_file, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["item_id"] == "22004" and d["why_not"]["last_shown"]["rank"] == 1
    assert sum(c["contribution"] for c in d["components"]) == pytest.approx(d["score"], abs=1e-6)
    r = run("explain", "white heart", "--item", "85123A", "--user", "u1", "-w", ws_file)
    assert r.exit_code == 0 and "Score split" in r.output and "Keyword terms" in r.output
    assert "Behaviour model: model score 0.0000\n" in r.output  # u1's table row has 0 for this item
    # the behaviour model's own parts (the table model has one, "cf": its score)
    r = run("explain", "white heart", "--item", "22003", "--user", "u1", "-w", ws_file)
    assert r.exit_code == 0 and "Behaviour model: model score 2.0000 = cf 2.0000" in r.output, r.output
    r = run("explain", "white heart", "--item", "qqqq", "-w", ws_file)
    assert r.exit_code == 1 and "no item" in r.output


def test_text_only_fallback_bundle(ws):
    from merch_app.model.hashing_encoder import HashingEncoder

    insert_items(ws, SAMPLE_ITEMS)
    bundle = load_bundle(ws, encoder=HashingEncoder(32))
    assert len(bundle.item_ids) == len(SAMPLE_ITEMS)
    rl = Ranker(ws, bundle).rank(RankRequest(query="85123A"))
    assert rl.item_ids[0] == "85123A"


def test_empty_workspace_message(ws_path):
    r = run("query", "x", "-w", str(ws_path), "--encoder", "hashing")
    assert r.exit_code == 1 and "import a catalogue" in r.output
