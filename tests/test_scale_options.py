"""Scale options: int8 encoder choice (spec suffix, workspace setting, CLI flags), the ivfsq8
index kind and the index setting, bounded-memory validation/evaluation blocks."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.workspace import get_setting, set_setting
from merch_app.model import cf_module as cf
from merch_app.model.encoder import INT8_SETTING, load_encoder, workspace_encoder
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.encoder_base import EncoderError
from merch_app.model.vector_index import VectorIndex
from model_fixtures import planted_workspace


def clustered(n: int, dim: int = 32, centres: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ----------------------------------------------------------------- int8 encoder choice
def test_int8_suffix_applies_to_bert_only():
    with pytest.raises(EncoderError, match="BERT"):
        load_encoder("hashing:16+int8")


def test_workspace_setting_is_ignored_for_hashing(ws):
    set_setting(ws, INT8_SETTING, True)
    enc = workspace_encoder(ws, "hashing:16")
    assert isinstance(enc, HashingEncoder) and enc.encoder_id == "hashing-16"
    with pytest.raises(EncoderError):
        workspace_encoder(ws, "hashing:16", int8=True)  # asked for explicitly: a clear error


@pytest.mark.slow
def test_workspace_encoder_follows_flag_then_setting(ws):
    assert workspace_encoder(ws).encoder_id.endswith("@" + load_encoder("minilm").encoder_id.split("@")[1])
    set_setting(ws, INT8_SETTING, True)
    assert workspace_encoder(ws).encoder_id.endswith("+int8")
    assert not workspace_encoder(ws, int8=False).encoder_id.endswith("+int8")
    assert workspace_encoder(ws, "minilm+int8", int8=False).encoder_id.endswith("+int8")  # suffix wins
    assert load_encoder("minilm+int8") is load_encoder("minilm", quantize="int8")


@pytest.mark.slow
def test_int8_model_is_reloaded_with_the_int8_encoder():
    from merch_app.model.registry import ModelVersion
    from merch_app.model.registry import encoder_for_version
    from merch_app.services.training import encoder_spec_of

    int8 = load_encoder("minilm+int8")
    assert encoder_spec_of(int8) == "minilm+int8"
    assert encoder_spec_of(load_encoder("minilm")) is None
    for config in ({"encoder": "minilm+int8"}, {"encoder": None}):  # new configs and older ones
        v = ModelVersion("m1", "m1", "", config, {}, {}, int8.encoder_id, "m1", 0.0)
        assert encoder_for_version(v) is int8


# ----------------------------------------------------------------- settings CLI
def test_settings_cli_show_set_reset(tmp_path):
    ws = str(tmp_path / "w.merch.sqlite")
    run = CliRunner().invoke
    r = run(cli, ["settings", "-w", ws, "--json"])
    assert r.exit_code == 0 and '"encoder_int8": false' in r.output and '"vector_index": "auto"' in r.output
    assert run(cli, ["settings", "set", "encoder_int8", "on", "-w", ws]).exit_code == 0
    assert run(cli, ["settings", "set", "vector_index", "ivfsq8", "-w", ws]).exit_code == 0
    bad = run(cli, ["settings", "set", "vector_index", "fastest", "-w", ws])
    assert bad.exit_code != 0 and "expected one of" in bad.output
    bad = run(cli, ["settings", "set", "encoder_int8", "maybe", "-w", ws])
    assert bad.exit_code != 0 and "true or false" in bad.output
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws)
    assert get_setting(db, "encoder_int8") is True and get_setting(db, "vector_index") == "ivfsq8"
    db.close()
    assert run(cli, ["settings", "reset", "encoder_int8", "-w", ws]).exit_code == 0
    assert "encoder_int8   False" in run(cli, ["settings", "-w", ws]).output


def test_encode_cli_int8_with_hashing_is_a_clear_error(ws_path):
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    planted_workspace(db, n_users=6, items_per_group=3, buys=2)
    db.close()
    r = CliRunner().invoke(cli, ["encode", "-w", str(ws_path), "--encoder", "hashing:16", "--int8"])
    assert r.exit_code != 0 and "BERT" in r.output
    r = CliRunner().invoke(cli, ["encode", "-w", str(ws_path), "--encoder", "hashing:16", "--fp32", "--json"])
    assert r.exit_code == 0 and '"encoded": 9' in r.output


# ----------------------------------------------------------------- vector index
def test_ivfsq8_kind_finds_neighbours_and_round_trips(tmp_path):
    x = clustered(4000)
    index = VectorIndex.from_vectors(x, kind="ivfsq8")
    assert index.kind == "ivfsq8"
    exact = np.argsort(-(x[:50] @ x.T), axis=1)[:, :10]
    _s, found = index.search(x[:50], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found)])
    assert recall >= 0.9
    loaded = VectorIndex.load(index.save(tmp_path / "i.faiss"))
    assert loaded.kind == "ivfsq8" and np.array_equal(loaded.search(x[:5], 10)[1], index.search(x[:5], 10)[1])
    allowed = np.arange(0, 4000, 7)
    _s, sub = index.search(x[:3], 5, subset=allowed)
    assert set(sub.ravel().tolist()) <= set(allowed.tolist())


def test_index_setting_is_used_for_text_only_bundles(ws):
    from merch_app.model.bundle import load_bundle

    planted_workspace(ws)
    set_setting(ws, "vector_index", "sq8")
    bundle = load_bundle(ws, encoder=HashingEncoder(16))
    assert bundle.index.kind == "sq8" and bundle.index.ntotal == len(bundle.item_ids)


# ----------------------------------------------------------------- bounded memory
def test_chunked_validation_equals_the_unblocked_metrics():
    rng = np.random.default_rng(1)
    n_users, n_items = 40, 300
    scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    val_users = np.sort(rng.choice(n_users, 25, replace=False))
    keys = np.unique(np.concatenate([u * n_items + rng.choice(n_items, 4, replace=False) for u in val_users]))
    whole = cf.validation_metrics(scores[val_users], val_users, keys, n_items)
    for cells in (n_items, 3 * n_items, 10**9):  # one user per block, three, all
        blocked = cf.chunked_validation_metrics(lambda u: scores[u], val_users, keys, n_items, max_cells=cells)
        assert blocked == pytest.approx(whole, abs=1e-12)


def test_row_block_shrinks_with_the_catalogue():
    from merch_app.evaluation.baselines import MAX_BLOCK_CELLS, row_block

    assert row_block(1_000) == 512
    assert row_block(1_000_000) == MAX_BLOCK_CELLS // 1_000_000
    assert row_block(10**12) == 1
