"""Multi-statement writers killed half-way (SIGKILL of a real process at a named point) leave the workspace as it was.

A suite replaced or deleted, a rule added (the rule and its activity-log row), a rater's grade (the grade and
the suite's merged judgment).
"""
from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.workspace import open_workspace
from merch_app.evaluation.suites import load_suite
from merch_app.jobs import PAUSE_ENV
from process_support import kill_when_said

ROOT = Path(__file__).resolve().parents[1]


def _state(path: Path) -> tuple:
    conn = sqlite3.connect(path)
    try:
        return tuple(conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall()  # noqa: S608 - constant names
                     for t in ("suites", "suite_queries", "judgments", "raw_judgments", "snapshots", "rules",
                               "rule_log", "rater_judgments"))
    finally:
        conn.close()


@pytest.fixture
def stored(ws_path, tmp_path):
    first = tmp_path / "first.csv"
    first.write_text("query,item_id,grade\nmug,A,3\nmug,B,1\nlamp,C,2\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["suite", "import", str(first), "--name", "s", "-w", str(ws_path)])
    assert res.exit_code == 0, res.output
    return ws_path


@pytest.mark.parametrize("point", ["suite.replace", "suite.delete"])
def test_a_killed_replace_or_delete_changes_nothing(stored, tmp_path, point):
    second = tmp_path / "second.csv"
    second.write_text("query,item_id,grade\nchair,D,3\n", encoding="utf-8")
    before = _state(stored)
    argv = {"suite.replace": ["suite", "import", str(second), "--name", "s", "--replace"],
            "suite.delete": ["suite", "delete", "s"]}[point]
    env = dict(os.environ, **{PAUSE_ENV: point}, PYTHONUNBUFFERED="1")
    kill_when_said([sys.executable, "-m", "merch_app", *argv, "-w", str(stored)], f"paused at {point}",
                   env=env, cwd=ROOT)
    db = open_workspace(stored)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert load_suite(db, "s").judgments == {"mug": {"A": 3, "B": 1}, "lamp": {"C": 2}}
    db.close()
    assert _state(stored) == before
    res = CliRunner().invoke(cli, [*argv, "-w", str(stored)])  # not paused: it does its job
    assert res.exit_code == 0, res.output
    db = open_workspace(stored)
    names = [r[0] for r in db.execute("SELECT name FROM suites")]
    assert names == (["s"] if point == "suite.replace" else [])
    if point == "suite.replace":
        assert load_suite(db, "s").judgments == {"chair": {"D": 3}}
    db.close()


@pytest.mark.parametrize("point", ["rules.save", "rules.status", "raters.rate"])
def test_a_killed_rule_save_or_rating_changes_nothing(stored, point):
    if point == "rules.status":
        res = CliRunner().invoke(cli, ["rules", "add", "pin", "--pattern", "mug", "--item", "A", "--status", "draft",
                                       "-w", str(stored)])
        assert res.exit_code == 0, res.output
    before = _state(stored)
    argv = {"rules.save": ["rules", "add", "pin", "--pattern", "mug", "--item", "A", "--by", "ana"],
            "rules.status": ["rules", "set-status", "1", "live"],
            "raters.rate": ["suite", "rate", "s", "mug", "B", "3", "--rater", "ben"]}[point]
    env = dict(os.environ, **{PAUSE_ENV: point}, PYTHONUNBUFFERED="1")
    kill_when_said([sys.executable, "-m", "merch_app", *argv, "-w", str(stored)], f"paused at {point}",
                   env=env, cwd=ROOT)
    db = open_workspace(stored)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert _state(stored) == before
    res = CliRunner().invoke(cli, [*argv, "-w", str(stored)])
    assert res.exit_code == 0, res.output
    db = open_workspace(stored)
    if point == "rules.save":
        assert [(r[0], r[1]) for r in db.execute("SELECT rule_id, action FROM rule_log")] == [(1, "created")]
    elif point == "rules.status":
        assert [r[0] for r in db.execute("SELECT action FROM rule_log ORDER BY log_id")] == ["created", "status"]
    else:
        assert load_suite(db, "s").judgments["mug"]["B"] == 3  # one rater: the merged grade is theirs
    db.close()
