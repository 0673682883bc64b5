"""Storage of the large BERT text-vector matrices (items, users) and the products over them.

A million item vectors of 384 floats take 1.5 GB in float32, the largest
single object of training and ranking.  Catalogues (and user sets) of at
least :data:`COMPACT_MIN_ROWS` rows keep their text vectors in float16
(half the memory; cosine error ~1e-4, far below the gaps that decide a
ranking); smaller ones stay float32, so their scores are exact.

numpy has no fast float16 matrix product and would widen a whole float16
operand in one temporary copy, so every product over a full matrix goes
through :func:`times` (exact: widens one block of rows at a time; for the
projections the model is built from) or :func:`scores` (similarities of a
few query vectors with every row, in torch's float16 kernel).
"""
from __future__ import annotations

import numpy as np

COMPACT_MIN_ROWS = 100_000
BLOCK_ROWS = 16_384  # rows widened at once (25 MB of float32 at 384 dims)


def storage_dtype(n_rows: int) -> np.dtype:
    """float16 for matrices of at least :data:`COMPACT_MIN_ROWS` rows, else float32."""
    return np.dtype(np.float16 if n_rows >= COMPACT_MIN_ROWS else np.float32)


def compact(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` in its storage dtype (no copy when it already has it)."""
    matrix = np.asarray(matrix)
    return np.ascontiguousarray(matrix, dtype=storage_dtype(len(matrix)))


def empty(n_rows: int, dim: int) -> np.ndarray:
    """An uninitialised ``(n_rows, dim)`` matrix in the storage dtype."""
    return np.empty((n_rows, dim), dtype=storage_dtype(n_rows))


def as_text_matrix(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` as a contiguous float16 or float32 array (other dtypes become float32), no copy if it is one."""
    matrix = np.asarray(matrix)
    return np.ascontiguousarray(matrix, dtype=matrix.dtype if matrix.dtype == np.float16 else np.float32)


def rows(matrix: np.ndarray, idx) -> np.ndarray:
    """Rows ``idx`` of a text matrix as float32."""
    return np.asarray(matrix[idx], dtype=np.float32)


def times(matrix: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``matrix @ other`` in float32, widening ``matrix`` (float16 or float32) one block of rows at a time.

    Parameters
    ----------
    matrix
        ``(n, d)`` text vectors.
    other
        ``(d,)`` or ``(d, k)`` float32.

    Returns
    -------
    np.ndarray
        ``(n,)`` or ``(n, k)`` float32.
    """
    other = np.asarray(other, dtype=np.float32)
    if matrix.dtype == np.float32:
        return matrix @ other
    out = np.empty((len(matrix),) + other.shape[1:], np.float32)
    for lo in range(0, len(matrix), BLOCK_ROWS):
        out[lo:lo + BLOCK_ROWS] = matrix[lo:lo + BLOCK_ROWS].astype(np.float32) @ other
    return out


def scores(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``queries @ matrix.T`` as float32: ``(q, d)`` vectors against ``(n, d)`` text vectors -> ``(q, n)``.

    For a float16 matrix the product runs in torch's float16 kernel
    (fp32 accumulation, results rounded to float16: absolute error below
    ~5e-4 on cosines).  Widening the matrix instead cost 1.8 s per call at a
    million items, and evaluation scores a few users per call.
    """
    q = np.asarray(queries, dtype=np.float32)
    if matrix.dtype == np.float32:
        return q @ matrix.T
    # float16 only: torch's 1.3-3.8 s import would otherwise hit ranking/explain, which import no torch
    import torch

    with torch.no_grad():
        out = torch.mm(torch.from_numpy(np.ascontiguousarray(q, dtype=np.float16)),
                       torch.from_numpy(np.ascontiguousarray(matrix)).T)
    return out.float().numpy()
