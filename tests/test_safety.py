"""The one CSV formula-escaping rule (merch_app.safety): known answers and the read-back inverse."""
from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from merch_app.safety import FORMULA_LEAD, csv_cell, csv_row, undo_csv_cell

PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def test_formula_leads_get_an_apostrophe():
    """OWASP CSV injection: = + - @ tab CR, and a line feed (some spreadsheets skip it before an =)."""
    assert set(FORMULA_LEAD) == {"=", "+", "-", "@", "\t", "\r", "\n"}
    cases = {
        "=1+1": "'=1+1", "+cmd": "'+cmd", "-2+3": "'-2+3", "@SUM(A1)": "'@SUM(A1)",
        "\t=1": "'\t=1", "\r=1": "'\r=1", "\n=1+1": "'\n=1+1", "\n\n=HYPERLINK(\"x\")": "'\n\n=HYPERLINK(\"x\")",
        "\nplain": "'\nplain", "=": "'=", "-": "'-",
        # plain numbers stay numbers, ordinary text stays text
        "-3.5": "-3.5", "+44": "+44", "1e5": "1e5", "-.5": "-.5", "plain": "plain", "a=b": "a=b",
        " =1": " =1", "": "",
        # apostrophes already in front of a formula get one more, so reading back can tell them apart
        "'=1+1": "''=1+1", "''@x": "'''@x", "'quoted": "'quoted", "'-3": "'-3", "'": "'",
    }
    assert {text: csv_cell(text) for text in cases} == cases


def test_non_text_values():
    assert csv_row([None, 7, -2.5, True, float("nan"), 0]) == ["", 7, -2.5, "True", "nan", 0]
    assert csv_cell(float("-inf")) == "'-inf"  # not finite: written as text, and "-inf" is no plain number


def test_undo_known_answers():
    cases = {"'=1+1": "=1+1", "''=1+1": "'=1+1", "'\n=1": "\n=1", "'-2+3": "-2+3",
             # not apostrophes csv_cell adds: kept
             "'quoted": "'quoted", "'-3.5": "'-3.5", "-3.5": "-3.5", "'": "'", "": ""}
    assert {written: undo_csv_cell(written) for written in cases} == cases


@given(st.text(alphabet=st.sampled_from(list("=+-@'\t\r\n 0123.5eaxé")), max_size=8) | st.text(max_size=12))
def test_undo_inverts_csv_cell(text):
    cell = csv_cell(text)
    assert undo_csv_cell(cell) == text
    assert not cell.startswith(FORMULA_LEAD) or PLAIN_NUMBER.fullmatch(cell)  # only numbers keep a lead
