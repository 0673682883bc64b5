"""The fine-tuning job's progress: one overall fraction across pairs, encode, negatives, finetune, evaluate."""
from __future__ import annotations

from pathlib import Path

import pytest

from finetune_support import basket_shop, tiny_bert
from merch_app.model.finetune import FinetuneConfig
from merch_app.services.finetune import finetune
from merch_app.services.job_estimates import FINETUNE_PHASES
from model_fixtures import fill_workspace

FAST = dict(max_pairs=300, batch_size=16, lr=1e-3, epochs=1, freeze_embeddings=False, freeze_layers=0,
            val_fraction=0.2, min_val_pairs=1, activate=False)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")


def test_finetune_reports_one_monotonic_overall_fraction_in_phase_order(ws, bert_dir):
    fill_workspace(ws, *basket_shop())
    reports = []
    result = finetune(ws, FinetuneConfig(**FAST), progress=reports.append, encoder=str(bert_dir))
    assert all(p.data["phases"] == list(FINETUNE_PHASES) for p in reports)
    overall = [p.data["overall"] for p in reports]
    assert overall == sorted(overall)
    assert overall[-1] == 1.0 and all(v < 1.0 for v in overall[:-1])
    order = [p.data["phase"] for p in reports]
    seen = [ph for n, ph in enumerate(order) if n == 0 or ph != order[n - 1]]
    assert result.version is not None  # the tiny BERT learns the baskets: a version with its before/after table
    assert seen == list(FINETUNE_PHASES)
    assert reports[-1].message == f"saved encoder version {result.version.version_id}"
    assert all(p.data["phases"][p.data["phase_index"]] == p.data["phase"] for p in reports)
