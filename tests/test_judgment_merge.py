"""Repeated judgments: merge policies with known answers, the merged count, raw rows kept and merged again."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.evaluation.judgment_merge import merged_grade
from merch_app.evaluation.suite_data import SuiteError
from merch_app.evaluation.suite_files import read_qrels, read_suite_csv
from merch_app.evaluation.suites import delete_suite, load_suite, remerge_suite, save_suite, set_judgment

# Three raters: (fence mesh, A) judged 1, 2, 3 under three spellings of one query; (fence mesh, B) 1 then 2;
# (gate, C) twice with the same grade; (gate, D) once.
RATERS = ("query,item_id,grade\n"
          "fence mesh,A,1\n"        # line 2
          "fence mesh,B,1\n"        # line 3
          "gate,C,2\n"              # line 4
          "fence  mesh,A,2\n"       # line 5: spacing differs
          "Fence Mesh,B,2\n"        # line 6: case differs
          "gate,C,2\n"              # line 7
          "FENCE mesh,A,3\n"        # line 8
          "gate,D,0\n")             # line 9


@pytest.fixture
def raters(tmp_path):
    p = tmp_path / "raters.csv"
    p.write_text(RATERS, encoding="utf-8")
    return p


@pytest.mark.parametrize("grades, policy, expected", [
    ([1, 2], "mean", 2),         # 1.5 rounds half up to 2 (not to the even 2 by chance: see 2.5)
    ([2, 3], "mean", 3),         # 2.5 rounds half up to 3 (Python's round() would give 2)
    ([0, 1], "mean", 1),         # 0.5 -> 1
    ([1, 1, 2], "mean", 1),      # 1.33 -> 1
    ([1, 2, 2], "mean", 2),      # 1.67 -> 2
    ([0, 3, 3, 0], "mean", 2),   # 1.5 -> 2
    ([1, 3, 2], "max", 3),
    ([3, 0, 1], "latest", 1),
    ([2, 2], "error", 2),
])
def test_merged_grade_known_answers(grades, policy, expected):
    assert merged_grade(grades, policy) == expected


def test_mean_merges_spellings_and_counts_pairs(raters):
    s = read_suite_csv(raters)
    assert s.queries == ["fence mesh", "gate"]  # first spelling kept; spacing and case variants are one query
    assert s.judgments == {"fence mesh": {"A": 2, "B": 2}, "gate": {"C": 2, "D": 0}}  # A: mean(1,2,3)=2, B: 1.5->2
    assert s.pairs_merged == 3  # A, B and C are repeated; D is not
    assert len(s.raw) == 8 and s.raw[3].query == "fence mesh" and s.raw[4].query == "Fence Mesh"
    assert s.summary()["pairs_merged"] == 3 and s.summary()["merge_policy"] == "mean"


def test_max_and_latest_by_file_order(raters):
    assert read_suite_csv(raters, merge="max").judgments["fence mesh"] == {"A": 3, "B": 2}
    latest = read_suite_csv(raters, merge="latest")
    assert latest.judgments["fence mesh"] == {"A": 3, "B": 2}  # lines 8 and 6
    reordered = raters.with_name("reordered.csv")
    reordered.write_text("query,item_id,grade\nq,A,3\nq,A,0\nq,A,1\n", encoding="utf-8")
    assert read_suite_csv(reordered, merge="latest").judgments == {"q": {"A": 1}}
    assert read_suite_csv(reordered, merge="max").judgments == {"q": {"A": 3}}
    assert read_suite_csv(reordered).judgments == {"q": {"A": 1}}  # mean 4/3 -> 1


def test_error_policy_names_both_lines(raters):
    with pytest.raises(SuiteError) as err:
        read_suite_csv(raters, merge="error")
    msg = str(err.value)
    assert str(raters) in msg
    # the first disagreement in file order: (fence mesh, A) grade 2 at line 5 against grade 1 at line 2
    assert "line 5: grade 2 for ('fence mesh', 'A') contradicts grade 1 at line 2" in msg
    ok = raters.with_name("same.csv")
    ok.write_text("query,item_id,grade\ngate,C,2\ngate ,C,2\n", encoding="utf-8")
    s = read_suite_csv(ok, merge="error")  # equal repeats are not a contradiction
    assert s.judgments == {"gate": {"C": 2}} and s.pairs_merged == 1


def test_unknown_policy_is_a_sentence(raters):
    with pytest.raises(SuiteError, match="unknown merge policy 'median'; choose one of mean, max, latest, error"):
        read_suite_csv(raters, merge="median")


def test_qrels_repeats_merge_too(tmp_path):
    p = tmp_path / "r.qrels"
    p.write_text("1 0 D1 1\n1 0 D1 2\n1 0 D2 3\n", encoding="utf-8")
    s = read_qrels(p)
    assert s.judgments == {"1": {"D1": 2, "D2": 3}} and s.pairs_merged == 1
    assert read_qrels(p, merge="max").judgments == {"1": {"D1": 2, "D2": 3}}
    with pytest.raises(SuiteError, match="line 2: grade 2 for"):
        read_qrels(p, merge="error")


def test_raw_rows_stored_and_merged_again(ws, raters):
    save_suite(ws, read_suite_csv(raters, "r"))
    back = load_suite(ws, "r")
    assert back.merge_policy == "mean" and back.pairs_merged == 3 and len(back.raw) == 8
    assert back.raw[0].line == 2 and back.raw[-1].line == 9
    set_judgment(ws, "r", "lamp", "L1", 3)  # a rating made in the GUI afterwards
    again = remerge_suite(ws, "r", "max")
    assert again.merge_policy == "max"
    stored = load_suite(ws, "r")
    assert stored.judgments == {"fence mesh": {"A": 3, "B": 2}, "gate": {"C": 2, "D": 0}, "lamp": {"L1": 3}}
    assert stored.merge_policy == "max" and len(stored.raw) == 8
    with pytest.raises(SuiteError, match="line 5: grade 2 .* contradicts grade 1 at line 2"):
        remerge_suite(ws, "r", "error")
    assert load_suite(ws, "r").judgments["fence mesh"] == {"A": 3, "B": 2}  # refused: nothing changed
    set_judgment(ws, "rated in the GUI", "x", "Y", 1)
    with pytest.raises(SuiteError, match="not imported from a file"):
        remerge_suite(ws, "rated in the GUI", "mean")
    assert delete_suite(ws, "r")
    assert ws.execute("SELECT count(*) FROM raw_judgments").fetchone()[0] == 0


def test_cli_import_merge_json_and_text(ws_path, raters):
    run = CliRunner()
    res = run.invoke(cli, ["suite", "import", str(raters), "--name", "r", "-w", str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["pairs_merged"] == 3 and d["merge_policy"] == "mean" and d["judgments"] == 4 and d["raw_rows"] == 8
    res = run.invoke(cli, ["suite", "import", str(raters), "--name", "r2", "--merge", "max", "-w", str(ws_path)])
    assert res.exit_code == 0, res.output
    assert "3 repeated (query, item) pairs merged by max" in res.output
    res = run.invoke(cli, ["suite", "import", str(raters), "--name", "r3", "--merge", "error", "-w", str(ws_path)])
    assert res.exit_code != 0
    assert "line 5: grade 2 for ('fence mesh', 'A') contradicts grade 1 at line 2" in res.output
    res = run.invoke(cli, ["suite", "remerge", "r", "--merge", "latest", "-w", str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["merge_policy"] == "latest"

