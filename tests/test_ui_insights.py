"""Users and Catalogue screens on a small shop: every chart holds data, clicks open pages."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from ui_support import import_shop, make_window, wait_idle  # noqa: E402


def trained_bundle(db, epochs: int = 2):
    """A bundle with a small HybridModel trained on the workspace (hashing text vectors)."""
    from merch_app.model.bundle import ModelBundle
    from merch_app.model.encoder import load_encoder
    from merch_app.model.hybrid import HybridConfig, HybridModel
    from merch_app.model.interactions import load_interactions
    from merch_app.model.item_vectors import item_text_vectors
    from merch_app.model.vector_index import VectorIndex

    encoder = load_encoder("hashing:64")
    ids, vectors = item_text_vectors(db, encoder)
    inter = load_interactions(db, ids)
    model = HybridModel(HybridConfig(dim=8, epochs=epochs, refit_epochs=1, batch_size=1024)).fit(inter, vectors)
    counts = dict(db.execute("SELECT item_id, count(*) FROM events GROUP BY item_id").fetchall())
    pop = np.log1p(np.array([counts.get(str(i), 0) for i in ids], dtype=np.float64))
    pop = (pop / max(pop.max(), 1e-9)).astype(np.float32)
    return ModelBundle(item_ids=ids, item_vectors=vectors, popularity=pop, encoder=encoder,
                       index=VectorIndex.from_vectors(vectors), model=model)


@pytest.fixture
def shop_path(tmp_path, ws_path):
    import_shop(tmp_path / "shop", ws_path)
    return ws_path


@pytest.fixture
def with_model(monkeypatch, shop_path):
    """Make the screens' worker engine use a trained model (no registry needed)."""
    from merch_app.data.workspace import open_workspace
    from merch_app.services import query_engine

    db = open_workspace(shop_path)
    bundle = trained_bundle(db)
    db.close()
    monkeypatch.setattr(query_engine, "ranking_bundle", lambda *_a, **_k: bundle)
    return bundle


def _window(qtbot, path):
    window = make_window(qtbot, path)
    for name in ("Users", "Catalogue"):
        window.screens[name].encoder_spec = "hashing:64"
    return window


def test_users_screen_profile_paths_funnel_recs(qtbot, shop_path, with_model):
    window = _window(qtbot, shop_path)
    users = window.show_screen("Users")
    qtbot.waitUntil(lambda: users.user_list.count() > 0, timeout=30_000)
    wait_idle(qtbot, window)
    first = users.user_list.item(0).data(0x0100)
    assert users.user_id == first and users.profile is not None and users.profile.exists
    sizes = users.chart_sizes()
    assert sizes["activity"] == users.profile.n_events > 0
    assert sizes["mix"] >= 2 and sizes["categories"] >= 1 and sizes["terms"] >= 3 and sizes["history"] > 0
    assert sizes["recs"] == 20
    from merch_app.insights.paths import group_steps

    assert len(users.paths.path.steps) == users.profile.n_events
    assert sizes["path"] == len(group_steps(users.paths.path.steps)) > 0
    assert "events on" in users.header.text()
    # recommendations are explained like on the Query screen, nearest users come from the model
    qtbot.waitUntil(lambda: users.recs_panel.explain.explanation is not None, timeout=30_000)
    assert users.recs_panel.explain.explanation.item_id == users.recs["ranked"].item_ids[0]
    assert users.recs_panel.nearest.count() == 10
    # a session narrows the path
    users.paths.sessions.setCurrentRow(1)
    wait_idle(qtbot, window)
    assert 0 < users.paths.chart.n_points <= users.profile.n_events
    # aggregate funnel of an item of the history
    item = users.profile.history[0]["item_id"]
    users.paths.funnel_text.setText(item)
    users.paths.funnel_button.click()
    qtbot.waitUntil(lambda: users.paths.funnel is not None, timeout=30_000)
    f = users.paths.funnel
    assert f.stages == ["view", "click", "cart", "purchase"] and f.reached[0] >= 1
    assert users.chart_sizes()["funnel"] == 4
    # search and the cold list
    users.search_box.setText(first[:2])
    qtbot.waitUntil(lambda: users.user_list.count() > 0 and
                    all(users.user_list.item(i).data(0x0100).startswith(first[:2])
                        for i in range(users.user_list.count())), timeout=30_000)
    users.search_box.setText("")
    users.kind_box.setCurrentIndex(2)
    wait_idle(qtbot, window)
    assert users.user_list.count() > 0
    # opening a nearest user switches the profile
    other = users.recs_panel.nearest.item(0).data(0x0100)
    users.recs_panel.user_activated.emit(other)
    qtbot.waitUntil(lambda: users.profile is not None and users.profile.user_id == other, timeout=30_000)
    wait_idle(qtbot, window)


def test_catalogue_screen_map_heatmaps_item_doctor(qtbot, shop_path, with_model):
    window = _window(qtbot, shop_path)
    cat = window.show_screen("Catalogue")
    qtbot.waitUntil(lambda: cat.map_result is not None and cat.heat is not None and cat.segments is not None,
                    timeout=60_000)
    wait_idle(qtbot, window)
    n_items = len(with_model.item_ids)
    assert len(cat.map) == n_items and cat.map.point_count() == n_items
    assert cat.map_result["groups"].source == "category"
    assert sorted(cat.map.names) == ["decor", "garden", "kitchen", "toys"]
    # heatmap: rows are categories, all events counted, 168 hour columns
    assert cat.heat.values.shape == (4, 168) and cat.heat.values.sum() == 900  # the 3 bad rows were rejected
    assert cat.how.matrix.shape == (4, 168)
    seg = cat.segments["segments"]
    assert cat.affinity.matrix.shape == (6, 4) and seg.result.sizes.sum() == len(with_model.model.user_ids)
    # hover finds the nearest point; clicking opens the item page
    x, y = (float(v) for v in cat.map.xy[5])
    assert cat.map.nearest(x, y) == 5
    cat.map.point_clicked.emit(cat.map.ids[5])
    qtbot.waitUntil(lambda: cat.item_panel.model_views is not None, timeout=30_000)
    wait_idle(qtbot, window)
    assert cat.tabs.currentWidget() is cat.item_panel
    sizes = cat.item_panel.sizes()
    assert sizes["activity"] == cat.item_panel.page.n_events and sizes["funnel"] == 4
    assert sizes["related_text"] == 10 and cat.item_panel.related_cf.rowCount() == 10
    # the model maps
    cat.map_kind.setCurrentIndex(2)  # users
    qtbot.waitUntil(lambda: cat.map_result["map"].kind == "user", timeout=30_000)
    assert len(cat.map) == len(with_model.model.user_ids)
    cat.map_kind.setCurrentIndex(1)  # items, model vectors
    qtbot.waitUntil(lambda: cat.map_result["map"].kind == "item", timeout=30_000)
    # doctor
    cat.run_doctor()
    qtbot.waitUntil(lambda: cat.doctor.report is not None, timeout=60_000)
    wait_idle(qtbot, window)
    r = cat.doctor.report
    assert r.popularity_bias is not None and r.cold_start is not None
    x, y = cat.doctor.lorenz_curve.getData()
    assert len(x) > 2 and y[-1] == pytest.approx(1.0)
    assert len(cat.doctor.deciles.labels) == 10
    assert cat.doctor.tables["untouched"].rowCount() == r.n_untouched
    assert "coverage" in cat.doctor.summary.text()
    # a capped near-duplicate list says so ("5,000+"), an uncapped one its count
    from merch_app.insights.doctor import NEAR_DUPLICATE_MAX

    near_tab = 2  # tabs: text problems, duplicates, near-duplicates, no behaviour
    assert cat.doctor.tabs.tabText(near_tab) == f"Near-duplicates ({len(r.near_duplicates):,})"
    r.near_duplicates = [("a", "b", 0.99)] * NEAR_DUPLICATE_MAX
    cat.doctor._tables(r, {})
    assert cat.doctor.tabs.tabText(near_tab) == "Near-duplicates (5,000+)"


def test_catalogue_without_model_and_empty_workspace(qtbot, tmp_path):
    from merch_app.data.workspace import open_workspace

    empty = tmp_path / "empty.merch.sqlite"
    open_workspace(empty).close()
    window = _window(qtbot, empty)
    cat = window.show_screen("Catalogue")
    wait_idle(qtbot, window)
    assert cat.heat is not None and cat.heat.empty
    # no items: the map job fails with a message, not a crash
    assert window.banner.isVisible() and "no items" in window.banner.label.text().lower()
    users = window.show_screen("Users")
    wait_idle(qtbot, window)
    assert users.user_list.count() == 0 and "no events" in users.header.text()


def test_category_map_many_points_hover_and_click(qtbot):
    from PySide6.QtCore import QPointF

    from merch_app.ui.app import create_app
    from merch_app.ui.screens.insights_charts import CategoryMap

    create_app()
    rng = np.random.default_rng(0)
    n = 50_000
    xy = rng.normal(size=(n, 2)).astype(np.float32)
    codes = rng.integers(0, 13, size=n)
    names = [f"c{i}" for i in range(12)] + ["(other)"]
    m = CategoryMap("test")
    qtbot.addWidget(m.widget)
    m.widget.resize(800, 600)
    m.widget.show()
    m.set_map(xy, [f"I{i}" for i in range(n)], [f"item {i}" for i in range(n)], codes, names)
    assert m.point_count() == n and len(m.legend.items) == 13
    assert all(len(layer.data) == int((codes == c).sum()) for c, layer in enumerate(m.layers))
    i = 1234
    assert m.nearest(float(xy[i, 0]), float(xy[i, 1])) in {i} | set(
        np.flatnonzero(np.all(np.isclose(xy, xy[i], atol=1e-3), axis=1)).tolist())
    assert m.nearest(1e6, 1e6) is None
    # the mouse over a point (scene coordinates, as the scene reports them) rings it and shows its title
    px, py = float(xy[i, 0]), float(xy[i, 1])
    m.widget.getViewBox().setRange(xRange=(px - 0.01, px + 0.01), yRange=(py - 0.01, py + 0.01), padding=0)
    qtbot.wait(50)
    scene_pos = m.widget.getViewBox().mapViewToScene(QPointF(px, py))
    m._moved((scene_pos,))
    assert m.hovered == i and m.label.isVisible() and "item 1234" in m.label.toPlainText()

    class Click:
        def scenePos(self):  # noqa: N802 - Qt name
            return scene_pos

    with qtbot.waitSignal(m.point_clicked) as sig:
        m._clicked(Click())
    assert sig.args == ["I1234"]
    assert m.select("I7") and m.hovered == 7 and not m.select("nope")


@pytest.mark.slow
def test_every_view_on_the_demo_workspace(qtbot, tmp_path, monkeypatch):
    """The bundled demo (Online Retail subset: purchases and returns, no categories) in every view."""
    from merch_app.data.demo import ensure_demo_workspace
    from merch_app.data.workspace import open_workspace
    from merch_app.services import query_engine

    path = ensure_demo_workspace(tmp_path / "demo.merch.sqlite")
    db = open_workspace(path)
    bundle = trained_bundle(db, epochs=1)
    db.close()
    monkeypatch.setattr(query_engine, "ranking_bundle", lambda *_a, **_k: bundle)
    window = _window(qtbot, path)

    users = window.show_screen("Users")
    qtbot.waitUntil(lambda: users.profile is not None and users.recs is not None, timeout=120_000)
    wait_idle(qtbot, window)
    sizes = users.chart_sizes()
    assert sizes["activity"] == users.profile.n_events and sizes["mix"] >= 1 and sizes["terms"] > 0
    assert sizes["history"] > 0 and sizes["path"] > 0 and sizes["recs"] == 20
    # no categories in Online Retail: the profile falls back to text clusters of the titles
    qtbot.waitUntil(lambda: users.item_group is not None, timeout=60_000)
    wait_idle(qtbot, window)
    assert users.chart_sizes()["categories"] > 1
    users.show_funnel("item", "85123A")
    qtbot.waitUntil(lambda: users.paths.funnel is not None, timeout=30_000)
    assert users.paths.funnel.stages == ["purchase"] and users.paths.funnel.returned > 0

    cat = window.show_screen("Catalogue")
    qtbot.waitUntil(lambda: cat.map_result is not None and cat.segments is not None and cat.heat is not None,
                    timeout=120_000)
    wait_idle(qtbot, window)
    assert len(cat.map) == len(bundle.item_ids) and len(cat.map.names) == 12  # text clusters
    assert cat.heat.values.shape[1] == 168 and len(cat.heat.rows) > 1 and cat.heat.values[:, 5 * 24:6 * 24].sum() == 0
    assert cat.affinity.matrix.shape[0] == 6
    cat.open_item("85123A")
    qtbot.waitUntil(lambda: cat.item_panel.model_views is not None, timeout=60_000)
    assert cat.item_panel.sizes()["related_text"] == 10 and cat.item_panel.queries.rowCount() >= 2
    cat.run_doctor()
    qtbot.waitUntil(lambda: cat.doctor.report is not None, timeout=240_000)
    r = cat.doctor.report
    assert r.near_duplicates and r.text.duplicate_groups and r.cold_start.cold_max_events >= 1
    assert len(cat.doctor.lorenz_curve.getData()[0]) > 2

