"""Spelling correction from the catalogue's own vocabulary.

A query word that matches nothing in the search index (``chrismas``) is
replaced by the closest indexed word: smallest optimal-string-alignment
distance (a swap of two neighbouring letters counts as one edit), at most 1
edit for words of up to 6 letters and 2 for longer ones, ties broken by the
number of items that contain the word.  A word the index knows is never
corrected, and only Latin words of 3+ letters are (digits, codes and Han
words are not).

The vocabulary is read on the first word that needs a correction (from the
``spell_words`` table stored with the index's top lists, else from the index
itself) and kept for the life of the searcher (one index state).
Distances are computed by rapidfuzz (C++), which scans a 100k-word
vocabulary in milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from rapidfuzz import process
from rapidfuzz.distance import OSA

from merch_app.data.term_tops import SPELL_WORD


@dataclass(frozen=True)
class Correction:
    """One corrected query word."""

    original: str
    corrected: str
    distance: int
    doc_freq: int

    def to_dict(self) -> dict:
        return {"original": self.original, "corrected": self.corrected, "distance": self.distance,
                "items": self.doc_freq}


def max_edits(word: str) -> int:
    """Edits allowed for ``word``: 1 up to 6 letters, else 2 (two edits turn pillow into yellow)."""
    return 1 if len(word) <= 6 else 2


def correctable(word: str) -> bool:
    """True for a lower-case Latin word of 3+ letters (no digits)."""
    return SPELL_WORD.fullmatch(word) is not None


class Speller:
    """Nearest indexed word for a word the index does not know.

    Parameters
    ----------
    db
        The workspace owned by the calling thread (its ``items_fts`` index).
    stored
        Returns True when the ``spell_words`` table matches the index (it is
        written with the top lists); otherwise the words are read from the
        index itself.
    """

    def __init__(self, db, stored: Optional[Callable[[], bool]] = None) -> None:
        self.db = db
        self._stored = stored
        self._words: Optional[list[str]] = None
        self._docs: list[int] = []

    def _load(self) -> None:
        if self._stored is not None and self._stored():
            sql = "SELECT term, doc FROM spell_words"
        else:
            self.db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.items_fts_vocab "
                            "USING fts5vocab(main, items_fts, row)")
            sql = "SELECT term, doc FROM temp.items_fts_vocab"
        words, docs = [], []
        for term, doc in self.db.execute(sql):
            if correctable(term):
                words.append(term)
                docs.append(int(doc))
        self._words, self._docs = words, docs

    def correct(self, word: str) -> Optional[Correction]:
        """The correction of ``word`` (lower case), or None when nothing is close enough."""
        if not correctable(word):
            return None
        if self._words is None:
            self._load()
        limit = max_edits(word)
        hits = process.extract(word, self._words, scorer=OSA.distance, score_cutoff=limit, limit=None)
        if not hits:
            return None
        best = min(hits, key=lambda h: (h[1], -self._docs[h[2]], h[0]))
        return Correction(word, best[0], int(best[1]), self._docs[best[2]])
