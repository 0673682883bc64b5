"""``merch-app user | users | item | funnel | heatmap | doctor`` on the hand-made workspace."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from insights_data import fill
from merch_app.cli.main import cli


@pytest.fixture
def wsfile(ws, ws_path):
    fill(ws)
    return str(ws_path)


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result


def test_users_and_user_json(wsfile):
    r = run("users", "-w", wsfile, "--json")
    assert r.exit_code == 0, r.output
    assert [u["user_id"] for u in json.loads(r.output)] == ["u1", "u2", "u3"]
    r = run("users", "-w", wsfile, "--search", "u2")
    assert r.exit_code == 0 and r.output.startswith("u2")
    r = run("user", "u1", "-w", wsfile, "--no-model", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["n_events"] == 7 and d["interest_terms"][0]["term"] == "red"
    assert [s["session_id"] for s in d["sessions"]] == ["s3", "s2", "s1"]
    r = run("user", "u1", "-w", wsfile, "--no-model")
    assert r.exit_code == 0 and "interest terms: red, mug" in r.output


def test_user_with_text_model_recommends(wsfile):
    r = run("user", "u1", "-w", wsfile, "--encoder", "hashing", "--k", "3", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert len(d["recommendations"]) == 3 and d["recommendations"][0]["item_id"] == "A"  # most popular


def test_unknown_user_and_item_are_clear_errors(wsfile):
    r = run("user", "nobody", "-w", wsfile, "--no-model")
    assert r.exit_code != 0 and "no events" in r.output
    r = run("item", "ZZ", "-w", wsfile, "--no-model")
    assert r.exit_code != 0 and "not in the catalogue" in r.output


def test_item_json_with_related_and_query_ranks(wsfile):
    r = run("item", "A", "-w", wsfile, "--encoder", "hashing", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["funnel"]["reached"] == [3, 2, 2, 1] and d["queries"][0]["query"] == "red mug"
    assert d["model"]["related_text"][0]["item_id"] == "F"  # same title and description
    assert d["model"]["query_ranks"][0]["query"] == "red mug" and d["model"]["query_ranks"][0]["rank"] in (1, 2)


def test_funnel_and_heatmap(wsfile):
    r = run("funnel", "--query", "Red mug", "-w", wsfile, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["reached"] == [3, 3, 2, 2, 1]
    r = run("funnel", "-w", wsfile)
    assert r.exit_code != 0 and "exactly one" in r.output
    r = run("funnel", "--item", "A", "-w", wsfile)
    assert r.exit_code == 0 and "returned" in r.output
    r = run("heatmap", "-w", wsfile, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["rows"][0] == "Kitchen"
    r = run("heatmap", "-w", wsfile)
    assert r.exit_code == 0 and "Kitchen" in r.output


def test_doctor_json(wsfile):
    r = run("doctor", "-w", wsfile, "--no-model", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["summary"]["untouched"] == 4 and d["duplicate_text_groups"] == [["A", "F"]]
    r = run("doctor", "-w", wsfile, "--encoder", "hashing", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert {"a": "A", "b": "F"}.items() <= d["near_duplicates"][0].items()
    r = run("doctor", "-w", wsfile, "--encoder", "hashing")
    assert r.exit_code == 0 and "near-duplicate: A ~ F" in r.output


def test_segments_need_a_model(wsfile):
    r = run("segments", "-w", wsfile, "--encoder", "hashing")
    assert r.exit_code != 0 and "trained CF model" in r.output
