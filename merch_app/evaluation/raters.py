"""Judging as a team: a grade per rater, a blind judging queue, and agreement between raters.

Each named rater's grade of a (query, item) pair is kept in the workspace (table
``rater_judgments``).  The suite's own grade of the pair (table ``judgments``, which suite
runs, reports and exports read) is its raters' grades merged by the suite's merge policy
(:mod:`merch_app.evaluation.judgment_merge`; ``mean`` when the suite has none), written again
each time a rater grades or clears the pair:

* once a rater has graded a pair, its raters' grades decide it: a grade the pair had from a
  file or from unnamed inline rating is replaced; with no rater left the pair is unjudged;
* ``latest`` is the grade given last; under ``error`` a pair whose raters disagree has no
  merged grade (it is unjudged) until they agree, and is listed by :func:`agreement`.

Unnamed inline rating (:func:`merch_app.evaluation.suites.set_judgment`) is unchanged: it
writes the merged grade directly and keeps no rater.

Agreement (:func:`agreement`) follows the textbook definitions: Cohen's kappa per pair of raters
over the pairs both graded (unweighted, and linear-weighted so that 2 against 3 counts less than
0 against 3), and Fleiss' kappa over the pairs graded by several raters.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations
from typing import Any, Callable, Hashable, Optional, Sequence

from merch_app.evaluation.judgment_merge import DEFAULT_MERGE, merged_grade
from merch_app.evaluation.suite_data import MAX_GRADE, SuiteError, check_grade
from merch_app.evaluation.suites import add_suite_query, load_suite, write_judgment
from merch_app.jobs import pause_point

RankFn = Callable[[str, int], Sequence[str]]
Pair = tuple[str, str]  # (query, item_id)
GRADES = tuple(range(MAX_GRADE + 1))


def check_rater(rater: object) -> str:
    """The rater's name, stripped; :class:`SuiteError` when it is empty."""
    name = " ".join(str(rater or "").split())
    if not name:
        raise SuiteError("a rater needs a name (e.g. --rater ann)")
    return name


# ------------------------------------------------------------------- storage
def _merge(grades: Sequence[int], policy: str) -> Optional[int]:
    """The merged grade of a pair's rater grades (oldest first); None for none or, under ``error``, a split."""
    if not grades or (policy == "error" and len(set(grades)) > 1):
        return None
    return merged_grade(grades, policy)


def rate(db, suite_name: str, query: str, item_id: str, grade: Optional[int], rater: str) -> Optional[int]:
    """Save ``rater``'s grade of ``item_id`` for ``query`` in the suite (created if missing); None clears it.

    The suite's merged grade of the pair is computed again from all its raters' grades, in the
    same transaction.

    Parameters
    ----------
    grade
        0-3, or None to remove this rater's grade.
    rater
        The rater's name (whitespace collapsed).

    Returns
    -------
    int or None
        The pair's merged grade now (None: unjudged).

    Raises
    ------
    SuiteError
        An empty rater, suite name, query or item id, or a grade outside 0-3.
    """
    name = check_rater(rater)
    item = str(item_id if item_id is not None else "").strip()
    if not item:
        raise SuiteError("an item id is needed to rate a result")
    if grade is not None:
        grade = check_grade(grade)
    with db.conn:
        sid, q = add_suite_query(db, suite_name, query)
        key = [sid, q, item, name]
        if grade is None:
            db.execute("DELETE FROM rater_judgments WHERE suite_id = ? AND query = ? AND item_id = ? AND rater = ?",
                       key)
        else:
            # OR REPLACE deletes the old row and inserts a new one, so rowid order is the order grades were given
            db.execute("INSERT OR REPLACE INTO rater_judgments(suite_id, query, item_id, rater, grade, updated) "
                       "VALUES (?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))", key + [grade])
        pause_point("raters.rate")  # kill tests: the rater's grade is written, the merged judgment not yet
        grades = [g for (g,) in db.execute("SELECT grade FROM rater_judgments WHERE suite_id = ? AND query = ? "
                                           "AND item_id = ? ORDER BY rowid", key[:3])]
        policy = db.execute("SELECT merge_policy FROM suites WHERE suite_id = ?", [sid]).fetchone()[0]
        merged = _merge(grades, policy or DEFAULT_MERGE)
        write_judgment(db, sid, q, item, merged)
    return merged


def _pair_grades(db, suite_id: int) -> dict[Pair, dict[str, int]]:
    """``(query, item_id) -> {rater: grade}`` of one suite, pairs in the order first graded."""
    out: dict[Pair, dict[str, int]] = {}
    for q, item_id, rater, g in db.execute("SELECT query, item_id, rater, grade FROM rater_judgments "
                                           "WHERE suite_id = ? ORDER BY rowid", [suite_id]):
        out.setdefault((q, item_id), {})[rater] = g
    return out


def raters(db, suite_name: str) -> list[dict[str, Any]]:
    """``{rater, grades, last}`` per rater of the stored suite (by name): how many pairs, when last.

    Raises
    ------
    SuiteError
        No suite of that name.
    """
    sid = load_suite(db, suite_name).suite_id
    rows = db.execute("SELECT rater, count(*), max(updated) FROM rater_judgments WHERE suite_id = ? "
                      "GROUP BY rater ORDER BY rater COLLATE NOCASE", [sid]).fetchall()
    return [{"rater": r, "grades": n, "last": last} for r, n, last in rows]


def rater_grades(db, suite_name: str, rater: str) -> dict[str, dict[str, int]]:
    """``query -> {item_id: grade}`` given by ``rater`` in the stored suite (empty if none)."""
    name = check_rater(rater)
    out: dict[str, dict[str, int]] = {}
    for q, item_id, g in db.execute(
            "SELECT r.query, r.item_id, r.grade FROM rater_judgments r JOIN suites s ON s.suite_id = r.suite_id "
            "WHERE s.name = ? AND r.rater = ?", [suite_name, name]):
        out.setdefault(q, {})[item_id] = g
    return out


# --------------------------------------------------------------------- queue
def judging_queue(db, suite_name: str, rank: RankFn, rater: str, depth: int = 10, seed: int = 0) -> list[Pair]:
    """The (query, item_id) pairs in the current top ``depth`` of each suite query that ``rater`` has not graded.

    In a seeded random order over all queries (blind judging: neither the rank nor the score is
    given, and results of one query are not in a row).  The order depends on ``seed`` and the
    rater's name, so two raters with one seed do not judge in the same order (order effects do
    not line up between raters); the same seed and rater always give the same order.

    Parameters
    ----------
    rank
        ``(query, n) -> item ids`` best first (e.g. from :func:`merch_app.evaluation.suite_run.model_ranker`).
    depth
        How many top results of each query are judged.

    Raises
    ------
    SuiteError
        No suite of that name, an empty rater, or ``depth`` < 1.
    """
    name = check_rater(rater)
    if depth < 1:
        raise SuiteError(f"the depth must be at least 1, not {depth}")
    suite = load_suite(db, suite_name)
    done = {pair for pair, by in _pair_grades(db, suite.suite_id).items() if name in by}
    pairs: list[Pair] = []
    for q in suite.queries:
        for item_id in list(rank(q, depth))[:depth]:
            pair = (q, str(item_id))
            if pair not in done:
                done.add(pair)  # an item listed twice is judged once
                pairs.append(pair)
    random.Random(f"{seed}\x00{name}").shuffle(pairs)  # a str seed is hashed with SHA-512: stable across runs
    return pairs


# ----------------------------------------------------------------- agreement
def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable], *, weighted: bool = False) -> Optional[float]:
    """Cohen's kappa of two raters' labels of the same subjects (``a[i]``, ``b[i]`` for subject i).

    ``kappa = (p_o - p_e) / (1 - p_e)`` with ``p_o`` the share of equal labels and ``p_e`` the
    share expected by chance from each rater's own label frequencies.  ``weighted`` gives the
    linear-weighted kappa of numeric labels: ``1 - D_o / D_e`` with ``D`` the mean ``|x - y|``
    observed and expected by chance.

    Returns
    -------
    float or None
        None when it is undefined: no subjects, or agreement by chance is certain (both raters
        always gave one and the same label).
    """
    if len(a) != len(b):
        raise ValueError(f"two raters need one label per subject each, not {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return None
    fa, fb = Counter(a), Counter(b)
    if weighted:
        observed = Fraction(sum(abs(x - y) for x, y in zip(a, b)), n)
        expected = Fraction(sum(ca * cb * abs(x - y) for x, ca in fa.items() for y, cb in fb.items()), n * n)
        return None if expected == 0 else float(1 - observed / expected)
    p_o = Fraction(sum(x == y for x, y in zip(a, b)), n)
    p_e = Fraction(sum(c * fb.get(label, 0) for label, c in fa.items()), n * n)
    return None if p_e == 1 else float((p_o - p_e) / (1 - p_e))


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> Optional[float]:
    """Fleiss' kappa from a subjects × categories table: ``counts[i][j]`` raters put subject i in category j.

    Every subject needs the same number ``n >= 2`` of ratings (the raters may differ between
    subjects).  ``kappa = (P - P_e) / (1 - P_e)`` with ``P`` the mean share of agreeing rater
    pairs per subject and ``P_e`` the sum of squared category shares.

    Returns
    -------
    float or None
        None when undefined: no subjects, or every rating is in one category.

    Raises
    ------
    ValueError
        Subjects with different numbers of ratings, or fewer than two.
    """
    if not counts:
        return None
    n = sum(counts[0])
    if n < 2 or any(sum(row) != n for row in counts):
        raise ValueError("Fleiss' kappa needs the same number (at least 2) of ratings for every subject")
    subjects = len(counts)
    p_bar = Fraction(sum(sum(c * c for c in row) - n for row in counts), subjects * n * (n - 1))
    totals = [sum(col) for col in zip(*counts)]
    p_e = Fraction(sum(t * t for t in totals), (subjects * n) ** 2)
    return None if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


@dataclass
class RaterPair:
    """Agreement of two raters over the (query, item) pairs both graded."""

    rater_a: str
    rater_b: str
    n: int
    agreement: Optional[float]  # share of pairs with the same grade
    kappa: Optional[float]
    weighted_kappa: Optional[float]  # linear weights

    def to_dict(self) -> dict[str, Any]:
        return {"raters": [self.rater_a, self.rater_b], "n": self.n, "agreement": self.agreement,
                "kappa": self.kappa, "weighted_kappa": self.weighted_kappa}


@dataclass
class Agreement:
    """How far the raters of a suite agree (see :func:`agreement`).

    Attributes
    ----------
    raters
        Names of the suite's raters.
    n_rated, n_pairs
        (query, item) pairs graded by at least one rater, and by at least two.
    agreement
        Share of the ``n_pairs`` on which every rater gave the same grade (None without such pairs).
    pairwise
        Cohen's kappa for every pair of raters with a pair in common.
    fleiss, fleiss_pairs, fleiss_raters
        Fleiss' kappa over the ``fleiss_pairs`` (query, item) pairs graded by exactly
        ``fleiss_raters`` raters (the most common count, see :func:`agreement`).
    disagreements
        ``{query, item_id, grades: {rater: grade}, spread}`` for pairs whose grades differ by at
        least ``min_spread``, widest spread first.
    """

    suite: str
    raters: list[str]
    n_rated: int
    n_pairs: int
    agreement: Optional[float]
    pairwise: list[RaterPair] = field(default_factory=list)
    fleiss: Optional[float] = None
    fleiss_pairs: int = 0
    fleiss_raters: int = 0
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    min_spread: int = 1

    @property
    def kappa_kind(self) -> Optional[str]:
        """``cohen`` for a suite with two raters, ``fleiss`` for more, None for fewer."""
        if len(self.raters) < 2:
            return None
        return "cohen" if len(self.raters) == 2 else "fleiss"

    @property
    def kappa(self) -> Optional[float]:
        """The headline kappa: Cohen's of the two raters, or Fleiss' for three or more."""
        if self.kappa_kind == "cohen":
            return self.pairwise[0].kappa if self.pairwise else None
        return self.fleiss if self.kappa_kind == "fleiss" else None

    @property
    def kappa_n(self) -> int:
        """How many (query, item) pairs the headline kappa is computed over."""
        if self.kappa_kind == "cohen":
            return self.pairwise[0].n if self.pairwise else 0
        return self.fleiss_pairs

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "raters": self.raters, "n_rated": self.n_rated, "n_pairs": self.n_pairs,
                "agreement": self.agreement, "kappa": self.kappa, "kappa_kind": self.kappa_kind,
                "kappa_n": self.kappa_n, "pairwise": [p.to_dict() for p in self.pairwise],
                "fleiss": {"kappa": self.fleiss, "pairs": self.fleiss_pairs, "raters_per_pair": self.fleiss_raters},
                "min_spread": self.min_spread, "disagreements": self.disagreements}


def _fleiss_subset(multi: dict[Pair, dict[str, int]]) -> tuple[Optional[float], int, int]:
    """Fleiss' kappa over the pairs with the most common rater count (ties: the larger count)."""
    if not multi:
        return None, 0, 0
    sizes = Counter(len(by) for by in multi.values())
    m = max(sizes, key=lambda size: (sizes[size], size))
    table = [[list(by.values()).count(g) for g in GRADES] for by in multi.values() if len(by) == m]
    return fleiss_kappa(table), len(table), m


def agreement(db, suite_name: str, min_spread: int = 1) -> Agreement:
    """Agreement between the raters of the stored suite ``suite_name``.

    * Cohen's kappa (unweighted and linear-weighted on the 0-3 scale) and the share of equal
      grades for every two raters, over the (query, item) pairs both graded;
    * Fleiss' kappa over the pairs graded by two or more raters.  Fleiss' kappa needs the same
      number of ratings per pair, so when raters graded different numbers of pairs only the pairs
      with the most common number of raters are used (ties: the larger number); the count used
      is ``fleiss_raters`` and the pairs ``fleiss_pairs``;
    * the pairs whose grades differ by ``min_spread`` or more (1: any difference), widest first.

    Raises
    ------
    SuiteError
        No suite of that name.
    """
    suite = load_suite(db, suite_name)
    by_pair = _pair_grades(db, suite.suite_id)
    names = sorted({r for by in by_pair.values() for r in by}, key=lambda r: (r.casefold(), r))
    pairwise = []
    for a, b in combinations(names, 2):
        both = [(by[a], by[b]) for by in by_pair.values() if a in by and b in by]
        if not both:
            continue
        ga, gb = [x for x, _ in both], [y for _, y in both]
        pairwise.append(RaterPair(a, b, len(both), sum(x == y for x, y in both) / len(both),
                                  cohen_kappa(ga, gb), cohen_kappa(ga, gb, weighted=True)))
    multi = {pair: by for pair, by in by_pair.items() if len(by) >= 2}
    fleiss, fleiss_pairs, fleiss_raters = _fleiss_subset(multi)
    same = sum(len(set(by.values())) == 1 for by in multi.values())
    disagreements = []
    for (q, item_id), by in multi.items():
        spread = max(by.values()) - min(by.values())
        if spread >= max(min_spread, 1):
            disagreements.append({"query": q, "item_id": item_id, "spread": spread,
                                  "grades": {r: by[r] for r in sorted(by, key=lambda r: (r.casefold(), r))}})
    disagreements.sort(key=lambda d: (-d["spread"], d["query"], d["item_id"]))
    return Agreement(suite.name, names, len(by_pair), len(multi), same / len(multi) if multi else None, pairwise,
                     fleiss, fleiss_pairs, fleiss_raters, disagreements, max(min_spread, 1))
