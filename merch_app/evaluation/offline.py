"""Offline evaluation of a model version on a time split, with baselines.

:func:`evaluate` loads a registered model and rebuilds its split from the
workspace; :func:`evaluate_model` does the work on in-memory objects (the
training job calls it before the version is saved).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from merch_app.evaluation import baselines as bl
from merch_app.evaluation.compare import paired_test, wins_losses_ties
from merch_app.evaluation.metrics import gini, mae, ndcg_at_k, precision_at_k, ranking_report, rmse
from merch_app.evaluation.split import describe_split, normalise_date, relevant_items, time_split
from merch_app.jobs import CancelToken, Progress
from merch_app.model import text_matrix
from merch_app.model.history_features import key_pairs_of
from merch_app.model.interactions import Interactions, load_interactions, ts_to_days
from merch_app.model.rating_bias import damped_biases
from merch_app.model.registry import RegistryError, active_version, get_version, load_model

CF_ONLY_PARTS = ("bilinear", "item_bias")


# Every test user is scored against every item several times (model, CF only, text only, cold
# start); above this many user x item cells a seeded sample of users is evaluated (2,000 users at 1M items).
EVAL_CELLS = 2_000_000_000
MIN_EVAL_USERS = 2000


class _Catalogue:
    """What the catalogue metrics need, computed once per evaluation.

    ``ranking_report(catalogue=, popularity=)`` rebuilt a list of every item id,
    a popularity dict and the long-tail set for each of the five reports
    (~0.3 GB at a million items); the same numbers come from arrays here.
    """

    def __init__(self, item_ids, item_pos: dict, counts: np.ndarray, head_share: float = 0.2) -> None:
        self.n, self.pos = len(item_ids), item_pos
        # long_tail_items' order: most popular first, ties by id
        order = np.lexsort((np.asarray([str(i) for i in item_ids]), -np.asarray(counts, np.float64)))
        self.is_tail = np.zeros(self.n, bool)
        self.is_tail[order[int(math.ceil(head_share * self.n)):]] = True


def _report(rankings, relevant, k, catalogue: _Catalogue) -> dict[str, float]:
    """``ranking_report`` plus coverage, Gini and long-tail share (as ``ranking_report`` defines them)."""
    out = ranking_report(rankings, relevant, k)
    slots = np.array([catalogue.pos[str(i)] for u in relevant if relevant[u] for i in list(rankings.get(u, []))[:k]],
                     np.int64)
    counts = np.bincount(slots, minlength=catalogue.n)
    out["coverage"] = np.count_nonzero(counts) / catalogue.n if catalogue.n else 0.0
    out["gini"] = gini(counts)
    out["long_tail_share"] = float(catalogue.is_tail[slots].mean()) if len(slots) else 0.0
    return out


def cold_start_view(model, train: Interactions, relevant: dict[str, set], users: list[str], k: int = 10,
                    chunk: int = 256) -> dict[str, Any]:
    """How items without training behaviour (first sold in the test period) are ranked.

    Returns the number of such items among the relevant ones, their share of
    relevant pairs, and for the model, its text path alone and popularity: the
    mean percentile of those items in the user's full ranking (1 = top, 0.5 =
    random), their recall@k, and the share of top-k slots going to cold items.
    """
    counts = bl.item_popularity(train)
    cold = counts == 0
    pos = model.item_pos
    pairs_total = sum(len(relevant[u]) for u in users)
    cold_rel = {u: [pos[i] for i in relevant[u] if i in pos and cold[pos[i]]] for u in users}
    n_cold_pairs = sum(len(v) for v in cold_rel.values())
    out: dict[str, Any] = {
        "n_cold_items_relevant": int(len({j for v in cold_rel.values() for j in v})),
        "n_cold_items_catalogue": int(cold.sum()),
        "cold_share_of_relevant_pairs": n_cold_pairs / pairs_total if pairs_total else 0.0,
    }
    if not n_cold_pairs:
        return out
    rows = np.array([model.user_pos[u] for u in users], np.int64)
    text_u, text_i = model.arrays["T_u"], model.arrays["T_i"]
    scorers = {
        "model": lambda r: model.score_matrix(r),
        "text_only": lambda r: text_matrix.scores(text_u[r], text_i),
        # a read-only view, not a copy: np.tile held the GIL for the whole block (GUI stalls)
        "popularity": lambda r: np.broadcast_to(counts, (len(r), len(counts))),
    }
    chunk = bl.row_block(len(cold), chunk)
    for name, scorer in scorers.items():
        pct, hits, top_cold, slots = [], 0, 0, 0
        for lo in range(0, len(users), chunk):
            r = rows[lo:lo + chunk]
            s = np.asarray(scorer(r), np.float64)
            top = bl.top_k_rows(s, k)
            top_cold += int(cold[top].sum())
            slots += top.size
            for n, u in enumerate(users[lo:lo + chunk]):
                items = cold_rel[u]
                if not items:
                    continue
                row = s[n]
                above = (row[None, :] > row[items][:, None]).sum(1)
                pct.extend((1.0 - above / max(len(row) - 1, 1)).tolist())
                hits += int(np.isin(items, top[n]).sum())
        out[name] = {"mean_percentile": float(np.mean(pct)), f"recall@{k}": hits / n_cold_pairs,
                     f"cold_share_of_top{k}": top_cold / max(slots, 1)}
    return out


def beyond_history_view(model, train: Interactions, relevant: dict[str, set], users: list[str], k: int = 10,
                        max_cells: int = 4_000_000) -> dict[str, Any]:
    """Ranking of items the user has *not* bought before (history removed from lists and labels).

    Repeat purchases dominate many shops, so the main metrics mostly measure
    how history items are ordered; this view isolates discovery: model, CF
    part alone, text alone and popularity on the same new-to-the-user items.
    """
    n_items = model.n_items
    chunk = max(1, max_cells // max(n_items, 1))
    own_keys = bl.own_item_keys(train)
    rows = np.array([model.user_pos[u] for u in users], np.int64)
    # per test user from the sorted keys: a set of every key held 2M Python ints (0.13 GB at 10M events)
    lo, hi = np.searchsorted(own_keys, rows * n_items), np.searchsorted(own_keys, (rows + 1) * n_items)
    new_rel = {}
    for u, a, b in zip(users, lo, hi):
        own = set((own_keys[a:b] % n_items).tolist())
        new_rel[u] = {i for i in relevant[u] if i in model.item_pos and model.item_pos[i] not in own}
    counts = bl.item_popularity(train)
    scorers = {
        "model": lambda r: model.score_matrix(r),
        "cf_only": lambda r: model.score_matrix(r, CF_ONLY_PARTS),
        "text_only": lambda r: text_matrix.scores(model.arrays["T_u"][r], model.arrays["T_i"]),
        # own cells are masked in place: a copy, but not by np.tile, which held the GIL throughout
        # (1 s for 64 rows x 1M items; this copy releases it)
        "popularity": lambda r: np.array(np.broadcast_to(counts, (len(r), len(counts)))),
    }
    out: dict[str, Any] = {"share_of_relevant_pairs": sum(map(len, new_rel.values())) /
                           max(sum(len(relevant[u]) for u in users), 1)}
    for name, scorer in scorers.items():
        rankings = {}
        for lo in range(0, len(rows), chunk):
            r = rows[lo:lo + chunk]
            s = np.asarray(scorer(r), np.float64)
            s[key_pairs_of(own_keys, n_items, r)] = -np.inf  # the users' own items
            rankings.update(bl.score_ranking(s, users[lo:lo + chunk], model.item_ids, k))
        rep = ranking_report(rankings, new_rel, k)
        out[name] = {m: rep[m] for m in (f"precision@{k}", f"recall@{k}", f"ndcg@{k}")}
    return out


def evaluate_model(model, train: Interactions, relevant: dict[str, set], k: int = 10, *,
                   test_ratings: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
                   progress=None, cancel: Optional[CancelToken] = None) -> dict[str, Any]:
    """Metrics of ``model`` and the baselines for the users in ``relevant`` known to the model.

    Parameters
    ----------
    train
        The training interactions (for popularity and user history).
    relevant
        user -> items bought in the test period.
    test_ratings
        (user idx, item idx, rating) of test ratings (explicit models): adds MAE/RMSE.
    """
    users = sorted(u for u in relevant if u in model.user_pos and relevant[u])
    n_users_all = len(users)
    cap = max(MIN_EVAL_USERS, EVAL_CELLS // max(len(model.item_ids), 1))
    if len(users) > cap:  # large catalogues: a seeded sample of test users keeps evaluation to minutes
        keep = np.sort(np.random.default_rng(0).choice(len(users), cap, replace=False))
        users = [users[i] for i in keep]
    rel = {u: relevant[u] for u in users}
    catalogue = _Catalogue(model.item_ids, model.item_pos, bl.item_popularity(train))
    steps = ["model", "cf_only", "text_only", "popularity", "user_history", "cold_start", "beyond_history"]

    def step(n: int, name: str) -> None:
        if cancel is not None:
            cancel.check()
        if progress:
            progress(Progress(n, len(steps), f"evaluating {name}", data={"phase": "evaluate"}))

    step(0, "model")
    out: dict[str, Any] = {"k": k, "n_test_users": len(users)}
    if n_users_all > len(users):
        out["test_users_sampled_from"] = n_users_all
    lists = {"model": bl.model_ranking(model, users, k)}
    out["model"] = _report(lists["model"], rel, k, catalogue)
    step(1, "CF only")
    base: dict[str, Any] = {}
    lists["cf_only"] = bl.model_ranking(model, users, k, CF_ONLY_PARTS)
    base["cf_only"] = _report(lists["cf_only"], rel, k, catalogue)
    step(2, "text only")
    rows = [model.user_pos[u] for u in users]
    lists["text_only"] = bl.text_only_ranking(model.arrays["T_u"][rows], model.arrays["T_i"], users,
                                              model.item_ids, k)
    base["text_only"] = _report(lists["text_only"], rel, k, catalogue)
    step(3, "popularity")
    lists["popularity"] = bl.popularity_ranking(train, users, k)
    base["popularity"] = _report(lists["popularity"], rel, k, catalogue)
    step(4, "user history")
    lists["user_history"] = bl.user_history_ranking(train, users, k)
    base["user_history"] = _report(lists["user_history"], rel, k, catalogue)
    out["baselines"] = base
    step(5, "cold start")
    out["cold_start"] = cold_start_view(model, train, rel, users, k)
    step(6, "beyond history")
    out["beyond_history"] = beyond_history_view(model, train, rel, users, k)
    if test_ratings is not None and len(test_ratings[0]):
        out["ratings"] = rating_report(model, train, test_ratings)
        overall = out["ratings"]["all"]
        out["mae"], out["rmse"] = overall["model"]["mae"], overall["model"]["rmse"]
        for name in RATING_BASELINES:
            base[name] = dict(overall[name])
    best = max(base, key=lambda b: base[b].get(f"ndcg@{k}", -1.0))
    out["strongest_baseline"] = best
    out["beats_strongest"] = all(out["model"][m] > base[best][m] for m in (f"precision@{k}", f"ndcg@{k}"))
    if best in lists:
        out["paired_vs_strongest"] = paired_user_comparison(lists["model"], lists[best], rel, k)
    return out


RATING_BASELINES = ("global_mean", "damped_item_bias", "damped_biases")
RATING_SEGMENTS = ("all", "known", "new_user", "new_item")


def rating_report(model, train: Interactions, test: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, Any]:
    """MAE/RMSE of the model and the bias baselines on test ratings, by known / new user / new item.

    Parameters
    ----------
    model
        An explicit :class:`HybridModel` (its ``predict_ratings``).
    train
        The training interactions: the baselines are fitted on their ratings, and a user or
        item is *known* when it has a training rating.
    test
        (user index or -1 for a user the model does not know, item index, rating).

    Returns
    -------
    dict
        Per segment (``all``, ``known`` = user and item known, ``new_user`` = item known,
        ``new_item``): ``n`` and ``{"mae", "rmse"}`` of ``model``, ``global_mean``,
        ``damped_item_bias`` (μ + b_i) and ``damped_biases`` (μ + b_u + b_i), the damped
        biases with the model's shrinkage; ``paired`` compares the per-rating absolute errors
        of the model and ``damped_biases`` (paired t-test, wins = ratings the model is closer on)
        on ``all`` and ``known``.
    """
    users, items, values = (np.asarray(a) for a in test)
    users, items, values = users.astype(np.int64), items.astype(np.int64), values.astype(np.float64)
    r = train.subset((train.event_type == "rating") & np.isfinite(train.value))
    cfg = model.config
    # the baselines index users by the model's rows (train uses the model's user index)
    n_users = max(len(model.user_ids), train.n_users)
    b = damped_biases(r.user_idx, r.item_idx, r.value, n_users, model.n_items,
                      getattr(cfg, "bias_shrink_user", 10.0), getattr(cfg, "bias_shrink_item", 25.0))
    u_known = (users >= 0) & (b.n_user[np.maximum(users, 0)] > 0)
    i_known = b.n_item[items] > 0
    base_u = np.where(u_known, users, -1)
    preds = {
        "model": model.predict_ratings(users, items).astype(np.float64),
        "global_mean": np.full(len(values), b.mu),
        "damped_item_bias": b.predict(base_u, items, use_user=False),
        "damped_biases": b.predict(base_u, items),
    }
    masks = {"all": np.ones(len(values), bool), "known": u_known & i_known, "new_user": ~u_known & i_known,
             "new_item": ~i_known}
    out: dict[str, Any] = {"mu": b.mu, "shrink": {"user": getattr(cfg, "bias_shrink_user", 10.0),
                                                   "item": getattr(cfg, "bias_shrink_item", 25.0)}}
    for seg, m in masks.items():
        row: dict[str, Any] = {"n": int(m.sum())}
        for name, p in preds.items():
            row[name] = ({"mae": mae(p[m], values[m]), "rmse": rmse(p[m], values[m])} if m.any()
                         else {"mae": float("nan"), "rmse": float("nan")})
        out[seg] = row
    out["paired"] = {}
    for seg in ("all", "known"):
        m = masks[seg]
        if m.sum() < 2:
            continue
        d = np.abs(preds["model"][m] - values[m]) - np.abs(preds["damped_biases"][m] - values[m])
        out["paired"][seg] = {"vs": "damped_biases", **paired_error_test(d)}
    return out


def paired_error_test(d: np.ndarray) -> dict[str, Any]:
    """Paired t-test of per-rating error differences ``d`` (model − baseline; < 0: the model is better).

    Tens of thousands of ratings: the normal approximation is exact enough, and the
    sign-flip test of :func:`compare.paired_test` would hold 1000 x n values per block.
    """
    d = np.asarray(d, np.float64)
    n = len(d)
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    se = sd / math.sqrt(n) if n > 1 else 0.0
    t = float(d.mean() / se) if se > 0 else 0.0
    return {"n": n, "mae_delta": float(d.mean()), "t": t, "p_t": math.erfc(abs(t) / math.sqrt(2.0)) if se > 0 else 1.0,
            "ci_mae_delta": [float(d.mean() - 1.96 * se), float(d.mean() + 1.96 * se)],
            **wins_losses_ties(np.zeros(n), -d)}


def paired_user_comparison(model_lists: dict[str, list], base_lists: dict[str, list], relevant: dict[str, set],
                           k: int = 10, n_resamples: int = 10000) -> dict[str, dict[str, Any]]:
    """Per-user paired test of the model against a baseline on the same test users.

    For NDCG@k and P@k: the mean per-user difference (model − baseline), a
    two-sided paired randomisation test (``n_resamples`` sign flips, seeded),
    a paired t-test (normal approximation; hundreds of users), a bootstrap
    95% CI of the difference and per-user wins/losses/ties.
    """
    users = sorted(relevant)
    out: dict[str, dict[str, Any]] = {}
    for name, fn in ((f"ndcg@{k}", ndcg_at_k), (f"precision@{k}", precision_at_k)):
        a = np.array([fn(base_lists.get(u, []), relevant[u], k) for u in users])
        b = np.array([fn(model_lists.get(u, []), relevant[u], k) for u in users])
        test = paired_test(a, b, n_resamples=n_resamples, seed=0)
        d = b - a
        sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
        t = float(d.mean() / (sd / math.sqrt(len(d)))) if sd > 0 else 0.0
        out[name] = {"n_users": len(users), "delta": test.mean_delta, "p_randomization": test.p_value,
                     "t": t, "p_t": math.erfc(abs(t) / math.sqrt(2.0)) if sd > 0 else 1.0,
                     "ci_delta": list(test.ci_delta), **wins_losses_ties(a, b)}
    return out


def test_ratings_for(db, model, split_ts: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user idx, item idx, rating) of rating events from ``split_ts`` on, items of the model's catalogue.

    A user the model does not know gets index -1 (``predict_ratings`` scores them with bias 0).
    """
    rows = db.execute("SELECT user_id, item_id, value FROM events WHERE event_type = 'rating' "
                      "AND value IS NOT NULL AND user_id IS NOT NULL AND ts >= ?", [split_ts]).fetchall()
    upos = model.user_pos
    trip = [(upos.get(u, -1), model.item_pos[i], float(v)) for u, i, v in rows if i in model.item_pos]
    if not trip:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0)
    u, i, v = map(np.array, zip(*trip))
    return u, i, v


def model_at_split(db, model, split_ts: str) -> tuple[Any, Interactions, dict[str, set]]:
    """The model scoring as of ``split_ts``, its training interactions and the test users' items.

    Returns
    -------
    model, train, relevant
        ``model`` with its history cut at the split (no test events in it), the interactions
        before the split (the model's event weights), and user -> items bought from the split
        on, for the users with events before it.
    """
    train = load_interactions(db, model.item_ids, until_ts=split_ts, event_weights=model.config.event_weights,
                              user_ids=model.user_ids)
    model = model.with_history(train, float(ts_to_days([split_ts])[0]))
    seen = {str(model.user_ids[u]) for u in np.unique(train.user_idx)}
    return model, train, relevant_items(db, split_ts, seen, model.item_ids)


def evaluate(db, model_id: Optional[str] = None, k: int = 10, split_date: Optional[str] = None,
             progress=None, cancel: Optional[CancelToken] = None, split: Optional[str] = None) -> dict[str, Any]:
    """Evaluate a registered model (active one if None) and the baselines on its time split.

    The split is the one the model was trained with unless ``split_date`` or ``split`` (a
    method: ``range``, ``quantile``, ``auto``; see :func:`split.time_split`) overrides it (a
    note warns when the override leaks training data).  ``split_method`` in the result says
    how the cut-off was chosen.

    Returns
    -------
    dict
        ``{"model": {...}, "baselines": {"popularity", "user_history", "text_only",
        "cf_only"}, "split_date", "n_test_users", "cold_start", ...}`` plus
        ``mae``/``rmse`` for explicit (rating) models.
    """
    version = get_version(db, model_id) if model_id else active_version(db)
    if version is None:
        raise RegistryError("no model to evaluate: train one first (merch-app train)")
    model = load_model(db, version.model_id)
    snap = version.data_snapshot
    trained_split = snap.get("split_ts")
    if split_date:
        split_ts, method, fraction = normalise_date(split_date), "date", None
    elif split or not trained_split:
        chosen = time_split(db, method=split or "range")
        split_ts, method, fraction = chosen.split_ts, chosen.method, chosen.fraction
    else:  # the model's own split (older versions did not record the method: the time range)
        split_ts = trained_split
        method = snap.get("split_method") or ("range" if snap.get("split_fraction") is not None else "date")
        fraction = snap.get("split_fraction")
    notes = []
    if trained_split and split_ts < trained_split:
        notes.append(f"split {split_ts[:10]} is before the model's training cut-off {trained_split[:10]}: "
                     "test events were seen in training")
    model, train, relevant = model_at_split(db, model, split_ts)
    out = evaluate_model(model, train, relevant, k, progress=progress, cancel=cancel,
                         test_ratings=test_ratings_for(db, model, split_ts) if model.explicit else None)
    out.update({"split_date": split_ts, "split_method": method, "split": describe_split(method, fraction),
                "model_id": version.model_id, "notes": notes})
    return out
