"""A starter suite derived from purchases: known queries and grades on a hand-made shop."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.evaluation.starter_suite import SOURCE, derive_starter_suite
from merch_app.evaluation.suite_data import SuiteError
from merch_app.evaluation.suites import load_suite
from model_fixtures import fill_workspace

ITEMS = [{"item_id": i, "title": t} for i, t in (
    ("B1", "RED RETROSPOT LUNCH BAG"), ("B2", "PINK POLKADOT LUNCH BAG"), ("B3", "JUMBO LUNCH BAG SPACEBOY"),
    ("B4", "LUNCH BAG WOODLAND"), ("M1", "RED RETROSPOT MUG"), ("M2", "ENAMEL MUG WHITE"),
    ("M3", "ENAMEL MUG BLUE"), ("C1", "SCENTED CANDLE"))]


def buy(user, item, day):
    return {"user_id": user, "item_id": item, "event_type": "purchase", "ts": f"2024-01-{day:02d}T10:00:00Z"}


def shop_events():
    ev = [buy(f"u{n}", "B1", 1 + n % 20) for n in range(8)]  # the best-selling lunch bag: 8 buyers
    ev += [buy("u1", "B2", 3), buy("u2", "B2", 4), buy("u3", "B3", 5)]  # B4 never bought
    ev += [buy("u1", "M1", 6), buy("u4", "M2", 7), buy("u5", "M2", 8)]
    return ev


def test_queries_are_title_words_matching_a_few_items_graded_by_buyers(ws):
    fill_workspace(ws, ITEMS, shop_events())
    suite = derive_starter_suite(ws, min_items=3, max_items=4)
    assert suite.source == SOURCE and "derived from purchases" in suite.description
    # "lunch bag" and "bag" and "lunch" match the same 4 titles: one query per word set, most bought first
    assert suite.queries[:3] == ["bag", "lunch", "lunch bag"]
    assert "mug" in suite.queries and "candle" not in suite.queries  # 1 title only: too few
    assert "red retrospot" not in suite.queries  # 2 titles
    grades = suite.grades("lunch bag")
    assert grades == {"B1": 3, "B2": 2, "B3": 2, "B4": 1}
    assert suite.grades("mug") == {"M2": 3, "M1": 2, "M3": 1}


def test_no_purchases_is_a_sentence(ws):
    fill_workspace(ws, ITEMS, [{"user_id": "u1", "item_id": "B1", "event_type": "view", "ts": "2024-01-01T10:00:00Z"}])
    with pytest.raises(SuiteError, match="no purchases in this workspace"):
        derive_starter_suite(ws)


def test_cli_derive_stores_the_suite(ws, ws_path):
    fill_workspace(ws, ITEMS, shop_events())
    res = CliRunner().invoke(cli, ["suite", "derive", "--queries", "2", "-w", str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["name"] == "starter" and doc["queries"] == 2 and doc["source"] == SOURCE
    assert load_suite(ws, "starter").queries == ["bag", "lunch"]


def test_without_a_search_log_rule_previews_measure_on_the_derived_suite(ws):
    from merch_app.evaluation.rule_impact import DERIVED_NAME, rule_impact, summarise
    from merch_app.ranking.rules import MerchRule
    from ranking_fixtures import make_bundle

    fill_workspace(ws, ITEMS, shop_events())
    rule = MerchRule(kind="pin", pattern="lunch bag", params={"item_id": "C1", "position": 1}, match="phrase")
    impact = rule_impact(ws, rule, bundle=make_bundle(ws), k=4)
    block = impact.behaviour
    assert block["name"] == DERIVED_NAME
    before, after = block["before"].mean["ndcg@10"], block["after"].mean["ndcg@10"]
    assert after < before  # a candle on top of the lunch bags
    assert f"behaviour '{DERIVED_NAME}'" in summarise(impact)
