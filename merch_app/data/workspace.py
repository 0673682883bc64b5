"""The workspace: one SQLite file (WAL) holding catalogue, behaviour and models.

Model files live in a folder beside the database (``<name>.models/``).  Every
thread opens its own connection with :func:`open_workspace`; connections are
never shared between threads.

Schema changes go through :data:`MIGRATIONS`: a list of functions, the n-th
bringing the schema from version n to n+1.  The version is stored in
``PRAGMA user_version`` and mirrored in the ``meta`` table.
"""
from __future__ import annotations

import errno
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable, Optional, Union

import sqlite_utils

EVENT_TYPES = ("search", "view", "click", "cart", "purchase", "return", "rating")


class WorkspaceError(Exception):
    """A workspace cannot be opened or used (message is user-facing)."""


def _migration_1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
    db["items"].create(
        {
            "item_id": str,
            "title": str,
            "description": str,
            "tags": str,
            "category": str,
            "price": float,
            "attrs": str,  # JSON object
            "import_id": int,
        },
        pk="item_id",
        if_not_exists=True,
    )
    db["imports"].create(
        {
            "id": int,
            "file_name": str,
            "sha256": str,
            "kind": str,
            "mapping": str,  # JSON {source column: field}
            "started": str,
            "finished": str,
            "rows_read": int,
            "rows_accepted": int,
            "rows_rejected": int,
            "status": str,  # running | ok | failed | cancelled | replaced
            "message": str,
        },
        pk="id",
        if_not_exists=True,
    )
    db["events"].create(
        {
            "id": int,
            "user_id": str,  # NULL = anonymous (counts for popularity only)
            "item_id": str,
            "event_type": str,
            "value": float,
            "ts": str,  # ISO-8601 UTC, 'YYYY-MM-DDTHH:MM:SSZ'
            "query": str,
            "session_id": str,
            "import_id": int,
        },
        pk="id",
        if_not_exists=True,
    )
    db["rejected_rows"].create(
        {"id": int, "import_id": int, "line_no": int, "raw": str, "reason": str},
        pk="id",
        if_not_exists=True,
    )
    db["mappings"].create(
        {"header_key": str, "kind": str, "mapping": str, "updated": str},
        pk="header_key",
        if_not_exists=True,
    )
    db["settings"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
    db["embeddings"].create(
        {"encoder_id": str, "text_hash": str, "dim": int, "vector": bytes},
        pk=("encoder_id", "text_hash"),
        if_not_exists=True,
    )
    db["models"].create(
        {
            "model_id": str,
            "name": str,
            "created": str,
            "config": str,  # JSON
            "metrics": str,  # JSON: {"model": {...}, "baselines": {...}}
            "data_snapshot": str,  # JSON: event count, date range, ...
            "encoder_id": str,
            "path": str,  # folder relative to the models dir
            "train_seconds": float,
            "engine": str,  # local | ray
            "active": int,
        },
        pk="model_id",
        if_not_exists=True,
    )
    db.executescript(
        """
        CREATE INDEX IF NOT EXISTS idx_events_user ON events(user_id, ts);
        CREATE INDEX IF NOT EXISTS idx_events_item ON events(item_id, ts);
        CREATE INDEX IF NOT EXISTS idx_events_ts ON events(ts);
        CREATE INDEX IF NOT EXISTS idx_events_import ON events(import_id);
        CREATE INDEX IF NOT EXISTS idx_rejected_import ON rejected_rows(import_id);
        CREATE INDEX IF NOT EXISTS idx_imports_sha ON imports(sha256);
        CREATE INDEX IF NOT EXISTS idx_items_category ON items(category);
        CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(
            item_id, title, description, tags, category,
            content='items', content_rowid='rowid',
            tokenize='unicode61 remove_diacritics 2', prefix='2 3'
        );
        """
    )


def _migration_evaluation_rules(db: sqlite_utils.Database) -> None:
    """Judged query suites (queries + graded judgments), result snapshots, merchandising rules."""
    db["suites"].create(
        {"suite_id": int, "name": str, "description": str, "source": str, "created": str,
         "updated": str},
        pk="suite_id",
        if_not_exists=True,
    )
    db["suite_queries"].create(  # queries in suite order, also those not rated yet
        {"suite_id": int, "query": str, "position": int},
        pk=("suite_id", "query"),
        foreign_keys=[("suite_id", "suites", "suite_id")],
        if_not_exists=True,
    )
    db["judgments"].create(
        {"suite_id": int, "query": str, "item_id": str, "grade": int, "updated": str},
        pk=("suite_id", "query", "item_id"),
        foreign_keys=[("suite_id", "suites", "suite_id")],
        if_not_exists=True,
    )
    db["snapshots"].create(
        {"snapshot_id": int, "suite_id": int, "name": str, "created": str, "k": int,
         "config": str,  # JSON: model id, weights, filters, rules
         "results": str},  # JSON: {query: {"items": [...], "metrics": {...}}}
        pk="snapshot_id",
        if_not_exists=True,
    )
    db["rules"].create(
        {"rule_id": int, "name": str, "kind": str, "pattern": str,
         "params": str,  # JSON, depends on kind
         "enabled": int, "priority": int, "created": str, "updated": str},
        pk="rule_id",
        if_not_exists=True,
    )
    db.executescript(
        """
        CREATE UNIQUE INDEX IF NOT EXISTS idx_suites_name ON suites(name);
        CREATE INDEX IF NOT EXISTS idx_snapshots_suite ON snapshots(suite_id);
        """
    )


def _migration_term_tops(db: sqlite_utils.Database) -> None:
    """Top lists of very common search terms (see :mod:`merch_app.data.term_tops`)."""
    db.execute("CREATE TABLE IF NOT EXISTS fts_tops (term TEXT NOT NULL, prefix INTEGER NOT NULL, "
               "df INTEGER NOT NULL, rowids BLOB NOT NULL, scores BLOB NOT NULL, PRIMARY KEY (term, prefix))")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migration_1, _migration_evaluation_rules, _migration_term_tops]
SCHEMA_VERSION = len(MIGRATIONS)


def register_migration(fn: Callable[[sqlite_utils.Database], None]) -> None:
    """Append a migration (used by feature modules that add tables later)."""
    MIGRATIONS.append(fn)


def schema_version(db: sqlite_utils.Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite_utils.Database) -> int:
    """Bring ``db`` to the newest schema; returns the resulting version.

    Raises
    ------
    WorkspaceError
        If the file was written by a newer merch_app (unknown schema version).
    """
    current = schema_version(db)
    target = len(MIGRATIONS)
    if current > target:
        raise WorkspaceError(
            f"workspace schema version {current} is newer than this merch_app supports "
            f"({target}); update merch_app to open it"
        )
    for version in range(current, target):
        with db.conn:
            MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version = {version + 1}")
            db["meta"].upsert({"key": "schema_version", "value": str(version + 1)}, pk="key")
    return target


def open_workspace(
    path: Union[str, Path], *, create: bool = True, readonly: bool = False
) -> sqlite_utils.Database:
    """Open (and create/migrate) the workspace at ``path``.

    Parameters
    ----------
    path
        SQLite file; ``":memory:"`` gives a throw-away workspace (tests).
    create
        Create the file if missing; otherwise a missing file is an error.
    readonly
        Open read-only (no migration; used for read-only media).

    Returns
    -------
    sqlite_utils.Database
        A database with WAL journaling whose connection belongs to the
        calling thread.
    """
    path = str(path)
    if path != ":memory:":
        p = Path(path)
        if not p.exists() and (not create or readonly):
            raise WorkspaceError(f"{p}: workspace does not exist")
        if p.exists() and p.is_dir():
            raise WorkspaceError(f"{p}: is a folder, not a workspace file")
    try:
        if path != ":memory:" and not readonly:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
        db = sqlite_utils.Database(conn)
        if not readonly:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        if readonly:
            if schema_version(db) > len(MIGRATIONS):
                raise WorkspaceError(f"{path}: workspace schema is newer than this merch_app")
        else:
            migrate(db)
    except sqlite3.DatabaseError as exc:
        problem = storage_problem(exc)
        if problem:
            raise WorkspaceError(f"{path}: {problem}") from exc
        raise WorkspaceError(f"{path}: not a merch_app workspace ({exc})") from exc
    except OSError as exc:  # e.g. the folder cannot be created
        raise WorkspaceError(f"{path}: cannot open the workspace ({exc})") from exc
    return db


def storage_problem(exc: BaseException) -> Optional[str]:
    """A user-facing sentence for SQLite/OS errors caused by the storage, else None.

    Read-only files or media, a full disk (or ``max_page_count`` reached), a
    damaged file, a database locked by another program.
    """
    text = str(exc).lower()
    errno_ = getattr(exc, "errno", None)
    if "readonly" in text or "read-only" in text or errno_ == errno.EROFS:
        return ("the workspace is read-only (file, folder or disk); nothing was changed. Open it read-only "
                "to look at it, or copy it to a writable folder")
    if "disk is full" in text or "database or disk is full" in text or errno_ in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full; nothing was changed. Free some space and try again"
    if "malformed" in text:
        return ("the workspace file is damaged (database disk image is malformed); restore a backup, "
                "or rescue its data with `sqlite3 FILE .recover` into a new file")
    if "locked" in text or "busy" in text:
        return "the workspace is locked by another program or window; try again when it has finished"
    return None


def workspace_path(db: sqlite_utils.Database) -> Optional[Path]:
    """File path of an open workspace, or None for an in-memory one."""
    row = db.execute("PRAGMA database_list").fetchone()
    return Path(row[2]) if row and row[2] else None


def models_dir(db: sqlite_utils.Database) -> Path:
    """Folder beside the workspace file where model versions are stored."""
    p = workspace_path(db)
    if p is None:
        raise WorkspaceError("in-memory workspace has no models folder")
    d = p.with_name(p.name + ".models")
    d.mkdir(parents=True, exist_ok=True)
    return d


def get_setting(db: sqlite_utils.Database, key: str, default: Any = None) -> Any:
    row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return json.loads(row[0]) if row else default


def set_setting(db: sqlite_utils.Database, key: str, value: Any) -> None:
    with db.conn:
        db["settings"].upsert({"key": key, "value": json.dumps(value)}, pk="key")


def rebuild_fts(db: sqlite_utils.Database) -> None:
    """Re-index ``items`` in the FTS5 table (call inside the import transaction)."""
    db.execute("INSERT INTO items_fts(items_fts) VALUES ('rebuild')")


def counts(db: sqlite_utils.Database) -> dict[str, Any]:
    """Headline counts for summaries: items, users, events, date range."""
    items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    events, users, first, last = db.execute(
        "SELECT count(*), count(DISTINCT user_id), min(ts), max(ts) FROM events"
    ).fetchone()
    return {"items": items, "events": events, "users": users, "first_ts": first, "last_ts": last}
