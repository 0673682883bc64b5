"""Import shop exports (CSV/TSV, optionally gzip) into a workspace.

Public API used by the CLI and the Data screen:

* :func:`preview_file` — sniff a file: encoding, delimiter, kind, column
  mapping with a confidence per column, first rows, whether it was imported;
* :func:`import_file` — stream it into the workspace in ONE transaction;
* the rows left out are read with :mod:`merch_app.data.rejected`.

Kinds (:data:`KINDS`) and their target fields (:data:`FIELDS`) are defined in
:mod:`merch_app.data.header_mapping`; the per-kind row loops live in
:mod:`catalogue_rows`, :mod:`event_rows` and :mod:`transactions`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

from merch_app.data import catalogue_rows, event_rows, transactions
from merch_app.data.csv_source import CsvSource, SourceError, file_sha256
from merch_app.data.header_mapping import (
    ATTRS, FIELDS, KINDS, REQUIRED, detect_kind, guess_columns, load_saved_mapping, resolve_source,
    save_mapping,
)
from merch_app.data.id_case import CaseMerge, merge_case_clashes, merge_note, merging_enabled
from merch_app.data.import_batches import ImportContext
from merch_app.data.import_tx import ImportTransaction, open_db, record_attempt
from merch_app.data.forget_list import forget_matcher
from merch_app.data.privacy import import_pseudonymiser
from merch_app.data.values import (
    DAY_FIRST, DECIMAL_COMMA, DECIMAL_MIXED, IdReader, NumberParser, TimestampParser, guess_date_order, guess_decimal,
    is_numeric_dmy, parse_number, parse_timestamp, spreadsheet_id_column,
)
from merch_app.data.workspace import read_only_sentence, rebuild_fts, storage_problem
from merch_app.errors import MerchAppError
from merch_app.jobs import CancelToken, Cancelled, ProgressCallback
from merch_app.data.spell_vocab import build_log_words
from merch_app.data.term_tops import build_search_tops

ON_DUPLICATE = ("skip", "replace", "append", "error")


class ImportFailed(MerchAppError):
    """The file cannot be imported at all; the message names file, line and problem.

    The workspace is left exactly as it was (besides an ``imports`` row that
    records the failed attempt).
    """


@dataclass
class ColumnGuess:
    source: str
    field: Optional[str]
    confidence: float  # 0..1


@dataclass
class FilePreview:
    path: Path
    encoding: str
    delimiter: str
    headers: list[str]
    rows: list[list[str]]  # first data rows
    kind: str
    kind_confidence: float
    columns: list[ColumnGuess]
    mapping: dict[str, str]  # source header -> field
    sha256: str
    already_imported: bool
    saved_mapping_used: bool
    size_bytes: int


@dataclass
class ImportResult:
    import_id: Optional[int]
    file_name: str
    kind: str
    status: str  # ok | skipped | cancelled | failed
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    rejected_reasons: dict[str, int]
    items: int  # totals in the workspace after the import
    events: int
    items_added: int
    events_added: int
    seconds: float
    message: str
    mapping: dict[str, str] = field(default_factory=dict)
    rows_duplicate: int = 0  # rows an earlier import already held (skipped; see ImportTransaction)
    ids_merged: list[CaseMerge] = field(default_factory=list)  # case-clash ids folded into one (id_case)
    rows_forgotten: int = 0  # rows of users on the forget list (dropped, stored nowhere)


def _source(path: Path) -> CsvSource:
    try:
        return CsvSource(Path(path))
    except SourceError as exc:
        raise ImportFailed(str(exc)) from exc


def _plan(db, source: CsvSource, kind: Optional[str], mapping: Optional[dict[str, str]]):
    """Decide kind and mapping: ``(kind, kind_confidence, columns, mapping, saved_used)``."""
    headers = source.headers
    if kind in (None, "auto"):
        kind = None
    elif kind not in KINDS:
        raise ImportFailed(f"{source.path}: unknown kind {kind!r} (choose from {', '.join(KINDS)})")
    saved = load_saved_mapping(db, headers)
    if kind is None:
        kind, kind_conf = (saved[0], 1.0) if saved else detect_kind(headers)
    else:
        kind_conf = 1.0
    guesses = guess_columns(headers, kind)
    saved_used = False
    if mapping is not None:
        chosen = {}
        for src, fld in mapping.items():
            header = resolve_source(headers, src)
            if header is None:
                raise ImportFailed(f"{source.path}: line {source.format.header_line}: mapping names column {src!r}, "
                                   f"which the file does not have (columns: {', '.join(headers)})")
            if not fld:
                continue
            fld = ATTRS if fld == "attrs" else fld
            if fld not in FIELDS[kind]:
                raise ImportFailed(f"{source.path}: {kind} files have no field {fld!r} "
                                   f"(fields: {', '.join(FIELDS[kind])})")
            chosen[header] = fld
        columns = [ColumnGuess(h, chosen.get(h), 1.0 if h in chosen else 0.0) for h in headers]
    elif saved and saved[0] == kind:
        chosen, saved_used = saved[1], True
        columns = [ColumnGuess(h, chosen.get(h), 1.0 if h in chosen else 0.0) for h in headers]
    else:
        chosen = {s: f for s, f, _ in guesses if f}
        columns = [ColumnGuess(s, f, round(c, 3)) for s, f, c in guesses]
    return kind, kind_conf, columns, chosen, saved_used


def _check_mapping(source: CsvSource, kind: str, mapping: dict[str, str]) -> None:
    fields = [f for f in mapping.values() if f != ATTRS]
    dupes = {f for f in fields if fields.count(f) > 1}
    if dupes:
        raise ImportFailed(f"{source.path}: line {source.format.header_line}: several columns mapped to {', '.join(sorted(dupes))}")
    missing = [f for f in REQUIRED[kind] if f not in fields]
    if missing:
        if _looks_like_data(source.headers):
            raise ImportFailed(
                f"{source.path}: line {source.format.header_line}: the first line looks like data, not column names "
                f"({', '.join(source.headers[:4])}, ...): the file has no header row; add one "
                f"(e.g. {','.join(FIELDS[kind][:4])}) and import again"
            )
        raise ImportFailed(
            f"{source.path}: line {source.format.header_line}: no column for {', '.join(missing)} in a {kind} file "
            f"(columns: {', '.join(source.headers)}); map one with --map COLUMN={missing[0]} "
            f"or choose another --kind"
        )


def _looks_like_data(headers: list[str]) -> bool:
    """True when at least half of the header cells are numbers or dates (no header row)."""
    cells = [h for h in headers if h.strip()]
    data = sum(1 for h in cells if parse_number(h) is not None or parse_timestamp(h) is not None)
    return bool(cells) and data * 2 >= len(cells)


def preview_file(db, path: Union[str, Path], *, kind: Optional[str] = None, n_rows: int = 20) -> FilePreview:
    """Sniff ``path`` and propose how to import it (nothing is written).

    Parameters
    ----------
    db
        Open workspace (for saved mappings and earlier imports) or its path.
    kind
        Force a kind; None or ``"auto"`` detects it from the headers (a saved
        mapping for the same headers wins).
    n_rows
        Number of data rows to return for display.

    Raises
    ------
    ImportFailed
        Unreadable file, empty file, no header, no delimiter.
    """
    db, close = open_db(db)
    try:
        source = _source(Path(path))
        kind_, conf, columns, mapping, saved_used = _plan(db, source, kind, None)
        sha = file_sha256(source.path)
        done = db.execute("SELECT 1 FROM imports WHERE sha256 = ? AND status = 'ok' LIMIT 1", [sha]).fetchone()
        return FilePreview(
            path=source.path, encoding=source.encoding, delimiter=source.delimiter, headers=source.headers,
            rows=source.sample_rows(n_rows), kind=kind_, kind_confidence=conf, columns=columns,
            mapping=mapping, sha256=sha, already_imported=bool(done), saved_mapping_used=saved_used,
            size_bytes=source.size_bytes,
        )
    finally:
        if close:
            db.close()


def _totals(db) -> tuple[int, int]:
    items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    return items, events


def _date_order(source: CsvSource, mapping: dict[str, str]) -> tuple[Optional[str], str]:
    """Day-first or month-first for slash dates, decided from the sample; plus a note if ambiguous."""
    ts_col = next((s for s, f in mapping.items() if f == "ts"), None)
    if ts_col is None:
        return None, ""
    i = source.headers.index(ts_col)
    values = [r[i] for r in source.sample_rows(100_000) if len(r) > i]
    order = guess_date_order(values)
    if order is None and any(is_numeric_dmy(v) for v in values):
        return DAY_FIRST, " Dates like 01/02/2011 are ambiguous in this file: read as day-first."
    return order, ""


NUMBER_FIELDS = ("price", "value", "quantity")
ID_FIELDS = {"item_id": "Item ids", "user_id": "User ids"}


def _file_forms(source: CsvSource, mapping: dict[str, str]) -> tuple[NumberParser, dict[str, IdReader], str]:
    """The file's decimal convention and id forms, decided from its sample like the date order; plus a note.

    Numbers: :func:`~merch_app.data.values.guess_decimal` over the mapped price,
    value and quantity cells.  Ids: a column is read without its ``.0`` only
    when every non-empty id of the sample is written ``123.0``; a later plain
    ``123`` in such a column is refused by the :class:`IdReader` (never merged).
    """
    sample = source.sample_rows(100_000)

    def cells(field: str) -> list[str]:
        cols = [source.headers.index(s) for s, f in mapping.items() if f == field]
        return [r[i] for r in sample for i in cols if len(r) > i]

    decimal = guess_decimal((v for f in NUMBER_FIELDS for v in cells(f)), source.delimiter)
    note = {DECIMAL_COMMA: " Numbers read with decimal comma (1.234,56 = 1234.56).",
            DECIMAL_MIXED: (" Numbers are written both with a decimal comma (1.234,56) and a decimal point "
                            "(12.5) in this file: cells that read two ways were rejected (ambiguous_number).")
            }.get(decimal, "")
    ids = {}
    for field, label in ID_FIELDS.items():
        ids[field] = IdReader(spreadsheet_id_column(cells(field)))
        if ids[field].spreadsheet:
            note += (f" {label} are written as spreadsheet numbers (17850.0) in the whole column: read without "
                     "the .0.")
    return NumberParser(decimal), ids, note


def import_file(
    db,
    path: Union[str, Path],
    *,
    kind: str = "auto",
    mapping: Optional[dict[str, str]] = None,
    on_duplicate: str = "skip",
    pseudonymise: Optional[bool] = None,
    keep_overlap: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> ImportResult:
    """Import one file into the workspace in a single transaction.

    Parameters
    ----------
    db
        Open workspace (``open_workspace``) owned by the calling thread, or its path.
    kind
        ``"auto"`` (detect from headers; a saved mapping for the same headers
        wins) or one of :data:`KINDS`.
    mapping
        Complete ``{source column: field}`` mapping (as in
        :attr:`FilePreview.mapping`, edited); columns left out are ignored.
        None uses the saved or guessed mapping.
    on_duplicate
        What to do when a file with the same sha256 was imported before:
        ``"skip"`` (status ``skipped``, nothing written), ``"replace"`` (rows
        of the earlier import are removed, then the file is imported again),
        ``"append"`` (import again) or ``"error"`` (raise ImportFailed).
    pseudonymise
        Store keyed-HMAC pseudonyms instead of user ids (see
        :mod:`merch_app.data.privacy`); None follows the workspace (on once
        an earlier import pseudonymised).
    keep_overlap
        Keep event rows that an earlier import already holds (same user,
        item, type, time, value, query, session and position).  By default they are
        skipped and counted in ``rows_duplicate``: overlapping exports are
        not double-counted.  ``on_duplicate="append"`` of a file imported
        before keeps them too (asked for on purpose).
    progress, cancel
        Job protocol: ``Progress(done=bytes, total=file size, data={"rows", "bytes"})``
        about 10×/s; ``cancel.check()`` every 4,096 rows.

    Returns
    -------
    ImportResult
        ``status`` is ``ok`` or ``skipped``.

    Raises
    ------
    Cancelled
        When ``cancel`` was set: the transaction is rolled back, so items,
        events and rejected rows are exactly as before; an ``imports`` row
        with status ``cancelled`` records the attempt.
    ImportFailed
        The file cannot be imported (unreadable, no header, no usable item id
        column, ...) or the import failed midway (any exception, also one
        raised by ``progress``); rolled back like a cancel, recorded as ``failed``.
    """
    if on_duplicate not in ON_DUPLICATE:
        raise ValueError(f"on_duplicate must be one of {ON_DUPLICATE}, not {on_duplicate!r}")
    started = time.perf_counter()
    db, close = open_db(db)
    try:
        return _import(db, Path(path), kind, mapping, on_duplicate, progress, cancel, started, pseudonymise,
                       keep_overlap)
    finally:
        if close:
            db.close()


def _import(db, path, kind, mapping, on_duplicate, progress, cancel, started, pseudonymise=None,
            keep_overlap=False) -> ImportResult:
    if db.readonly:  # said before the file is read: nothing could be stored
        raise ImportFailed(f"{path}: import: {read_only_sentence(db)}")
    source = _source(path)
    kind, _, _, mapping, _ = _plan(db, source, kind, mapping)
    _check_mapping(source, kind, mapping)
    sha = file_sha256(path)
    earlier = [r[0] for r in db.execute(
        "SELECT id FROM imports WHERE sha256 = ? AND status = 'ok' ORDER BY id", [sha]).fetchall()]
    if earlier and on_duplicate == "error":
        raise ImportFailed(f"{path}: this file was already imported (import #{earlier[-1]})")
    if earlier and on_duplicate == "skip":
        items, events = _totals(db)
        return ImportResult(earlier[-1], path.name, kind, "skipped", 0, 0, 0, {}, items, events, 0, 0,
                            time.perf_counter() - started,
                            f"already imported (import #{earlier[-1]}): skipped", mapping)
    date_order, note = _date_order(source, mapping)
    numbers, id_readers, forms_note = _file_forms(source, mapping)
    note += forms_note
    items_before, events_before = _totals(db)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    tx = ImportTransaction(db, expected_rows=_estimate_rows(source), existing_events=events_before)
    ctx: Optional[ImportContext] = None
    try:
        tx.begin()
        if earlier and on_duplicate == "replace":
            tx.remove_imports(earlier)
        tx.start_bulk()
        import_id = tx.add_import_row(path.name, sha, kind, mapping, now)
        user_src = next((s for s, f in mapping.items() if f == "user_id"), None)
        pseudo = import_pseudonymiser(db.conn, pseudonymise) if user_src else None
        # read inside the import's write transaction: a forget listed before it is honoured, a later one
        # waits for the commit and then deletes what this import wrote
        ctx = ImportContext(db.conn, import_id, source, progress, cancel, pseudonymise=pseudo,
                            user_col=source.headers.index(user_src) if user_src else None,
                            forgotten=forget_matcher(db.conn, also=pseudo) if user_src else None,
                            numbers=numbers, item_ids=id_readers["item_id"], user_ids=id_readers["user_id"])
        ctx.tick(final=False)
        parse_ts = TimestampParser(date_order)
        if kind == "transactions":
            items_written = transactions.run(ctx, mapping, parse_ts)
        elif kind == "events":
            items_written = event_rows.run(ctx, mapping, parse_ts)
        else:
            items_written = catalogue_rows.run(ctx, mapping)
        ctx.tick(final=True, note="finishing: items, indexes, search index")
        merges = merge_case_clashes(db) if items_written and merging_enabled(db) else []
        appended = bool(earlier) and on_duplicate == "append"
        duplicate = 0 if keep_overlap or appended else tx.drop_rows_seen_before(import_id)
        ctx.events_added -= duplicate
        if items_written or (earlier and on_duplicate == "replace"):
            rebuild_fts(db)
            build_search_tops(db, cancel=cancel.check if cancel is not None else None)  # + search-log words
        elif ctx.events_added:
            build_log_words(db, cancel=cancel.check if cancel is not None else None)
        items, events = _totals(db)
        accepted = ctx.rows_read - ctx.rows_rejected - duplicate - ctx.rows_forgotten
        message = (_message(ctx, accepted, items, events, duplicate) + merge_note(merges) + note
                   + _renamed_note(source))
        tx.finish_import_row(import_id, ctx.rows_read, accepted, ctx.rows_rejected, message)
        save_mapping(db.conn, source.headers, kind, mapping)
        tx.commit()
    except Cancelled:
        tx.rollback()
        record_attempt(db, path.name, sha, kind, mapping, now, "cancelled",
                       f"cancelled at line {source.line_num}", ctx)
        raise
    except BaseException as exc:
        tx.rollback()
        where = f"line {source.line_num}" if source.line_num else "import"
        message = f"{path}: {where}: {storage_problem(exc, db) or f'{type(exc).__name__}: {exc}'}"
        record_attempt(db, path.name, sha, kind, mapping, now, "failed", message, ctx)
        if isinstance(exc, Exception):
            raise ImportFailed(message) from exc
        raise
    if ctx.progress is not None:
        ctx.tick(final=True)
    return ImportResult(
        import_id, path.name, kind, "ok", ctx.rows_read, accepted, ctx.rows_rejected, dict(ctx.reasons),
        items, events, items - items_before, ctx.events_added, time.perf_counter() - started, message,
        mapping, duplicate, merges, rows_forgotten=ctx.rows_forgotten,
    )


def _renamed_note(source: CsvSource) -> str:
    if not source.renamed:
        return ""
    pairs = ", ".join(f"{new!r}" for _old, new in source.renamed)
    return f" Repeated column names were numbered: {pairs}."


def _estimate_rows(source: CsvSource) -> int:
    """Rough number of rows in the file (size / bytes per sample line; gzip ≈ 6:1)."""
    lines = source.format.sample_lines
    if len(lines) < 2:
        return 0
    per_line = max(1.0, sum(len(x.encode("utf-8", "replace")) for x in lines) / len(lines))
    ratio = 6.0 if source.path.suffix.lower() == ".gz" else 1.0
    return int(source.size_bytes * ratio / per_line)


def _message(ctx: ImportContext, accepted: int, items: int, events: int, duplicate: int = 0) -> str:
    msg = f"{accepted:,} of {ctx.rows_read:,} rows imported"
    if duplicate:
        msg += f", {duplicate:,} rows were already in the workspace (skipped)"
    if ctx.rows_forgotten:
        msg += f", {ctx.rows_forgotten:,} rows of forgotten users dropped (merch-app forget)"
    if ctx.rows_rejected:
        reasons = ", ".join(f"{k} {v:,}" for k, v in ctx.reasons.most_common())
        msg += f", {ctx.rows_rejected:,} rejected ({reasons})"
    return msg + f"; workspace: {items:,} items, {events:,} events."
