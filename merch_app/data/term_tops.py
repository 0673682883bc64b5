"""Impact-ordered top lists for very common search terms and prefixes.

FTS5 computes ``bm25()`` for every row a phrase matches before it can sort,
so on a million-item catalogue one common word ("light": 27k rows) or a
short prefix while typing ("ho": every row, because every description says
"home") costs 20-600 ms.  For every term and prefix (2+ characters) matching
more than :data:`MIN_DF` rows, the best :data:`TOP_K` rows by that phrase's
own BM25 are stored once, after the search index is rebuilt (the import job
calls :func:`build_term_tops`).  The lexical searcher then answers a query
over such a phrase from the list instead of the posting list.

BM25 of one phrase depends on the row only through its term frequency and
length, so a phrase's list gives the exact top rows of a one-phrase query.
The lists are tied to the index they were computed from: a fingerprint of
FTS5's ``averages`` and ``structure`` records (both change on every write)
and the column weights.  When either differs, :func:`load_term_tops` returns
None and search falls back to the exact path.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Callable, Optional

import numpy as np

from merch_app.data.spell_vocab import SPELL_WORD, build_log_words

MIN_DF = 5_000
# The index words the spelling corrector may offer (merch_app.ranking.spelling) are stored with
# the top lists (table spell_words), because reading them from the index's fts5vocab costs ~0.9 s
# at 1M items; the search-log words are recounted with them (merch_app.data.spell_vocab).
TOP_K = 1_000
MAX_PREFIX = 12
META_KEY = "fts_tops_fingerprint"
_WEIGHTS = re.compile(r"[0-9.eE+\- ]+(, *[0-9.eE+\- ]+)*")
# Columns of the FTS5 index in order; title > tags > category > description, and item
# codes weigh most so that an exact code or model number is the first hit.  ``pinyin``
# (Han words of title, tags and category as pinyin, see merch_app.data.text_tokens)
# weighs like tags: one syllable string stands for several homophone words.
FIELDS = ("item_id", "title", "description", "tags", "category", "pinyin")
DEFAULT_FIELD_WEIGHTS = {"item_id": 10.0, "title": 4.0, "description": 1.0, "tags": 2.0,
                         "category": 1.5, "pinyin": 2.0}


def weights_sql(field_weights: dict[str, float]) -> str:
    """The BM25 column weights as the argument list of ``bm25(items_fts, ...)``, in :data:`FIELDS` order."""
    return ", ".join(repr(float(field_weights.get(f, 1.0))) for f in FIELDS)


def fts_fingerprint(db, weights_sql: str) -> str:
    """Digest of the FTS5 index state (row count, token totals, segments) and the BM25 weights."""
    h = hashlib.sha1(weights_sql.encode())
    for (block,) in db.execute("SELECT block FROM items_fts_data WHERE id IN (1, 10) ORDER BY id"):
        h.update(bytes(block or b""))
    return h.hexdigest()


def _big_phrases(db, min_df: int) -> list[tuple[str, bool]]:
    """Exact terms and prefixes whose document counts exceed ``min_df``; also refills ``spell_words``."""
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.items_fts_vocab USING fts5vocab(main, items_fts, row)")
    exact: list[tuple[str, bool]] = []
    prefix_sum: dict[str, int] = {}
    spell: list[tuple[str, int]] = []
    for term, doc in db.execute("SELECT term, doc FROM temp.items_fts_vocab"):
        if SPELL_WORD.fullmatch(term):
            spell.append((term, doc))
        if doc > min_df:
            exact.append((term, False))
        for n in range(2, min(len(term), MAX_PREFIX) + 1):
            prefix_sum[term[:n]] = prefix_sum.get(term[:n], 0) + doc
    db.execute("DELETE FROM spell_words")
    db.executemany("INSERT INTO spell_words(term, doc) VALUES (?, ?)", spell)
    # the sum over a prefix's terms bounds its row count from above
    prefixes = [(p, True) for p, s in sorted(prefix_sum.items()) if s > min_df]
    return exact + prefixes


def build_term_tops(db, weights_sql: str, *, min_df: Optional[int] = None, k: Optional[int] = None,
                    progress: Optional[Callable[[int, int], None]] = None,
                    cancel: Optional[Callable[[], None]] = None) -> int:
    """Recompute every top list for the current search index.

    Parameters
    ----------
    db
        The workspace (:class:`merch_app.data.workspace.Workspace`),
        inside the caller's transaction if it has one.
    weights_sql
        The comma-separated BM25 column weights the searcher uses.
    min_df, k
        Phrases matching more than ``min_df`` rows (default :data:`MIN_DF`) get a
        list of their ``k`` best rows (default :data:`TOP_K`).
    progress, cancel
        ``progress(done, total)`` after each phrase; ``cancel()`` raises to stop.

    Returns
    -------
    int
        Number of lists written.
    """
    if not _WEIGHTS.fullmatch(weights_sql):
        raise ValueError(f"BM25 weights must be comma-separated numbers, not {weights_sql!r}")
    min_df = MIN_DF if min_df is None else min_df
    k = TOP_K if k is None else k
    db.execute("DELETE FROM fts_tops")  # the table comes from workspace migration 3 (spell_words: 6)
    phrases = _big_phrases(db, min_df)
    build_log_words(db, cancel)
    written = 0
    for n, (term, prefix) in enumerate(phrases):
        if cancel is not None:
            cancel()
        phrase = '"' + term.replace('"', '""') + '"' + ("*" if prefix else "")
        df = db.execute("SELECT count(*) FROM items_fts WHERE items_fts MATCH ?", [phrase]).fetchone()[0]
        if df > min_df:
            rows = db.execute(f"SELECT rowid, -bm25(items_fts, {weights_sql}) AS s FROM items_fts "
                              "WHERE items_fts MATCH ? ORDER BY s DESC, rowid LIMIT ?", [phrase, k]).fetchall()
            db.execute("INSERT INTO fts_tops VALUES (?, ?, ?, ?, ?)",
                       [term, int(prefix), df, np.array([r[0] for r in rows], np.int64).tobytes(),
                        np.array([r[1] for r in rows], np.float64).tobytes()])
            written += 1
        if progress is not None:
            progress(n + 1, len(phrases))
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
               [META_KEY, json.dumps(fts_fingerprint(db, weights_sql))])
    return written


class TermTops:
    """The stored lists of one index state; lists are read on first use."""

    def __init__(self, db) -> None:
        self.db = db
        self._cache: dict[tuple[str, bool], Optional[tuple[int, np.ndarray, np.ndarray]]] = {}

    def get(self, term: str, prefix: bool) -> Optional[tuple[int, np.ndarray, np.ndarray]]:
        """``(df, rowids, scores)`` best first, or None when the phrase has no list."""
        key = (term, prefix)
        if key not in self._cache:
            row = self.db.execute("SELECT df, rowids, scores FROM fts_tops WHERE term = ? AND prefix = ?",
                                  [term, int(prefix)]).fetchone()
            self._cache[key] = None if row is None else (
                int(row[0]), np.frombuffer(row[1], np.int64), np.frombuffer(row[2], np.float64))
        return self._cache[key]


def load_term_tops(db, weights_sql: str) -> Optional[TermTops]:
    """The top lists if they were built for exactly this index state and weights, else None."""
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", [META_KEY]).fetchone()
        if row is None or json.loads(row[0]) != fts_fingerprint(db, weights_sql):
            return None
    except Exception:  # older workspace, no FTS data yet: search takes the exact path
        return None
    return TermTops(db)


def build_search_tops(db, field_weights: dict[str, float] | None = None, cancel=None) -> int:
    """Store the top lists of common terms for the current search index (after an FTS rebuild).

    Parameters
    ----------
    db
        The workspace connection of the calling thread.
    field_weights
        BM25 column weights by field (default :data:`DEFAULT_FIELD_WEIGHTS`).
    cancel
        Called between terms; raises to stop.

    Returns
    -------
    int
        The number of lists (see :func:`build_term_tops`).
    """
    weights = dict(DEFAULT_FIELD_WEIGHTS, **(field_weights or {}))
    return build_term_tops(db, weights_sql(weights), cancel=cancel)
