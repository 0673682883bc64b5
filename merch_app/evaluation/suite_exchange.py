"""Suites exchanged with other relevance tools: Quepid ratings CSV and RRE ratings JSON in and out, TREC runs out.

Formats, as the tools themselves write and read them:

* **Quepid** "basic" ratings CSV (o19s/quepid ``api/v1/export/ratings_controller.rb`` writes it, the import
  dialog ``import_ratings_modal_instance_controller.js`` checks its header): ``query,docid,rating``, one row
  per rated document, ``query,,`` for a query without ratings and ``query,docid,`` for a document not rated
  yet.  Quepid puts a space in front of a query starting with ``= + - @`` (``make_csv_safe``).  Ratings are
  floats in Quepid (``3.0``); whole numbers 0-3 are taken, other scales are refused.  Quepid's "detailed"
  export (``caseCSVSvc.js``: ``Team Name,Case Name,Case ID,Query Text,Doc ID,Doc Position,Title,Rating``
  and one column per document field) is read too, by the ``Query Text``, ``Doc ID`` and ``Rating``
  columns; it has no judge column, so every row is one rating as written.
* **RRE** (Rated Ranking Evaluator, SeaseLtd/rated-ranking-evaluator ``Engine.evaluateRatings``) ratings
  JSON: ``topics[] -> query_groups[] -> queries[]``, each level optional (a missing level is the node
  itself, as RRE does, so Quepid's flat ``{"queries": [...]}`` export reads too).  A query's text is the
  value of its ``$query`` placeholder (or of the file's ``query_placeholder``), found anywhere in the query
  node as RRE's ``findValue`` does; topic and group names are not query texts and are not kept.  Judgments
  are the query's ``relevant_documents``, else its group's, in either RRE form: ``{"doc": {"gain": 3}}``
  (``rating`` is read when ``gain`` is absent; neither means RRE's default missing grade, 2) or
  ``{"3": ["doc", ...]}``.  Gains must be whole numbers 0-3 (RRE's default maximum grade is 3).
* **TREC run** (usnistgov/trec_eval ``get_trec_results.c``): ``qid Q0 docid rank score tag``; trec_eval
  ranks by score and ignores the rank column, so scores are written strictly decreasing
  (``n .. 1`` for ``n`` results) and the ranked order survives.  Topic ids are numbered as
  :func:`merch_app.evaluation.suite_files.write_qrels` numbers them, so trec_eval reads the qrels and the
  run of one suite together.

Repeated (query, item) pairs are merged by :mod:`merch_app.evaluation.judgment_merge` as for the other
suite files; every reader raises :class:`~merch_app.evaluation.suite_data.SuiteError` naming the file,
the line and the problem.
"""
from __future__ import annotations

import bisect
import csv
import io
import json
import json.scanner
import math
import re
from pathlib import Path
from typing import Any, Optional, Union

from merch_app.evaluation.judgment_merge import DEFAULT_MERGE, check_policy, merge_rows
from merch_app.evaluation.suite_data import MAX_GRADE, RawJudgment, Suite, SuiteError
# The row and text helpers of the other suite readers, so every format checks a row the same way.
from merch_app.evaluation.suite_files import raw_row, read_text, read_suite_file, write_qrels, write_suite_csv
from merch_app.evaluation.suite_run import SuiteRun
from merch_app.safety import csv_cell

SUITE_FORMATS = ("csv", "qrels", "quepid", "rre")
QUEPID_HEADER = ("query", "docid", "rating")
QUEPID_DETAILED_COLUMNS = ("Query Text", "Doc ID", "Rating")
RRE_PLACEHOLDER = "$query"
RRE_MISSING_GRADE = 2  # RRE's defaultMissingGrade: a relevant document listed without a gain
RRE_TEMPLATE = "only_q.json"


# ------------------------------------------------------------------ formats
def suite_format(path: Union[str, Path]) -> str:
    """Which of :data:`SUITE_FORMATS` the file ``path`` holds, from its content and extension.

    ``.json`` files and files starting with ``{`` are RRE, a CSV whose header is Quepid's (basic
    ``query,docid,rating`` or the detailed export's ``Query Text``/``Doc ID``/``Rating``) is Quepid,
    ``.qrels``/``.txt`` files are TREC qrels and anything else is a ``query,item_id,grade`` CSV.
    """
    p = Path(path)
    text = read_text(p)
    if p.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return "rre"
    if _quepid_columns(_header(text)) is not None:
        return "quepid"
    return "qrels" if p.suffix.lower() in (".qrels", ".txt") else "csv"


def read_any_suite_file(path: Union[str, Path], name: Optional[str] = None, merge: str = DEFAULT_MERGE) -> Suite:
    """Read a suite file of any of :data:`SUITE_FORMATS` (chosen by :func:`suite_format`).

    Raises
    ------
    SuiteError
        As the format's reader: the message names the file, the line and the problem.
    """
    fmt = suite_format(path)
    if fmt == "rre":
        return read_rre_json(path, name, merge=merge)
    if fmt == "quepid":
        return read_quepid_csv(path, name, merge=merge)
    return read_suite_file(path, name, merge=merge)


def export_format(path: Union[str, Path]) -> str:
    """The format :func:`write_suite_as` uses for ``path`` when none is given: qrels, rre (``.json``) or csv.

    Quepid files are ``.csv`` like the app's own, so Quepid is only written when asked for.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".qrels", ".txt"):
        return "qrels"
    return "rre" if suffix == ".json" else "csv"


def write_suite_as(suite: Suite, path: Union[str, Path], fmt: Optional[str] = None) -> tuple[Path, ...]:
    """Write ``suite`` to ``path`` in ``fmt`` (one of :data:`SUITE_FORMATS`; default :func:`export_format`).

    Returns
    -------
    tuple of Path
        The files written (qrels also writes ``<path>.topics.tsv``).
    """
    fmt = fmt or export_format(path)
    if fmt == "qrels":
        return write_qrels(suite, path)
    if fmt == "quepid":
        return (write_quepid_csv(suite, path),)
    if fmt == "rre":
        return (write_rre_json(suite, path),)
    if fmt == "csv":
        return (write_suite_csv(suite, path),)
    raise SuiteError(f"unknown suite format {fmt!r}; choose one of {', '.join(SUITE_FORMATS)}")


def _rows_by_query(suite: Suite) -> dict[str, list[tuple[str, int]]]:
    """``query -> [(item_id, grade)]`` in :meth:`Suite.rows` order (best grade first)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for q, item_id, g in suite.rows():
        out.setdefault(q, []).append((item_id, g))
    return out


def _whole_grade(value: Any, what: str) -> int:
    """``value`` (a number or its text, ``3`` or ``3.0``) as a grade 0-3, or :class:`SuiteError`."""
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SuiteError(f"{what} {value!r} is not a number") from None
    if not math.isfinite(number) or number != int(number):
        raise SuiteError(f"{what} {value!r} is not a whole number 0-{MAX_GRADE}")
    if not 0 <= number <= MAX_GRADE:
        raise SuiteError(f"{what} {value!r} is outside 0-{MAX_GRADE} (judgments here are graded 0-{MAX_GRADE}; "
                         f"rescale a file rated on another scale first)")
    return int(number)


# ------------------------------------------------------------------ Quepid
def _header(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text.split("\n", 1)[0])), [])


def _quepid_columns(header: list[str]) -> Optional[tuple[int, int, int]]:
    """Positions of query, doc id and rating in a Quepid header (basic or detailed), else None."""
    cols = [h.strip().lower() for h in header]
    if tuple(cols[:3]) == QUEPID_HEADER:
        return (0, 1, 2)
    query, doc, rating = (c.lower() for c in QUEPID_DETAILED_COLUMNS)
    if query in cols and doc in cols and rating in cols:
        return (cols.index(query), cols.index(doc), cols.index(rating))
    return None


def read_quepid_csv(path: Union[str, Path], name: Optional[str] = None, merge: str = DEFAULT_MERGE) -> Suite:
    """Read a Quepid ratings CSV: the basic ``query,docid,rating`` export or the detailed one.

    A row without a rating (``query,,`` or ``query,docid,``) lists the query for rating later.
    Repeated (query, doc) pairs are merged by ``merge``; the rows stay on ``Suite.raw``.

    Raises
    ------
    SuiteError
        Not a Quepid header, a basic row with more than 3 columns, an empty query, a rating that is
        not a whole number 0-3, a rating without a doc id, or (``merge="error"``) contradicting
        duplicates; the message names the file and line.
    """
    check_policy(merge)
    path = Path(path)
    text = read_text(path)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    cols = _quepid_columns(header)
    if cols is None:
        raise SuiteError(f"{path}, line 1: not a Quepid ratings header (expected {','.join(QUEPID_HEADER)} or the "
                         f"detailed export's {', '.join(QUEPID_DETAILED_COLUMNS)}; found {','.join(header)})")
    basic = cols == (0, 1, 2)
    rows: list[RawJudgment] = []
    for row in reader:
        line = reader.line_num
        if not any(c.strip() for c in row):
            continue
        where = f"{path}, line {line}"
        if basic and len(row) > len(QUEPID_HEADER):
            raise SuiteError(f"{where}: {len(row)} columns, expected 3 (query,docid,rating); put a query "
                             f"holding a comma in double quotes")
        cells = row + [""] * (max(cols) + 1)
        query, doc, rating = (cells[i] for i in cols)
        if rating.strip():
            try:
                rating = str(_whole_grade(rating, "rating"))
            except SuiteError as exc:
                raise SuiteError(f"{where}: {exc}") from None
        elif doc.strip():
            doc = ""  # a document shown but not rated yet: only the query is kept
        rows.append(raw_row(where, line, query, doc, rating))
    if not rows:
        raise SuiteError(f"{path}: no ratings found")
    return merge_rows(name or path.stem, rows, merge, source=f"quepid:{path.name}", where=str(path))


def _quepid_cell(text: str) -> str:
    """A cell as Quepid's ``make_csv_safe`` writes it: a space before a formula lead (Quepid keeps no apostrophe)."""
    return " " + text if csv_cell(text) != text else text


def write_quepid_csv(suite: Suite, path: Union[str, Path]) -> Path:
    """Write Quepid's basic ratings CSV (``query,docid,rating``; ``query,,`` for a query without ratings)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(QUEPID_HEADER)
        rated = _rows_by_query(suite)
        for q in suite.queries:
            for item_id, g in rated.get(q, []):
                w.writerow([_quepid_cell(q), _quepid_cell(item_id), g])
            if not rated.get(q):
                w.writerow([_quepid_cell(q), "", ""])
    return path


# ------------------------------------------------------------------ RRE
class _Node(dict):
    """A JSON object that knows the line of its opening brace."""

    line = 0


def _load_json(path: Path) -> Any:
    """``path`` parsed as JSON, every object a :class:`_Node` carrying its line."""
    text = read_text(path)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    decoder = json.JSONDecoder()
    plain_object = decoder.parse_object

    def parse_object(s_and_end, *args):
        obj, end = plain_object(s_and_end, *args)
        node = _Node(obj)
        node.line = bisect.bisect_right(line_starts, s_and_end[1] - 1)
        return node, end

    decoder.parse_object = parse_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # the pure-Python scanner calls parse_object
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None


def _members(node: _Node, key: str, jpath: str, where: str) -> list[tuple[_Node, str]]:
    """The objects of ``node[key]`` with their JSON paths, or ``node`` itself when it has no ``key`` (as RRE)."""
    if key not in node:
        return [(node, jpath)]
    value = node[key]
    prefix = f"{jpath}.{key}" if jpath else key
    if not isinstance(value, list):
        raise SuiteError(f"{where}, line {node.line} ({prefix}): expected a list, found {_kind(value)}")
    out = []
    for i, member in enumerate(value):
        if not isinstance(member, _Node):
            raise SuiteError(f"{where}, line {node.line} ({prefix}[{i}]): expected an object, "
                             f"found {json.dumps(member)[:40]}")
        out.append((member, f"{prefix}[{i}]"))
    return out


def _kind(value: Any) -> str:
    """What a JSON value is, for messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number" if isinstance(value, (int, float)) and not isinstance(value, bool) else json.dumps(value)


def _find_value(value: Any, key: str) -> Any:
    """The first value named ``key`` anywhere in ``value``, depth first (Jackson's ``findValue``), else None."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                return v
            found = _find_value(v, key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for v in value:
            found = _find_value(v, key)
            if found is not None:
                return found
    return None


def _scalar_text(value: Any) -> Optional[str]:
    """A JSON string or number as text (doc ids and placeholders may be numbers), else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _relevant_documents(rel: Any, line: int, jpath: str, where: str) -> list[tuple[str, int, int]]:
    """``(doc_id, grade, line)`` of one ``relevant_documents`` object in either RRE form."""
    if rel is None:
        return []
    at = f"{where}, line {getattr(rel, 'line', line)} ({jpath})"
    if not isinstance(rel, _Node):
        raise SuiteError(f"{at}: expected an object of documents, found {json.dumps(rel)[:40]}")
    out = []
    if rel and isinstance(next(iter(rel.values())), list):  # {"3": ["doc", ...]}, as RRE decides: by the first
        for gain, docs in rel.items():
            try:
                grade = _whole_grade(gain, "gain")
            except SuiteError as exc:
                raise SuiteError(f"{at}: {exc}") from None
            if not isinstance(docs, list):
                raise SuiteError(f"{at}: gain {gain!r} maps to {json.dumps(docs)[:40]}, expected a list of doc ids")
            for doc in docs:
                doc_id = _scalar_text(doc)
                if doc_id is None:
                    raise SuiteError(f"{at}: doc id {json.dumps(doc)[:40]} is not a string")
                out.append((doc_id, grade, rel.line))
        return out
    for doc_id, judgment in rel.items():
        here = f"{where}, line {getattr(judgment, 'line', rel.line)} ({jpath}.{doc_id})"
        if not isinstance(judgment, _Node):
            raise SuiteError(f"{here}: expected {{\"gain\": N}}, found {json.dumps(judgment)[:40]}")
        gain = judgment.get("gain", judgment.get("rating"))
        if isinstance(gain, (str, bool, list, dict)):
            raise SuiteError(f"{here}: gain {json.dumps(gain)[:40]} is not a number")
        try:
            grade = RRE_MISSING_GRADE if gain is None else _whole_grade(gain, "gain")
        except SuiteError as exc:
            raise SuiteError(f"{here}: {exc}") from None
        out.append((doc_id, grade, judgment.line))
    return out


def read_rre_json(path: Union[str, Path], name: Optional[str] = None, merge: str = DEFAULT_MERGE) -> Suite:
    """Read an RRE ratings file (``topics -> query_groups -> queries`` with ``relevant_documents``).

    Every query of every group becomes a suite query (its ``$query`` placeholder), judged by its own
    ``relevant_documents`` or its group's; queries without judgments are listed for rating later.
    The same query in several groups is one suite query, its repeated pairs merged by ``merge``.

    Raises
    ------
    SuiteError
        Not JSON or not an RRE ratings object, a query without the placeholder, a gain that is not a
        whole number 0-3, or (``merge="error"``) contradicting duplicates; the message names the file,
        the line and the JSON path.
    """
    check_policy(merge)
    path = Path(path)
    root = _load_json(path)
    where = str(path)
    if not isinstance(root, _Node) or not {"topics", "query_groups", "queries"} & set(root):
        raise SuiteError(f"{path}, line 1: not an RRE ratings file (expected a JSON object with topics, "
                         f"query_groups or queries)")
    placeholder = root.get("query_placeholder", RRE_PLACEHOLDER)
    if not isinstance(placeholder, str):
        raise SuiteError(f"{path}, line {root.line} (query_placeholder): expected a string")
    rows: list[RawJudgment] = []
    for topic, tpath in _members(root, "topics", "", where):
        for group, gpath in _members(topic, "query_groups", tpath, where):
            for query, qpath in _members(group, "queries", gpath, where):
                at = f"{path}, line {query.line} ({qpath or 'top level'})"
                text = _scalar_text(_find_value(query, placeholder))
                if text is None:
                    raise SuiteError(f"{at}: the query has no {placeholder!r} placeholder text")
                if "relevant_documents" in query:
                    rel, rpath = query["relevant_documents"], f"{qpath}.relevant_documents".lstrip(".")
                else:
                    rel, rpath = group.get("relevant_documents"), f"{gpath}.relevant_documents".lstrip(".")
                docs = _relevant_documents(rel, query.line, rpath, where)
                if not docs:
                    rows.append(raw_row(at, query.line, text, "", ""))
                for doc_id, grade, line in docs:
                    rows.append(raw_row(f"{path}, line {line} ({rpath})", line, text, doc_id, str(grade)))
    if not rows:
        raise SuiteError(f"{path}: no queries found")
    return merge_rows(name or path.stem, rows, merge, source=f"rre:{path.name}", where=where)


def write_rre_json(suite: Suite, path: Union[str, Path], *, index: Optional[str] = None, id_field: str = "id",
                   template: str = RRE_TEMPLATE) -> Path:
    """Write ``suite`` as an RRE ratings file: one topic, one query group per query.

    Parameters
    ----------
    index
        RRE's ``index`` (the collection it searches); default the suite name.
    id_field, template
        RRE's document id field and the query template each query names (``{"$query": ...}`` is its
        only placeholder).  No ``corpora_file`` is written: add one for RRE's embedded Solr or
        Elasticsearch, which index a corpus first.
    """
    path = Path(path)
    groups, rated = [], _rows_by_query(suite)
    for q in suite.queries:
        docs = {item_id: {"gain": g} for item_id, g in rated.get(q, [])}
        groups.append({"name": q, "queries": [{"template": template, "placeholders": {RRE_PLACEHOLDER: q}}],
                       "relevant_documents": docs})
    data = {"index": index or suite.name, "id_field": id_field,
            "topics": [{"description": suite.description or suite.name, "query_groups": groups}]}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ TREC run
def write_trec_run(run: SuiteRun, suite: Suite, path: Union[str, Path], tag: Optional[str] = None) -> Path:
    """Write ``run`` (of ``suite``) as a TREC run file ``qid Q0 docid rank score tag``.

    Topic ids are the positions of the queries in ``suite`` counted from 1, as in
    :func:`~merch_app.evaluation.suite_files.write_qrels`.  Ranks count from 1, scores go
    ``n .. 1`` (trec_eval orders by score); a document ranked twice for a query keeps its first
    place (trec_eval refuses duplicates).

    Parameters
    ----------
    tag
        The run tag (default the run's label); whitespace becomes ``_``.

    Raises
    ------
    SuiteError
        A query of ``run`` is not in ``suite``, or an item id contains whitespace.
    """
    path = Path(path)
    topics = {q: n for n, q in enumerate(suite.queries, 1)}
    tag = re.sub(r"\s+", "_", (tag or run.label or "").strip()) or "merch_app"
    lines = []
    for result in run.queries:
        if result.query not in topics:
            raise SuiteError(f"the run's query {result.query!r} is not in the suite {suite.name!r}")
        items = list(dict.fromkeys(result.items))
        for rank, item_id in enumerate(items, 1):
            if re.search(r"\s", item_id):
                raise SuiteError(f"item id {item_id!r} contains whitespace; a TREC run cannot hold it")
            lines.append(f"{topics[result.query]} Q0 {item_id} {rank} {len(items) - rank + 1} {tag}")
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
