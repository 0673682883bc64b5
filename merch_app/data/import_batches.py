"""State shared by the per-kind row loops of one import: batches, rejects, progress.

The row loops (:mod:`catalogue_rows`, :mod:`event_rows`, :mod:`transactions`)
stay tight; everything they share — counting, rejecting a row with a stable
reason code, flushing batches with ``executemany``, progress and cancel — is
here.
"""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from typing import Callable, Iterator, Optional

from merch_app.data.csv_source import CsvSource
from merch_app.data.forget_list import ForgetMatcher
from merch_app.data.values import IdReader, NumberParser
from merch_app.jobs import CancelToken, EtaClock, Progress, ProgressCallback, Throttle

MAX_FIELD_BYTES = 64 * 1024
MAX_RAW_CHARS = 1024
MAX_STORED_REJECTS = 10_000  # per import; every reject is still counted
BATCH_ROWS = 10_000
CHECK_EVERY = 4096  # rows between cancel checks / progress reports

_CONTROL = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls but tab, LF, CR

INSERT_EVENT = (  # the rows of ImportContext.events, in this column order
    "INSERT INTO events(user_id, item_id, event_type, value, ts, query, session_id, import_id, position) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_REJECT = "INSERT INTO rejected_rows(import_id, line_no, raw, reason) VALUES (?, ?, ?, ?)"
WITHHELD = "(line withheld: user ids are pseudonymised in this workspace)"


class ImportContext:
    """Counters and batches of one running import (one thread, one connection)."""

    def __init__(
        self,
        conn,
        import_id: int,
        source: CsvSource,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
        *,
        pseudonymise: Optional[Callable[[str], str]] = None,
        user_col: Optional[int] = None,
        forgotten: Optional[ForgetMatcher] = None,
        numbers: Optional[NumberParser] = None,
        item_ids: Optional[IdReader] = None,
        user_ids: Optional[IdReader] = None,
    ) -> None:
        self.conn = conn
        # the file's decimal convention and id forms, decided from its sample (importer._file_forms)
        self.numbers = numbers or NumberParser()
        self.item_ids = item_ids or IdReader()
        self.user_ids = user_ids or IdReader()
        # users on the forget list (None: the list is empty): their rows are dropped and counted, never stored
        self.forgotten = forgotten
        self.rows_forgotten = 0
        self.pseudonymise = pseudonymise  # raw user id -> pseudonym (privacy.Pseudonymiser), or None
        self.user_col = user_col  # column of the user id, for rejected lines of pseudonymised imports
        self.import_id = import_id
        self.source = source
        self.progress = progress
        self.cancel = cancel
        self.rows_read = 0
        self.rows_rejected = 0
        self.reasons: Counter[str] = Counter()
        self.events: list[tuple] = []
        self.events_added = 0
        self._rejects: list[tuple] = []
        self._stored_rejects = 0
        self._throttle = Throttle(0.1)
        self._eta = EtaClock()
        self.ncols = len(source.headers)

    # ------------------------------------------------------------- rejects
    def raw_text(self, first: int, last: int, row: Optional[list[str]]) -> str:
        """Text of a record as it stood in the file (rebuilt for multi-line records).

        In a pseudonymised import the user cell is replaced by its pseudonym.
        A record that is not one physical line with the header's number of
        cells is withheld there: an unbalanced quote swallows the following
        lines (and their raw user ids) into one cell, and with cells missing
        or extra the user column cannot be told apart.
        """
        if self.pseudonymise is not None and self.user_col is not None:
            if row is None or first != last or len(row) != self.ncols:
                return WITHHELD
            row = list(row)
            user = self.user_ids(row[self.user_col])  # as its events store it
            user = row[self.user_col].strip() if user is None else user
            row[self.user_col] = self.pseudonymise(user) if user else ""
            first = -1  # rebuild from the cells
        if first == last or row is None:
            text = self.source.last_line.rstrip("\r\n")
        else:
            buf = io.StringIO()
            csv.writer(buf, delimiter=self.source.delimiter, lineterminator="").writerow(row)
            text = buf.getvalue()
        return text[:MAX_RAW_CHARS]

    def reject(self, first: int, last: int, row: Optional[list[str]], code: str, detail: str = "") -> None:
        """Count a bad row under ``code`` and keep its text (first 10,000 per import).

        A row of a forgotten user (its user cell, or any cell of its text) is
        dropped instead, counted in ``rows_forgotten`` and never stored.
        """
        if self.forgotten is not None and self.is_forgotten(row):
            self.rows_forgotten += 1
            return
        self.rows_rejected += 1
        self.reasons[code] += 1
        if self._stored_rejects >= MAX_STORED_REJECTS:
            return
        self._stored_rejects += 1
        reason = f"{code}: {detail}" if detail else code
        self._rejects.append((self.import_id, first, self.raw_text(first, last, row), reason[:300]))
        if len(self._rejects) >= 1000:
            self.flush_rejects()

    def is_forgotten(self, row: Optional[list[str]]) -> bool:
        """True when a record belongs to a user on the forget list (its user cell or any cell of its text)."""
        f = self.forgotten
        if f is None:
            return False
        if row is not None and self.user_col is not None and len(row) > self.user_col and f(row[self.user_col]):
            return True
        return f.in_text("\n".join(row) if row is not None else self.source.last_line)

    def flush_rejects(self) -> None:
        if self._rejects:
            self.conn.executemany(INSERT_REJECT, self._rejects)
            self._rejects.clear()

    # ---------------------------------------------------------- row checks
    def check_record(self, first: int, last: int, row: Optional[list[str]], text_cols: frozenset) -> Optional[list[str]]:
        """Full check of a suspicious record; returns the row (maybe trimmed) or None if rejected.

        Called by the loops only when the cheap tests fail (wrong width,
        long line, NUL, U+FFFD or several physical lines), so the common
        row pays nothing for it.
        """
        if row is None:
            self.reject(first, last, row, "bad_csv", f"unparsable quoting on lines {first}-{last}")
            return None
        if len(row) != self.ncols:
            if len(row) > self.ncols and not any(c.strip() for c in row[self.ncols:]):
                row = row[: self.ncols]  # trailing empty cells (spreadsheet export)
            elif first != last:
                self.reject(first, last, row, "bad_csv",
                            f"unbalanced quote: the record starting on line {first} runs to line {last} "
                            f"and has {len(row)} of {self.ncols} columns")
                return None
            else:
                self.reject(first, last, row, "wrong_column_count", f"expected {self.ncols}, got {len(row)}")
                return None
        headers = self.source.headers
        for col, cell in enumerate(row):
            if "\x00" in cell:
                self.reject(first, last, row, "nul_byte", f"column {headers[col]!r}")
                return None
            if len(cell) * 4 > MAX_FIELD_BYTES and len(cell.encode("utf-8")) > MAX_FIELD_BYTES:
                size = len(cell.encode("utf-8"))
                self.reject(first, last, row, "field_too_long", f"column {headers[col]!r} has {size} bytes")
                return None
            control = _CONTROL.search(cell)
            if control is not None:  # terminal escapes, bells, backspaces: never shop data
                self.reject(first, last, row, "control_char",
                            f"column {headers[col]!r} holds control character {control.group()!r}")
                return None
            if "\ufffd" in cell:
                self.reject(first, last, row, "bad_encoding",
                            f"column {headers[col]!r} is not valid {self.source.encoding}")
                return None
            if first != last and col not in text_cols and ("\n" in cell or "\r" in cell):
                self.reject(first, last, row, "bad_csv",
                            f"line break inside column {headers[col]!r} (unbalanced quote?)")
                return None
        return row

    def checked_records(self, text_cols: frozenset) -> Iterator[tuple[int, int, list[str]]]:
        """Yield ``(first_line, last_line, row)`` for each record that passes the row checks.

        Counts ``rows_read``, reports progress and polls cancel every
        ``CHECK_EVERY`` rows; records that fail a check are rejected (with their
        line numbers) by :meth:`check_record` and not yielded.
        """
        needs_check, check = self.needs_check, self.check_record
        n = 0
        for first, last, row in self.source.records():
            n += 1
            if not n % CHECK_EVERY:
                self.rows_read = n
                self.tick()
            if needs_check(first, last, row):
                row = check(first, last, row, text_cols)
                if row is None:
                    continue
            yield first, last, row
        self.rows_read = n

    def needs_check(self, first: int, last: int, row: Optional[list[str]]) -> bool:
        """Cheap test: does this record need :meth:`check_record`?"""
        if row is None or len(row) != self.ncols or first != last:
            return True
        line = self.source.last_line
        return len(line) > 4096 or "\x00" in line or "\ufffd" in line or _CONTROL.search(line) is not None

    # ------------------------------------------------------------- batches
    def flush_events(self) -> None:
        if self.events:
            batch = self.events
            if self.pseudonymise is not None:
                p = self.pseudonymise
                batch = [(p(e[0]) if e[0] else e[0],) + e[1:] for e in batch]
            self.conn.executemany(INSERT_EVENT, batch)
            self.events_added += len(self.events)
            self.events.clear()

    def flush(self) -> None:
        self.flush_events()
        self.flush_rejects()

    # ---------------------------------------------------- progress/cancel
    def tick(self, final: bool = False, note: str = "") -> None:
        """Check for cancel and report progress (throttled unless ``final``; ``note`` joins the message)."""
        if self.cancel is not None:
            self.cancel.check()
        if self.progress is None or not (final or self._throttle.ready()):
            return
        done = self.source.size_bytes if final else self.source.bytes_read
        total = self.source.size_bytes
        self.progress(
            Progress(
                done=done,
                total=total,
                message=f"{self.rows_read:,} rows" + (f" - {note}" if note else ""),
                eta_seconds=0.0 if final else self._eta.eta(done, total),
                data={"rows": self.rows_read, "bytes": done},
            )
        )
