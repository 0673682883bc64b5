"""Fine-tuning the encoder on a tiny random BERT: known answer, versions, cancel, crash, deleted parent, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from finetune_support import basket_shop, tiny_bert
from merch_app.cli.main import cli
from merch_app.data.workspace import set_setting
from merch_app.evaluation.related_items import also_bought, related_items_view
from merch_app.jobs import CancelToken, Cancelled
from merch_app.model import encoder_versions as ev
from merch_app.model.bundle import EncoderDeletedError, bundle_key, load_bundle
from merch_app.model.encoder import INT8_SETTING, load_encoder, workspace_encoder
from merch_app.model.finetune import FinetuneConfig, FinetuneRun
from merch_app.model.hybrid import HybridConfig
from merch_app.model.item_vectors import cache_size
from merch_app.services.finetune import finetune
from merch_app.services.training import train
from model_fixtures import fill_workspace

# lr and frozen layers suited to a random 2-layer BERT: the real defaults are for MiniLM
FAST = dict(max_pairs=600, batch_size=16, lr=1e-3, epochs=2, freeze_embeddings=False, freeze_layers=0,
            val_fraction=0.0)
PAIR_TEXTS = ["vintage candle jar", "metal garden clock", "pink paper card", "wooden kitchen box"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")


@pytest.fixture
def shop(ws):
    fill_workspace(ws, *basket_shop())
    return ws


def _sims(encoder) -> tuple[float, float]:
    v = encoder.encode(PAIR_TEXTS)
    return float(v[0] @ v[1]), float(v[2] @ v[3])


def test_items_always_bought_together_move_closer_than_a_control_pair(shop, bert_dir):
    before_pair, before_control = _sims(load_encoder(str(bert_dir)))
    result = finetune(shop, FinetuneConfig(**FAST, activate=True), encoder=str(bert_dir))
    tuned = workspace_encoder(shop)
    assert tuned.encoder_id == result.version.encoder_id != load_encoder(str(bert_dir)).encoder_id
    after_pair, after_control = _sims(tuned)
    assert after_pair - after_control > before_pair - before_control + 0.1
    assert after_pair > after_control


def test_a_version_is_registered_with_its_parent_snapshot_and_before_after_table(shop, bert_dir):
    reports = []
    result = finetune(shop, FinetuneConfig(**dict(FAST, val_fraction=0.2, min_val_pairs=1), activate=False),
                      progress=reports.append, encoder=str(bert_dir), name="first")
    v = result.version
    assert (v.name, v.active, result.activated) == ("first", False, False)
    assert v.parent_encoder_id == load_encoder(str(bert_dir)).encoder_id
    assert v.n_pairs == result.n_pairs > 0
    assert v.data_snapshot["events"] == shop.execute("SELECT count(*) FROM events").fetchone()[0]
    assert v.data_snapshot["max_ts"] and v.data_snapshot["split_ts"]
    for m in ("ndcg@10", "recall@50"):
        row = v.metrics["test"][m]
        assert 0.0 <= row["before"] <= 1.0 and 0.0 <= row["after"] <= 1.0 and 0.0 <= row["p_value"] <= 1.0
    assert any(h.get("loss") is not None for h in v.metrics["history"])
    phases = {r.data.get("phase") for r in reports}
    assert {"pairs", "negatives", "finetune", "evaluate"} <= phases
    assert any("ndcg@10" in r.data and "loss" in r.data for r in reports)
    assert any(r.eta_seconds is not None for r in reports if r.data.get("phase") == "finetune")
    # related items: each encoder's text-only related lists against what the buyers also bought after the split
    related = v.metrics["test"]["related"]
    assert related == result.comparison["related"] and related["n_items"] > 0
    split_ts = v.data_snapshot["split_ts"]
    truth = also_bought(shop, split_ts)
    for column, spec in (("before", str(bert_dir)), ("after", str(ev.encoders_dir(shop) / v.version_id))):
        view = related_items_view(shop, load_bundle(shop, encoder=spec, text_only=True), split_ts, truth=truth)
        assert view["n_items"] == related["n_items"]
        for m in ("ndcg@10", "recall@10"):
            assert related[m][column] == pytest.approx(view["mean"][m])
    assert related["ndcg@10"]["delta"] == pytest.approx(related["ndcg@10"]["after"] - related["ndcg@10"]["before"])
    folder = ev.encoders_dir(shop) / v.version_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    # the new encoder's vectors are cached under its own id; the parent's stay
    assert cache_size(shop, v.encoder_id) == shop.execute("SELECT count(*) FROM items").fetchone()[0]
    assert cache_size(shop, v.parent_encoder_id) > 0
    # a second run with another seed has other weights, hence another cache key
    other = finetune(shop, FinetuneConfig(**dict(FAST, epochs=1, seed=7), activate=False), encoder=str(bert_dir))
    assert other.version.encoder_id.split("@")[1] != v.encoder_id.split("@")[1]


def test_cancel_leaves_the_registry_and_the_active_encoder_untouched(shop, bert_dir):
    first = finetune(shop, FinetuneConfig(**dict(FAST, epochs=1), activate=True), encoder=str(bert_dir))
    entries = sorted(p.name for p in ev.encoders_dir(shop).iterdir())
    cache_rows = cache_size(shop)
    token = CancelToken()

    def progress(p):
        if p.data.get("phase") == "finetune" and p.done >= 3:
            token.cancel()

    with pytest.raises(Cancelled):
        finetune(shop, FinetuneConfig(**FAST), progress=progress, cancel=token)
    assert [v.version_id for v in ev.list_encoder_versions(shop)] == [first.version.version_id]
    assert ev.active_encoder_version(shop).version_id == first.version.version_id
    assert sorted(p.name for p in ev.encoders_dir(shop).iterdir()) == entries
    assert cache_size(shop) == cache_rows


def test_cancel_during_the_after_evaluation_removes_the_new_folder(shop, bert_dir):
    token = CancelToken()

    def progress(p):
        if p.data.get("phase") == "evaluate":
            token.cancel()

    with pytest.raises(Cancelled):
        finetune(shop, FinetuneConfig(**dict(FAST, epochs=1)), progress=progress, cancel=token, encoder=str(bert_dir))
    assert ev.list_encoder_versions(shop) == []
    assert list(ev.encoders_dir(shop).iterdir()) == []
    assert shop.execute("SELECT count(*) FROM embeddings WHERE encoder_id LIKE 'ft%'").fetchone()[0] == 0


def test_a_crash_while_writing_leaves_no_half_encoder(shop, bert_dir, monkeypatch):
    def broken(self, path, metadata):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(FinetuneRun, "write_weights", broken)
    with pytest.raises(OSError, match="simulated"):
        finetune(shop, FinetuneConfig(**dict(FAST, epochs=1), activate=True), encoder=str(bert_dir))
    assert ev.list_encoder_versions(shop) == []
    assert ev.active_encoder_version(shop) is None
    assert list(ev.encoders_dir(shop).iterdir()) == []


def test_every_ranking_path_follows_the_active_encoder_and_int8_works(shop, bert_dir):
    key0 = bundle_key(shop)
    result = finetune(shop, FinetuneConfig(**dict(FAST, epochs=1), activate=True), encoder=str(bert_dir))
    assert bundle_key(shop) != key0
    bundle = load_bundle(shop)  # no model: the text bundle encodes with the active encoder
    assert bundle.encoder.encoder_id == result.version.encoder_id
    set_setting(shop, INT8_SETTING, True)
    int8 = workspace_encoder(shop)
    assert int8.encoder_id == result.version.encoder_id + "+int8"
    vec = int8.encode(["vintage candle jar"])
    assert vec.shape == (1, 32) and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4
    assert load_bundle(shop).encoder.encoder_id == int8.encoder_id
    set_setting(shop, INT8_SETTING, False)
    ev.activate_encoder(shop, "base")
    assert ev.active_encoder_key(shop) is None


def test_a_model_trained_on_a_deleted_encoder_version_refuses_clearly(shop, bert_dir):
    result = finetune(shop, FinetuneConfig(**dict(FAST, epochs=1), activate=True), encoder=str(bert_dir))
    model = train(shop, HybridConfig(dim=8, epochs=2, batch_size=256, shared_negatives=32, refit_epochs=1,
                                     activate="always"))
    assert model.encoder_id == result.version.encoder_id
    assert load_bundle(shop).encoder.encoder_id == result.version.encoder_id
    ev.activate_encoder(shop, "base")
    assert "trained with encoder" in (load_bundle(shop).warning or "")  # it keeps ranking with its own encoder
    ev.delete_encoder_version(shop, result.version.version_id)
    assert ev.models_using(shop, f"{result.version.version_id}@") == [model.model_id]
    with pytest.raises(EncoderDeletedError, match=f"{result.version.version_id}.*was deleted"):
        load_bundle(shop)
    fallback = load_bundle(shop, fallback=True)
    assert fallback.model is None and "was deleted" in fallback.warning


def test_cli_finetune_and_encoders(shop, ws_path, bert_dir):
    shop.close()
    runner = CliRunner()
    out = runner.invoke(cli, ["finetune", "-w", str(ws_path), "--encoder", str(bert_dir), "--max-pairs", "200",
                              "--no-activate", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    vid = data["version"]["version_id"]
    assert data["activated"] is False and data["n_pairs"] > 0 and "ndcg@10" in data["comparison"]
    assert data["comparison"]["related"]["n_items"] > 0
    listed = runner.invoke(cli, ["encoders", "list", "-w", str(ws_path), "--json"])
    assert [v["version_id"] for v in json.loads(listed.output)] == [vid]
    text = runner.invoke(cli, ["encoders", "-w", str(ws_path)])
    assert text.exit_code == 0 and "* base" in text.output and vid in text.output
    assert "NDCG@10 " in text.output and ", related " in text.output
    act = runner.invoke(cli, ["encoders", "activate", vid, "-w", str(ws_path), "--json"])
    assert act.exit_code == 0 and json.loads(act.output)["active"]["version_id"] == vid
    missing = runner.invoke(cli, ["encoders", "activate", "ft20000101-000000-abcdef", "-w", str(ws_path)])
    assert missing.exit_code != 0 and "no encoder version" in missing.output
    gone = runner.invoke(cli, ["encoders", "delete", vid, "-w", str(ws_path)])
    assert gone.exit_code == 0 and "MiniLM is active again" in gone.output
    assert json.loads(runner.invoke(cli, ["encoders", "list", "-w", str(ws_path), "--json"]).output) == []
    # table mode: a shop this small has too few held-out pairs to validate on, and says so
    table = runner.invoke(cli, ["finetune", "-w", str(ws_path), "--encoder", str(bert_dir), "--max-pairs", "200",
                                "--no-activate"])
    assert table.exit_code == 0, table.output
    assert "no validation (fewer than 100 of the latest pairs" in table.stdout
    assert "the last step is kept" in table.stdout and "ndcg@10" in table.stdout
    assert "products' text-only lists against what their buyers also bought" in table.stdout


def test_cli_finetune_without_behaviour_says_why(ws, ws_path, bert_dir):
    fill_workspace(ws, [{"item_id": "a", "title": "red candle"}], [])
    ws.close()
    out = CliRunner().invoke(cli, ["finetune", "-w", str(ws_path), "--encoder", str(bert_dir)])
    assert out.exit_code != 0 and "behaviour events" in out.output


def test_a_run_that_never_beats_the_base_saves_nothing(shop, bert_dir):
    cfg = FinetuneConfig(**{**FAST, "lr": 0.0, "val_fraction": 0.2, "min_val_pairs": 1, "evals_per_epoch": 2})
    result = finetune(shop, cfg, encoder=str(bert_dir))
    assert result.version is None and not result.activated
    assert "nothing was saved" in result.note and result.validation["step"] == 0
    assert ev.list_encoder_versions(shop) == [] and ev.active_encoder_version(shop) is None
    folder = ev.encoders_dir(shop, create=False)
    assert not folder.exists() or not any(folder.iterdir())
    assert result.to_dict()["version"] is None


def test_a_finetune_killed_before_its_row_leaves_a_folder_the_next_one_removes(shop, ws_path, bert_dir):
    """SIGKILL of a real `merch-app finetune` after its folder was renamed into place, before its registry row."""
    import os
    import sys

    from merch_app.data.workspace import open_workspace
    from merch_app.jobs import PAUSE_ENV
    from process_support import kill_when_said

    shop.close()
    root = Path(__file__).resolve().parents[1]
    args = ["finetune", "-w", str(ws_path), "--encoder", str(bert_dir), "--max-pairs", "200", "--no-activate"]
    env = dict(os.environ, **{PAUSE_ENV: "encoders.register"}, PYTHONUNBUFFERED="1")
    kill_when_said([sys.executable, "-m", "merch_app", *args], "paused at encoders.register", env=env, cwd=root)
    folders = ws_path.with_name(ws_path.name + ".encoders")
    orphans = [p.name for p in folders.iterdir()]
    assert len(orphans) == 1 and ".tmp-" not in orphans[0]  # renamed into place, never registered
    db = open_workspace(ws_path)
    assert ev.list_encoder_versions(db) == [] and db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    out = CliRunner().invoke(cli, [*args, "--json"])
    assert out.exit_code == 0, out.output
    vid = json.loads(out.output)["version"]["version_id"]
    assert [p.name for p in folders.iterdir()] == [vid]  # the next fine-tuning removed the orphan


def test_leftover_encoder_folders_are_kept_while_another_process_fine_tunes(ws_path):
    import socket
    import subprocess
    import sys

    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    orphan = ev.encoders_dir(db) / "ft20260101-000000-abcdef"
    orphan.mkdir()
    (orphan / "config.json").write_text("{}", encoding="utf-8")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with db.conn:
        db.execute("INSERT INTO job_marks(kind, label, pid, host, started) VALUES ('finetune', '', ?, ?, "
                   "'2026-01-01T05:40:00Z')", [other.pid, socket.gethostname()])
    try:
        assert ev.remove_leftover_encoder_folders(db) == [] and orphan.exists()  # maybe its folder, mid-evaluation
    finally:
        other.kill()
        other.wait()
    assert ev.remove_leftover_encoder_folders(db) == [orphan.name] and not orphan.exists()
    db.close()


def test_uniformity_term_known_answers():
    import torch

    from merch_app.model.finetune import uniformity_term

    same = torch.nn.functional.normalize(torch.ones(3, 4), dim=1)
    assert uniformity_term(same).item() == pytest.approx(0.0, abs=1e-6)  # log mean exp(0)
    assert uniformity_term(torch.eye(2)).item() == pytest.approx(-4.0, abs=1e-6)  # |e1 - e2|² = 2
    # e1, e2, e1: pairs at distances² 2, 0, 2 -> log((2·e⁻⁴ + 1) / 3)
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert uniformity_term(rows).item() == pytest.approx(float(np.log((2 * np.exp(-4.0) + 1) / 3)), abs=1e-6)
    assert uniformity_term(torch.eye(2)[:1]).item() == 0.0


def test_the_uniformity_term_spreads_the_item_vectors(shop, bert_dir):
    texts = [t for (t,) in shop.execute("SELECT title FROM items ORDER BY item_id")]

    def mean_cosine(weight: float) -> float:
        result = finetune(shop, FinetuneConfig(**FAST, activate=False, uniformity=weight), encoder=str(bert_dir))
        v = load_encoder(str(ev.version_folder(shop, result.version))).encode(texts)
        c = v @ v.T
        return float((c.sum() - np.trace(c)) / (len(v) * (len(v) - 1)))

    plain, spread = mean_cosine(0.0), mean_cosine(1.0)
    assert spread < plain - 0.05, (plain, spread)


def test_the_latest_pairs_with_seen_anchors_go_back_into_training():
    from merch_app.model.finetune import split_validation
    from merch_app.model.finetune_pairs import Pair

    def item(a, b, day):
        return Pair("item", f"text {a}", b, 1.0, f"2024-01-{day:02d}", (a,))

    earlier = [item("a", "b", 1), item("c", "d", 2), item("e", "f", 3), item("g", "h", 4),
               item("a", "c", 5), item("c", "a", 6)]
    latest = [item("x", "y", 7),   # unseen anchor: validation
              item("a", "d", 8),   # seen anchor: back into training
              item("y", "x", 9),   # unseen anchor: validation too
              item("e", "x", 10)]  # seen anchor, but its positive is a validation anchor: dropped
    train, val = split_validation(latest[::-1] + earlier, FinetuneConfig(val_fraction=0.4, max_val_pairs=100, min_val_pairs=2))
    assert [(p.anchor_items[0], p.item_id) for p in val] == [("x", "y"), ("y", "x")]
    assert [(p.anchor_items[0], p.item_id) for p in train] == [
        ("a", "b"), ("c", "d"), ("e", "f"), ("g", "h"), ("a", "c"), ("c", "a"), ("a", "d")]
    # fewer validation pairs than min_val_pairs: no validation, every pair trained on
    train, val = split_validation(latest + earlier, FinetuneConfig(val_fraction=0.4, max_val_pairs=100, min_val_pairs=3))
    assert val == [] and len(train) == 10 and [p.ts for p in train] == sorted(p.ts for p in train)
