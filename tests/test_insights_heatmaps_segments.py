"""Known-answer tests of the category × hour-of-week heatmap, k-means segments and PCA maps."""
from __future__ import annotations

import numpy as np
import pytest

from merch_app.insights.embedding_map import build_map, encode_categories, fit_pca, item_map
from merch_app.insights.heatmaps import category_hour_of_week, hour_of_week_labels
from merch_app.insights.segments import (
    category_means,
    describe_segments,
    kmeans,
    segment_category_affinity,
)


def test_hour_of_week_heatmap(insights_db):
    h = category_hour_of_week(insights_db)
    assert h.rows == ["Kitchen", "(no category)", "Garden"]
    assert h.values.shape == (3, 168)
    assert h.cols[0] == "Mon 00" and h.cols[167] == "Sun 23" and h.cols[34] == "Tue 10"
    kitchen = h.values[0]
    # 2024-01-01 is a Monday: u1's four events at 10h; Tue 10h two views; Wed 09h return;
    # Sat 15h purchase; Sun 20h anonymous view + cart
    assert {int(c): int(v) for c, v in enumerate(kitchen) if v} == {10: 4, 34: 2, 57: 1, 135: 1, 164: 2}
    assert h.row_totals.tolist() == [10, 3, 2]
    assert h.values[2, 60] == 1 and h.values[2, 165] == 1
    assert h.row_normalised()[0, 10] == 1.0 and h.row_normalised()[0, 34] == 0.5


def test_heatmap_filters_and_other_row(insights_db):
    h = category_hour_of_week(insights_db, event_types=["purchase"])
    assert h.rows == ["Kitchen"] and h.values.sum() == 2
    h = category_hour_of_week(insights_db, top=1)
    assert h.rows == ["Kitchen", "(other 2)"] and h.values[1].sum() == 5
    h = category_hour_of_week(insights_db, user_id="u2")
    assert h.values.sum() == 3


def test_heatmap_empty_workspace(ws):
    h = category_hour_of_week(ws)
    assert h.empty and h.values.shape == (0, 168) and len(hour_of_week_labels()) == 168


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    sizes = [50, 30, 20]
    x = np.vstack([c + rng.normal(0, 0.3, (n, 2)) for c, n in zip(centres, sizes)])
    truth = np.repeat([0, 1, 2], sizes)
    return x, truth


def test_kmeans_recovers_blobs_ordered_by_size():
    x, truth = _blobs()
    r = kmeans(x, 3, seed=1)
    assert r.sizes.tolist() == [50, 30, 20]
    assert (r.labels == truth).all()  # segment 0 is the largest blob
    np.testing.assert_allclose(r.centroids, [[0, 0], [10, 0], [0, 10]], atol=0.2)
    r2 = kmeans(x, 3, seed=1)
    assert (r2.labels == r.labels).all() and r2.inertia == r.inertia


def test_kmeans_edge_cases():
    x = np.array([[0.0, 0.0], [1.0, 1.0]])
    r = kmeans(x, 5)
    assert len(r.centroids) == 2 and sorted(r.labels.tolist()) == [0, 1] and r.inertia == 0
    same = np.zeros((6, 3))
    assert kmeans(same, 2).labels.shape == (6,)
    with pytest.raises(ValueError):
        kmeans(np.zeros((0, 2)), 2)
    with pytest.raises(ValueError):
        kmeans(x, 0)


def test_category_means_and_segment_affinity():
    items = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    names, means = category_means(items, ["mugs", "mugs", "lamps"])
    assert names == ["mugs", "lamps"]
    np.testing.assert_allclose(means, [[1, 0], [0, 1]])
    users = np.array([[2.0, 0.0], [4.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 0, 1])
    h = segment_category_affinity(users, labels, items, ["mugs", "mugs", "lamps"], centre=False)
    np.testing.assert_allclose(h.values, [[3.0, 0.0], [0.0, 1.0]])  # mean(u)·mean(v)
    # the identity with the mean over all user-item pairs
    assert h.values[0, 0] == pytest.approx(np.mean(users[:2] @ items[:2].T))
    assert h.rows == ["segment 1 (2 users)", "segment 2 (1 users)"] and h.cols == ["mugs", "lamps"]
    c = segment_category_affinity(users, labels, items, ["mugs", "mugs", "lamps"])
    np.testing.assert_allclose(c.values, [[1.5, -0.5], [-1.5, 0.5]])
    both = segment_category_affinity(users, labels, items, ["mugs", "mugs", "lamps"], centre="both")
    np.testing.assert_allclose(both.values, [[1.0, -1.0], [-1.0, 1.0]])  # v - row - col + grand mean
    d = describe_segments(labels, c, n=1)
    assert d == [{"segment": 1, "users": 2, "top_categories": ["mugs"]},
                 {"segment": 2, "users": 1, "top_categories": ["lamps"]}]


def test_pca_known_axes():
    t = np.linspace(-1, 1, 21)
    x = np.stack([3 * t, 4 * t, np.zeros_like(t)], axis=1) + 7.0  # a line along (3, 4, 0)
    p = fit_pca(x, 2)
    np.testing.assert_allclose(p.components[0], [0.6, 0.8, 0.0], atol=1e-9)
    np.testing.assert_allclose(p.explained_ratio, [1.0, 0.0], atol=1e-9)
    xy = p.transform(x)
    np.testing.assert_allclose(xy[:, 0], 5 * t, atol=1e-5)
    np.testing.assert_allclose(xy[:, 1], 0, atol=1e-5)
    # sign fixed: flipping the data does not flip the axis
    np.testing.assert_allclose(fit_pca(-x, 2).components[0], [0.6, 0.8, 0.0], atol=1e-9)
    with pytest.raises(ValueError):
        fit_pca(x[:1])


def test_pca_blocks_match_one_pass():
    x = np.random.default_rng(0).normal(size=(500, 8))
    a, b = fit_pca(x, 2), fit_pca(x, 2, block=37)
    np.testing.assert_allclose(a.components, b.components, atol=1e-9)


def test_encode_categories_keeps_most_frequent():
    codes, names = encode_categories(["a", "b", "b", "c", None, "c", "c"], max_colours=2)
    assert names == ["c", "b", "(other)"]
    assert codes.tolist() == [2, 1, 1, 0, 2, 0, 0]


def test_item_map_titles_categories_and_sampling(insights_db):
    ids = ["A", "B", "C", "D", "E", "F", "G"]
    vecs = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    m = item_map(insights_db, ids, vecs)
    assert len(m) == 7 and m.xy.shape == (7, 2) and m.xy.dtype == np.float32
    assert m.titles[0] == "Red ceramic mug" and m.titles[4] == "E"  # empty title shows the id
    assert m.categories[0] == "Kitchen"
    assert m.categories[m.category_codes[4]] == "(no category)"
    s = build_map("item", ids, vecs, ids, ["k"] * 7, max_points=3, seed=1)
    assert len(s) == 3 and s.ids == sorted(s.ids)
    np.testing.assert_allclose(s.xy, m.projection.transform(vecs[[ids.index(i) for i in s.ids]]), atol=1e-5)
    assert m.to_dict(limit=2)["points"] == 7


def test_user_map_colours_by_top_category(insights_db):
    from merch_app.insights.embedding_map import user_map

    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    m = user_map(insights_db, ["u1", "u2", "u3"], vecs)
    assert [m.categories[c] for c in m.category_codes] == ["Kitchen", "Kitchen", "Kitchen"]
    m = user_map(insights_db, ["u1", "u2", "u3"], vecs, item_group={"A": "mugs", "B": "mugs", "C": "garden"})
    assert [m.categories[c] for c in m.category_codes] == ["mugs", "mugs", "mugs"]
    assert m.titles == ["user u1", "user u2", "user u3"]


def test_heatmap_and_profile_with_item_groups(insights_db):
    from merch_app.insights.profiles import user_categories

    groups = {"A": "red things", "B": "blue things"}
    h = category_hour_of_week(insights_db, item_group=groups)
    assert h.rows == ["red things", "(no category)", "blue things"]
    assert h.row_totals.tolist() == [8, 5, 2]  # A 8 events; 3 searches + 2 on C; B 2
    rows = user_categories(insights_db, "u2", item_group=groups)
    assert [(r["category"], r["events"], r["items"]) for r in rows] == [("blue things", 1, 1), ("red things", 1, 1)]


def test_pca_fitted_on_a_sample_keeps_the_axes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6000, 10))
    x[:, 3] *= 5  # the leading axis is e_3, then e_7
    x[:, 7] *= 3
    full, sample = fit_pca(x, 2, max_rows=None), fit_pca(x, 2, max_rows=1000, seed=4)
    assert abs(full.components[0] @ sample.components[0]) > 0.99
    assert abs(sample.components[0, 3]) > 0.99 and abs(sample.components[1, 7]) > 0.99
    assert sample.transform(x).shape == (6000, 2)
