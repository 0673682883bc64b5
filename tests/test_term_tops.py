"""Top lists of common terms: same answers as the exact FTS5 path, dropped when the index changes."""
from __future__ import annotations

import numpy as np
import pytest

from merch_app.data.importer import import_file
from merch_app.data import term_tops
from merch_app.data.term_tops import DEFAULT_FIELD_WEIGHTS, weights_sql
from merch_app.ranking.lexical import LexicalSearcher, query_terms
from merch_app.data.term_tops import build_term_tops, load_term_tops
from ranking_fixtures import insert_items

W = weights_sql(DEFAULT_FIELD_WEIGHTS)


def _catalogue(n: int = 120) -> list[dict]:
    rng = np.random.default_rng(3)
    colours = ["red", "blue", "green"]
    nouns = ["candle", "cushion", "mug", "lantern", "card"]
    items = []
    for i in range(n):
        words = [colours[i % 3], nouns[int(rng.integers(5))]]
        if i % 7 == 0:
            words.append(nouns[int(rng.integers(5))])  # some rows repeat a noun: higher term frequency
        items.append({"item_id": f"X{i:04d}", "title": " ".join(words),
                      "description": "for every home" + (" and garden" if i % 5 == 0 else ""),
                      "category": "Home", "price": 1.0 + i})
    return items


@pytest.fixture
def big(ws):
    insert_items(ws, _catalogue())
    with ws.conn:
        n = build_term_tops(ws, W, min_df=10, k=60)
    assert n > 0
    return ws


def _exact(db, text: str, limit: int):
    lex = LexicalSearcher(db)
    lex._tops_checked = True  # no top lists: the exact FTS5 path
    return lex.search(query_terms(text), limit)


@pytest.mark.parametrize("text", ["red", "candle", "ho", "cand", "gard"])
def test_one_common_phrase_answers_like_fts5(big, text):
    lex = LexicalSearcher(big)
    assert lex.term_tops is not None and lex.term_tops.get(*lex._folded(query_terms(text), 0)) is not None
    rowids, scores, truncated = lex.search(query_terms(text), 25)
    e_rowids, e_scores, e_truncated = _exact(big, text, 25)
    np.testing.assert_allclose(scores, e_scores, rtol=1e-9)
    # equal scores may come in another order; the sets of rows at each score agree
    assert sorted(zip(np.round(scores, 9), rowids)) == sorted(zip(np.round(e_scores, 9), e_rowids))
    assert truncated == e_truncated


def test_several_terms_keep_exact_scores_and_the_best_rows(big):
    lex = LexicalSearcher(big)
    for text in ("red candle", "blue mug ho", "green lantern card", "red ho"):
        rowids, scores, _ = lex.search(query_terms(text), 20)
        e_rowids, e_scores, _ = _exact(big, text, 20)
        # every returned score is the row's exact BM25 for the whole query
        np.testing.assert_allclose(lex.scores_for(query_terms(text), rowids), scores, rtol=1e-9)
        # the best row is found, and the list is nearly the exact one
        assert scores[0] == pytest.approx(e_scores[0], rel=1e-6, abs=1e-5)
        assert len(set(rowids) & set(e_rowids)) >= 15, text


def test_prefix_matching_every_row_does_not_drive_the_and_query(big):
    lex = LexicalSearcher(big)
    df, _, _ = lex.term_tops.get("ho", True)
    assert df == 120  # "home" is in every description
    rowids, scores, _ = lex.search(query_terms("lantern ho"), 10)
    titles = [big.execute("SELECT title FROM items WHERE rowid = ?", [int(r)]).fetchone()[0] for r in rowids]
    assert all("lantern" in t for t in titles)


def test_lists_are_ignored_once_the_index_changes(big):
    assert load_term_tops(big, W) is not None
    insert_items(big, [{"item_id": "NEW1", "title": "red candle deluxe", "price": 9.0}])
    assert load_term_tops(big, W) is None  # stale: search takes the exact path
    lex = LexicalSearcher(big)
    rowids, scores, _ = lex.search(query_terms("red"), 25)
    e_rowids, e_scores, _ = _exact(big, "red", 25)
    np.testing.assert_allclose(scores, e_scores)
    assert load_term_tops(big, weights_sql({**DEFAULT_FIELD_WEIGHTS, "title": 9.0})) is None


def test_import_stores_the_lists(ws, tmp_path, monkeypatch):
    monkeypatch.setattr(term_tops, "MIN_DF", 5)
    rows = ["item_id,title,description"] + [f"A{i},red mug {i},for the home" for i in range(12)]
    f = tmp_path / "catalogue.csv"
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    r = import_file(ws, f, kind="catalogue")
    assert r.status == "ok"
    lists = {(t, p) for t, p in ws.execute("SELECT term, prefix FROM fts_tops")}
    assert {("red", 0), ("mug", 0), ("home", 0), ("ho", 1), ("re", 1)} <= lists
    assert load_term_tops(ws, W) is not None


def test_weights_must_be_numbers(ws):
    insert_items(ws, _catalogue(12))
    with pytest.raises(ValueError, match="comma-separated numbers"):
        build_term_tops(ws, "1.0) ; DROP TABLE items; --")
    assert ws.execute("SELECT count(*) FROM items").fetchone()[0] == 12
