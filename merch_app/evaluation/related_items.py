"""Related items measured against what a product's buyers also bought, on a time split.

For every item bought from the split on by at least ``min_buyers`` customers,
the *also bought* items are the other items those same customers bought from the
split on by at least ``min_share`` of them (and at least ``min_co_buyers``),
each graded by how many of them bought it (its co-buyers).  The threshold
matters on shops whose customers buy hundreds of items (Online Retail's
wholesalers: a median item's 32 buyers together bought 2,000 of the 3,659
items, so "anything they bought" holds everything).  The item's related list is
the ranker's (``RankRequest(mode="related")``, top ``k``, the item itself never
in it) over one bundle, so the same measure covers text only with the packaged
or a fine-tuned encoder (``related_by="text"``) and the hybrid model's
co-behaviour neighbours (``related_by="cf"``); ``related_by="popularity"`` is
the baseline of the most popular items before the split.  Per item: recall@k
(share of the also-bought items in the list), NDCG@k graded by co-buyer count
and hit@k (any also-bought item in the list); the means over items, and the
per-item values in item order so that :func:`paired_related`
(:func:`merch_app.evaluation.compare.paired_test`) compares two systems item by item.

The lists are made as of the split: the bundle's popularity prior is recounted
from the events before the split (the live one counts every event), and no
merchandising rule applies.  The vectors are the bundle's; a model version or a
fine-tuned encoder whose training cut-off is after the split has seen the test
period, which a note says (``leaks``).
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from merch_app.evaluation.compare import paired_test, wins_losses_ties
from merch_app.evaluation.metrics import hit_rate_at_k, ndcg_at_k, recall_at_k
from merch_app.evaluation.split import SplitError, describe_split, normalise_date, relevant_items, time_split
from merch_app.jobs import CancelToken, EtaClock, Progress, ProgressCallback, Throttle
from merch_app.model.bundle import ModelBundle, item_popularity
from merch_app.model.encoder_versions import EncoderVersionError, get_encoder_version, is_version_id
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.types import RankRequest, Weights

DEFAULT_MIN_BUYERS = 5
DEFAULT_MIN_SHARE = 0.25
DEFAULT_MIN_CO_BUYERS = 2
RELATED_BY = ("text", "cf", "popularity")
RELATED_BY_NAMES = {"text": "by text", "cf": "by behaviour (hybrid model)",
                    "popularity": "most popular before the split"}


def metric_names(k: int) -> tuple[str, str, str]:
    """The names of the three metrics at cut-off ``k``: ``recall@k``, ``ndcg@k``, ``hit@k``."""
    return f"recall@{k}", f"ndcg@{k}", f"hit@{k}"


@dataclass
class AlsoBought:
    """What each item's buyers bought from the split on (the ground truth of related items).

    Attributes
    ----------
    split_ts
        Start of the test period (purchases from it on count).
    min_buyers
        Distinct buyers an item needs to be measured.
    min_share, min_co_buyers
        Share of the item's buyers, and number of them, that must have bought another
        item for it to be also bought.
    co_buyers
        Measured item -> {also-bought item -> how many of the item's buyers bought it}.
    n_buyers
        Measured item -> its distinct buyers from the split on.
    n_few_buyers
        Items bought from the split on, but by fewer than ``min_buyers`` customers (skipped).
    """

    split_ts: str
    min_buyers: int
    min_share: float
    min_co_buyers: int
    co_buyers: dict[str, dict[str, int]]
    n_buyers: dict[str, int]
    n_few_buyers: int


def also_bought(db, split_ts: str, item_ids: Optional[Sequence[str]] = None, *,
                min_buyers: int = DEFAULT_MIN_BUYERS, min_share: float = DEFAULT_MIN_SHARE,
                min_co_buyers: int = DEFAULT_MIN_CO_BUYERS, until_ts: Optional[str] = None,
                cancel: Optional[CancelToken] = None) -> AlsoBought:
    """The also-bought items of every item bought from ``split_ts`` on by ``min_buyers`` or more customers.

    Purchases are read as :func:`merch_app.evaluation.split.relevant_items` reads the test
    period (carts and clicks when the workspace has no purchases after the split), for every
    customer, not only those seen before the split.

    Parameters
    ----------
    item_ids
        The catalogue to keep (items outside it are neither measured nor counted); None = all.
    min_share, min_co_buyers
        Another item is also bought when at least ``min_share`` of the item's buyers, and at
        least ``min_co_buyers`` of them, bought it (``0`` and ``1``: anything they bought).
    until_ts
        End of the test period (None = no end).

    Returns
    -------
    AlsoBought
        An item whose buyers share no other item above the threshold is measured with an
        empty set (its metrics are 0).
    """
    users = [u for (u,) in db.execute("SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL AND ts >= ?",
                                      [split_ts])]
    bought = relevant_items(db, split_ts, users, item_ids, until_ts=until_ts)
    names = sorted({i for items in bought.values() for i in items})
    pos = {i: n for n, i in enumerate(names)}
    baskets = [np.array(sorted(pos[i] for i in items), np.int64) for items in bought.values()]
    buyers: dict[int, list[int]] = defaultdict(list)
    for b, items in enumerate(baskets):
        for j in items.tolist():
            buyers[j].append(b)
    co: dict[str, dict[str, int]] = {}
    n_buyers: dict[str, int] = {}
    few = 0
    for j in range(len(names)):
        if len(buyers[j]) < min_buyers:
            few += 1
            continue
        if cancel is not None:
            cancel.check()
        # the buyers' baskets only (a bincount over the catalogue would cost n_items per measured item)
        others, counts = np.unique(np.concatenate([baskets[b] for b in buyers[j]]), return_counts=True)
        keep = (others != j) & (counts >= max(int(min_co_buyers), 1)) & (counts >= min_share * len(buyers[j]))
        co[names[j]] = {names[o]: int(c) for o, c in zip(others[keep].tolist(), counts[keep].tolist())}
        n_buyers[names[j]] = len(buyers[j])
    return AlsoBought(split_ts=split_ts, min_buyers=int(min_buyers), min_share=float(min_share),
                      min_co_buyers=int(min_co_buyers), co_buyers=co, n_buyers=n_buyers, n_few_buyers=few)


def as_of_split(db, bundle: ModelBundle, split_ts: str) -> ModelBundle:
    """``bundle`` with its popularity prior counted from the events before ``split_ts`` only."""
    return dataclasses.replace(bundle, popularity=item_popularity(db, bundle.item_ids, bundle.item_pos,
                                                                  until_ts=split_ts))


def leak_notes(db, bundle: ModelBundle, split_ts: str) -> list[str]:
    """Why the bundle's vectors may have seen events from ``split_ts`` on (empty: they have not).

    The model version's and the fine-tuned encoder version's recorded training cut-offs are
    compared with the split; a version that records none is named as well.
    """
    notes = []
    version = bundle.version
    if version is not None:
        cut = (version.data_snapshot or {}).get("split_ts")
        if not cut:
            notes.append(f"model {version.model_id} records no training cut-off: it may have seen the test period")
        elif cut > split_ts:
            notes.append(f"model {version.model_id} was trained on events up to {cut[:10]}, after the split "
                         f"{split_ts[:10]}: its related lists have seen the test period")
    name = str(getattr(bundle.encoder, "encoder_id", "")).partition("@")[0]
    if is_version_id(name):
        try:
            cut = (get_encoder_version(db, name).data_snapshot or {}).get("split_ts")
        except EncoderVersionError:
            cut = None
        if not cut:
            notes.append(f"fine-tuned encoder {name} records no training cut-off: it may have seen the test period")
        elif cut > split_ts:
            notes.append(f"fine-tuned encoder {name} was trained on pairs up to {cut[:10]}, after the split "
                         f"{split_ts[:10]}: its vectors have seen the test period")
    return notes


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def _popularity_list(order: np.ndarray, bundle: ModelBundle, item: str, k: int) -> list[str]:
    """The ``k`` most popular items before the split (``order``: best first), ``item`` left out."""
    p = bundle.item_pos[item]
    top = [int(j) for j in order[: k + 1] if int(j) != p][:k]
    return [str(bundle.item_ids[j]) for j in top]


def related_items_view(db, bundle: ModelBundle, split_ts: str, *, related_by: str = "text", k: int = 10,
                       min_buyers: int = DEFAULT_MIN_BUYERS, truth: Optional[AlsoBought] = None,
                       weights: Optional[Weights] = None, progress: Optional[ProgressCallback] = None,
                       cancel: Optional[CancelToken] = None) -> dict[str, Any]:
    """Related lists of ``bundle`` against the also-bought items after ``split_ts``.

    Parameters
    ----------
    db
        The workspace connection of the calling thread.
    bundle
        The bundle that ranks (:func:`merch_app.model.bundle.load_bundle`); its popularity is
        recounted as of the split (:func:`as_of_split`), no rules apply.
    related_by
        ``text`` (nearest item text vectors), ``cf`` (the model's co-behaviour neighbours) or
        ``popularity`` (baseline: the most popular items before the split, the same for every item).
    k
        Length of the related list.
    min_buyers
        Distinct buyers after the split an item needs to be measured (when ``truth`` is None;
        the other thresholds are :func:`also_bought`'s defaults).
    truth
        The :func:`also_bought` result to score against (computed when None; pass it to score
        several bundles against the same items).
    weights
        Fusion weights of the related list (default: the ranker's).
    progress, cancel
        Job protocol: one report per item (throttled), cancel checked per item.

    Returns
    -------
    dict
        ``related_by``, ``k``, ``min_buyers``, ``min_share``, ``min_co_buyers``, ``split_ts``,
        ``n_items`` (measured), ``n_few_buyers`` (skipped), ``n_not_in_catalogue``, ``mean``
        (``recall@k``, ``ndcg@k``, ``hit@k``), ``cold`` / ``warm`` (the same means over items
        without / with behaviour before the split, and their ``n_items``), ``per_item``
        (``item_ids`` and per metric a list in that order, ``n_buyers``, ``n_also_bought``,
        ``cold``, ``related``: the list), ``encoder_id``, ``model_id`` and ``notes``.
    """
    if related_by not in RELATED_BY:
        raise ValueError(f"related_by must be one of {', '.join(RELATED_BY)}, not {related_by!r}")
    truth = truth or also_bought(db, split_ts, [str(i) for i in bundle.item_ids], min_buyers=min_buyers,
                                 cancel=cancel)
    bundle = as_of_split(db, bundle, split_ts)
    ranker = Ranker(db, bundle, rules=None) if related_by != "popularity" else None
    order = np.argsort(-np.asarray(bundle.popularity, np.float64), kind="stable")
    names = metric_names(k)
    items = sorted(truth.co_buyers)
    missing = [i for i in items if i not in bundle.item_pos]
    items = [i for i in items if i in bundle.item_pos]
    per: dict[str, list] = {"item_ids": items, **{m: [] for m in names}, "n_buyers": [], "n_also_bought": [],
                            "cold": [], "related": []}
    clock, throttle = EtaClock(), Throttle(0.2)
    notes = leak_notes(db, bundle, split_ts) if related_by != "popularity" else []
    if related_by == "cf" and (bundle.model is None or not hasattr(bundle.model, "similar_items")):
        notes.append("no CF model in this bundle: the lists by behaviour are empty")
    for n, item in enumerate(items):
        if cancel is not None:
            cancel.check()
        if ranker is None:
            ranked = _popularity_list(order, bundle, item, k)
        else:
            ranked = ranker.rank(RankRequest(mode="related", item_id=item, k=k, related_by=related_by,
                                             weights=weights or Weights())).item_ids
        gains = truth.co_buyers[item]
        for name, fn in zip(names, (recall_at_k, ndcg_at_k, hit_rate_at_k)):
            per[name].append(fn(ranked, gains, k))
        per["n_buyers"].append(truth.n_buyers[item])
        per["n_also_bought"].append(len(gains))
        per["cold"].append(bool(bundle.popularity[bundle.item_pos[item]] == 0))
        per["related"].append(list(ranked))
        if progress and (throttle.ready() or n + 1 == len(items)):
            progress(Progress(n + 1, len(items), f"related items of {n + 1:,} / {len(items):,} products",
                              eta_seconds=clock.eta(n + 1, len(items)), data={"phase": "related"}))
    cold = np.array(per["cold"], bool)
    out: dict[str, Any] = {
        "related_by": related_by, "k": int(k), "min_buyers": truth.min_buyers, "min_share": truth.min_share,
        "min_co_buyers": truth.min_co_buyers, "split_ts": split_ts, "n_items": len(items),
        "n_few_buyers": truth.n_few_buyers, "n_not_in_catalogue": len(missing),
        "mean": {m: _mean(per[m]) for m in names},
        "encoder_id": str(getattr(bundle.encoder, "encoder_id", "")),
        "model_id": bundle.version.model_id if bundle.version is not None else None,
        "notes": notes, "per_item": per,
    }
    for seg, sel in (("cold", cold), ("warm", ~cold)):
        out[seg] = {"n_items": int(sel.sum()), **{m: _mean(np.asarray(per[m])[sel]) for m in names}}
    return out


def paired_related(a: dict[str, Any], b: dict[str, Any], *, items: Optional[Sequence[str]] = None,
                   n_resamples: int = 10000, seed: int = 0) -> dict[str, Any]:
    """Item-by-item paired test of two :func:`related_items_view` results (delta = b − a).

    Only the items both measured are compared (normally all: same split, same ``min_buyers``),
    and of those only ``items`` when given (e.g. the cold ones).

    Returns
    -------
    dict
        ``n_items`` and per metric: ``a``, ``b``, ``delta``, ``p_value`` (two-sided paired
        randomisation test), ``ci_delta`` (bootstrap 95 %), ``wins`` / ``losses`` / ``ties``
        (items where b is above / below / equal to a).
    """
    if a["k"] != b["k"]:
        raise ValueError(f"the two views have different cut-offs ({a['k']} and {b['k']})")
    pa = {i: n for n, i in enumerate(a["per_item"]["item_ids"])}
    pb = {i: n for n, i in enumerate(b["per_item"]["item_ids"])}
    wanted = None if items is None else set(items)
    common = [i for i in a["per_item"]["item_ids"] if i in pb and (wanted is None or i in wanted)]
    out: dict[str, Any] = {"n_items": len(common)}
    for m in metric_names(a["k"]):
        x = np.array([a["per_item"][m][pa[i]] for i in common], np.float64)
        y = np.array([b["per_item"][m][pb[i]] for i in common], np.float64)
        test = paired_test(x, y, n_resamples=n_resamples, seed=seed)
        out[m] = {"a": test.mean_a, "b": test.mean_b, "delta": test.mean_delta, "p_value": test.p_value,
                  "ci_delta": list(test.ci_delta), **wins_losses_ties(x, y)}
    return out


def related_split(db, bundle: ModelBundle, split_date: Optional[str] = None,
                  split: Optional[str] = None) -> tuple[str, str, Optional[float]]:
    """(split ts, method, fraction) to measure ``bundle`` on.

    ``split_date`` if given, else ``split`` (a :func:`time_split` method), else the model
    version's own cut-off, else the fine-tuned encoder's, else the workspace's default split.
    """
    if split_date:
        return normalise_date(split_date), "date", None
    if not split:
        snap = bundle.version.data_snapshot if bundle.version is not None else {}
        if snap.get("split_ts"):  # as :func:`merch_app.evaluation.offline.evaluate` reads it
            method = snap.get("split_method") or ("range" if snap.get("split_fraction") is not None else "date")
            return snap["split_ts"], method, snap.get("split_fraction")
        name = str(getattr(bundle.encoder, "encoder_id", "")).partition("@")[0]
        if is_version_id(name):
            try:
                cut = get_encoder_version(db, name).data_snapshot.get("split_ts")
            except EncoderVersionError:
                cut = None
            if cut:
                return cut, "date", None
    chosen = time_split(db, method=split or "range")
    return chosen.split_ts, chosen.method, chosen.fraction


def evaluate_related(db, bundle: ModelBundle, *, split_date: Optional[str] = None, split: Optional[str] = None,
                     k: int = 10, min_buyers: int = DEFAULT_MIN_BUYERS, min_share: float = DEFAULT_MIN_SHARE,
                     min_co_buyers: int = DEFAULT_MIN_CO_BUYERS, related_by: Optional[Sequence[str]] = None,
                     progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None) -> dict[str, Any]:
    """The related-items measure of one bundle: its text lists, its behaviour lists when it has a model,
    and the popularity baseline.

    Parameters
    ----------
    bundle
        The bundle that ranks (:func:`merch_app.model.bundle.load_bundle`).
    split_date, split
        The cut-off (see :func:`related_split`).
    min_buyers, min_share, min_co_buyers
        Which items are measured and what counts as also bought (see :func:`also_bought`).
    related_by
        Which lists; default ``popularity`` and ``text``, plus ``cf`` when the bundle has a model.

    Returns
    -------
    dict
        ``split_date``, ``split_method``, ``split``, ``k``, ``min_buyers``, ``min_share``,
        ``min_co_buyers``, ``n_items``, ``n_few_buyers``, ``model_id``, ``encoder_id``,
        ``related`` (related_by -> :func:`related_items_view`), ``paired``
        (``text_vs_popularity``, ``cf_vs_popularity``, ``cf_vs_text``: :func:`paired_related`
        of the lists measured) and ``notes``.

    Raises
    ------
    SplitError
        No item bought after the split by ``min_buyers`` or more customers.
    """
    split_ts, method, fraction = related_split(db, bundle, split_date, split)
    modes = list(related_by or (("popularity", "text", "cf") if bundle.model is not None
                                else ("popularity", "text")))
    truth = also_bought(db, split_ts, [str(i) for i in bundle.item_ids], min_buyers=min_buyers,
                        min_share=min_share, min_co_buyers=min_co_buyers, cancel=cancel)
    if not truth.co_buyers:
        raise SplitError(f"no item was bought from {split_ts[:10]} on by {min_buyers} or more customers: "
                         "nothing to measure related items on (lower --min-buyers or choose an earlier split)")
    views = {}
    clock, total = EtaClock(), len(modes) * len(truth.co_buyers)
    for n, mode in enumerate(modes):
        def report(p: Progress, n=n, mode=mode) -> None:
            if progress:
                done = n * len(truth.co_buyers) + p.done
                progress(Progress(done, total, f"{RELATED_BY_NAMES[mode]}: {p.message}",
                                  eta_seconds=clock.eta(done, total), data=p.data))
        views[mode] = related_items_view(db, bundle, split_ts, related_by=mode, k=k, truth=truth,
                                         progress=report, cancel=cancel)
    first = views[modes[0]]
    out: dict[str, Any] = {
        "split_date": split_ts, "split_method": method, "split": describe_split(method, fraction), "k": int(k),
        "min_buyers": truth.min_buyers, "min_share": truth.min_share, "min_co_buyers": truth.min_co_buyers,
        "n_items": first["n_items"], "n_few_buyers": truth.n_few_buyers, "model_id": first["model_id"],
        "encoder_id": first["encoder_id"], "related": views, "paired": {},
        "notes": list(dict.fromkeys(note for v in views.values() for note in v["notes"])),
    }
    for a, b in (("popularity", "text"), ("popularity", "cf"), ("text", "cf")):
        if a in views and b in views:
            out["paired"][f"{b}_vs_{a}"] = paired_related(views[a], views[b])
    return out
