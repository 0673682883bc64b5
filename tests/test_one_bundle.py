"""One way to rank: the Query screen's engine, the CLI, a suite run and the Evaluate screen agree.

Every path goes through :func:`merch_app.model.bundle.load_bundle` (via
:mod:`merch_app.services.ranking`) and :meth:`Ranker.for_workspace`, so on one
workspace they must return the same items with the same scores, with a trained
model and without one, and with a workspace rule in force.
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.workspace import open_workspace, set_setting
from merch_app.evaluation.suite_data import Suite
from merch_app.evaluation.suite_run import model_ranker, run_suite
from merch_app.jobs import CancelToken
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.hybrid import HybridConfig
from merch_app.ranking.rules import MerchRule, save_rule
from merch_app.ranking.types import RankRequest, Weights
from merch_app.services import evaluate_jobs, query_engine
from merch_app.services.bundles import SHARED, BundleCache
from merch_app.services.ranking import ranking_bundle
from merch_app.services.training import train
from model_fixtures import planted_workspace

QUERY = "blue ceramic mug"
SPEC = "hashing:32"
K = 8


class FakeJobContext:
    """What a GUI worker hands a job: its own connection, state, cancel token."""

    def __init__(self) -> None:
        self.state: dict = {}
        self.cancel = CancelToken()
        self._dbs: dict = {}

    def db(self, path):
        if str(path) not in self._dbs:
            self._dbs[str(path)] = open_workspace(path)
        return self._dbs[str(path)]

    def progress(self, _p) -> None:
        pass

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()


@pytest.fixture(params=["trained", "text-only"])
def workspace(request, ws_path):
    db = open_workspace(ws_path)
    planted_workspace(db, n_users=40)
    save_rule(db, MerchRule("boost", "*", {"attribute": "item", "value": "b07", "weight": 0.05}))
    if request.param == "trained":
        train(db, HybridConfig(dim=16, epochs=2, batch_size=256, shared_negatives=64, refit_epochs=1),
              encoder=HashingEncoder(32))
    db.close()
    SHARED.clear()
    yield ws_path, request.param
    SHARED.clear()


def _query_screen(path):
    ctx = FakeJobContext()
    try:
        request = RankRequest(mode="search", query=QUERY, k=K, prefix=False)
        result = query_engine.run_query(ctx, path, 0, SPEC, request, send_map=False)
        return [(r["item_id"], r["score"]) for r in result.ranked.rows()], result.info
    finally:
        ctx.close()


def _cli(path):
    res = CliRunner().invoke(cli, ["query", QUERY, "-w", str(path), "--json", "--k", str(K), "--whole-words",
                                   "--encoder", SPEC])
    assert res.exit_code == 0, res.output
    return [(r["item_id"], r["score"]) for r in json.loads(res.output)]


def _suite_run(path):
    db = open_workspace(path)
    try:
        rank, config = model_ranker(db, ranking_bundle(db, None, SPEC))
        suite = Suite("one", queries=[QUERY], judgments={QUERY: {"b00": 3}})
        run = run_suite(suite, rank, k=K)
        return run.queries[0].items[:K], config
    finally:
        db.close()


def _evaluate_screen(path):
    ctx = FakeJobContext()
    try:
        out = evaluate_jobs.judge_results(ctx, path, evaluate_jobs.System(), SPEC, 0, "", QUERY, K)
        return [(r["item_id"], r["score"]) for r in out["rows"]]
    finally:
        ctx.close()


def test_every_face_ranks_the_same(workspace):
    path, kind = workspace
    screen, info = _query_screen(path)
    cli_rows = _cli(path)
    evaluate_rows = _evaluate_screen(path)
    suite_ids, config = _suite_run(path)
    assert len(screen) == K
    assert [i for i, _ in screen] == [i for i, _ in cli_rows] == [i for i, _ in evaluate_rows]
    assert [s for _, s in screen] == pytest.approx([s for _, s in cli_rows], abs=1e-6)
    assert [s for _, s in screen] == pytest.approx([s for _, s in evaluate_rows], abs=1e-6)
    assert list(suite_ids) == [i for i, _ in screen]
    # the rule is in force everywhere, and every face names the same model
    assert config["rules"] and (config["model_id"] is None) == (kind == "text-only") == (info.model_id is None)
    assert info.encoder_id == "hashing-32" == config["encoder"]


def test_the_shared_cache_holds_one_bundle_per_workspace_state(workspace):
    path, kind = workspace
    cache = BundleCache()
    db = open_workspace(path)
    try:
        a = cache.get(db, None, SPEC)
        assert cache.get(db, None, SPEC) is a and cache.loads == 1
        set_setting(db, "vector_index", "flat")  # a setting that changes ranking: a new bundle
        b = cache.get(db, None, SPEC)
        assert b is not a and cache.loads == 2 and b.index.kind == "flat"
        with db.conn:
            db.execute("INSERT INTO items(item_id, title) VALUES ('z99', 'new blue ceramic mug')")
        c = cache.get(db, None, SPEC)
        assert c is not b and "z99" in c.item_pos
        assert len(cache._bundles) <= cache.max_bundles
    finally:
        db.close()


def test_popularity_has_one_definition(workspace):
    """Search events name no product choice: no path counts them (the text-only one used to)."""
    path, _ = workspace
    db = open_workspace(path)
    try:
        before = ranking_bundle(db, None, SPEC)
        with db.conn:
            db.execute("INSERT INTO events(user_id, item_id, event_type, ts, query) "
                       "VALUES ('u000', 'c00', 'search', '2024-01-02T00:00:00Z', 'scarf')")
        after = ranking_bundle(db, None, SPEC)
        assert after.popularity[after.item_pos["c00"]] == before.popularity[before.item_pos["c00"]]
        assert Weights().pop >= 0
    finally:
        db.close()
