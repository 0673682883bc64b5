"""Render the Users and Catalogue screens offscreen on the demo workspace and save PNGs here.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_insight_screenshots.py \
        [--workspace PATH] [--user ID] [--item ID] [--epochs 4]

Without ``--workspace`` the demo files are imported into a fresh temp
workspace.  The screens use the active model; when the workspace has none a model is
trained here (MiniLM text vectors, ``--epochs`` epochs) and saved as the
active version (or, without a model registry, handed to the screens' workers).

Writes users.png, users_paths.png, users_recs.png, catalogue.png,
heatmaps.png, item.png and doctor.png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from shots import open_window, save, shield_pyside_612, temp_home, wait_idle  # offscreen/offline switches first


def trained_bundle(path: Path, epochs: int):
    """(bundle, seconds): MiniLM item vectors and a HybridModel trained on the workspace."""
    import numpy as np

    from merch_app.data.workspace import open_workspace
    from merch_app.model.bundle import ModelBundle, ModelVersion
    from merch_app.model.encoder import load_encoder
    from merch_app.model.hybrid import HybridConfig, HybridModel
    from merch_app.model.interactions import load_interactions
    from merch_app.model.item_vectors import item_text_vectors
    from merch_app.model.vector_index import VectorIndex

    t0 = time.perf_counter()
    db = open_workspace(path)
    encoder = load_encoder("minilm")
    ids, vectors = item_text_vectors(db, encoder)
    model = HybridModel(HybridConfig(epochs=epochs)).fit(load_interactions(db, ids), vectors)
    counts = dict(db.execute("SELECT item_id, count(*) FROM events GROUP BY item_id").fetchall())
    db.close()
    pop = np.log1p(np.array([counts.get(str(i), 0) for i in ids], dtype=np.float64))
    pop = (pop / max(pop.max(), 1e-9)).astype(np.float32)
    seconds = time.perf_counter() - t0
    version = ModelVersion(model_id="screenshots", name=f"hybrid, {epochs} epochs (screenshot run)",
                           created="", config=model.config.to_dict(), metrics={}, data_snapshot={},
                           encoder_id=encoder.encoder_id, path="", train_seconds=seconds)
    bundle = ModelBundle(item_ids=ids, item_vectors=vectors, popularity=pop, encoder=encoder,
                         index=VectorIndex.from_vectors(vectors), model=model, version=version)
    return bundle, seconds


def register(path: Path, bundle, seconds: float) -> bool:
    """Save the model as the active version (True), or False without a model registry."""
    from merch_app.data.workspace import open_workspace

    try:
        from merch_app.model.registry import save_version
    except ImportError:
        return False
    db = open_workspace(path)
    try:
        save_version(db, bundle.model, name=bundle.version.name, encoder_id=bundle.encoder.encoder_id,
                     train_seconds=seconds, activate_mode="always")
    finally:
        db.close()
    return True


def has_active_model(path: Path) -> bool:
    from merch_app.data.workspace import open_workspace

    try:
        from merch_app.model.registry import active_version
    except ImportError:
        return False
    db = open_workspace(path)
    try:
        return active_version(db) is not None
    finally:
        db.close()


def busiest_user_with_returns(path: Path):
    """The user with the most events among those who returned something (a richer path)."""
    from merch_app.data.workspace import open_workspace

    db = open_workspace(path)
    try:
        row = db.execute(
            """SELECT user_id FROM events WHERE user_id IN
                 (SELECT user_id FROM events WHERE event_type = 'return' GROUP BY user_id HAVING count(*) >= 3)
               GROUP BY user_id HAVING count(DISTINCT session_id) BETWEEN 8 AND 40
               ORDER BY count(*) DESC LIMIT 1""").fetchone()
        return row[0] if row else None
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--user", default=None, help="user shown (default: the busiest one with returns)")
    ap.add_argument("--item", default="85123A", help="item page shown")
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args(argv)

    tmp = temp_home("merch_insight_shots_")
    shield_pyside_612()
    from merch_app.data.demo import ensure_demo_workspace
    from merch_app.services import query_engine

    path = args.workspace or ensure_demo_workspace(tmp / "demo.merch.sqlite")
    if not has_active_model(path):
        bundle, seconds = trained_bundle(path, args.epochs)
        print(f"trained a model here in {seconds:.0f}s ({len(bundle.model.user_ids)} users)")
        if not register(path, bundle, seconds):  # no registry yet: hand the bundle to the workers
            query_engine._load_bundle = lambda _db, _spec: (bundle, None)

    app, window = open_window(path)

    users = window.show_screen("Users")
    wait_idle(app, window)
    user = args.user or busiest_user_with_returns(path)
    if user:
        users.open_user(user)
    wait_idle(app, window)
    wait_idle(app, window)
    save(app, window, "users.png")
    print("  users charts:", users.chart_sizes())
    users.tabs.setCurrentIndex(1)
    users.paths.funnel_text.setText(args.item)
    users.paths.funnel_button.click()
    wait_idle(app, window)
    save(app, window, "users_paths.png")
    users.tabs.setCurrentIndex(2)
    wait_idle(app, window)
    save(app, window, "users_recs.png")

    cat = window.show_screen("Catalogue")
    wait_idle(app, window)
    wait_idle(app, window)
    cat.map.select(args.item)  # the hover ring and label, as when the mouse is over the point
    save(app, window, "catalogue.png")
    print("  map points:", len(cat.map), cat.map_note.text())
    cat.tabs.setCurrentIndex(1)
    wait_idle(app, window)
    save(app, window, "heatmaps.png")
    cat.open_item(args.item)
    wait_idle(app, window)
    wait_idle(app, window)
    save(app, window, "item.png")
    print("  item:", cat.item_panel.sizes())
    cat.tabs.setCurrentIndex(3)
    cat.run_doctor()
    wait_idle(app, window, timeout=1800)
    save(app, window, "doctor.png")
    print("  doctor:", cat.doctor.report.summary() if cat.doctor.report else None)
    for r in window.runners:
        r.shutdown()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
