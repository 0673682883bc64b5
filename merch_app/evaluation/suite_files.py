"""Suite files: CSV (``query,item_id,grade``) and TREC qrels, read and written.

Every reader raises :class:`~merch_app.evaluation.suite_data.SuiteError`
naming the file, the line and the problem; nothing in the workspace changes
when reading fails.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Optional, Union

from merch_app.evaluation.judgment_merge import DEFAULT_MERGE, check_policy, merge_rows
from merch_app.evaluation.suite_data import (
    MAX_GRADE, QRELS_TOPICS_SUFFIX, RawJudgment, Suite, SuiteError, check_grade, normalise_query,
)
from merch_app.safety import csv_cell, undo_csv_cell


def read_text(path: Path) -> str:
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


def raw_row(where: str, line: int, query: str, item_id: str, grade_text: str) -> RawJudgment:
    """One file row checked (``where`` names the file and line in errors)."""
    q = normalise_query(query)
    if not q:
        raise SuiteError(f"{where}: empty query")
    item_id = item_id.strip()
    if not item_id and not grade_text.strip():
        return RawJudgment(line, q, None, None)  # a query listed for rating later
    if not item_id:
        raise SuiteError(f"{where}: empty item_id")
    try:
        grade = check_grade(grade_text)
    except SuiteError as exc:
        raise SuiteError(f"{where}: {exc}") from None
    return RawJudgment(line, q, item_id, grade)


def read_suite_csv(path: Union[str, Path], name: Optional[str] = None, merge: str = DEFAULT_MERGE) -> Suite:
    """Read a ``query,item_id,grade`` CSV (header required, extra columns ignored).

    Rows with an empty ``item_id`` and ``grade`` list a query without judgments.
    Repeated (query, item) pairs are merged by ``merge``
    (:mod:`merch_app.evaluation.judgment_merge`); the rows stay on ``Suite.raw``.

    Raises
    ------
    SuiteError
        Missing file/columns, empty query, grade outside 0-3, or (``merge="error"``)
        contradicting duplicates; the message names the file and line.
    """
    check_policy(merge)
    path = Path(path)
    text = read_text(path)
    # Only the delimiter is guessed, from the header line: cells that csv_cell escaped start with an
    # apostrophe, which the sniffer would take for the quote character.  Quotes are always double quotes.
    try:
        delimiter = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise SuiteError(f"{path}: empty file (expected header query,item_id,grade)") from None
    cols = {h.strip().lower(): i for i, h in enumerate(header)}
    missing = [c for c in ("query", "item_id", "grade") if c not in cols]
    if missing:
        raise SuiteError(f"{path}, line 1: missing column(s) {', '.join(missing)} "
                         f"(header must be query,item_id,grade; found {','.join(header)})")
    rows = []
    for row in reader:
        line = reader.line_num
        if not any(c.strip() for c in row):
            continue
        cells = [undo_csv_cell(c) for c in row] + [""] * len(cols)
        rows.append(raw_row(f"{path}, line {line}", line, cells[cols["query"]],
                             cells[cols["item_id"]], cells[cols["grade"]]))
    if not rows:
        raise SuiteError(f"{path}: no judgments found")
    return merge_rows(name or path.stem, rows, merge, source=f"csv:{path.name}", where=str(path))


def write_suite_csv(suite: Suite, path: Union[str, Path]) -> Path:
    """Write ``query,item_id,grade`` (unrated queries as ``query,,``); formula cells escaped."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "item_id", "grade"])
        rated = set()
        for q, item_id, g in suite.rows():
            w.writerow([csv_cell(q), csv_cell(item_id), g])
            rated.add(q)
        for q in suite.queries:
            if q not in rated:
                w.writerow([csv_cell(q), "", ""])
    return path


# ------------------------------------------------------------------ qrels
def read_qrels(path: Union[str, Path], name: Optional[str] = None,
               topics: Union[str, Path, None] = None, merge: str = DEFAULT_MERGE) -> Suite:
    """Read TREC qrels (``topic iteration doc_id relevance``, whitespace separated).

    Topic ids become query texts through ``topics`` (a ``topic<TAB>query``
    file); without it, ``<path>.topics.tsv`` is used when present, otherwise
    the topic id itself is the query.  Relevance above 3 is capped at 3 and
    negative relevance (TREC "unjudgeable") is skipped.  Repeated pairs are
    merged by ``merge`` as in :func:`read_suite_csv`.
    """
    check_policy(merge)
    path = Path(path)
    topic_text: dict[str, str] = {}
    tpath = Path(topics) if topics else path.with_name(path.name + QRELS_TOPICS_SUFFIX)
    if topics or tpath.exists():
        for n, line in enumerate(read_text(tpath).splitlines(), 1):
            if not line.strip():
                continue
            tid, sep, text = line.partition("\t")
            if not sep or not normalise_query(text):
                raise SuiteError(f"{tpath}, line {n}: expected TOPIC<TAB>QUERY")
            topic_text[tid.strip()] = normalise_query(text)
    rows = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
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
        rows.append(raw_row(f"{path}, line {n}", n, query, doc, str(min(rel_i, MAX_GRADE))))
    if not rows:
        raise SuiteError(f"{path}: no judgments found")
    return merge_rows(name or path.stem, rows, merge, source=f"qrels:{path.name}", where=str(path))


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


def read_suite_file(path: Union[str, Path], name: Optional[str] = None, merge: str = DEFAULT_MERGE) -> Suite:
    """Read a CSV or qrels file, chosen by extension (``.qrels``/``.txt`` = qrels); repeated pairs merged by ``merge``."""
    p = Path(path)
    if p.suffix.lower() in (".qrels", ".txt"):
        return read_qrels(p, name, merge=merge)
    return read_suite_csv(p, name, merge=merge)
