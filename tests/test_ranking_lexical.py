"""FTS5 query building, BM25 decomposition, and hostile query strings."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merch_app.data.workspace import open_workspace
from merch_app.ranking.lexical import LexicalSearcher, query_terms, tokenize
from merch_app.ranking.ranker import Ranker
from ranking_fixtures import SAMPLE_ITEMS, insert_items, make_bundle
from merch_app.ranking.types import COMPONENTS, RankRequest


def test_tokenize_mirrors_unicode61():
    assert tokenize('T-LIGHT "holder" (red) OR x_y*') == ["t", "light", "holder", "red", "or", "x", "y"]


def test_query_terms_prefix_rules():
    q = query_terms("red hear")
    assert q.terms == ("red", "hear") and q.prefix_last
    assert q.match() == '"red" OR "hear"*'
    assert not query_terms("red hear ").prefix_last
    assert not query_terms("red h").prefix_last  # one letter: too broad
    assert not query_terms("red hear", prefix=False).prefix_last
    assert query_terms("a a a").terms == ("a",)
    assert query_terms("!!!").match() is None


@pytest.fixture
def db(ws):
    insert_items(ws, SAMPLE_ITEMS)
    return ws


def test_per_term_bm25_adds_up_to_query_bm25(db):
    lex = LexicalSearcher(db)
    terms = query_terms("white heart holder")
    rowids, scores, truncated = lex.search(terms, 10)
    assert not truncated and len(rowids) >= 2
    for rowid, score in zip(rowids, scores):
        parts = lex.term_scores(terms, int(rowid))
        assert sum(p["bm25"] for p in parts) == pytest.approx(score, rel=1e-9)
    first = lex.term_scores(terms, int(rowids[0]))
    assert all("title" in p["fields"] for p in first)


def test_scores_for_matches_search(db):
    lex = LexicalSearcher(db)
    terms = query_terms("candle red")
    rowids, scores, _ = lex.search(terms, 10)
    again = lex.scores_for(terms, list(rowids) + [99999])
    np.testing.assert_allclose(again[:-1], scores)
    assert again[-1] == 0


def test_truncation_flag(db):
    rowids, _, truncated = LexicalSearcher(db).search(query_terms("candle"), 1)
    assert len(rowids) == 1 and truncated


HOSTILE = ['"', '""', "'", "-", "*", "OR", "AND NOT", "NEAR(a b)", "(", ")", "a OR", "^x",
           "'; DROP TABLE items; --", "title:heart", "{title}: x", "x*y*", "\x00", "🙂 heart", "ß",
           "85123A*", "-heart", "heart -", "\\", "%", "_", "[", "\u202e"]


@pytest.fixture(scope="module")
def shared_ranker(tmp_path_factory):
    db = open_workspace(tmp_path_factory.mktemp("lex") / "ws.sqlite")
    insert_items(db, SAMPLE_ITEMS)
    yield Ranker(db, make_bundle(db))
    db.close()


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_queries_never_raise(shared_ranker, q):
    rl = shared_ranker.rank(RankRequest(query=q))
    total = sum(rl.components[c] for c in COMPONENTS)
    np.testing.assert_allclose(total, rl.scores, atol=1e-6)
    assert shared_ranker.catalog.n == len(SAMPLE_ITEMS)  # table intact


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40))
def test_any_text_never_raises(shared_ranker, q):
    rl = shared_ranker.rank(RankRequest(query=q, k=5))
    assert len(rl.item_ids) <= 5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(HOSTILE + ["heart", "red", "hold"]), max_size=6).map(" ".join))
def test_hostile_combinations_never_raise(shared_ranker, q):
    shared_ranker.rank(RankRequest(query=q, k=5))


def test_python_bm25_equals_fts5(db):
    from ranking_fixtures import insert_items as add

    add(db, [{"item_id": "X1", "title": "Café crème mug", "description": "crème brûlée mug mug"}])
    lex = LexicalSearcher(db)
    for text in ("white heart hold", "cafe mug", "crème", "red candle napkins", "mu", "85123A"):
        terms = query_terms(text)
        rowids, scores, _ = lex.search(terms, 50)
        assert len(rowids)
        np.testing.assert_allclose(lex.scores_for(terms, rowids), scores, rtol=1e-9)


def test_scan_budget_keeps_exact_scores(db, monkeypatch):
    import merch_app.ranking.lexical as lexical

    lex = LexicalSearcher(db)
    terms = query_terms("white red candle", prefix=False)
    full_ids, full_scores, _ = lex.search(terms, 50)
    monkeypatch.setattr(lexical, "OR_SCAN_BUDGET", 1)
    ids, scores, truncated = LexicalSearcher(db).search(terms, 50)
    assert truncated and 0 < len(ids) < len(full_ids)
    exact = dict(zip(full_ids.tolist(), full_scores.tolist()))
    for r, s in zip(ids.tolist(), scores.tolist()):
        assert s == pytest.approx(exact[r], rel=1e-9)


def test_all_terms_first_when_enough(db):
    lex = LexicalSearcher(db)
    ids, scores, truncated = lex.search(query_terms("white heart", prefix=False), 1)
    assert truncated and len(ids) == 1
    row = db.execute("SELECT item_id FROM items WHERE rowid = ?", [int(ids[0])]).fetchone()[0]
    assert row == "85123A"
