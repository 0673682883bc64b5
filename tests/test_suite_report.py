"""Reports: HTML escaping, embedded charts, formula-safe CSV."""
from __future__ import annotations

import csv

from merch_app.evaluation.compare import compare_runs, rank_moves
from merch_app.evaluation.report import (
    comparison_report_html,
    comparison_rows,
    run_report_html,
    run_rows,
    svg_slope_chart,
    write_csv,
    write_report,
)
from merch_app.evaluation.suite_run import run_suite
from merch_app.evaluation.suite_data import Suite

EVIL = "<script>alert(1)</script>"


def _runs():
    s = Suite("rep")
    s.set_grade(EVIL, "a", 3)
    s.set_grade("=HYPERLINK(\"x\")", "b", 2)
    s.set_grade("lamp", "c", 1)
    lists = {EVIL: ["a"], "=HYPERLINK(\"x\")": ["z", "b"], "lamp": ["c"]}
    r1 = run_suite(s, lambda q, n: lists[q], label="base<1>")
    r2 = run_suite(s, lambda q, n: list(reversed(lists[q])), label="other")
    return r1, r2


def test_run_report_escapes_and_draws(tmp_path):
    r1, _ = _runs()
    text = run_report_html(r1)
    assert EVIL not in text and "&lt;script&gt;" in text
    assert "base&lt;1&gt;" in text and "<svg" in text
    path = write_report(text, tmp_path / "r.html")
    assert path.read_text(encoding="utf-8") == text
    assert not (tmp_path / "r.html.tmp").exists()


def test_report_embeds_png(tmp_path):
    r1, _ = _runs()
    png = tmp_path / "c.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    text = run_report_html(r1, images={"NDCG <chart>": png})
    assert "data:image/png;base64,iVBORw0KGgpmYWtl" in text and "NDCG &lt;chart&gt;" in text


def test_comparison_report(tmp_path):
    cmp = compare_runs(list(_runs()))
    moves = rank_moves(["z", "b"], ["b", "z"])
    slope = svg_slope_chart(moves, "base", "other", titles={"z": EVIL})
    text = comparison_report_html(cmp, slope=slope)
    assert EVIL not in text and text.count("<svg") == 2
    assert "p-value" in text


def test_csv_is_formula_safe(tmp_path):
    r1, r2 = _runs()
    p = write_csv(run_rows(r1), tmp_path / "run.csv")
    rows = list(csv.reader(open(p, encoding="utf-8")))
    assert rows[0][:4] == ["query", "ndcg@10", "p@10", "mrr"]
    cells = [r[0] for r in rows[1:]]
    assert "'=HYPERLINK(\"x\")" in cells and EVIL in cells
    assert all(not c.startswith(("=", "+", "-", "@")) for r in rows for c in r)
    p2 = write_csv(comparison_rows(compare_runs([r1, r2])), tmp_path / "cmp.csv")
    header = next(csv.reader(open(p2, encoding="utf-8")))
    assert "delta:other" in header and "rbo:other" in header
