"""The one transaction an import runs in, and the bookkeeping in ``imports``.

An import either commits everything (events, items, rejected rows, its
``imports`` row, the saved mapping, the FTS index) or nothing.  When the
caller's connection is already inside a transaction the import nests in a
SAVEPOINT instead, and the caller commits.

For a large import into a small workspace the ``events`` indexes are dropped
inside the transaction and built again before commit: one sort is much
cheaper than half a million random B-tree inserts per index, and a rollback
restores them like everything else.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from merch_app.data.workspace import open_workspace
from merch_app.safety import sql_identifier

BULK_MIN_ROWS = 50_000
_SAVEPOINT = "merch_import"


def open_db(db) -> tuple[object, bool]:
    """``(database, opened_here)`` for a Database or a workspace path."""
    if isinstance(db, (str, Path)):
        return open_workspace(db), True
    return db, False


class ImportTransaction:
    """Begin/commit/rollback of one import plus its ``imports`` row."""

    def __init__(self, db, *, expected_rows: int = 0, existing_events: int = 0) -> None:
        self.db = db
        self.conn = db.conn
        self.bulk = expected_rows >= BULK_MIN_ROWS and expected_rows > existing_events
        self._savepoint = False
        self._dropped: list[tuple[str, str]] = []
        self._cache_size: Optional[int] = None
        self.active = False

    def begin(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute(f"SAVEPOINT {_SAVEPOINT}")
            self._savepoint = True
        else:
            self.conn.execute("BEGIN IMMEDIATE")
        self.active = True
        self._cache_size = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        self.conn.execute("PRAGMA cache_size = -65536")  # 64 MiB while importing

    def start_bulk(self) -> None:
        """Drop the events indexes when the import is large (see module doc)."""
        if not self.bulk:
            return
        self._dropped = self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
            "AND sql IS NOT NULL"
        ).fetchall()
        for name, _sql in self._dropped:
            self.conn.execute(f"DROP INDEX {sql_identifier(name)}")

    def _restore_indexes(self) -> None:
        for _name, sql in self._dropped:
            self.conn.execute(sql)
        self._dropped = []

    def _restore_cache(self) -> None:
        if self._cache_size is not None:
            self.conn.execute(f"PRAGMA cache_size = {int(self._cache_size)}")
            self._cache_size = None

    def commit(self) -> None:
        self._restore_indexes()
        if self._savepoint:
            self.conn.execute(f"RELEASE {_SAVEPOINT}")
        else:
            self.conn.commit()
        self.active = False
        self._restore_cache()

    def rollback(self) -> None:
        if not self.active:
            return
        self._dropped = []  # the rollback brings them back
        if self._savepoint:
            self.conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
            self.conn.execute(f"RELEASE {_SAVEPOINT}")
        else:
            self.conn.rollback()
        self.active = False
        self._restore_cache()

    def drop_rows_seen_before(self, import_id: int) -> int:
        """Delete this import's events that an earlier import already holds; returns how many.

        Overlapping exports (a weekly export of a rolling 30 days) repeat rows.
        The natural key of an event is every column it has: user, item, type,
        time, value, query, session (for transaction exports the session is
        the invoice, so this is the invoice line) and position.  Rows repeated *within* the
        file are kept: real logs repeat (Online Retail has identical lines).
        """
        earlier = self.conn.execute("SELECT 1 FROM events WHERE import_id != ? LIMIT 1", [import_id]).fetchone()
        if earlier is None:
            return 0
        self._restore_indexes()  # the lookup below needs idx_events_item
        cur = self.conn.execute(
            "DELETE FROM events WHERE import_id = ? AND EXISTS (SELECT 1 FROM events o "
            "WHERE o.item_id = events.item_id AND o.ts IS events.ts AND o.import_id != events.import_id "
            "AND o.user_id IS events.user_id AND o.event_type IS events.event_type AND o.value IS events.value "
            "AND o.query IS events.query AND o.session_id IS events.session_id "
            "AND o.position IS events.position)", [import_id])
        return max(cur.rowcount, 0)

    # ------------------------------------------------------------ imports row
    def remove_imports(self, import_ids: list[int]) -> None:
        """Delete what earlier imports wrote (events, rejects, their items no other event uses)."""
        for import_id in import_ids:
            self.conn.execute("DELETE FROM events WHERE import_id = ?", [import_id])
            self.conn.execute("DELETE FROM rejected_rows WHERE import_id = ?", [import_id])
            self.conn.execute(
                "DELETE FROM items WHERE import_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM events e WHERE e.item_id = items.item_id)",
                [import_id],
            )
            self.conn.execute("UPDATE imports SET status = 'replaced' WHERE id = ?", [import_id])

    def add_import_row(self, file_name: str, sha256: str, kind: str, mapping: dict, started: str) -> int:
        cur = self.conn.execute(
            "INSERT INTO imports(file_name, sha256, kind, mapping, started, status, rows_read, "
            "rows_accepted, rows_rejected) VALUES (?, ?, ?, ?, ?, 'running', 0, 0, 0)",
            [file_name, sha256, kind, json.dumps(mapping, ensure_ascii=False), started],
        )
        return int(cur.lastrowid)

    def finish_import_row(self, import_id: int, read: int, accepted: int, rejected: int, message: str) -> None:
        self.conn.execute(
            "UPDATE imports SET finished = ?, rows_read = ?, rows_accepted = ?, rows_rejected = ?, "
            "status = 'ok', message = ? WHERE id = ?",
            [_now(), read, accepted, rejected, message, import_id],
        )


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_attempt(db, file_name: str, sha256: str, kind: str, mapping: dict, started: str,
                   status: str, message: str, ctx=None) -> None:
    """Record a cancelled/failed import in its own short transaction (data untouched)."""
    read = ctx.rows_read if ctx is not None else 0
    rejected = ctx.rows_rejected if ctx is not None else 0
    sql = ("INSERT INTO imports(file_name, sha256, kind, mapping, started, finished, rows_read, "
           "rows_accepted, rows_rejected, status, message) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)")
    args = [file_name, sha256, kind, json.dumps(mapping, ensure_ascii=False), started, _now(), read,
            rejected, status, message[:1000]]
    try:
        if db.conn.in_transaction:
            db.conn.execute(sql, args)
        else:
            with db.conn:
                db.conn.execute(sql, args)
    except Exception:  # noqa: BLE001 - bookkeeping must not hide the real error
        pass

