"""Ranker: lexical/semantic candidates, fusion, filters, rules hook, modes."""
from __future__ import annotations

import numpy as np
import pytest

from merch_app.ranking.fusion import squash_cf
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.rule_hook import RuleEffect
from ranking_fixtures import (SAMPLE_ITEMS, SAMPLE_SYNONYMS, TableCFModel,
                                       WordVectorEncoder, insert_items, make_bundle)
from merch_app.ranking.types import COMPONENTS, Filters, RankRequest, Weights

POP = {"85123A": 1.0, "71053": 0.2, "22001": 0.5, "22002": 0.4, "22003": 0.1, "22004": 0.9,
       "22005": 0.3, "22006": 0.0}


def sample_model(item_ids):
    users = ["u1", "u2"]
    table = np.zeros((2, len(item_ids)))
    col = {i: n for n, i in enumerate(item_ids)}
    table[0, col["22004"]] = 3.0   # u1 loves the mug
    table[0, col["22003"]] = 2.0
    table[1, col["22001"]] = 1.0
    table[1, col["22002"]] = 0.5
    return TableCFModel(users, list(item_ids), table)


@pytest.fixture
def ranker(ws):
    insert_items(ws, SAMPLE_ITEMS)
    bundle = make_bundle(ws, WordVectorEncoder(synonyms=SAMPLE_SYNONYMS), popularity=POP)
    bundle.model = sample_model([str(i) for i in bundle.item_ids])
    return Ranker(ws, bundle)


def assert_sums(rl):
    total = sum(rl.components[c] for c in COMPONENTS)
    np.testing.assert_allclose(total, rl.scores, atol=1e-6)


def test_exact_item_code_is_first(ranker):
    rl = ranker.rank(RankRequest(query="85123A"))
    assert rl.item_ids[0] == "85123A"
    assert rl.raw_components["lexical"][0] == pytest.approx(1.0)


def test_prefix_of_last_token_matches(ranker):
    rl = ranker.rank(RankRequest(query="hear", weights=Weights(lex=1, text=0, cf=0, pop=0)))
    assert set(rl.item_ids[:2]) == {"85123A", "22003"}
    assert all(rl.raw_components["lexical"][:2] > 0)
    # a finished word (trailing space) is not a prefix any more
    rl = ranker.rank(RankRequest(query="hear ", weights=Weights(lex=1, text=0, cf=0, pop=0), literal=True))
    assert rl.raw_components["lexical"].max() == 0
    # ... and, not being a word of the catalogue, it is corrected unless the query is literal
    rl = ranker.rank(RankRequest(query="hear ", weights=Weights(lex=1, text=0, cf=0, pop=0)))
    assert rl.corrected_query == "heart " and rl.corrections[0]["original"] == "hear"
    assert set(rl.item_ids[:2]) == {"85123A", "22003"}


def test_lexical_only_weights_order_by_bm25(ranker):
    rl = ranker.rank(RankRequest(query="red candle", k=8, weights=Weights(lex=1, text=0, cf=0, pop=0)))
    assert rl.item_ids[0] == "22001"  # both words, in title and tags
    lex = rl.raw_components["lexical"]
    assert list(lex) == sorted(lex, reverse=True)
    assert_sums(rl)


def test_title_outweighs_description(ranker):
    rl = ranker.rank(RankRequest(query="red", weights=Weights(lex=1, text=0, cf=0, pop=0)))
    ids = rl.item_ids
    assert ids.index("22001") < ids.index("22006")  # title hit before description hit


def test_semantic_only_match_via_synonym(ranker):
    rl = ranker.rank(RankRequest(query="candle", k=8, weights=Weights(lex=0, text=1, cf=0, pop=0)))
    pos = rl.item_ids.index("22005")
    assert rl.raw_components["lexical"][pos] == 0
    assert rl.raw_components["text"][pos] > 0.3
    assert pos < rl.item_ids.index("22004")  # above an unrelated mug


def test_text_component_is_cosine(ranker):
    rl = ranker.rank(RankRequest(query="white heart", k=8))
    q = ranker.bundle.encoder.encode(["white heart"])[0]
    for item_id, cos in zip(rl.item_ids, rl.raw_components["text"]):
        v = ranker.bundle.item_vectors[ranker.bundle.item_pos[item_id]]
        assert cos == pytest.approx(float(v @ q), abs=1e-5)
    assert_sums(rl)


def test_fusion_formula_and_normalisation(ranker):
    w = Weights(lex=0.7, text=0.2, cf=0.5, pop=0.1)
    rl = ranker.rank(RankRequest(query="heart", user_id="u1", weights=w, k=8))
    assert rl.raw_components["lexical"].max() == pytest.approx(1.0)
    np.testing.assert_allclose(rl.components["lexical"], 0.7 * rl.raw_components["lexical"])
    np.testing.assert_allclose(rl.components["popularity"], 0.1 * rl.raw_components["popularity"])
    cf_all = squash_cf(ranker.bundle.model.score("u1"))
    for item_id, cf in zip(rl.item_ids, rl.raw_components["cf"]):
        assert cf == pytest.approx(cf_all[ranker.bundle.item_pos[item_id]])
    assert list(rl.scores) == sorted(rl.scores, reverse=True)
    assert_sums(rl)
    assert rl.all_candidate_scores[0] == pytest.approx(rl.scores[0])
    assert rl.n_candidates >= len(rl.item_ids)


def test_user_cf_reorders_search(ranker):
    w = Weights(lex=0.5, text=0.0, cf=1.0, pop=0.0)
    anon = ranker.rank(RankRequest(query="heart", weights=w))
    u1 = ranker.rank(RankRequest(query="heart", user_id="u1", weights=w))
    assert anon.raw_components["cf"].max() == 0
    assert u1.item_ids[0] == "22003"  # u1 has CF evidence for the cushion


def test_unknown_user_gets_a_note_not_an_error(ranker):
    rl = ranker.rank(RankRequest(mode="recommend", user_id="nobody", k=3))
    assert rl.item_ids == ["85123A", "22004", "22001"]  # popularity order
    assert any("unknown" in n for n in rl.notes)


def test_recommend_uses_cf_then_popularity(ranker):
    rl = ranker.rank(RankRequest(mode="recommend", user_id="u1", k=3,
                                 weights=Weights(cf=1.0, pop=0.01)))
    assert rl.item_ids[:2] == ["22004", "22003"]
    assert rl.raw_components["lexical"].max() == 0
    assert_sums(rl)


def test_related_by_text_and_cf(ranker):
    lists = ranker.related_lists("22001", k=3)
    assert "22001" not in lists["text"].item_ids
    assert lists["text"].item_ids[0] in {"22002", "22005"}  # shares "candle"
    assert_sums(lists["text"])
    assert lists["cf"].raw_components["cf"][0] == pytest.approx(1.0)
    with pytest.raises(KeyError):
        ranker.rank(RankRequest(mode="related", item_id="nope"))


def test_filters_category_price_events(ranker, ws):
    rl = ranker.rank(RankRequest(query="mug candle heart", filters=Filters(category="kitchen")))
    assert rl.item_ids == ["22004"]
    rl = ranker.rank(RankRequest(query="candle heart holder", filters=Filters(price_min=2.0, price_max=3.0)))
    assert rl.item_ids and all(2.0 <= p <= 3.0 for p in rl.prices)
    with ws.conn:
        ws.conn.execute("INSERT INTO events (user_id, item_id, event_type, ts) "
                        "VALUES ('u1', '22002', 'purchase', '2011-01-01T00:00:00Z')")
    fresh = Ranker(ws, ranker.bundle)
    rl = fresh.rank(RankRequest(query="candle", filters=Filters(has_events=True)))
    assert rl.item_ids == ["22002"]


def test_filtered_semantic_search_asks_index_for_more(ranker, monkeypatch):
    import merch_app.ranking.semantic as semantic

    monkeypatch.setattr(semantic, "BRUTE_FORCE_MAX", 0)
    rl = ranker.rank(RankRequest(query="zzz qqq", k=2, candidates=2, filters=Filters(category="Party"),
                                 weights=Weights(lex=0, text=1, cf=0, pop=0)))
    assert rl.item_ids == ["22006"]


def test_position_of_matches_rank(ranker):
    req = RankRequest(query="heart candle", k=2)
    full = ranker.rank(RankRequest(query="heart candle", k=100))
    for n, item_id in enumerate(full.item_ids):
        rank, info = ranker.position_of(req, item_id)
        assert rank == n + 1
        assert info["status"] == ("shown" if rank <= 2 else "below cut-off")
        assert info["score"] == pytest.approx(full.scores[n])


def test_position_of_filtered_and_non_candidates(ranker):
    req = RankRequest(query="heart", filters=Filters(category="Home"), candidates=1,
                      weights=Weights(lex=1, text=0, cf=0, pop=0))
    rank, info = ranker.position_of(req, "22003")
    assert rank is None and info["status"] == "filtered"
    assert "category=Home" in info["reason"]
    rank, info = ranker.position_of(req, "22002")
    assert rank is None and info["status"] == "not a candidate"
    assert "no lexical match" in info["reason"]
    rank, info = ranker.position_of(req, "missing")
    assert info["status"] == "unknown item"


class BoostRule:
    name = "boost napkins"

    def apply(self, ctx):
        ids = [ctx.catalog.item_ids[p] for p in ctx.positions]
        return RuleEffect(boost=np.array([5.0 if i == "22006" else 0.0 for i in ids]))


class HideRule:
    name = "hide lantern"

    def apply(self, ctx):
        ids = [ctx.catalog.item_ids[p] for p in ctx.positions]
        return RuleEffect(hide=np.array([i == "71053" for i in ids]))


class PinRule:
    name = "pin mug second"

    def apply(self, ctx):
        ids = [ctx.catalog.item_ids[p] for p in ctx.positions]
        return RuleEffect(pins={ids.index("22004"): 1} if "22004" in ids else {})


def test_rules_hook_boost_hide_pin(ws, ranker):
    r = Ranker(ws, ranker.bundle, rules=[BoostRule(), HideRule(), PinRule()])
    req = RankRequest(query="white heart red", k=8)
    rl = r.rank(req)
    assert rl.item_ids[0] == "22006"
    assert rl.components["rules"][0] == pytest.approx(5.0)
    assert "71053" not in rl.item_ids
    assert rl.item_ids[1] == "22004"
    assert list(rl.scores) == sorted(rl.scores, reverse=True)
    assert_sums(rl)
    assert rl.rule_effects["22006"][0]["rule"] == "boost napkins"
    rank, info = r.position_of(req, "71053")
    assert rank is None and info["status"] == "hidden" and "hide lantern" in info["reason"]


def test_no_rules_means_zero_rules_component(ranker):
    rl = ranker.rank(RankRequest(query="heart"))
    assert not rl.components["rules"].any()


def test_empty_or_symbol_query_browses_by_popularity(ranker):
    for q in ("", "   ", "!!! ---"):
        rl = ranker.rank(RankRequest(query=q, k=3))
        assert rl.item_ids == ["85123A", "22004", "22001"]


def test_query_vectors_are_cached(ranker):
    enc = ranker.bundle.encoder
    ranker.rank(RankRequest(query="heart"))
    calls = enc.calls
    ranker.rank(RankRequest(query="heart", k=3))
    ranker.rank(RankRequest(query="heart", k=3, weights=Weights(lex=0.1)))
    assert enc.calls == calls


def test_weights_parse():
    w = Weights.parse("lex=0.5, text=0.25,pop=0")
    assert (w.lex, w.text, w.pop) == (0.5, 0.25, 0.0)
    assert w.cf == Weights().cf
    for bad in ("lex", "foo=1", "lex=abc", "text=nan"):
        with pytest.raises(ValueError):
            Weights.parse(bad)


def test_bad_mode(ranker):
    with pytest.raises(ValueError):
        ranker.rank(RankRequest(mode="nope"))


def test_filtered_search_with_real_vector_index(ranker, monkeypatch):
    import merch_app.ranking.semantic as semantic
    from merch_app.model.vector_index import VectorIndex

    monkeypatch.setattr(semantic, "BRUTE_FORCE_MAX", 0)
    ranker.bundle.index = VectorIndex.from_vectors(ranker.bundle.item_vectors, kind="flat")
    rl = ranker.rank(RankRequest(query="zzz qqq", k=3, candidates=3, filters=Filters(category="Home"),
                                 weights=Weights(lex=0, text=1, cf=0, pop=0)))
    assert len(rl.item_ids) == 3 and set(rl.categories) == {"Home"}
    mask = ranker.catalog.filter_mask(Filters(category="Home"))
    q = ranker.query_vector("zzz qqq")
    sims = np.where(mask, ranker.item_vectors @ q, -np.inf)
    expected = [ranker.catalog.item_ids[i] for i in np.argsort(-sims)[:3]]
    assert rl.item_ids == expected


def test_float16_item_vectors_rank_like_float32(ranker, ws):
    """A large catalogue keeps its vectors in float16 (text_matrix): same lists, cosines within 1e-3."""
    half = make_bundle(ws, WordVectorEncoder(synonyms=SAMPLE_SYNONYMS), popularity=POP)
    half.item_vectors = half.item_vectors.astype(np.float16)
    half.model = ranker.bundle.model
    compact = Ranker(ws, half)
    assert compact.item_vectors.dtype == np.float16
    for request in (RankRequest(query="candle holder"), RankRequest(query="mug", user_id="u1"),
                    RankRequest(query="candle heart", filters=Filters(price_min=2.0, price_max=3.0)),
                    RankRequest(mode="related", item_id="22001", k=3)):
        a, b = ranker.rank(request), compact.rank(request)
        assert a.item_ids == b.item_ids
        np.testing.assert_allclose(a.raw_components["text"], b.raw_components["text"], atol=1e-3)
        assert_sums(b)
