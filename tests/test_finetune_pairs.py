"""Training pairs from behaviour: known answers for searches, baskets, histories and the time cut."""
from __future__ import annotations

import pytest

from merch_app.jobs import CancelToken, Cancelled
from merch_app.model.finetune_pairs import (
    PairsError, mine_hard_negatives, positives_by_anchor, training_pairs,
)
from model_fixtures import fill_workspace

ITEMS = [{"item_id": i, "title": t} for i, t in (
    ("A", "red candle"), ("B", "blue mug"), ("C", "green scarf"), ("D", "paper lamp"), ("E", "red candle"))]


def ev(user, item, etype, ts, query=None, session=None):
    return {"user_id": user, "item_id": item, "event_type": etype, "ts": ts, "query": query, "session_id": session}


def test_search_then_click_is_a_weighted_positive_and_a_lone_search_is_not(ws):
    fill_workspace(ws, ITEMS, [
        ev("u1", None, "search", "2024-01-01T10:00:00Z", "Red  Candle", "s1"),
        ev("u1", "A", "click", "2024-01-01T10:01:00Z", session="s1"),
        ev("u1", "A", "purchase", "2024-01-01T10:05:00Z", session="s1"),
        ev("u2", None, "search", "2024-01-02T10:00:00Z", "lonely query", "s2"),  # nothing follows
        ev("u3", None, "search", "2024-01-03T10:00:00Z", "blue mug", "s3"),
        ev("u3", "B", "click", "2024-01-03T12:00:00Z", session="s3"),  # two hours later: not credited
        ev("u4", "C", "cart", "2024-01-04T10:00:00Z", query="green scarf", session="s4"),  # carries its query
    ])
    got = training_pairs(ws, kinds=("query",), max_pairs=None)
    pairs = {(p.anchor.casefold(), p.item_id): p.weight for p in got.pairs}
    assert pairs == {("red candle", "A"): 1.0 + 3.0, ("green scarf", "C"): 2.0}
    assert all(p.kind == "query" for p in got.pairs)
    assert got.counts["query"] == 2


def test_events_after_the_cut_are_excluded_and_since_keeps_only_later_positives(ws):
    fill_workspace(ws, ITEMS, [
        ev("u1", None, "search", "2024-01-01T10:00:00Z", "red candle", "s1"),
        ev("u1", "A", "click", "2024-01-01T10:01:00Z", session="s1"),
        ev("u2", None, "search", "2024-03-01T10:00:00Z", "blue mug", "s2"),
        ev("u2", "B", "purchase", "2024-03-01T10:02:00Z", session="s2"),
        ev("u3", "C", "purchase", "2024-03-02T10:00:00Z", session="s3"),
        ev("u3", "D", "purchase", "2024-03-02T10:00:00Z", session="s3"),
    ])
    cut = "2024-02-01T00:00:00Z"
    before = training_pairs(ws, until_ts=cut, max_pairs=None)
    assert {(p.anchor, p.item_id) for p in before.pairs} == {("red candle", "A")}
    assert all(p.ts < cut for p in before.pairs)
    after = training_pairs(ws, since_ts=cut, max_pairs=None)
    assert {p.item_id for p in after.pairs if p.kind == "query"} == {"B"}
    assert {frozenset((p.anchor_items[0], p.item_id)) for p in after.pairs if p.kind == "item"} == {frozenset("CD")}
    assert all(p.ts >= cut for p in after.pairs)


def test_baskets_make_item_pairs_counted_once_per_basket(ws):
    events = []
    for n in range(3):  # A and B together in three invoices; C with A once
        events += [ev("u1", "A", "purchase", f"2024-01-0{n + 1}T10:00:00Z", session=f"inv{n}"),
                   ev("u1", "B", "purchase", f"2024-01-0{n + 1}T10:00:00Z", session=f"inv{n}")]
    events.append(ev("u1", "C", "purchase", "2024-01-01T10:00:00Z", session="inv0"))
    fill_workspace(ws, ITEMS, events)
    got = training_pairs(ws, kinds=("item",), max_pairs=None)
    weight = {frozenset((p.anchor_items[0], p.item_id)): p.weight for p in got.pairs}
    assert set(weight) == {frozenset("AB"), frozenset("AC"), frozenset("BC")}
    assert weight[frozenset("AB")] > weight[frozenset("AC")] == 1.0
    for p in got.pairs:
        assert p.anchor == {"A": "red candle", "B": "blue mug", "C": "green scarf"}[p.anchor_items[0]]


def test_history_pairs_point_from_recent_items_to_a_new_one(ws):
    fill_workspace(ws, ITEMS, [
        ev("u1", "A", "purchase", "2024-01-01T10:00:00Z"),
        ev("u1", "B", "purchase", "2024-01-02T10:00:00Z"),
        ev("u1", "C", "purchase", "2024-01-03T10:00:00Z"),
        ev("u1", "A", "purchase", "2024-01-04T10:00:00Z"),  # bought before: not a "next item"
    ])
    got = training_pairs(ws, kinds=("history",), max_pairs=None)
    assert [(p.anchor, p.item_id) for p in got.pairs] == [
        ("red candle", "B"), ("blue mug; red candle", "C")]
    assert got.pairs[1].anchor_items == ("B", "A")


def test_max_pairs_is_seeded_and_unknown_kinds_are_refused(ws):
    events = [ev("u1", i, "purchase", f"2024-01-{d:02d}T10:00:00Z", session=f"s{d}")
              for d in range(1, 20) for i in ("A", "B", "C", "D")]
    fill_workspace(ws, ITEMS, events)
    a = training_pairs(ws, max_pairs=4, seed=3)
    b = training_pairs(ws, max_pairs=4, seed=3)
    assert len(a.pairs) == 4 and a.pairs == b.pairs
    with pytest.raises(PairsError, match="unknown pair kind"):
        training_pairs(ws, kinds=("clicks",))


def test_a_small_budget_takes_the_search_pairs_first(ws):
    events = [ev("u1", i, "purchase", f"2024-01-{d:02d}T10:00:00Z", session=f"s{d}")
              for d in range(1, 20) for i in ("A", "B", "C", "D")]
    events += [ev("u2", None, "search", "2024-02-01T10:00:00Z", "red candle", "q1"),
               ev("u2", "A", "click", "2024-02-01T10:01:00Z", session="q1"),
               ev("u3", None, "search", "2024-02-02T10:00:00Z", "blue mug", "q2"),
               ev("u3", "B", "purchase", "2024-02-02T10:01:00Z", session="q2")]
    fill_workspace(ws, ITEMS, events)
    assert training_pairs(ws, max_pairs=None).counts["item"] > 3  # the basket pairs far outnumber the two searches
    got = training_pairs(ws, max_pairs=3, seed=5)
    assert got.counts == {"query": 2, "item": 1, "history": 0}
    assert training_pairs(ws, max_pairs=1, seed=5).counts["query"] == 1


def test_pairs_cancel(ws):
    fill_workspace(ws, ITEMS, [ev("u1", "A", "purchase", f"2024-01-01T10:{m:02d}:00Z") for m in range(60)] * 100)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        training_pairs(ws, cancel=token)


def test_hard_negatives_are_near_but_never_positive_or_a_twin(ws):
    import numpy as np

    fill_workspace(ws, ITEMS, [])
    from merch_app.model.finetune_pairs import Pair

    pairs = [Pair("item", "blue mug", "C", 1.0, "2024-01-01T00:00:00Z", ("B",)),
             Pair("item", "blue mug", "D", 1.0, "2024-01-01T00:00:00Z", ("B",)),
             Pair("query", "candle", "A", 1.0, "2024-01-01T00:00:00Z")]
    ids = ["A", "B", "C", "D", "E"]
    vecs = np.eye(5, dtype=np.float32)
    vecs[4] = vecs[0]  # E has A's text
    text = {i["item_id"]: i["title"] for i in ITEMS}
    out = mine_hard_negatives(pairs, ids, vecs, lambda texts: np.tile(vecs[0], (len(texts), 1)), item_text=text,
                              top_k=5)
    assert positives_by_anchor(pairs)[("item", "blue mug")] == {"C", "D"}
    for p in out[:2]:
        assert p.negatives and set(p.negatives).isdisjoint({"B", "C", "D"})
    assert out[2].negatives and set(out[2].negatives).isdisjoint({"A", "E"})
