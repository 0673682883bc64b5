"""The phase plan: per-phase reports become one monotonic overall fraction and one ETA."""
from __future__ import annotations

import math

import pytest

from merch_app.job_phases import ETA_AFTER_SECONDS, LAST_BEFORE_FINISH, PhasePlan
from merch_app.jobs import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plan_of(estimates, clock):
    reports: list[Progress] = []
    return PhasePlan(estimates, reports.append, clock=clock), reports


def test_overall_follows_the_known_shares_and_never_goes_back():
    clock = FakeClock()
    plan, reports = plan_of([("a", 10), ("b", 30), ("c", 60)], clock)
    a, b, c = plan.phase("a"), plan.phase("b"), plan.phase("c")
    # every phase takes exactly its estimate: the overall fraction is the sum of the shares done
    steps = [(0, a, 0, 10), (5, a, 5, 10), (10, b, 0, 3), (25, b, 1.5, 3), (40, c, 0, 6), (70, c, 3, 6)]
    for t, phase, done, total in steps:
        clock.now = t
        phase(Progress(done, total, "working"))
    assert [round(r.data["overall"], 6) for r in reports] == [0.0, 0.05, 0.10, 0.25, 0.40, 0.70]
    assert [r.data["phase_index"] for r in reports] == [0, 0, 1, 1, 2, 2]
    assert [r.data["phase"] for r in reports] == ["a", "a", "b", "b", "c", "c"]
    assert [bool(r.data.get("milestone")) for r in reports] == [True, False] * 3  # each phase's first report
    assert reports[-1].data["phases"] == ["a", "b", "c"]
    assert (reports[-1].done, reports[-1].total) == (3, 6)  # the phase's own fields are kept
    clock.now = 100
    c(Progress(6, 6, "last step"))
    assert reports[-1].data["overall"] == LAST_BEFORE_FINISH  # 100 % only when the job says it is done
    plan.finish()
    assert reports[-1].data["overall"] == 1.0 and reports[-1].data["overall_eta"] == 0.0
    values = [r.data["overall"] for r in reports]
    assert values == sorted(values)


def test_no_eta_in_the_first_seconds_then_elapsed_over_fraction():
    clock = FakeClock()
    plan, reports = plan_of([("a", 10), ("b", 10)], clock)
    a = plan.phase("a")
    for t in (0.0, 1.0, 2.0, ETA_AFTER_SECONDS - 0.1):
        clock.now = t
        a(Progress(t, 10))
    assert all(r.data["overall_eta"] is None for r in reports)
    assert all(r.overall_eta is None for r in reports)
    clock.now = 5.0
    a(Progress(5, 10))  # a quarter of the job in 5 s: 15 s left
    assert reports[-1].data["overall_eta"] == pytest.approx(15.0)
    assert reports[-1].overall == pytest.approx(0.25)


def test_eta_is_smoothed_over_seconds_not_reports():
    clock = FakeClock()
    plan, reports = plan_of([("a", 100)], clock)
    a = plan.phase("a")
    clock.now = 10.0
    a(Progress(10, 100))  # 90 s left
    clock.now = 10.01
    a(Progress(13, 100))  # a faster rate 10 ms later: raw ETA 67 s, the shown one barely moves
    assert 89.0 < reports[-1].data["overall_eta"] < 90.0
    clock.now = 60.0
    a(Progress(50, 100))  # 50 s later the new rate dominates (raw: 60 s left)
    assert reports[-1].data["overall_eta"] == pytest.approx(60.0, abs=1.0)


def test_an_eta_overturned_by_more_than_twice_is_replaced_at_once():
    clock = FakeClock()
    plan, reports = plan_of([("a", 10), ("b", 1000)], clock)
    a = plan.phase("a")
    plan.start("a")
    clock.now = 5.0
    a(Progress(5, 10))
    assert reports[-1].data["overall_eta"] == pytest.approx(1005.0)
    plan.revise("b", 5)  # the long phase turns out short (e.g. the evaluation users are counted)
    clock.now = 5.1
    a(Progress(6, 10))
    assert reports[-1].data["overall_eta"] < 10.0


def test_shares_are_corrected_by_the_time_a_phase_really_took():
    clock = FakeClock()
    plan, reports = plan_of([("a", 10), ("b", 30), ("c", 60)], clock)
    assert plan.shares() == pytest.approx([0.1, 0.3, 0.6])
    a, b = plan.phase("a"), plan.phase("b")
    for t in range(0, 40):
        clock.now = float(t)
        a(Progress(t / 40, 1.0))
    clock.now = 40.0
    b(Progress(0, 30))  # a took 40 s, 4x its estimate: b and c are scaled by sqrt(4) = 2
    assert plan.shares() == pytest.approx([40 / 220, 60 / 220, 120 / 220])
    for t in range(41, 101):
        clock.now = float(t)
        b(Progress((t - 40) / 2, 30))
    values = [r.data["overall"] for r in reports]
    assert values == sorted(values)  # the correction never moves the bar back
    # b took 60 s, 2x its estimate: c is now scaled by sqrt((40 + 60) / (10 + 30))
    c_seconds = 60 * math.sqrt(100 / 40)
    assert values[-1] == pytest.approx(100 / (100 + c_seconds))
    total = 100 + c_seconds
    assert plan.shares() == pytest.approx([40 / total, 60 / total, c_seconds / total])


def test_skipped_phases_take_no_time_and_start_reports_a_step_without_progress():
    clock = FakeClock()
    plan, reports = plan_of([("a", 10), ("skipped", 50), ("c", 40)], clock)
    plan.start("a", "first")
    clock.now = 10.0
    plan.start("c", "third")
    assert reports[-1].data["phase_index"] == 2 and reports[-1].message == "third"
    assert plan.shares()[1] == 0.0
    assert reports[-1].fraction == 0.0 and reports[-1].overall == pytest.approx(10 / 50)


def test_unknown_phase_and_duplicate_names_are_errors():
    plan = PhasePlan([("a", 1)], None)
    assert plan.phase("a") is None  # nowhere to report: the steps get no callback
    with pytest.raises(ValueError, match="'b' is not in the plan"):
        plan.phase("b")
    with pytest.raises(ValueError, match="distinct"):
        PhasePlan([("a", 1), ("a", 2)], None)


def test_progress_without_a_plan_falls_back_to_its_own_fraction():
    p = Progress(3, 4, "x", 12.0)
    assert p.overall == 0.75 and p.overall_eta == 12.0


def test_a_phase_not_started_can_be_revised_a_running_one_not():
    clock = FakeClock()
    plan, reports = plan_of([("a", 10), ("b", 10), ("c", 80)], clock)
    plan.start("a")
    plan.revise("a", 1000)  # running: what is measured counts
    plan.revise("b", 30)
    plan.revise("c", 60)
    assert plan.shares() == pytest.approx([0.1, 0.3, 0.6])
