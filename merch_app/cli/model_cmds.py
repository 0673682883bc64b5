"""``merch-app train | evaluate | update | models ...``: the model lifecycle on the command line."""
from __future__ import annotations

import contextlib
import dataclasses
import signal
from typing import Any, Callable

import click

from merch_app.cli.common import (
    TerminalProgress, emit_json, json_option, model_loading, open_ws, user_errors, warn_alongside, workspace_option,
)
from merch_app.cli.engine_options import engine_options, get_engine_or_exit
from merch_app.engines import engine_label
from merch_app.evaluation.offline import evaluate
from merch_app.evaluation.related_items import (
    DEFAULT_MIN_BUYERS, DEFAULT_MIN_SHARE, RELATED_BY_NAMES, evaluate_related, metric_names,
)
from merch_app.jobs import CancelToken, Cancelled
from merch_app.model.encoder import workspace_encoder
from merch_app.model.encoder_versions import get_encoder_version, is_version_id
from merch_app.model.encoder_versions import version_folder as encoder_version_folder
from merch_app.model.hybrid import HybridConfig
from merch_app.model.registry import activate, delete, list_versions, rename
from merch_app.services.ranking import ranking_bundle
from merch_app.services.training import train, update_with_new_events

METRIC_COLUMNS = ("precision@{k}", "recall@{k}", "ndcg@{k}", "map@{k}", "coverage")


@contextlib.contextmanager
def _ctrl_c_cancels(token: CancelToken):
    """Ctrl+C sets the cancel token, so the job stops cleanly at its next batch."""
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: token.cancel())
    except ValueError:  # not in the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _run_job(db, bar: TerminalProgress, what: str, job: Callable[[CancelToken], Any]) -> Any:
    """Run ``job(cancel_token)`` with Ctrl+C as cancel; failures become CLI errors.

    The progress bar and the workspace connection are closed in every case.
    """
    token = CancelToken()
    try:
        with user_errors(), _ctrl_c_cancels(token):
            return job(token)
    except Cancelled:
        raise click.ClickException(f"{what} cancelled; the registry is unchanged") from None
    finally:
        bar.close()
        db.close()


def _version_dict(v) -> dict[str, Any]:
    return dataclasses.asdict(v)


def _metrics_table(metrics: dict[str, Any], k: int = 10) -> str:
    cols = [c.format(k=k) for c in METRIC_COLUMNS]
    rows = [("model", metrics.get("model", {}))]
    rows += [(f"  {name}", m) for name, m in metrics.get("baselines", {}).items() if f"ndcg@{k}" in m]
    lines = [f"{'':16}" + "".join(f"{c:>13}" for c in cols)]
    for name, m in rows:
        lines.append(f"{name:16}" + "".join(f"{m.get(c, float('nan')):>13.4f}" for c in cols))
    cs = metrics.get("cold_start", {})
    if cs.get("model"):
        lines.append(f"cold start: {cs['n_cold_items_relevant']} new items among the relevant ones; "
                     f"model ranks them at percentile {cs['model']['mean_percentile']:.2f} "
                     f"(text only {cs['text_only']['mean_percentile']:.2f})")
    if "rmse" in metrics:
        lines.append(f"ratings: MAE {metrics['mae']:.4f}  RMSE {metrics['rmse']:.4f}")
    if metrics.get("ratings"):
        lines.append(_ratings_table(metrics["ratings"]))
    parts = metrics.get("rating_parts")
    if parts:
        def said(name: str, key: str) -> str:
            return f"{name} λ {parts[key]:g}" if parts.get(key) is not None else f"{name} off"
        lines.append(f"rating baseline parts: {said('user-bias drift', 'drift_shrink')}, "
                     f"{said('user taste in text space', 'taste_shrink')}")
    return "\n".join(lines)


def _ratings_table(rep: dict[str, Any]) -> str:
    """MAE / RMSE of the model and the bias baselines by segment (known user+item, new user, new item)."""
    segs = [s for s in ("all", "known", "new_user", "new_item") if s in rep]
    head = f"{'MAE / RMSE':22}" + "".join(f"{s + ' (' + str(rep[s]['n']) + ')':>22}" for s in segs)
    lines = [head]
    for name in ("model", "damped_biases", "damped_item_bias", "global_mean"):
        cells = "".join(f"{rep[s][name]['mae']:>12.4f} / {rep[s][name]['rmse']:<7.4f}" for s in segs)
        lines.append(f"{name:22}" + cells)
    for seg, p in rep.get("paired", {}).items():
        lines.append(f"model vs damped biases ({seg}): MAE {p['mae_delta']:+.4f} "
                     f"[{p['ci_mae_delta'][0]:+.4f}, {p['ci_mae_delta'][1]:+.4f}], p = {p['p_t']:.2g}")
    return "\n".join(lines)


@click.command("train")
@workspace_option
@click.option("--epochs", type=click.IntRange(1, 1000), default=None, help="Maximum epochs (default 20).")
@click.option("--dim", type=click.IntRange(2, 1024), default=None, help="Embedding size (default 64).")
@click.option("--split-date", default=None, metavar="YYYY-MM-DD",
              help="Train before this date, test from it (default: 80 % of the event time range).")
@click.option("--split", "split", type=click.Choice(["auto", "range", "quantile"]), default=None,
              help="Default cut-off: 'range' = 80 % of the event time range, 'quantile' = the 80th percentile "
                   "of the event times (most test users known); 'auto' (default): quantile for rating data.")
@click.option("--encoder", "encoder_spec", default=None, metavar="DIR|minilm|hashing",
              help="Text encoder (default: the bundled MiniLM).")
@click.option("--int8/--fp32", "int8", default=None,
              help="int8 BERT encoder (~4x faster encoding, slightly lower quality); default: the workspace "
                   "setting encoder_int8.")
@click.option("--name", default=None, help="Display name of the new version.")
@click.option("--activate", type=click.Choice(["if_none", "always", "never"]), default="if_none",
              show_default=True, help="Make the new version active.")
@click.option("--seed", type=int, default=None, help="Random seed (default 42).")
@engine_options
@json_option
def train_command(workspace, epochs, dim, split_date, split, encoder_spec, int8, name, activate, seed, engine,
                  ray_address, workers, as_json):
    """Train, evaluate and register a new model version."""
    runner = get_engine_or_exit(engine, ray_address, workers)

    cfg = HybridConfig(split_date=split_date, encoder=encoder_spec, activate=activate)
    for field, value in (("epochs", epochs), ("dim", dim), ("seed", seed), ("split", split)):
        if value is not None:
            setattr(cfg, field, value)
    db = open_ws(workspace)
    warn_alongside(db, "train")
    bar = TerminalProgress("train", enabled=None if not as_json else False)

    def job(token: CancelToken):
        encoder = workspace_encoder(db, encoder_spec, int8) if encoder_spec or int8 is not None else None
        return train(db, cfg, progress=bar, cancel=token, encoder=encoder, name=name, engine=runner)

    version = _run_job(db, bar, "training", job)
    if as_json:
        emit_json(_version_dict(version))
        return
    click.echo(f"model {version.model_id} ({'active' if version.active else 'not active'}), "
               f"trained in {version.train_seconds:.1f} s, test from {version.data_snapshot.get('split_ts', '')[:10]}"
               + (f" ({version.metrics['split']})" if version.metrics.get("split") else "") + ", "
               f"{version.metrics.get('n_test_users', 0)} test users"
               + (f", on Ray ({version.data_snapshot.get('workers')} workers)" if version.engine == "ray" else ""))
    click.echo(_metrics_table(version.metrics))


@click.command("evaluate")
@workspace_option
@click.option("--model", "model_id", default=None, help="Model version (default: the active one).")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Cut-off.")
@click.option("--split-date", default=None, metavar="YYYY-MM-DD", help="Override the model's split date.")
@click.option("--split", "split", type=click.Choice(["auto", "range", "quantile"]), default=None,
              help="Override the model's split with this default cut-off (see train --split).")
@click.option("--related", is_flag=True,
              help="Measure related items instead: each item's related list against what its buyers also bought "
                   "after the split (text only without a model; text and behaviour with one).")
@click.option("--min-buyers", type=click.IntRange(1, 1_000_000), default=DEFAULT_MIN_BUYERS, show_default=True,
              help="With --related: customers who bought an item after the split for it to be measured.")
@click.option("--min-share", type=click.FloatRange(0.0, 1.0), default=DEFAULT_MIN_SHARE, show_default=True,
              help="With --related: share of those customers who bought another item for it to count as also bought.")
@click.option("--encoder", "encoder_spec", default=None, metavar="DIR|minilm|VERSION",
              help="With --related: the encoder of the text-only bundle (a folder, minilm or a fine-tuned version "
                   "id; default: the workspace's).")
@json_option
def evaluate_command(workspace, model_id, k, split_date, split, related, min_buyers, min_share, encoder_spec,
                     as_json):
    """Evaluate a model version and the baselines on its time split.

    With --related: the related items of the model (or of the text-only bundle when no model is
    active) against what each item's buyers also bought after the split.
    """
    db = open_ws(workspace, create=False)
    bar = TerminalProgress("evaluate", enabled=None if not as_json else False)
    if related:
        def job(token: CancelToken):
            with model_loading(model_id):
                bundle = ranking_bundle(db, model_id, _encoder_spec(db, encoder_spec), progress=bar, cancel=token)
            return evaluate_related(db, bundle, split_date=split_date, split=split, k=k, min_buyers=min_buyers,
                                    min_share=min_share, progress=bar, cancel=token)

        result = _run_job(db, bar, "evaluation", job)
        if as_json:
            emit_json(result)
        else:
            click.echo(_related_table(result))
        return
    result = _run_job(db, bar, "evaluation", lambda token: evaluate(
        db, model_id=model_id, k=k, split_date=split_date, progress=bar, cancel=token, split=split))
    if as_json:
        emit_json(result)
        return
    click.echo(f"model {result['model_id']}: test from {result['split_date'][:10]} ({result['split']}), "
               f"{result['n_test_users']} test users, k={k}")
    for note in result.get("notes", []):
        click.echo(f"note: {note}")
    click.echo(_metrics_table(result, k))


def _encoder_spec(db, spec):
    """A fine-tuned encoder version id as its folder (``load_encoder`` takes folders); other specs as given."""
    if spec and is_version_id(spec.strip()):
        return str(encoder_version_folder(db, get_encoder_version(db, spec.strip())))
    return spec


def _related_table(result: dict[str, Any]) -> str:
    """The related-items measure as printed: who ranks, the protocol, one row per list, the paired tests."""
    k = result["k"]
    names = metric_names(k)
    who = f"model {result['model_id']}" if result["model_id"] else "text only (no model)"
    lines = [f"related items of {who}, encoder {result['encoder_id'].partition('@')[0]}: test from "
             f"{result['split_date'][:10]} ({result['split']}), {result['n_items']:,} items bought by "
             f"{result['min_buyers']}+ customers after the split ({result['n_few_buyers']:,} with fewer skipped); "
             f"also bought = bought by {result['min_share']:.0%}+ of their buyers ({result['min_co_buyers']}+), k={k}"]
    lines += [f"note: {note}" for note in result.get("notes", [])]
    lines.append(f"{'':32}" + "".join(f"{c:>12}" for c in names) + f"{'cold ' + names[1]:>18}")
    for mode, view in result["related"].items():
        lines.append(f"{RELATED_BY_NAMES[mode]:32}" + "".join(f"{view['mean'][c]:>12.4f}" for c in names)
                     + f"{view['cold'][names[1]]:>12.4f} ({view['cold']['n_items']})")
    for name, test in result.get("paired", {}).items():
        t = test[names[1]]
        lines.append(f"{name.replace('_vs_', ' vs ')}: {names[1]} {t['delta']:+.4f} "
                     f"[{t['ci_delta'][0]:+.4f}, {t['ci_delta'][1]:+.4f}], p = {t['p_value']:.2g} "
                     f"({t['wins']} wins / {t['losses']} losses / {t['ties']} ties over items)")
    return "\n".join(lines)


@click.command("update")
@workspace_option
@click.option("--model", "model_id", default=None, help="Version to update (default: the active one).")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1, 100), help="Extra epochs.")
@json_option
def update_command(workspace, model_id, epochs, as_json):
    """Continue training a model on the events that arrived since (new version)."""
    db = open_ws(workspace, create=False)
    bar = TerminalProgress("update", enabled=None if not as_json else False)
    version = _run_job(db, bar, "update", lambda token: update_with_new_events(
        db, model_id=model_id, epochs=epochs, progress=bar, cancel=token))
    if as_json:
        emit_json(_version_dict(version))
    else:
        click.echo(f"new version {version.model_id} from {version.data_snapshot.get('parent')}: "
                   f"{version.data_snapshot.get('new_events', 0)} new events, "
                   f"{version.data_snapshot.get('new_items', 0)} new items"
                   + (" (active)" if version.active else ""))


@click.group("models")
def models_group() -> None:
    """List, activate, rename and delete model versions."""


def _registry_call(workspace, fn, *args):
    db = open_ws(workspace, create=False)
    try:
        with user_errors():
            return fn(db, *args)
    finally:
        db.close()


@models_group.command("list")
@workspace_option
@json_option
def models_list(workspace, as_json):
    """All versions, newest first (* = active)."""
    versions = _registry_call(workspace, list_versions)
    if as_json:
        emit_json([_version_dict(v) for v in versions])
        return
    if not versions:
        click.echo("no models yet: run merch-app train")
    for v in versions:
        m = v.metrics.get("model", {})
        click.echo(f"{'*' if v.active else ' '} {v.model_id}  {v.name[:30]:30}  {v.created}  {engine_label(v):8}  "
                   f"P@10 {m.get('precision@10', float('nan')):.3f}  NDCG@10 {m.get('ndcg@10', float('nan')):.3f}")


@models_group.command("activate")
@click.argument("model_id")
@workspace_option
@json_option
def models_activate(model_id, workspace, as_json):
    """Make MODEL_ID the active version."""
    v = _registry_call(workspace, activate, model_id)
    emit_json(_version_dict(v)) if as_json else click.echo(f"active: {v.model_id}")


@models_group.command("rename")
@click.argument("model_id")
@click.argument("name")
@workspace_option
@json_option
def models_rename(model_id, name, workspace, as_json):
    """Give MODEL_ID the display name NAME."""
    v = _registry_call(workspace, rename, model_id, name)
    emit_json(_version_dict(v)) if as_json else click.echo(f"{v.model_id}: {v.name}")


@models_group.command("delete")
@click.argument("model_id")
@workspace_option
@json_option
def models_delete(model_id, workspace, as_json):
    """Delete MODEL_ID and its files."""
    _registry_call(workspace, delete, model_id)
    emit_json({"deleted": model_id}) if as_json else click.echo(f"deleted {model_id}")


def register(group: click.Group) -> None:
    for cmd in (train_command, evaluate_command, update_command, models_group):
        group.add_command(cmd)


__all__ = ["register"]
