"""Compact (float16) text matrices, sparse ID gradients, blocked user-vector sums: known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from merch_app.model import cf_module as cf
from merch_app.model.optimizers import HybridOptimizer, RowAdam
from merch_app.model import text_matrix
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.user_vectors import _add_weighted_sums
from merch_app.model.vector_index import VectorIndex

from test_hybrid import FAST, planted


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_storage_dtype_threshold(monkeypatch):
    assert text_matrix.storage_dtype(99_999) == np.float32
    assert text_matrix.storage_dtype(100_000) == np.float16
    x = unit_rows(50, 8)
    assert text_matrix.compact(x) is x  # small: kept, no copy
    monkeypatch.setattr(text_matrix, "COMPACT_MIN_ROWS", 10)
    half = text_matrix.compact(x)
    assert half.dtype == np.float16 and half.flags.c_contiguous
    assert text_matrix.compact(half) is half
    assert text_matrix.empty(20, 4).dtype == np.float16


def test_blocked_products_equal_the_float32_products(monkeypatch):
    monkeypatch.setattr(text_matrix, "BLOCK_ROWS", 7)  # several blocks and a ragged last one
    x = unit_rows(50, 16, seed=1)
    half = x.astype(np.float16)
    m = np.random.default_rng(2).normal(size=(16, 3)).astype(np.float32)
    q = unit_rows(4, 16, seed=3)
    exact = half.astype(np.float32)
    np.testing.assert_allclose(text_matrix.times(half, m), exact @ m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(text_matrix.times(half, m[:, 0]), exact @ m[:, 0], rtol=1e-5, atol=1e-6)
    s = text_matrix.scores(q, half)
    assert s.shape == (4, 50) and s.dtype == np.float32
    np.testing.assert_allclose(s, q @ exact.T, atol=5e-4)  # float16 kernel: results rounded to float16
    # float16 storage changes cosines by far less than the gaps between neighbours
    assert np.abs(s - q @ x.T).max() < 2e-3
    assert text_matrix.rows(half, [3, 1]).dtype == np.float32


def test_vector_index_from_float16_matches_float32():
    x = unit_rows(300, 16, seed=4)
    q = x[:5]
    _, ids32 = VectorIndex.from_vectors(x, kind="flat").search(q, 3)
    _, ids16 = VectorIndex.from_vectors(x.astype(np.float16), kind="flat").search(q, 3)
    assert (ids16[:, 0] == np.arange(5)).all()
    assert (ids16 == ids32).mean() > 0.9


def test_weighted_sums_in_blocks_equal_dense(monkeypatch):
    import merch_app.model.user_vectors as uv

    monkeypatch.setattr(uv, "_SUM_BLOCK", 5)
    src = unit_rows(9, 6, seed=5)
    rows = np.array([0, 0, 2, 1, 2, 0, 3, 3, 3, 2, 1])  # duplicates add up
    cols = np.array([1, 1, 4, 8, 0, 7, 2, 2, 5, 4, 3])
    w = np.linspace(0.1, 1.1, len(rows))
    expect = np.zeros((4, 6))
    for r, c, x in zip(rows, cols, w):
        expect[r] += x * src[c]
    for sources in (src, src.astype(np.float16)):
        out = np.zeros((4, 6), np.float32)
        _add_weighted_sums(out, rows, cols, w, sources)
        np.testing.assert_allclose(out, expect, atol=3e-3 if sources.dtype == np.float16 else 1e-6)


def test_sparse_id_gradients_move_only_the_batch_rows():
    n_users, n_items, d = 6, 10, 8
    net = cf.HybridNet(n_users, n_items, unit_rows(n_users, d), unit_rows(n_items, d), dim=4, dropout=0.0,
                       seed=0, sparse_ids=True)
    opt = HybridOptimizer(net, lr=0.05)
    assert len(opt.optimizers) == 2
    before_q, before_p = net.Q.detach().clone(), net.P.detach().clone()
    for _ in range(3):
        bil, bias, pen = net.cf_parts(np.array([0, 1, 1]), np.array([2, 5, 2]))
        loss = ((bil + bias - 1.0) ** 2).mean() + 0.01 * pen
        opt.zero_grad()
        loss.backward()
        assert net.Q.grad.is_sparse
        opt.step()
    moved_q = (net.Q.detach() != before_q).any(1).numpy()
    moved_p = (net.P.detach() != before_p).any(1).numpy()
    assert moved_q.nonzero()[0].tolist() == [2, 5]
    assert moved_p.nonzero()[0].tolist() == [0, 1]
    dense = cf.HybridNet(n_users, n_items, unit_rows(n_users, d), unit_rows(n_items, d), 4, 0.0, 0)
    assert len(HybridOptimizer(dense, lr=0.05).optimizers) == 1


def _top(model, user, k=10):
    ids, _ = model.recommend(user, k)
    return list(ids)


def test_compact_model_trains_saves_and_ranks_like_float32(monkeypatch, tmp_path):
    inter, text, _, _ = planted()
    full = HybridModel(HybridConfig(**FAST)).fit(inter, text)
    monkeypatch.setattr(text_matrix, "COMPACT_MIN_ROWS", 20)  # 60 items, 90 users: both compact
    half = HybridModel(HybridConfig(**FAST)).fit(inter, text)
    assert half.arrays["T_i"].dtype == np.float16 and half.arrays["T_u"].dtype == np.float16
    assert full.arrays["T_i"].dtype == np.float32
    users = [str(u) for u in inter.user_ids[:30]]
    overlap = np.mean([len(set(_top(full, u)) & set(_top(half, u))) / 10 for u in users])
    assert overlap > 0.8
    parts = half.score_parts(users[0])
    np.testing.assert_allclose(sum(parts.values()), half.score(users[0]), rtol=1e-5, atol=1e-5)
    half.save(tmp_path / "m")
    back = HybridModel.load(tmp_path / "m")
    assert back.arrays["T_i"].dtype == np.float16
    np.testing.assert_array_equal(back.score(users[0]), half.score(users[0]))
    back.add_items(["new"], text[:1])
    assert back.arrays["T_i"].dtype == np.float16 and back.n_items == 61


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_torch_buffers_keep_the_storage_dtype(monkeypatch, dtype):
    monkeypatch.setattr(text_matrix, "COMPACT_MIN_ROWS", 5 if dtype == np.float16 else 10**9)
    net = cf.HybridNet(6, 8, unit_rows(6, 4), unit_rows(8, 4), 3, 0.0, 0)
    assert net.T_i.dtype == torch.from_numpy(np.zeros(1, dtype)).dtype


def test_allocator_settings_apply_on_linux():
    import sys

    from merch_app.memory import configure_allocator, trim_heap

    linux = sys.platform.startswith("linux")
    assert configure_allocator() is linux
    assert isinstance(trim_heap(), bool)


@pytest.mark.parametrize("beta1", [0.0, 0.9])
def test_row_adam_known_answer(beta1):
    """Two steps on rows {1, 3} of a 4x2 table, checked against the formula by hand."""
    w = torch.nn.Parameter(torch.zeros(4, 2))
    opt = RowAdam([w], lr=0.1, betas=(beta1, 0.5), eps=0.0)
    grads = [torch.tensor([[1.0, 3.0], [2.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 2.0]])]
    expect = np.zeros((4, 2))
    m, v = np.zeros((4, 2)), np.zeros(4)
    for step, g in enumerate(grads, start=1):
        w.grad = torch.sparse_coo_tensor(torch.tensor([[1, 3]]), g, (4, 2), check_invariants=True)
        opt.step()
        for row, gr in zip((1, 3), g.numpy()):
            m[row] = beta1 * m[row] + (1 - beta1) * gr
            v[row] = 0.5 * v[row] + 0.5 * np.mean(gr ** 2)
            expect[row] -= 0.1 / (1 - beta1 ** step) * m[row] / np.sqrt(v[row] / (1 - 0.5 ** step))
    np.testing.assert_allclose(w.detach().numpy(), expect, rtol=1e-6)
    assert set(opt.state[w]) == ({"step", "exp_avg_sq"} if beta1 == 0 else {"step", "exp_avg", "exp_avg_sq"})
    assert opt.state[w]["exp_avg_sq"].shape == (4,)


def test_top_k_rows_known_answer():
    from merch_app.model.topk import top_k_rows

    scores = np.array([[0.1, 0.9, 0.5, 0.9, -1.0],
                       [3.0, 2.0, 1.0, 0.0, -1.0]], np.float32)
    np.testing.assert_array_equal(top_k_rows(scores, 3), [[1, 3, 2], [0, 1, 2]])  # equal scores by index
    assert top_k_rows(scores, 9).shape == (2, 5)
    assert top_k_rows(scores, 0).shape == (2, 0)
    assert top_k_rows(np.zeros((0, 4)), 2).shape == (0, 2)
    np.testing.assert_array_equal(top_k_rows(scores.astype(np.float64), 1), [[1], [0]])


def test_one_blas_thread_limits_openblas_inside_only():
    from threadpoolctl import ThreadpoolController

    from merch_app.memory import one_blas_thread

    def openblas_threads():
        return [p["num_threads"] for p in ThreadpoolController().info() if p["internal_api"] == "openblas"]

    before = openblas_threads()
    with one_blas_thread():
        assert all(n == 1 for n in openblas_threads())
    assert openblas_threads() == before


def test_fit_logistic_takes_row_blocks():
    """Row blocks give the fit of the stacked rows (no stacked copy is made)."""
    from merch_app.model.cf_module import fit_logistic

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3_000, 4)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(size=3_000) > 0).astype(np.float32)
    w = rng.random(3_000).astype(np.float32)
    coef, b = fit_logistic(X, y, w)
    coef2, b2 = fit_logistic([X[:1000], X[1000:1001], X[1001:]], y, w)
    np.testing.assert_allclose(coef2, coef, atol=1e-10)
    assert b2 == pytest.approx(b, abs=1e-10) and coef[0] > 0.5 and coef[1] < -1.0


def test_top_k_rows_of_one_row_broadcast_to_all():
    from merch_app.model.topk import top_k_rows

    counts = np.array([3.0, 9.0, 1.0, 9.0, 5.0])
    view = np.broadcast_to(counts, (4, 5))
    assert view.strides[0] == 0
    np.testing.assert_array_equal(top_k_rows(view, 3), [[1, 3, 4]] * 4)
    np.testing.assert_array_equal(top_k_rows(view, 3), top_k_rows(np.array(view), 3))
