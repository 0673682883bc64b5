"""The ``merch-app`` click group; each subcommand lives in its own module."""
from __future__ import annotations

import importlib

import click

from merch_app import __version__

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
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
