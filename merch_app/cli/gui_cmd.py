"""``merch-app gui``: start the desktop app (or the headless demo without a display)."""
from __future__ import annotations

import importlib
from pathlib import Path

import click

from merch_app.cli.common import workspace_option


def register(group: click.Group) -> None:
    @group.command("gui")
    @workspace_option
    @click.option("--demo", is_flag=True, help="Open the demo workspace (created on first run).")
    @click.pass_context
    def gui(ctx: click.Context, workspace: Path | None, demo: bool) -> None:
        """Start the GUI; without a display, say so and run the headless demo."""
        from merch_app.__main__ import has_display

        if not has_display():
            click.echo("No display found (DISPLAY/WAYLAND_DISPLAY unset): running the headless demo instead.")
            from merch_app.cli.demo_cmd import demo as demo_cmd

            ctx.invoke(demo_cmd, workspace=workspace)
            return
        # Imported by name so the CLI package has no static dependency on Qt.
        app = importlib.import_module("merch_app.ui.app")
        raise SystemExit(app.run_gui(workspace=workspace, demo=demo))
