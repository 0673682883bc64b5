"""Suites: CSV and TREC qrels round trips, bad input, workspace storage, behaviour generation."""
from __future__ import annotations

import csv

import pytest

from merch_app.evaluation.behaviour_suite import generate_from_behaviour
from merch_app.evaluation.suites import delete_suite, list_suites, load_suite, save_suite, set_judgment
from merch_app.evaluation.suite_files import (
    read_qrels, read_suite_csv, read_suite_file, write_qrels, write_suite_csv,
)
from merch_app.evaluation.suite_data import Suite, SuiteError


def _suite() -> Suite:
    s = Suite("hand")
    s.set_grade("red mug", "A1", 3)
    s.set_grade("red mug", "A2", 1)
    s.set_grade("red mug", "B9", 0)
    s.set_grade("=cmd()", "C1", 2)  # formula-looking query must survive a round trip
    s.add_query("lamp")  # not rated yet
    return s


def test_csv_round_trip(tmp_path):
    s = _suite()
    p = write_suite_csv(s, tmp_path / "s.csv")
    text = p.read_text()
    assert text.splitlines()[0] == "query,item_id,grade"
    assert "'=cmd()" in text  # escaped for spreadsheets
    back = read_suite_csv(p, name="hand")
    assert back.queries == ["red mug", "=cmd()", "lamp"]
    assert back.judgments == s.judgments
    assert back.n_judgments == 4
    assert back.relevant_queries() == ["red mug", "=cmd()"]


def test_csv_normalises_whitespace_and_accepts_semicolons(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("Query;Item_ID;Grade;note\n  red   mug ;A1;3;x\nred mug;A2;2;\n", encoding="utf-8")
    s = read_suite_csv(p)
    assert s.name == "s"
    assert s.judgments == {"red mug": {"A1": 3, "A2": 2}}


@pytest.mark.parametrize("body, problem", [
    ("query,item,grade\nq,A,1\n", "line 1: missing column(s) item_id"),
    ("query,item_id,grade\nq,A,4\n", "line 2: grade 4 is outside 0-3"),
    ("query,item_id,grade\nq,A,1\nq,B,high\n", "line 3: grade 'high' is not a whole number"),
    ("query,item_id,grade\n,A,1\n", "line 2: empty query"),
    ("query,item_id,grade\nq,,2\n", "line 2: empty item_id"),
    ("", "empty file"),
    ("query,item_id,grade\n", "no judgments found"),
])
def test_csv_errors_name_file_and_line(tmp_path, body, problem):
    p = tmp_path / "bad.csv"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(SuiteError) as err:
        read_suite_csv(p)
    assert str(p) in str(err.value)
    assert problem in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SuiteError, match="cannot read"):
        read_suite_csv(tmp_path / "nope.csv")


def test_qrels_round_trip_with_topics(tmp_path):
    s = _suite()
    qrels, topics = write_qrels(s, tmp_path / "s.qrels")
    assert qrels.read_text().splitlines()[0] == "1 0 A1 3"
    assert topics.read_text().splitlines()[1] == "2\t=cmd()"
    back = read_suite_file(qrels, name="hand")
    assert back.judgments == {q: j for q, j in s.judgments.items() if j}  # unrated query has no qrels line


def test_qrels_without_topics_uses_ids_caps_and_skips(tmp_path):
    p = tmp_path / "run.txt"
    p.write_text("# comment\n401 0 D1 5\n401 0 D2 -1\n402 0 D3 0\n", encoding="utf-8")
    s = read_qrels(p)
    assert s.judgments == {"401": {"D1": 3}, "402": {"D3": 0}}
    p.write_text("401 0 D1\n", encoding="utf-8")
    with pytest.raises(SuiteError, match=r"line 1: expected 4 fields"):
        read_qrels(p)


def test_qrels_rejects_item_ids_with_spaces(tmp_path):
    s = Suite("x")
    s.set_grade("q", "A 1", 1)
    with pytest.raises(SuiteError, match="whitespace"):
        write_qrels(s, tmp_path / "x.qrels")


def test_suite_csv_escapes_formulas_and_reads_them_back(tmp_path):
    """The file holds escaped cells (merch_app.safety.csv_cell); reading it gives the texts back."""
    s = Suite("evil")
    texts = ["=1+1", "+x", "-3", "-2+3", "@a", "'=quoted formula", "'quoted", "plain"]
    for n, text in enumerate(texts):
        s.set_grade(text, f"{text}#{n}", 1)
    p = write_suite_csv(s, tmp_path / "evil.csv")
    rows = list(csv.reader(open(p, newline="", encoding="utf-8")))[1:]
    assert [r[0] for r in rows] == ["'=1+1", "'+x", "-3", "'-2+3", "'@a", "''=quoted formula", "'quoted", "plain"]
    back = read_suite_csv(p)
    assert back.queries == s.queries and back.judgments == s.judgments


def test_store_load_replace_delete(ws):
    s = _suite()
    sid = save_suite(ws, s)
    assert s.suite_id == sid
    back = load_suite(ws, "hand")
    assert back.queries == s.queries and back.judgments == s.judgments
    assert list_suites(ws)[0] | {"updated": None} == {
        "suite_id": sid, "name": "hand", "description": "", "source": "", "updated": None,
        "queries": 3, "judgments": 4}
    s2 = Suite("hand", source="csv:x.csv")
    s2.set_grade("new", "Z", 2)
    assert save_suite(ws, s2) == sid  # replaced in place
    assert load_suite(ws, "hand").judgments == {"new": {"Z": 2}}
    with pytest.raises(SuiteError, match="already exists"):
        save_suite(ws, s2, replace=False)
    assert delete_suite(ws, "hand") and not delete_suite(ws, "hand")
    with pytest.raises(SuiteError, match="no suite named 'hand'"):
        load_suite(ws, "hand")


def test_set_judgment_creates_suite_and_survives_reopen(ws_path):
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    set_judgment(db, "rated", "Red Mug", "A1", 3)
    set_judgment(db, "rated", "Red Mug", "A2", 1)
    set_judgment(db, "rated", "lamp", "L1", 2)
    set_judgment(db, "rated", "Red Mug", "A2", None)  # un-rate
    with pytest.raises(SuiteError):
        set_judgment(db, "rated", "lamp", "L1", 7)
    db.close()
    db = open_workspace(ws_path)
    s = load_suite(db, "rated")
    assert s.queries == ["Red Mug", "lamp"]
    assert s.judgments == {"Red Mug": {"A1": 3}, "lamp": {"L1": 2}}
    assert s.source == "gui"
    db.close()


def _events(ws, rows):
    with ws.conn:
        ws.insert_rows("events", 
            [dict(zip(("user_id", "session_id", "ts", "event_type", "item_id", "query"), r)) for r in rows])


def test_generate_from_behaviour(ws):
    _events(ws, [
        ("u1", "s1", "2024-01-01T10:00:00Z", "search", None, "red mug"),
        ("u1", "s1", "2024-01-01T10:01:00Z", "click", "A1", None),
        ("u1", "s1", "2024-01-01T10:02:00Z", "purchase", "A1", None),
        ("u1", "s1", "2024-01-01T10:03:00Z", "click", "A2", None),
        ("u1", "s1", "2024-01-01T10:04:00Z", "search", None, "lamp"),
        ("u1", "s1", "2024-01-01T10:05:00Z", "cart", "L1", None),
        ("u1", "s1", "2024-01-01T12:00:00Z", "click", "L9", None),  # too late: not credited
        ("u2", "s2", "2024-01-02T09:00:00Z", "search", None, "Red  Mug"),
        ("u2", "s2", "2024-01-02T09:01:00Z", "cart", "A3", None),
        (None, None, "2024-01-02T09:05:00Z", "click", "L2", "lamp"),  # query on the event itself
        ("u3", "s3", "2024-01-02T09:05:00Z", "click", "X1", None),  # never searched
    ])
    s = generate_from_behaviour(ws, "beh", min_events=2)
    assert s.queries == ["red mug", "lamp"]  # 4 credited events, then 2
    assert s.judgments["red mug"] == {"A1": 3, "A2": 1, "A3": 2}
    assert s.judgments["lamp"] == {"L1": 2, "L2": 1}
    assert generate_from_behaviour(ws, "beh", min_events=3).queries == ["red mug"]
    with pytest.raises(SuiteError, match="5 or more"):
        generate_from_behaviour(ws, "beh", min_events=5)


def test_generate_without_queries_explains(ws):
    _events(ws, [("u1", None, "2024-01-01T10:00:00Z", "purchase", "A1", None)])
    with pytest.raises(SuiteError, match="no event in this workspace carries a query"):
        generate_from_behaviour(ws)
