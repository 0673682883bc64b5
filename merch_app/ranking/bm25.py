"""FTS5's BM25, recomputed in Python for a handful of rows.

Asking FTS5 for the BM25 of given rows (``MATCH ? AND rowid = ?``) costs as
much as running the query (~0.2 ms per row at 100k items), so the ranker
scores the few hundred rows it needs here instead, with FTS5's own
statistics and exactly its formula (``fts5Bm25Function`` in fts5_aux.c)::

    idf_i  = log((N - n_i + 0.5) / (n_i + 0.5)), 1e-6 if <= 0
    f_i    = sum over the phrase's hits in the row of the column weight
    score  = sum_i idf_i * f_i * (k1 + 1) / (f_i + k1 * (1 - b + b * D / avgdl))

with k1 = 1.2, b = 0.75, N and the total token count from the FTS5
``averages`` record, D from ``items_fts_docsize`` and n_i (rows matching
phrase i) from an ``fts5vocab`` table (exact terms) or a count query
(prefix terms).  Term hits per column come from tokenising the row's text
like ``unicode61 remove_diacritics 2`` (letters/digits runs, diacritics
stripped, case folded); a test checks it against FTS5's ``bm25()``.
"""
from __future__ import annotations

import math
import re
import unicodedata

import regex
from typing import Sequence

K1 = 1.2
B = 0.75
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# combining marks (canonical combining class not 0, as unicodedata.combining()), removed in C
# rather than per character: 2/3 of scoring a segmented Chinese row went into that loop
_COMBINING = regex.compile(r"\P{ccc=0}+")


def fts_tokens(text: str) -> list[str]:
    """Tokens of ``text`` as FTS5 ``unicode61 remove_diacritics 2`` makes them."""
    if not text:
        return []
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    return [t.lower() for t in _TOKEN.findall(text)]


def read_varints(blob: bytes) -> list[int]:
    """Decode a run of SQLite/FTS5 varints."""
    out, i = [], 0
    while i < len(blob):
        value = 0
        for j in range(9):
            byte = blob[i]
            i += 1
            if j == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        out.append(value)
    return out


class Fts5Stats:
    """Row count, average row length and phrase document counts of ``items_fts``."""

    def __init__(self, db) -> None:
        self.db = db
        row = db.execute("SELECT block FROM items_fts_data WHERE id = 1").fetchone()
        values = read_varints(row[0]) if row and row[0] else [0]
        self.n_rows = values[0]
        total = sum(values[1:])
        self.avgdl = total / self.n_rows if self.n_rows else 0.0
        db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.items_fts_vocab "
                   "USING fts5vocab(main, items_fts, row)")
        self._df: dict[tuple[str, bool], int] = {}

    def doc_freq(self, term: str, prefix: bool) -> int:
        """Rows containing ``term`` (any term starting with it when ``prefix``)."""
        key = (term, prefix)
        hit = self._df.get(key)
        if hit is None:
            if prefix:
                hit = self.db.execute("SELECT count(*) FROM items_fts WHERE items_fts MATCH ?",
                                      [f'"{term}"*']).fetchone()[0]
            else:
                row = self.db.execute("SELECT doc FROM temp.items_fts_vocab WHERE term = ?",
                                      [term]).fetchone()
                hit = row[0] if row else 0
            self._df[key] = hit
        return hit

    def remember(self, term: str, prefix: bool, n_rows: int) -> None:
        """Record a document count known from elsewhere (the top lists store theirs)."""
        self._df[(term, prefix)] = n_rows

    def idf(self, term: str, prefix: bool) -> float:
        n_hit = self.doc_freq(term, prefix)
        value = math.log((self.n_rows - n_hit + 0.5) / (n_hit + 0.5)) if self.n_rows else 0.0
        return value if value > 0 else 1e-6

    def doc_sizes(self, rowids: Sequence[int]) -> dict[int, int]:
        """Total tokens of each row (all columns)."""
        out: dict[int, int] = {}
        ids = [int(r) for r in rowids]
        for s in range(0, len(ids), 500):
            chunk = ids[s:s + 500]
            for rowid, blob in self.db.execute(
                    f"SELECT id, sz FROM items_fts_docsize WHERE id IN ({','.join('?' * len(chunk))})", chunk):
                out[rowid] = sum(read_varints(blob))
        return out


def bm25_rows(stats: Fts5Stats, terms: Sequence[str], prefix_last: bool, rows: dict[int, Sequence[str]],
              column_weights: Sequence[float]) -> dict[int, list[float]]:
    """Per-term BM25 of each row, as FTS5 computes it for an OR of the terms.

    Parameters
    ----------
    rows
        rowid -> texts of the FTS5 columns in table order.
    column_weights
        Weight per column, same order.

    Returns
    -------
    dict
        rowid -> list of per-term scores (sum = the row's BM25).
    """
    folded = [fts_tokens(t)[0] if fts_tokens(t) else t for t in terms]
    prefix = [prefix_last and i == len(terms) - 1 for i in range(len(terms))]
    idf = [stats.idf(t, p) for t, p in zip(folded, prefix)]
    freqs: dict[int, list[float]] = {}
    for rowid, columns in rows.items():
        freq = [0.0] * len(terms)
        for col, text in enumerate(columns):
            if not text:
                continue
            if text.isascii():
                low = text.lower()
                if not any(t in low for t in folded):  # cheap reject before tokenising
                    continue
                toks = _TOKEN.findall(low)
            else:
                toks = fts_tokens(text)
            w = column_weights[col]
            for i, t in enumerate(folded):
                n = sum(1 for tok in toks if tok.startswith(t)) if prefix[i] else toks.count(t)
                if n:
                    freq[i] += w * n
        freqs[rowid] = freq
    sizes = stats.doc_sizes([r for r, f in freqs.items() if any(f)])
    out: dict[int, list[float]] = {}
    for rowid, freq in freqs.items():
        d = sizes.get(rowid, 0)
        norm = K1 * (1 - B + B * d / stats.avgdl) if stats.avgdl else K1
        out[rowid] = [idf[i] * (f * (K1 + 1.0)) / (f + norm) if f else 0.0 for i, f in enumerate(freq)]
    return out
