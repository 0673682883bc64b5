"""A starter suite derived from purchases, for shops with no search log.

Online Retail and most first exports have purchases but no searches, so a
rule preview can show rank moves but no metric change.  This suite stands in
until real judgments exist, and says so (``source = "derived:purchases"``).

Queries are words and adjacent word pairs of the titles of bought items (the
words a shopper would type for them): kept when at least :data:`MIN_ITEMS` and
at most :data:`MAX_ITEMS` catalogue titles hold every word of the query,
ranked by how many distinct shoppers bought a matching item (a word pair in
the order titles use most).  Grades come from behaviour among the items that
match the words: 3 for the most bought quarter (by distinct buyers, ties
included), 2 for the other bought ones, 1 for matching items nobody bought.  Items that do not match the
words are not judged.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Optional

import numpy as np

from merch_app.evaluation.known_items import _FILLER, NOT_KEY, title_words
from merch_app.evaluation.suite_data import Suite, SuiteError
from merch_app.jobs import CancelToken

SOURCE = "derived:purchases"
MIN_ITEMS = 3
MAX_ITEMS = 60
TOP_SHARE = 0.25  # the most bought quarter of the bought matches gets grade 3
_SKIP = NOT_KEY | _FILLER | {"for", "to", "on", "x", "pcs", "w", "no"}


def _content_words(title: str) -> list[str]:
    return [w for w in title_words(title) if w not in _SKIP and len(w) > 2 and not w.isdigit()]


def derive_starter_suite(db, name: str = "starter", *, n_queries: int = 60, min_items: int = MIN_ITEMS,
                         max_items: int = MAX_ITEMS, cancel: Optional[CancelToken] = None) -> Suite:
    """Build the starter suite from the workspace's purchases (see the module docstring).

    Parameters
    ----------
    name
        Suite name.
    n_queries
        Queries kept, the most bought first (ties: alphabetical).
    min_items, max_items
        A query must match at least / at most this many catalogue titles.

    Returns
    -------
    Suite
        ``source`` is :data:`SOURCE`; not stored (see :func:`merch_app.evaluation.suites.save_suite`).

    Raises
    ------
    SuiteError
        No purchases, or no title words that match few enough items.
    """
    buyers = dict(db.execute("SELECT item_id, count(DISTINCT coalesce(user_id, session_id, id)) FROM events "
                             "WHERE event_type = 'purchase' AND item_id IS NOT NULL GROUP BY item_id").fetchall())
    if not buyers:
        raise SuiteError("no purchases in this workspace: a starter suite is derived from what shoppers bought")
    words_of: dict[str, list[str]] = {}
    postings: dict[str, set[str]] = defaultdict(set)
    for n, (item_id, title) in enumerate(db.execute("SELECT item_id, title FROM items")):
        if cancel is not None and n % 5000 == 0:
            cancel.check()
        words = _content_words(title)
        words_of[str(item_id)] = words
        for w in set(words):
            postings[w].add(str(item_id))
    spellings: dict[frozenset, dict[tuple[str, ...], int]] = defaultdict(lambda: defaultdict(int))
    for item_id in buyers:
        words = words_of.get(str(item_id), [])
        for q in {(w,) for w in words} | {tuple(words[i:i + 2]) for i in range(len(words) - 1)
                                          if words[i] != words[i + 1]}:
            spellings[frozenset(q)][q] += 1
    candidates = [max(v.items(), key=lambda kv: (kv[1], kv[0]))[0] for v in spellings.values()]  # commonest order
    scored = []
    for query in candidates:
        matches = set.intersection(*(postings.get(w, set()) for w in query))
        if not min_items <= len(matches) <= max_items:
            continue
        bought = sum(buyers.get(i, 0) for i in matches)
        scored.append((-bought, " ".join(query), matches))
    if not scored:
        raise SuiteError(f"no title words match between {min_items} and {max_items} items: "
                         "a starter suite needs titles that share words")
    scored.sort(key=lambda s: (s[0], s[1]))
    suite = Suite(name, source=SOURCE,
                  description="derived from purchases (no search log): queries are title words of bought items; "
                              "grade 3 = the most bought quarter of the items whose titles hold the words, 2 = "
                              "bought, 1 = never bought. A stand-in for real judgments: compare systems and "
                              "rules with it, do not read it as an absolute figure.")
    for _neg, query, matches in scored[:n_queries]:
        counts = {i: buyers.get(i, 0) for i in matches}
        bought = [c for c in counts.values() if c > 0]
        top = float(np.quantile(bought, 1.0 - TOP_SHARE)) if bought else 0.0
        for item_id in sorted(matches):
            c = counts[item_id]
            suite.set_grade(query, item_id, 3 if c > 0 and c >= top else 2 if c > 0 else 1)
    return suite
