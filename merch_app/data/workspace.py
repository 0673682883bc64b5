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
import os
import shutil
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from merch_app.data import text_tokens
from merch_app.data.rule_patterns import legacy_pattern
from merch_app.errors import MerchAppError
from merch_app.safety import sql_identifier

if os.name == "posix":
    import resource  # the file-size limit (ulimit -f) named in storage_problem
else:  # Windows has no resource module
    resource = None


EVENT_TYPES = ("search", "impression", "view", "click", "cart", "purchase", "return", "rating")


class WorkspaceError(MerchAppError):
    """A workspace cannot be opened or used (message is user-facing)."""


class Workspace:
    """An open workspace: one SQLite connection (of the thread that opened it) and its file.

    The one type every layer passes around as ``db``.  ``execute`` and
    ``executemany`` are the connection's; writes go inside ``with db.conn:``
    (one transaction, committed at the end or rolled back on an error), and
    nothing here commits on its own, so a multi-statement write is atomic.

    Parameters
    ----------
    conn
        The SQLite connection.
    path
        The workspace file, or None for an in-memory workspace.
    readonly
        Opened read-only; ``readonly_reason`` says why (a read-only disk, file or folder).
    """

    def __init__(self, conn: sqlite3.Connection, path: Optional[Path] = None, readonly: bool = False) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly
        self.readonly_reason = "it was opened read-only" if readonly else ""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement (see :meth:`sqlite3.Connection.execute`)."""
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        """Run one statement for every row of parameters."""
        return self.conn.executemany(sql, rows)

    def executescript(self, script: str) -> sqlite3.Cursor:
        """Run several statements (schema scripts)."""
        return self.conn.executescript(script)

    def insert_rows(self, table: str, rows: Iterable[dict[str, Any]], *, replace: bool = False) -> int:
        """Insert dict rows into ``table`` (the columns any row names; missing ones are NULL); returns how many.

        ``table`` and the column names are checked to be plain identifiers
        (:func:`merch_app.safety.sql_identifier`).
        Call it inside ``with db.conn:`` to make it part of a larger transaction.
        """
        rows = list(rows)
        if not rows:
            return 0
        columns = list(dict.fromkeys(c for row in rows for c in row))
        quoted_table, quoted = sql_identifier(table), [sql_identifier(c) for c in columns]
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        cols = columns
        sql = f"{verb} INTO {quoted_table} ({', '.join(quoted)}) VALUES ({', '.join('?' * len(cols))})"
        self.conn.executemany(sql, ([row.get(c) for c in columns] for row in rows))
        return len(rows)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.path) if self.path else ':memory:'}{', read-only' if self.readonly else ''})"


def _migration_1(db: Workspace) -> None:
    """Catalogue, imports, events, rejected rows, mappings, settings, embeddings, models, search index."""
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS "meta" ("key" TEXT PRIMARY KEY, "value" TEXT);
        CREATE TABLE IF NOT EXISTS "items" (
            "item_id" TEXT PRIMARY KEY, "title" TEXT, "description" TEXT, "tags" TEXT, "category" TEXT,
            "price" REAL,
            "attrs" TEXT,  -- JSON object
            "import_id" INTEGER);
        CREATE TABLE IF NOT EXISTS "imports" (
            "id" INTEGER PRIMARY KEY, "file_name" TEXT, "sha256" TEXT, "kind" TEXT,
            "mapping" TEXT,  -- JSON {source column: field}
            "started" TEXT, "finished" TEXT, "rows_read" INTEGER, "rows_accepted" INTEGER,
            "rows_rejected" INTEGER,
            "status" TEXT,  -- running | ok | failed | cancelled | replaced
            "message" TEXT);
        CREATE TABLE IF NOT EXISTS "events" (
            "id" INTEGER PRIMARY KEY,
            "user_id" TEXT,  -- NULL = anonymous (counts for popularity only)
            "item_id" TEXT, "event_type" TEXT, "value" REAL,
            "ts" TEXT,  -- ISO-8601 UTC, 'YYYY-MM-DDTHH:MM:SSZ'
            "query" TEXT, "session_id" TEXT, "import_id" INTEGER);
        CREATE TABLE IF NOT EXISTS "rejected_rows" (
            "id" INTEGER PRIMARY KEY, "import_id" INTEGER, "line_no" INTEGER, "raw" TEXT, "reason" TEXT);
        CREATE TABLE IF NOT EXISTS "mappings" (
            "header_key" TEXT PRIMARY KEY, "kind" TEXT, "mapping" TEXT, "updated" TEXT);
        CREATE TABLE IF NOT EXISTS "settings" ("key" TEXT PRIMARY KEY, "value" TEXT);
        CREATE TABLE IF NOT EXISTS "embeddings" (
            "encoder_id" TEXT, "text_hash" TEXT, "dim" INTEGER, "vector" BLOB,
            PRIMARY KEY ("encoder_id", "text_hash"));
        CREATE TABLE IF NOT EXISTS "models" (
            "model_id" TEXT PRIMARY KEY, "name" TEXT, "created" TEXT,
            "config" TEXT,  -- JSON
            "metrics" TEXT,  -- JSON: {"model": {...}, "baselines": {...}}
            "data_snapshot" TEXT,  -- JSON: event count, date range, ...
            "encoder_id" TEXT,
            "path" TEXT,  -- folder relative to the models dir
            "train_seconds" REAL,
            "engine" TEXT,  -- local | ray
            "active" INTEGER);
        """
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


def _migration_evaluation_rules(db: Workspace) -> None:
    """Judged query suites (queries + graded judgments), result snapshots, merchandising rules."""
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS "suites" (
            "suite_id" INTEGER PRIMARY KEY, "name" TEXT, "description" TEXT, "source" TEXT, "created" TEXT,
            "updated" TEXT);
        CREATE TABLE IF NOT EXISTS "suite_queries" (  -- queries in suite order, also those not rated yet
            "suite_id" INTEGER REFERENCES "suites"("suite_id"), "query" TEXT, "position" INTEGER,
            PRIMARY KEY ("suite_id", "query"));
        CREATE TABLE IF NOT EXISTS "judgments" (
            "suite_id" INTEGER REFERENCES "suites"("suite_id"), "query" TEXT, "item_id" TEXT, "grade" INTEGER,
            "updated" TEXT,
            PRIMARY KEY ("suite_id", "query", "item_id"));
        CREATE TABLE IF NOT EXISTS "snapshots" (
            "snapshot_id" INTEGER PRIMARY KEY, "suite_id" INTEGER, "name" TEXT, "created" TEXT, "k" INTEGER,
            "config" TEXT,  -- JSON: model id, weights, filters, rules
            "results" TEXT);  -- JSON: {query: {"items": [...], "metrics": {...}}}
        CREATE TABLE IF NOT EXISTS "rules" (
            "rule_id" INTEGER PRIMARY KEY, "name" TEXT, "kind" TEXT, "pattern" TEXT,
            "params" TEXT,  -- JSON, depends on kind
            "enabled" INTEGER, "priority" INTEGER, "created" TEXT, "updated" TEXT);
        """
    )
    db.executescript(
        """
        CREATE UNIQUE INDEX IF NOT EXISTS idx_suites_name ON suites(name);
        CREATE INDEX IF NOT EXISTS idx_snapshots_suite ON snapshots(suite_id);
        """
    )


def _migration_term_tops(db: Workspace) -> None:
    """Top lists of very common search terms (see :mod:`merch_app.data.term_tops`)."""
    db.execute("CREATE TABLE IF NOT EXISTS fts_tops (term TEXT NOT NULL, prefix INTEGER NOT NULL, "
               "df INTEGER NOT NULL, rowids BLOB NOT NULL, scores BLOB NOT NULL, PRIMARY KEY (term, prefix))")


_SEARCH_VIEW = """
    CREATE VIEW IF NOT EXISTS items_search AS
    SELECT i.rowid AS item_rowid, i.item_id AS item_id,
           CASE WHEN t.rowid IS NULL THEN i.title ELSE t.title END AS title,
           CASE WHEN t.rowid IS NULL THEN i.description ELSE t.description END AS description,
           CASE WHEN t.rowid IS NULL THEN i.tags ELSE t.tags END AS tags,
           CASE WHEN t.rowid IS NULL THEN i.category ELSE t.category END AS category,
           t.pinyin AS pinyin
    FROM items i LEFT JOIN items_tokens t ON t.rowid = i.rowid"""


def _migration_search_tokens(db: Workspace) -> None:
    """Search index over segmented text: Han words and characters, and a pinyin column.

    ``items_tokens`` holds the segmented text of the items that have Han text
    (:mod:`merch_app.data.text_tokens`); the view ``items_search`` gives every
    item's searchable text (segmented where there is some, else the item's own)
    and is the content of the rebuilt ``items_fts``.
    """
    db.execute("CREATE TABLE IF NOT EXISTS items_tokens (rowid INTEGER PRIMARY KEY, title TEXT, "
               "description TEXT, tags TEXT, category TEXT, pinyin TEXT)")
    db.execute(_SEARCH_VIEW)
    db.executescript(
        """
        DROP TABLE IF EXISTS items_fts;
        CREATE VIRTUAL TABLE items_fts USING fts5(
            item_id, title, description, tags, category, pinyin,
            content='items_search', content_rowid='item_rowid',
            tokenize='unicode61 remove_diacritics 2', prefix='2 3'
        );
        DELETE FROM fts_tops;
        DELETE FROM meta WHERE key = 'fts_tops_fingerprint';
        """
    )
    rebuild_fts(db)


def _migration_encoder_versions(db: Workspace) -> None:
    """Fine-tuned text encoders (``<workspace>.encoders/<version_id>/``), see :mod:`merch_app.model.encoder_versions`."""
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS "encoder_versions" (
            "version_id" TEXT PRIMARY KEY, "name" TEXT, "created" TEXT,
            "encoder_id" TEXT,  -- BertEncoder.encoder_id of the folder (fp32); the embedding cache key
            "parent_encoder_id" TEXT, "parent_spec" TEXT,  -- the encoder it was fine-tuned from
            "path" TEXT,  -- folder name inside the encoders dir
            "config" TEXT,  -- JSON: fine-tuning settings
            "metrics" TEXT,  -- JSON: before/after retrieval metrics, training history
            "data_snapshot" TEXT,  -- JSON: event count, last event time, split
            "n_pairs" INTEGER, "train_seconds" REAL,
            "active" INTEGER);  -- 1 = the encoder the workspace ranks and trains with
        """
    )


def _migration_spell_words(db: Workspace) -> None:
    """Index words for spelling correction, stored with the top lists (see merch_app.data.term_tops)."""
    db.execute("CREATE TABLE IF NOT EXISTS spell_words (term TEXT PRIMARY KEY, doc INTEGER NOT NULL)")
    db.execute("DELETE FROM meta WHERE key = 'fts_tops_fingerprint'")  # rebuilt with the words on next import


def _migration_raw_judgments(db: Workspace) -> None:
    """The rows of an imported judgment file as read, so repeated pairs can be merged again by another policy.

    ``judgments`` holds one merged grade per (query, item); ``raw_judgments`` every row of the file
    (see :mod:`merch_app.evaluation.judgment_merge`); ``suites.merge_policy`` the policy used.
    """
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS "raw_judgments" (
            "suite_id" INTEGER REFERENCES "suites"("suite_id"), "line_no" INTEGER, "query" TEXT,
            "item_id" TEXT, "grade" INTEGER,
            PRIMARY KEY ("suite_id", "line_no"));
        ALTER TABLE "suites" ADD COLUMN "merge_policy" TEXT;
        """
    )


def _migration_rule_lifecycle(db: Workspace) -> None:
    """Rule lifecycle: status, explicit match type, validity window, owner, comment, tags; the rules' activity log.

    Existing rules keep what they did: an enabled rule becomes ``live``, a disabled one a
    ``draft``, neither has a window, and the match type is read from the old pattern prefixes
    (:func:`merch_app.data.rule_patterns.legacy_pattern`, which matches the same queries).
    New columns: ``status`` (draft | live | expired, the last set by hand), ``match`` (exact |
    phrase | all | regex), ``start_date`` / ``end_date`` ('YYYY-MM-DD' UTC, inclusive; NULL =
    open), ``owner``, ``comment``, ``tags`` (JSON list).  ``rule_log`` keeps one row per change:
    who, when, what (``action`` created | changed | status | deleted; ``changes`` =
    ``{field: [old, new]}``).
    """
    if not db.conn.in_transaction:  # sqlite3 opens none before DDL: the columns and the conversion are one
        db.execute("BEGIN")
    for column in ("status", "match", "start_date", "end_date", "owner", "comment", "tags"):
        db.execute(f'ALTER TABLE "rules" ADD COLUMN "{column}" TEXT')
    db.execute('CREATE TABLE IF NOT EXISTS "rule_log" ("log_id" INTEGER PRIMARY KEY, "rule_id" INTEGER, "ts" TEXT, '
               '"actor" TEXT, "action" TEXT, "changes" TEXT)')
    db.execute("CREATE INDEX IF NOT EXISTS idx_rule_log_rule ON rule_log(rule_id, log_id)")
    rows = db.execute("SELECT rule_id, pattern, enabled FROM rules").fetchall()
    for rule_id, pattern, enabled in rows:
        match, text = legacy_pattern(pattern or "*")
        db.execute("UPDATE rules SET status = ?, match = ?, pattern = ? WHERE rule_id = ?",
                   ["live" if enabled else "draft", match, text, rule_id])


def _migration_forget_list(db: Workspace) -> None:
    """The forget list (see :mod:`merch_app.data.forget_list`): users to forget, as keyed digests, and their steps."""
    db.execute('CREATE TABLE IF NOT EXISTS "forget_list" ('
               '"entry_id" INTEGER PRIMARY KEY, "requested" TEXT, '
               '"steps" TEXT, '  # JSON {step: {"done": ts, counts}}
               '"finished" TEXT, "revision" INTEGER NOT NULL DEFAULT 0)')
    db.execute('CREATE TABLE IF NOT EXISTS "forget_ids" ('
               '"id_hash" TEXT PRIMARY KEY, '  # HMAC-SHA256 of one form of the id, never the id
               '"entry_id" INTEGER NOT NULL REFERENCES "forget_list"("entry_id"))')


def _migration_event_position(db: Workspace) -> None:
    """``events.position``: the 1-based rank at which the item was shown (NULL when unknown; click models)."""
    if "position" not in {row[1] for row in db.execute('PRAGMA table_info("events")')}:
        db.execute('ALTER TABLE "events" ADD COLUMN "position" INTEGER')


def _migration_raters(db: Workspace) -> None:
    """Grades per rater (judging as a team, see :mod:`merch_app.evaluation.raters`).

    ``rater_judgments`` holds one grade per (suite, query, item, rater); the suite's ``judgments``
    row of a pair is its raters' grades merged by the suite's merge policy, rewritten whenever a
    rater grades it.
    """
    db.execute('CREATE TABLE IF NOT EXISTS "rater_judgments" ('
               '"suite_id" INTEGER REFERENCES "suites"("suite_id"), "query" TEXT, "item_id" TEXT, "rater" TEXT, '
               '"grade" INTEGER, "updated" TEXT, '
               'PRIMARY KEY ("suite_id", "query", "item_id", "rater"))')


def _migration_job_marks(db: Workspace) -> None:
    """Long jobs running on the workspace, one row per job and process (see :mod:`merch_app.data.job_marks`)."""
    db.execute('CREATE TABLE IF NOT EXISTS "job_marks" ("mark_id" INTEGER PRIMARY KEY, "kind" TEXT, "label" TEXT, '
               '"pid" INTEGER, "host" TEXT, "started" TEXT)')


def _migration_export_log(db: Workspace) -> None:
    """Files the app exported that may hold shoppers' ids (see :mod:`merch_app.data.export_log`)."""
    db.execute('CREATE TABLE IF NOT EXISTS "export_log" ("export_id" INTEGER PRIMARY KEY, "path" TEXT, "kind" TEXT, '
               '"created" TEXT, "sha256" TEXT)')


MIGRATIONS: list[Callable[[Workspace], None]] = [
    _migration_1, _migration_evaluation_rules, _migration_term_tops, _migration_search_tokens,
    _migration_encoder_versions, _migration_spell_words, _migration_raw_judgments,
    _migration_forget_list, _migration_rule_lifecycle, _migration_event_position, _migration_raters,
    _migration_job_marks, _migration_export_log]
SCHEMA_VERSION = len(MIGRATIONS)


def register_migration(fn: Callable[[Workspace], None]) -> None:
    """Append a migration (used by feature modules that add tables later)."""
    MIGRATIONS.append(fn)


def schema_version(db: Workspace) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: Workspace) -> int:
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
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", [str(version + 1)])
    return target


def open_workspace(
    path: Union[str, Path], *, create: bool = True, readonly: bool = False
) -> Workspace:
    """Open (and create/migrate) the workspace at ``path``.

    A workspace that cannot be written (the file, its folder or the disk is
    read-only, :func:`write_blocker`) is opened read-only: reading works, and a
    write fails with the read-only sentence of :func:`storage_problem` (call
    :func:`require_writable` before a long job).  In WAL mode SQLite reads a
    file through its ``-shm`` index, which it must be able to create or find:
    in a folder that cannot be written and without one, the file is opened
    ``immutable=1`` when it has no unsaved log (``-wal`` missing or empty),
    and refused with a sentence when it has one (immutable would not read it).
    Opening for writing also empties a large leftover log and removes model
    folders of killed saves (:func:`sweep_leftovers`).

    Parameters
    ----------
    path
        SQLite file; ``":memory:"`` gives a throw-away workspace (tests).
    create
        Create the file if missing; otherwise a missing file is an error.
    readonly
        Open read-only even when the workspace could be written (no migration).

    Returns
    -------
    Workspace
        The open workspace (WAL journaling); its connection belongs to the
        calling thread.  ``readonly`` tells whether it was opened read-only and
        ``readonly_reason`` why.
    """
    path = str(path)
    reason = "it was opened read-only" if readonly else None
    if path != ":memory:":
        p = Path(path)
        if not p.exists() and (not create or readonly):
            raise WorkspaceError(f"{p}: workspace does not exist")
        if p.exists() and p.is_dir():
            raise WorkspaceError(f"{p}: is a folder, not a workspace file")
        if p.exists() and not os.access(p, os.R_OK):
            raise WorkspaceError(f"{p}: the workspace file cannot be read (no read permission): nothing was changed")
        if reason is None and p.exists():
            reason = write_blocker(p)
    try:
        if path != ":memory:" and reason is None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if reason is None:
            db = _open_writable(path)
            if db.readonly:
                reason = db.readonly_reason
        if reason is not None:
            db = _open_readonly(Path(path), reason)
    except sqlite3.DatabaseError as exc:
        problem = storage_problem(exc)
        if problem:
            raise WorkspaceError(f"{path}: {problem}") from exc
        raise WorkspaceError(f"{path}: not a merch_app workspace ({exc})") from exc
    except OSError as exc:  # e.g. the folder cannot be created
        raise WorkspaceError(f"{path}: cannot open the workspace ({exc})") from exc
    if not db.readonly and db.path is not None:
        sweep_leftovers(db)
    return db


def write_blocker(path: Path) -> Optional[str]:
    """Why the workspace file ``path`` cannot be written, or None when it can.

    A disk mounted read-only, a file without write permission, or a folder
    without it (SQLite creates the ``-wal`` and ``-shm`` files there).  As
    root, permissions do not stop writes, so only a read-only disk counts.
    """
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "the disk is mounted read-only"
    except OSError:
        pass
    if not os.access(path, os.W_OK):
        return "the file cannot be written"
    sidecars = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
    if not os.access(folder, os.W_OK) and not all(f.exists() and os.access(f, os.W_OK) for f in sidecars):
        return f"its folder {folder} cannot be written"
    return None


def _open_writable(path: str) -> Workspace:
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    db = Workspace(conn, None if path == ":memory:" else Path(path))
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db)
    except sqlite3.OperationalError as exc:
        conn.close()
        if db.path is None or not db.path.exists() or "readonly" not in str(exc):
            raise
        # e.g. an immutable file (chattr +i) or a mount that tells only when written to
        db = Workspace(conn, db.path, readonly=True)
        db.readonly_reason = f"SQLite: {exc}"
    return db


def _open_readonly(path: Path, reason: str) -> Workspace:
    """``path`` through a read-only connection (see :func:`open_workspace` for the WAL index)."""
    uri = "file:" + urllib.parse.quote(str(path.absolute()))
    wal = path.with_name(path.name + "-wal")
    try:
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.OperationalError as exc:
        if wal.exists() and wal.stat().st_size > 0:
            raise WorkspaceError(
                f"{path}: the workspace is read-only ({reason}) and its log {wal.name} holds changes that were "
                "never written into the file (a program writing it was stopped); SQLite can read them only "
                "from a writable folder: copy the workspace file together with its -wal file to a writable "
                "folder and open the copy") from exc
        # no -shm can be made and no log to read: the file is all there is
        conn = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, check_same_thread=False)
    db = Workspace(conn, path, readonly=True)
    db.readonly_reason = reason
    db.execute("PRAGMA foreign_keys=ON")
    version = schema_version(db)
    if version > len(MIGRATIONS):
        conn.close()
        raise WorkspaceError(f"{path}: workspace schema version {version} is newer than this merch_app "
                             f"supports ({len(MIGRATIONS)}); update merch_app to open it")
    if version < len(MIGRATIONS):
        conn.close()
        raise WorkspaceError(f"{path}: the workspace is read-only ({reason}) and was written by an older "
                             f"merch_app (schema {version} of {len(MIGRATIONS)}), so it cannot be upgraded: "
                             "copy it to a writable folder and open the copy")
    return db


def require_writable(db: Workspace) -> None:
    """Raise the read-only sentence when ``db`` was opened read-only (call before a job that writes).

    Raises
    ------
    WorkspaceError
        "the workspace PATH is read-only (WHY): nothing was changed; …".
    """
    if db.readonly:
        raise WorkspaceError(read_only_sentence(db))


def read_only_sentence(db: Optional[Workspace] = None, detail: str = "") -> str:
    """The sentence for a write refused because the workspace is read-only (named when ``db`` is given)."""
    name = f" {db.path}" if db is not None and db.path is not None else ""
    why = (db.readonly_reason if db is not None and db.readonly else "") or detail or "file, folder or disk"
    return (f"the workspace{name} is read-only ({why}): nothing was changed; open it to look at it, or copy it "
            "to a writable folder to change it")


class NoItemsError(MerchAppError, LookupError):
    """The workspace has no catalogue yet (message is user-facing)."""


NO_ITEMS = "The workspace has no items yet: import a catalogue or transactions first (Data screen or merch-app import)."


def require_items(db) -> None:
    """Raise :class:`NoItemsError` when the workspace has no items."""
    if db.execute("SELECT 1 FROM items LIMIT 1").fetchone() is None:
        raise NoItemsError(NO_ITEMS)


def storage_problem(exc: BaseException, db: Optional[Workspace] = None) -> Optional[str]:
    """A user-facing sentence for SQLite/OS errors caused by the storage, else None.

    Read-only files or media, a full disk (or ``max_page_count`` reached), the
    file-size limit of the session (``ulimit -f``: ``EFBIG``, or a SQLite
    "disk I/O error" while a limit is set), another disk I/O error, a damaged
    file, a database locked by another program.

    Parameters
    ----------
    exc
        The error.
    db
        The workspace it happened in, if known: named in the read-only
        sentence (with why it is read-only), and its folder's free space tells
        a full disk behind a plain "disk I/O error".
    """
    text = str(exc).lower()
    errno_ = getattr(exc, "errno", None)
    detail = getattr(exc, "strerror", None) or str(exc)
    if "readonly" in text or "read-only" in text or errno_ == errno.EROFS:
        return read_only_sentence(db, detail)
    if "disk is full" in text or "database or disk is full" in text or errno_ in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full ({detail}): nothing was changed; free space and try again"
    io_error = "disk i/o error" in text
    if errno_ == errno.EFBIG or (io_error and _file_size_limit() is not None):
        limit = _file_size_limit()
        allowed = f"; ulimit -f allows {limit:,} bytes per file" if limit is not None else ""
        return (f"a file reached the size limit of this session ({detail}{allowed}): nothing was changed; "
                "raise the limit (ulimit -f) or free space and try again")
    if io_error:
        free = _free_bytes(db)
        if free is not None and free < 4 * 1024 * 1024:
            return f"the disk is full ({detail}; {free:,} bytes free): nothing was changed; free space and try again"
        return f"the workspace could not be written ({detail}): nothing was changed; check the disk and try again"
    if "malformed" in text:
        return ("the workspace file is damaged (database disk image is malformed); restore a backup, "
                "or rescue its data with `sqlite3 FILE .recover` into a new file")
    if "locked" in text or "busy" in text:
        return "the workspace is locked by another program or window; try again when it has finished"
    return None


def _file_size_limit() -> Optional[int]:
    """The session's file-size limit in bytes (``ulimit -f``), or None when there is none."""
    if resource is None:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _free_bytes(db: Optional[Workspace]) -> Optional[int]:
    if db is None or db.path is None:
        return None
    try:
        return shutil.disk_usage(db.path.parent).free
    except OSError:
        return None


def workspace_path(db: Workspace) -> Optional[Path]:
    """File path of an open workspace, or None for an in-memory one."""
    row = db.execute("PRAGMA database_list").fetchone()
    return Path(row[2]) if row and row[2] else None


def models_dir(db: Workspace) -> Path:
    """Folder beside the workspace file where model versions are stored."""
    p = workspace_path(db)
    if p is None:
        raise WorkspaceError("in-memory workspace has no models folder")
    d = p.with_name(p.name + ".models")
    if not db.readonly:
        d.mkdir(parents=True, exist_ok=True)
    return d


LARGE_WAL_BYTES = 16 * 1024 * 1024  # a log this big was left by a big transaction or a killed writer
LEFTOVER_MARKS = (".tmp-", ".scrub-")  # a model save / a forget's scrub that was stopped


def sweep_leftovers(db: Workspace) -> dict[str, Any]:
    """Clear what killed writers left, when nobody else is using the workspace (never waits).

    * a write-ahead log over :data:`LARGE_WAL_BYTES` is emptied into the file
      (``wal_checkpoint(TRUNCATE)``; skipped while another connection reads or
      writes);
    * model folders of stopped saves and scrubs (:func:`remove_leftover_folders`),
      under the write lock: every writer of such a folder holds that lock
      while the folder exists, so when this connection gets it, their writers
      are gone.

    Returns
    -------
    dict
        ``{"wal_bytes": size of the log emptied (0: none), "folders": names removed}``.
    """
    done: dict[str, Any] = {"wal_bytes": 0, "folders": []}
    if db.path is None or db.readonly:
        return done
    conn = db.conn
    timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        wal = db.path.with_name(db.path.name + "-wal")
        size = wal.stat().st_size if wal.exists() else 0
        if size > LARGE_WAL_BYTES and not conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            done["wal_bytes"] = size
        if _leftover_candidates(db) and not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
            try:
                done["folders"] = remove_leftover_folders(db)
            finally:
                conn.execute("COMMIT")
    except sqlite3.OperationalError:  # busy or locked: another program is using it, so nothing is left over
        pass
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
    return done


WRITE_WAIT_S = 3600.0  # a finished job waits this long for another program's write (a long import) to end


def begin_write(db: Workspace, *, patience_s: float = WRITE_WAIT_S, cancel=None,
                waiting: Optional[Callable[[float], None]] = None) -> None:
    """Take the write lock (``BEGIN IMMEDIATE``), waiting for another writer as long as ``patience_s``.

    A training or fine-tuning that took minutes must not be lost because an import in another
    window holds the lock longer than the connection's busy timeout: it waits, says so through
    ``waiting(seconds_waited)`` about once a second, and stops only when ``cancel.check()`` raises.

    Raises
    ------
    sqlite3.OperationalError
        Still locked after ``patience_s`` seconds.
    """
    conn = db.conn
    timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute("PRAGMA busy_timeout = 1000")  # one second per try: cancel and the waiting note in between
    start = time.monotonic()
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                waited = time.monotonic() - start
                if ("locked" not in text and "busy" not in text) or waited >= patience_s:
                    raise
                if waiting is not None:
                    waiting(waited)
                if cancel is not None:
                    cancel.check()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")


def _leftover_candidates(db: Workspace) -> list[Path]:
    """Model folders no version owns that a save or scrub made (``.tmp-*``, ``.scrub-*``, or a
    version folder renamed into place but never registered); symbolic links are never candidates."""
    root = db.path.with_name(db.path.name + ".models") if db.path is not None else None
    if root is None or not root.is_dir():
        return []
    owned = {row[0] for row in db.execute("SELECT path FROM models")}  # the folder a version reads (registry)
    found = []
    for folder in root.iterdir():
        if folder.is_symlink() or not folder.is_dir() or folder.name in owned:
            continue  # a symbolic link may lead anywhere: never followed, never removed
        if any(mark in folder.name for mark in LEFTOVER_MARKS) or (
                ".deleted-" not in folder.name and (folder / "config.json").exists()):
            found.append(folder)
    return found


def remove_leftover_folders(db: Workspace) -> list[str]:
    """Delete the model folders no version owns that stopped saves and scrubs left; call under the write lock.

    Every writer of such a folder (``registry.save_version``, ``scrub.scrub_folder``)
    holds the workspace's write lock while it exists, so under the lock none is
    in progress: whatever is there was left by a writer that is gone, however
    young.  ``.deleted-*`` folders (a delete puts one back when it fails) and
    folders without ``config.json`` that no save made are left alone.

    Returns
    -------
    list of str
        Names of the removed folders.
    """
    removed = []
    for folder in _leftover_candidates(db):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return sorted(removed)


def get_setting(db: Workspace, key: str, default: Any = None) -> Any:
    row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return json.loads(row[0]) if row else default


def set_setting(db: Workspace, key: str, value: Any) -> None:
    with db.conn:
        db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", [key, json.dumps(value)])


def rebuild_fts(db: Workspace, cancel: Optional[Callable[[], None]] = None) -> int:
    """Re-segment the items' Han text and re-index ``items`` in the FTS5 table.

    Call inside the import transaction.  With the workspace setting
    ``search_tokens`` = ``plain`` nothing is segmented (FTS5's ``unicode61``
    alone); otherwise every item with Han text gets its row in
    ``items_tokens`` (:func:`merch_app.data.text_tokens.token_row`).

    Parameters
    ----------
    cancel
        Called between batches; raises to stop.

    Returns
    -------
    int
        Items whose text was segmented.
    """
    db.execute("DELETE FROM items_tokens")
    segmented = 0
    if get_setting(db, text_tokens.SETTING, text_tokens.DEFAULT_MODE) != "plain":
        glob = text_tokens.HAN_GLOB
        rows = db.execute(
            "SELECT rowid, title, description, tags, category FROM items WHERE title GLOB ? "
            "OR description GLOB ? OR tags GLOB ? OR category GLOB ?", [glob] * 4)
        while True:
            batch = rows.fetchmany(2000)
            if not batch:
                break
            if cancel is not None:
                cancel()
            out = [(r[0], *tok) for r in batch if (tok := text_tokens.token_row(*r[1:])) is not None]
            db.executemany("INSERT INTO items_tokens(rowid, title, description, tags, category, pinyin) "
                           "VALUES (?, ?, ?, ?, ?, ?)", out)
            segmented += len(out)
    db.execute("INSERT INTO items_fts(items_fts) VALUES ('rebuild')")
    return segmented


def counts(db: Workspace) -> dict[str, Any]:
    """Headline counts for summaries: items, users, events, date range."""
    items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    events, users, first, last = db.execute(
        "SELECT count(*), count(DISTINCT user_id), min(ts), max(ts) FROM events"
    ).fetchone()
    return {"items": items, "events": events, "users": users, "first_ts": first, "last_ts": last}


def event_span(db: Workspace) -> tuple[Optional[str], Optional[str]]:
    """First and last event timestamp (all events), or ``(None, None)`` without events.

    Two subqueries: SQLite answers a lone ``min()`` or ``max()`` from the ``ts`` index in
    O(log n), but ``min(ts), max(ts)`` together scans every event (~0.2 s at 1M events),
    so this is cheap enough for the GUI thread.
    """
    row = db.execute("SELECT (SELECT min(ts) FROM events), (SELECT max(ts) FROM events)").fetchone()
    return (row[0], row[1]) if row else (None, None)


def data_version(db: Workspace) -> int:
    """SQLite's ``PRAGMA data_version`` of this connection: it changes when *another* connection (another
    thread's, window's or program's) commits to the file, never for this connection's own commits."""
    return int(db.execute("PRAGMA data_version").fetchone()[0])


def change_marks(db: Workspace) -> dict[str, tuple]:
    """Cheap marks of what a window shows, to tell which part another connection changed.

    Returns
    -------
    dict
        ``models`` (the model registry: count, newest, active version, names), ``data``
        (imports started or finished, the newest event), ``rules`` (count, last change, activity log)
        and ``suites`` (suites, judgments, kept runs); each an index lookup or a scan of a small table.
    """
    models = db.execute("SELECT count(*), max(created), max(CASE WHEN active = 1 THEN model_id END), "
                        "total(length(name)) FROM models").fetchone()
    data = db.execute("SELECT (SELECT max(id) FROM imports), (SELECT max(finished) FROM imports), "
                      "(SELECT count(*) FROM imports WHERE status = 'running'), (SELECT max(id) FROM events)"
                      ).fetchone()
    rules = db.execute("SELECT (SELECT count(*) FROM rules), (SELECT max(updated) FROM rules), "
                       "(SELECT max(log_id) FROM rule_log)").fetchone()
    suites = db.execute("SELECT (SELECT count(*) FROM suites), (SELECT max(updated) FROM suites), "
                        "(SELECT count(*) FROM judgments), (SELECT max(updated) FROM judgments), "
                        "(SELECT max(snapshot_id) FROM snapshots)").fetchone()
    return {"models": tuple(models), "data": tuple(data), "rules": tuple(rules), "suites": tuple(suites)}
