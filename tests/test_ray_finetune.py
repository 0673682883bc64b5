"""Fine-tuning the encoder on Ray Train (2 workers, gloo, local Ray): the local loss and weights, cancel, CLI."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from click.testing import CliRunner

from finetune_support import WORDS, basket_shop, tiny_bert
from merch_app.engines import get_engine
from merch_app.engines.ray_finetune import ShardedFinetuneLoop
from merch_app.jobs import CancelToken, Cancelled
from merch_app.model import encoder_versions as ev
from merch_app.model.finetune import FinetuneConfig, FinetuneLoop, fine_tune
from merch_app.model.finetune_pairs import Pair
from merch_app.model.item_vectors import cache_size
from merch_app.services.finetune import _validator, finetune
from model_fixtures import fill_workspace
from ray_support import start_ray

# a random 2-layer BERT moves at lr 1e-3 with nothing frozen; batches of 7 split 3 + 4 over two workers
KNOWN = dict(batch_size=7, lr=1e-3, epochs=2, freeze_embeddings=False, freeze_layers=0, hard_negatives=1,
             evals_per_epoch=2, min_val_pairs=1)


@pytest.fixture(scope="module")
def ray_runtime():
    ray = start_ray()
    # Ray Train's controller polls its workers every 2 s (seconds at the start and end of every run)
    env = pytest.MonkeyPatch()
    env.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    yield ray
    env.undo()
    ray.shutdown()


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")


def _pairs(n: int, seed: int) -> tuple[list[Pair], dict[str, str]]:
    """``n`` query pairs over 30 items; every other pair has a hard negative, so shares differ in rows."""
    rng = np.random.default_rng(seed)
    items = {f"i{j}": " ".join(rng.choice(WORDS, 3)) for j in range(30)}
    pairs = [Pair("query", " ".join(rng.choice(WORDS, int(rng.integers(1, 4)))), f"i{rng.integers(30)}",
                  float(rng.integers(1, 4)), f"2024-01-{k % 28 + 1:02d}T00:00:00Z", (),
                  (f"i{rng.integers(30)}",) if k % 2 else ()) for k in range(n)]
    return pairs, items


def test_two_ray_workers_give_the_whole_batch_loss_and_the_local_weights(ray_runtime, bert_dir):
    train, item_text = _pairs(40, seed=1)  # 6 steps per epoch (the last one of 5 pairs: 2 + 3)
    val, _ = _pairs(6, seed=2)
    val = [Pair(p.kind, p.anchor, p.item_id, p.weight, p.ts) for p in val]
    cfg = FinetuneConfig(**KNOWN)
    validate = _validator(val, item_text, sorted(item_text), 30, cfg.seed)
    local = fine_tune(bert_dir, train, item_text, cfg, validation=val, validate=validate)
    reports = []
    on_ray = get_engine("ray", workers=2)
    with on_ray.session():
        run = on_ray.fine_tune(bert_dir, train, item_text, cfg, validation=val, validate=validate,
                               progress=reports.append)
    recorded = on_ray.record()
    assert (recorded["engine"], recorded["workers"], recorded["ray_pairs_trained"], recorded["ray_steps"]) == (
        "ray", 2, 80, 12)
    # the same loss at every step: the gathered loss is the loss of the whole batch
    local_loss = [h["loss"] for h in local.history if "loss" in h]
    ray_loss = [h["loss"] for h in run.history if "loss" in h]
    assert len(ray_loss) == len(local_loss) == 12
    np.testing.assert_allclose(ray_loss, local_loss, rtol=0, atol=1e-5)
    assert local_loss[-1] < local_loss[0] - 0.3  # the weights moved: the comparison below means something
    # the same validations, the same best step, the same weights
    local_val = [(h["step"], h["ndcg@10"]) for h in local.history if h.get("validation")]
    ray_val = [(h["step"], h["ndcg@10"]) for h in run.history if h.get("validation")]
    assert [s for s, _ in ray_val] == [s for s, _ in local_val] == [0, 3, 6, 9, 12]
    np.testing.assert_allclose([v for _, v in ray_val], [v for _, v in local_val], atol=1e-5)
    assert run.best["step"] == local.best["step"]
    assert sorted(run.state) == sorted(local.state) and run.bert_config == local.bert_config
    for k in local.state:
        np.testing.assert_allclose(run.state[k].numpy(), local.state[k].numpy(), rtol=0, atol=2e-5, err_msg=k)
    assert (run.steps, run.n_train, run.n_val) == (local.steps, local.n_train, local.n_val) == (12, 40, 6)
    # progress from rank 0: validations (with the metric) and the last step
    assert any("ndcg@10" in p.data and p.data["workers"] == 2 for p in reports)
    assert reports[-1].done == reports[-1].total == 12

    # a mean of per-worker losses (each worker's anchors against its own positives only) is another number
    loop = FinetuneLoop(bert_dir, train, item_text, cfg)
    batch = _first_batches(loop)[0]

    def loss_of(pairs: list[Pair]) -> float:
        negs = loop.step_negatives(pairs)
        with torch.no_grad():
            return float(loop.batch_loss(loop.encode_step(pairs, negs), pairs, negs))

    whole, per_worker = loss_of(batch), [loss_of(batch[:3]), loss_of(batch[3:])]
    assert whole == pytest.approx(ray_loss[0], abs=1e-5)
    assert abs(whole - float(np.mean(per_worker))) > 0.2, (whole, per_worker)


def _first_batches(loop: FinetuneLoop) -> list[list[Pair]]:
    """The first step's 7 pairs and a step of 2 (with 3 workers: shares of 2 + 2 + 3, then 0 + 1 + 1)."""
    order = loop.rng.permutation(len(loop.train))
    return [[loop.train[i] for i in order[:7]], [loop.train[i] for i in order[7:9]]]


def _step_gradients(loop: FinetuneLoop, batch: list[Pair]) -> tuple[float, list[torch.Tensor]]:
    negs = loop.step_negatives(batch)
    loss = loop.batch_loss(loop.encode_step(batch, negs), batch, negs)
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    loop.sync_gradients()
    return float(loss.detach()), [p.grad.clone() for p in loop.params]


def _sharded_worker(rank: int, world: int, port: int, bert_dir: str, train, item_text, cfg: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        loop = ShardedFinetuneLoop(Path(bert_dir), train, item_text, FinetuneConfig.from_dict(cfg), rank=rank,
                                   world=world)
        torch.save([_step_gradients(loop, b) for b in _first_batches(loop)], f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_sharded_step_gradients_are_the_whole_batch_gradients(bert_dir, tmp_path):
    """Three gloo workers (uneven and empty shares): the loss and the summed / N gradients of local."""
    train, item_text = _pairs(40, seed=1)
    cfg = FinetuneConfig(**KNOWN)
    local = FinetuneLoop(bert_dir, train, item_text, cfg)
    expected = [_step_gradients(local, b) for b in _first_batches(local)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_sharded_worker, args=(3, port, str(bert_dir), train, item_text, cfg.to_dict(), str(tmp_path / "g")),
             nprocs=3)
    for rank in range(3):
        got = torch.load(tmp_path / f"g.{rank}")
        for (loss, grads), (want_loss, want) in zip(got, expected):
            assert loss == pytest.approx(want_loss, abs=1e-5)
            for g, w in zip(grads, want):
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    assert max(float(g.abs().max()) for g in expected[0][1]) > 1e-3  # gradients worth comparing


@pytest.fixture
def shop(ws):
    fill_workspace(ws, *basket_shop())
    return ws


def test_cancel_on_ray_registers_nothing_and_keeps_the_active_encoder(ray_runtime, shop, bert_dir):
    fast = dict(max_pairs=600, batch_size=16, lr=1e-3, freeze_embeddings=False, freeze_layers=0, val_fraction=0.0)
    first = finetune(shop, FinetuneConfig(**fast, epochs=1, activate=True), encoder=str(bert_dir))
    entries = sorted(p.name for p in ev.encoders_dir(shop).iterdir())
    cache_rows = cache_size(shop)
    token, seen = CancelToken(), []

    def progress(p):
        if p.data.get("phase") == "finetune":
            seen.append((p.data.get("step", 0), p.data.get("steps")))
            if p.data.get("step", 0) >= 3:
                token.cancel()

    with pytest.raises(Cancelled):
        finetune(shop, FinetuneConfig(**fast, epochs=40), progress=progress, cancel=token,
                 engine=get_engine("ray", workers=2))
    assert seen and seen[-1][0] < seen[-1][1]  # stopped before the end (40 epochs of 38 steps)
    assert [v.version_id for v in ev.list_encoder_versions(shop)] == [first.version.version_id]
    assert ev.active_encoder_version(shop).version_id == first.version.version_id
    assert sorted(p.name for p in ev.encoders_dir(shop).iterdir()) == entries
    assert cache_size(shop) == cache_rows


def test_cli_finetune_on_ray_records_the_engine_and_workers(ray_runtime, shop, ws_path, bert_dir):
    from merch_app.cli.main import cli

    shop.close()
    runner = CliRunner()
    wrong = runner.invoke(cli, ["finetune", "-w", str(ws_path), "--encoder", str(bert_dir), "--workers", "2"])
    assert wrong.exit_code != 0 and "need --engine ray" in wrong.output
    out = runner.invoke(cli, ["finetune", "-w", str(ws_path), "--encoder", str(bert_dir), "--max-pairs", "200",
                              "--no-activate", "--engine", "ray", "--workers", "2", "--json"])
    assert out.exit_code == 0, out.output
    version = json.loads(out.output)["version"]
    snapshot = version["data_snapshot"]
    assert (snapshot["engine"], snapshot["workers"], snapshot["ray_address"]) == ("ray", 2, "local")
    assert snapshot["ray_pairs_trained"] > 0 and snapshot["ray_steps"] > 0
    assert (version["config"]["engine"], version["config"]["workers"]) == ("ray", 2)
    listed = json.loads(runner.invoke(cli, ["encoders", "list", "-w", str(ws_path), "--json"]).output)
    assert [v["version_id"] for v in listed] == [version["version_id"]]
    assert (ws_path.with_name(ws_path.name + ".encoders") / version["path"] / "model.safetensors").is_file()
