"""Related items against what a product's buyers also bought (merch_app.evaluation.related_items).

Known answers, computed by hand:

* Item A is bought after the split by u1..u5.  Of them u1, u2, u3 also bought B, u4 and
  u5 bought C, u1 bought E; D is bought only by others.  With the defaults (an item is also
  bought by >= 25 % and >= 2 of the buyers) A's also-bought items are {B: 3, C: 2}; E (1 co-buyer)
  is not.  Every other item has fewer than 5 buyers after the split: skipped.
* The CF stand-in's neighbours of A are B, D, C, E in that order, so A's related list is
  [B, D, C, ...].  recall@2 = 1/2, hit@2 = 1, NDCG@2 = 3 / (3 + 2/log2 3) = 0.70392;
  recall@3 = 1, NDCG@3 = (3 + 2/log2 4) / (3 + 2/log2 3) = 0.93856.
"""
from __future__ import annotations

import json
import math

import click
import numpy as np
import pytest
from click.testing import CliRunner

from merch_app.cli import model_cmds
from merch_app.data.workspace import open_workspace
from merch_app.evaluation.related_items import (
    also_bought, evaluate_related, leak_notes, paired_related, related_items_view,
)
from merch_app.jobs import CancelToken, Cancelled
from merch_app.model.registry import ModelVersion
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.types import RankRequest
from model_fixtures import fill_workspace, planted_workspace
from ranking_fixtures import TableCFModel, WordVectorEncoder, make_bundle

SPLIT = "2024-02-01T00:00:00Z"
ITEMS = ["A", "B", "C", "D", "E", "F", "G"]


def _ev(user, item, day):
    return {"user_id": user, "item_id": item, "event_type": "purchase", "ts": f"2024-{day}T10:00:00Z",
            "session_id": f"{user}-{day}"}


def _known_shop(db) -> None:
    items = [{"item_id": i, "title": f"thing {i.lower()}"} for i in ITEMS]
    events = [_ev("u0", "A", "01-10")]  # before the split: only A itself (never in its own list)
    events += [_ev(f"u{n}", "A", "02-05") for n in range(1, 6)]
    events += [_ev(u, "B", "02-06") for u in ("u1", "u2", "u3")]
    events += [_ev(u, "C", "02-07") for u in ("u4", "u5")]
    events += [_ev("u1", "E", "02-08")]
    events += [_ev(u, "D", "02-09") for u in ("u6", "u7")]
    events += [_ev(u, "F", "02-10") for u in ("u6", "u7", "u8", "u9")]  # 4 buyers: skipped at min_buyers 5
    fill_workspace(db, items, events)


def _cf_bundle(db):
    # columns: A, B, C, D, E, F, G; A's inner products: B 0.9 > D 0.6 > C 0.3 > E 0.1 > F = G = 0
    table = np.array([[1.0, 0.9, 0.3, 0.6, 0.1, 0.0, 0.0]])
    return make_bundle(db, model=TableCFModel(["x"], ITEMS, table))


def test_also_bought_thresholds_and_skipped_items(ws):
    _known_shop(ws)
    truth = also_bought(ws, SPLIT)
    assert truth.co_buyers == {"A": {"B": 3, "C": 2}}
    assert truth.n_buyers == {"A": 5}
    assert truth.n_few_buyers == 5  # B, C, D, E, F
    loose = also_bought(ws, SPLIT, min_share=0.0, min_co_buyers=1)
    assert loose.co_buyers == {"A": {"B": 3, "C": 2, "E": 1}}
    three = also_bought(ws, SPLIT, min_buyers=3)
    assert three.co_buyers == {"A": {"B": 3, "C": 2}, "B": {"A": 3}, "F": {"D": 2}}
    assert also_bought(ws, SPLIT, item_ids=["B", "C", "D"]).co_buyers == {}  # A outside the catalogue


def test_known_answer_recall_ndcg_hit(ws):
    _known_shop(ws)
    bundle = _cf_bundle(ws)
    v2 = related_items_view(ws, bundle, SPLIT, related_by="cf", k=2)
    assert v2["per_item"]["item_ids"] == ["A"] and v2["n_items"] == 1 and v2["n_few_buyers"] == 5
    assert v2["per_item"]["related"] == [["B", "D"]]
    assert v2["mean"]["recall@2"] == pytest.approx(0.5)
    assert v2["mean"]["hit@2"] == pytest.approx(1.0)
    assert v2["mean"]["ndcg@2"] == pytest.approx(3 / (3 + 2 / math.log2(3)))
    assert v2["mean"]["ndcg@2"] == pytest.approx(0.70392, abs=1e-5)
    v3 = related_items_view(ws, bundle, SPLIT, related_by="cf", k=3)
    assert v3["per_item"]["related"] == [["B", "D", "C"]]
    assert v3["mean"]["recall@3"] == pytest.approx(1.0)
    assert v3["mean"]["ndcg@3"] == pytest.approx(0.93856, abs=1e-5)
    v1 = related_items_view(ws, bundle, SPLIT, related_by="cf", k=1)
    assert v1["per_item"]["related"] == [["B"]] and v1["mean"]["recall@1"] == pytest.approx(0.5)
    assert v3["per_item"]["n_buyers"] == [5] and v3["per_item"]["n_also_bought"] == [2]
    assert v3["warm"]["n_items"] == 1 and v3["cold"]["n_items"] == 0  # A sold before the split


def test_popularity_baseline_and_text_without_model(ws):
    _known_shop(ws)
    bundle = _cf_bundle(ws)
    pop = related_items_view(ws, bundle, SPLIT, related_by="popularity", k=3)
    # only A sold before the split; the rest tie at 0 and keep catalogue order: B, C, D
    assert pop["per_item"]["related"] == [["B", "C", "D"]]
    assert pop["mean"]["recall@3"] == pytest.approx(1.0)
    assert pop["mean"]["ndcg@3"] == pytest.approx((3 + 2 / math.log2(3)) / (3 + 2 / math.log2(3)))
    text_only = make_bundle(ws)
    v = related_items_view(ws, text_only, SPLIT, related_by="cf", k=3)
    assert v["per_item"]["related"] == [[]] and v["mean"]["hit@3"] == 0.0
    assert any("no CF model" in n for n in v["notes"])


def test_nothing_after_the_split_reaches_the_related_list(ws):
    # X and Y have the same text, so popularity alone orders them; Y is inserted first (wins a tie).
    items = [{"item_id": "A", "title": "candle"}, {"item_id": "Y", "title": "candle holder"},
             {"item_id": "X", "title": "candle holder"}, {"item_id": "Z", "title": "blue mug"}]
    events = [_ev(u, "X", "01-10") for u in ("p1", "p2", "p3")] + [_ev("p4", "Y", "01-11")]
    events += [_ev(f"u{n}", "A", "02-05") for n in range(1, 6)]
    events += [_ev(f"u{n}", "Y", "02-06") for n in range(1, 21)]  # Y sells a lot after the split
    fill_workspace(ws, items, events)
    enc = WordVectorEncoder()
    leaky = make_bundle(ws, encoder=enc, popularity={"Y": 1.0, "X": 0.0})
    live = Ranker(ws, leaky, rules=None).rank(RankRequest(mode="related", item_id="A", k=2)).item_ids
    assert live == ["Y", "X"]  # with the bundle's popularity (it counts the test period) Y leads
    view = related_items_view(ws, leaky, SPLIT, related_by="text", k=2)
    assert view["per_item"]["item_ids"] == ["A", "Y"]  # Y: 20 buyers after the split, measured too
    assert view["per_item"]["related"][0] == ["X", "Y"]  # as of the split: X (3 sales) before Y (1)
    assert view["per_item"]["cold"] == [True, False]  # A: no sale before the split
    pop = related_items_view(ws, leaky, SPLIT, related_by="popularity", k=2)
    assert pop["per_item"]["related"] == [["X", "Y"], ["X", "A"]]


def _version(split_ts):
    return ModelVersion(model_id="m1", name="m1", created="", config={}, metrics={},
                        data_snapshot={"split_ts": split_ts} if split_ts else {}, encoder_id="", path="m1",
                        train_seconds=0.0)


def test_leak_notes_name_a_model_or_encoder_trained_past_the_split(ws):
    _known_shop(ws)
    bundle = make_bundle(ws)
    assert leak_notes(ws, bundle, SPLIT) == []
    bundle.version = _version("2024-01-20T00:00:00Z")
    assert leak_notes(ws, bundle, SPLIT) == []
    bundle.version = _version("2024-03-01T00:00:00Z")
    notes = leak_notes(ws, bundle, SPLIT)
    assert len(notes) == 1 and "after the split 2024-02-01" in notes[0]
    bundle.version = _version(None)
    assert "records no training cut-off" in leak_notes(ws, bundle, SPLIT)[0]
    bundle.version = None
    bundle.encoder.encoder_id = "ft20240101-000000-abcdef@123"  # an unregistered fine-tuned version
    assert "fine-tuned encoder ft20240101-000000-abcdef records no training cut-off" in \
        leak_notes(ws, bundle, SPLIT)[0]


def test_paired_related_compares_item_by_item():
    def view(ids, ndcg):
        return {"k": 10, "per_item": {"item_ids": ids, "ndcg@10": ndcg, "recall@10": ndcg, "hit@10": ndcg}}

    a = view(["i1", "i2", "i3"], [0.2, 0.4, 0.1])
    b = view(["i3", "i1", "i2"], [0.1, 0.5, 0.4])  # other order, same items: i1 +0.3, others tie
    t = paired_related(a, b)
    assert t["n_items"] == 3
    assert t["ndcg@10"]["delta"] == pytest.approx(0.1)
    assert (t["ndcg@10"]["wins"], t["ndcg@10"]["losses"], t["ndcg@10"]["ties"]) == (1, 0, 2)
    assert paired_related(a, a)["ndcg@10"]["p_value"] == 1.0
    only = paired_related(a, b, items=["i1"])
    assert only["n_items"] == 1 and only["ndcg@10"]["delta"] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        paired_related(a, {**b, "k": 5})


def test_progress_and_cancel(ws):
    _known_shop(ws)
    seen = []
    evaluate_related(ws, _cf_bundle(ws), split_date="2024-02-01", k=3, progress=seen.append)
    assert seen and seen[-1].done == seen[-1].total == 3  # popularity, text, cf over the one item
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        evaluate_related(ws, _cf_bundle(ws), split_date="2024-02-01", cancel=token)


def test_evaluate_related_runs_every_list_and_pairs_them(ws):
    _known_shop(ws)
    out = evaluate_related(ws, _cf_bundle(ws), split_date="2024-02-01", k=3)
    assert list(out["related"]) == ["popularity", "text", "cf"]
    assert set(out["paired"]) == {"text_vs_popularity", "cf_vs_popularity", "cf_vs_text"}
    assert out["related"]["cf"]["mean"]["ndcg@3"] == pytest.approx(0.93856, abs=1e-5)
    assert out["split_date"] == SPLIT and out["n_items"] == 1
    with pytest.raises(Exception, match="by 6 or more customers"):
        evaluate_related(ws, _cf_bundle(ws), split_date="2024-02-01", min_buyers=6)


def _cli() -> click.Group:
    @click.group()
    def cli() -> None:
        pass

    model_cmds.register(cli)
    return cli


def test_cli_evaluate_related_text_only(ws_path):
    db = open_workspace(ws_path)
    _known_shop(db)
    db.close()
    run, w = CliRunner().invoke, ["--workspace", str(ws_path)]
    res = run(_cli(), ["evaluate", "--related", "--encoder", "hashing", "--split-date", "2024-02-01", "--k", "3",
                       "--json", *w])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["model_id"] is None and list(out["related"]) == ["popularity", "text"]
    assert out["related"]["popularity"]["mean"]["recall@3"] == pytest.approx(1.0)
    res = run(_cli(), ["evaluate", "--related", "--encoder", "hashing", "--split-date", "2024-02-01", *w])
    assert res.exit_code == 0, res.output
    assert "related items of text only (no model)" in res.output and "most popular before the split" in res.output
    res = run(_cli(), ["evaluate", "--related", "--encoder", "hashing", "--split-date", "2024-02-01",
                       "--min-buyers", "50", *w])
    assert res.exit_code == 1 and "by 50 or more customers" in res.output


def test_cli_evaluate_related_with_a_model_and_its_split(ws_path):
    db = open_workspace(ws_path)
    planted_workspace(db)
    db.close()
    run, w = CliRunner().invoke, ["--workspace", str(ws_path)]
    res = run(_cli(), ["train", *w, "--encoder", "hashing", "--epochs", "2", "--dim", "8", "--json"])
    assert res.exit_code == 0, res.output
    split_ts = json.loads(res.output)["data_snapshot"]["split_ts"]
    res = run(_cli(), ["evaluate", "--related", "--json", *w])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["split_date"] == split_ts and out["notes"] == []  # the model's own cut-off: nothing leaks
    assert list(out["related"]) == ["popularity", "text", "cf"] and "cf_vs_text" in out["paired"]
    assert out["n_items"] > 0 and len(out["related"]["cf"]["per_item"]["ndcg@10"]) == out["n_items"]
    res = run(_cli(), ["evaluate", "--related", "--split-date", "2024-02-01", "--min-buyers", "2", "--json", *w])
    assert res.exit_code == 0, res.output
    assert any("after the split 2024-02-01" in n for n in json.loads(res.output)["notes"])
