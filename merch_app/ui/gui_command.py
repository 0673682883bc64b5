"""``merch-app gui``: start the desktop app (or the headless demo without a display).

The command lives in the ui package because the CLI package never refers to
the Qt layer; :mod:`merch_app.__main__` adds it to the ``merch-app`` group.
Qt itself loads only when the window opens (:func:`merch_app.ui.app.run_gui`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from merch_app.cli.common import workspace_option
from merch_app.cli.demo_cmd import demo as demo_command

def has_display() -> bool:
    """True when a GUI can be shown (X11/Wayland, macOS, Windows or offscreen)."""
    if sys.platform in ("win32", "darwin"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal", "vnc")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@click.command("gui")
@workspace_option
@click.option("--demo", is_flag=True, help="Open the demo workspace (created on first run).")
@click.pass_context
def gui_command(ctx: click.Context, workspace: Path | None, demo: bool) -> None:
    """Start the GUI; without a display, say so and run the headless demo."""
    if not has_display():
        click.echo("No display found (DISPLAY/WAYLAND_DISPLAY unset): running the headless demo instead.")
        ctx.invoke(demo_command, workspace=workspace)
        return
    # Imported when the window opens: Qt and every screen take seconds to load (start-up cost).
    from merch_app.ui.app import run_gui

    raise SystemExit(run_gui(workspace=workspace, demo=demo))


def register(group: click.Group) -> None:
    """Add the ``gui`` command to ``group``."""
    group.add_command(gui_command)
