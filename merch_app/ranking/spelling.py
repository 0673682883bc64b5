"""Spelling correction from the catalogue's own vocabulary and the shop's search log.

A query word that matches nothing in the search index (``grden``) gets up to
:data:`MAX_ALTERNATIVES` indexed words as weighted alternatives (``green``
1.0, ``garden`` 0.71 when green is in twice as many items); the lexical searcher scores the word as the best of
them, each alternative's BM25 times its weight
(:meth:`merch_app.ranking.lexical.QueryTerms.weigh`).

Candidates are the indexed words within an optimal-string-alignment distance
(a swap of two neighbouring letters counts as one edit) of at most 1 edit for
words of up to 6 letters and 2 for longer ones.  Each has a frequency prior

    prior(w) = (1 - LOG_SHARE) * items(w) / items_total + LOG_SHARE * sessions(w) / sessions_total

where ``items(w)`` is the number of items containing the word and
``sessions(w)`` the number of search-log sessions whose successful searches
used it (:mod:`merch_app.data.spell_vocab`; a log word no item contains is
never a target).  Without a search log the prior is the item share alone.
The best alternative has the fewest edits, ties broken by the larger prior,
then alphabetically; it is what "showing results for ..." says and what the
encoder reads.  Every candidate ``w`` gets the weight

    weight(w) = EXTRA_EDIT ** (d(w) - d_best) * min(1, prior(w) / prior(best)) ** FREQ_POWER

(1 for the best; a noisy-channel ratio with the prior damped by the square
root, so a word in a quarter as many items keeps half the weight, and each
edit more than the best's costs a factor :data:`EXTRA_EDIT`).  The
:data:`MAX_ALTERNATIVES` heaviest candidates of weight :data:`MIN_WEIGHT` or
more are kept.

A word the index knows is never corrected, and only Latin words of 3+
letters are (digits, codes and Han words are not).

The vocabulary is read on the first word that needs a correction (from the
``spell_words`` table stored with the index's top lists, else from the index
itself; the log words from ``meta``) and kept for the life of the searcher
(one index state).  Distances are computed by rapidfuzz (C++), which scans a
100k-word vocabulary in milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import OSA

from merch_app.data.spell_vocab import SPELL_WORD, load_log_words

MAX_ALTERNATIVES = 3
EXTRA_EDIT = 0.2
FREQ_POWER = 0.5
MIN_WEIGHT = 0.05
LOG_SHARE = 0.5


@dataclass(frozen=True)
class Alternative:
    """One indexed word offered for a misspelt one."""

    word: str
    distance: int
    doc_freq: int
    sessions: int
    weight: float

    def to_dict(self) -> dict:
        return {"word": self.word, "weight": round(self.weight, 4), "distance": self.distance,
                "items": self.doc_freq, "sessions": self.sessions}


@dataclass(frozen=True)
class Correction:
    """One corrected query word: the best alternative and all alternatives searched (best first)."""

    original: str
    corrected: str
    distance: int
    doc_freq: int
    alternatives: tuple[Alternative, ...] = ()

    def to_dict(self) -> dict:
        return {"original": self.original, "corrected": self.corrected, "distance": self.distance,
                "items": self.doc_freq, "alternatives": [a.to_dict() for a in self.alternatives]}


def max_edits(word: str) -> int:
    """Edits allowed for ``word``: 1 up to 6 letters, else 2 (two edits turn pillow into yellow)."""
    return 1 if len(word) <= 6 else 2


def correctable(word: str) -> bool:
    """True for a lower-case Latin word of 3+ letters (no digits)."""
    return SPELL_WORD.fullmatch(word) is not None


class Speller:
    """Nearest indexed words for a word the index does not know.

    Parameters
    ----------
    db
        The workspace owned by the calling thread (its ``items_fts`` index).
    stored
        Returns True when the ``spell_words`` table matches the index (it is
        written with the top lists); otherwise the words are read from the
        index itself.
    alternatives
        Most alternatives per word (1: the best one only).
    search_log
        Weigh in the search-log words (:mod:`merch_app.data.spell_vocab`).
    """

    def __init__(self, db, stored: Optional[Callable[[], bool]] = None, alternatives: int = MAX_ALTERNATIVES,
                 search_log: bool = True) -> None:
        self.db = db
        self._stored = stored
        self.alternatives = max(int(alternatives), 1)
        self.search_log = search_log
        self._words: Optional[list[str]] = None
        self._docs: list[int] = []
        self._sessions: list[int] = []
        self._prior = np.zeros(0)

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
        log = load_log_words(self.db) if self.search_log else {}
        sessions = [log.get(w, 0) for w in words]
        self._words, self._docs, self._sessions = words, docs, sessions
        prior = np.asarray(docs, np.float64) / max(sum(docs), 1)
        if sum(sessions):
            prior = (1 - LOG_SHARE) * prior + LOG_SHARE * np.asarray(sessions, np.float64) / sum(sessions)
        self._prior = prior

    def correct(self, word: str) -> Optional[Correction]:
        """The alternatives for ``word`` (lower case), or None when nothing is close enough."""
        if not correctable(word):
            return None
        if self._words is None:
            self._load()
        hits = process.extract(word, self._words, scorer=OSA.distance, score_cutoff=max_edits(word), limit=None)
        if not hits:
            return None
        prior = self._prior
        hits.sort(key=lambda h: (h[1], -prior[h[2]], h[0]))
        d0, p0 = hits[0][1], prior[hits[0][2]]

        def weight(h) -> float:
            ratio = min(1.0, float(prior[h[2]] / p0)) if p0 > 0 else 1.0
            return float(EXTRA_EDIT ** (h[1] - d0) * ratio ** FREQ_POWER)

        weighed = sorted(((weight(h), n) for n, h in enumerate(hits)), key=lambda t: (-t[0], t[1]))
        alts = tuple(Alternative(hits[n][0], int(hits[n][1]), self._docs[hits[n][2]], self._sessions[hits[n][2]], w)
                     for w, n in weighed[:self.alternatives] if w >= MIN_WEIGHT or n == 0)
        best = alts[0]
        return Correction(word, best.word, best.distance, best.doc_freq, alts)
