"""Files the app exported that may hold shoppers' ids, so that forgetting a user reaches them too.

An export of rejected rows (raw lines of the shop's files) or of query results "as user X" (the
request, the explanation's purchase history) leaves the workspace with customer ids in it.  Every
such export is logged in ``export_log`` (path, kind, time, SHA-256 of what was written).  When a
user is forgotten, :func:`scrub_exports` goes through the logged files that still exist:

* a CSV export loses the rows that hold the user (as a cell, in any id form the forget list knows),
  written to a temp file and renamed;
* a JSON export that holds the user is about them (a ranking as that user): it is deleted;
* a file that changed since the app wrote it (another program edited it) is not touched: the
  forget says where it is, for a person to look at.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Union

EXPORT_KINDS = ("rejected_rows", "query_results")


@dataclass
class ExportScrub:
    """What forgetting a user did to the exported files."""

    cleaned: list[str] = field(default_factory=list)  # CSV files whose rows holding the user were removed
    deleted: list[str] = field(default_factory=list)  # JSON exports about the user, removed
    untouched: list[str] = field(default_factory=list)  # changed since exported, or not writable: "path (why)"

    def sentence(self) -> str:
        parts = []
        if self.cleaned:
            parts.append(f"rows removed from {len(self.cleaned)} exported file(s) ({', '.join(self.cleaned)})")
        if self.deleted:
            parts.append(f"{len(self.deleted)} exported file(s) about the user deleted ({', '.join(self.deleted)})")
        if self.untouched:
            parts.append(f"exported file(s) that may still hold the user were not changed: "
                         f"{'; '.join(self.untouched)}")
        return ", ".join(parts)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_export(db, path: Union[str, Path], kind: str) -> None:
    """Log the file ``path`` just written by an export of ``kind`` (see :data:`EXPORT_KINDS`).

    A read-only workspace cannot log it (nothing else can be written there either).
    """
    if kind not in EXPORT_KINDS:
        raise ValueError(f"unknown export kind {kind!r}")
    if db.readonly:
        return
    p = Path(path).resolve()
    with db.conn:
        db.execute("DELETE FROM export_log WHERE path = ?", [str(p)])
        db.execute("INSERT INTO export_log(path, kind, created, sha256) VALUES (?, ?, ?, ?)",
                   [str(p), kind, datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), _sha(p.read_bytes())])


def _logged(db) -> list[tuple[int, Path, str, str]]:
    try:
        rows = db.execute("SELECT export_id, path, kind, sha256 FROM export_log ORDER BY export_id").fetchall()
    except sqlite3.OperationalError:  # a read-only workspace opened before the table existed
        return []
    return [(int(i), Path(p), k, s) for i, p, k, s in rows]


def _json_strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v)
    elif value is not None and not isinstance(value, bool):
        yield str(value)  # a numeric id (17850)


def _holds(path: Path, text: str, matcher) -> bool:
    """Whether the exported ``text`` holds an id ``matcher`` knows: a JSON value, or a cell of a CSV row."""
    if path.suffix.lower() == ".json":
        try:
            return any(matcher(s) for s in _json_strings(json.loads(text)))
        except ValueError:
            return matcher.in_text(text)
    return any(matcher.in_text(cell) for row in csv.reader(io.StringIO(text, newline="")) for cell in row)


def exports_holding(db, matcher) -> list[Path]:
    """Logged exports that still exist and hold an id ``matcher`` knows."""
    out = []
    for _id, path, _kind, _sha_hex in _logged(db):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if _holds(path, text, matcher):
            out.append(path)
    return out


def _without_rows(text: str, matcher) -> tuple[str, int]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    kept = [r for r in rows if not any(matcher.in_text(cell) for cell in r)]
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(kept)
    return buf.getvalue(), len(rows) - len(kept)


def scrub_exports(db, matcher) -> ExportScrub:
    """Take the users ``matcher`` knows out of the logged exports (see the module docstring)."""
    done = ExportScrub()
    for export_id, path, _kind, sha_hex in _logged(db):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            with db.conn:
                db.execute("DELETE FROM export_log WHERE export_id = ?", [export_id])
            continue
        except OSError as exc:
            done.untouched.append(f"{path} (cannot be read: {exc.strerror or exc})")
            continue
        text = data.decode("utf-8", errors="replace")
        if not _holds(path, text, matcher):
            continue
        if _sha(data) != sha_hex:
            done.untouched.append(f"{path} (changed since it was exported)")
            continue
        try:
            if path.suffix.lower() == ".json":
                path.unlink()
                with db.conn:
                    db.execute("DELETE FROM export_log WHERE export_id = ?", [export_id])
                done.deleted.append(str(path))
                continue
            cleaned, _removed = _without_rows(text, matcher)
            tmp = path.with_name(f".{path.name}.forget-tmp")
            tmp.write_text(cleaned, encoding="utf-8", newline="")
            os.replace(tmp, path)
        except OSError as exc:
            done.untouched.append(f"{path} (cannot be written: {exc.strerror or exc})")
            continue
        with db.conn:
            db.execute("UPDATE export_log SET sha256 = ? WHERE export_id = ?", [_sha(path.read_bytes()), export_id])
        done.cleaned.append(str(path))
    return done

