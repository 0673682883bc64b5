"""The training job's progress: one overall fraction across its phases, and the early stop said in words."""
from __future__ import annotations

import pytest

from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.hybrid import HybridConfig
from merch_app.services.job_estimates import TRAIN_PHASES, UPDATE_PHASES
from merch_app.services.training import train, update_with_new_events
from model_fixtures import planted_workspace

CFG = dict(dim=16, batch_size=256, shared_negatives=64, refit_epochs=1)


@pytest.fixture
def shop(ws):
    planted_workspace(ws)
    return ws


def test_overall_progress_goes_through_the_phases_in_order_and_ends_at_one(shop):
    reports = []
    train(shop, HybridConfig(**CFG, epochs=3), progress=reports.append, encoder=HashingEncoder(32))
    planned = [p for p in reports if "overall" in p.data]
    assert planned == reports  # every report of the job carries the overall fields
    overall = [p.data["overall"] for p in reports]
    assert overall == sorted(overall) and overall[0] < 0.5
    assert overall[-1] == 1.0 and all(v < 1.0 for v in overall[:-1])  # 100 % only when the version is saved
    assert all(p.data["phases"] == list(TRAIN_PHASES) for p in reports)
    assert all(p.data["phases"][p.data["phase_index"]] == p.data["phase"] for p in reports)
    order = [p.data["phase"] for p in reports]
    seen = [ph for n, ph in enumerate(order) if n == 0 or ph != order[n - 1]]
    assert seen == list(TRAIN_PHASES)  # each phase starts once, in order
    # the per-phase fields are still the phase's own: the train phase counts batches
    batches = [p for p in reports if p.data["phase"] == "train" and "batch" in p.data]
    assert batches and all(p.total and p.done <= p.total for p in batches)
    assert reports[-1].message.startswith("saved model version")


def test_early_stopping_is_reported_with_the_epoch_and_the_patience(shop):
    reports = []
    # lr 0: the CF part never changes, so its validation NDCG@10 never gains after epoch 1;
    # patience 3 and min_epochs 4 stop the run at epoch 4 of 20
    v = train(shop, HybridConfig(**CFG, epochs=20, lr=0.0, early_stopping_patience=3, min_epochs=4),
              progress=reports.append, encoder=HashingEncoder(32))
    stops = [p for p in reports if p.data.get("early_stop")]
    assert [p.message for p in stops] == [
        "early stopping at epoch 4 of 20 (no gain in validation NDCG@10 of the CF part for 3 epochs)"]
    assert stops[0].data["epoch"] == 4 and stops[0].data["without_gain"] == 3
    assert [h["epoch"] for h in v.metrics["epochs"] if not h.get("refit")] == [1, 2, 3, 4]
    assert v.metrics["best_epoch"] == 1


def test_a_run_of_all_its_epochs_reports_no_early_stop(shop):
    reports = []
    train(shop, HybridConfig(**CFG, epochs=2, early_stopping_patience=1, min_epochs=1, lr=0.0),
          progress=reports.append, encoder=HashingEncoder(32))
    # epoch 2 has no gain, but it is the last epoch anyway: nothing was cut short
    assert not [p for p in reports if p.data.get("early_stop")]


def test_update_reports_its_own_phases(shop):
    train(shop, HybridConfig(**CFG, epochs=2), encoder=HashingEncoder(32))
    reports = []
    update_with_new_events(shop, epochs=1, progress=reports.append, encoder=HashingEncoder(32))
    assert all(p.data["phases"] == list(UPDATE_PHASES) for p in reports)
    overall = [p.data["overall"] for p in reports]
    assert overall == sorted(overall) and overall[-1] == 1.0
    assert {p.data["phase"] for p in reports} == set(UPDATE_PHASES)
