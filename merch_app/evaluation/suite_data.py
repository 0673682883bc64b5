"""A judged query suite as plain data: :class:`Suite`, grades and query normalisation.

Grades: 0 = not relevant, 1 = somewhat, 2 = relevant, 3 = perfect.  A query
counts as relevant-bearing when at least one item has grade >= 1.
Reading and writing files is in :mod:`merch_app.evaluation.suite_files`,
workspace storage in :mod:`merch_app.evaluation.suites`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from merch_app.data.search_log import normalise_query
from merch_app.errors import MerchAppError

MAX_GRADE = 3
QRELS_TOPICS_SUFFIX = ".topics.tsv"


class SuiteError(MerchAppError, ValueError):
    """A suite file or suite operation is invalid (message is user-facing)."""


@dataclass
class Suite:
    """Named queries with graded judgments.

    Attributes
    ----------
    name
        Unique name within a workspace.
    queries
        Query texts in display order (including queries not rated yet).
    judgments
        ``query -> {item_id: grade}``.
    source
        Where it came from: ``gui``, ``csv:<file>``, ``qrels:<file>``, ``behaviour``.
    raw
        The rows of the file it was read from, as written (empty for other suites); kept so
        repeated (query, item) pairs can be merged again by another policy.
    merge_policy
        How repeated pairs of ``raw`` were merged (:mod:`merch_app.evaluation.judgment_merge`).
    pairs_merged
        (query, item) pairs that ``raw`` holds more than once.
    """

    name: str
    queries: list[str] = field(default_factory=list)
    judgments: dict[str, dict[str, int]] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    suite_id: Optional[int] = None
    raw: list["RawJudgment"] = field(default_factory=list)
    merge_policy: Optional[str] = None
    pairs_merged: int = 0

    def add_query(self, query: str) -> str:
        """Add ``query`` (normalised) if missing; returns the normalised text."""
        q = normalise_query(query)
        if not q:
            raise SuiteError("a query must not be empty")
        if q not in self.judgments:
            self.judgments[q] = {}
            self.queries.append(q)
        return q

    def set_grade(self, query: str, item_id: str, grade: Optional[int]) -> None:
        """Set (or with ``grade=None`` remove) the judgment of ``item_id`` for ``query``."""
        q = self.add_query(query)
        if grade is None:
            self.judgments[q].pop(str(item_id), None)
            return
        self.judgments[q][str(item_id)] = check_grade(grade)

    def grades(self, query: str) -> dict[str, int]:
        return self.judgments.get(normalise_query(query), {})

    def relevant_queries(self) -> list[str]:
        """Queries with at least one item graded >= 1."""
        return [q for q in self.queries if any(g >= 1 for g in self.judgments.get(q, {}).values())]

    @property
    def n_judgments(self) -> int:
        return sum(len(j) for j in self.judgments.values())

    def rows(self) -> list[tuple[str, str, int]]:
        """``(query, item_id, grade)`` rows in query order, items by grade then id."""
        out = []
        for q in self.queries:
            for item_id, g in sorted(self.judgments.get(q, {}).items(), key=lambda kv: (-kv[1], kv[0])):
                out.append((q, item_id, g))
        return out

    def summary(self) -> dict:
        return {"name": self.name, "queries": len(self.queries), "judgments": self.n_judgments,
                "relevant_queries": len(self.relevant_queries()), "source": self.source,
                "raw_rows": len(self.raw), "pairs_merged": self.pairs_merged, "merge_policy": self.merge_policy}


@dataclass(frozen=True)
class RawJudgment:
    """One row of a judgment file as read.

    Attributes
    ----------
    line
        Its line number in the file.
    query
        The query, whitespace-collapsed (:func:`normalise_query`), in the row's own case.
    item_id
        The judged item; None for a row that only lists a query for rating later.
    grade
        0-3; None with ``item_id`` None.
    """

    line: int
    query: str
    item_id: Optional[str]
    grade: Optional[int]


def check_grade(grade: object) -> int:
    """``grade`` as an int in 0..3, or :class:`SuiteError`."""
    try:
        g = int(str(grade).strip()) if not isinstance(grade, int) else grade
    except ValueError:
        raise SuiteError(f"grade {grade!r} is not a whole number 0-{MAX_GRADE}") from None
    if not 0 <= g <= MAX_GRADE:
        raise SuiteError(f"grade {g} is outside 0-{MAX_GRADE}")
    return g
