"""Damped (shrunk) rating biases in closed form: the baseline of explicit mode and of the bias baselines.

``μ`` is the mean training rating; an item's bias is ``Σ(r − μ) / (n_i + λ_item)`` and a user's
``Σ(r − μ − b_i) / (n_u + λ_user)``: items and users with few ratings are pulled towards 0 (the
global mean), unknown ones have bias 0.  numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DampedBiases:
    """``mu``, per-user ``b_user`` and per-item ``b_item`` (float32), with the rating counts they came from."""

    mu: float
    b_user: np.ndarray
    b_item: np.ndarray
    n_user: np.ndarray
    n_item: np.ndarray

    def predict(self, users: np.ndarray, items: np.ndarray, use_user: bool = True) -> np.ndarray:
        """μ + b_i (+ b_u) for index pairs; an index of -1 (unknown user or item) contributes 0."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        out = np.full(len(users), self.mu, np.float64)
        ok = items >= 0
        out[ok] += self.b_item[items[ok]]
        if use_user:
            ok = users >= 0
            out[ok] += self.b_user[users[ok]]
        return out


def damped_biases(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
                  shrink_user: float = 10.0, shrink_item: float = 25.0) -> DampedBiases:
    """The damped biases of ratings ``ratings`` of (user index, item index) pairs.

    Parameters
    ----------
    users, items, ratings
        One entry per rating (indices into ``n_users`` / ``n_items``).
    shrink_user, shrink_item
        λ_user, λ_item: pseudo-ratings at the mean each bias is damped with.
    """
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    r = np.asarray(ratings, np.float64)
    mu = float(r.mean()) if len(r) else 0.0
    n_i = np.bincount(items, minlength=n_items).astype(np.float64)
    b_i = np.bincount(items, weights=r - mu, minlength=n_items) / np.maximum(n_i + float(shrink_item), 1e-9)
    n_u = np.bincount(users, minlength=n_users).astype(np.float64)
    b_u = np.bincount(users, weights=r - mu - b_i[items], minlength=n_users) / np.maximum(n_u + float(shrink_user), 1e-9)
    return DampedBiases(mu, b_u.astype(np.float32), b_i.astype(np.float32), n_u.astype(np.int64),
                        n_i.astype(np.int64))
