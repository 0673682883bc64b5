"""The forget list: the users this workspace was asked to forget, and how far each forget got.

A forget is a logged, resumable operation (:mod:`merch_app.services.forget`):
its entry is written in the same transaction that deletes the user's events,
and every later step (rejected lines, saved models, leftover model folders,
the write-ahead log, the model refresh) is marked done as it finishes, so a
forget stopped half-way (a kill, a full disk) is finished by running it again.

The list never holds the id itself.  It holds HMAC-SHA256 digests, under a
random key of its own (settings :data:`KEY_SETTING`), of every form the id may
take in the workspace: as typed, as the importer cleans it (``99887.0`` →
``99887``, :func:`merch_app.data.values.clean_id`) and, in a pseudonymised
workspace, its pseudonym.  Every writer honours it by hashing the ids it is
about to store and comparing (:class:`ForgetMatcher`): an import drops the
rows of a listed user (also from ``rejected_rows``), and the model registry
removes listed users from a version inside the transaction that registers it.

Like pseudonyms, the digests can be tested: whoever holds the workspace (and
so the key) can check whether a known id was forgotten, but cannot list them.
"""
from __future__ import annotations

import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Optional

from merch_app.data.privacy import is_pseudonym, pseudonym, workspace_key
from merch_app.data.values import clean_id

KEY_SETTING = "privacy.forget_key"
# The steps of one forget, in the order they run (see merch_app.services.forget).
STEPS = ("events", "rejected", "models", "folders", "exports", "storage", "refresh")
# What separates the cells of a rejected raw line: any common delimiter and line breaks
# (an unbalanced quote swallows the following lines into one record).
_CELL_SPLIT = re.compile(r"[,;\t|\r\n]")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conn(db):
    return getattr(db, "conn", db)


def _key(conn, create: bool) -> Optional[bytes]:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", [KEY_SETTING]).fetchone()
    if row:
        return bytes.fromhex(json.loads(row[0]))
    if not create:
        return None
    value = secrets.token_hex(32)
    conn.execute("INSERT INTO settings(key, value) VALUES (?, ?)", [KEY_SETTING, json.dumps(value)])
    return bytes.fromhex(value)


def _digest(key: bytes, form: str) -> str:
    return hmac.digest(key, form.encode("utf-8"), "sha256").hex()


def id_forms(db, user_id: str) -> set[str]:
    """Every form ``user_id`` may be stored under in this workspace (never empty for a non-blank id).

    The id as given (trimmed), the importer's clean form of it (and, for a
    number, its spreadsheet form ``99887.0``, which an import keeps when its
    column is not all in that form), and the pseudonym of each when the
    workspace has a pseudonymisation key and the id is not a pseudonym itself.
    """
    text = str(user_id).strip()
    forms = {f for f in (text, clean_id(text)) if f}
    if clean_id(text).isdigit():  # the spreadsheet form, as an older import may have stored it
        forms.add(clean_id(text) + ".0")
    key = workspace_key(db)
    if key is not None and not is_pseudonym(text) and forms:
        forms.update({pseudonym(key, f) for f in forms})
    return forms


def stored_form(db, user_id: str) -> str:
    """The id under which the importer stores ``user_id`` (its pseudonym in a pseudonymised workspace)."""
    text = clean_id(str(user_id).strip())
    key = workspace_key(db)
    return pseudonym(key, text) if key is not None and not is_pseudonym(text) else text


@dataclass
class ForgetEntry:
    """One row of the forget list: when it was asked for and which steps are done."""

    entry_id: int
    requested: str
    steps: dict[str, dict] = field(default_factory=dict)  # step -> {"done": ts, counts...}
    finished: Optional[str] = None

    def done(self, step: str) -> bool:
        return step in self.steps

    @property
    def missing(self) -> list[str]:
        """The steps not done yet, in order."""
        return [s for s in STEPS if s not in self.steps]


def _entry(row) -> ForgetEntry:
    try:
        steps = json.loads(row[2]) if row[2] else {}
    except (ValueError, RecursionError):
        steps = {}
    return ForgetEntry(int(row[0]), row[1] or "", steps if isinstance(steps, dict) else {}, row[3])


def find_entry(db, forms: Iterable[str]) -> Optional[ForgetEntry]:
    """The list entry holding any of ``forms``, or None."""
    conn = _conn(db)
    key = _key(conn, create=False)
    if key is None:
        return None
    digests = [_digest(key, f) for f in forms]
    if not digests:
        return None
    marks = ",".join("?" * len(digests))
    row = conn.execute(
        f"SELECT l.entry_id, l.requested, l.steps, l.finished FROM forget_ids i JOIN forget_list l "
        f"USING (entry_id) WHERE i.id_hash IN ({marks}) ORDER BY l.entry_id LIMIT 1", digests).fetchone()
    return _entry(row) if row else None


def add_entry(db, forms: Iterable[str]) -> ForgetEntry:
    """Put a user (all their ``forms``) on the list; call inside the caller's transaction.

    Creates the list's key on first use (in the same transaction, so a rolled
    back forget leaves none).  Forms already listed under another entry stay there.
    """
    conn = _conn(db)
    key = _key(conn, create=True)
    now = _now()
    cur = conn.execute("INSERT INTO forget_list(requested, steps, revision) VALUES (?, '{}', 1)", [now])
    entry_id = int(cur.lastrowid)
    conn.executemany("INSERT OR IGNORE INTO forget_ids(id_hash, entry_id) VALUES (?, ?)",
                     [(_digest(key, f), entry_id) for f in sorted(set(forms))])
    return ForgetEntry(entry_id, now)


def add_forms(db, entry: ForgetEntry, forms: Iterable[str]) -> None:
    """List more forms under ``entry`` (e.g. its pseudonym once the workspace has a key)."""
    conn = _conn(db)
    key = _key(conn, create=True)
    conn.executemany("INSERT OR IGNORE INTO forget_ids(id_hash, entry_id) VALUES (?, ?)",
                     [(_digest(key, f), entry.entry_id) for f in sorted(set(forms))])


def mark_step(db, entry: ForgetEntry, step: str, **counts) -> None:
    """Record ``step`` of ``entry`` as done (with its counts); call inside the caller's transaction."""
    if step not in STEPS:
        raise ValueError(f"unknown forget step {step!r}")
    entry.steps[step] = {"done": _now(), **counts}
    entry.finished = entry.finished or (_now() if not entry.missing else None)
    _conn(db).execute("UPDATE forget_list SET steps = ?, finished = ?, revision = revision + 1 WHERE entry_id = ?",
                      [json.dumps(entry.steps, sort_keys=True), entry.finished, entry.entry_id])


def unfinished_entries(db) -> list[ForgetEntry]:
    """Entries with steps still to do (a forget that was stopped), oldest first."""
    rows = _conn(db).execute(
        "SELECT entry_id, requested, steps, finished FROM forget_list WHERE finished IS NULL ORDER BY entry_id")
    return [_entry(r) for r in rows]


def list_revision(db) -> int:
    """A number that changes whenever the list or any entry's steps change (cache keys)."""
    row = _conn(db).execute("SELECT count(*) + total(revision) FROM forget_list").fetchone()
    return int(row[0] or 0)


def cells(raw: str) -> set[str]:
    """The cells of a raw (rejected) line as an id would stand in them: split on every common delimiter
    and on line breaks, trimmed, quotes removed, and each also in the importer's clean form."""
    out: set[str] = set()
    for part in _CELL_SPLIT.split(raw or ""):
        part = part.strip().strip('"').strip()
        if part:
            out.add(part)
            out.add(clean_id(part))
    return out


class ForgetMatcher:
    """Tells whether an id (or a cell of raw text) belongs to a listed user.

    Holds only the digests and the key; each distinct value is hashed once
    (bounded cache), so an import pays one HMAC per distinct user.

    Parameters
    ----------
    key, digests
        The list's key and every listed digest.
    also
        Optional function giving another form of an incoming id to check too
        (an import's pseudonymiser: a user forgotten by pseudonym is matched
        before their raw id is pseudonymised).
    """

    def __init__(self, key: bytes, digests: set[str], also=None, max_cache: int = 200_000) -> None:
        self.key = key
        self.digests = digests
        self.also = also
        self.max_cache = max_cache
        self._cache: dict[str, bool] = {}

    @classmethod
    def for_ids(cls, ids) -> "ForgetMatcher":
        """A matcher of just ``ids`` (not the workspace's list), under a throw-away key."""
        key = secrets.token_bytes(32)
        return cls(key, {_digest(key, str(i)) for i in ids})

    def _listed(self, form: str) -> bool:
        return _digest(self.key, form) in self.digests

    def stored(self, user_id) -> bool:
        """True when ``user_id``, exactly as stored (events, model ids), is listed."""
        text = str(user_id)
        try:
            return self._cache[text]
        except KeyError:
            if len(self._cache) >= self.max_cache:
                self._cache.clear()
            hit = self._cache[text] = self._listed(text)
            return hit

    def __call__(self, raw_id) -> bool:
        """True when an incoming id cell (trimmed and cleaned like the importer does) is listed."""
        text = str(raw_id or "").strip()
        if not text:
            return False
        key = "\x00" + text
        try:
            return self._cache[key]
        except KeyError:
            clean = clean_id(text)
            hit = self._listed(text) or (clean != text and self._listed(clean))
            if not hit and self.also is not None:
                hit = self._listed(self.also(clean))
            if len(self._cache) >= self.max_cache:
                self._cache.clear()
            self._cache[key] = hit
            return hit

    def in_text(self, raw: str) -> bool:
        """True when any cell of a raw line (see :func:`cells`) is a listed id."""
        return any(self(c) for c in cells(raw))


def forget_matcher(db, also=None) -> Optional[ForgetMatcher]:
    """The matcher of the whole list, or None when the list is empty (writers then skip every check)."""
    conn = _conn(db)
    key = _key(conn, create=False)
    if key is None:
        return None
    digests = {r[0] for r in conn.execute("SELECT id_hash FROM forget_ids")}
    return ForgetMatcher(key, digests, also) if digests else None
