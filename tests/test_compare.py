"""Comparison: significance tests, wins/losses/ties, Jaccard, RBO, snapshots and regression diffs."""
from __future__ import annotations

import numpy as np
import pytest

from merch_app.evaluation.compare import (
    compare_runs,
    diff_snapshot,
    jaccard_at_k,
    list_snapshots,
    load_snapshot,
    paired_test,
    rank_moves,
    rbo,
    save_snapshot,
    wins_losses_ties,
)
from merch_app.evaluation.suite_run import run_suite
from merch_app.evaluation.suites import save_suite
from merch_app.evaluation.suite_data import Suite


def test_identical_systems_give_p_one():
    a = np.random.default_rng(3).random(40)
    for method in ("randomization", "bootstrap"):
        t = paired_test(a, a.copy(), method=method)
        assert t.p_value == pytest.approx(1.0)
        assert t.mean_delta == 0.0


def test_clearly_different_systems_are_significant():
    rng = np.random.default_rng(4)
    a = rng.random(30) * 0.5
    b = a + 0.2 + rng.normal(0, 0.05, 30)
    for method in ("randomization", "bootstrap"):
        t = paired_test(a, b, method=method)
        assert t.p_value < 0.05
        assert t.mean_delta == pytest.approx(np.mean(b - a))
        assert t.ci_delta[0] > 0


def test_exact_randomisation_known_answer():
    # d = (1, 1, 1): only the all-plus and all-minus sign patterns reach |mean| = 1 -> p = 2/8
    t = paired_test([0, 0, 0], [1, 1, 1])
    assert t.exact and t.p_value == pytest.approx(0.25)
    # d = (1, -1): every pattern has |mean| >= 0 ... observed 0 -> p = 1
    assert paired_test([0, 1], [1, 0]).p_value == 1.0


def test_noise_is_not_significant():
    rng = np.random.default_rng(5)
    a = rng.random(50)
    b = a + rng.normal(0, 0.1, 50)
    assert paired_test(a, b).p_value > 0.05


def test_paired_test_validates():
    with pytest.raises(ValueError):
        paired_test([1, 2], [1])
    with pytest.raises(ValueError):
        paired_test([1], [1], method="t")
    assert np.isnan(paired_test([], []).p_value)


def test_wins_losses_ties():
    assert wins_losses_ties([0.1, 0.5, 0.3], [0.2, 0.4, 0.3]) == {"wins": 1, "losses": 1, "ties": 1}


def test_jaccard_and_rbo_known_answers():
    assert jaccard_at_k("abcd", "abxy", 4) == pytest.approx(2 / 6)
    assert jaccard_at_k("ab", "ba", 1) == 0.0
    assert jaccard_at_k([], [], 5) == 1.0
    assert rbo("abcdef", "abcdef") == pytest.approx(1.0)
    assert rbo("abc", "xyz") == 0.0
    # abcd vs bacd: X = 0, 2, 3, 4 -> (1-p)/p * (.81 + .729 + .6561) + p^4 = 0.9
    assert rbo("abcd", "bacd", p=0.9) == pytest.approx(0.9)
    # a shorter list that is a prefix of the longer one extrapolates to full agreement
    assert rbo("a", "ab") == pytest.approx(1.0)
    # swapping the top pair costs more than swapping the bottom pair
    assert rbo("abcd", "bacd") < rbo("abcd", "abdc")


def test_rank_moves():
    moves = rank_moves(["a", "b", "c"], ["c", "a", "d"], k=3)
    assert moves == [
        {"item_id": "a", "left": 1, "right": 2, "move": -1},
        {"item_id": "b", "left": 2, "right": None, "move": None},
        {"item_id": "c", "left": 3, "right": 1, "move": 2},
        {"item_id": "d", "left": None, "right": 3, "move": None},
    ]


def _suite(n=12):
    s = Suite("cmp")
    for i in range(n):
        s.set_grade(f"q{i}", f"r{i}", 3)
        s.set_grade(f"q{i}", f"s{i}", 1)
    return s


def good(query, n):
    i = query[1:]
    return [f"r{i}", f"s{i}", "junk"][:n]


def bad(query, n):
    i = query[1:]
    return ["junk", f"s{i}", f"r{i}"][:n]


def test_compare_runs_over_suite():
    s = _suite()
    runs = [run_suite(s, bad, label="old"), run_suite(s, good, label="new"), run_suite(s, bad, label="same")]
    cmp = compare_runs(runs)
    assert cmp.labels == ["old", "new", "same"]
    new, same = cmp.pairs
    assert (new["wins"], new["losses"], new["ties"]) == (12, 0, 0)
    assert new["test"]["p_value"] < 0.05 and new["test"]["delta"] > 0
    assert (same["wins"], same["ties"]) == (0, 12) and same["test"]["p_value"] == 1.0
    row = cmp.rows[0]
    assert row["delta:new"] == pytest.approx(row["new"] - row["old"])
    assert row["jaccard@10:new"] == 1.0 and row["rbo:same"] == pytest.approx(1.0)
    assert row["rbo:new"] < 1.0
    d = cmp.to_dict()
    assert d["systems"][1]["label"] == "new" and len(d["queries"]) == 12
    with pytest.raises(ValueError):
        compare_runs(runs[:1])


def test_snapshot_round_trip_and_regressions(ws):
    s = _suite(4)
    sid = save_suite(ws, s)
    before = run_suite(s, good, label="v1")
    snap_id = save_snapshot(ws, before, sid, "release 1")
    assert list_snapshots(ws, sid)[0]["name"] == "release 1"
    snap = load_snapshot(ws, snap_id)
    assert snap["results"]["q0"]["items"] == ["r0", "s0", "junk"]

    def mixed(query, n):  # q0 and q1 get worse
        return bad(query, n) if query in ("q0", "q1") else good(query, n)

    diff = diff_snapshot(snap, run_suite(s, mixed, label="v2"), threshold=0.05)
    assert diff["regressions"] == ["q0", "q1"]
    assert diff["changed_lists"] == 2 and diff["improvements"] == 0
    assert diff["rows"][0]["regression"] and diff["rows"][0]["delta"] < -0.05
    assert diff["rows"][-1]["delta"] == 0.0 and diff["rows"][-1]["rbo"] == pytest.approx(1.0)
    same = diff_snapshot(snap, run_suite(s, good))
    assert same["regressions"] == [] and same["changed_lists"] == 0
    with pytest.raises(KeyError):
        load_snapshot(ws, 999)
