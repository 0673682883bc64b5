"""COEC click model on a hand-made position-biased log: known answers, import of positions, CLI, impressions ≠ behaviour.

The log (every visit shows four items for one query):

* "mug", 10 visits with a search event and query-less clicks: A at 1 (clicked in 5 visits, one double
  click), F2 at 2 (never), F3 at 3 (never), B at 4 (clicked in 3 visits);
* "cup", 10 visits without search events, impressions and clicks carry the query: C at 1 (8 clicks),
  E at 2 (4), G at 3 (none), D at 4 (1);
* "lamp", 3 visits: L at 5 (1 click), plus one impression of M without a position.

Position CTR: ctr(1) = 13/20 = 0.65, ctr(2) = 4/20 = 0.2, ctr(3) = 0/20, ctr(4) = 4/20 = 0.2, ctr(5) = 1/3.
COEC = clicks / (impressions × ctr(position)):
A 5/6.5 = 0.769 (grade 1), B 3/2 = 1.5 (2), C 8/6.5 = 1.231 (2), D 1/2 = 0.5 (1), E 4/2 = 2.0 (3), F2 0/2 = 0 (0);
F3 and G were shown only at position 3, where nobody clicked (left out); L has 3 impressions (< 5: left out).
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.header_mapping import guess_columns
from merch_app.data.importer import import_file
from merch_app.data.rejected import rejected_rows
from merch_app.data.search_log import search_visits
from merch_app.data.values import normalise_event_type, parse_position
from ranking_fixtures import insert_items
from merch_app.data.workspace import MIGRATIONS, schema_version
from merch_app.evaluation.click_model import coec_grade, coec_judgments
from merch_app.evaluation.suite_data import SuiteError
from merch_app.evaluation.suites import load_suite
from merch_app.jobs import CancelToken, Cancelled
from merch_app.model.bundle import item_popularity
from merch_app.model.interactions import DEFAULT_EVENT_WEIGHTS, load_interactions
from merch_app.model.user_vectors import DEFAULT_EVENT_WEIGHTS as USER_TEXT_WEIGHTS


def _ts(visit: int, minute: int) -> str:
    return f"2026-03-01T{10 + visit // 60:02d}:{visit % 60:02d}:{minute:02d}Z"


def biased_log() -> list[tuple]:
    """(user, session, item, type, ts, query, position) rows of the log in the module docstring."""
    rows = []
    for v in range(10):
        s = f"m{v}"
        rows.append((s, s, None, "search", _ts(v, 0), "mug", None))
        for item, pos in (("A", 1), ("F2", 2), ("F3", 3), ("B", 4)):
            rows.append((s, s, item, "impression", _ts(v, 0), "mug", pos))
        if v < 5:
            rows.append((s, s, "A", "click", _ts(v, 1), None, None))
        if v == 0:
            rows.append((s, s, "A", "click", _ts(v, 2), None, None))  # a double click: still one click
        if v in (0, 5, 6):
            rows.append((s, s, "B", "click", _ts(v, 3), None, None))
    for v in range(10, 20):
        s = f"c{v}"
        for item, pos in (("C", 1), ("E", 2), ("G", 3), ("D", 4)):
            rows.append((s, s, item, "impression", _ts(v, 0), " Cup ", pos))  # query_key: "cup"
        if v < 18:
            rows.append((s, s, "C", "click", _ts(v, 1), "cup", 1))
        if v < 14:
            rows.append((s, s, "E", "click", _ts(v, 2), "cup", 2))
        if v == 19:
            rows.append((s, s, "D", "click", _ts(v, 3), "cup", 4))
    for v in range(20, 23):
        s = f"l{v}"
        rows.append((s, s, None, "search", _ts(v, 0), "lamp", None))
        rows.append((s, s, "L", "impression", _ts(v, 0), "lamp", 5))
        if v == 20:
            rows.append((s, s, "M", "impression", _ts(v, 0), "lamp", None))
            rows.append((s, s, "L", "click", _ts(v, 1), None, None))
    return rows


def _insert(db, rows) -> None:
    with db.conn:
        db.executemany("INSERT INTO events(user_id, session_id, item_id, event_type, ts, query, position) "
                       "VALUES (?,?,?,?,?,?,?)", rows)


@pytest.fixture
def biased(ws):
    _insert(ws, biased_log())
    return ws


def test_coec_grades_the_clicked_low_item_above_the_top_item_known_answers(biased):
    got = coec_judgments(biased)
    assert got.position_ctr == pytest.approx({1: 0.65, 2: 0.2, 3: 0.0, 4: 0.2, 5: 1 / 3})
    assert got.position_impressions == {1: 20, 2: 20, 3: 20, 4: 20, 5: 3}
    a, b = got.evidence("mug", "A"), got.evidence("MUG", "B")
    # raw clicks rank A above B; corrected for position, B is the better result
    assert (a.impressions, a.clicks, b.impressions, b.clicks) == (10, 5, 10, 3)
    assert (a.expected, a.coec, a.grade) == (pytest.approx(6.5), pytest.approx(5 / 6.5), 1)
    assert (b.expected, b.coec, b.grade) == (pytest.approx(2.0), pytest.approx(1.5), 2)
    assert b.grade > a.grade
    table = {(p.query, p.item_id): (p.clicks, round(p.coec, 4), p.grade) for p in got.pairs}
    assert table == {("mug", "B"): (3, 1.5, 2), ("mug", "A"): (5, 0.7692, 1), ("mug", "F2"): (0, 0.0, 0),
                     ("Cup", "E"): (4, 2.0, 3), ("Cup", "C"): (8, 1.2308, 2), ("Cup", "D"): (1, 0.5, 1)}
    assert got.excluded == {"few_impressions": 1, "no_expected": 2, "unplaced": 1}  # L; F3, G; M
    s = got.suite
    assert s.name == "clicks (COEC)" and s.source == "clicks:coec"
    assert s.queries == ["Cup", "mug"]  # both 40 impressions: ties by key
    assert s.grades("mug") == {"B": 2, "A": 1, "F2": 0}
    assert s.grades("Cup") == {"E": 3, "C": 2, "D": 1}  # shown as first seen, like the behaviour suite
    assert got.evidence("mug", "F3") is None and got.evidence("lamp", "L") is None


def test_expected_clicks_add_up_to_the_clicks_of_the_judged_positions(biased):
    got = coec_judgments(biased, min_impressions=1)
    assert sum(p.expected for p in got.pairs) == pytest.approx(sum(p.clicks for p in got.pairs)) == 22  # 5+3+8+4+1+1


def test_min_impressions_keeps_or_drops_pairs(biased):
    low = coec_judgments(biased, min_impressions=3)
    lamp = low.evidence("lamp", "L")
    assert (lamp.impressions, lamp.clicks, lamp.expected, lamp.coec, lamp.grade) == (3, 1, 1.0, 1.0, 2)
    assert low.excluded["few_impressions"] == 0


def test_no_pair_with_enough_impressions_says_so(biased):
    with pytest.raises(SuiteError, match=r"shown 11 or more times .*the most: 10"):
        coec_judgments(biased, min_impressions=11)


def test_grades_by_threshold():
    assert [coec_grade(c) for c in (0.0, 0.49, 0.5, 0.99, 1.0, 1.99, 2.0, 7.0)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert coec_grade(1.2, (0.25, 1.5, 3.0)) == 1


def test_without_positioned_impressions_the_click_model_refuses(ws):
    _insert(ws, [("u", "s", None, "search", _ts(0, 0), "mug", None), ("u", "s", "A", "click", _ts(0, 1), None, 1),
                 ("u", "s", "A", "impression", _ts(0, 0), "mug", None)])
    with pytest.raises(SuiteError, match="no impression event with a position"):
        coec_judgments(ws)


def test_progress_and_cancel(biased):
    seen = []
    coec_judgments(biased, progress=seen.append)
    assert seen and seen[-1].message == "clicks over expected clicks"
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        coec_judgments(biased, cancel=token)


def test_search_visits_credit_impressions_and_keep_old_visits(biased):
    visits = [v for v in search_visits(biased) if v.key == "mug"]
    assert len(visits) == 10 and all(v.searched for v in visits)
    assert visits[0].shown == {"A": 1, "F2": 2, "F3": 3, "B": 4}
    assert [c.item_id for c in visits[0].events] == ["A", "A", "B"]  # impressions are not credits
    cup = [v for v in search_visits(biased) if v.key == "cup"]
    assert len(cup) == 10 and not any(v.searched for v in cup) and cup[0].shown["D"] == 4


# ------------------------------------------------------------------ impressions are not behaviour
def test_impression_event_types_and_existing_types_unchanged():
    assert [normalise_event_type(t) for t in ("impression", "view_impression", "曝光", "Impressions")] == [
        "impression"] * 4
    assert [normalise_event_type(t) for t in ("view", "pv", "浏览", "click", "加购", "购买")] == [
        "view", "view", "view", "click", "cart", "purchase"]


def test_impressions_weigh_nothing_for_cf_and_popularity(ws):
    _insert(ws, [("u1", "s", "X", "impression", _ts(0, 0), "mug", 1)] * 50
            + [("u1", "s", "Y", "purchase", _ts(0, 1), None, None), ("u2", "t", "X", "impression", _ts(1, 0), None, 2)])
    assert DEFAULT_EVENT_WEIGHTS["impression"] == 0.0 and USER_TEXT_WEIGHTS["impression"] == 0.0
    inter = load_interactions(ws, ["X", "Y"])
    assert inter.item_ids[inter.item_idx].tolist() == ["Y"]
    assert list(inter.user_ids) == ["u1"]  # u2 only saw X: no behaviour
    assert item_popularity(ws, ["X", "Y"]).tolist() == [0.0, 1.0]


# ------------------------------------------------------------------ import
CSV = """user_id,session_id,query,item_id,event_type,rank,ts
u1,s1,mug,A,impression,1,2026-03-01 10:00:00
u1,s1,mug,B,曝光,2,2026-03-01 10:00:00
u1,s1,mug,B,click,2,2026-03-01 10:01:00
u2,s2,mug,A,impression,0,2026-03-01 11:00:00
u2,s2,mug,B,impression,2.5,2026-03-01 11:00:00
u2,s2,mug,C,impression,first,2026-03-01 11:00:00
u2,s2,mug,A,view,,2026-03-01 11:02:00
u2,s2,mug,C,impression,3.0,2026-03-01 11:00:00
"""


def test_import_rank_column_and_impressions(ws, tmp_path):
    assert schema_version(ws) == len(MIGRATIONS)
    assert "position" in {r[1] for r in ws.execute('PRAGMA table_info("events")')}
    assert dict((s, f) for s, f, _ in guess_columns(CSV.splitlines()[0].split(","), "events"))["rank"] == "position"
    path = tmp_path / "log.csv"
    path.write_text(CSV, encoding="utf-8")
    r = import_file(ws, path)
    assert (r.kind, r.rows_read, r.rows_accepted, r.rows_rejected) == ("events", 8, 5, 3)
    assert r.rejected_reasons == {"bad_position": 3}
    assert ws.execute("SELECT item_id, event_type, position FROM events ORDER BY id").fetchall() == [
        ("A", "impression", 1), ("B", "impression", 2), ("B", "click", 2), ("A", "view", None),
        ("C", "impression", 3)]
    bad = sorted((row["line_no"], row["reason"]) for row in rejected_rows(ws, r.import_id))
    assert [line for line, _ in bad] == [5, 6, 7]
    assert bad[0][1].startswith("bad_position: column 'rank': '0' is not a positive whole number")
    assert "'2.5'" in bad[1][1] and "'first'" in bad[2][1]


def test_overlap_key_includes_the_position(ws, tmp_path):
    head = "user_id,query,item_id,event_type,position,ts\n"
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(head + "u1,mug,A,impression,1,2026-03-01 10:00:00\n", encoding="utf-8")
    second.write_text(head + "u1,mug,A,impression,1,2026-03-01 10:00:00\n"
                      "u1,mug,A,impression,2,2026-03-01 10:00:00\n", encoding="utf-8")
    import_file(ws, first)
    r = import_file(ws, second)
    assert (r.rows_duplicate, r.events_added) == (1, 1)
    assert [p for (p,) in ws.execute("SELECT position FROM events ORDER BY id")] == [1, 2]


def test_parse_position():
    assert [parse_position(t) for t in ("1", " 12 ", "3.0", "100000")] == [1, 12, 3, 100000]
    assert [parse_position(t) for t in ("0", "-1", "2.5", "x", "nan", "inf", "1e300", "100001", "")] == [None] * 9


# ------------------------------------------------------------------ CLI
def test_cli_generate_click_model_stores_the_suite(ws_path):
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    _insert(db, biased_log())
    db.close()
    runner = CliRunner()
    res = runner.invoke(cli, ["suite", "generate", "--click-model", "coec", "--min-impressions", "3", "-w",
                              str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert (d["name"], d["source"], d["queries"], d["judgments"]) == ("clicks (COEC)", "clicks:coec", 3, 7)
    assert d["position_ctr"]["1"] == pytest.approx(0.65) and d["excluded"]["few_impressions"] == 0
    b = next(p for p in d["pairs"] if p["item_id"] == "B")
    assert (b["impressions"], b["clicks"], b["expected"], b["coec"], b["grade"]) == (10, 3, pytest.approx(2.0),
                                                                                     pytest.approx(1.5), 2)
    db = open_workspace(ws_path)
    try:
        assert load_suite(db, "clicks (COEC)").grades("lamp") == {"L": 2}
    finally:
        db.close()
    text = runner.invoke(cli, ["suite", "generate", "--click-model", "coec", "--name", "ctr", "-w", str(ws_path)])
    assert text.exit_code == 0, text.output
    assert "suite 'ctr': 2 queries, 6 judgments" in text.output and "1: 0.650" in text.output
    wrong = runner.invoke(cli, ["suite", "generate", "--min-impressions", "3", "-w", str(ws_path)])
    assert wrong.exit_code == 2 and "--click-model" in wrong.output


def test_cli_click_model_without_impressions_is_one_sentence(ws_path):
    res = CliRunner().invoke(cli, ["suite", "generate", "--click-model", "coec", "-w", str(ws_path)])
    assert res.exit_code == 1 and "no impression event with a position" in res.output


def test_being_shown_is_not_activity_in_the_summary_user_lists_or_item_counts(ws):
    """Impressions are for click models only: popularity, user activity and item pages ignore them."""
    from merch_app.data.summary import data_summary
    from merch_app.insights.item_page import item_page
    from merch_app.insights.model_views import item_event_counts
    from merch_app.insights.profiles import list_users

    insert_items(ws, [{"item_id": "A", "title": "SHOWN MUG"}, {"item_id": "B", "title": "BOUGHT MUG"}])
    rows = [{"user_id": "u1", "item_id": "A", "event_type": "impression", "ts": f"2026-01-01T10:0{m}:00Z",
             "position": 1} for m in range(5)]
    rows += [{"user_id": "u2", "item_id": "B", "event_type": "purchase", "ts": "2026-01-01T11:00:00Z"}]
    with ws.conn:
        ws.insert_rows("events", rows)
    assert [i for i, _t, _n in data_summary(ws).top_items] == ["B"]
    assert list(item_event_counts(ws, ["A", "B"])) == [0.0, 1.0]
    assert [u["user_id"] for u in list_users(ws, "active")] == ["u2"]
    assert item_page(ws, "A").n_users == 0 and item_page(ws, "A").n_events == 0
