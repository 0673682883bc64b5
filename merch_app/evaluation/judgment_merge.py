"""Repeated judgments: the rows of a judgment file merged into one grade per (query, item).

Judgment files come from several raters, so one (query, item) pair can sit on several lines, and
queries that differ only in spacing or case (``fence  mesh`` / ``Fence mesh``) are one query
(:func:`merch_app.data.search_log.query_key`; the suite keeps the first spelling).  Policies:

* ``mean`` (default): the mean grade rounded half up to the 0-3 scale (1 and 2 give 2; 1, 1, 2 give 1);
* ``max``: the highest grade;
* ``latest``: the grade of the last row in file order;
* ``error``: refuse the file when two rows of a pair disagree, naming both lines.

The rows themselves stay on the suite (:attr:`Suite.raw`) and in the workspace, so a stored
suite can be merged again by another policy (:func:`merch_app.evaluation.suites.remerge_suite`).
"""
from __future__ import annotations

from collections.abc import Sequence

from merch_app.data.search_log import query_key
from merch_app.evaluation.suite_data import RawJudgment, Suite, SuiteError

MERGE_POLICIES = ("mean", "max", "latest", "error")
DEFAULT_MERGE = "mean"


def check_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`MERGE_POLICIES`, else :class:`SuiteError`."""
    if policy not in MERGE_POLICIES:
        raise SuiteError(f"unknown merge policy {policy!r}; choose one of {', '.join(MERGE_POLICIES)}")
    return policy


def merged_grade(grades: Sequence[int], policy: str) -> int:
    """One grade for the ``grades`` of a repeated pair (in file order) under ``policy``.

    ``error`` accepts only equal grades (the reader reports the lines before it gets here).
    """
    check_policy(policy)
    if not grades:
        raise SuiteError("no grades to merge")
    if policy == "max":
        return max(grades)
    if policy == "latest":
        return grades[-1]
    if policy == "error":
        if len(set(grades)) > 1:
            raise SuiteError(f"grades {', '.join(map(str, grades))} disagree")
        return grades[0]
    # Half up in integers: floor(sum / n + 1/2), exact for any count.
    return (2 * sum(grades) + len(grades)) // (2 * len(grades))


def _pair_rows(rows: Sequence[RawJudgment]) -> dict[tuple[str, str], list[RawJudgment]]:
    pairs: dict[tuple[str, str], list[RawJudgment]] = {}
    for r in rows:
        if r.item_id is not None:
            pairs.setdefault((query_key(r.query), r.item_id), []).append(r)
    return pairs


def repeated_pairs(rows: Sequence[RawJudgment]) -> int:
    """How many (query, item) pairs ``rows`` holds more than once."""
    return sum(1 for group in _pair_rows(rows).values() if len(group) > 1)


def merge_rows(name: str, rows: Sequence[RawJudgment], policy: str = DEFAULT_MERGE, *,
               source: str = "", where: str = "") -> Suite:
    """The suite ``name`` from judgment-file ``rows`` (in file order), repeated pairs merged by ``policy``.

    Parameters
    ----------
    where
        Names the file in error messages (``"<where>, line N: ..."``).

    Returns
    -------
    Suite
        With ``raw`` = ``rows``, ``merge_policy`` and ``pairs_merged`` set.

    Raises
    ------
    SuiteError
        ``policy`` is ``error`` and two rows of a pair disagree (both lines named), or an unknown policy.
    """
    check_policy(policy)
    prefix = f"{where}, " if where else ""
    suite = Suite(name, source=source, raw=list(rows), merge_policy=policy)
    spelling: dict[str, str] = {}
    for r in rows:
        spelling.setdefault(query_key(r.query), r.query)
        suite.add_query(spelling[query_key(r.query)])
    pairs = _pair_rows(rows)
    if policy == "error":
        clashes = [(r, group[0]) for group in pairs.values() for r in group if r.grade != group[0].grade]
        if clashes:
            clash, first = min(clashes, key=lambda c: c[0].line)  # the first one in file order
            raise SuiteError(
                f"{prefix}line {clash.line}: grade {clash.grade} for ({spelling[query_key(clash.query)]!r}, "
                f"{clash.item_id!r}) contradicts grade {first.grade} at line {first.line}; import with the "
                f"merge policy mean, max or latest to merge repeated pairs")
    for (key, item_id), group in pairs.items():
        suite.set_grade(spelling[key], item_id, merged_grade([r.grade for r in group], policy))
    suite.pairs_merged = sum(1 for group in pairs.values() if len(group) > 1)
    return suite
