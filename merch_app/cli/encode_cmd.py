"""``merch-app encode``: encode every item text into the workspace embedding cache."""
from __future__ import annotations

import click

from merch_app.cli.common import TerminalProgress, emit_json, json_option, workspace_db, workspace_option
from merch_app.cli.engine_options import engine_options, get_engine_or_exit
from merch_app.jobs import CancelToken, Cancelled
from merch_app.model.encoder import workspace_encoder


@click.command("encode")
@workspace_option
@click.option(
    "--encoder",
    "encoder_spec",
    default="minilm",
    show_default=True,
    metavar="DIR|minilm|hashing",
    help="Text encoder: the bundled MiniLM, 'hashing[:dim]', or a local BERT folder.",
)
@click.option("--int8/--fp32", "int8", default=None,
              help="Dynamic int8 quantisation of the BERT encoder (~4x faster, slightly lower quality); "
                   "default: the workspace setting encoder_int8 (merch-app settings).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 4096))
@engine_options
@json_option
def encode_command(workspace, encoder_spec, int8, batch_size, engine, ray_address, workers, as_json) -> None:
    """Encode all item texts (only texts missing from the cache are run)."""
    runner = get_engine_or_exit(engine, ray_address, workers)
    with workspace_db(workspace) as db:
        encoder = workspace_encoder(db, encoder_spec, int8)
        bar = TerminalProgress("encode", enabled=None if not as_json else False)
        cancel = CancelToken()
        try:
            result = runner.encode_items(db, encoder, batch_size=batch_size, progress=bar, cancel=cancel)
        except (KeyboardInterrupt, Cancelled):
            bar.close()
            raise click.ClickException("encoding interrupted; vectors of finished chunks are kept in the cache")
        except (ValueError, RuntimeError) as exc:  # EngineError is a ValueError; Ray failures RuntimeErrors
            bar.close()
            raise click.ClickException(str(exc)) from exc
        bar.close()
    stats = result.stats
    out = {
        "items": int(len(result.item_ids)),
        "encoded": stats.encoded,
        "cached": stats.cached,
        "seconds": round(stats.seconds, 3),
        "items_per_s": round(len(result.item_ids) / stats.seconds, 1) if stats.seconds > 0 else None,
        "encoder_id": encoder.encoder_id,
        **runner.describe(),
    }
    if as_json:
        emit_json(out)
        return
    if out["items"] == 0:
        click.echo("No items in the workspace; import a catalogue first.")
        return
    click.echo(
        f"{out['items']} items: {out['encoded']} texts encoded, {out['cached']} from cache "
        f"in {out['seconds']:.1f} s with {out['encoder_id']}"
        + (f" on Ray ({out['workers']} workers)" if out["engine"] == "ray" else "")
    )


def register(group: click.Group) -> None:
    group.add_command(encode_command)
