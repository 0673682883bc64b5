"""Judged query suites: named queries with graded judgments (0-3) per item.

This module stores suites in the workspace (tables ``suites``,
``suite_queries``, ``judgments``).  The suite itself (:class:`Suite`, plain
data) is in :mod:`merch_app.evaluation.suite_data`, CSV and TREC qrels files
in :mod:`merch_app.evaluation.suite_files`, and a suite derived from behaviour
in :mod:`merch_app.evaluation.behaviour_suite`.  Grades of named raters (table
``rater_judgments``, merged into ``judgments``) are :mod:`merch_app.evaluation.raters`.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from merch_app.evaluation.judgment_merge import merge_rows, repeated_pairs
from merch_app.evaluation.suite_data import (
    RawJudgment, Suite, SuiteError, check_grade, normalise_query,
)
from merch_app.jobs import pause_point


# -------------------------------------------------------------- workspace
def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_suites(db) -> list[dict]:
    """``{suite_id, name, description, source, queries, judgments, updated}`` per stored suite."""
    rows = db.execute(
        "SELECT s.suite_id, s.name, s.description, s.source, s.updated, "
        "(SELECT count(*) FROM suite_queries q WHERE q.suite_id = s.suite_id), "
        "(SELECT count(*) FROM judgments j WHERE j.suite_id = s.suite_id) "
        "FROM suites s ORDER BY s.name COLLATE NOCASE").fetchall()
    keys = ("suite_id", "name", "description", "source", "updated", "queries", "judgments")
    return [dict(zip(keys, r)) for r in rows]


def _suite_id(db, name: str) -> Optional[int]:
    row = db.execute("SELECT suite_id FROM suites WHERE name = ?", [name]).fetchone()
    return row[0] if row else None


def save_suite(db, suite: Suite, *, replace: bool = True) -> int:
    """Store ``suite`` under its name (replacing a suite of that name); returns its id.

    The file rows it was read from (``suite.raw``) and its merge policy are stored too.

    Raises
    ------
    SuiteError
        The name is empty, or taken and ``replace`` is False.
    """
    name = suite.name.strip()
    if not name:
        raise SuiteError("a suite needs a name")
    now = _now()
    with db.conn:
        sid = _suite_id(db, name)
        if sid is not None and not replace:
            raise SuiteError(f"a suite named {name!r} already exists")
        if sid is None:
            cur = db.execute("INSERT INTO suites(name, description, source, created, updated, merge_policy) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             [name, suite.description, suite.source, now, now, suite.merge_policy])
            sid = cur.lastrowid
        else:
            db.execute("UPDATE suites SET description = ?, source = ?, updated = ?, merge_policy = ? "
                       "WHERE suite_id = ?", [suite.description, suite.source, now, suite.merge_policy, sid])
            db.execute("DELETE FROM judgments WHERE suite_id = ?", [sid])
            db.execute("DELETE FROM suite_queries WHERE suite_id = ?", [sid])
            db.execute("DELETE FROM raw_judgments WHERE suite_id = ?", [sid])
            pause_point("suite.replace")  # kill tests: the old rows are deleted, the new ones not written
        db.conn.executemany("INSERT INTO suite_queries(suite_id, query, position) VALUES (?, ?, ?)",
                            [(sid, q, n) for n, q in enumerate(suite.queries)])
        db.conn.executemany("INSERT INTO judgments(suite_id, query, item_id, grade, updated) "
                            "VALUES (?, ?, ?, ?, ?)", [(sid, q, i, g, now) for q, i, g in suite.rows()])
        db.conn.executemany("INSERT INTO raw_judgments(suite_id, line_no, query, item_id, grade) "
                            "VALUES (?, ?, ?, ?, ?)",
                            [(sid, r.line, r.query, r.item_id, r.grade) for r in suite.raw])
    suite.suite_id = sid
    return sid


def load_suite(db, name: str) -> Suite:
    """The stored suite called ``name`` (:class:`SuiteError` if there is none)."""
    row = db.execute("SELECT suite_id, name, description, source, merge_policy FROM suites WHERE name = ?",
                     [name]).fetchone()
    if row is None:
        known = ", ".join(s["name"] for s in list_suites(db)) or "none"
        raise SuiteError(f"no suite named {name!r} in this workspace (suites: {known})")
    sid = row[0]
    suite = Suite(row[1], description=row[2] or "", source=row[3] or "", suite_id=sid, merge_policy=row[4])
    for q in suite_queries(db, sid):
        suite.add_query(q)
    for q, item_id, g in db.execute("SELECT query, item_id, grade FROM judgments WHERE suite_id = ?", [sid]):
        suite.set_grade(q, item_id, g)
    suite.raw = [RawJudgment(*r) for r in db.execute(
        "SELECT line_no, query, item_id, grade FROM raw_judgments WHERE suite_id = ? ORDER BY line_no", [sid])]
    suite.pairs_merged = repeated_pairs(suite.raw)
    return suite


def remerge_suite(db, name: str, policy: str) -> Suite:
    """Merge the stored file rows of suite ``name`` again by ``policy`` and store the result.

    Only the pairs of the file change; judgments added since (inline rating) on other pairs stay.

    Raises
    ------
    SuiteError
        No such suite, it was not read from a file (no rows kept), or ``policy`` is ``error``
        and rows disagree (both lines named).
    """
    suite = load_suite(db, name)
    if not suite.raw:
        raise SuiteError(f"suite {name!r} was not imported from a file, so it has no rows to merge again")
    merged = merge_rows(suite.name, suite.raw, policy, where=f"suite {name!r}")
    for q, item_id, g in merged.rows():
        suite.set_grade(q, item_id, g)
    suite.merge_policy, suite.pairs_merged = merged.merge_policy, merged.pairs_merged
    save_suite(db, suite)
    return suite


def suite_queries(db, suite_id: int) -> list[str]:
    """The queries of the stored suite ``suite_id`` in their order (empty if there is none)."""
    return [q for (q,) in db.execute("SELECT query FROM suite_queries WHERE suite_id = ? ORDER BY position",
                                     [suite_id])]


def delete_suite(db, name: str) -> bool:
    """Delete a suite with its judgments (also each rater's) and snapshots; False if it did not exist."""
    sid = _suite_id(db, name)
    if sid is None:
        return False
    with db.conn:
        db.execute("DELETE FROM judgments WHERE suite_id = ?", [sid])
        db.execute("DELETE FROM suite_queries WHERE suite_id = ?", [sid])
        db.execute("DELETE FROM raw_judgments WHERE suite_id = ?", [sid])
        db.execute("DELETE FROM rater_judgments WHERE suite_id = ?", [sid])
        pause_point("suite.delete")  # kill tests: judgments gone, the suite row still there
        db.execute("DELETE FROM snapshots WHERE suite_id = ?", [sid])
        db.execute("DELETE FROM suites WHERE suite_id = ?", [sid])
    return True


def set_judgment(db, suite_name: str, query: str, item_id: Optional[str], grade: Optional[int]) -> None:
    """Rate one result in a stored suite (created if missing); ``grade=None`` removes it.

    Used by inline rating: each key press is saved at once.  With ``item_id``
    None only the query is added to the suite.  Grades of named raters go
    through :func:`merch_app.evaluation.raters.rate`.
    """
    if grade is not None:
        grade = check_grade(grade)
    with db.conn:
        sid, q = add_suite_query(db, suite_name, query)
        if item_id is not None:
            write_judgment(db, sid, q, item_id, grade)


def add_suite_query(db, suite_name: str, query: str) -> tuple[int, str]:
    """Add ``query`` to the stored suite ``suite_name`` (both created if missing); no commit.

    Call inside ``with db.conn:`` together with the writes that need the suite.

    Returns
    -------
    (suite_id, query)
        The suite's id and the query as stored (:func:`normalise_query`).

    Raises
    ------
    SuiteError
        The query or the suite name is empty.
    """
    q = normalise_query(query)
    if not q:
        raise SuiteError("a query must not be empty")
    if not str(suite_name or "").strip():
        raise SuiteError("a suite needs a name")
    now = _now()
    sid = _suite_id(db, suite_name)
    if sid is None:
        sid = db.execute("INSERT INTO suites(name, description, source, created, updated) "
                         "VALUES (?, '', 'gui', ?, ?)", [suite_name, now, now]).lastrowid
    pos = db.execute("SELECT coalesce(max(position) + 1, 0) FROM suite_queries WHERE suite_id = ?",
                     [sid]).fetchone()[0]
    db.execute("INSERT OR IGNORE INTO suite_queries(suite_id, query, position) VALUES (?, ?, ?)", [sid, q, pos])
    db.execute("UPDATE suites SET updated = ? WHERE suite_id = ?", [now, sid])
    return sid, q


def write_judgment(db, suite_id: int, query: str, item_id: str, grade: Optional[int]) -> None:
    """Store the (merged) grade of ``item_id`` for the stored ``query`` of suite ``suite_id``; None removes it.

    No checks and no commit: call inside ``with db.conn:`` after :func:`add_suite_query`.
    """
    if grade is None:
        db.execute("DELETE FROM judgments WHERE suite_id = ? AND query = ? AND item_id = ?",
                   [suite_id, query, str(item_id)])
    else:
        db.execute("INSERT OR REPLACE INTO judgments(suite_id, query, item_id, grade, updated) "
                   "VALUES (?, ?, ?, ?, ?)", [suite_id, query, str(item_id), grade, _now()])
