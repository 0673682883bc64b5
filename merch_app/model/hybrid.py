"""The hybrid BERT + collaborative-filtering model (score, explain, save/load; fitting in :mod:`hybrid_fit`).

Score of user u for item i (implicit mode)::

    M(u, i) = (α + α_cold·[i unsold])·uᵀWv
                               bilinear CF part, u = P_u + A·t_u, v = Q_i + B·t_i; items without
                               sales before the reference time get their own weight (format 6)
            + β·(b_i + wᵀt_i)  item bias (ID part + text part)
            + γ·h(u, i) + α_own·[u bought i]·uᵀWv
                               the user's own history with the item (repeat purchases: counts, days,
                               recency, the item's repeat propensity, overdue vs own re-buy interval,
                               the user's purchases of it in the same weeks a year earlier and in
                               Christmas seasons, ...)
            + η·g(i)           item trend (recent sales, novelty, its sales in the same weeks a year
                               earlier, its season lift and Christmas share, "unsold": no sales yet)

α_own is separate because the CF part of an item the user already bought was
fitted on that purchase: it ranks re-purchases less well than new items, and
the combiner (fitted on an internal cut) learns by how much.  α_cold and the
weight of "unsold" are learned the same way from the items new at the internal
cuts (config ``cold_feature``); :mod:`cold_items` can instead impute an unsold
item's trend, item bias and ID embedding from its text neighbours (``cold_impute``).

t_u / t_i are BERT text vectors, P/Q learned ID embeddings (zero for items
without behaviour, so cold-start items score through ``B·t_i``).  Every part
is kept separately so :meth:`HybridModel.explain` can say where a score came
from.  Explicit mode (ratings) scores ``μ + b_u + b_i + uᵀWv + wᵀt_i``: μ and the damped
biases b_u, b_i in closed form (:mod:`rating_bias`, saved as ``base_user`` / ``base_item``; b_u may drift
in time, config ``rating_drift``, and is saved as of the last training rating; a closed-form user taste
w_uᵀt_i in text space, config ``rating_taste``, saved as ``base_taste``), the
bilinear and text parts fitted by MSE on the residual (older explicit models: all parts by MSE).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from merch_app.jobs import CancelToken, Progress
from merch_app.model import cold_items, text_matrix
from merch_app.model.history_features import (
    HAS_HISTORY, N_HIST, N_TREND, UNSOLD, HistoryState, item_trend_features,
)
from merch_app.model.hybrid_config import HybridConfig
from merch_app.model.hybrid_files import N_COMBINER, load_model_files, save_model
from merch_app.model.interactions import Interactions
from merch_app.model.rating_bias import taste_scores

BASE_ARRAYS = ("base_user", "base_item")  # explicit mode: the damped user / item biases (closed form)

SERVING_DROPS = ("P", "Q", "T_u")  # arrays a serving copy does without (see for_serving)
_PAIR_BLOCK = 65_536  # (user, item) pairs scored at once by pair_bilinear


class HybridModel:
    """BERT + CF hybrid recommender with an explainable additive score."""

    def __init__(self, config: HybridConfig | None = None) -> None:
        self.config = config or HybridConfig()
        self.user_ids = np.zeros(0, dtype=object)
        self.item_ids = np.zeros(0, dtype=object)
        self.arrays: dict[str, np.ndarray] = {}
        self.state: Optional[HistoryState] = None
        self.explicit = False
        self.history: list[dict] = []  # per-epoch log
        self.best_epoch = 0
        self.combiner = np.zeros(N_COMBINER, np.float32)
        self.combiner[:2] = 1.0  # α = β = 1 until a combiner is fitted
        self._derive()

    # ------------------------------------------------------------------ fit
    def fit(self, interactions: Interactions, item_text: np.ndarray, user_text: np.ndarray | None = None,
            progress: Optional[Callable[[Progress], None]] = None, cancel: Optional[CancelToken] = None,
            validation: Optional[float] = None, ref_day: Optional[float] = None) -> "HybridModel":
        """Train on ``interactions`` (all before the evaluation cut-off).

        Parameters
        ----------
        interactions
            Behaviour over the whole catalogue; ``item_text`` row i belongs to
            ``interactions.item_ids[i]``.
        item_text, user_text
            BERT vectors (unit norm).  Without ``user_text`` the user vectors
            are the recency-weighted mean of their history items' vectors.
            ``user_text`` may be a function returning them (or None): implicit
            training calls it after the internal-cut epochs, so the final user
            vectors are not held next to the cut's (0.2 GB at 250k users).
        progress, cancel
            Job protocol; progress comes once per batch (throttled) and at each
            epoch end with ``data["epoch_end"] = True`` and validation metrics.
        validation
            Share of the internal-cut label users held out for early stopping
            on NDCG@10 (default ``config.val_fraction``).
        ref_day
            "Now" for the history features at recommendation time (days since
            1970); default just after the last event.
        """
        # imported here: torch costs 1.4 s of a cached CLI query, and scoring never needs it
        from merch_app.model.hybrid_fit import HybridTrainer

        HybridTrainer(self).fit(interactions, item_text, user_text, progress, cancel, validation, ref_day)
        return self

    def continue_training(self, interactions: Interactions, epochs: int = 3,
                          progress: Optional[Callable[[Progress], None]] = None,
                          cancel: Optional[CancelToken] = None, ref_day: Optional[float] = None) -> "HybridModel":
        """More CF epochs on ``interactions`` (which use this model's user/item index).

        Add new items/users first (:meth:`add_items`, :meth:`add_users`).  The
        combiner weights are kept; history and trend features are rebuilt at
        ``ref_day`` (default: just after the last event).
        """
        from merch_app.model.hybrid_fit import HybridTrainer  # torch only when training (see fit)

        HybridTrainer(self).continue_training(interactions, epochs, progress, cancel, ref_day)
        return self

    def history_state(self, inter: Interactions, ref_day: float) -> HistoryState:
        """The user histories at ``ref_day`` as this model's features see them."""
        return HistoryState.build(inter, ref_day, self.config.history_half_life_days,
                                  relative=self.config.relative_recency, season=self.season())

    def trend_features(self, inter: Interactions, ref_day: float) -> np.ndarray:
        """The item trend features at ``ref_day`` as this model sees them (with its season window)."""
        return item_trend_features(inter, ref_day, self.season())

    def cold_parameters(self) -> Optional[tuple[float, int]]:
        """(λ, k) of the cold-item imputation (:mod:`cold_items`); None when it is off or not chosen yet."""
        cfg = self.config
        if self.explicit or not getattr(cfg, "cold_impute", False) or cfg.cold_shrink is None \
                or cfg.cold_neighbours is None:
            return None
        return float(cfg.cold_shrink), int(cfg.cold_neighbours)

    def fill_cold_items(self, params: bool = True, only: Optional[np.ndarray] = None) -> int:
        """Impute the parts of the items without sales in the current history from their text neighbours.

        The trend rows and (``params``) the item bias ``b_item`` and, with ``cold_cf_map``, the ID
        embedding ``Q`` of every item without sales before the history's reference time (or of the
        items ``only``), in place (:func:`cold_items.fill_cold`); the caller re-derives.  Nothing
        happens when ``cold_impute`` is off (the default).  Returns the number of items imputed.
        """
        p = self.cold_parameters()
        if p is None or self.state is None:
            return 0
        sold = self.state.item_sales[:, 0] > 0
        return cold_items.fill_cold(self.arrays, sold, p[0], p[1], bool(self.config.cold_cf_map), params, only)

    def season(self) -> Optional[tuple[float, float]]:
        """(lag, window length) in days of the seasonal features; None without them (older models, explicit)."""
        cfg = self.config
        window = getattr(cfg, "season_window_days", None)
        if not window or not getattr(cfg, "seasonal_features", None):
            return None
        return float(cfg.season_lag_days), float(window)

    # -------------------------------------------------------------- derived
    def _derive(self, ids: Optional[bool] = None, vectors: bool = True) -> None:
        """Precompute u, v, item bias and id lookups from the stored arrays.

        ``ids``: rebuild the id -> position dicts at their next use (None:
        when their size no longer matches the ids).
        ``vectors``: recompute U, V, UW and the item bias (False when only the
        combiner weights changed).
        """
        if ids:
            self._user_pos = self._item_pos = None
        a = self.arrays
        if not a:
            return
        c = a["combiner"]
        self.alpha, self.beta, self.mu = float(c[0]), float(c[1]), float(c[2])
        self.gamma, self.eta = c[3:3 + N_HIST].copy(), c[3 + N_HIST:3 + N_HIST + N_TREND].copy()
        # α_own: the CF part of a history item was fitted on that very purchase, so it says less
        # about a re-purchase than about a new item; the combiner learns how much less
        self.alpha_own = float(c[3 + N_HIST + N_TREND]) if len(c) > 3 + N_HIST + N_TREND else 0.0
        # α_cold (format 6, config cold_feature): the CF part of an item without sales is its text
        # alone; the combiner learns on the internal cut how much that deserves (0: weight α as for all)
        self.alpha_cold = float(c[4 + N_HIST + N_TREND]) if len(c) > 4 + N_HIST + N_TREND else 0.0
        if vectors:
            self._check_trainable("recompute its vectors")
            self.drop_derived()  # free the old ones first (0.4 GB at 1M items)
            # sums in place: ``Q + times(...)`` held two 0.26 GB arrays at once at 1M items
            u = text_matrix.times(a["T_u"], a["A"].T)
            u += a["P"]
            self.UW = u @ a["W"]
            del u
            self.V = text_matrix.times(a["T_i"], a["B"].T)
            self.V += a["Q"]
            self.item_bias = text_matrix.times(a["T_i"], a["w_text_bias"])
            self.item_bias += a["b_item"]
        self._trend_derived()

    def _trend_derived(self) -> None:
        """The trend score per item and the bilinear weight per item (α, plus α_cold on unsold items)."""
        trend = self.arrays["trend"]
        self.trend_score = trend @ self.eta
        self.alpha_item = None if self.alpha_cold == 0.0 else (
            self.alpha + self.alpha_cold * trend[:, UNSOLD]).astype(np.float32)

    def _alpha(self, items) -> np.ndarray | float:
        """The bilinear weight of ``items``: α, or per item α + α_cold·[unsold] (format 6, cold_feature)."""
        return self.alpha if self.alpha_item is None else self.alpha_item[items]

    def _bases(self) -> tuple[np.ndarray, np.ndarray]:
        """(damped user biases, damped item biases); zeros for models without them (implicit, older files)."""
        a = self.arrays
        if "base_user" in a and "base_item" in a:
            return a["base_user"], a["base_item"]
        return np.zeros(len(self.user_ids), np.float32), np.zeros(self.n_items, np.float32)

    def _taste(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The user-taste part w_uᵀt_i of (known user, item) index pairs; zeros without taste vectors."""
        if "base_taste" not in self.arrays:
            return np.zeros(len(users), np.float32)
        return taste_scores(self.arrays["base_taste"], self.arrays["T_i"], users, items).astype(np.float32)

    @property
    def user_pos(self) -> dict[str, int]:
        """User id -> row, built at first use (training never needs it; ~0.1 GB at a million ids)."""
        return self._positions("_user_pos", self.user_ids)

    @user_pos.setter
    def user_pos(self, value: Optional[dict]) -> None:
        self._user_pos = value

    @property
    def item_pos(self) -> dict[str, int]:
        """Item id -> row, built at first use (and again when the ids grow)."""
        return self._positions("_item_pos", self.item_ids)

    @item_pos.setter
    def item_pos(self, value: Optional[dict]) -> None:
        self._item_pos = value

    def _positions(self, attr: str, ids) -> dict[str, int]:
        pos = self.__dict__.get(attr)
        if pos is None or len(pos) != len(ids):
            pos = {str(x): n for n, x in enumerate(ids)}
            setattr(self, attr, pos)
        return pos

    def for_serving(self) -> None:
        """Keep only what scoring and explaining need: drop P, Q and T_u (after computing U).

        U, V and UW already hold the learned user and item vectors; the ID
        embeddings and user text vectors are inputs to them, needed again
        only to train, grow or save the model (0.5 GB at 1M items / 250k
        users).  The ranking bundle calls this; such a copy refuses to save.
        """
        _ = self.U  # the user map and segments read it
        for name in SERVING_DROPS:
            self.arrays.pop(name, None)
        self.serving_only = True

    def _check_trainable(self, what: str) -> None:
        if getattr(self, "serving_only", False):
            raise RuntimeError(f"this is a serving copy of the model (no ID embeddings): cannot {what}; "
                               "load it from the registry instead")

    def drop_derived(self) -> None:
        """Forget U, V and UW (recomputed by the next ``_derive``); training frees them during an epoch."""
        self.V = self.UW = self._U = self._centred = None

    def _centred_norms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(m, V·m, ‖v − m‖) with m the mean item vector, kept until the vectors change."""
        if getattr(self, "_centred", None) is None:
            v_mean = self.V.mean(axis=0, dtype=np.float64).astype(np.float32)
            v_dot_mean = self.V @ v_mean
            sq = np.einsum("ij,ij->i", self.V, self.V) - 2.0 * v_dot_mean + float(v_mean @ v_mean)
            self._centred = (v_mean, v_dot_mean, np.sqrt(np.maximum(sq, 0.0)))
        return self._centred

    def has_behaviour(self, item_id) -> bool:
        """Whether ``item_id`` had behaviour in the model's training data (False: unknown or never sold then).

        Such an item's vector v is its text part alone, so its co-behaviour neighbours say
        nothing; the ranker gives it related items by text instead.  Files saved before the
        model kept ``unsold_at_fit`` say True for every known item.
        """
        i = self.item_pos.get(str(item_id))
        if i is None:
            return False
        unsold = self.arrays.get("unsold_at_fit")
        return unsold is None or float(unsold[i]) == 0.0

    @property
    def U(self) -> np.ndarray:
        """User vectors ``P + A·t_u`` (computed on first use: only the maps and segments need them)."""
        if getattr(self, "_U", None) is None:
            a = self.arrays
            self._U = text_matrix.times(a["T_u"], a["A"].T)
            self._U += a["P"]
        return self._U

    def pair_bilinear(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``uᵀWv`` for (user index, item index) pairs, float32, in blocks of rows.

        Gathering both factor rows for a million pairs at once held 0.5 GB.
        """
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        out = np.empty(len(users), np.float32)
        for lo in range(0, len(users), _PAIR_BLOCK):
            hi = lo + _PAIR_BLOCK
            out[lo:hi] = np.einsum("nd,nd->n", self.UW[users[lo:hi]], self.V[items[lo:hi]])
        return out

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def _items(self, item_idx) -> np.ndarray:
        return np.arange(self.n_items) if item_idx is None else np.asarray(item_idx, dtype=np.int64)

    def _user_vector(self, user_id, user_text) -> tuple[int, Optional[np.ndarray]]:
        """(user index or -1, uᵀW row or None when nothing is known about the user)."""
        if not self.arrays:
            raise RuntimeError("model is not trained")
        u = self.user_pos.get(str(user_id), -1) if user_id is not None else -1
        if u >= 0:
            return u, self.UW[u]
        if user_text is not None:
            t = np.asarray(user_text, np.float32).reshape(-1)
            return -1, (self.arrays["A"] @ t) @ self.arrays["W"]
        return -1, None

    # --------------------------------------------------------------- scores
    def score_parts(self, user_id, item_idx=None, user_text: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per-item parts of the score that sum to :meth:`score`.

        Keys: ``bilinear`` (α·uᵀWv; (α + α_cold)·uᵀWv for unsold items), ``item_bias``, ``history`` (the user's own
        past with the item: γ·h(u, i) plus α_own·uᵀWv, the smaller weight the
        CF part gets on items the user already bought; 0 for other items),
        ``trend`` (recent item sales); explicit models add
        ``user_bias`` (the damped user bias, with its drift taken as of the last training rating;
        0 for an unknown user), ``item_bias_damped``
        (the damped item bias; ``item_bias`` is then the residual's text bias), ``user_taste``
        (w_uᵀt_i, the user's taste in text space; 0 without taste vectors) and ``global``
        (the mean rating).  All zeros for an anonymous user without a text vector.
        """
        items = self._items(item_idx)
        u, uw = self._user_vector(user_id, user_text)
        zeros = np.zeros(len(items), np.float32)
        keys = ["bilinear", "item_bias", "history", "trend"] + (
            ["user_bias", "user_taste", "item_bias_damped", "global"] if self.explicit else [])
        if uw is None:
            return {k: zeros.copy() for k in keys}
        raw = self.V[items] @ uw
        hist = self.state.features(np.full(len(items), u), items) if u >= 0 else None
        parts = {
            "bilinear": (self._alpha(items) * raw).astype(np.float32),
            "item_bias": (self.beta * self.item_bias[items]).astype(np.float32),
            # own items: γ·h plus the own-item correction of the CF weight, α_own·uᵀWv
            "history": (hist @ self.gamma + self.alpha_own * hist[:, HAS_HISTORY] * raw).astype(np.float32)
            if hist is not None else zeros.copy(),
            "trend": self.trend_score[items].astype(np.float32),
        }
        if self.explicit:
            base_u, base_i = self._bases()
            parts["user_bias"] = np.full(len(items), self.arrays["b_user"][u] + base_u[u] if u >= 0 else 0.0,
                                         np.float32)
            parts["user_taste"] = self._taste(np.full(len(items), u), items) if u >= 0 else zeros.copy()
            parts["item_bias_damped"] = np.asarray(base_i[items], np.float32)
            parts["global"] = np.full(len(items), self.mu, np.float32)
        return parts

    def score(self, user_id, item_idx=None, user_text: np.ndarray | None = None) -> np.ndarray:
        """Total CF-side score per item (bilinear + biases + history + trend); 0s if anonymous."""
        parts = self.score_parts(user_id, item_idx, user_text)
        return np.sum(np.stack(list(parts.values())), axis=0).astype(np.float32)

    def predict_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of (user index, item index) pairs (explicit: predicted ratings)."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        hist = self.state.features(users, items)
        alpha = self._alpha(items) + self.alpha_own * hist[:, HAS_HISTORY]
        s = alpha * self.pair_bilinear(users, items) + self.beta * self.item_bias[items]
        s = s + self.trend_score[items] + hist @ self.gamma
        if self.explicit:
            base_u, base_i = self._bases()
            s = s + self.arrays["b_user"][users] + base_u[users] + base_i[items] + self.mu + self._taste(users, items)
        return s.astype(np.float32)

    def predict_ratings(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of (user index, item index) pairs; user index -1 = a user unknown to the model.

        An unknown user has no factor vector and a user bias of 0 (fully shrunk), so the
        prediction is μ + damped item bias + the item's text bias; an item without training
        ratings has damped bias 0 and is scored through its text vector (``v = Q_i + B·t_i``
        with ``Q_i`` ≈ 0).  Known users: exactly :meth:`predict_pairs`.
        """
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        out = np.empty(len(users), np.float32)
        known = users >= 0
        if known.any():
            out[known] = self.predict_pairs(users[known], items[known])
        if (~known).any():
            _, base_i = self._bases()
            it = items[~known]
            out[~known] = self.beta * self.item_bias[it] + self.trend_score[it] + (
                (base_i[it] + self.mu) if self.explicit else 0.0)
        return out

    def score_matrix(self, users: np.ndarray, parts: tuple[str, ...] = ("bilinear", "item_bias", "history", "trend")
                     ) -> np.ndarray:
        """Scores of user indices × all items, shape (len(users), n_items), for chosen parts."""
        users = np.asarray(users, np.int64)
        s = np.zeros((len(users), self.n_items), np.float32)
        if "bilinear" in parts:
            s += (self.UW[users] @ self.V.T) * (self.alpha if self.alpha_item is None else self.alpha_item[None, :])
        if "item_bias" in parts:
            s += self.beta * self.item_bias[None, :]
            if self.explicit:
                s += self._bases()[1][None, :]
        if "trend" in parts:
            s += self.trend_score[None, :]
        if "history" in parts and len(self.state.keys) and (np.any(self.gamma) or self.alpha_own != 0.0):
            rows, ki = self.state.pairs_of(users)  # only these users' pairs (keys are sorted by user)
            ku = users[rows]
            h = self.state.features(ku, ki) @ self.gamma
            if self.alpha_own != 0.0:  # own items: the CF weight is α + α_own
                h = h + self.alpha_own * self.pair_bilinear(ku, ki)
            s[rows, ki] += h
        if self.explicit:
            s += (self.arrays["b_user"][users] + self._bases()[0][users] + self.mu)[:, None]
            if "base_taste" in self.arrays:
                s += text_matrix.times(self.arrays["T_i"], np.asarray(self.arrays["base_taste"][users], np.float32).T).T
        return s

    _score_rows = score_matrix

    def recommend(self, user_id, k: int = 10, exclude_seen: bool = False, item_idx=None,
                  user_text: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (item ids, scores) for a user (history items excluded if asked)."""
        items = self._items(item_idx)
        s = self.score(user_id, items, user_text).astype(np.float64)
        u = self.user_pos.get(str(user_id), -1) if user_id is not None else -1
        if exclude_seen and u >= 0:
            seen, _, _ = self.state.user_items(u)
            s[np.isin(items, seen)] = -np.inf
        k = min(k, int(np.isfinite(s).sum()))
        if k <= 0:
            return np.zeros(0, dtype=object), np.zeros(0, np.float32)
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        return self.item_ids[items[top]], s[top].astype(np.float32)

    def similar_items(self, item_id, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Items whose learned vectors v (co-behaviour + text) are closest: cosine after centring.

        The vectors are compared after the catalogue's mean vector is taken off: every
        v = q + B·t shares the component B·t̄ of the text vectors' mean, large for an encoder
        whose vectors crowd into one cone (fine-tuned ones do), and plain cosine then ranks the
        items with the most of that shared part first instead of the co-bought ones.
        """
        i = self.item_pos.get(str(item_id))
        if i is None:
            raise KeyError(f"unknown item {item_id!r}")
        v_mean, v_dot_mean, norm = self._centred_norms()
        # (v_j - m)·(v_i - m) without a centred copy of V (0.26 GB at 1M items)
        dots = self.V @ self.V[i] - v_dot_mean - v_dot_mean[i] + float(v_mean @ v_mean)
        sims = dots / np.maximum(norm * norm[i], 1e-12)
        sims[i] = -np.inf
        k = min(k, self.n_items - 1)
        top = np.argpartition(-sims, k - 1)[:k] if k > 0 else np.zeros(0, np.int64)
        top = top[np.argsort(-sims[top], kind="stable")]
        return self.item_ids[top], sims[top].astype(np.float32)

    def explain(self, user_id, item_id, top: int = 5, user_text: np.ndarray | None = None) -> dict[str, Any]:
        """Why ``item_id`` scores what it does for ``user_id``.

        Returns
        -------
        dict
            ``score``; ``parts`` (bilinear / item_bias / history / trend, plus
            user_bias / user_taste / item_bias_damped / global for explicit models, summing
            to ``score``, which is then the predicted rating); ``because``: the user's history items pushing the
            item up most — contribution = the item's recency-weighted share of
            the history × α·v_jᵀWv_i, plus the history part for the item itself;
            ``factors``: the bilinear part split over latent dimensions (sums to
            ``parts["bilinear"]``).
        """
        i = self.item_pos.get(str(item_id))
        if i is None:
            raise KeyError(f"unknown item {item_id!r}")
        parts = {k: float(v[0]) for k, v in self.score_parts(user_id, [i], user_text).items()}
        u, uw = self._user_vector(user_id, user_text)
        because: list[dict[str, Any]] = []
        if u >= 0:
            hist_items, count, recent = self.state.user_items(u)
            if len(hist_items):
                w = recent if recent.sum() > 0 else count
                share = w / max(float(w.sum()), 1e-12)
                contrib = share * self._alpha(i) * ((self.V[hist_items] @ self.arrays["W"]) @ self.V[i])
                contrib = contrib + np.where(hist_items == i, parts["history"], 0.0)
                order = np.argsort(-contrib, kind="stable")[:top]
                because = [{"item_id": str(self.item_ids[hist_items[j]]), "contribution": float(contrib[j]),
                            "same_item": bool(hist_items[j] == i), "times": float(count[j])}
                           for j in order if contrib[j] > 0]
        factors: list[dict[str, Any]] = []
        if uw is not None:
            f = self._alpha(i) * uw * self.V[i]
            order = np.argsort(-np.abs(f), kind="stable")[:top]
            factors = [{"dim": int(d), "contribution": float(f[d])} for d in order]
        return {"user_id": user_id, "item_id": str(item_id), "known_user": u >= 0,
                "score": float(sum(parts.values())), "parts": parts, "because": because, "factors": factors}

    # ----------------------------------------------------------- cold start
    def add_items(self, item_ids, item_text: np.ndarray) -> None:
        """Add (or re-text) items; new ones score through their text vector at once.

        With ``cold_impute`` on, a new item also takes its trend row and item bias (and, with
        ``cold_cf_map``, its ID embedding) from its text neighbours among the sold items.
        """
        self._check_trainable("add items")
        item_text = np.asarray(item_text, np.float32).reshape(len(item_ids), -1)
        a = self.arrays
        new_ids, new_rows = [], []
        for iid, t in zip(item_ids, item_text):
            pos = self.item_pos.get(str(iid))
            if pos is None:
                new_ids.append(str(iid))
                new_rows.append(t)
            else:
                if not a["T_i"].flags.writeable or not a["T_i"].flags.owndata:
                    a["T_i"] = a["T_i"].copy()  # may be shared with the training input: re-text a copy
                a["T_i"][pos] = t
        if new_ids:
            m = len(new_ids)
            a["T_i"] = np.vstack([a["T_i"], np.asarray(new_rows, a["T_i"].dtype)])
            a["Q"] = np.vstack([a["Q"], np.zeros((m, a["Q"].shape[1]), np.float32)])
            a["b_item"] = np.concatenate([a["b_item"], np.zeros(m, np.float32)])
            if "base_item" in a:  # a new item has no ratings: damped bias 0
                a["base_item"] = np.concatenate([a["base_item"], np.zeros(m, np.float32)])
            a["trend"] = np.vstack([a["trend"], np.zeros((m, a["trend"].shape[1]), np.float32)])
            if "unsold_at_fit" in a:  # added after the fit: no behaviour in its training data
                a["unsold_at_fit"] = np.concatenate([a["unsold_at_fit"], np.ones(m, np.float32)])
            self.item_ids = np.concatenate([self.item_ids, np.asarray(new_ids, dtype=object)])
            self.state = self.state.resized(len(self.user_ids), len(self.item_ids))
            # with cold_impute: trend, item bias (and Q) of the new items from their text neighbours
            self.fill_cold_items(only=np.arange(self.n_items - m, self.n_items))
        self._derive()

    def add_users(self, user_ids, user_text: np.ndarray, derive: bool = True) -> None:
        """Add users (no ID embedding yet) scored through their text vector and history.

        ``derive=False`` leaves U/V/UW to a later ``_derive()`` (the caller changes more first).
        """
        self._check_trainable("add users")
        user_text = np.asarray(user_text, np.float32).reshape(len(user_ids), -1)
        new = [(str(u), t) for u, t in zip(user_ids, user_text) if str(u) not in self.user_pos]
        if not new:
            return
        a, m = self.arrays, len(new)
        a["T_u"] = np.vstack([a["T_u"], np.asarray([t for _, t in new], a["T_u"].dtype)])
        a["P"] = np.vstack([a["P"], np.zeros((m, a["P"].shape[1]), np.float32)])
        a["b_user"] = np.concatenate([a["b_user"], np.zeros(m, np.float32)])
        if "base_user" in a:  # a new user has no ratings: damped bias 0
            a["base_user"] = np.concatenate([a["base_user"], np.zeros(m, np.float32)])
        if "base_taste" in a:  # ... and no taste vector
            a["base_taste"] = np.vstack([a["base_taste"], np.zeros((m, a["base_taste"].shape[1]), a["base_taste"].dtype)])
        self.user_ids = np.concatenate([self.user_ids, np.asarray([u for u, _ in new], dtype=object)])
        self.state = self.state.resized(len(self.user_ids), len(self.item_ids))
        self._derive(vectors=derive)

    def with_history(self, inter, ref_day: float):
        """A copy whose history and trend features are rebuilt from ``inter`` at ``ref_day``.

        ``inter`` must use this model's user and item index (load it with
        ``user_ids=model.user_ids`` and ``item_ids=model.item_ids``).  Used to
        score "as of" a date (evaluation) or to bring a model up to date
        with events that arrived after training.
        """
        other = copy.copy(self)  # shares U, V and the id dicts: the history does not change them
        other.arrays = dict(self.arrays)
        other.refresh_history(inter, ref_day)
        return other

    def refresh_history(self, inter, ref_day: float) -> None:
        """Rebuild the history and trend features from ``inter`` at ``ref_day``, in place (see :meth:`with_history`)."""
        if len(inter.item_ids) != self.n_items or len(inter.user_ids) != len(self.user_ids):
            raise ValueError("interactions do not use the model's user/item index")
        self.state = None
        self.arrays["trend"] = self.trend_features(inter, ref_day)
        self.state = self.history_state(inter, ref_day)
        self.fill_cold_items(params=False)  # unsold items: trend rows from their text neighbours (if on)
        self._trend_derived()

    # ---------------------------------------------------------- persistence
    def save(self, folder: Path) -> None:
        """Write ``config.json``, ``ids.json`` and ``arrays.safetensors`` into ``folder``."""
        self._check_trainable("be saved")
        save_model(self, Path(folder))

    @classmethod
    def load(cls, folder: Path):
        """Read a model saved by :meth:`save`; :class:`ModelLoadError` if anything is off."""
        return load_model_files(cls, Path(folder))
