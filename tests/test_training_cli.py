"""merch-app train / evaluate / models / update through click (JSON output)."""
from __future__ import annotations

import json

import click
from click.testing import CliRunner

from merch_app.cli import model_cmds
from merch_app.data.workspace import open_workspace
from model_fixtures import planted_workspace


def _cli() -> click.Group:
    @click.group()
    def cli() -> None:
        pass

    model_cmds.register(cli)
    return cli


def test_train_evaluate_models_update(ws_path):
    db = open_workspace(ws_path)
    planted_workspace(db)
    db.close()
    run = CliRunner().invoke
    cli, w = _cli(), ["--workspace", str(ws_path)]
    res = run(cli, ["train", *w, "--encoder", "hashing", "--epochs", "3", "--dim", "8", "--json"])
    assert res.exit_code == 0, res.output
    version = json.loads(res.output)
    assert version["active"] and version["metrics"]["model"]["ndcg@10"] > 0
    res = run(cli, ["evaluate", *w, "--k", "5", "--json"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.output)
    assert {"model", "baselines", "split_date", "n_test_users", "cold_start"} <= set(ev)
    assert "precision@5" in ev["baselines"]["user_history"]
    res = run(cli, ["train", *w, "--encoder", "hashing", "--epochs", "2", "--dim", "8", "--name", "two"])
    assert res.exit_code == 0 and "precision@10" in res.output
    listed = json.loads(run(cli, ["models", "list", *w, "--json"]).output)
    assert [v["name"] for v in listed] == ["two", version["model_id"]]
    second = listed[0]["model_id"]
    assert run(cli, ["models", "activate", second, *w]).exit_code == 0
    assert run(cli, ["models", "rename", second, "renamed", *w, "--json"]).exit_code == 0
    res = run(cli, ["update", *w, "--epochs", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["data_snapshot"]["parent"] == second
    assert run(cli, ["models", "delete", version["model_id"], *w]).exit_code == 0
    res = run(cli, ["models", "delete", "nope", *w])
    assert res.exit_code == 1 and "no model version 'nope'" in res.output
    res = run(cli, ["train", *w, "--encoder", "hashing", "--split-date", "1999-01-01"])
    assert res.exit_code == 1 and "outside the event range" in res.output
