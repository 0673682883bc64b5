"""Every run of a stored suite is kept: history over three runs, what changed, the CI gate (--fail-below)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.workspace import open_workspace
from merch_app.evaluation.suite_data import Suite
from merch_app.evaluation.suite_history import check_run, previous_run, record_run, suite_history
from merch_app.evaluation.suite_run import run_suite
from merch_app.evaluation.suites import save_suite
from ranking_fixtures import SAMPLE_ITEMS, insert_items

ENC = ["--encoder", "hashing"]


def invoke(*args, code=0):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == code, res.output + repr(res.exception)
    return res


@pytest.fixture
def db():
    d = open_workspace(":memory:")
    yield d
    d.close()


def _suite(db) -> Suite:
    s = Suite("hand")
    for q, item, g in (("a", "x", 3), ("a", "y", 1), ("b", "z", 3)):
        s.set_grade(q, item, g)
    s.suite_id = save_suite(db, s)
    return s


def _ranker(lists):
    return lambda query, n: lists[query][:n]


def test_history_over_three_runs_with_the_changes_between_them(db):
    s = _suite(db)
    good = {"a": ["x", "y"], "b": ["z"]}
    bad = {"a": ["y", "x"], "b": ["q", "z"]}
    r1 = run_suite(s, _ranker(good), label="v1", config={"model": "v1", "weights": {"lex": 1.0}, "rules": []})
    record_run(db, r1, s.suite_id)
    r2 = run_suite(s, _ranker(bad), label="v2", config={"model": "v2", "weights": {"lex": 1.0}, "rules": []})
    record_run(db, r2, s.suite_id)
    s.set_grade("b", "q", 2)
    save_suite(db, s)
    r3 = run_suite(s, _ranker(bad), label="v2", config={"model": "v2", "weights": {"lex": 1.0}, "rules": []})
    record_run(db, r3, s.suite_id)

    points = suite_history(db, s.suite_id)
    assert [p.label for p in points] == ["v1", "v2", "v2"]
    assert points[0].value == pytest.approx(1.0) and points[0].changes == []
    assert points[1].value == pytest.approx(r2.mean["ndcg@10"]) and points[1].value < 1.0
    assert points[1].changes == ["model v1 → v2"]
    assert points[2].changes == ["judgments 3 → 4"]  # same system, the suite was re-judged


def test_gate_fails_below_the_floor_and_lists_regressions_since_the_previous_run(db):
    s = _suite(db)
    r1 = run_suite(s, _ranker({"a": ["x", "y"], "b": ["z"]}), label="v1")
    record_run(db, r1, s.suite_id)
    r2 = run_suite(s, _ranker({"a": ["x", "y"], "b": ["q", "w", "z"]}), label="v2")
    prev = previous_run(db, s.suite_id)
    gate = check_run(r2, fail_below=0.5, previous=prev)
    assert gate.passed and gate.regressions == ["b"]  # listed, but not failing without fail_on_regression
    gate = check_run(r2, fail_below=0.5, previous=prev, fail_on_regression=True)
    assert not gate.passed and "1 queries of “hand” lost more than 0.05" in gate.reasons[0]
    gate = check_run(r2, fail_below=0.95)
    assert not gate.passed and gate.reasons == [f"mean NDCG@10 of “hand” is {gate.mean:.4f}, below 0.95"]


@pytest.fixture
def shop(ws_path):
    d = open_workspace(ws_path)
    insert_items(d, SAMPLE_ITEMS)
    d.close()
    return ws_path


def test_cli_keeps_every_run_and_fails_below_for_ci(shop, tmp_path):
    csv = tmp_path / "hand.csv"
    csv.write_text("query,item_id,grade\nheart,22003,3\nmug,22004,3\n", encoding="utf-8")
    invoke("suite", "import", csv, "--name", "hand", "-w", shop)
    other = tmp_path / "other.csv"
    other.write_text("query,item_id,grade\nheart,22004,3\nheart,22003,1\n", encoding="utf-8")  # the mug, for heart
    invoke("suite", "import", other, "--name", "other", "-w", shop)
    first = json.loads(invoke("suite", "run", "hand", "-w", shop, "--json", *ENC).output)
    assert first["snapshot_id"] and first["gate"]["passed"] and first["gate"]["against"] is None
    invoke("suite", "run", "hand", "-w", shop, "--weights", "lex=0,text=0,cf=0,pop=1", *ENC)
    hist = json.loads(invoke("suite", "history", "hand", "-w", shop, "--json").output)
    assert len(hist) == 2 and hist[1]["changes"][0].startswith("weights lex 0")
    assert hist[0]["value"] == pytest.approx(first["mean"]["ndcg@10"])
    text = invoke("suite", "history", "hand", "-w", shop).output
    assert f"{hist[0]['snapshot_id']:>5}" in text and "weights lex 0" in text

    res = invoke("suite", "run", "--all", "-w", shop, "--fail-below", "1.01", *ENC, code=2)  # out of [0, 1]
    res = invoke("suite", "run", "--all", "-w", shop, "--fail-below", "0.999", "--json", *ENC, code=1)
    out = json.loads(res.stdout)
    assert out["passed"] is False and [r["suite"] for r in out["runs"]] == ["hand", "other"]
    assert [r["gate"]["passed"] for r in out["runs"]] == [True, False]
    assert "mean NDCG@10 of “other” is" in out["runs"][1]["gate"]["reasons"][0]
    res = invoke("suite", "run", "hand", "other", "-w", shop, "--fail-below", "0.0", *ENC)
    assert "hand" in res.output and "other" in res.output and "FAILED" not in res.output

    d = json.loads(invoke("suite", "diff", hist[0]["snapshot_id"], hist[1]["snapshot_id"], "-w", shop,
                          "--json").output)
    assert {r["query"] for r in d["rows"]} == {"heart", "mug"}
    assert invoke("suite", "diff", "999", "1", "-w", shop, code=1).output.strip().endswith("no snapshot with id 999")
