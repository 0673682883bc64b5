"""Item groups: categories when present, else named text clusters."""
from __future__ import annotations

import numpy as np

from insights_data import fill
from merch_app.insights.groups import item_groups, name_clusters


def test_categories_win_when_most_items_have_one(ws):
    fill(ws)  # 6 of 7 items have a category
    g = item_groups(ws, ["A", "C", "E"], np.eye(3))
    assert g.source == "category" and g.labels == ["Kitchen", "Garden", "(no category)"]
    assert g.mapping()["C"] == "Garden"


def _uncategorised(ws):
    titles = ["red mug", "blue mug", "green mug", "garden lantern", "metal lantern", "glass lantern"]
    with ws.conn:
        ws.insert_rows("items", [dict(item_id=str(n), title=t) for n, t in enumerate(titles)])
    rng = np.random.default_rng(0)
    mug, lantern = rng.normal(size=16), rng.normal(size=16)
    vecs = np.array([mug + 0.1 * rng.normal(size=16) for _ in range(3)]
                    + [lantern + 0.1 * rng.normal(size=16) for _ in range(3)])
    return [str(n) for n in range(6)], vecs


def test_text_clusters_named_by_words(ws):
    ids, vecs = _uncategorised(ws)
    g = item_groups(ws, ids, vecs, k=2)
    assert g.source == "text clusters"
    assert g.labels[0] == g.labels[1] == g.labels[2] != g.labels[3]
    assert g.labels[0].startswith("mug") and g.labels[3].startswith("lantern")
    assert item_groups(ws, ids, vecs, k=2, max_fit=4).labels[:3] == g.labels[:3]


def test_no_vectors_no_categories(ws):
    ids, _ = _uncategorised(ws)
    g = item_groups(ws, ids)
    assert g.source == "none" and set(g.labels) == {"(no category)"}


def test_name_clusters_tfidf_and_duplicates():
    titles = ["red mug", "red cup", "red mug", "red cup"]
    assert name_clusters(titles, np.array([0, 0, 1, 1]), n_words=1) == ["cup (1)", "cup (2)"]
    assert name_clusters(titles, np.array([0, 1, 0, 1]), n_words=2) == ["mug · red", "cup · red"]
