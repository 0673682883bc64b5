"""Privacy by choice: pseudonymised user ids at import.

Pseudonymisation replaces every user id by ``anon_`` + the first 20 hex digits
of HMAC-SHA256(key, id).  The 256-bit key is created at random on the first
pseudonymised import and kept in the workspace (``settings`` key
:data:`KEY_SETTING`), so the same customer gets the same pseudonym in every
later import and nothing else needs storing.  Once a workspace has had a
pseudonymised import, later imports pseudonymise too unless told otherwise
(:data:`MODE_SETTING`), so raw and pseudonymised ids never mix.  Explanations,
insights and exports read the ids stored in ``events``: they show pseudonyms.

This is pseudonymisation, not anonymisation: whoever holds the workspace (and
so the key) can test a known customer id against it.  Share exports, not the
workspace file, when that matters.

Forgetting a user is the use case :func:`merch_app.services.forget.forget_user`; the forget
list that every writer honours is :mod:`merch_app.data.forget_list`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from typing import Any, Optional

from merch_app.errors import MerchAppError

KEY_SETTING = "privacy.hmac_key"
MODE_SETTING = "privacy.pseudonymise"
PSEUDONYM_PREFIX = "anon_"
_PSEUDONYM = re.compile(r"anon_[0-9a-f]{20}")


class PrivacyError(MerchAppError, ValueError):
    """A privacy action cannot be done (message is user-facing)."""


def pseudonym(key: bytes, user_id: str) -> str:
    """The pseudonym of ``user_id`` under ``key`` (stable, not reversible without the key)."""
    digest = hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:20]


def is_pseudonym(text: str) -> bool:
    return bool(_PSEUDONYM.fullmatch(text or ""))


class Pseudonymiser:
    """Callable mapping raw user ids to pseudonyms, with a bounded cache for the import hot path."""

    def __init__(self, key: bytes, max_cache: int = 500_000) -> None:
        self.key = key
        self.max_cache = max_cache
        self._cache: dict[str, str] = {}

    def __call__(self, user_id: str) -> str:
        try:
            return self._cache[user_id]
        except KeyError:
            if len(self._cache) >= self.max_cache:
                self._cache.clear()
            value = self._cache[user_id] = pseudonym(self.key, user_id)
            return value


def _setting(conn, key: str) -> Any:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return json.loads(row[0]) if row else None


def workspace_key(db) -> Optional[bytes]:
    """The workspace's pseudonymisation key, or None if it never pseudonymised."""
    conn = getattr(db, "conn", db)
    value = _setting(conn, KEY_SETTING)
    return bytes.fromhex(value) if value else None


def is_pseudonymised(db) -> bool:
    """True when imports into this workspace pseudonymise user ids by default."""
    return bool(_setting(getattr(db, "conn", db), MODE_SETTING))


def import_pseudonymiser(conn, requested: Optional[bool]) -> Optional[Pseudonymiser]:
    """The pseudonymiser an import should use, creating the key when first needed.

    Runs inside the import's transaction (no commit): a rolled-back import
    leaves no key behind.

    Parameters
    ----------
    requested
        True / False as asked by the caller; None follows the workspace
        (pseudonymise if an earlier import did).
    """
    on = bool(_setting(conn, MODE_SETTING)) if requested is None else requested
    if not on:
        return None
    value = _setting(conn, KEY_SETTING)
    if not value:
        value = secrets.token_hex(32)
        conn.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", [KEY_SETTING, json.dumps(value)])
    conn.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", [MODE_SETTING, "true"])
    return Pseudonymiser(bytes.fromhex(value))


def stored_user_id(db, user_id: str) -> Optional[str]:
    """The id under which ``user_id`` (original id or pseudonym) is stored in ``events``, or None."""
    user_id = str(user_id).strip()
    candidates = [user_id]
    key = workspace_key(db)
    if key is not None and not is_pseudonym(user_id):
        candidates.insert(0, pseudonym(key, user_id))
    for candidate in candidates:
        if db.execute("SELECT 1 FROM events WHERE user_id = ? LIMIT 1", [candidate]).fetchone():
            return candidate
    return None
