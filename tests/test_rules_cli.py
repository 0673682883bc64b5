"""CLI of the rule lifecycle: add with window/status/match/owner, set-status, conflicts, usage, log (issue 21)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.workspace import open_workspace
from ranking_fixtures import insert_items
from test_rules_lifecycle import ITEMS
from test_rules_usage import LOG

ENC = ["--encoder", "hashing"]


@pytest.fixture
def shop(ws_path):
    db = open_workspace(ws_path)
    insert_items(db, ITEMS)
    with db.conn:
        db.insert_rows("events", LOG)
    db.close()
    return ws_path


def invoke(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def add(shop, *args, ok=True):
    return invoke("rules", "add", *args, "-w", shop, "--json", "--by", "ana", ok=ok)


def test_add_with_lifecycle_fields_and_list_by_status(shop):
    out = json.loads(add(shop, "pin", "--pattern", "christmas", "--match", "exact", "--item", "M1", "--start",
                         "2026-11-27", "--end", "2026-11-30", "--owner", "ana", "--comment", "Black Friday",
                         "--rule-tag", "bf", "--rule-tag", "lights").output)
    assert (out["status"], out["match"], out["start"], out["end"]) == ("live", "exact", "2026-11-27", "2026-11-30")
    assert out["owner"] == "ana" and out["tags"] == ["bf", "lights"] and out["conflicts"] == []
    draft = json.loads(add(shop, "hide", "--pattern", "mug", "--item", "F1", "--status", "draft").output)
    listed = invoke("rules", "list", "-w", shop, "--as-of", "2026-11-28").output
    assert "[on ]  pin      live      exact  'christmas'" in listed and "2026-11-27..2026-11-30" in listed
    assert "[off]  hide     draft" in listed
    rows = json.loads(invoke("rules", "list", "-w", shop, "--json", "--status", "expired", "--as-of",
                             "2026-12-01").output)
    assert [r["rule_id"] for r in rows] == [out["rule_id"]]
    res = invoke("rules", "add", "pin", "--item", "M1", "--start", "soon", "-w", shop, ok=False)
    assert "'soon' is not a date" in res.output
    made = json.loads(invoke("rules", "set-status", draft["rule_id"], "live", "-w", shop, "--json").output)
    assert made["status"] == "live"


def test_conflict_refused_then_forced_and_listed(shop):
    first = json.loads(add(shop, "pin", "--pattern", "christmas", "--item", "L1").output)
    res = add(shop, "pin", "--pattern", "christmas lights", "--item", "T1", ok=False)
    assert res.exit_code != 0 and "refused" in res.output and f"pin #{first['rule_id']}" in res.output
    assert len(json.loads(invoke("rules", "list", "-w", shop, "--json").output)) == 1
    forced = json.loads(add(shop, "pin", "--pattern", "christmas lights", "--item", "T1", "--force").output)
    assert forced["conflicts"][0]["kind"] == "pin position"
    out = json.loads(invoke("rules", "conflicts", "-w", shop, "--json").output)
    assert out["precedence"].startswith("hide > pin > slot > bury > boost")
    assert [(c["kind"], c["winner"], c["query"]) for c in out["conflicts"]] == [
        ("pin position", forced["rule_id"], "christmas lights")]
    text = invoke("rules", "conflicts", "-w", shop).output
    assert f"pin #{forced['rule_id']} wins: newer rule" in text
    # the explanation of the result names the precedence
    exp = json.loads(invoke("explain", "christmas lights", "--item", "L1", "-w", shop, "--json", *ENC).output)
    assert any(f"pin #{forced['rule_id']} beat pin #{first['rule_id']}" in p for r in exp["rules"]
               for p in r.get("precedence", []))


def test_usage_and_log(shop):
    rid = json.loads(add(shop, "pin", "--pattern", "christmas", "--item", "M1").output)["rule_id"]
    never = json.loads(add(shop, "hide", "--pattern", "lamp", "--item", "F1").output)["rule_id"]
    out = json.loads(invoke("rules", "usage", "-w", shop, "--json", "--no-impact").output)
    by_id = {r["rule_id"]: r for r in out["rules"]}
    assert by_id[rid]["searches"] == 4 and by_id[never]["searches"] == 0 and out["never_fire"] == [never]
    assert out["searches"] == 5
    assert json.loads(invoke("rules", "usage", "-w", shop, "--json", "--no-impact",
                             "--include-prefixes").output)["searches"] == 8
    text = invoke("rules", "usage", "-w", shop, "--no-impact").output
    assert "never fires" in text and "as-you-type prefixes left out" in text
    invoke("rules", "disable", rid, "-w", shop, "--by", "ben")
    log = json.loads(invoke("rules", "log", rid, "-w", shop, "--json").output)
    assert [(e["action"], e["actor"]) for e in log] == [("status", "ben"), ("created", "ana")]
    assert log[0]["changes"] == {"status": ["live", "draft"]}
    assert "status live → draft" in invoke("rules", "log", "-w", shop).output


def test_slot_and_redirect_rules_from_the_cli(shop):
    out = json.loads(invoke("rules", "add", "slot", "--pattern", "heart", "--category", "Home", "--position", "1",
                            "-w", shop, "--json").output)
    assert out["kind"] == "slot" and out["params"] == {"attribute": "category", "value": "Home", "position": 1}
    assert out["description"] == "slot category=Home at 1 for 'heart'"
    out = json.loads(invoke("rules", "add", "redirect", "--pattern", "gift card", "--match", "phrase",
                            "--url", "https://shop.example/gift-cards", "-w", shop, "--json").output)
    assert out["description"] == "redirect 'gift card' to https://shop.example/gift-cards"
    res = invoke("query", "gift card", "-w", shop, "--encoder", "hashing")
    assert "note: redirect to https://shop.example/gift-cards (redirect #2" in res.output
    res = invoke("rules", "add", "redirect", "--pattern", "*", "--url", "https://x", "-w", shop, ok=False)
    assert res.exit_code == 1 and "needs a query pattern" in res.output
