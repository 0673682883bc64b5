"""Lexical candidates: SQLite FTS5 with column-weighted BM25.

User text is never passed to FTS5 as a query expression.  It is split into
tokens the same way the ``unicode61`` tokenizer does (runs of letters and
digits), each token is quoted as an FTS5 string and the tokens are OR-ed, so
quotes, ``-``, ``*``, ``OR``, ``NEAR``, parentheses or SQL in the query are
plain words.  The last token is a prefix query (``"hear"*`` finds "heart")
while typing.  BM25 ranks documents matching more (and rarer) terms higher,
so an OR query still puts documents containing all terms first.

FTS5's ``bm25()`` is negative (lower is better); everything here returns the
positive score.  For one document, the BM25 of an OR query equals the sum of
the BM25 of each of its terms queried alone (the IDF of a phrase and the
average document length do not depend on the other phrases), which is how
:func:`term_scores` splits a score into per-term contributions exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

FIELDS = ("item_id", "title", "description", "tags", "category")
# title > tags > category > description; item codes weigh most so that an
# exact code or model number is the first hit.
DEFAULT_FIELD_WEIGHTS = {"item_id": 10.0, "title": 4.0, "description": 1.0, "tags": 2.0,
                         "category": 1.5}
MAX_TERMS = 16
MIN_PREFIX_CHARS = 2

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True)
class QueryTerms:
    """Tokens of a query and whether the last one is a prefix."""

    terms: tuple[str, ...]
    prefix_last: bool

    def phrase(self, i: int) -> str:
        """FTS5 expression of term ``i`` (quoted; ``*`` on the prefix term)."""
        star = "*" if self.prefix_last and i == len(self.terms) - 1 else ""
        return f'"{self.terms[i]}"{star}'

    def match(self) -> Optional[str]:
        """The OR-ed FTS5 MATCH expression, or None for a query with no tokens."""
        if not self.terms:
            return None
        return " OR ".join(self.phrase(i) for i in range(len(self.terms)))

    def labels(self) -> list[str]:
        """Terms as shown to users (``hear*`` for a prefix term)."""
        return [t + ("*" if self.prefix_last and i == len(self.terms) - 1 else "")
                for i, t in enumerate(self.terms)]


def tokenize(text: str) -> list[str]:
    """Lower-cased letter/digit runs of ``text`` (mirrors FTS5 ``unicode61``)."""
    return [t.casefold() for t in _TOKEN.findall(text or "")]


def query_terms(text: str, prefix: bool = True) -> QueryTerms:
    """Tokens of ``text`` for FTS5, de-duplicated in order, at most :data:`MAX_TERMS`.

    The last token is a prefix term when ``prefix`` is set, the text does not
    end in whitespace (the user is still typing it) and it has at least
    :data:`MIN_PREFIX_CHARS` characters.
    """
    seen: dict[str, None] = {}
    for tok in tokenize(text):
        seen.setdefault(tok, None)
    terms = tuple(list(seen)[:MAX_TERMS])
    prefix_last = bool(prefix and terms and not (text or "")[-1:].isspace()
                       and len(terms[-1]) >= MIN_PREFIX_CHARS
                       and tokenize(text)[-1] == terms[-1])
    return QueryTerms(terms, prefix_last)


def _weights_sql(field_weights: dict[str, float]) -> str:
    return ", ".join(repr(float(field_weights.get(f, 1.0))) for f in FIELDS)


def _filter_sql(filters) -> tuple[str, list]:
    """SQL conditions on ``items`` (aliased ``i``) for the active filters."""
    conds, args = [], []
    if filters is None:
        return "", args
    if filters.category:
        conds.append("i.category = ? COLLATE NOCASE")
        args.append(filters.category.strip())
    if filters.price_min is not None:
        conds.append("i.price >= ?")
        args.append(float(filters.price_min))
    if filters.price_max is not None:
        conds.append("i.price <= ?")
        args.append(float(filters.price_max))
    if filters.has_events:
        conds.append("EXISTS (SELECT 1 FROM events e WHERE e.item_id = i.item_id)")
    return "".join(" AND " + c for c in conds), args


class LexicalSearcher:
    """BM25 search over ``items_fts`` with per-field weights.

    Parameters
    ----------
    db
        An open workspace (``sqlite_utils.Database`` or ``sqlite3.Connection``)
        owned by the calling thread.
    field_weights
        BM25 column weights by field name (default :data:`DEFAULT_FIELD_WEIGHTS`).
    """

    def __init__(self, db, field_weights: dict[str, float] | None = None) -> None:
        self.db = db
        self.field_weights = dict(DEFAULT_FIELD_WEIGHTS, **(field_weights or {}))
        self._bm25 = f"bm25(items_fts, {_weights_sql(self.field_weights)})"

    def search(self, terms: QueryTerms, limit: int, filters=None) -> tuple[np.ndarray, np.ndarray, bool]:
        """Top ``limit`` rows by BM25.

        Returns
        -------
        rowids, scores, truncated
            ``items`` rowids and positive BM25 scores, best first; ``truncated``
            is True when more rows matched than were returned.
        """
        match = terms.match()
        if match is None or limit <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64), False
        where, args = _filter_sql(filters)
        if where:
            sql = (f"SELECT f.rowid, -{self._bm25} AS s FROM items_fts f JOIN items i "
                   f"ON i.rowid = f.rowid WHERE items_fts MATCH ?{where} ORDER BY s DESC LIMIT ?")
        else:
            sql = f"SELECT rowid, -{self._bm25} AS s FROM items_fts WHERE items_fts MATCH ? " \
                  "ORDER BY s DESC LIMIT ?"
        rows = self.db.execute(sql, [match, *args, int(limit) + 1]).fetchall()
        truncated = len(rows) > limit
        rows = rows[:limit]
        rowids = np.array([r[0] for r in rows], dtype=np.int64)
        scores = np.array([r[1] for r in rows], dtype=np.float64)
        return rowids, scores, truncated

    def scores_for(self, terms: QueryTerms, rowids) -> np.ndarray:
        """BM25 of the given rows for this query (0 where a row does not match)."""
        rowids = [int(r) for r in rowids]
        out = np.zeros(len(rowids), dtype=np.float64)
        match = terms.match()
        if match is None or not rowids:
            return out
        where = {r: n for n, r in enumerate(rowids)}
        for start in range(0, len(rowids), 500):
            chunk = rowids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            cur = self.db.execute(
                f"SELECT rowid, -{self._bm25} FROM items_fts WHERE items_fts MATCH ? "
                f"AND rowid IN ({marks})", [match, *chunk])
            for rowid, score in cur:
                out[where[rowid]] = score
        return out

    def term_scores(self, terms: QueryTerms, rowid: int) -> list[dict]:
        """Per-term BM25 of one row and the fields each term matched.

        Returns
        -------
        list of dict
            ``{"term", "prefix", "bm25", "fields"}`` per query term; the
            ``bm25`` values sum to the row's BM25 for the whole query.
        """
        out = []
        for i, term in enumerate(terms.terms):
            phrase = terms.phrase(i)
            row = self.db.execute(
                f"SELECT -{self._bm25} FROM items_fts WHERE items_fts MATCH ? AND rowid = ?",
                [phrase, int(rowid)]).fetchone()
            matched = []
            if row is not None:
                for f in FIELDS:
                    hit = self.db.execute(
                        "SELECT 1 FROM items_fts WHERE items_fts MATCH ? AND rowid = ?",
                        [f"{{{f}}} : {phrase}", int(rowid)]).fetchone()
                    if hit:
                        matched.append(f)
            out.append({"term": term, "prefix": terms.prefix_last and i == len(terms.terms) - 1,
                        "bm25": float(row[0]) if row else 0.0, "fields": matched})
        return out
