"""Spelling correction with weighted alternatives and search-log words (issue 19), on hand-made data."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merch_app.data.importer import import_file
from merch_app.data.spell_vocab import build_log_words, load_log_words, successful_word_sessions
from merch_app.data.term_tops import DEFAULT_FIELD_WEIGHTS, weights_sql
from merch_app.explain.explanation import explain_item
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.ranking.lexical import LexicalSearcher
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.spelling import Speller
from merch_app.ranking.types import COMPONENTS, RankRequest, Weights
from merch_app.services.forget import forget_user
from ranking_fixtures import insert_items, make_bundle

LEX_ONLY = Weights(lex=1, text=0, cf=0, pop=0)

# xmas in one item, mass in three; "xmass" is one edit from both
SHOP = [{"item_id": "X1", "title": "XMAS JUMPER"}, {"item_id": "M1", "title": "MASS POSTER"},
        {"item_id": "M2", "title": "MASS CANDLE"}, {"item_id": "M3", "title": "MASS PRINT"}]
# green in two items, garden in one; "grden" is one edit from both (the rest: so that green is
# in fewer than half of the items and has an IDF above FTS5's minimum)
GARDEN = [{"item_id": "G1", "title": "GARDEN TROWEL"}, {"item_id": "G2", "title": "GREEN TROWEL"},
          {"item_id": "G3", "title": "GREEN MUG"}, {"item_id": "G4", "title": "SPADE"},
          *({"item_id": f"F{n}", "title": t} for n, t in enumerate(["RAKE", "HOSE", "BUCKET", "GLOVES", "SEEDS"]))]


def _bm25(ws, phrase: str, item_id: str) -> float:
    """FTS5's own BM25 of one phrase for one item (the searcher's column weights)."""
    row = ws.execute(f"SELECT -bm25(items_fts, {weights_sql(DEFAULT_FIELD_WEIGHTS)}) FROM items_fts "
                     "WHERE items_fts MATCH ? AND rowid = (SELECT rowid FROM items WHERE item_id = ?)",
                     [f'"{phrase}"', item_id]).fetchone()
    return float(row[0]) if row else 0.0


def _log_csv(path, rows) -> str:
    """An events file: rows of (user, session, minute, type, item, query)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "session_id", "timestamp", "event_type", "item_id", "query"])
        for user, session, minute, etype, item, query in rows:
            w.writerow([user, session, f"2026-03-01 10:{minute:02d}:00", etype, item or "", query or ""])
    return str(path)


SHOP_LOG = [
    # two sessions search "xmas jumper" and click: xmas and jumper count 2 sessions each
    ("u1", "s1", 0, "search", None, "xmas jumper"), ("u1", "s1", 1, "click", "X1", None),
    ("u1", "s1", 5, "search", None, "xmas jumper"), ("u1", "s1", 6, "click", "X1", None),  # same session again
    ("u2", "s2", 0, "search", None, "xmas jumper"), ("u2", "s2", 2, "purchase", "X1", None),
    # searched without a click: does not count
    ("u3", "s3", 0, "search", None, "mass poster"),
    # clicked, but no item has "festive": not kept
    ("u4", "s4", 0, "search", None, "festive"), ("u4", "s4", 1, "click", "X1", None),
]


# ------------------------------------------------------------------- search-log words
def test_log_word_picks_the_shop_word_over_a_catalogue_near_miss(ws, tmp_path):
    insert_items(ws, SHOP)
    # catalogue only: prior = items / 8 index words' items; mass (3) beats xmas (1)
    fix = Speller(ws).correct("xmass")
    assert [(a.word, a.distance, a.doc_freq) for a in fix.alternatives] == [("mass", 1, 3), ("xmas", 1, 1)]
    assert fix.alternatives[1].weight == pytest.approx(math.sqrt(1 / 3))

    import_file(ws, _log_csv(tmp_path / "log.csv", SHOP_LOG))  # the import counts the log words
    assert load_log_words(ws) == {"jumper": 2, "xmas": 2}
    fix = Speller(ws).correct("xmass")
    # prior(xmas) = 0.5 * 1/8 + 0.5 * 2/4 = 0.3125, prior(mass) = 0.5 * 3/8 = 0.1875
    assert fix.corrected == "xmas"
    assert [(a.word, a.sessions) for a in fix.alternatives] == [("xmas", 2), ("mass", 0)]
    assert fix.alternatives[1].weight == pytest.approx(math.sqrt(0.1875 / 0.3125))
    # the corrector of the default searcher uses the log; one configured without it does not
    assert LexicalSearcher(ws).analyse("xmass", prefix=False).corrected_text == "xmas"
    assert Speller(ws, search_log=False).correct("xmass").corrected == "mass"


def test_log_words_are_dropped_when_events_changed_and_recounted_on_forget(ws, tmp_path):
    insert_items(ws, SHOP)
    import_file(ws, _log_csv(tmp_path / "log.csv", SHOP_LOG))
    assert successful_word_sessions(ws) == {"festive": 1, "jumper": 2, "xmas": 2}
    with ws.conn:  # an event written behind the importer's back: the counts are stale
        ws.execute("INSERT INTO events(user_id, item_id, event_type, ts) VALUES ('u9', 'X1', 'click', "
                   "'2026-03-02T10:00:00Z')")
    assert load_log_words(ws) == {}
    with ws.conn:
        build_log_words(ws)
    assert load_log_words(ws) == {"jumper": 2, "xmas": 2}
    forget_user(ws, "u2", retrain=False)
    assert load_log_words(ws) == {"jumper": 1, "xmas": 1}


# ------------------------------------------------------------------- weighted alternatives
@pytest.fixture
def garden_ranker(ws):
    insert_items(ws, GARDEN)
    return Ranker(ws, make_bundle(ws, HashingEncoder(32)))


def test_two_alternatives_both_get_weight_and_both_items_are_found(garden_ranker, ws):
    lex = garden_ranker.lexical
    a = lex.analyse("grden trowel", prefix=False)
    assert a.terms.terms == ("green", "garden", "trowel")
    assert a.terms.slots == (0, 0, 1)
    assert a.terms.weights == pytest.approx((1.0, math.sqrt(1 / 2), 1.0))
    assert a.corrected_text == "green trowel"  # "showing results for" keeps the best one
    assert a.notes()[0] == "showing results for \u201cgreen trowel\u201d (grden \u2192 green (also garden 0.71))"

    req = RankRequest(query="grden trowel", weights=LEX_ONLY, prefix=False, k=4)
    rl = garden_ranker.rank(req)
    # both found, each with its own alternative, above the item with green alone
    assert set(rl.item_ids[:2]) == {"G1", "G2"} and rl.item_ids[2] == "G3"
    terms = dict(zip(rl.item_ids, rl.item_terms))
    assert terms["G1"] == ["garden", "trowel"] and terms["G2"] == ["green", "trowel"] and terms["G3"] == ["green"]
    # the keyword score is BM25 of each alternative times its weight (FTS5's own bm25 per phrase)
    rowids, scores, _ = lex.search(a.terms, 10)
    got = {ws.execute("SELECT item_id FROM items WHERE rowid = ?", [r]).fetchone()[0]: sc
           for r, sc in zip(rowids.tolist(), scores.tolist())}
    assert got["G1"] == pytest.approx(math.sqrt(1 / 2) * _bm25(ws, "garden", "G1") + _bm25(ws, "trowel", "G1"))
    assert got["G2"] == pytest.approx(_bm25(ws, "green", "G2") + _bm25(ws, "trowel", "G2"))

    exp = explain_item(garden_ranker, req, "G1")
    assert exp.lexical["alternatives"] == [{"original": "grden", "matched": "garden",
                                            "weight": pytest.approx(math.sqrt(1 / 2)),
                                            "alternatives": ["green", "garden"]}]
    lexc = next(c for c in exp.components if c["component"] == "lexical")
    assert sum(t["contribution"] for t in exp.lexical["terms"]) == pytest.approx(lexc["contribution"], abs=1e-9)
    assert explain_item(garden_ranker, req, "G2").lexical["alternatives"][0]["matched"] == "green"
    assert explain_item(garden_ranker, req, "G4").lexical["alternatives"][0]["matched"] is None


def test_a_row_with_two_alternatives_counts_the_best_one_only(ws):
    insert_items(ws, [*GARDEN, {"item_id": "G5", "title": "GREEN GARDEN HOSE"}])
    lex = LexicalSearcher(ws)
    terms = lex.analyse("grden", prefix=False).terms
    assert terms.terms == ("green", "garden")
    w = terms.weights[1]
    rowid = ws.execute("SELECT rowid FROM items WHERE item_id = 'G5'").fetchone()[0]
    green, garden = _bm25(ws, "green", "G5"), _bm25(ws, "garden", "G5")
    assert lex.term_matrix(terms, [rowid]).tolist() == [pytest.approx(
        [green, 0.0] if green >= w * garden else [0.0, w * garden])]
    assert float(lex.scores_for(terms, [rowid])[0]) == pytest.approx(max(green, w * garden))
    assert float(lex.coverage(terms, lex.term_matrix(terms, [rowid]))[0]) == 1.0


def test_a_word_the_index_knows_is_not_corrected(garden_ranker):
    a = garden_ranker.lexical.analyse("green trowel", prefix=False)
    assert a.corrections == () and a.corrected_text is None
    assert a.terms.terms == ("green", "trowel") and a.terms.slots == () and a.terms.weights == ()
    rl = garden_ranker.rank(RankRequest(query="green trowel", weights=LEX_ONLY, prefix=False))
    assert rl.corrections == [] and rl.item_ids[0] == "G2"


def test_one_alternative_keeps_the_plain_query(ws):
    insert_items(ws, GARDEN)
    lex = LexicalSearcher(ws)
    lex.speller = Speller(ws, alternatives=1)
    terms = lex.analyse("grden trowel", prefix=False).terms
    assert terms.terms == ("green", "trowel") and terms.slots == ()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet="grdenawtolpmu", min_size=3, max_size=7)  # near misses of the vocabulary
                | st.sampled_from(["grden", "trowl", "OR", "NEAR", '"', "*", "-", "(", "\x00", "grdén", "gr\u0301den"]),
                max_size=5).map(" ".join))
def test_hostile_near_miss_queries_rank_without_error(garden_ranker, text):
    rl = garden_ranker.rank(RankRequest(query=text, k=3))
    assert len(rl.item_ids) <= 3
    total = sum(rl.components[c] for c in COMPONENTS)
    np.testing.assert_allclose(total, rl.scores, atol=1e-6)
    for c in rl.corrections:
        weights = [a["weight"] for a in c["alternatives"]]
        assert weights[0] == 1.0 and all(0 < w <= 1 for w in weights) and len(weights) <= 3
