"""``--engine local|ray``, ``--ray-address`` and ``--workers``: shared by ``encode``, ``train`` and ``finetune``."""
from __future__ import annotations

import click

from merch_app.engines import get_engine
from merch_app.engines.errors import EngineError

ENGINE_CHOICES = ("local", "ray")


def engine_options(fn):
    """Add the engine options to a command (parameters ``engine``, ``ray_address``, ``workers``)."""
    fn = click.option("--workers", type=click.IntRange(1, 4096), default=None,
                      help="Ray actors / training workers (default 2; ray engine only).")(fn)
    fn = click.option("--ray-address", default=None, metavar="ADDR",
                      help="Ray cluster to join (e.g. ray://head:10001); without it Ray starts "
                           "on this machine.")(fn)
    fn = click.option("--engine", type=click.Choice(ENGINE_CHOICES), default="local", show_default=True,
                      help="Run in this process (local) or on Ray (needs pip install 'merch_app[ray]').")(fn)
    return fn


def get_engine_or_exit(engine: str, ray_address, workers):
    """The chosen engine, or a click error naming what is wrong (e.g. Ray not installed)."""
    try:
        return get_engine(engine, address=ray_address, workers=workers)
    except EngineError as exc:
        raise click.ClickException(str(exc)) from exc
