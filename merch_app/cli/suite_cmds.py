"""``merch-app suite ...`` (judged query suites) and ``merch-app rules ...`` (merchandising rules)."""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import click

from merch_app.cli.common import TerminalProgress, emit_json, json_option, workspace_db, workspace_option
from merch_app.cli.rater_cmds import RATER_COMMANDS
from merch_app.cli.rules_cmds import rules_group
from merch_app.cli.suite_inputs import command_bundle, command_suite
from merch_app.evaluation.behaviour_suite import generate_from_behaviour
from merch_app.evaluation.click_model import CLICK_MODELS, DEFAULT_MIN_IMPRESSIONS, coec_judgments
from merch_app.evaluation.starter_suite import derive_starter_suite
from merch_app.evaluation.compare import compare_runs, diff_snapshot, diff_snapshots, load_snapshot, rename_snapshot
from merch_app.evaluation.report import (
    comparison_report_html, comparison_rows, run_report_html, run_rows, write_csv, write_report,
)
from merch_app.evaluation.judgment_merge import DEFAULT_MERGE, MERGE_POLICIES
from merch_app.evaluation.suite_exchange import SUITE_FORMATS, read_any_suite_file, write_suite_as, write_trec_run
from merch_app.evaluation.suite_files import write_suite_csv
from merch_app.evaluation.suite_history import suite_history
from merch_app.evaluation.suite_run import model_ranker, run_suite
from merch_app.evaluation.suites import delete_suite, list_suites, load_suite, remerge_suite, save_suite
from merch_app.paths import resource_path
from merch_app.services.evaluate_jobs import run_and_keep
from merch_app.ranking.types import Weights

_Q_WIDTH = 36


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "     -"
    return f"{v:6.3f}" if isinstance(v, float) else str(v)


def _short(text: str, n: int = _Q_WIDTH) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _check_outputs(**paths: Optional[Path]) -> None:
    """Refuse ``--html``/``--csv`` paths whose folder does not exist, before anything runs."""
    for option, path in paths.items():
        folder = path.absolute().parent if path is not None else None
        if folder is not None and not folder.is_dir():
            raise click.ClickException(f"the folder {folder} for the --{option} file does not exist: nothing was run; "
                                   "create it or give a path in an existing folder")


@contextmanager
def _report_file(option: str, path: Path) -> Iterator[None]:
    """A report file that cannot be written (permissions, full disk) ends in one sentence naming it."""
    try:
        yield
    except OSError as exc:
        raise click.ClickException(f"cannot write the --{option} file {path} ({exc.strerror or exc}); the run "
                                   "finished, only this file is missing") from exc


def _encoder_option(f):
    return click.option("--encoder", "encoder_spec", default=None, metavar="SPEC",
                        help="Query encoder override (e.g. 'hashing'); default: the model's encoder.")(f)


def _weights(spec: Optional[str]):
    try:
        return Weights.parse(spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--weights") from exc


def _run(db, suite, bundle, *, label, weights, rules, k, progress=True):
    rank, config = model_ranker(db, bundle, weights=weights, rules=rules)
    bar = TerminalProgress(f"{label}:") if progress else None
    try:
        return run_suite(suite, rank, k=k, label=label, config=config, progress=bar)
    finally:
        if bar:
            bar.close()


def _print_run(run) -> None:
    metrics = run.metric_names
    head = f"{'query':<{_Q_WIDTH}}  " + "  ".join(f"{m:>8}" for m in metrics) + f"  {'unjudged':>8}"
    click.echo(head)
    click.echo("-" * len(head))
    for q in run.worst_first():
        click.echo(f"{_short(q.query):<{_Q_WIDTH}}  " + "  ".join(f"{_fmt(q.metrics[m]):>8}" for m in metrics)
                   + f"  {q.unjudged:>8}")
    click.echo("-" * len(head))
    click.echo(f"{'mean':<{_Q_WIDTH}}  " + "  ".join(f"{_fmt(run.mean[m]):>8}" for m in metrics)
               + f"  {run.mean_unjudged:8.2f}")
    for m in metrics:
        lo, hi = run.ci[m]
        click.echo(f"  {m}: {run.mean[m]:.4f}  95% CI [{lo:.4f}, {hi:.4f}]")
    click.echo(f"{len(run.queries)} queries ({run.n_scored} with relevant judgments), "
               f"{run.seconds:.2f}s, system: {run.config.get('model', '?')}")


@click.group("suite")
def suite_group() -> None:
    """Judged query suites: run, import/export, generate from behaviour or derive from purchases, compare."""


@suite_group.command("run")
@click.argument("suites", nargs=-1)
@click.option("--all", "all_suites", is_flag=True, help="Run every stored suite.")
@click.option("--behaviour", is_flag=True, help="Use judgments generated from behaviour instead of SUITE.")
@click.option("--model", "model_id", default=None, help="Model version (default: the active one).")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Cut-off for P@k.")
@click.option("--weights", default=None, metavar="lex=..,text=..", help="Fusion weights.")
@click.option("--no-rules", is_flag=True, help="Rank without the workspace's merchandising rules.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Write an HTML report.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write per-query CSV.")
@click.option("--trec-run", "trec_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the ranked lists as a TREC run file (topic ids as in 'suite export --format qrels').")
@click.option("--snapshot", default=None, metavar="NAME",
              help="Name the kept run (a suite file is stored as a suite first).")
@click.option("--no-keep", is_flag=True, help="Do not keep this run in the suite's history.")
@click.option("--against", type=int, default=None, metavar="SNAPSHOT_ID",
              help="Diff with this snapshot (default: the suite's previous run).")
@click.option("--threshold", default=0.05, show_default=True, type=click.FloatRange(0, 1),
              help="NDCG drop that counts as a regression.")
@click.option("--fail-below", "fail_below", default=None, type=click.FloatRange(0, 1), metavar="NDCG",
              help="Exit with status 1 when a suite's mean NDCG@10 is below NDCG (for CI).")
@click.option("--fail-on-regression", is_flag=True,
              help="Exit with status 1 when a query lost more than --threshold NDCG@10 since the previous run.")
@_encoder_option
@json_option
@workspace_option
@click.pass_context
def suite_run(cctx, suites, all_suites, behaviour, model_id, k, weights, no_rules, html_path, csv_path, trec_path,
              snapshot, no_keep, against, threshold, fail_below, fail_on_regression, encoder_spec, as_json,
              workspace) -> None:
    """Run SUITES (query,item_id,grade CSVs, qrels files or stored suite names) and print metrics."""
    _check_outputs(html=html_path, csv=csv_path, **{"trec-run": trec_path})
    if len(suites) > 1 or all_suites:
        if html_path or csv_path or trec_path or snapshot or against is not None:
            raise click.UsageError("--html, --csv, --trec-run, --snapshot and --against take one suite")
    outs, runs = [], []
    with workspace_db(workspace) as db:
        names = [s["name"] for s in list_suites(db)] if all_suites else list(suites)
        if all_suites and not names:
            raise click.ClickException("the workspace has no stored suite: import one with merch-app suite import")
        bundle = command_bundle(db, model_id, encoder_spec)
        for ref in names or [None]:
            s = command_suite(db, ref, behaviour)
            if snapshot is not None and s.suite_id is None:
                s.suite_id = save_suite(db, s)
            rank, config = model_ranker(db, bundle, weights=_weights(weights),
                                        rules=None if no_rules else "workspace")
            bar = None if as_json else TerminalProgress(f"{s.name}:")
            try:
                kept = run_and_keep(db, s, rank, config, label=model_id or "active", k=k, threshold=threshold,
                                    fail_below=fail_below, fail_on_regression=fail_on_regression,
                                    keep=not no_keep, progress=bar)
            finally:
                if bar:
                    bar.close()
            if snapshot is not None and kept.snapshot_id is not None:
                rename_snapshot(db, kept.snapshot_id, snapshot)
            out = kept.run.to_dict()
            out["snapshot_id"] = kept.snapshot_id
            out["gate"] = kept.gate.to_dict()
            if kept.not_kept:
                out["not_kept"] = kept.not_kept
            if against is not None:
                try:
                    out["diff"] = diff_snapshot(load_snapshot(db, against), kept.run, threshold=threshold)
                except KeyError as exc:
                    raise click.ClickException(str(exc.args[0])) from exc
            outs.append(out)
            runs.append(kept)
        if html_path:
            with _report_file("html", html_path):
                write_report(run_report_html(runs[0].run), html_path)
        if csv_path:
            with _report_file("csv", csv_path):
                write_csv(run_rows(runs[0].run), csv_path)
        if trec_path:
            with _report_file("trec-run", trec_path):
                write_trec_run(runs[0].run, s, trec_path)
    passed = all(r.gate.passed for r in runs)
    if as_json:
        emit_json(outs[0] if len(outs) == 1 else {"passed": passed, "runs": outs})
    else:
        for kept, out in zip(runs, outs):
            _print_kept(kept, out, threshold, several=len(runs) > 1)
    if not passed:
        cctx.exit(1)


def _print_kept(kept, out: dict, threshold: float, several: bool) -> None:
    """One run as text: the per-query table (one suite) or a line (several), then the gate's verdict."""
    run, gate = kept.run, kept.gate
    if several:
        click.echo(f"{run.suite:<{_Q_WIDTH}}  ndcg@10 {_fmt(run.mean.get('ndcg@10'))}  "
                   f"{run.n_scored}/{len(run.queries)} queries scored  {'ok' if gate.passed else 'FAILED'}")
    else:
        _print_run(run)
    if kept.snapshot_id is not None and not several:
        click.echo(f"kept as snapshot {kept.snapshot_id} in the history of “{run.suite}”")
    if kept.not_kept:
        click.echo(kept.not_kept, err=True)
    if gate.against is not None and gate.regressions:
        click.echo(f"  {len(gate.regressions)} queries lost more than {threshold:g} NDCG@10 since {gate.against}: "
                   + ", ".join(_short(q) for q in gate.regressions[:10]))
    if "diff" in out:
        d = out["diff"]
        click.echo(f"vs snapshot {d['snapshot']!r}: {len(d['regressions'])} regressions "
                   f"(NDCG drop > {threshold}), {d['improvements']} improvements, {d['changed_lists']} lists changed")
        for q in d["regressions"]:
            click.echo(f"  REGRESSION {q}")
    for reason in gate.reasons:
        click.echo(f"FAILED: {reason}", err=True)


@suite_group.command("history")
@click.argument("name")
@click.option("--metric", default="ndcg@10", show_default=True, help="The mean metric to list.")
@json_option
@workspace_option
def suite_history_cmd(name, metric, as_json, workspace) -> None:
    """The kept runs of the stored suite NAME, oldest first, with what changed between them."""
    with workspace_db(workspace) as db:
        sid = load_suite(db, name).suite_id
        points = suite_history(db, sid, metric)
    if as_json:
        emit_json([p.to_dict() for p in points])
        return
    if not points:
        click.echo(f"suite {name!r} has no kept run yet: merch-app suite run {name}")
        return
    for p in points:
        change = "; ".join(p.changes)
        click.echo(f"{p.snapshot_id:>5}  {p.created}  {metric} {_fmt(p.value)}  {_short(p.label, 28):<28}  {change}")


@suite_group.command("diff")
@click.argument("before", type=int)
@click.argument("after", type=int)
@click.option("--threshold", default=0.05, show_default=True, type=click.FloatRange(0, 1),
              help="NDCG drop that counts as a regression.")
@json_option
@workspace_option
def suite_diff(before, after, threshold, as_json, workspace) -> None:
    """Compare two kept snapshots BEFORE and AFTER (ids from suite history): per-query NDCG changes."""
    with workspace_db(workspace) as db:
        try:
            d = diff_snapshots(load_snapshot(db, before), load_snapshot(db, after), threshold=threshold)
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from exc
    if as_json:
        emit_json(d)
        return
    click.echo(f"{d['snapshot']!r} → {d['after']!r}: {len(d['regressions'])} regressions (NDCG drop > {threshold:g}), "
               f"{d['improvements']} improvements, {d['changed_lists']} lists changed")
    for row in d["rows"]:
        if row["delta"] is not None and abs(row["delta"]) > threshold:
            click.echo(f"  {'REGRESSION' if row['regression'] else 'improved  '} {_short(row['query']):<{_Q_WIDTH}} "
                       f"{_fmt(row['before'])} → {_fmt(row['after'])}")


@suite_group.command("compare")
@click.argument("suite", required=False)
@click.option("--behaviour", is_flag=True, help="Compare over judgments generated from behaviour.")
@click.option("--model", "models", multiple=True, help="A model version to compare (repeatable).")
@click.option("--system", "systems", multiple=True, metavar="'label=A model=ID weights=lex=1,text=0 rules=off'",
              help="A system as key=value pairs (repeatable); the first system is the baseline.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--metric", default="ndcg@10", show_default=True)
@click.option("--test", "method", type=click.Choice(["randomization", "bootstrap"]), default="randomization",
              show_default=True)
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path))
@_encoder_option
@json_option
@workspace_option
def suite_compare(suite, behaviour, models, systems, k, metric, method, html_path, csv_path, encoder_spec,
                  as_json, workspace) -> None:
    """Compare two or more models/settings over SUITE: deltas, wins/losses, p-value, overlap."""
    specs = [{"model": m, "label": m} for m in models] + [_parse_system(s) for s in systems]
    if len(specs) < 2:
        raise click.UsageError("give at least two systems (--model and/or --system)")
    _check_outputs(html=html_path, csv=csv_path)
    with workspace_db(workspace) as db:
        s = command_suite(db, suite, behaviour)
        runs, bundles = [], {}
        for n, spec in enumerate(specs):
            key = spec.get("model")
            if key not in bundles:
                bundles[key] = command_bundle(db, key, encoder_spec)
            label = spec.get("label") or f"system {n + 1}"
            runs.append(_run(db, s, bundles[key], label=label, weights=_weights(spec.get("weights")),
                             rules=None if spec.get("rules") == "off" else "workspace", k=k,
                             progress=not as_json))
        if len({r.label for r in runs}) < len(runs):
            raise click.UsageError("systems need distinct labels (add label=NAME)")
        if metric not in runs[0].metric_names:
            raise click.BadParameter(f"unknown metric; choose from {', '.join(runs[0].metric_names)}",
                                     param_hint="--metric")
        cmp = compare_runs(runs, metric, method=method)
        if html_path:
            with _report_file("html", html_path):
                write_report(comparison_report_html(cmp), html_path)
        if csv_path:
            with _report_file("csv", csv_path):
                write_csv(comparison_rows(cmp), csv_path)
    if as_json:
        emit_json(cmp.to_dict())
        return
    for r in runs:
        click.echo(f"{r.label:<20} " + "  ".join(f"{m} {r.mean[m]:.4f}" for m in r.metric_names))
    for p in cmp.pairs:
        t = p["test"]
        click.echo(f"{p['system']} vs {p['baseline']}: {metric} {t['delta']:+.4f} "
                   f"(95% CI [{t['ci_delta'][0]:+.4f}, {t['ci_delta'][1]:+.4f}]), p = {t['p_value']:.4g} "
                   f"({t['method']}), {p['wins']} wins / {p['losses']} losses / {p['ties']} ties, "
                   f"Jaccard@{k} {p[f'mean_jaccard@{k}']:.3f}, RBO {p['mean_rbo']:.3f}")


def _parse_system(text: str) -> dict[str, str]:
    out = {}
    for part in text.split():
        key, sep, value = part.partition("=")
        if not sep or key not in ("label", "model", "weights", "rules"):
            raise click.BadParameter(f"bad system part {part!r}: use label=, model=, weights=, rules=on|off",
                                     param_hint="--system")
        out[key] = value
    return out


def _print_suite_summary(s, as_json: bool) -> None:
    """Print what a stored suite holds (its summary as JSON, or one line)."""
    if as_json:
        emit_json(s.summary())
        return
    line = f"suite {s.name!r}: {len(s.queries)} queries, {s.n_judgments} judgments"
    if s.pairs_merged:
        line += f"; {s.pairs_merged} repeated (query, item) pairs merged by {s.merge_policy}"
    click.echo(line)


def _merge_option(f):
    return click.option("--merge", "merge", type=click.Choice(MERGE_POLICIES), default=DEFAULT_MERGE,
                        show_default=True,
                        help="How repeated (query, item) pairs are merged: mean grade rounded half up, the "
                             "highest, the last in file order, or refuse the file.")(f)


@suite_group.command("import")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--demo", is_flag=True, help="Import the bundled demo suite (as 'demo') instead of FILE.")
@click.option("--name", default=None, help="Suite name (default: the file name).")
@click.option("--replace", is_flag=True, help="Replace a stored suite of the same name.")
@_merge_option
@json_option
@workspace_option
def suite_import(file, demo, name, replace, merge, as_json, workspace) -> None:
    """Store FILE (query,item_id,grade CSV, TREC qrels, Quepid ratings CSV or RRE ratings JSON) as a suite."""
    if demo:
        file, name = resource_path("demo", "demo_suite.csv"), name or "demo"
    if file is None:
        raise click.UsageError("give a FILE or --demo")
    with workspace_db(workspace) as db:
        s = read_any_suite_file(file, name, merge=merge)
        save_suite(db, s, replace=replace)
    _print_suite_summary(s, as_json)


@suite_group.command("remerge")
@click.argument("name")
@_merge_option
@json_option
@workspace_option
def suite_remerge(name, merge, as_json, workspace) -> None:
    """Merge the imported file rows of the stored suite NAME again by another policy."""
    with workspace_db(workspace) as db:
        s = remerge_suite(db, name, merge)
    _print_suite_summary(s, as_json)


@suite_group.command("export")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice([*SUITE_FORMATS, "trec-run"]), default=None,
              help="csv (query,item_id,grade), TREC qrels, Quepid ratings CSV, RRE ratings JSON, or trec-run: "
                   "the suite run with the active model (or --model) as a TREC run file. "
                   "Default: qrels for .qrels/.txt files, rre for .json, else csv.")
@click.option("--model", "model_id", default=None, help="With --format trec-run: the model version to run.")
@_encoder_option
@workspace_option
def suite_export(name, file, fmt, model_id, encoder_spec, workspace) -> None:
    """Write the stored suite NAME to FILE (its judgments, or with --format trec-run a run of it)."""
    with workspace_db(workspace, errors=OSError) as db:
        s = load_suite(db, name)
        if fmt == "trec-run":
            rank, config = model_ranker(db, command_bundle(db, model_id, encoder_spec))
            run = run_suite(s, rank, label=model_id or "active", config=config)
            paths = (write_trec_run(run, s, file),)
        else:
            paths = write_suite_as(s, file, fmt)
    click.echo("wrote " + ", ".join(str(p) for p in paths))


@suite_group.command("delete")
@click.argument("name")
@workspace_option
def suite_delete(name, workspace) -> None:
    """Delete the stored suite NAME with its judgments, raters' grades and kept runs."""
    with workspace_db(workspace) as db:
        if not delete_suite(db, name):
            raise click.ClickException(f"no suite named {name!r}; merch-app suite list shows the stored ones")
    click.echo(f"deleted suite {name!r}")


@suite_group.command("list")
@json_option
@workspace_option
def suite_list(as_json, workspace) -> None:
    """List stored suites."""
    with workspace_db(workspace) as db:
        rows = list_suites(db)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:<30} {r['queries']:>5} queries {r['judgments']:>6} judgments  {r['source']}")
    if not rows:
        click.echo("No suites. Import one with 'merch-app suite import FILE' or rate results in the GUI.")


@suite_group.command("generate")
@click.option("--name", default=None, help="Suite name (default: 'behaviour', with --click-model 'clicks (COEC)').")
@click.option("--min-events", default=2, show_default=True, type=click.IntRange(1))
@click.option("--max-queries", default=500, show_default=True, type=click.IntRange(1))
@click.option("--click-model", type=click.Choice(CLICK_MODELS), default=None,
              help="Grade by clicks corrected for position bias instead: coec = clicks over expected clicks "
                   "(needs impression events with a position).")
@click.option("--min-impressions", default=None, type=click.IntRange(1), metavar="N",
              help=f"With --click-model: judge pairs shown at least N times [default: {DEFAULT_MIN_IMPRESSIONS}].")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write it as CSV.")
@click.option("--no-store", is_flag=True, help="Do not store the suite in the workspace.")
@json_option
@workspace_option
def suite_generate(name, min_events, max_queries, click_model, min_impressions, output, no_store, as_json,
                   workspace) -> None:
    """Generate a suite from behaviour: search followed by click (1), cart (2), purchase (3); or by a click model."""
    if min_impressions is not None and click_model is None:
        raise click.UsageError("--min-impressions applies to --click-model coec only")
    bar = TerminalProgress("generating:", enabled=False if as_json else None)
    with workspace_db(workspace) as db:
        judged = None
        try:
            if click_model == "coec":
                judged = coec_judgments(db, name or "clicks (COEC)", max_queries=max_queries, progress=bar,
                                        min_impressions=min_impressions or DEFAULT_MIN_IMPRESSIONS)
                s = judged.suite
            else:
                s = generate_from_behaviour(db, name or "behaviour", min_events=min_events,
                                            max_queries=max_queries, progress=bar)
        finally:
            bar.close()
        if not no_store:
            save_suite(db, s)
        if output:
            write_suite_csv(s, output)
    if judged is not None and as_json:
        emit_json(judged.to_dict())
        return
    _print_suite_summary(s, as_json)
    if judged is not None:
        ex, ctr = judged.excluded, sorted(judged.position_ctr.items())
        click.echo("  CTR by position: " + ", ".join(f"{p}: {c:.3f}" for p, c in ctr[:10])
                   + (" ..." if len(ctr) > 10 else ""))
        click.echo(f"  left out: {ex['few_impressions']} pairs shown fewer than {judged.min_impressions} times, "
                   f"{ex['no_expected']} shown only where nobody clicked")


@suite_group.command("derive")
@click.option("--name", default="starter", show_default=True)
@click.option("--queries", "n_queries", default=60, show_default=True, type=click.IntRange(1))
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write it as CSV.")
@click.option("--no-store", is_flag=True, help="Do not store the suite in the workspace.")
@json_option
@workspace_option
def suite_derive(name, n_queries, output, no_store, as_json, workspace) -> None:
    """Derive a starter suite from purchases (no search log needed): title words, graded by what was bought."""
    with workspace_db(workspace) as db:
        s = derive_starter_suite(db, name, n_queries=n_queries)
        if not no_store:
            save_suite(db, s, replace=True)
        if output:
            write_suite_csv(s, output)
    _print_suite_summary(s, as_json)


def register(group: click.Group) -> None:
    for cmd in RATER_COMMANDS:  # suite rate | queue | agreement
        suite_group.add_command(cmd)
    group.add_command(suite_group)
    group.add_command(rules_group)
