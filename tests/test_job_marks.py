"""Two processes on one workspace: a running training is seen by another process, which warns before a second."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.job_marks import job_mark, others_warning, running_jobs
from merch_app.data.workspace import open_workspace


def _foreign_mark(path, kind="train", label="nightly"):
    """A real other process (sleeping) whose job mark is in the workspace; returns the process."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    db = open_workspace(path)
    with db.conn:
        db.execute("INSERT INTO job_marks(kind, label, pid, host, started) VALUES (?, ?, ?, ?, ?)",
                   [kind, label, proc.pid, __import__("socket").gethostname(), "2026-01-01T05:40:00Z"])
    db.close()
    return proc


def test_a_mark_lives_as_long_as_its_job_and_its_process(ws_path):
    db = open_workspace(ws_path)
    with job_mark(db, "train", "mine") as mark:
        assert mark is not None
        assert running_jobs(db) == []  # this process's own jobs are left out
        assert [j.label for j in running_jobs(db, other_processes=False)] == ["mine"]
    assert running_jobs(db, other_processes=False) == []
    proc = _foreign_mark(ws_path)
    try:
        jobs = running_jobs(db, "train")
        assert [(j.pid, j.label) for j in jobs] == [(proc.pid, "nightly")]
        assert running_jobs(db, "finetune") == []
        text = others_warning(db, "train")
        assert text == (f"another training is running on this workspace: a training (“nightly”) in process "
                        f"{proc.pid} since 05:40 UTC. Both will finish and save their own version")
    finally:
        proc.kill()
        proc.wait()
    assert running_jobs(db, "train") == []  # the process is gone: its row is stale and ignored
    with job_mark(db, "import"):
        pass
    assert db.execute("SELECT count(*) FROM job_marks").fetchone()[0] == 0  # the stale row was swept too
    db.close()


def test_a_mark_is_removed_when_the_job_fails(ws_path):
    db = open_workspace(ws_path)
    with pytest.raises(RuntimeError):
        with job_mark(db, "train"):
            raise RuntimeError("boom")
    assert db.execute("SELECT count(*) FROM job_marks").fetchone()[0] == 0
    db.close()


def test_cli_train_warns_when_another_process_trains(ws_path, tmp_path):
    from ranking_fixtures import SAMPLE_ITEMS, insert_items

    db = open_workspace(ws_path)
    insert_items(db, SAMPLE_ITEMS)
    db.close()
    proc = _foreign_mark(ws_path)
    try:
        res = CliRunner().invoke(cli, ["train", "--encoder", "hashing", "--epochs", "1", "-w", str(ws_path)])
        assert f"warning: another training is running on this workspace: a training (“nightly”) in process " \
               f"{proc.pid}" in res.output, res.output
    finally:
        proc.kill()
        proc.wait()
    db = open_workspace(ws_path)
    assert [r[0] for r in db.execute("SELECT pid FROM job_marks").fetchall()] == [proc.pid]  # ours removed
    db.close()
