"""Entry point of the ``merch-app`` command.

With no arguments it starts the GUI; with a subcommand it runs the CLI.  This
is the only place outside ``merch_app.ui`` that reaches the Qt layer, and it
does so lazily so the CLI never loads Qt.
"""
from __future__ import annotations

import os
import sys


def has_display() -> bool:
    """True when a GUI can be shown (X11/Wayland, macOS, Windows or offscreen)."""
    if sys.platform in ("win32", "darwin"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal", "vnc")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from merch_app.memory import configure_allocator

    configure_allocator()
    if not argv:
        argv = ["gui"]
    from merch_app.cli.main import cli

    return cli.main(args=argv, prog_name="merch-app", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main())
