"""The ``merch-app`` click group; each subcommand lives in its own module."""
from __future__ import annotations

import importlib
import sqlite3

import click

from merch_app import __version__
from merch_app.data.workspace import storage_problem

# Modules that define commands; each exposes ``register(group)``.
COMMAND_MODULES = [
    "merch_app.cli.import_cmd",
    "merch_app.cli.demo_cmd",
    "merch_app.cli.gui_cmd",
    "merch_app.cli.encode_cmd",
    "merch_app.cli.model_cmds",
    "merch_app.cli.query_cmds",
    "merch_app.cli.insights_cmds",
    "merch_app.cli.suite_cmds",
    "merch_app.cli.privacy_cmd",
    "merch_app.cli.settings_cmd",
]


class _Group(click.Group):
    """The command group; storage failures (damaged file, full disk, read-only) end in one clear line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (sqlite3.DatabaseError, OSError) as exc:
            problem = storage_problem(exc)
            if problem is None:
                raise
            raise click.ClickException(f"workspace: {problem}") from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="merch-app")
def cli() -> None:
    """merch_app: import shop data, train a BERT + CF model, query, explain, evaluate."""


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != _name:
            raise
        continue
    _mod.register(cli)
