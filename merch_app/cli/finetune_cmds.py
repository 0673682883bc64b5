"""``merch-app finetune`` and ``merch-app encoders ...``: fine-tuned encoder versions on the command line."""
from __future__ import annotations

import click

from merch_app.cli.common import (
    TerminalProgress, emit_json, json_option, warn_alongside, workspace_db, workspace_option,
)
from merch_app.cli.engine_options import engine_options, get_engine_or_exit
from merch_app.cli.model_cmds import _ctrl_c_cancels
from merch_app.jobs import CancelToken, Cancelled
from merch_app.model.encoder_versions import (
    activate_encoder, active_encoder_version, delete_encoder_version, list_encoder_versions, models_using,
)
from merch_app.model.finetune import FinetuneConfig, no_validation_note
from merch_app.services.finetune import RELATED_METRICS, finetune


def _metric_line(name: str, row: dict) -> str:
    return f"{name:12}{row['before']:>10.4f}{row['after']:>12.4f}{row['delta']:>+10.4f}{row['p_value']:>8.3f}"


def _comparison_lines(comparison: dict) -> list[str]:
    if not comparison.get("n_anchors"):
        return ["no held-out pairs after the split: no before/after table"]
    lines = [f"held-out anchors: {comparison['n_anchors']} (pairs after the split; dense retrieval alone)",
             f"{'':12}{'frozen':>10}{'fine-tuned':>12}{'delta':>10}{'p':>8}"]
    lines += [_metric_line(m, comparison[m]) for m in ("ndcg@10", "recall@10", "recall@50")]
    related = comparison.get("related") or {}
    if related:
        lines.append(f"related items: {related['n_items']:,} products' text-only lists against what their buyers "
                     "also bought after the split")
        lines += [_metric_line(m, related[m]) for m in RELATED_METRICS]
    return lines


@click.command("finetune")
@workspace_option
@click.option("--epochs", type=click.IntRange(1, 100), default=None, help="Passes over the pairs (default 1).")
@click.option("--max-pairs", type=click.IntRange(2, 10_000_000), default=None,
              help="Training pairs drawn from the behaviour (default 20000).")
@click.option("--activate/--no-activate", "activate", default=None,
              help="Make the new encoder the workspace's (default: when it improves the held-out NDCG@10).")
@click.option("--encoder", "encoder_spec", default=None, metavar="DIR|minilm",
              help="Encoder to start from (default: the workspace's active encoder).")
@click.option("--split-date", default=None, metavar="YYYY-MM-DD",
              help="Train on pairs before this date, compare on pairs from it (default: 80 % of the time range).")
@click.option("--name", default=None, help="Display name of the new encoder version.")
@click.option("--seed", type=int, default=None, help="Random seed (default 42).")
@engine_options
@json_option
def finetune_command(workspace, epochs, max_pairs, activate, encoder_spec, split_date, name, seed, engine,
                     ray_address, workers, as_json):
    """Fine-tune the text encoder on the shop's behaviour and register it as an encoder version."""
    runner = get_engine_or_exit(engine, ray_address, workers)
    cfg = FinetuneConfig(split_date=split_date, activate=activate)
    for field, value in (("epochs", epochs), ("max_pairs", max_pairs), ("seed", seed)):
        if value is not None:
            setattr(cfg, field, value)
    bar = TerminalProgress("finetune", enabled=None if not as_json else False)
    token = CancelToken()
    with workspace_db(workspace) as db:
        warn_alongside(db, "finetune")
        try:
            with _ctrl_c_cancels(token):
                result = finetune(db, cfg, progress=bar, cancel=token, encoder=encoder_spec, name=name,
                                  engine=runner)
        except Cancelled:
            raise click.ClickException("fine-tuning cancelled; the encoders and the active encoder are unchanged") \
                from None
        finally:
            bar.close()
    if as_json:
        emit_json(result.to_dict())
        return
    v = result.version
    if v is None:
        click.echo(f"{result.note} ({result.n_pairs:,} training pairs, {result.seconds:.0f} s)")
        return
    on_ray = v.data_snapshot.get("engine") == "ray"
    click.echo(f"encoder version {v.version_id} ({'active' if result.activated else 'not active'}): "
               f"{result.n_pairs:,} training pairs, {result.seconds:.0f} s"
               + (f", on Ray ({v.data_snapshot.get('workers')} workers)" if on_ray else ""))
    best, steps = result.validation, (v.metrics or {}).get("steps")
    if best:
        click.echo(f"validation ({(v.metrics or {}).get('n_validation_pairs', 0):,} pairs): step {best['step']} of "
                   f"{steps} kept, NDCG@10 {best.get('ndcg@10', 0.0):.4f}")
    else:
        click.echo(f"{no_validation_note(cfg)} ({steps} steps)")
    for line in _comparison_lines(result.comparison):
        click.echo(line)
    if not result.activated:
        click.echo(f"activate it with: merch-app encoders activate {v.version_id}")


@click.group("encoders", invoke_without_command=True)
@workspace_option
@json_option
@click.pass_context
def encoders_group(ctx, workspace, as_json) -> None:
    """List, activate and delete fine-tuned encoder versions."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(encoders_list, workspace=workspace, as_json=as_json)


@encoders_group.command("list")
@workspace_option
@json_option
def encoders_list(workspace, as_json):
    """All fine-tuned encoder versions, newest first (* = active)."""
    with workspace_db(workspace) as db:
        versions = list_encoder_versions(db)
    if as_json:
        emit_json([v.to_dict() for v in versions])
        return
    click.echo(f"{' ' if any(v.active for v in versions) else '*'} base  the packaged all-MiniLM-L6-v2")
    for v in versions:
        click.echo(f"{'*' if v.active else ' '} {v.version_id}  {v.name[:24]:24}  {v.created}  "
                   f"{v.n_pairs:>7,} pairs  {v.held_out_change()}")


@encoders_group.command("activate")
@click.argument("version_id")
@workspace_option
@json_option
def encoders_activate(version_id, workspace, as_json):
    """Make VERSION_ID the workspace's encoder ('base' = the packaged MiniLM)."""
    with workspace_db(workspace) as db:
        version = activate_encoder(db, version_id)
    if as_json:
        emit_json({"active": version.to_dict() if version else None})
    else:
        click.echo(f"active encoder: {version.version_id if version else 'base (all-MiniLM-L6-v2)'}; "
                   "models rank with the encoder they were trained with: retrain to use it there")


@encoders_group.command("delete")
@click.argument("version_id")
@workspace_option
@json_option
def encoders_delete(version_id, workspace, as_json):
    """Delete VERSION_ID, its files and its cached vectors."""
    with workspace_db(workspace) as db:
        was_active = active_encoder_version(db)
        version = delete_encoder_version(db, version_id)
        orphans = models_using(db, f"{version.version_id}@")
    if as_json:
        emit_json({"deleted": version_id, "models_without_encoder": orphans})
        return
    click.echo(f"deleted {version_id}" + (" (the packaged MiniLM is active again)"
                                          if was_active and was_active.version_id == version_id else ""))
    if orphans:
        click.echo(f"{len(orphans)} model version(s) were trained with it and cannot rank any more: "
                   f"{', '.join(orphans)}")


def register(group: click.Group) -> None:
    for cmd in (finetune_command, encoders_group):
        group.add_command(cmd)
