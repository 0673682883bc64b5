"""Screenshots of the Train screen's "Fine-tune encoder" step after a finished run.

Usage (from the repository root)::

    .venv/bin/python docs/screenshots/make_finetune_screenshots.py [--max-pairs N] [--encoder DIR]

Imports the demo files into a fresh temp workspace, fine-tunes the packaged
all-MiniLM-L6-v2 (or ``--encoder DIR``) on a small sample of the demo
behaviour (``--max-pairs``, default 2000; a smaller validation pool) through
the screen, and writes ``finetune.png`` (1400x900) and ``finetune_720.png``
(1280x720): the loss curve, the validation chart (the demo's 2,000 pairs hold too
few unseen anchors to validate on, and the chart says so), the before/after table
and the encoder versions list.  About a minute on two cores.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shots import open_window, pump, save, temp_home, wait_idle  # noqa: E402  (sets offscreen/offline first)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-pairs", type=int, default=2000, help="training pairs (default 2000)")
    ap.add_argument("--encoder", default=None, help="BERT folder to start from (default: the packaged MiniLM)")
    args = ap.parse_args()

    from merch_app.paths import demo_files
    from merch_app.ui.screens.mapping_dialog import ImportRequest

    tmp = temp_home("merch_finetune_shots_")
    app, window = open_window(tmp / "screenshots.merch.sqlite")
    window.show_screen("Data").start_import([ImportRequest(p) for p in demo_files()])
    wait_idle(app, window)
    panel = window.show_screen("Train").show_finetune()
    panel.encoder_spec = args.encoder
    panel.form.max_pairs.setValue(args.max_pairs)
    panel.start_finetune(overrides={"val_pool": 600, "evals_per_epoch": 4})
    wait_idle(app, window, timeout=1200)
    if panel.last_result is None:
        print("fine-tuning did not finish:", panel.log.toPlainText().splitlines()[-3:])
        return 1
    save(app, window, "finetune.png")
    window.resize(1280, 720)
    pump(app, 0.6)
    save(app, window, "finetune_720.png")
    print("\n".join(panel.log.toPlainText().splitlines()[-5:]))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
