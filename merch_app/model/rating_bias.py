"""Damped (shrunk) rating biases in closed form: the baseline of explicit mode and of the bias baselines.

``μ`` is the mean training rating; an item's bias is ``Σ(r − μ) / (n_i + λ_item)`` and a user's
``Σ(r − μ − b_i) / (n_u + λ_user)``: items and users with few ratings are pulled towards 0 (the
global mean), unknown ones have bias 0.  With rating times and a drift shrinkage λ_drift, each user's
bias also drifts linearly in time (Koren's time-changing user bias, in its simplest form):
``b_u(t) = b_u + d_u · (t − t̄_u)`` with ``t̄_u`` the mean time of the user's ratings (in years) and
``d_u = Σ(r − μ − b_i − b_u)(t − t̄_u) / (Σ(t − t̄_u)² + λ_drift)``, fitted jointly with the
biases by a few rounds of alternating closed-form updates.  A user's *taste* in text space is a ridge
regression of what is left, ``r − μ − b_i − b_u(t)``, on the rated items' text vectors:
``w_u = (X_uᵀX_u + λ_taste·I)⁻¹ X_uᵀ e_u``, scored as ``w_uᵀ t_i`` (the genres and words a user rates
above their own level).  numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from merch_app.model import text_matrix

YEAR_DAYS = 365.25
DRIFT_ROUNDS = 10  # alternating updates of b_i, b_u, d_u (the changes are below 1e-4 after ~6)


@dataclass
class DampedBiases:
    """``mu``, per-user ``b_user`` and per-item ``b_item`` (float32), with the rating counts they came from."""

    mu: float
    b_user: np.ndarray
    b_item: np.ndarray
    n_user: np.ndarray
    n_item: np.ndarray
    # per-user drift of the bias (rating points per year) and the mean day of the user's ratings;
    # empty without drift
    drift: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    t_mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    last_day: float = 0.0  # the time of the last rating fitted (days): "now" for the drift
    # per-user taste vectors in text space (n_users × text dim); empty without taste
    taste: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def user_bias_at(self, day: Optional[float] = None) -> np.ndarray:
        """Every user's bias as of ``day``: b_u + d_u·(day − t̄_u).

        Parameters
        ----------
        day
            The time (days, as ``Interactions.ts``); None: the last rating fitted.

        Returns
        -------
        np.ndarray
            float32 per user; the plain ``b_user`` without drift.
        """
        if not len(self.drift):
            return self.b_user.copy()
        day = self.last_day if day is None else float(day)
        return (self.b_user + self.drift * (day - self.t_mean) / YEAR_DAYS).astype(np.float32)

    def predict(self, users: np.ndarray, items: np.ndarray, use_user: bool = True,
                days: Optional[np.ndarray] = None, item_text: Optional[np.ndarray] = None) -> np.ndarray:
        """μ + b_i (+ b_u) for index pairs; an index of -1 (unknown user or item) contributes 0.

        Parameters
        ----------
        users, items
            Index pairs (-1: unknown).
        use_user
            Add the user bias (False: the damped item-bias predictor).
        days
            The rating times (days); with drift, the user bias is taken at each one.
        item_text
            The items' text vectors; with taste, ``w_uᵀ t_i`` is added.
        """
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        out = np.full(len(users), self.mu, np.float64)
        ok = items >= 0
        out[ok] += self.b_item[items[ok]]
        if use_user:
            ok = users >= 0
            out[ok] += self.b_user[users[ok]]
            if len(self.drift) and days is not None:
                d = np.asarray(days, np.float64)[ok]
                out[ok] += self.drift[users[ok]] * (d - self.t_mean[users[ok]]) / YEAR_DAYS
            if len(self.taste) and item_text is not None:
                out[ok] += taste_scores(self.taste, item_text, users[ok], items[ok])
        return out


def taste_scores(taste: np.ndarray, item_text: np.ndarray, users: np.ndarray, items: np.ndarray,
                 block: int = 65536) -> np.ndarray:
    """``w_uᵀ t_i`` for (user, item) index pairs, computed in blocks of pairs.

    Parameters
    ----------
    taste
        Taste vectors (rows: users; float16 or float32), from :func:`taste_vectors`.
    item_text
        Text vectors of the items (rows: items).
    users, items
        Index pairs (known users only: no -1).
    block
        Pairs widened to float32 at once.

    Returns
    -------
    np.ndarray
        float64, one score per pair.
    """
    out = np.empty(len(users), np.float64)
    for lo in range(0, len(users), block):
        sl = slice(lo, lo + block)
        out[sl] = np.einsum("ij,ij->i", np.asarray(taste[users[sl]], np.float32),
                            np.asarray(item_text[items[sl]], np.float32))
    return out


def taste_vectors(users: np.ndarray, items: np.ndarray, residual: np.ndarray, item_text: np.ndarray,
                  n_users: int, shrink: float) -> np.ndarray:
    """Each user's ridge regression of ``residual`` on the rated items' text vectors.

    Parameters
    ----------
    users, items, residual
        One entry per rating: what the biases leave.
    item_text
        Text vectors of all items (rows indexed by ``items``).
    n_users, shrink
        Users (rows of the result; users without ratings get 0) and λ_taste.

    Returns
    -------
    np.ndarray
        ``(n_users, text dim)`` in the text matrices' storage dtype (:mod:`text_matrix`).  Solved in the dual form when a user has fewer
        ratings than dimensions (``X_uᵀ(X_uX_uᵀ + λI)⁻¹e_u``, the same solution).
    """
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    e = np.asarray(residual, np.float64)
    dim = item_text.shape[1]
    out = text_matrix.empty(n_users, dim)  # float16 for large user sets, like the user text vectors
    out[:] = 0
    order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], np.arange(n_users + 1))
    lam = float(shrink)
    for u in np.flatnonzero(np.diff(bounds)):
        rows = order[bounds[u]:bounds[u + 1]]
        x = np.asarray(item_text[items[rows]], np.float64)
        if len(rows) < dim:
            out[u] = x.T @ np.linalg.solve(x @ x.T + lam * np.eye(len(rows)), e[rows])
        else:
            out[u] = np.linalg.solve(x.T @ x + lam * np.eye(dim), x.T @ e[rows])
    return out


def damped_biases(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
                  shrink_user: float = 10.0, shrink_item: float = 25.0, days: Optional[np.ndarray] = None,
                  drift_shrink: Optional[float] = None) -> DampedBiases:
    """The damped biases of ratings ``ratings`` of (user index, item index) pairs.

    Parameters
    ----------
    users, items, ratings
        One entry per rating (indices into ``n_users`` / ``n_items``).
    shrink_user, shrink_item
        λ_user, λ_item: pseudo-ratings at the mean each bias is damped with.
    days, drift_shrink
        The ratings' times (days) and λ_drift (year² of pseudo-spread at slope 0): with both, the
        user biases drift linearly in time; without, the plain damped biases.
    """
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    r = np.asarray(ratings, np.float64)
    mu = float(r.mean()) if len(r) else 0.0
    n_i = np.bincount(items, minlength=n_items).astype(np.float64)
    b_i = np.bincount(items, weights=r - mu, minlength=n_items) / np.maximum(n_i + float(shrink_item), 1e-9)
    n_u = np.bincount(users, minlength=n_users).astype(np.float64)
    b_u = np.bincount(users, weights=r - mu - b_i[items], minlength=n_users) / np.maximum(n_u + float(shrink_user), 1e-9)
    if days is None or drift_shrink is None or not len(r):
        return DampedBiases(mu, b_u.astype(np.float32), b_i.astype(np.float32), n_u.astype(np.int64),
                            n_i.astype(np.int64))
    t = np.asarray(days, np.float64)
    t_mean = np.bincount(users, weights=t, minlength=n_users) / np.maximum(n_u, 1.0)
    dt = (t - t_mean[users]) / YEAR_DAYS
    sxx = np.bincount(users, weights=dt * dt, minlength=n_users) + float(drift_shrink)
    d_u = np.zeros(n_users)
    for _ in range(DRIFT_ROUNDS):
        b_i = np.bincount(items, weights=r - mu - b_u[users] - d_u[users] * dt,
                          minlength=n_items) / np.maximum(n_i + float(shrink_item), 1e-9)
        rest = r - mu - b_i[items]
        b_u = np.bincount(users, weights=rest - d_u[users] * dt,
                          minlength=n_users) / np.maximum(n_u + float(shrink_user), 1e-9)
        d_u = np.bincount(users, weights=(rest - b_u[users]) * dt, minlength=n_users) / np.maximum(sxx, 1e-9)
    return DampedBiases(mu, b_u.astype(np.float32), b_i.astype(np.float32), n_u.astype(np.int64),
                        n_i.astype(np.int64), d_u.astype(np.float32), t_mean, last_day=float(t.max()))


def choose_taste(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, days: np.ndarray,
                 item_text: np.ndarray, n_users: int, n_items: int, fit: np.ndarray, val: np.ndarray,
                 shrink_user: float = 10.0, shrink_item: float = 25.0, drift_shrink: Optional[float] = None,
                 grid: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)) -> dict:
    """λ_taste by the MAE on later ratings (as :func:`choose_drift`, with its chosen drift).

    Parameters
    ----------
    users, items, ratings, days
        One entry per rating (indices, values, times in days).
    item_text
        The items' text vectors.
    n_users, n_items
        Index sizes.
    fit, val
        Rows to fit on and the later rows to score.
    shrink_user, shrink_item, drift_shrink
        The damped biases' λs and the drift's (None: no drift).
    grid
        The λ_taste tried.

    Returns
    -------
    dict
        ``shrink`` (None when no taste predicts the validation ratings better) and ``val_mae``.
    """
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    r, t = np.asarray(ratings, np.float64), np.asarray(days, np.float64)
    if not len(val) or not len(fit):
        return {"shrink": None, "val_mae": {}}
    b = damped_biases(users[fit], items[fit], r[fit], n_users, n_items, shrink_user, shrink_item,
                      days=t[fit], drift_shrink=drift_shrink)
    residual = r[fit] - b.predict(users[fit], items[fit], days=t[fit])
    vu, vi = users[val], items[val]
    base = _after_fit(b, vu, vi)

    def candidates():
        yield None, base
        for lam in grid:  # users without fitting ratings have a zero taste vector
            w = taste_vectors(users[fit], items[fit], residual, item_text, n_users, lam)
            yield lam, base + taste_scores(w, item_text, vu, vi)

    return _lowest_mae(candidates(), r[val])


def choose_drift(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, days: np.ndarray, n_users: int,
                 n_items: int, fit: np.ndarray, val: np.ndarray, shrink_user: float = 10.0,
                 shrink_item: float = 25.0, grid: tuple[float, ...] = (5.0, 20.0, 80.0)) -> dict:
    """λ_drift by the MAE on later ratings: fit on ``fit`` rows, predict ``val`` rows at the end of ``fit``.

    The validation ratings are predicted with the user biases as of the last fitting rating,
    the way a trained model predicts after its training period.

    Parameters
    ----------
    users, items, ratings, days
        One entry per rating (indices, values, times in days).
    n_users, n_items
        Index sizes.
    fit, val
        Rows to fit on and the later rows to score.
    shrink_user, shrink_item
        The damped biases' λs.
    grid
        The λ_drift tried (besides no drift).

    Returns
    -------
    dict
        ``shrink`` (the chosen λ_drift, None when no drift predicts better than none) and
        ``val_mae`` (name → MAE: ``"off"`` and each λ).
    """
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    r, t = np.asarray(ratings, np.float64), np.asarray(days, np.float64)
    if not len(val) or not len(fit):
        return {"shrink": None, "val_mae": {}}
    vu, vi = users[val], items[val]
    candidates = ((lam, _after_fit(damped_biases(users[fit], items[fit], r[fit], n_users, n_items, shrink_user,
                                                 shrink_item, days=t[fit], drift_shrink=lam), vu, vi))
                  for lam in (None, *grid))
    return _lowest_mae(candidates, r[val])


def _after_fit(b: DampedBiases, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """μ + b_i + b_u for later ratings, the user biases taken as of the last fitted rating (as a model predicts)."""
    return b.predict(users, items, days=np.full(len(users), b.last_day))


def _lowest_mae(candidates, truth: np.ndarray) -> dict:
    """``{"shrink", "val_mae"}`` of (λ or None for "off", predictions) pairs: the λ of the lowest MAE (ties: the first)."""
    scores: dict[str, float] = {}
    best, best_mae = None, float("inf")
    for lam, pred in candidates:
        err = float(np.mean(np.abs(pred - truth)))
        scores["off" if lam is None else f"{lam:g}"] = err
        if err < best_mae - 1e-6:
            best, best_mae = lam, err
    return {"shrink": best, "val_mae": scores}
