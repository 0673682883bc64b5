"""Judged query suites: named queries with graded judgments (0-3) per item.

A :class:`Suite` is plain data; this module reads and writes it as CSV
(``query,item_id,grade``) and TREC qrels, stores it in the workspace (tables
``suites``, ``suite_queries``, ``judgments``) and derives one from behaviour
(see :mod:`merch_app.evaluation.behaviour_suite`).

Grades: 0 = not relevant, 1 = somewhat, 2 = relevant, 3 = perfect.  A query
counts as relevant-bearing when at least one item has grade >= 1.

Every reader raises :class:`SuiteError` naming the file, the line and the
problem; nothing in the workspace changes when reading fails.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

MAX_GRADE = 3
FORMULA_LEAD = ("=", "+", "-", "@")
QRELS_TOPICS_SUFFIX = ".topics.tsv"


class SuiteError(ValueError):
    """A suite file or suite operation is invalid (message is user-facing)."""


def normalise_query(text: str) -> str:
    """Whitespace-collapsed, stripped query (case is kept for display)."""
    return " ".join(str(text or "").split())


def csv_safe(cell: object) -> str:
    """Text of ``cell`` that spreadsheets will not run as a formula.

    Cells starting with ``= + - @`` (or a tab/CR, which some programs strip
    first) get a leading apostrophe; :func:`csv_unsafe` removes it again.
    """
    text = "" if cell is None else str(cell)
    if text and (text[0] in FORMULA_LEAD or text[0] in "\t\r"):
        return "'" + text
    return text


def csv_unsafe(text: str) -> str:
    """Undo :func:`csv_safe` (drop the apostrophe it added)."""
    if len(text) >= 2 and text[0] == "'" and (text[1] in FORMULA_LEAD or text[1] in "\t\r"):
        return text[1:]
    return text


@dataclass
class Suite:
    """Named queries with graded judgments.

    Attributes
    ----------
    name
        Unique name within a workspace.
    queries
        Query texts in display order (including queries not rated yet).
    judgments
        ``query -> {item_id: grade}``.
    source
        Where it came from: ``gui``, ``csv:<file>``, ``qrels:<file>``, ``behaviour``.
    """

    name: str
    queries: list[str] = field(default_factory=list)
    judgments: dict[str, dict[str, int]] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    suite_id: Optional[int] = None

    def add_query(self, query: str) -> str:
        """Add ``query`` (normalised) if missing; returns the normalised text."""
        q = normalise_query(query)
        if not q:
            raise SuiteError("a query must not be empty")
        if q not in self.judgments:
            self.judgments[q] = {}
            self.queries.append(q)
        return q

    def set_grade(self, query: str, item_id: str, grade: Optional[int]) -> None:
        """Set (or with ``grade=None`` remove) the judgment of ``item_id`` for ``query``."""
        q = self.add_query(query)
        if grade is None:
            self.judgments[q].pop(str(item_id), None)
            return
        self.judgments[q][str(item_id)] = check_grade(grade)

    def grades(self, query: str) -> dict[str, int]:
        return self.judgments.get(normalise_query(query), {})

    def relevant_queries(self) -> list[str]:
        """Queries with at least one item graded >= 1."""
        return [q for q in self.queries if any(g >= 1 for g in self.judgments.get(q, {}).values())]

    @property
    def n_judgments(self) -> int:
        return sum(len(j) for j in self.judgments.values())

    def rows(self) -> list[tuple[str, str, int]]:
        """``(query, item_id, grade)`` rows in query order, items by grade then id."""
        out = []
        for q in self.queries:
            for item_id, g in sorted(self.judgments.get(q, {}).items(), key=lambda kv: (-kv[1], kv[0])):
                out.append((q, item_id, g))
        return out

    def summary(self) -> dict:
        return {"name": self.name, "queries": len(self.queries), "judgments": self.n_judgments,
                "relevant_queries": len(self.relevant_queries()), "source": self.source}


def check_grade(grade: object) -> int:
    """``grade`` as an int in 0..3, or :class:`SuiteError`."""
    try:
        g = int(str(grade).strip()) if not isinstance(grade, int) else grade
    except ValueError:
        raise SuiteError(f"grade {grade!r} is not a whole number 0-{MAX_GRADE}") from None
    if not 0 <= g <= MAX_GRADE:
        raise SuiteError(f"grade {g} is outside 0-{MAX_GRADE}")
    return g


# --------------------------------------------------------------------- CSV
def _read_text(path: Path) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise SuiteError(f"{path}: not a text file")  # pragma: no cover - cp1252 decodes most bytes


def _add_judgment(suite: Suite, seen: dict, where: str, query: str, item_id: str, grade_text: str) -> None:
    q = normalise_query(query)
    if not q:
        raise SuiteError(f"{where}: empty query")
    item_id = item_id.strip()
    if not item_id and not grade_text.strip():
        suite.add_query(q)  # a query listed for rating later
        return
    if not item_id:
        raise SuiteError(f"{where}: empty item_id")
    try:
        grade = check_grade(grade_text)
    except SuiteError as exc:
        raise SuiteError(f"{where}: {exc}") from None
    key = (q, item_id)
    if key in seen and seen[key][1] != grade:
        raise SuiteError(f"{where}: grade {grade} for ({q!r}, {item_id!r}) contradicts grade "
                         f"{seen[key][1]} at {seen[key][0]}")
    seen[key] = ("line " + where.rsplit(" ", 1)[-1], grade)
    suite.set_grade(q, item_id, grade)


def read_suite_csv(path: Union[str, Path], name: Optional[str] = None) -> Suite:
    """Read a ``query,item_id,grade`` CSV (header required, extra columns ignored).

    Rows with an empty ``item_id`` and ``grade`` list a query without judgments.

    Raises
    ------
    SuiteError
        Missing file/columns, empty query, grade outside 0-3 or contradicting
        duplicates; the message names the file and line.
    """
    path = Path(path)
    text = _read_text(path)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise SuiteError(f"{path}: empty file (expected header query,item_id,grade)") from None
    cols = {h.strip().lower(): i for i, h in enumerate(header)}
    missing = [c for c in ("query", "item_id", "grade") if c not in cols]
    if missing:
        raise SuiteError(f"{path}, line 1: missing column(s) {', '.join(missing)} "
                         f"(header must be query,item_id,grade; found {','.join(header)})")
    suite = Suite(name or path.stem, source=f"csv:{path.name}")
    seen: dict = {}
    for row in reader:
        line = reader.line_num
        if not any(c.strip() for c in row):
            continue
        cells = [csv_unsafe(c) for c in row] + [""] * len(cols)
        _add_judgment(suite, seen, f"{path}, line {line}", cells[cols["query"]],
                      cells[cols["item_id"]], cells[cols["grade"]])
    if not suite.queries:
        raise SuiteError(f"{path}: no judgments found")
    return suite


def write_suite_csv(suite: Suite, path: Union[str, Path]) -> Path:
    """Write ``query,item_id,grade`` (unrated queries as ``query,,``); formula cells escaped."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "item_id", "grade"])
        rated = set()
        for q, item_id, g in suite.rows():
            w.writerow([csv_safe(q), csv_safe(item_id), g])
            rated.add(q)
        for q in suite.queries:
            if q not in rated:
                w.writerow([csv_safe(q), "", ""])
    return path


# ------------------------------------------------------------------ qrels
def read_qrels(path: Union[str, Path], name: Optional[str] = None,
               topics: Union[str, Path, None] = None) -> Suite:
    """Read TREC qrels (``topic iteration doc_id relevance``, whitespace separated).

    Topic ids become query texts through ``topics`` (a ``topic<TAB>query``
    file); without it, ``<path>.topics.tsv`` is used when present, otherwise
    the topic id itself is the query.  Relevance above 3 is capped at 3 and
    negative relevance (TREC "unjudgeable") is skipped.
    """
    path = Path(path)
    topic_text: dict[str, str] = {}
    tpath = Path(topics) if topics else path.with_name(path.name + QRELS_TOPICS_SUFFIX)
    if topics or tpath.exists():
        for n, line in enumerate(_read_text(tpath).splitlines(), 1):
            if not line.strip():
                continue
            tid, sep, text = line.partition("\t")
            if not sep or not normalise_query(text):
                raise SuiteError(f"{tpath}, line {n}: expected TOPIC<TAB>QUERY")
            topic_text[tid.strip()] = normalise_query(text)
    suite = Suite(name or path.stem, source=f"qrels:{path.name}")
    seen: dict = {}
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 4:
            raise SuiteError(f"{path}, line {n}: expected 4 fields 'topic iteration doc_id relevance', "
                             f"found {len(parts)}")
        topic, _it, doc, rel = parts
        try:
            rel_i = int(rel)
        except ValueError:
            raise SuiteError(f"{path}, line {n}: relevance {rel!r} is not a whole number") from None
        if rel_i < 0:
            continue
        query = topic_text.get(topic, topic)
        _add_judgment(suite, seen, f"{path}, line {n}", query, doc, str(min(rel_i, MAX_GRADE)))
    if not suite.queries:
        raise SuiteError(f"{path}: no judgments found")
    return suite


def write_qrels(suite: Suite, path: Union[str, Path]) -> tuple[Path, Path]:
    """Write TREC qrels with numeric topics plus ``<path>.topics.tsv`` mapping topics to queries.

    Raises
    ------
    SuiteError
        An item id contains whitespace (qrels cannot hold it).
    """
    path = Path(path)
    lines, topics = [], []
    for n, q in enumerate(suite.queries, 1):
        topics.append(f"{n}\t{q}")
        for item_id, g in sorted(suite.judgments.get(q, {}).items()):
            if re.search(r"\s", item_id):
                raise SuiteError(f"item id {item_id!r} contains whitespace; qrels cannot hold it")
            lines.append(f"{n} 0 {item_id} {g}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tpath = path.with_name(path.name + QRELS_TOPICS_SUFFIX)
    tpath.write_text("\n".join(topics) + "\n", encoding="utf-8")
    return path, tpath


def read_suite_file(path: Union[str, Path], name: Optional[str] = None) -> Suite:
    """Read a CSV or qrels file, chosen by extension (``.qrels``/``.txt`` = qrels)."""
    p = Path(path)
    if p.suffix.lower() in (".qrels", ".txt"):
        return read_qrels(p, name)
    return read_suite_csv(p, name)


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
            cur = db.execute("INSERT INTO suites(name, description, source, created, updated) "
                             "VALUES (?, ?, ?, ?, ?)", [name, suite.description, suite.source, now, now])
            sid = cur.lastrowid
        else:
            db.execute("UPDATE suites SET description = ?, source = ?, updated = ? WHERE suite_id = ?",
                       [suite.description, suite.source, now, sid])
            db.execute("DELETE FROM judgments WHERE suite_id = ?", [sid])
            db.execute("DELETE FROM suite_queries WHERE suite_id = ?", [sid])
        db.conn.executemany("INSERT INTO suite_queries(suite_id, query, position) VALUES (?, ?, ?)",
                            [(sid, q, n) for n, q in enumerate(suite.queries)])
        db.conn.executemany("INSERT INTO judgments(suite_id, query, item_id, grade, updated) "
                            "VALUES (?, ?, ?, ?, ?)", [(sid, q, i, g, now) for q, i, g in suite.rows()])
    suite.suite_id = sid
    return sid


def load_suite(db, name: str) -> Suite:
    """The stored suite called ``name`` (:class:`SuiteError` if there is none)."""
    row = db.execute("SELECT suite_id, name, description, source FROM suites WHERE name = ?",
                     [name]).fetchone()
    if row is None:
        known = ", ".join(s["name"] for s in list_suites(db)) or "none"
        raise SuiteError(f"no suite named {name!r} in this workspace (suites: {known})")
    sid = row[0]
    suite = Suite(row[1], description=row[2] or "", source=row[3] or "", suite_id=sid)
    for (q,) in db.execute("SELECT query FROM suite_queries WHERE suite_id = ? ORDER BY position", [sid]):
        suite.add_query(q)
    for q, item_id, g in db.execute("SELECT query, item_id, grade FROM judgments WHERE suite_id = ?", [sid]):
        suite.set_grade(q, item_id, g)
    return suite


def delete_suite(db, name: str) -> bool:
    """Delete a suite with its judgments and snapshots; False if it did not exist."""
    sid = _suite_id(db, name)
    if sid is None:
        return False
    with db.conn:
        db.execute("DELETE FROM judgments WHERE suite_id = ?", [sid])
        db.execute("DELETE FROM suite_queries WHERE suite_id = ?", [sid])
        db.execute("DELETE FROM snapshots WHERE suite_id = ?", [sid])
        db.execute("DELETE FROM suites WHERE suite_id = ?", [sid])
    return True


def set_judgment(db, suite_name: str, query: str, item_id: Optional[str], grade: Optional[int]) -> None:
    """Rate one result in a stored suite (created if missing); ``grade=None`` removes it.

    Used by inline rating: each key press is saved at once.  With ``item_id``
    None only the query is added to the suite.
    """
    q = normalise_query(query)
    if not q:
        raise SuiteError("a query must not be empty")
    if not str(suite_name or "").strip():
        raise SuiteError("a suite needs a name")
    if grade is not None:
        grade = check_grade(grade)
    now = _now()
    with db.conn:
        sid = _suite_id(db, suite_name)
        if sid is None:
            sid = db.execute("INSERT INTO suites(name, description, source, created, updated) "
                             "VALUES (?, '', 'gui', ?, ?)", [suite_name, now, now]).lastrowid
        pos = db.execute("SELECT coalesce(max(position) + 1, 0) FROM suite_queries WHERE suite_id = ?",
                         [sid]).fetchone()[0]
        db.execute("INSERT OR IGNORE INTO suite_queries(suite_id, query, position) VALUES (?, ?, ?)",
                   [sid, q, pos])
        if item_id is None:
            pass
        elif grade is None:
            db.execute("DELETE FROM judgments WHERE suite_id = ? AND query = ? AND item_id = ?",
                       [sid, q, str(item_id)])
        else:
            db.execute("INSERT OR REPLACE INTO judgments(suite_id, query, item_id, grade, updated) "
                       "VALUES (?, ?, ?, ?, ?)", [sid, q, str(item_id), grade, now])
        db.execute("UPDATE suites SET updated = ? WHERE suite_id = ?", [now, sid])
