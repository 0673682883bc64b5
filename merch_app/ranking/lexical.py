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
from typing import Callable, Optional

import numpy as np

from merch_app.data import text_tokens
from merch_app.data.term_tops import DEFAULT_FIELD_WEIGHTS, FIELDS, TermTops, load_term_tops, weights_sql
from merch_app.data.text_tokens import backoff_words, has_han, is_han, query_words
from merch_app.data.workspace import get_setting
from merch_app.ranking.bm25 import Fts5Stats, bm25_rows, fts_tokens
from merch_app.ranking.spelling import Correction, Speller

MAX_TERMS = 16
# Rows the OR query may touch (sum of the terms' document counts) before the
# most common terms are left out of it (FTS5 BM25 costs ~1-2 us per row, so
# this bounds the OR query to ~5-10 ms).
OR_SCAN_BUDGET = 5_000
MIN_PREFIX_CHARS = 2
# Candidates from the top lists and the rarer terms' query that are scored exactly.
SCORED_CANDIDATES = 400

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True)
class QueryTerms:
    """Tokens of a query and whether the last one is a prefix.

    A misspelt word corrected to several alternatives (see
    :mod:`merch_app.ranking.spelling`) has all of them in ``terms``, sharing
    one entry of ``slots`` (the query word they stand for), each with its
    ``weights`` entry.  Both are empty when no word has alternatives: every
    term is its own word with weight 1.
    """

    terms: tuple[str, ...]
    prefix_last: bool
    weights: tuple[float, ...] = ()
    slots: tuple[int, ...] = ()

    def slot_ids(self) -> np.ndarray:
        """The query word each term stands for (term ``i`` is word ``i`` without alternatives)."""
        return np.asarray(self.slots, np.int64) if self.slots else np.arange(len(self.terms))

    def weigh(self, matrix: np.ndarray) -> np.ndarray:
        """Per-term BM25 ``(rows, terms)`` -> what each term adds to a row's score.

        The alternatives of one word are an OR: only the best of them counts,
        its BM25 times its weight (the others give 0), so a row containing two
        alternatives of one typed word does not score twice for it.  Rows sum
        to the row's lexical score.  Without alternatives ``matrix`` is
        returned as it is.
        """
        if not self.slots:
            return matrix
        scaled = matrix * np.asarray(self.weights, np.float64)
        out = np.zeros_like(scaled)
        slots = self.slot_ids()
        rows = np.arange(scaled.shape[0])
        for s in np.unique(slots):
            cols = np.flatnonzero(slots == s)
            best = cols[np.argmax(scaled[:, cols], axis=1)]
            out[rows, best] = scaled[rows, best]
        return out

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


def tokenize(text: str, segment: bool = True) -> list[str]:
    """Lower-cased words of ``text``: letter/digit runs (as FTS5 ``unicode61``), Han runs cut into words.

    With ``segment`` False a Han run stays one token (a workspace whose
    ``search_tokens`` setting is ``plain``).
    """
    if not segment or not has_han(text):
        return [t.lower() for t in _TOKEN.findall(text or "")]
    out: list[str] = []
    for piece in query_words(text):
        out.extend([piece] if is_han(piece) else (t.lower() for t in _TOKEN.findall(piece)))
    return out


def query_terms(text: str, prefix: bool = True, segment: bool = True) -> QueryTerms:
    """Tokens of ``text`` for FTS5, de-duplicated in order, at most :data:`MAX_TERMS`.

    The last token is a prefix term when ``prefix`` is set, the text does not
    end in whitespace (the user is still typing it), it has at least
    :data:`MIN_PREFIX_CHARS` characters and it is not a Han word (Han words are
    indexed with their characters, which already match a word being typed).
    """
    tokens = tokenize(text, segment)
    seen: dict[str, None] = {}
    for tok in tokens:
        seen.setdefault(tok, None)
    terms = tuple(list(seen)[:MAX_TERMS])
    prefix_last = bool(prefix and terms and not (text or "")[-1:].isspace()
                       and len(terms[-1]) >= MIN_PREFIX_CHARS
                       and tokens[-1] == terms[-1] and not is_han(terms[-1]))
    return QueryTerms(terms, prefix_last)


@dataclass(frozen=True)
class QueryAnalysis:
    """What the lexical searcher made of a query.

    Attributes
    ----------
    terms
        The terms searched (after back-off and correction).
    corrections
        Misspelt words replaced by indexed ones (:class:`Correction`).
    backoffs
        Han words the index does not know -> the sub-words or characters searched instead.
    corrected_text
        The query text with the corrections applied (what the encoder reads),
        or None when nothing was corrected.
    """

    terms: QueryTerms
    corrections: tuple[Correction, ...] = ()
    backoffs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    corrected_text: Optional[str] = None

    def notes(self) -> list[str]:
        """User-facing sentences about corrections and back-offs."""
        out = []
        if self.corrections:
            out.append(f"showing results for \u201c{self.corrected_text}\u201d ("
                       + ", ".join(f"{c.original} \u2192 {c.corrected}" + _also(c) for c in self.corrections) + ")")
        for word, parts in self.backoffs:
            out.append(f"\u201c{word}\u201d is not an indexed word: searched as " + " + ".join(parts))
        return out


def _also(c: Correction) -> str:
    """`` (also garden 0.5, …)`` for a correction's other alternatives, else empty."""
    rest = [f"{a.word} {a.weight:.2g}" for a in c.alternatives[1:]]
    return f" (also {', '.join(rest)})" if rest else ""


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
        The open workspace
        owned by the calling thread.
    field_weights
        BM25 column weights by field name (default :data:`DEFAULT_FIELD_WEIGHTS`).
    known_word
        Words the encoder knows (``BertEncoder.knows_word``): never spelling-corrected.
    """

    def __init__(self, db, field_weights: dict[str, float] | None = None,
                 known_word: Optional[Callable[[str], bool]] = None) -> None:
        self.db = db
        self.field_weights = dict(DEFAULT_FIELD_WEIGHTS, **(field_weights or {}))
        self._bm25 = f"bm25(items_fts, {weights_sql(self.field_weights)})"
        self._stats: Optional[Fts5Stats] = None
        self._tops: Optional[TermTops] = None
        self._tops_checked = False
        self.segment = get_setting(db, text_tokens.SETTING, text_tokens.DEFAULT_MODE) != "plain"
        self.speller = Speller(db, stored=lambda: self.term_tops is not None)
        self.known_word = known_word
        self._rows_of: Optional[QueryTerms] = None
        self._row_scores: dict[int, Optional[list[float]]] = {}

    def analyse(self, text: str, prefix: bool = True, correct: bool = True) -> QueryAnalysis:
        """Terms to search for ``text``: tokenised like the index, unknown words backed off or corrected.

        A Han word the index does not know is searched as its known
        sub-words, else its known characters (:func:`backoff_words`); with
        ``correct``, a Latin word that matches no item is replaced by the
        nearest indexed word (:class:`merch_app.ranking.spelling.Speller`).
        A word the index knows is never changed, nor one for which the
        searcher's ``known_word`` (the encoder's vocabulary) is true: a real
        word the catalogue lacks is left to the text vectors.
        """
        base = query_terms(text, prefix, self.segment)
        out: list[tuple[str, float, int]] = []  # (term, weight, query word it stands for)
        corrections: list[Correction] = []
        backoffs: list[tuple[str, tuple[str, ...]]] = []
        for i, term in enumerate(base.terms):
            if self._doc_freq(*self._folded(base, i)) > 0:
                out.append((term, 1.0, len(out)))
            elif is_han(term) and len(term) > 1:
                subs = backoff_words(term)
                words = [w for w in subs if len(w) > 1 and self.stats.doc_freq(w, False) > 0]
                known = words or [c for c in subs if len(c) == 1 and self.stats.doc_freq(c, False) > 0]
                if known:
                    backoffs.append((term, tuple(known)))
                out.extend((w, 1.0, len(out) + n) for n, w in enumerate(known or [term]))
            elif correct and not (self.known_word is not None and self.known_word(term)) \
                    and (fix := self.speller.correct(term)) is not None:
                corrections.append(fix)
                slot = len(out)
                out.extend((a.word, a.weight, slot) for a in fix.alternatives)
            else:
                out.append((term, 1.0, len(out)))
        kept: dict[str, tuple[float, int]] = {}
        for term, weight, slot in out:  # a term already searched for another word stays that word's
            kept.setdefault(term, (weight, slot))
        terms = tuple(kept)[:MAX_TERMS]
        prefix_last = bool(base.prefix_last and terms and terms[-1] == base.terms[-1])
        weights: tuple[float, ...] = ()
        slots: tuple[int, ...] = ()
        if any(len(c.alternatives) > 1 for c in corrections):
            weights = tuple(kept[t][0] for t in terms)
            first = {s: n for n, s in enumerate(dict.fromkeys(kept[t][1] for t in terms))}
            slots = tuple(first[kept[t][1]] for t in terms)
        corrected = None
        if corrections:
            corrected = text
            for c in corrections:
                corrected = re.sub(rf"(?i)\b{re.escape(c.original)}\b", c.corrected, corrected, count=1)
        return QueryAnalysis(QueryTerms(terms, prefix_last, weights, slots), tuple(corrections), tuple(backoffs),
                             corrected)

    def search(self, terms: QueryTerms, limit: int, filters=None) -> tuple[np.ndarray, np.ndarray, bool]:
        """Top ``limit`` rows by BM25 of the OR of the terms.

        Cost control for large catalogues: with several terms the rows
        matching *all* of them are fetched first (cheap, and their BM25 is the
        OR-query BM25); only if they are fewer than ``limit`` is the OR query
        run.  When the terms' document counts add up to more than
        :data:`OR_SCAN_BUDGET` rows, the OR query runs over the rarest terms
        only, plus a query for rows having one of those and one of the common
        terms (FTS5 scores both over every phrase), so every returned score
        is the exact BM25; rows matching only the very common terms are then
        left to the semantic source.  Terms with a stored top list (see
        :mod:`merch_app.data.term_tops`) are answered from it instead.

        Returns
        -------
        rowids, scores, truncated
            ``items`` rowids and positive BM25 scores, best first; ``truncated``
            is True when more rows may match than were returned.
        """
        if not terms.terms or limit <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64), False
        if terms.slots:
            return self._search_alternatives(terms, limit, filters)
        big = self._big_terms(terms, limit, filters)
        if big:
            return self._search_with_tops(terms, limit, filters, big)
        found: dict[int, float] = {}
        n = len(terms.terms)
        if n > 1:
            rows = self._run(" AND ".join(terms.phrase(i) for i in range(n)), limit + 1, filters)
            if len(rows) > limit:
                return self._pack(dict(rows[:limit]), True, limit)
            found.update(rows)
        chosen = self._rarest_within_budget(terms, range(n))
        exact = len(chosen) == n
        rare = " OR ".join(terms.phrase(i) for i in sorted(chosen))
        rows = self._run(rare if exact else f"({rare})", limit + 1, filters)
        truncated = len(rows) > limit or not exact
        if not exact:
            # Rows with a chosen and a left-out term, scored by FTS5 over all
            # phrases (exact).  A row found only by the rare-term query either
            # has no left-out term (its score is exact) or scores below the
            # ``limit`` rows of this query, so it cannot reach the top.
            common = " OR ".join(terms.phrase(i) for i in range(n) if i not in chosen)
            both = self._run(f"({rare}) AND ({common})", limit + 1, filters)
            found.update(both)
            if len(both) > limit:
                floor = both[limit - 1][1]
                rows = [(r, sc) for r, sc in rows if r in found or sc >= floor]
        for r, sc in rows:
            found.setdefault(r, sc)
        return self._pack(found, truncated, limit)

    def _search_alternatives(self, terms: QueryTerms, limit: int, filters) -> tuple[np.ndarray, np.ndarray, bool]:
        """Search with a misspelt word's weighted alternatives (:meth:`QueryTerms.weigh`).

        FTS5 cannot weigh phrases or take the best of them, so the rows come
        from the plain OR of every term and are then scored exactly in Python
        (~11 us a row, +4 ms p50 for 300 rows at 100k items; the caller's
        coverage of the best rows reuses those scores).  A row's weighted
        score is at most its plain one, so a row the plain top ``limit`` left
        out scores at most the ``limit``-th plain score: the rows above that
        are the exact weighted top, those below it may miss a row.
        ``truncated`` is True when the plain OR query had more rows than ``limit``.
        (Asking FTS5 which of the rows hold a lighter alternative, to score
        only those, cost more than it saved: 15.6 against 13.2 ms.)
        """
        rowids, _, truncated = self.search(QueryTerms(terms.terms, terms.prefix_last), limit, filters)
        scores = self.scores_for(terms, rowids)
        return self._pack({r: sc for r, sc in zip(rowids.tolist(), scores.tolist()) if sc > 0}, truncated, limit)

    def _doc_freq(self, term: str, prefix: bool) -> int:
        """Rows with ``term``: from its stored top list when it has one (a short prefix such as
        "ho" matches most rows, and counting them costs tens of ms at 1M items), else FTS5."""
        tops = self.term_tops
        hit = tops.get(term, prefix) if tops is not None else None
        if hit is not None:
            self.stats.remember(term, prefix, hit[0])
            return hit[0]
        return self.stats.doc_freq(term, prefix)

    @property
    def term_tops(self) -> Optional[TermTops]:
        """Top lists of common phrases for this index state, or None (see :func:`load_term_tops`)."""
        if not self._tops_checked:
            self._tops = load_term_tops(self.db, weights_sql(self.field_weights))
            self._tops_checked = True
        return self._tops

    def _big_terms(self, terms: QueryTerms, limit: int, filters) -> dict[int, tuple]:
        """Query terms that have a top list (not with filters: the lists ignore them)."""
        if _filter_sql(filters)[0] or self.term_tops is None:
            return {}
        big = {}
        for i in range(len(terms.terms)):
            hit = self.term_tops.get(*self._folded(terms, i))
            if hit is not None and len(hit[1]) >= min(limit, hit[0]):
                big[i] = hit
                self.stats.remember(*self._folded(terms, i), hit[0])
        return big

    def _search_with_tops(self, terms: QueryTerms, limit: int, filters, big: dict[int, tuple]):
        """Search when some terms have a top list.

        Candidates: the rows matching all informative terms, the top lists of
        the common terms and the rarer terms' own query, all scored exactly.
        A row missing from all of them can only match some of the terms and
        with low term scores.  Terms in more than half of the rows get FTS5's
        minimum IDF (1e-6) and barely count in BM25, so they do not drive the
        AND query (a prefix such as "ho" can match every row).
        """
        n = len(terms.terms)
        if n == 1:
            df, rowids, scores = big[0]
            return self._pack(dict(zip(rowids[:limit].tolist(), scores[:limit].tolist())), df > limit, limit)
        found: dict[int, float] = {}
        stops = {i for i, hit in big.items() if hit[0] > self.stats.n_rows / 2}
        keep = [i for i in range(n) if i not in stops]
        if len(keep) > 1:
            rows = self._run(" AND ".join(terms.phrase(i) for i in keep), limit + 1, filters)
            if stops:  # FTS5 scored the kept phrases only
                rows = list(zip([r for r, _ in rows], self.scores_for(terms, [r for r, _ in rows]).tolist()))
            if len(rows) > limit:
                return self._pack(dict(rows), True, limit)
            found.update(rows)
        partial: dict[int, float] = {}  # rowid -> sum of the term scores known so far
        for _df, rowids, scores in big.values():
            for r, sc in zip(rowids[:limit].tolist(), scores[:limit].tolist()):
                partial[r] = partial.get(r, 0.0) + sc
        chosen = self._rarest_within_budget(terms, [i for i in range(n) if i not in big])
        if chosen:
            for r, sc in self._run(" OR ".join(terms.phrase(i) for i in sorted(chosen)), limit, filters):
                partial[r] = partial.get(r, 0.0) + sc
        for r in found:
            partial.pop(r, None)
        # Python BM25 costs ~11 us a row: score the most promising rows only
        rest = sorted(sorted(partial, key=lambda r: -partial[r])[:SCORED_CANDIDATES])
        for rowid, score in zip(rest, self.scores_for(terms, rest).tolist()):
            if score > 0:
                found[rowid] = score
        return self._pack(found, True, limit)

    def _rarest_within_budget(self, terms: QueryTerms, indices) -> list[int]:
        """Term indices, rarest first, while their document counts add up to at most
        :data:`OR_SCAN_BUDGET` (the rarest one is always taken)."""
        chosen, budget = [], 0
        for i in sorted(indices, key=lambda i: self.stats.doc_freq(*self._folded(terms, i))):
            df = self.stats.doc_freq(*self._folded(terms, i))
            if chosen and budget + df > OR_SCAN_BUDGET:
                break
            chosen.append(i)
            budget += df
        return chosen

    @property
    def stats(self) -> Fts5Stats:
        if self._stats is None:
            self._stats = Fts5Stats(self.db)
        return self._stats

    @staticmethod
    def _folded(terms: QueryTerms, i: int) -> tuple[str, bool]:
        toks = fts_tokens(terms.terms[i])
        return (toks[0] if toks else terms.terms[i]), terms.prefix_last and i == len(terms.terms) - 1

    def _run(self, match: str, limit: int, filters) -> list[tuple[int, float]]:
        where, args = _filter_sql(filters)
        if where:
            sql = (f"SELECT f.rowid, -{self._bm25} AS s FROM items_fts f JOIN items i "
                   f"ON i.rowid = f.rowid WHERE items_fts MATCH ?{where} ORDER BY s DESC LIMIT ?")
        else:
            sql = f"SELECT rowid, -{self._bm25} AS s FROM items_fts WHERE items_fts MATCH ? " \
                  "ORDER BY s DESC LIMIT ?"
        return [(int(r), float(s)) for r, s in self.db.execute(sql, [match, *args, int(limit)])]

    @staticmethod
    def _pack(found: dict[int, float], truncated: bool, limit: int):
        items = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))
        truncated = truncated or len(items) > limit
        items = items[:limit]
        return (np.array([r for r, _ in items], dtype=np.int64),
                np.array([s for _, s in items], dtype=np.float64), truncated)

    def scores_for(self, terms: QueryTerms, rowids) -> np.ndarray:
        """BM25 of the given rows for this query (0 where a row does not match).

        Computed in Python from FTS5's statistics (see :mod:`merch_app.ranking.bm25`):
        asking FTS5 per row costs as much as running the whole query.
        """
        return self.term_matrix(terms, rowids).sum(axis=1)

    def term_matrix(self, terms: QueryTerms, rowids) -> np.ndarray:
        """Per-term BM25 of the given rows: shape ``(len(rowids), len(terms.terms))``; rows sum to BM25.

        With alternatives the values are what each term adds (:meth:`QueryTerms.weigh`).  Rows
        already scored for the same terms are not scored again.
        """
        rowids = [int(r) for r in rowids]
        out = np.zeros((len(rowids), len(terms.terms)), dtype=np.float64)
        if not terms.terms or not rowids:
            return out
        if self._rows_of != terms:  # rows scored for the last query only (a search scores, then its caller)
            self._rows_of, self._row_scores = terms, {}
        known = self._row_scores
        missing = [r for r in dict.fromkeys(rowids) if r not in known]
        texts: dict[int, tuple] = {}
        for s in range(0, len(missing), 500):
            chunk = missing[s:s + 500]
            for row in self.db.execute(
                    f"SELECT item_rowid, {', '.join(FIELDS)} FROM items_search "
                    f"WHERE item_rowid IN ({','.join('?' * len(chunk))})", chunk):
                texts[int(row[0])] = tuple("" if v is None else str(v) for v in row[1:])
        if missing:
            weights = [float(self.field_weights.get(f, 1.0)) for f in FIELDS]
            per_term = bm25_rows(self.stats, terms.terms, terms.prefix_last, texts, weights)
            for r in missing:
                known[r] = per_term.get(r)
        for n, r in enumerate(rowids):
            if known[r] is not None:
                out[n] = known[r]
        return terms.weigh(out)

    def coverage(self, terms: QueryTerms, matrix: np.ndarray) -> np.ndarray:
        """Share of the query's IDF that each row matches: 1 for a row with every term.

        ``matrix`` is :meth:`term_matrix` of the rows.  A term no item
        contains has the largest IDF, so a query word the catalogue lacks
        lowers every row's coverage alike.
        """
        slots = terms.slot_ids()
        words = list(dict.fromkeys(slots.tolist()))
        if len(words) <= 1:
            return (matrix.sum(axis=1) > 0).astype(np.float64)
        # a word with alternatives counts once, with the IDF of its best alternative (its first term)
        first = [int(np.flatnonzero(slots == s)[0]) for s in words]
        idf = np.array([max(self.stats.idf(*self._folded(terms, i)), 1e-6) for i in first])
        hit = np.stack([(matrix[:, slots == s] > 0).any(axis=1) for s in words], axis=1).astype(np.float64)
        return hit @ idf / idf.sum()

    def term_scores(self, terms: QueryTerms, rowid: int) -> list[dict]:
        """Per-term BM25 of one row and the fields each term matched.

        Returns
        -------
        list of dict
            ``{"term", "prefix", "bm25", "weight", "fields"}`` per query term;
            the ``bm25`` values sum to the row's BM25 for the whole query.  For
            a misspelt word's alternatives ``bm25`` is what the term adds
            (weight times its own BM25 for the best of them, 0 for the others;
            :meth:`QueryTerms.weigh`) and ``fields`` are where it occurs.
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
                        "bm25": float(row[0]) if row else 0.0,
                        "weight": float(terms.weights[i]) if terms.weights else 1.0, "fields": matched})
        if terms.slots:
            added = terms.weigh(np.array([[p["bm25"] for p in out]]))[0]
            for part, value in zip(out, added.tolist()):
                part["bm25"] = value
        return out
