"""Rule usage over a hand-made search log, and the preview of every query a rule fires on (issue 21)."""
from __future__ import annotations

import math
from datetime import date, timedelta

import pytest

from merch_app.data.search_log import query_volumes
from merch_app.evaluation.rule_impact import rule_impact, summarise
from merch_app.evaluation.rule_usage import rule_usage
from merch_app.evaluation.suite_data import Suite
from merch_app.evaluation.suites import save_suite
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.rules import MerchRule, save_rule
from merch_app.ranking.types import RankRequest, Weights
from ranking_fixtures import WordVectorEncoder, insert_items, make_bundle
from test_rules_lifecycle import ITEMS

LEX = "lex=1,text=0,cf=0,pop=0"


def _search(session, ts, query):
    return {"user_id": session, "session_id": session, "ts": ts, "event_type": "search", "query": query}


def _event(session, ts, kind, item):
    return {"user_id": session, "session_id": session, "ts": ts, "event_type": kind, "item_id": item}


LOG = [
    # typed one burst: only "christmas lights" was a finished search
    _search("s1", "2026-11-27T10:00:00Z", "christm"), _search("s1", "2026-11-27T10:00:02Z", "christmas"),
    _search("s1", "2026-11-27T10:00:05Z", "christmas l"), _search("s1", "2026-11-27T10:00:07Z", "christmas lights"),
    _event("s1", "2026-11-27T10:01:00Z", "click", "L1"),
    _search("s2", "2026-11-28T09:00:00Z", "Christmas"), _event("s2", "2026-11-28T09:01:00Z", "purchase", "T1"),
    # five minutes apart: two searches, not typing
    _search("s3", "2026-11-29T09:00:00Z", "christmas"), _search("s3", "2026-11-29T09:05:00Z", "christmas tree"),
    _search("s4", "2026-11-29T12:00:00Z", "mug"), _event("s4", "2026-11-29T12:00:30Z", "click", "M1"),
]


@pytest.fixture
def shop(ws):
    insert_items(ws, ITEMS)
    with ws.conn:
        ws.insert_rows("events", LOG)
    return make_bundle(ws, WordVectorEncoder())


def test_query_volumes_leave_out_as_you_type_prefixes(ws, shop):
    v = query_volumes(ws)
    assert {k: q.searches for k, q in v.items()} == {"christmas": 2, "christmas lights": 1, "christmas tree": 1,
                                                     "mug": 1}
    assert v["christmas"].days == {"2026-11-28": 1, "2026-11-29": 1}
    with_prefixes = query_volumes(ws, include_prefixes=True)
    assert sum(q.searches for q in with_prefixes.values()) == 8 and with_prefixes["christm"].searches == 1


def test_usage_counts_on_a_hand_made_log(ws, shop):
    phrase = save_rule(ws, MerchRule("pin", "christmas", {"item_id": "M1", "position": 1}, match="phrase"))
    exact = save_rule(ws, MerchRule("pin", "christmas", {"item_id": "T1", "position": 2}, match="exact"))
    both = save_rule(ws, MerchRule("hide", "lights christmas", {"item_id": "F1"}, match="all"))
    regex = save_rule(ws, MerchRule("boost", "^christ", {"attribute": "item", "value": "T2", "weight": 1},
                                    match="regex", start="2026-11-29"))
    never = save_rule(ws, MerchRule("hide", "lamp", {"item_id": "F1"}, status="draft"))
    report = rule_usage(ws)
    got = {r.rule.rule_id: (r.searches, r.queries, r.in_window) for r in report.rows}
    assert got == {phrase.rule_id: (4, 3, 4), exact.rule_id: (2, 1, 2), both.rule_id: (1, 1, 1),
                   regex.rule_id: (4, 3, 2), never.rule_id: (0, 0, 0)}
    assert report.searches == 5 and [r.rule.rule_id for r in report.never_fire] == [never.rule_id]
    assert report.rows[0].top_queries[0] == ("Christmas", 2)  # as first searched
    assert report.to_dict()["never_fire"] == [never.rule_id] and report.negative == []  # no bundle: no impact
    with_prefixes = {r.rule.rule_id: r.searches for r in rule_usage(ws, include_prefixes=True).rows}
    assert with_prefixes[regex.rule_id] == 7 and with_prefixes[phrase.rule_id] == 6


def test_usage_flags_a_rule_whose_measured_impact_is_negative(ws, shop):
    s = Suite("lights")
    s.set_grade("christmas lights", "L1", 3)
    s.set_grade("christmas lights", "L2", 2)
    save_suite(ws, s)
    bad = save_rule(ws, MerchRule("pin", "christmas", {"item_id": "M1", "position": 1}))
    good = save_rule(ws, MerchRule("boost", "lights", {"attribute": "item", "value": "L1", "weight": 3}))
    report = rule_usage(ws, bundle=shop)
    impact = {r.rule.rule_id: r.impact[0]["delta"] for r in report.rows}
    assert impact[bad.rule_id] < 0 and impact[good.rule_id] >= 0
    assert [r.rule.rule_id for r in report.negative] == [bad.rule_id] and report.suites == ["lights"]


def test_preview_lists_every_query_from_the_log_and_suites_with_judged_change(ws, shop):
    s = Suite("lights")
    s.set_grade("christmas lights", "L1", 3)
    s.add_query("mug")
    save_suite(ws, s)
    draft = MerchRule("pin", "christmas", {"item_id": "M1", "position": 1}, status="draft")
    imp = rule_impact(ws, draft, bundle=shop, weights=LEX)  # no suite chosen: the stored ones still judge
    rows = {q["query"]: q for q in imp.queries}
    assert set(rows) == {"christmas", "christmas lights", "christmas tree"}  # not "christm" nor "mug"
    assert rows["christmas"]["searches"] == 2 and rows["christmas"]["sources"] == ["probe", "log"]
    assert set(rows["christmas lights"]["sources"]) >= {"log", "suite lights"}
    judged = rows["christmas lights"]["judged"]
    # L1 (the one relevant item) moves from rank 2 to 3 under the pinned mug: NDCG 1/log2(3) -> 1/log2(4)
    assert judged[0]["suite"] == "lights"
    assert judged[0]["before"] == pytest.approx(1 / math.log2(3)) and judged[0]["after"] == pytest.approx(0.5)
    assert "fires on 3 queries (3 from the search log, 4 searches)" in summarise(imp)


def test_draft_shows_in_preview_and_as_of_next_week(ws, shop):
    next_week = (date.today() + timedelta(days=7)).isoformat()
    draft = save_rule(ws, MerchRule("pin", "christmas", {"item_id": "M1", "position": 1}, status="draft",
                                    start=next_week))
    ranker = Ranker.for_workspace(ws, shop)  # the draft is not ranked with, as of any day
    for day in (None, next_week):
        top = ranker.rank(RankRequest(query="christmas", k=3, weights=Weights(lex=1, text=0, cf=0, pop=0),
                                      prefix=False, as_of=day)).item_ids
        assert top[0] != "M1"
    today = rule_impact(ws, draft, bundle=shop, weights=LEX)
    assert today.touched == [] and today.fired  # fires on the queries, but not before its window
    later = rule_impact(ws, draft, bundle=shop, weights=LEX, as_of=next_week)
    assert {t["query"] for t in later.touched} == {"christmas", "christmas lights", "christmas tree"}
    assert all(t["after"][0] == "M1" for t in later.touched) and f"as of {next_week}" in summarise(later)
