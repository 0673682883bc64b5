"""Entry point of the ``merch-app`` command: the composition root of the CLI and the GUI.

With no arguments it starts the GUI; with a subcommand it runs the CLI.  The
``gui`` command is defined in the ui package (:mod:`merch_app.ui.gui_command`)
and joins the CLI group here, by name: the cli package never refers to the Qt
layer, and neither Qt nor any command module loads before its command runs.
"""
from __future__ import annotations

import os
import sys

from merch_app.cli.main import cli
from merch_app.memory import configure_allocator

# The --help line of ``gui``, kept here so --help does not import the ui package (checked by a test).
GUI_SHORT_HELP = "Start the GUI; without a display, say so and run the headless demo."


def register_gui(group) -> None:
    """Add the ``gui`` command of :mod:`merch_app.ui.gui_command` to ``group`` (imported when it runs)."""
    group.add_lazy_command("gui", "merch_app.ui.gui_command", GUI_SHORT_HELP)


def main(argv: list[str] | None = None) -> int:
    """Run ``merch-app`` with ``argv`` (default: the process arguments); no arguments start the GUI.

    Returns
    -------
    int
        The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    configure_allocator()
    if not argv:
        argv = ["gui"]
    register_gui(cli)
    return cli.main(args=argv, prog_name="merch-app", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main())
