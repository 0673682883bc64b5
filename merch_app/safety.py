"""Output safety shared by every exporter: spreadsheet formulas, HTML, SQL identifiers.

Shop data is untrusted: an item title can be ``=HYPERLINK("http://evil", "click")``
or ``<script>``, a column name can be ``"; DROP TABLE items; --``.  Exports and
SQL built from such text go through these helpers:

* :func:`csv_cell` / :func:`csv_row` — the one rule for every CSV export: a
  cell starting with ``= + - @``, a tab, a carriage return or a line feed
  (white space some spreadsheets skip before running an ``=`` behind it) gets a
  leading apostrophe so Excel, LibreOffice and Google Sheets show it as text
  instead of running it (OWASP "CSV injection").  Plain numbers like ``-3.5``
  stay numbers.  :func:`undo_csv_cell` removes exactly that apostrophe when
  the app reads back a file it wrote (judged query suites).
* :func:`html_text` — text for HTML element content or attribute values.
* :func:`sql_identifier` — a table/column/index name checked against a strict
  pattern and double-quoted; values always travel as ``?`` parameters.
"""
from __future__ import annotations

import html
import math
import re
from typing import Any, Iterable

from merch_app.errors import MerchAppError

FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r", "\n")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class UnsafeIdentifier(MerchAppError, ValueError):
    """A name that cannot be used as an SQL identifier (message is user-facing)."""


def _runs_as_formula(text: str) -> bool:
    """True when a spreadsheet could run ``text``: a formula lead that is not a plain number."""
    return text.startswith(FORMULA_LEAD) and not _NUMBER.fullmatch(text)


def _needs_apostrophe(text: str) -> bool:
    # Apostrophes already in front of a formula count too ("'=x" is written "''=x"), so that
    # undo_csv_cell can tell the added apostrophe from one that is part of the text.
    return _runs_as_formula(text.lstrip("'"))


def csv_cell(value: Any) -> Any:
    """A CSV cell that spreadsheets will not evaluate as a formula.

    Parameters
    ----------
    value
        Any cell value; None becomes ``""``; ints and finite floats are
        returned unchanged (they cannot carry a formula).

    Returns
    -------
    str or number
        Text starting with one of :data:`FORMULA_LEAD` (``= + - @``, tab,
        carriage return, line feed) prefixed with ``'``, unless it is a plain
        number such as ``-3.5`` or ``+44``.  Text whose leading apostrophes
        are followed by such a lead gets one more (``'=x`` becomes ``''=x``),
        so :func:`undo_csv_cell` gives back exactly ``str(value)``.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    text = str(value)
    return "'" + text if _needs_apostrophe(text) else text


def undo_csv_cell(text: str) -> str:
    """The text :func:`csv_cell` was given, from the cell it wrote.

    Parameters
    ----------
    text
        A cell as read back from a CSV file the app wrote (or one a person
        saved with the same convention).

    Returns
    -------
    str
        ``text`` without the apostrophe :func:`csv_cell` added; any other
        text unchanged (``'quoted`` stays ``'quoted``).
    """
    if text.startswith("'") and _needs_apostrophe(text[1:]):
        return text[1:]
    return text


def csv_row(values: Iterable[Any]) -> list[Any]:
    """:func:`csv_cell` applied to every value of a row (for ``csv.writer.writerow``)."""
    return [csv_cell(v) for v in values]


def html_text(value: Any) -> str:
    """``value`` as text safe inside HTML content or a quoted attribute (``<>&"'`` escaped)."""
    return html.escape("" if value is None else str(value), quote=True)


def sql_identifier(name: str) -> str:
    """``name`` double-quoted for SQL after checking it is a plain identifier.

    Raises
    ------
    UnsafeIdentifier
        Anything but ASCII letters, digits and ``_`` (first not a digit), at
        most 64 characters.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise UnsafeIdentifier(f"{name!r} is not a valid SQL name (letters, digits and _ only)")
    return f'"{name}"'
