"""VectorIndex against numpy brute force; filtered search; atomic save and damaged files."""
from __future__ import annotations

import os

import numpy as np
import pytest

from merch_app.model.vector_index import VectorIndex, VectorIndexError


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def clustered():
    """5,000 unit vectors in 50 clusters (text vectors cluster like this) and 40 queries."""
    rng = np.random.default_rng(42)
    centres = rng.normal(size=(50, 32))
    x = unit(centres[rng.integers(0, 50, 5000)] + 0.6 * rng.normal(size=(5000, 32)))
    q = unit(x[rng.integers(0, 5000, 40)] + 0.2 * rng.normal(size=(40, 32)))
    return x, q


def brute_force(x, q, k, allowed=None):
    rows = np.arange(len(x)) if allowed is None else np.asarray(allowed)
    sims = q @ x[rows].T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), rows[order]


def recall(found, truth):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth)])


def test_flat_matches_brute_force_exactly(clustered):
    x, q = clustered
    index = VectorIndex().build(x)
    assert index.kind == "flat" and index.ntotal == 5000 and index.dim == 32
    scores, idx = index.search(q, 10)
    bs, bi = brute_force(x, q, 10)
    assert scores.shape == idx.shape == (40, 10)
    np.testing.assert_allclose(scores, bs, atol=1e-5)
    assert recall(idx, bi) == 1.0
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_auto_switches_to_approximate_above_threshold(clustered):
    x, q = clustered
    index = VectorIndex().build(x, threshold=1000)
    assert index.kind == "ivfsq8"
    _, idx = index.search(q, 10)
    assert recall(idx, brute_force(x, q, 10)[1]) >= 0.95


@pytest.mark.parametrize("kind,min_recall", [("ivf", 0.95), ("hnsw", 0.95), ("sq8", 0.9), ("ivfpq", 0.5)])
def test_approximate_kinds_recall(clustered, kind, min_recall):
    x, q = clustered
    index = VectorIndex.from_vectors(x, kind=kind)
    assert index.kind == kind
    scores, idx = index.search(q, 10)
    assert recall(idx, brute_force(x, q, 10)[1]) >= min_recall
    assert (idx >= 0).all()


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_subset_search_is_exact_within_allowed_rows(clustered, kind):
    x, q = clustered
    allowed = np.arange(3, 5000, 13)
    index = VectorIndex().build(x, kind=kind)
    scores, idx = index.search(q, 10, subset=allowed)
    bs, bi = brute_force(x, q, 10, allowed)
    assert np.isin(idx, allowed).all()
    assert recall(idx, bi) >= (1.0 if kind == "flat" else 0.99)
    np.testing.assert_allclose(scores[:, 0], bs[:, 0], atol=1e-5)


def test_small_subset_and_k_larger_than_n():
    x = unit(np.random.default_rng(1).normal(size=(6, 8)))
    index = VectorIndex().build(x)
    scores, idx = index.search(x[0], 10, subset=np.array([4, 2, 2]))
    assert list(idx[0, :2]) == sorted([4, 2], key=lambda r: -float(x[0] @ x[r]))
    assert (idx[0, 2:] == -1).all() and np.isneginf(scores[0, 2:]).all()
    scores, idx = index.search(x[:2], 10)
    assert (idx[:, 6:] == -1).all() and idx[0, 0] == 0 and idx[1, 0] == 1
    empty = index.search(x[:1], 3, subset=np.array([], dtype=np.int64))[1]
    assert (empty == -1).all()


def test_bad_queries_are_clear_errors():
    index = VectorIndex().build(unit(np.ones((3, 4))))
    with pytest.raises(VectorIndexError, match="4-d"):
        index.search(np.ones((1, 5), np.float32), 2)
    with pytest.raises(VectorIndexError, match="not built"):
        VectorIndex().search(np.ones((1, 4), np.float32), 2)
    with pytest.raises(VectorIndexError, match="kind"):
        VectorIndex().build(np.ones((3, 4)), kind="lsh")


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_roundtrip(clustered, tmp_path, kind):
    x, q = clustered
    index = VectorIndex().build(x, kind=kind)
    path = index.save(tmp_path / "models" / "index.faiss")
    assert os.listdir(path.parent) == ["index.faiss"]  # no temp file left behind
    loaded = VectorIndex.load(path)
    assert loaded.kind == kind and loaded.ntotal == 5000
    np.testing.assert_array_equal(loaded.search(q, 10)[1], index.search(q, 10)[1])
    into = VectorIndex()
    assert into.load(path) is into and into.ntotal == 5000
    allowed = np.arange(0, 5000, 7)
    np.testing.assert_array_equal(loaded.search(q, 5, subset=allowed)[1], index.search(q, 5, subset=allowed)[1])


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    x = unit(np.random.default_rng(2).normal(size=(20, 8)))
    path = tmp_path / "index.faiss"
    VectorIndex().build(x[:10]).save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        VectorIndex().build(x).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["index.faiss"]
    assert VectorIndex.load(path).ntotal == 10


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(VectorIndexError, match="does not exist"):
        VectorIndex.load(tmp_path / "none.faiss")
    path = VectorIndex().build(unit(np.ones((4, 8)))).save(tmp_path / "index.faiss")
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(VectorIndexError, match="truncated"):
        VectorIndex.load(path)
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VectorIndexError, match="damaged"):
        VectorIndex.load(path)
    path.write_bytes(b"this is not an index at all")
    with pytest.raises(VectorIndexError, match="not a readable vector index"):
        VectorIndex.load(path)


def test_plain_faiss_file_is_accepted(tmp_path):
    import faiss

    x = unit(np.random.default_rng(3).normal(size=(10, 8)))
    raw = faiss.IndexFlatIP(8)
    raw.add(x)
    faiss.write_index(raw, str(tmp_path / "plain.faiss"))
    loaded = VectorIndex.load(tmp_path / "plain.faiss")
    assert loaded.kind == "flat" and loaded.search(x[3], 1)[1][0, 0] == 3
