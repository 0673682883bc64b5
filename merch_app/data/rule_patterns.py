"""How a rule pattern written with the old prefixes reads as an explicit match type and text.

Before the rule-lifecycle migration a rule's ``pattern`` carried its match type in its text:
``re:REGEX`` (regular expression search), ``exact:TEXT`` (exactly this query), a
glob with ``*``/``?``/``[`` over the whole query, or plain words (the query holds
these words, in this order, next to each other).  They map without changing
what they match onto the match types of :mod:`merch_app.ranking.rules`:
``regex``, ``exact``, ``regex`` (the glob translated to an anchored expression)
and ``phrase``.  The rule-lifecycle migration converts stored rules with
:func:`legacy_pattern`; a rule made in code or on the command line without a
match type is read the same way.
"""
from __future__ import annotations

import fnmatch


def _collapse(text: str) -> str:
    return " ".join(str(text or "").casefold().split())


def legacy_pattern(pattern: str) -> tuple[str, str]:
    """``(match type, text)`` of an old-style pattern.

    Parameters
    ----------
    pattern
        ``*``/empty (every request), ``re:REGEX``, ``exact:TEXT``, a glob, or plain words.

    Returns
    -------
    tuple of (str, str)
        ``("phrase", "*")`` for every request; ``("regex", REGEX)``; ``("exact", TEXT)``;
        ``("regex", "^(?s:...)\\Z")`` for a glob (as :func:`fnmatch.fnmatchcase` matched it
        on the case-folded, whitespace-collapsed query); ``("phrase", words)`` otherwise.
    """
    pat = (pattern or "").strip()
    if pat in ("", "*"):
        return "phrase", "*"
    if pat.startswith("re:"):
        return "regex", pat[3:]
    if pat.startswith("exact:"):
        return "exact", pat[6:].strip()
    words = _collapse(pat)
    if any(c in words for c in "*?["):
        return "regex", "^" + fnmatch.translate(words)
    return "phrase", pat
