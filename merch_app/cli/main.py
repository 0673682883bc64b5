"""The ``merch-app`` click group: a static table of commands, each module imported when its command runs.

``merch-app --help`` lists every command from :data:`COMMANDS` (name, module,
short help) without importing any command module: importing them all cost
0.3 s of sqlite-utils/pandas and 1-4 s of torch (through the privacy and model
commands) before any command could start (docs/benchmarks.md, cold start).
Each module exposes ``register(group)``, which adds its commands.  Commands
outside this package (the GUI) join the table with :meth:`LazyGroup.add_lazy_command`
(see :mod:`merch_app.__main__`).
"""
from __future__ import annotations

import importlib
import sqlite3

import click

from merch_app import __version__
from merch_app.data.workspace import storage_problem
from merch_app.errors import MerchAppError

# name -> (module whose register(group) adds it, short help shown by --help).
# tests/test_cli_startup.py checks the short help against each command's own.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("merch_app.cli.demo_cmd",
             "Import the demo data (Online Retail subset) into the demo workspace and summarise it."),
    "doctor": ("merch_app.cli.insights_cmds",
               "Catalogue doctor: empty/short/duplicate texts, near-duplicates, untouched items, cold-start "
               "lens and popularity bias of the model."),
    "encode": ("merch_app.cli.encode_cmd", "Encode all item texts (only texts missing from the cache are run)."),
    "encoders": ("merch_app.cli.finetune_cmds", "List, activate and delete fine-tuned encoder versions."),
    "evaluate": ("merch_app.cli.model_cmds", "Evaluate a model version and the baselines on its time split."),
    "explain": ("merch_app.cli.query_cmds",
                'Explain the score of --item for the query TEXT (with "why not" when it is not in the top k).'),
    "finetune": ("merch_app.cli.finetune_cmds",
                 "Fine-tune the text encoder on the shop's behaviour and register it as an encoder version."),
    "forget": ("merch_app.cli.privacy_cmd",
               "Forget USER (original id or pseudonym): delete their events, rejected lines, cached query "
               "vectors and model data, then refresh the active model incrementally."),
    "funnel": ("merch_app.cli.insights_cmds",
               "Aggregate funnel (search → view → click → cart → purchase) of an item or a query."),
    "heatmap": ("merch_app.cli.insights_cmds", "Events per category and hour of the week (UTC)."),
    "import": ("merch_app.cli.import_cmd",
               "Import FILE... (CSV/TSV, .gz too): catalogues, events or transaction exports."),
    "item": ("merch_app.cli.insights_cmds",
             "Item page of ITEM_ID: events, buyers, queries leading to it, funnel, related items, query ranks."),
    "models": ("merch_app.cli.model_cmds", "List, activate, rename and delete model versions."),
    "query": ("merch_app.cli.query_cmds", "Hybrid search for TEXT (keywords + meaning + behaviour + popularity)."),
    "recommend": ("merch_app.cli.query_cmds", "Recommendations for a user (CF + popularity)."),
    "related": ("merch_app.cli.query_cmds", "Items related to ITEM (an item id)."),
    "rules": ("merch_app.cli.suite_cmds",
              "Merchandising rules: pin, boost, bury, hide, synonyms, query rewrites; lifecycle, conflicts, usage."),
    "searchlog": ("merch_app.cli.searchlog_cmds",
                  "Search-log insight: top queries, zero results, no clicks, synonym suggestions."),
    "segments": ("merch_app.cli.insights_cmds",
                 "k-means segments of the model's user vectors and the categories each prefers."),
    "settings": ("merch_app.cli.settings_cmd",
                 "Show the workspace settings (int8 encoder, vector index kind); change them with 'set'."),
    "suite": ("merch_app.cli.suite_cmds",
              "Judged query suites: run, import/export, generate from behaviour or derive from purchases, compare."),
    "train": ("merch_app.cli.model_cmds", "Train, evaluate and register a new model version."),
    "update": ("merch_app.cli.model_cmds",
               "Continue training a model on the events that arrived since (new version)."),
    "user": ("merch_app.cli.insights_cmds",
             "Profile of USER_ID: activity, event mix, categories, interest terms, sessions, recommendations."),
    "users": ("merch_app.cli.insights_cmds",
              "Users to look at: most active, a random sample, cold (fewest events) or by id prefix."),
}


class LazyGroup(click.Group):
    """A click group whose commands are imported from a table when first used (click's LazyGroup pattern).

    Parameters
    ----------
    lazy_commands
        ``{name: (module, short help)}``; the module's ``register(group)`` adds
        the command (and any others it defines).
    """

    def __init__(self, *args, lazy_commands: dict[str, tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, tuple[str, str]] = dict(lazy_commands or {})

    def add_lazy_command(self, name: str, module: str, short_help: str) -> None:
        """Add ``name`` to the table: ``module.register(group)`` defines it, ``short_help`` is its --help line."""
        self.lazy_commands[name] = (module, short_help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self._load(cmd_name)
        return self.commands.get(cmd_name)

    def _load(self, name: str) -> None:
        module_name = self.lazy_commands[name][0]
        # Imported by name when the command runs: the one start-up reason for a late import here.
        module = importlib.import_module(module_name)
        found = click.Group(name)
        module.register(found)
        for cmd_name, cmd in found.commands.items():
            self.commands.setdefault(cmd_name, cmd)
        if name not in self.commands:
            raise RuntimeError(f"{module_name}.register() does not define the command {name!r}")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of --help, from the table for commands not imported yet."""
        names = [n for n in self.list_commands(ctx)
                 if n in self.lazy_commands or not self.commands[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            # A stand-in with the table's help shortens it exactly as click shortens a command's own.
            cmd = self.commands.get(name) or click.Command(name, help=self.lazy_commands[name][1])
            rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class _Group(LazyGroup):
    """The command group: user errors (:class:`~merch_app.errors.MerchAppError`, e.g. an encoder whose
    weights cannot load on first use) and storage failures (damaged file, full disk, read-only) end
    in one clear line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MerchAppError as exc:
            raise click.ClickException(str(exc)) from exc
        except (sqlite3.DatabaseError, OSError) as exc:
            problem = storage_problem(exc)
            if problem is None:
                raise
            raise click.ClickException(f"workspace: {problem}") from exc


@click.group(cls=_Group, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="merch-app")
def cli() -> None:
    """merch_app: import shop data, train a BERT + CF model, query, explain, evaluate."""
