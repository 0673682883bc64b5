"""Impact of a drafted rule: touched queries, rank moves, metric change over suite and behaviour."""
from __future__ import annotations

import pytest

from merch_app.evaluation.suite_data import Suite
from merch_app.evaluation.rule_impact import impact_of, probe_queries, rule_impact, summarise
from merch_app.ranking.rules import MerchRule, RuleError, load_rules, save_rule
from ranking_fixtures import SAMPLE_ITEMS, SAMPLE_SYNONYMS, WordVectorEncoder, insert_items, make_bundle


def test_impact_of_fake_rankers_known_answer():
    base = {"a": ["1", "2", "3"], "b": ["4", "5", "6"], "c": ["7", "8", "9"]}

    def before(q, n):
        return base[q][:n]

    def after(q, n):  # the rule moves "2" to the top for query a only
        return ["2", "1", "3"] if q == "a" else base[q][:n]

    s = Suite("s")
    s.set_grade("a", "2", 3)
    s.set_grade("b", "4", 1)
    imp = impact_of(before, after, suite=s, queries=["c", "a"], k=3)
    assert imp.queries_checked == 3
    assert [t["query"] for t in imp.touched] == ["a"]
    t = imp.touched[0]
    assert t["sources"] == ["suite", "probe"]
    assert t["moves"] == [{"item_id": "1", "left": 1, "right": 2, "move": -1},
                          {"item_id": "2", "left": 2, "right": 1, "move": 1}]
    assert t["jaccard@3"] == 1.0 and t["rbo"] < 1.0
    suite = imp.suite
    assert suite["before"].mean["mrr"] == pytest.approx(0.75) and suite["after"].mean["mrr"] == 1.0
    assert suite["pair"]["wins"] == 1 and suite["pair"]["ties"] == 1
    assert imp.behaviour == {"skipped": "no behaviour-derived judgments"}
    d = imp.to_dict()
    assert d["queries_touched"] == 1 and d["suite"]["delta"]["mrr"] == pytest.approx(0.25)
    assert "1 of 3 queries change" in summarise(imp)


def test_probe_queries():
    assert probe_queries(MerchRule("pin", "Red  Mug", {"item_id": "x", "position": 1})) == ["red mug"]
    assert probe_queries(MerchRule("pin", "exact:lamp", {"item_id": "x", "position": 1})) == ["lamp"]
    assert probe_queries(MerchRule("hide", "mug*", {"item_id": "x"})) == []
    assert probe_queries(MerchRule("synonym", "*", {"terms": ["mug", "cup"]})) == ["mug", "cup"]


@pytest.fixture
def shop(ws):
    insert_items(ws, SAMPLE_ITEMS)
    with ws.conn:
        ws.insert_rows("events", [
            {"user_id": "u1", "session_id": "s1", "ts": "2024-01-01T10:00:00Z", "event_type": "search",
             "query": "candle"},
            {"user_id": "u1", "session_id": "s1", "ts": "2024-01-01T10:01:00Z", "event_type": "purchase",
             "item_id": "22005"},
            {"user_id": "u2", "session_id": "s2", "ts": "2024-01-01T11:00:00Z", "event_type": "search",
             "query": "candle"},
            {"user_id": "u2", "session_id": "s2", "ts": "2024-01-01T11:01:00Z", "event_type": "click",
             "item_id": "22005"},
        ])
    return make_bundle(ws, WordVectorEncoder(synonyms=SAMPLE_SYNONYMS))


def test_rule_impact_in_workspace(ws, shop):
    s = Suite("hand")
    s.set_grade("candle", "22005", 3)
    s.set_grade("heart", "22003", 3)
    other = save_rule(ws, MerchRule("hide", "heart", {"item_id": "85123A"}))
    draft = MerchRule("pin", "candle", {"item_id": "22005", "position": 1}, enabled=False)
    imp = rule_impact(ws, draft, bundle=shop, suite=s, weights="lex=1,text=0,cf=0,pop=0")
    assert [t["query"] for t in imp.touched] == ["candle"]
    assert imp.touched[0]["after"][0] == "22005"
    assert set(imp.touched[0]["sources"]) == {"suite", "behaviour", "probe", "log"}
    assert imp.touched[0]["searches"] == 2  # the log searched "candle" twice
    assert imp.suite["after"].by_query()["candle"].metrics["ndcg@10"] == 1.0
    assert imp.suite["pair"]["wins"] == 1 and imp.suite["pair"]["ties"] == 1
    # hidden by the other enabled rule on both sides: "heart" is not touched
    assert "85123A" not in imp.suite["before"].by_query()["heart"].items
    assert imp.behaviour["name"] == "behaviour"
    assert imp.behaviour["after"].mean["mrr"] == 1.0 > imp.behaviour["before"].mean["mrr"]
    assert [r.rule_id for r in load_rules(ws)] == [other.rule_id]  # nothing saved
    with pytest.raises(RuleError):
        rule_impact(ws, MerchRule("pin", "candle", {"item_id": "22005", "position": 0}), bundle=shop)


def test_rule_impact_without_behaviour_queries(ws):
    insert_items(ws, SAMPLE_ITEMS)
    bundle = make_bundle(ws, WordVectorEncoder())
    imp = rule_impact(ws, MerchRule("hide", "heart", {"item_id": "22003"}), bundle=bundle)
    assert imp.touched and imp.touched[0]["query"] == "heart"
    assert "carries a query" in imp.behaviour["skipped"] and imp.suite == {"skipped": "no suite chosen"}
