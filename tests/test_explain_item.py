"""Explanations: score split, lexical terms, word attribution, CF, rules, why-not."""
from __future__ import annotations

import json

import numpy as np
import pytest

from merch_app.explain.explanation import explain_item
from merch_app.explain.why_not import ItemNotFound, why_not
from merch_app.explain.word_attribution import word_attribution
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.rule_hook import RuleEffect
from ranking_fixtures import (SAMPLE_ITEMS, SAMPLE_SYNONYMS, TableCFModel,
                                       WordVectorEncoder, insert_items, make_bundle)
from merch_app.ranking.types import Filters, RankRequest, Weights

POP = {"85123A": 1.0, "71053": 0.2, "22001": 0.5, "22002": 0.4, "22003": 0.1, "22004": 0.9,
       "22005": 0.3, "22006": 0.0}


@pytest.fixture
def ranker(ws):
    insert_items(ws, SAMPLE_ITEMS)
    bundle = make_bundle(ws, WordVectorEncoder(synonyms=SAMPLE_SYNONYMS), popularity=POP)
    ids = [str(i) for i in bundle.item_ids]
    table = np.zeros((1, len(ids)))
    table[0, ids.index("22004")] = 3.0
    table[0, ids.index("22001")] = 1.0
    bundle.model = TableCFModel(["u1"], ids, table)
    return Ranker(ws, bundle)


def test_word_attribution_singles_out_matching_word():
    enc = WordVectorEncoder()
    item = enc.encode(["candle holder"])[0]
    words = [("candle", "title"), ("holder", "title")]
    res = word_attribution(enc, "red candle", item, words)
    drops = {d["word"]: d["drop"] for d in res["drops"]}
    assert max(drops, key=drops.get) == "candle"
    assert drops["candle"] > 0.3 > drops["red"]
    assert np.shape(res["matrix"]) == (2, 2)
    best = {b["query_word"]: b for b in res["best_matches"]}
    assert best["candle"]["item_word"] == "candle"
    assert best["candle"]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert res["matrix"][0][0] < 0.5  # "red" vs "candle"


def test_explanation_components_add_up_and_match_ranking(ranker):
    req = RankRequest(query="white heart", user_id="u1", k=3)
    rl = ranker.rank(req)
    for i, item_id in enumerate(rl.item_ids):
        exp = explain_item(ranker, req, item_id)
        assert exp.rank == i + 1 and exp.status == "shown" and exp.why_not is None
        total = sum(c["contribution"] for c in exp.components)
        assert total == pytest.approx(exp.score, abs=1e-6)
        assert exp.score == pytest.approx(rl.scores[i], abs=1e-9)


def test_lexical_terms_fields_and_contributions(ranker):
    req = RankRequest(query="white hear", k=3)
    exp = explain_item(ranker, req, "85123A")
    terms = {t["term"]: t for t in exp.lexical["terms"]}
    assert terms["white"]["fields"] == ["title"]
    assert terms["hear"]["prefix"] and terms["hear"]["label"] == "hear*"
    assert terms["hear"]["fields"] == ["title"]
    lex = next(c for c in exp.components if c["component"] == "lexical")
    assert sum(t["contribution"] for t in exp.lexical["terms"]) == pytest.approx(lex["contribution"])
    code = explain_item(ranker, RankRequest(query="85123A"), "85123A")
    assert code.lexical["terms"][0]["fields"] == ["item_id"]


def test_semantic_explanation_cosine_is_text_component(ranker):
    req = RankRequest(query="red candle", k=5)
    exp = explain_item(ranker, req, "22002")
    text = next(c for c in exp.components if c["component"] == "text")
    assert exp.semantic["cosine"] == pytest.approx(text["raw"], abs=1e-6)
    drops = {d["word"]: d["drop"] for d in exp.semantic["drops"]}
    assert drops["candle"] > drops["red"]
    assert {"word": "candle", "field": "title"} in exp.semantic["item_words"]


def test_cf_because_items_with_titles(ranker):
    exp = explain_item(ranker, RankRequest(query="mug", user_id="u1"), "22004")
    assert exp.cf["because"][0] == {"item_id": "22001", "title": "red candle", "contribution": 1.0}
    anon = explain_item(ranker, RankRequest(query="mug"), "22004")
    assert anon.cf == {}


def test_to_dict_is_json(ranker):
    exp = explain_item(ranker, RankRequest(query="heart", user_id="u1", k=1), "22002")
    d = json.loads(json.dumps(exp.to_dict()))
    assert d["item_id"] == "22002" and d["why_not"]["item_id"] == "22002"


def test_why_not_reports_rank_and_losing_component(ranker):
    req = RankRequest(query="white heart holder", k=2, weights=Weights(lex=1, text=0.2, cf=0, pop=0))
    full = ranker.rank(RankRequest(query="white heart holder", k=50, weights=req.weights))
    target = full.item_ids[3]
    wn = why_not(ranker, req, target)
    assert wn.rank == 4 and wn.status == "below cut-off"
    assert wn.last_shown["rank"] == 2 and wn.last_shown["item_id"] == full.item_ids[1]
    assert wn.gap == pytest.approx(full.scores[1] - full.scores[3])
    assert wn.loses_most_on == min(wn.deltas, key=wn.deltas.get)
    assert wn.deltas[wn.loses_most_on] < 0
    assert "ranked 4" in wn.summary()


def test_why_not_by_title_and_filtered(ranker):
    req = RankRequest(query="candle", k=2, filters=Filters(category="Home"))
    wn = why_not(ranker, req, "blue mug")
    assert wn.item_id == "22004" and wn.resolved_by == "title"
    assert wn.status == "filtered" and "category=Home" in wn.reason
    wn = why_not(ranker, req, "cushion")
    assert wn.item_id == "22003" and wn.resolved_by == "title search"
    with pytest.raises(ItemNotFound):
        why_not(ranker, req, "zzzz")


def test_why_not_not_a_candidate(ranker):
    req = RankRequest(query="heart", k=1, candidates=1, weights=Weights(lex=1, text=0, cf=0, pop=0))
    wn = why_not(ranker, req, "22004")
    assert wn.status == "not a candidate"
    assert "no lexical match" in wn.reason and "semantic cut-off" in wn.reason
    assert wn.loses_most_on == "lexical"


class Boost:
    name = "push mug"

    def apply(self, ctx):
        return RuleEffect(boost=np.array([0.5 if ctx.catalog.item_ids[p] == "22004" else 0.0
                                          for p in ctx.positions]))


def test_rules_in_explanation(ws, ranker):
    r = Ranker(ws, ranker.bundle, rules=[Boost()])
    exp = explain_item(r, RankRequest(query="mug"), "22004")
    assert exp.rules == [{"rule": "push mug", "effect": 0.5}]
    rules = next(c for c in exp.components if c["component"] == "rules")
    assert rules["contribution"] == pytest.approx(0.5)


def test_related_text_explanation_uses_source_title(ranker):
    req = RankRequest(mode="related", item_id="22001", k=3)
    exp = explain_item(ranker, req, "22002")
    assert exp.semantic["query_words"] == ["red", "candle"]
    assert exp.lexical is None
