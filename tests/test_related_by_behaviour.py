"""Related items by behaviour: centred cosine of the model's item vectors, text for items never sold.

Known answer of the centring: five item vectors v = s + x with one shared part s = (10, 0, 0) and
distinct parts x that sum to 0 (so s is the mean).  Item a's distinct part (0, 1, 0) is closest to
b's (0, 0.5, 1.5): centred cosine 0.5 / √2.5 = 0.31623; c and d (distinct parts along s) score 0
and e (opposite) -0.70711.  Plain cosine ranks c and d first (0.995 against b's 0.988): they carry
the most of the shared part.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.interactions import from_arrays
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.types import RankRequest
from model_fixtures import fill_workspace
from ranking_fixtures import TableCFModel, make_bundle

SHARED = np.array([10.0, 0.0, 0.0])
DISTINCT = np.array([[0, 1, 0], [0, 0.5, 1.5], [2, 0, 0], [-2, 0, 0], [0, -1.5, -1.5]], dtype=float)


def _vector_model() -> HybridModel:
    model = HybridModel(HybridConfig())
    model.item_ids = np.array(list("abcde"), dtype=object)
    model.V = (SHARED + DISTINCT).astype(np.float32)
    return model


def test_similar_items_compare_vectors_after_taking_off_their_mean():
    model = _vector_model()
    ids, sims = model.similar_items("a", 4)
    assert list(ids) == ["b", "c", "d", "e"]
    assert sims == pytest.approx([0.5 / np.sqrt(2.5), 0.0, 0.0, -1.5 / np.sqrt(4.5)], abs=1e-6)
    plain = model.V @ model.V[0] / (np.linalg.norm(model.V, axis=1) * np.linalg.norm(model.V[0]))
    plain[0] = -np.inf
    assert model.item_ids[int(np.argmax(plain))] in ("c", "d")  # what plain cosine would have said


def test_centred_similarity_equals_the_explicit_computation_and_follows_new_vectors():
    rng = np.random.default_rng(3)
    model = HybridModel(HybridConfig())
    model.item_ids = np.array([f"i{j}" for j in range(40)], dtype=object)
    model.V = (rng.normal(size=(40, 8)) + 4.0).astype(np.float32)
    c = model.V - model.V.mean(axis=0)
    want = c @ c[7] / (np.linalg.norm(c, axis=1) * np.linalg.norm(c[7]))
    want[7] = -np.inf
    ids, sims = model.similar_items("i7", 39)
    order = np.argsort(-want, kind="stable")[:39]
    assert list(ids) == list(model.item_ids[order])
    assert sims == pytest.approx(want[order], abs=1e-5)
    model.drop_derived()  # the cached centre goes with the vectors
    model.V = _vector_model().V.repeat(8, axis=0)
    model.item_ids = np.array([f"i{j}" for j in range(40)], dtype=object)
    model.item_pos = None
    assert model._centred_norms()[0] == pytest.approx(SHARED, abs=1e-5)


FAST = dict(dim=8, epochs=3, batch_size=64, shared_negatives=16, lr=0.02, refit_epochs=1)


def _shop(drop_first_item: bool):
    rng = np.random.default_rng(0)
    item_ids = [f"i{j}" for j in range(12)]
    users, items, ts = [], [], []
    for u in range(30):
        for j in rng.choice(12, 4, replace=False):
            if drop_first_item and j == 0:
                continue
            users.append(f"u{u}")
            items.append(f"i{j}")
            ts.append(19000.0 + rng.uniform(0, 50))
    text = rng.normal(size=(12, 16)).astype(np.float32)
    return from_arrays(users, items, ts, item_ids=item_ids), text


def test_the_model_remembers_which_items_had_no_behaviour_when_it_was_trained(tmp_path):
    inter, text = _shop(drop_first_item=True)
    model = HybridModel(HybridConfig(**FAST)).fit(inter, text)
    assert not model.has_behaviour("i0") and all(model.has_behaviour(f"i{j}") for j in range(1, 12))
    assert not model.has_behaviour("nowhere")
    full, _ = _shop(drop_first_item=False)  # i0 sells after the fit: the refresh to "now" sees it
    full = from_arrays(full.user_ids[full.user_idx], full.item_ids[full.item_idx], full.ts,
                       item_ids=list(model.item_ids), user_ids=list(model.user_ids))
    model.refresh_history(full, float(full.ts.max()) + 1)
    assert model.arrays["trend"][0, -1] == 0.0  # no longer "unsold" now ...
    assert not model.has_behaviour("i0")  # ... but its vector still has no behaviour in it
    model.add_items(["new"], text[:1])
    assert not model.has_behaviour("new")
    model.save(tmp_path / "m")
    loaded = HybridModel.load(tmp_path / "m")
    assert [loaded.has_behaviour(i) for i in loaded.item_ids] == [model.has_behaviour(i) for i in model.item_ids]
    older = copy.deepcopy(loaded)
    del older.arrays["unsold_at_fit"]  # a file saved before the array existed
    assert all(older.has_behaviour(i) for i in older.item_ids)


class _NeverSold(TableCFModel):
    """The table model of the ranking fixtures, with items that had no behaviour at training."""

    def __init__(self, *args, unsold=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unsold = set(unsold)

    def has_behaviour(self, item_id) -> bool:
        return str(item_id) in self._i and str(item_id) not in self.unsold


def test_an_item_never_sold_gets_its_related_items_by_text(ws):
    items = [{"item_id": "A", "title": "red candle"}, {"item_id": "B", "title": "red candle holder"},
             {"item_id": "C", "title": "blue mug"}, {"item_id": "D", "title": "green mug"}]
    fill_workspace(ws, items, [])
    # by behaviour, A's neighbours would be C then D (table columns), by text B comes first
    table = np.array([[1.0, 0.0, 0.9, 0.5]])
    ranker = Ranker(ws, make_bundle(ws, model=_NeverSold(["x"], ["A", "B", "C", "D"], table, unsold={"A"})))
    by_text = ranker.rank(RankRequest(mode="related", item_id="A", k=3, related_by="text"))
    by_cf = ranker.rank(RankRequest(mode="related", item_id="A", k=3, related_by="cf"))
    assert by_cf.item_ids == by_text.item_ids and by_cf.item_ids[0] == "B"
    assert any("A had no behaviour when the model was trained" in n for n in by_cf.notes)
    sold = Ranker(ws, make_bundle(ws, model=_NeverSold(["x"], ["A", "B", "C", "D"], table)))
    res = sold.rank(RankRequest(mode="related", item_id="A", k=3, related_by="cf"))
    assert res.item_ids[:2] == ["C", "D"] and not any("no behaviour" in n for n in res.notes)
