"""Read-only media, a full disk, the file-size limit and what killed writers leave (issue 23, round 2).

* a workspace on a read-only mount (a real read-only bind mount in a private
  mount namespace, ``unshare -rm``) or one whose file cannot be written opens
  read-only: reading commands work, writing ones say why they cannot;
* a full disk (``max_page_count``) and ``ulimit -f`` (a real subprocess with
  ``RLIMIT_FSIZE``) end in one sentence, no traceback, the workspace unchanged;
* a large write-ahead log and the model folders of killed saves and forgets
  (real SIGKILLs) are cleared by the next opening for writing.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from merch_app.cli import common as cli_common
from merch_app.cli.main import cli
from merch_app.data import workspace as workspace_mod
from merch_app.data.importer import import_file
from merch_app.data.workspace import LARGE_WAL_BYTES, open_workspace
from process_support import kill_when_said

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("items", "events", "rejected_rows", "mappings", "settings", "models", "suites", "judgments",
          "snapshots", "rules")


def table_rows(path: Path) -> dict:
    """Every row of the tables a command may write, and the integrity check, read without side effects."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}
        rows["ok_imports"] = conn.execute("SELECT * FROM imports WHERE status = 'ok' ORDER BY id").fetchall()
        rows["integrity"] = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return rows
    finally:
        conn.close()


def model_folders(path: Path) -> list[str]:
    return sorted(p.name for p in path.with_name(path.name + ".models").iterdir())


def cli_env(**extra: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", COLUMNS="200",
               **extra)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


@pytest.fixture(scope="module")
def shop_template(tmp_path_factory):
    """A workspace with a 60-item shop, a stored suite and one active model (hashing encoder)."""
    from merch_app.model.encoder import load_encoder
    from merch_app.model.hybrid import HybridConfig
    from merch_app.services.training import train
    from ui_support import write_shop

    folder = tmp_path_factory.mktemp("media")
    cat, ev = write_shop(folder / "shop")
    suite = folder / "suite.csv"
    suite.write_text("query,item_id,grade\nred mug,SKU000,3\nblue kite,SKU031,2\n", encoding="utf-8")
    path = folder / "ws.merch.sqlite"
    db = open_workspace(path)
    import_file(db, cat)
    import_file(db, ev)
    train(db, HybridConfig(epochs=2, encoder="hashing", activate="always"), encoder=load_encoder("hashing"),
          name="base")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert CliRunner().invoke(cli, ["suite", "import", str(suite), "--name", "s1", "-w", str(path)]).exit_code == 0
    return path, folder / "shop"


@pytest.fixture
def shop(shop_template, tmp_path) -> tuple[Path, Path]:
    src, shop_dir = shop_template
    dst = tmp_path / "ws" / src.name
    dst.parent.mkdir()
    shutil.copy(src, dst)
    shutil.copytree(src.with_name(src.name + ".models"), dst.with_name(dst.name + ".models"))
    shutil.copytree(shop_dir, tmp_path / "shop")
    return dst, tmp_path / "shop"


def more_events(path: Path, n: int) -> Path:
    path.write_text("user_id,item_id,event_type,ts\n" + "".join(
        f"w{i % 97},SKU{i % 60:03d},view,2024-02-{1 + i % 28:02d} 10:{i % 60:02d}:00\n" for i in range(n)),
        encoding="utf-8")
    return path


READS = [["models", "list"], ["query", "red mug", "--json"], ["explain", "red mug", "--item", "SKU000"],
         ["settings"], ["doctor"], ["suite", "list"], ["suite", "run", "s1", "--encoder", "hashing"]]
WRITES = [["import", "{events}"], ["train", "--encoder", "hashing", "--epochs", "1"],
          ["rules", "add", "pin", "--pattern", "mug", "--item", "SKU000"],
          ["suite", "import", "{suite}", "--name", "s2"], ["settings", "set", "encoder_int8", "true"],
          ["forget", "U01", "--yes"]]


# ------------------------------------------------------------- read-only media
RO_DRIVER = r'''
import json, sys
from click.testing import CliRunner
from merch_app.cli.main import cli
path, events, suite = sys.argv[1:4]
out = []
for args in json.loads(sys.argv[4]):
    args = [a.format(events=events, suite=suite) for a in args]
    res = CliRunner().invoke(cli, [*args, "-w", path])
    out.append({"args": args, "code": res.exit_code, "output": res.output,
                "error": repr(res.exception) if res.exit_code not in (0, 1) else ""})
print("RESULT" + json.dumps(out))
'''


def _run_on_readonly_mount(folder: Path, mount: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """``argv`` in a private mount namespace where ``mount`` is ``folder`` mounted read-only."""
    script = 'mount --bind "$1" "$2" && mount -o remount,ro,bind "$2" && shift 2 && exec "$@"'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(folder), str(mount), *argv],
                          capture_output=True, text=True, timeout=300, env=cli_env(), cwd=ROOT)


@pytest.fixture
def readonly_mount(tmp_path):
    """A function running a command with a folder mounted read-only; skips where no mount namespace is allowed."""
    probe_src, probe_mnt = tmp_path / "probe_src", tmp_path / "probe_mnt"
    probe_src.mkdir()
    probe_mnt.mkdir()
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private read-only mount")
    probe = _run_on_readonly_mount(probe_src, probe_mnt, ["sh", "-c", f'! touch "{probe_mnt}/x" 2>/dev/null'])
    if probe.returncode != 0:
        pytest.skip(f"a private read-only mount is not allowed here (unshare -rm: {probe.stderr.strip()[:200]})")
    return _run_on_readonly_mount


def _drive(run, folder: Path, mount: Path, path_in_mount: Path, tmp_path: Path, commands: list) -> list[dict]:
    driver = tmp_path / "ro_driver.py"
    driver.write_text(RO_DRIVER, encoding="utf-8")
    events = more_events(tmp_path / "more.csv", 50)
    suite = tmp_path / "suite2.csv"
    suite.write_text("query,item_id,grade\nmug,SKU001,1\n", encoding="utf-8")
    res = run(folder, mount, [sys.executable, str(driver), str(path_in_mount), str(events), str(suite),
                              json.dumps(commands)])
    assert "RESULT" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(res.stdout.split("RESULT", 1)[1])


def test_workspace_on_a_readonly_mount_reads_and_refuses_writes_with_a_sentence(shop, readonly_mount, tmp_path):
    path, _ = shop
    before, folders = table_rows(path), model_folders(path)
    mount = tmp_path / "mnt"
    mount.mkdir()
    results = _drive(readonly_mount, path.parent, mount, mount / path.name, tmp_path, READS + WRITES)
    for r in results:
        assert "Traceback" not in r["output"] and not r["error"], r
        assert "not a merch_app workspace" not in r["output"], r
        if r["args"] in READS:
            assert r["code"] == 0, r
        else:
            assert r["code"] == 1, r
            assert (f"the workspace {mount / path.name} is read-only (the disk is mounted read-only): "
                    "nothing was changed") in " ".join(r["output"].split()), r
    assert json.loads(results[1]["output"])[0]["item_id"] == "SKU000"  # the query ranks
    assert table_rows(path) == before and model_folders(path) == folders


def _killed_writer_files(path: Path, keep_shm: bool) -> None:
    """Leave the -wal (and -shm) of a writer stopped after a commit: one more event, only in the log."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    with conn:
        conn.execute("INSERT INTO events(user_id, item_id, event_type, ts) VALUES "
                     "('walonly', 'SKU000', 'view', '2024-03-01T00:00:00Z')")
    copy = path.parent / "copy"
    copy.mkdir()
    for suffix in ("", "-wal", "-shm"):
        if suffix != "-shm" or keep_shm:
            shutil.copy(path.with_name(path.name + suffix), copy / (path.name + suffix))
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        target = path.with_name(path.name + suffix)
        target.unlink(missing_ok=True)
        if (copy / (path.name + suffix)).exists():
            shutil.move(copy / (path.name + suffix), target)
    copy.rmdir()


@pytest.mark.parametrize("keep_shm", [True, False])
def test_readonly_mount_with_a_killed_writers_log(shop, readonly_mount, tmp_path, keep_shm):
    """With its -shm the log is read; without it SQLite cannot read the log there, and says what to do."""
    path, _ = shop
    _killed_writer_files(path, keep_shm)
    mount = tmp_path / "mnt"
    mount.mkdir()
    results = _drive(readonly_mount, path.parent, mount, mount / path.name, tmp_path,
                     [["user", "walonly", "--json"], ["import", "{events}"]])
    user, write = results
    for r in results:
        assert "Traceback" not in r["output"] and not r["error"], r
    if keep_shm:
        assert user["code"] == 0 and json.loads(user["output"])["n_events"] == 1, user  # the row only in the log
        assert write["code"] == 1 and "is read-only (the disk is mounted read-only)" in write["output"]
    else:
        assert user["code"] == 1 and write["code"] == 1
        text = " ".join(user["output"].split())
        assert f"its log {path.name}-wal holds changes that were never written into the file" in text, text
        assert "copy the workspace file together with its -wal file to a writable folder" in text


def test_a_workspace_that_cannot_be_written_is_opened_read_only(shop, tmp_path, monkeypatch):
    """A file or folder without write permission (chmod -w; forced here, as root can write anyway)."""
    path, _ = shop
    before, folders = table_rows(path), model_folders(path)
    monkeypatch.setattr(workspace_mod, "write_blocker", lambda p: "the file cannot be written")
    db = open_workspace(path)
    assert db.readonly and db.readonly_reason == "the file cannot be written"
    db.close()
    events = more_events(tmp_path / "more.csv", 50)
    suite = tmp_path / "suite2.csv"
    suite.write_text("query,item_id,grade\nmug,SKU001,1\n", encoding="utf-8")
    for args in READS + WRITES:
        args = [a.format(events=events, suite=suite) for a in args]
        res = CliRunner().invoke(cli, [*args, "-w", str(path)])
        assert "Traceback" not in res.output and "not a merch_app workspace" not in res.output, (args, res.output)
        if args[0] in ("import", "train", "rules", "forget") or args[:2] in (["suite", "import"], ["settings", "set"]):
            assert res.exit_code == 1, (args, res.output)
            assert (f"the workspace {path} is read-only (the file cannot be written): nothing was changed"
                    in " ".join(res.output.split())), (args, res.output)
        else:
            assert res.exit_code == 0, (args, res.output, res.exception)
        if args[:2] == ["suite", "run"]:
            assert ("the run was not kept in the suite's history: the workspace is read-only (the file cannot be "
                    "written)") in " ".join(res.output.split()), res.output
    monkeypatch.undo()
    assert table_rows(path) == before and model_folders(path) == folders


def test_write_blocker_names_the_file_or_the_folder(tmp_path, monkeypatch):
    path = tmp_path / "ws.merch.sqlite"
    path.write_bytes(b"")
    assert workspace_mod.write_blocker(path) is None
    monkeypatch.setattr(workspace_mod.os, "access", lambda p, mode: Path(p) != path)
    assert workspace_mod.write_blocker(path) == "the file cannot be written"
    monkeypatch.setattr(workspace_mod.os, "access", lambda p, mode: Path(p) != tmp_path)
    assert workspace_mod.write_blocker(path) == f"its folder {tmp_path} cannot be written"


# ----------------------------------------------------------------- full disk
def _full_disk(monkeypatch) -> None:
    """Every workspace the CLI opens has no free page left (SQLITE_FULL at the first page it needs)."""
    real = cli_common.open_workspace

    def full(path, **kwargs):
        db = real(path, **kwargs)
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
        return db

    monkeypatch.setattr(cli_common, "open_workspace", full)


@pytest.mark.parametrize("command", ["import", "train", "suite run"])
def test_a_full_disk_is_one_sentence_and_changes_nothing(shop, tmp_path, monkeypatch, command):
    path, _ = shop
    before, folders = table_rows(path), model_folders(path)
    _full_disk(monkeypatch)
    args = {"import": ["import", str(more_events(tmp_path / "more.csv", 20_000))],
            "train": ["train", "--encoder", "hashing", "--epochs", "1", "--activate", "always"],
            "suite run": ["suite", "run", "s1", "--snapshot", "snap", "--json"]}[command]
    res = CliRunner().invoke(cli, [*args, "-w", str(path)])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    text = " ".join(res.output.split())
    assert "the disk is full (database or disk is full): nothing was changed; free space and try again" in text, text
    monkeypatch.undo()
    assert table_rows(path) == before and model_folders(path) == folders


def _limited(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("command", ["import", "train"])
def test_file_size_limit_at_import_and_model_save_is_one_sentence(shop, tmp_path, command):
    """``ulimit -f``: a real process whose writes past the limit fail (EFBIG, SQLite "disk I/O error")."""
    path, _ = shop
    before, folders = table_rows(path), model_folders(path)
    # the workspace file may be rewritten up to its size; the log (import) or the arrays file (model) cannot grow
    limit = path.stat().st_size + 256 * 1024
    args = {"import": ["import", str(more_events(tmp_path / "more.csv", 30_000))],
            "train": ["train", "--encoder", "hashing", "--epochs", "1", "--dim", "1024", "--activate", "always"]}
    res = subprocess.run([sys.executable, "-m", "merch_app", *args[command], "-w", str(path)], capture_output=True,
                         text=True, timeout=300, env=cli_env(), cwd=ROOT, preexec_fn=_limited(limit))
    output = res.stdout + res.stderr
    assert res.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert "a file reached the size limit of this session" in output and "nothing was changed" in output, output
    assert f"ulimit -f allows {limit:,} bytes per file" in output
    assert table_rows(path) == before and model_folders(path) == folders
    assert CliRunner().invoke(cli, ["query", "red mug", "-w", str(path)]).exit_code == 0


def test_storage_problem_tells_a_full_disk_behind_a_plain_io_error(shop, monkeypatch):
    path, _ = shop
    db = open_workspace(path)
    io = sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(workspace_mod, "_file_size_limit", lambda: None)
    monkeypatch.setattr(workspace_mod, "_free_bytes", lambda _db: 8192)
    assert workspace_mod.storage_problem(io, db) == ("the disk is full (disk I/O error; 8,192 bytes free): nothing "
                                                     "was changed; free space and try again")
    monkeypatch.setattr(workspace_mod, "_free_bytes", lambda _db: 10**10)
    assert workspace_mod.storage_problem(io, db).startswith("the workspace could not be written (disk I/O error)")
    db.close()


# ------------------------------------------------------- leftovers of kills
SAVE_DRIVER = r'''
import os, sys, time
import merch_app.model.hybrid_files as hf
from merch_app.data.workspace import open_workspace
from merch_app.model.registry import load_model, save_version

path = sys.argv[1]
db = open_workspace(path)
db.execute("PRAGMA wal_autocheckpoint = 0")
with db.conn:  # a big committed transaction: its pages stay in the log until a checkpoint
    db.execute("CREATE TABLE scratch(b BLOB)")
    db.executemany("INSERT INTO scratch VALUES (?)", [(os.urandom(1 << 20),) for _ in range(24)])
with db.conn:
    db.execute("DROP TABLE scratch")

def hold(arrays, target):  # the save has started: its .tmp-* folder exists
    with open(target, "wb") as f:
        f.write(b"\x00" * 4096)
    sys.stderr.write("HOLD\n")
    sys.stderr.flush()
    time.sleep(120)

hf.write_arrays = hold
save_version(db, load_model(db), name="copy", activate_mode="always")
'''


def _run_until(argv: list[str], word: str, env: dict) -> None:
    """Start ``argv``, wait until its stderr says ``word``, then SIGKILL it."""
    kill_when_said(argv, word, env=env, cwd=ROOT)


def test_opening_for_writing_clears_the_log_and_the_folders_of_killed_writers(shop, tmp_path):
    path, _ = shop
    before = table_rows(path)
    folders = model_folders(path)
    user = "U01"  # in the model: the forget stops while scrubbing it
    _run_until([sys.executable, "-m", "merch_app", "forget", "--yes", "--no-retrain", "-w", str(path), user],
               "paused at forget.scrub", cli_env(MERCH_APP_TEST_PAUSE_AT="forget.scrub"))
    assert any(".scrub-" in n for n in set(model_folders(path)) - set(folders))
    driver = tmp_path / "save_driver.py"
    driver.write_text(SAVE_DRIVER, encoding="utf-8")
    _run_until([sys.executable, str(driver), str(path)], "HOLD", cli_env())  # its opening removed the .scrub-*
    wal = path.with_name(path.name + "-wal")
    left = set(model_folders(path)) - set(folders)
    assert wal.stat().st_size > LARGE_WAL_BYTES
    assert len(left) == 1 and ".tmp-" in left.pop()  # seconds old

    reader = sqlite3.connect(path)  # another program reading: the log is left alone, never waited for
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM items").fetchone()
    db = open_workspace(path)
    assert wal.stat().st_size > LARGE_WAL_BYTES
    db.close()
    reader.rollback()
    reader.close()

    db = open_workspace(path)
    assert wal.stat().st_size == 0
    assert model_folders(path) == folders
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    after = table_rows(path)
    assert after["models"] == before["models"] and after["items"] == before["items"]
    res = CliRunner().invoke(cli, ["forget", "--yes", "--no-retrain", "-w", str(path), user])  # finishes it
    assert res.exit_code == 0, res.output
    assert CliRunner().invoke(cli, ["query", "red mug", "-w", str(path)]).exit_code == 0


# --------------------------------------------------------- suite report files
@pytest.mark.parametrize("option", ["--html", "--csv"])
def test_suite_report_into_a_missing_folder_is_a_sentence_and_runs_nothing(shop, tmp_path, option):
    path, _ = shop
    before = table_rows(path)
    target = tmp_path / "no such folder" / "report.out"
    for command in (["suite", "run", "s1", "--snapshot", "snap"],
                    ["suite", "compare", "s1", "--system", "label=a", "--system", "label=b weights=lex=1,text=0"]):
        res = CliRunner().invoke(cli, [*command, option, str(target), "-w", str(path)])
        assert res.exit_code == 1 and "Traceback" not in res.output and res.exception.__class__ is SystemExit
        assert (f"the folder {target.parent} for the {option} file does not exist: nothing was run"
                in res.output), res.output
    assert not target.parent.exists() and table_rows(path) == before  # no snapshot saved either


def test_suite_report_that_cannot_be_written_names_the_file(shop, tmp_path, monkeypatch):
    from merch_app.cli import suite_cmds

    def full(rows, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(suite_cmds, "write_csv", full)
    path, _ = shop
    res = CliRunner().invoke(cli, ["suite", "run", "s1", "--csv", str(tmp_path / "r.csv"), "-w", str(path)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"cannot write the --csv file {tmp_path / 'r.csv'} (No space left on device)" in res.output
