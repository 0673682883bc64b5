"""Every screen at 1280x720 (a laptop window), plus the jobs list with two jobs running.

Usage (from the repository root)::

    .venv/bin/python docs/screenshots/make_720_screenshots.py

Imports the demo files into a fresh temp workspace, registers a small model fitted with the
hashing encoder (seconds, no download; the screens rank with ``hashing:64``) and the demo suite,
then saves ``<screen>_720.png`` for every screen (``screens_720/``) and ``jobs_list_720.png``; last the
Data, Catalogue and Query screens of an empty workspace (``empty_<screen>_720.png``).
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shots import OUT, open_window, pump, temp_home, wait_idle  # noqa: E402  (sets offscreen/offline first)

HASHING = "hashing:64"


def register_small_model(path: Path) -> None:
    """Fit a small hybrid model with hashing text vectors and register it as the active version."""
    from merch_app.data.workspace import open_workspace
    from merch_app.model import registry
    from merch_app.model.encoder import load_encoder
    from merch_app.model.hybrid import HybridConfig, HybridModel
    from merch_app.model.interactions import load_interactions
    from merch_app.model.item_vectors import item_text_vectors

    db = open_workspace(path)
    encoder = load_encoder(HASHING)
    ids, vectors = item_text_vectors(db, encoder)
    model = HybridModel(HybridConfig(dim=16, epochs=3, refit_epochs=1, batch_size=1024)).fit(
        load_interactions(db, ids), vectors)
    registry.save_version(db, model, name="laptop check", encoder_id=encoder.encoder_id, activate_mode="always")
    db.close()


def main() -> None:
    from merch_app.data.demo import import_demo_files
    from merch_app.jobs import Progress

    tmp = temp_home("merch-720-")
    ws = tmp / "demo.merch.sqlite"
    import_demo_files(ws)
    register_small_model(ws)
    app, window = open_window(ws)
    for screen in window.screens.values():
        if hasattr(screen, "encoder_spec"):
            screen.encoder_spec = HASHING
    window.resize(1280, 720)
    out = OUT / "screens_720"
    out.mkdir(exist_ok=True)
    evaluate = window.screens["Evaluate"]
    evaluate.add_demo_suite()
    wait_idle(app, window)
    for title in window.screens:
        screen = window.show_screen(title)
        wait_idle(app, window)
        if title == "Query":
            screen.controls.query_box.setText("heart")
        elif title == "Evaluate":
            evaluate.run_suite()
        elif title == "Catalogue":
            screen.tabs.setCurrentIndex(1)
        wait_idle(app, window)
        window.resize(1280, 720)
        window.banner.hide()
        pump(app, 0.5)
        if title == "Evaluate":
            screen.tabs.setCurrentIndex(1)
            pump(app, 0.3)
        name = f"{title.lower().replace(' ', '_')}_720.png"
        window.grab().save(str(out / name))
        print("wrote", name, window.width(), "x", window.height())

    release = threading.Event()

    def job(step):
        def run(ctx):
            ctx.progress(Progress(step, 10, f"epoch {step} of 10", eta_seconds=40 * (10 - step)))
            while not release.wait(0.01):
                ctx.cancel.check()
        return run

    window.show_screen("Train")
    window.create_runner("shot-a").start(job(4), label="Training “laptop check”")
    window.create_runner("shot-b").start(job(7), label="Fine-tuning encoder")  # both jobs report epochs
    pump(app, 0.5)
    window.job_status.more_button.click()
    pump(app, 0.5)
    window.grab().save(str(OUT / "jobs_list_720.png"))
    print("wrote jobs_list_720.png")
    release.set()
    wait_idle(app, window)

    # an empty workspace: the screens say what to do instead of drawing fake axes
    window.open_workspace(tmp / "empty.merch.sqlite")
    for title in ("Data", "Catalogue", "Query"):
        window.show_screen(title)
        wait_idle(app, window)
        window.resize(1280, 720)
        window.banner.hide()
        pump(app, 0.5)
        name = f"empty_{title.lower()}_720.png"
        window.grab().save(str(OUT / name))
        print("wrote", name)
    window.close()


if __name__ == "__main__":
    main()
