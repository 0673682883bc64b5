"""Search-log insight on a hand-made log: counts, zero results, no clicks, mined synonyms, CLI."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.search_log import search_visits
from merch_app.insights.search_log import (no_click_queries, synonym_suggestions, top_queries,
                                           zero_result_queries)
from ranking_fixtures import insert_items

ITEMS = [{"item_id": "M1", "title": "WHITE CERAMIC MUG"}, {"item_id": "C1", "title": "CHRISTMAS TREE LIGHTS"},
         {"item_id": "L1", "title": "GLASS LANTERN"}]


def _events(db, rows):
    """rows: (session, minute, type, item, query)"""
    with db.conn:
        db.executemany("INSERT INTO events(user_id, session_id, item_id, event_type, ts, query) VALUES (?,?,?,?,?,?)",
                       [(s, s, item, etype, f"2026-03-01T10:{m:02d}:00Z", q) for s, m, etype, item, q in rows])


def log_rows() -> list[tuple]:
    """The hand-made log: (session, minute, type, item, query) rows (also used by the Search log screen test)."""
    rows = []
    for n in range(3):  # "xmas lights" finds nothing useful, then "christmas lights" is clicked and bought
        s = f"s{n}"
        rows += [(s, 0, "search", None, "xmas lights"), (s, 2, "search", None, "christmas lights"),
                 (s, 3, "click", "C1", None), (s, 5, "purchase", "C1", None)]
    rows += [("t1", 0, "search", None, "cup"), ("t1", 1, "search", None, "mug"), ("t1", 2, "click", "M1", None),
             ("t2", 0, "search", None, "cup"), ("t2", 1, "search", None, "mug"), ("t2", 2, "cart", "M1", None)]
    rows += [("u1", 0, "search", None, "zzqx"), ("u2", 0, "search", None, "zzqx"),  # nothing matches, no click
             ("u3", 0, "search", None, "lantren"),  # misspelt, no click
             ("u4", 0, "search", None, "mug"), ("u4", 50, "click", "M1", None)]  # click 50 min later: not credited
    return rows


@pytest.fixture
def log_ws(ws):
    insert_items(ws, ITEMS)
    _events(ws, log_rows())
    return ws


def test_visits_credit_only_within_the_gap(log_ws):
    visits = [v for v in search_visits(log_ws) if v.session == "u4"]
    assert len(visits) == 1 and visits[0].events == []
    s0 = [v for v in search_visits(log_ws) if v.session == "s0"]
    assert [(v.query, [c[:2] for c in v.events]) for v in s0] == [
        ("xmas lights", []), ("christmas lights", [("click", "C1"), ("purchase", "C1")])]
    assert [c.ts for c in s0[1].events] == ["2026-03-01T10:03:00Z", "2026-03-01T10:05:00Z"]


def test_counts_ctr_and_conversion(log_ws):
    rows = {r["query"]: r for r in top_queries(log_ws)}
    assert rows["christmas lights"]["searches"] == 3 and rows["christmas lights"]["conversion"] == 1.0
    assert rows["mug"]["searches"] == 3 and rows["mug"]["clicked"] == 2
    assert rows["mug"]["ctr"] == pytest.approx(2 / 3)
    assert rows["xmas lights"]["ctr"] == 0.0


def test_zero_results_and_no_clicks(log_ws):
    zero = {r["query"]: r for r in zero_result_queries(log_ws)}
    assert set(zero) == {"cup", "zzqx", "lantren"}
    assert zero["lantren"]["corrected"] == "lantern" and zero["zzqx"]["corrected"] is None
    none = [r["query"] for r in no_click_queries(log_ws)]
    assert none == ["xmas lights", "cup", "zzqx"]  # 3, 2, 2 searches; "lantren" was searched once


def test_synonyms_mined_from_reformulations(log_ws):
    sug = synonym_suggestions(log_ws)
    assert [(s["source"], s["target"], s["kind"], s["sessions"], s["bought"]) for s in sug] == [
        ("xmas", "christmas", "synonym", 3, 3), ("cup", "mug", "synonym", 2, 0)]
    assert sug[0]["rule"] == "merch-app rules add synonym --terms 'xmas,christmas'"


def test_spelling_reformulation_is_labelled(ws):
    insert_items(ws, ITEMS)
    _events(ws, [row for s in ("a", "b") for row in ((s, 0, "search", None, "lantren"),
                                                   (s, 1, "search", None, "lantern"), (s, 2, "click", "L1", None))])
    assert [(s["source"], s["target"], s["kind"]) for s in synonym_suggestions(ws)] == [("lantren", "lantern", "spelling")]


def test_cli(log_ws, ws_path):
    res = CliRunner().invoke(cli, ["searchlog", "synonyms", "-w", str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["source"] == "xmas"
    res = CliRunner().invoke(cli, ["searchlog", "zero-results", "-w", str(ws_path)])
    assert "lantren" in res.output and "lantern" in res.output


def test_cli_without_a_search_log(ws, ws_path):
    insert_items(ws, ITEMS)
    res = CliRunner().invoke(cli, ["searchlog", "top", "-w", str(ws_path)])
    assert res.exit_code != 0 and "no event in this workspace carries a query" in res.output


def test_as_you_type_prefixes_are_not_searches_on_the_screen_nor_in_rule_usage(ws):
    """One count of searches: the Search log's top queries and rule usage agree, prefixes left out of both."""
    from merch_app.data.search_log import query_volumes

    insert_items(ws, ITEMS)
    _events(ws, [("p1", 0, "search", None, "chri"), ("p1", 0, "search", None, "christmas"),
                 ("p1", 1, "search", None, "christmas lights"), ("p1", 2, "click", "C1", None),
                 ("p2", 0, "search", None, "christmas"), ("p2", 5, "click", "C1", None)])
    rows = {r["query"]: r["searches"] for r in top_queries(ws)}
    assert rows == {"christmas lights": 1, "christmas": 1}  # p1's "chri" and "christmas" were being typed
    assert {v.query: v.searches for v in query_volumes(ws).values()} == rows
    assert synonym_suggestions(ws, min_sessions=1) == []  # typing is not a reformulation


def test_weekly_trend_and_the_28_day_change_on_a_hand_made_log(ws):
    """Mondays 2026-03-02 and 03-09, then nothing until 03-30: the empty weeks are there as 0."""
    from merch_app.insights.search_log import log_end, query_rows, weekly_trend

    insert_items(ws, ITEMS)
    rows = []
    for n, (day, query) in enumerate([("2026-03-02", "mug"), ("2026-03-03", "mug"), ("2026-03-04", "zzqx"),
                                      ("2026-03-10", "zzqx"), ("2026-03-30", "mug"), ("2026-03-31", "mug"),
                                      ("2026-04-01", "mug")]):
        rows.append((f"w{n}", f"{day}T10:00:00Z", "search", None, query))
    rows.append(("w0", "2026-03-02T10:01:00Z", "click", "M1", None))
    with ws.conn:
        ws.executemany("INSERT INTO events(user_id, session_id, ts, event_type, item_id, query) VALUES (?,?,?,?,?,?)",
                       [(s, s, ts, e, i, q) for s, ts, e, i, q in rows])
    qr = query_rows(ws)
    assert log_end(qr) == "2026-04-01"
    trend = weekly_trend(qr, {"zero": {"zzqx"}})
    assert trend["weeks"] == ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23", "2026-03-30"]
    assert trend["all"] == [3, 1, 0, 0, 3] and trend["zero"] == [1, 1, 0, 0, 0]
    mug = next(r for r in top_queries(ws) if r["query"] == "mug")
    assert (mug["recent"], mug["previous"]) == (3, 2)  # 03-05..04-01 against 02-05..03-04
    assert "days" not in mug
