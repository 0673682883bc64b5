"""Judging as a team: kappa known answers, merged grades per rater, the blind queue, agreement, the CLI."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.workspace import MIGRATIONS
from merch_app.evaluation.raters import (
    agreement, cohen_kappa, fleiss_kappa, judging_queue, rate, rater_grades, raters,
)
from merch_app.evaluation.suite_data import Suite, SuiteError
from merch_app.evaluation.suite_run import model_ranker
from merch_app.evaluation.suites import delete_suite, load_suite, save_suite, set_judgment
from merch_app.services.ranking import ranking_bundle
from ranking_fixtures import SAMPLE_ITEMS, insert_items

# Wikipedia, "Cohen's kappa", worked example: 50 grant proposals read by A and B.
# Both yes 20, A yes / B no 5, A no / B yes 10, both no 15: p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5, kappa 0.4.
COHEN_A = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
COHEN_B = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15

# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories -> P = 0.378, P_e = 0.213,
# kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


# ------------------------------------------------------------- known answers
def test_cohen_kappa_wikipedia_example():
    assert cohen_kappa(COHEN_A, COHEN_B) == pytest.approx(0.4, abs=1e-12)
    assert cohen_kappa(COHEN_B, COHEN_A) == pytest.approx(0.4, abs=1e-12)  # symmetric


def test_fleiss_kappa_wikipedia_example():
    assert round(fleiss_kappa(FLEISS_TABLE), 3) == 0.210
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.20993, abs=1e-5)


def test_linear_weighted_kappa_by_hand():
    # a = 0 0 3 3, b = 0 1 3 2.  Unweighted: p_o = 2/4, p_e = (2*1 + 2*1)/16 = 1/4 -> (1/2 - 1/4)/(3/4) = 1/3.
    # Linear: D_o = (0+1+0+1)/4 = 1/2; D_e = sum over a-grade x, b-grade y of f_a(x) f_b(y) |x-y| / 16
    #   = (2*(0+1+2+3) + 2*(3+2+1+0)) / 16 = 24/16 = 3/2 -> 1 - (1/2)/(3/2) = 2/3 (near misses count less).
    a, b = [0, 0, 3, 3], [0, 1, 3, 2]
    assert cohen_kappa(a, b) == pytest.approx(1 / 3)
    assert cohen_kappa(a, b, weighted=True) == pytest.approx(2 / 3)


def test_kappa_undefined_and_bad_tables():
    assert cohen_kappa([], []) is None
    assert cohen_kappa([2, 2, 2], [2, 2, 2]) is None  # chance agreement is certain: 0/0
    assert cohen_kappa([2, 2], [2, 2], weighted=True) is None
    assert cohen_kappa([0, 3], [3, 0]) == pytest.approx(-1.0)  # always opposite
    assert fleiss_kappa([]) is None
    assert fleiss_kappa([[0, 3], [0, 3]]) is None  # every rating in one category
    with pytest.raises(ValueError):
        cohen_kappa([1, 2], [1])
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [0, 3]])  # 2 ratings for one subject, 3 for the other


# ------------------------------------------------------------------ storage
def test_migration_adds_the_rater_table(ws):
    assert "_migration_raters" in [m.__name__ for m in MIGRATIONS]
    cols = [r[1] for r in ws.execute('PRAGMA table_info("rater_judgments")')]
    assert cols == ["suite_id", "query", "item_id", "rater", "grade", "updated"]


def test_merged_grade_is_recomputed_by_the_suite_policy(ws):
    assert rate(ws, "team", "mug", "A", 1, "ann") == 1
    assert rate(ws, "team", " mug  ", "A", 2, "bob") == 2          # mean 1.5 rounds half up; spaces collapsed
    assert rate(ws, "team", "mug", "A", 0, "cy") == 1              # mean(1, 2, 0) = 1
    assert load_suite(ws, "team").judgments == {"mug": {"A": 1}}
    assert rate(ws, "team", "mug", "A", 3, "ann") == 2             # ann regrades: mean(2, 0, 3) = 5/3 -> 2
    assert rate(ws, "team", "mug", "A", None, "cy") == 3           # cy clears: mean(3, 2) = 2.5 -> 3
    assert load_suite(ws, "team").grades("mug") == {"A": 3}
    assert rater_grades(ws, "team", "ann") == {"mug": {"A": 3}}
    assert rate(ws, "team", "mug", "A", None, "ann") == 2
    assert rate(ws, "team", "mug", "A", None, "bob") is None       # no rater left: unjudged
    assert load_suite(ws, "team").grades("mug") == {}
    assert [r["rater"] for r in raters(ws, "team")] == []


def test_latest_max_and_error_policies(ws):
    for policy in ("latest", "max", "error"):
        save_suite(ws, Suite(policy, queries=["lamp"], judgments={"lamp": {}}, merge_policy=policy))
    assert rate(ws, "latest", "lamp", "L", 3, "ann") == 3
    assert rate(ws, "latest", "lamp", "L", 1, "bob") == 1
    assert rate(ws, "latest", "lamp", "L", 2, "ann") == 2           # ann's new grade is the latest
    assert rate(ws, "max", "lamp", "L", 1, "ann") == 1
    assert rate(ws, "max", "lamp", "L", 3, "bob") == 3
    assert rate(ws, "error", "lamp", "L", 2, "ann") == 2
    assert rate(ws, "error", "lamp", "L", 0, "bob") is None         # disagreement: unjudged until resolved
    assert load_suite(ws, "error").grades("lamp") == {}
    assert rate(ws, "error", "lamp", "L", 2, "bob") == 2
    assert load_suite(ws, "error").grades("lamp") == {"L": 2}


def test_rater_grade_replaces_a_file_grade_and_unnamed_rating_is_unchanged(ws):
    save_suite(ws, Suite("file", queries=["vase"], judgments={"vase": {"V1": 3, "V2": 1}}, source="csv:f.csv"))
    assert rate(ws, "file", "vase", "V1", 0, "ann") == 0
    assert load_suite(ws, "file").grades("vase") == {"V1": 0, "V2": 1}  # V2 keeps its file grade
    set_judgment(ws, "solo", "cup", "C1", 2)                       # no rater: the grade itself, no rater row
    assert load_suite(ws, "solo").grades("cup") == {"C1": 2}
    assert raters(ws, "solo") == [] and agreement(ws, "solo").raters == []
    set_judgment(ws, "solo", "cup", "C1", None)
    assert load_suite(ws, "solo").grades("cup") == {}


def test_bad_ratings_are_refused(ws):
    with pytest.raises(SuiteError, match="rater needs a name"):
        rate(ws, "team", "mug", "A", 1, "  ")
    with pytest.raises(SuiteError, match="outside 0-3"):
        rate(ws, "team", "mug", "A", 4, "ann")
    with pytest.raises(SuiteError, match="item id"):
        rate(ws, "team", "mug", "", 1, "ann")
    with pytest.raises(SuiteError, match="no suite named 'nope'"):
        agreement(ws, "nope")


def test_deleting_a_suite_deletes_its_rater_grades(ws):
    rate(ws, "old", "mug", "A", 1, "ann")
    assert delete_suite(ws, "old")
    assert ws.execute("SELECT count(*) FROM rater_judgments").fetchone()[0] == 0
    rate(ws, "new", "lamp", "L", 2, "bob")  # may reuse the old suite id: it must not see ann's grade
    assert [r["rater"] for r in raters(ws, "new")] == ["bob"]


# -------------------------------------------------------------------- queue
RANKING = {"mug": ["M1", "M2", "M3", "M4", "M5"], "lamp": ["L1", "L2", "L3", "L4"], "kite": []}


def fake_rank(query, n):
    return RANKING[query][:n]


@pytest.fixture
def queued(ws):
    save_suite(ws, Suite("q", queries=["mug", "lamp", "kite"], judgments={"mug": {}, "lamp": {}, "kite": {}}))
    return ws


def test_queue_is_the_top_depth_in_a_seeded_order(queued):
    pairs = judging_queue(queued, "q", fake_rank, "ann", depth=3, seed=0)
    assert sorted(pairs) == sorted([("mug", "M1"), ("mug", "M2"), ("mug", "M3"),
                                    ("lamp", "L1"), ("lamp", "L2"), ("lamp", "L3")])
    assert all(len(p) == 2 for p in pairs)  # query and item only: no rank, no score
    assert judging_queue(queued, "q", fake_rank, "ann", depth=3, seed=0) == pairs  # same seed, same order
    orders = {tuple(judging_queue(queued, "q", fake_rank, "ann", depth=3, seed=s)) for s in range(6)}
    assert len(orders) > 1  # the seed changes the order
    assert judging_queue(queued, "q", fake_rank, "bob", depth=3, seed=0) != pairs  # each rater has an order
    assert len(judging_queue(queued, "q", fake_rank, "ann", depth=1)) == 2
    assert len(judging_queue(queued, "q", fake_rank, "ann", depth=50)) == 9


def test_queue_leaves_out_what_this_rater_graded(queued):
    rate(queued, "q", "mug", "M1", 3, "ann")
    rate(queued, "q", "lamp", "L2", 0, "ann")
    rate(queued, "q", "mug", "M2", 1, "bob")
    set_judgment(queued, "q", "mug", "M3", 2)  # an unnamed grade is not ann's: still in her queue
    ann = judging_queue(queued, "q", fake_rank, "ann", depth=3)
    assert sorted(ann) == sorted([("mug", "M2"), ("mug", "M3"), ("lamp", "L1"), ("lamp", "L3")])
    assert ("mug", "M1") in judging_queue(queued, "q", fake_rank, "bob", depth=3)
    with pytest.raises(SuiteError, match="depth"):
        judging_queue(queued, "q", fake_rank, "ann", depth=0)


# ---------------------------------------------------------------- agreement
def test_agreement_of_two_raters_is_the_wikipedia_kappa(ws):
    for n, (x, y) in enumerate(zip(COHEN_A, COHEN_B)):
        rate(ws, "grants", "proposal", f"P{n:02d}", 1 if x == "yes" else 0, "A")
        rate(ws, "grants", "proposal", f"P{n:02d}", 1 if y == "yes" else 0, "B")
    a = agreement(ws, "grants")
    assert a.raters == ["A", "B"] and a.kappa_kind == "cohen"
    assert a.kappa == pytest.approx(0.4) and a.kappa_n == 50 and a.n_pairs == 50
    assert a.agreement == pytest.approx(0.7)
    assert a.pairwise[0].weighted_kappa == pytest.approx(0.4)  # two adjacent grades: weights change nothing
    assert len(a.disagreements) == 15 and all(d["spread"] == 1 for d in a.disagreements)
    assert agreement(ws, "grants", min_spread=2).disagreements == []
    assert json.loads(json.dumps(a.to_dict()))["kappa"] == pytest.approx(0.4)


def test_agreement_of_three_raters_uses_fleiss(ws):
    grades = {  # pair -> (ann, bob, cy); cy did not grade P5
        "P1": (3, 3, 3), "P2": (0, 0, 1), "P3": (2, 2, 2), "P4": (0, 3, 3), "P5": (1, 3, None),
    }
    for item, gs in grades.items():
        for rater, g in zip(("ann", "bob", "cy"), gs):
            if g is not None:
                rate(ws, "t", "lamp", item, g, rater)
    a = agreement(ws, "t")
    # Fleiss over P1-P4 (3 raters each; P5 has 2 and is left out):
    # P_i = 1, 1/3, 1, 1/3 -> P = 2/3; category shares 3/12, 1/12, 3/12, 5/12 -> P_e = 44/144 = 11/36;
    # kappa = (2/3 - 11/36) / (25/36) = 13/25.
    assert a.kappa_kind == "fleiss" and a.kappa == pytest.approx(13 / 25)
    assert (a.fleiss_pairs, a.fleiss_raters, a.kappa_n) == (4, 3, 4)
    assert a.fleiss == pytest.approx(fleiss_kappa([[0, 0, 0, 3], [2, 1, 0, 0], [0, 0, 3, 0], [1, 0, 0, 2]]))
    assert a.n_rated == 5 and a.n_pairs == 5 and a.agreement == pytest.approx(2 / 5)
    pairs = {(p.rater_a, p.rater_b): p for p in a.pairwise}
    assert pairs["ann", "bob"].n == 5 and pairs["ann", "cy"].n == 4
    assert pairs["bob", "cy"].agreement == pytest.approx(3 / 4)
    assert pairs["ann", "bob"].kappa == pytest.approx(cohen_kappa([3, 0, 2, 0, 1], [3, 0, 2, 3, 3]))
    assert [(d["item_id"], d["spread"]) for d in a.disagreements] == [("P4", 3), ("P5", 2), ("P2", 1)]
    assert a.disagreements[0]["grades"] == {"ann": 0, "bob": 3, "cy": 3}
    assert [d["item_id"] for d in agreement(ws, "t", min_spread=2).disagreements] == ["P4", "P5"]


# ---------------------------------------------------------------------- CLI
def invoke(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, res.output + repr(res.exception)
    return res


@pytest.fixture
def shop(ws_path):
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    insert_items(db, SAMPLE_ITEMS)
    save_suite(db, Suite("team", queries=["candle", "mug"], judgments={"candle": {}, "mug": {}}))
    db.close()
    return ws_path


def test_cli_rate_queue_agreement(shop):
    out = json.loads(invoke("suite", "rate", "team", "candle", "22001", "3", "--rater", "ann", "-w", shop,
                            "--json").output)
    assert out == {"suite": "team", "query": "candle", "item_id": "22001", "rater": "ann", "grade": 3, "merged": 3}
    res = invoke("suite", "rate", "team", "candle", "22001", "1", "--rater", "bob", "-w", shop)
    assert "bob graded 1" in res.output and "merged grade 2" in res.output
    res = invoke("suite", "rate", "team", "candle", "22001", "7", "--rater", "bob", "-w", shop, ok=False)
    assert res.exit_code != 0 and "outside 0-3" in res.output

    q = json.loads(invoke("suite", "queue", "team", "--rater", "ann", "--depth", "3", "--seed", "5",
                          "--encoder", "hashing", "-w", shop, "--json").output)
    from merch_app.data.workspace import open_workspace

    db = open_workspace(shop)
    try:
        rank, _ = model_ranker(db, ranking_bundle(db, None, "hashing"))
        top = {(query, i) for query in ("candle", "mug") for i in rank(query, 3)}
        want = judging_queue(db, "team", rank, "ann", depth=3, seed=5)
    finally:
        db.close()
    got = [(p["query"], p["item_id"]) for p in q["pairs"]]
    assert got == want and set(got) == top - {("candle", "22001")} and len(got) >= 2
    assert set(q["pairs"][0]) == {"query", "item_id", "title"}  # no rank, no score
    text = invoke("suite", "queue", "team", "--rater", "ann", "--depth", "3", "--seed", "5", "--encoder", "hashing",
                  "-w", shop).output
    assert f"{len(got)} results to grade for ann" in text

    a = json.loads(invoke("suite", "agreement", "team", "-w", shop, "--json").output)
    assert a["raters"] == ["ann", "bob"] and a["kappa_kind"] == "cohen" and a["kappa_n"] == 1
    assert a["disagreements"] == [{"query": "candle", "item_id": "22001", "spread": 2,
                                   "grades": {"ann": 3, "bob": 1}}]
    text = invoke("suite", "agreement", "team", "-w", shop).output
    assert "ann vs bob: n 1" in text and "1 disagreements" in text
    res = invoke("suite", "agreement", "nope", "-w", shop, ok=False)
    assert res.exit_code != 0 and "no suite named 'nope'" in res.output
