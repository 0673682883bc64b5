"""The spelling corrector's search-log vocabulary: index words shoppers' successful searches used.

A search counts when something was clicked, carted or bought after it
(:func:`merch_app.data.search_log.completed_searches`, as-you-type prefixes
left out).  Each word of such a query is counted once per session
(``session_id``, else ``user_id``; a search without either counts alone), so
one shopper repeating a search does not make a word frequent.

Only words the search index knows are kept.  A log word no item contains
cannot match anything lexically, so it is never a correction target; nor is
it a reason to leave a query word uncorrected: a misspelt search often gets
its clicks *through* the correction ("vintge" finds vintage items), so a
click does not show that a word is right (on a synthetic log with typos,
leaving the words of 3+ successful sessions uncorrected lost 0.008 nDCG@10 on
the misspelt known-item queries against alternatives alone; docs/quality.md).
What the log adds is how often shoppers' successful searches use each index
word, which weighs in the corrector's frequency prior: it picks "xmas" over a
catalogue near-miss such as "mass" when shoppers search "xmas"
(:mod:`merch_app.ranking.spelling`).  Words no item contains (a name, a typo)
are not stored.

The counts are stored in ``meta`` under :data:`META_KEY` with the newest
event id they were counted from.  They are rebuilt with the index words
(:func:`merch_app.data.term_tops.build_term_tops`), after an import that
added events and when a user is forgotten (~0.8 s for 65k search-log events
over 540k purchases).  When events changed since (a newer event id),
:func:`load_log_words` gives nothing and the corrector uses the index words
alone.
"""
from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Callable, Optional

from merch_app.data.search_log import completed_searches, has_queries

# Words the corrector handles (merch_app.ranking.spelling): Latin, 3+ letters.
SPELL_WORD = re.compile(r"[a-z]{3,}")
META_KEY = "spell_log_words"
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def query_spell_words(key: str) -> list[str]:
    """The distinct correctable words of a query key (case-folded text), in order."""
    return list(dict.fromkeys(t for t in _TOKEN.findall(key) if SPELL_WORD.fullmatch(t)))


def successful_word_sessions(db, cancel=None) -> dict[str, int]:
    """Sessions in which each word was part of a search followed by a click, cart or purchase.

    Parameters
    ----------
    db
        The workspace.
    cancel
        ``cancel.check()`` now and then (see :func:`merch_app.data.search_log.search_visits`).

    Returns
    -------
    dict of str to int
        Word -> number of distinct sessions (a search with no session counts alone).
    """
    if not has_queries(db):
        return {}
    sessions: dict[str, set] = {}
    for n, v in enumerate(completed_searches(db, cancel=cancel)):
        if not v.clicked:
            continue
        who = v.session if v.session is not None else ("search", n)
        for word in query_spell_words(v.key):
            sessions.setdefault(word, set()).add(who)
    return {w: len(s) for w, s in sessions.items()}


def _events_mark(db) -> int:
    """The newest event id (0 without events): an index lookup."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])


def build_log_words(db, cancel: Optional[Callable[[], None]] = None) -> int:
    """Recount the search-log words (after the index words or the events changed).

    Keeps the words the search index knows.  Call inside the caller's
    transaction; nothing is committed here.

    Parameters
    ----------
    db
        The workspace.
    cancel
        Called now and then; raises to stop (as for :func:`merch_app.data.term_tops.build_term_tops`).

    Returns
    -------
    int
        Words stored.
    """
    counts = successful_word_sessions(db, SimpleNamespace(check=cancel) if cancel is not None else None)
    if counts:
        db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.items_fts_vocab USING fts5vocab(main, items_fts, row)")
    kept = {w: n for w, n in sorted(counts.items())
            if db.execute("SELECT 1 FROM temp.items_fts_vocab WHERE term = ?", [w]).fetchone()}
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
               [META_KEY, json.dumps({"events": _events_mark(db), "words": kept}, separators=(",", ":"))])
    return len(kept)


def load_log_words(db) -> dict[str, int]:
    """Word -> successful sessions, or ``{}`` when none were counted or events changed since."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", [META_KEY]).fetchone()
    if row is None:
        return {}
    stored: Optional[dict] = json.loads(row[0])
    if not isinstance(stored, dict) or stored.get("events") != _events_mark(db):
        return {}
    return {str(w): int(n) for w, n in (stored.get("words") or {}).items()}
