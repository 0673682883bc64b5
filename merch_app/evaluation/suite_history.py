"""Every run of a stored suite, kept: the metric over time, what changed between runs, and the CI gate.

A run of a stored suite is saved as a snapshot (see :mod:`merch_app.evaluation.compare`) of kind
``run`` with the state it ran in: the system (model, encoder, weights, applied rules) and the
workspace around it (the rules' change log position, the suite's judgments, the last import).
:func:`suite_history` lists those runs oldest first with the changes since the run before, so a
chart can annotate "rules changed" or "model v3 → v4" at the point where the metric moved.
:func:`check_run` is the gate behind ``merch-app suite run --fail-below``: the mean below a floor,
or queries whose NDCG fell by more than a threshold since the previous run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from merch_app.evaluation.compare import diff_snapshot, list_snapshots, load_snapshot, save_snapshot
from merch_app.evaluation.suite_run import NDCG_K, SuiteRun

RUN_KIND = "run"
HISTORY_METRIC = f"ndcg@{NDCG_K}"


def workspace_state(db, suite_id: int) -> dict[str, Any]:
    """What besides the system can change a suite's numbers: rules, the suite's judgments, the data.

    Returns
    -------
    dict
        ``{"rules_log": last rule_log id, "judgments": count, "judged": last judgment time,
        "import_id": last finished import}``; equal dicts mean none of them changed.
    """
    rules_log = db.execute("SELECT max(log_id) FROM rule_log").fetchone()[0]
    n, judged = db.execute("SELECT count(*), max(updated) FROM judgments WHERE suite_id = ?", [suite_id]).fetchone()
    import_id = db.execute("SELECT max(id) FROM imports WHERE status = 'ok'").fetchone()[0]
    return {"rules_log": rules_log, "judgments": int(n), "judged": judged, "import_id": import_id}


def record_run(db, run: SuiteRun, suite_id: int) -> int:
    """Keep ``run`` of the stored suite ``suite_id`` in its history; returns the snapshot id."""
    state = workspace_state(db, suite_id)
    return save_snapshot(db, run, suite_id, f"run: {run.label}", extra={"kind": RUN_KIND, "state": state})


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Sentences for what differs between two runs' configs (empty: nothing that we track)."""
    out: list[str] = []
    if before.get("model_id") != after.get("model_id") or before.get("model") != after.get("model"):
        out.append(f"model {before.get('model') or '?'} → {after.get('model') or '?'}")
    if before.get("encoder") != after.get("encoder"):
        out.append("encoder changed")
    if before.get("weights") != after.get("weights"):
        w = after.get("weights") or {}
        out.append("weights " + " ".join(f"{k} {v:g}" for k, v in w.items() if isinstance(v, (int, float))))
    if before.get("rules") != after.get("rules"):
        out.append(f"{len(after.get('rules') or [])} rules applied (were {len(before.get('rules') or [])})")
    sb, sa = before.get("state") or {}, after.get("state") or {}
    if sb and sa:
        if sb.get("rules_log") != sa.get("rules_log") and before.get("rules") == after.get("rules"):
            out.append("rules edited")
        if (sb.get("judgments"), sb.get("judged")) != (sa.get("judgments"), sa.get("judged")):
            out.append(f"judgments {sb.get('judgments')} → {sa.get('judgments')}"
                       if sb.get("judgments") != sa.get("judgments") else "judgments edited")
        if sb.get("import_id") != sa.get("import_id"):
            out.append("new data imported")
    return out


@dataclass
class HistoryPoint:
    """One kept run of a suite: when, with what, its mean metric and what changed since the run before."""

    snapshot_id: int
    created: str
    label: str
    value: Optional[float]
    config: dict[str, Any] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "name": self.name, "created": self.created, "label": self.label,
                "value": self.value, "model": self.config.get("model"), "changes": self.changes}


def suite_history(db, suite_id: int, metric: str = HISTORY_METRIC) -> list[HistoryPoint]:
    """The kept runs of ``suite_id``, oldest first, with the mean ``metric`` and the changes since the run before.

    Named snapshots saved by hand are included (they are runs too); the first point has no changes.
    """
    points: list[HistoryPoint] = []
    previous: Optional[dict[str, Any]] = None
    rows = db.execute("SELECT snapshot_id, name, created, config FROM snapshots WHERE suite_id = ? "
                      "ORDER BY snapshot_id", [suite_id]).fetchall()
    for snapshot_id, name, created, text in rows:
        config = json.loads(text or "{}")
        value = (config.get("mean") or {}).get(metric)
        value = None if value is None or value != value else float(value)  # NaN: no scored query
        changes = [] if previous is None else _changes(previous, config)
        points.append(HistoryPoint(snapshot_id, created, config.get("label") or name, value, config, changes,
                                   name))
        previous = config
    return points


def previous_run(db, suite_id: int, before_id: Optional[int] = None) -> Optional[dict[str, Any]]:
    """The newest kept run of ``suite_id`` (older than snapshot ``before_id`` when given), or None."""
    for row in list_snapshots(db, suite_id):
        if before_id is None or row["snapshot_id"] < before_id:
            return load_snapshot(db, row["snapshot_id"])
    return None


@dataclass
class GateResult:
    """The verdict on one run: passed, and the sentences that say why not."""

    passed: bool
    mean: Optional[float]
    fail_below: Optional[float]
    regressions: list[str]
    against: Optional[str]
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "mean": self.mean, "fail_below": self.fail_below,
                "regressions": self.regressions, "against": self.against, "reasons": self.reasons}


def check_run(run: SuiteRun, *, fail_below: Optional[float] = None, previous: Optional[dict[str, Any]] = None,
              threshold: float = 0.05, fail_on_regression: bool = False) -> GateResult:
    """Judge ``run``: its mean NDCG@10 against ``fail_below``, its queries against the ``previous`` run.

    Parameters
    ----------
    fail_below
        The run fails when its mean NDCG@10 is below this (or no query could be scored).
    previous
        A snapshot (:func:`previous_run`); queries whose NDCG@10 fell by more than ``threshold``
        since then are regressions.  They are always listed; they fail the run only with
        ``fail_on_regression``.
    """
    value = run.mean.get(HISTORY_METRIC)
    mean = None if value is None or value != value else float(value)
    reasons: list[str] = []
    if fail_below is not None:
        if mean is None:
            reasons.append(f"no query of “{run.suite}” has a relevant judgment, so NDCG@{NDCG_K} cannot be "
                           f"compared with {fail_below:g}")
        elif mean < fail_below:
            reasons.append(f"mean NDCG@{NDCG_K} of “{run.suite}” is {mean:.4f}, below {fail_below:g}")
    regressions: list[str] = []
    against = None
    if previous is not None:
        diff = diff_snapshot(previous, run, threshold=threshold)
        regressions, against = diff["regressions"], previous.get("name")
        if regressions and fail_on_regression:
            reasons.append(f"{len(regressions)} queries of “{run.suite}” lost more than {threshold:g} NDCG@{NDCG_K} "
                           f"since {against}: " + ", ".join(regressions[:5]) + (" …" if len(regressions) > 5 else ""))
    return GateResult(not reasons, mean, fail_below, regressions, against, reasons)

