"""Charts say why they are empty, keep their labels readable and fit their widgets (issue #20 screenshots)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from merch_app.ui.charts import LineChart, Waterfall  # noqa: E402
from merch_app.ui.screens.evaluate_widgets import SlopeChart  # noqa: E402
from merch_app.ui.screens.explain_panel import ExplainPanel  # noqa: E402
from merch_app.ui.screens.model_versions import ModelVersionsPanel  # noqa: E402

COMPONENTS = {"lexical": 0.5, "text": 0.38, "cf": 0.1, "popularity": 0.05, "rules": 0.0}


def _bottom_labels(widget) -> list[str]:
    return [text for _pos, text in widget.getAxis("bottom")._tickLevels[0]]


def _shown(qtbot, widget, width: int, height: int = 300) -> None:
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)


def test_waterfall_staggers_its_labels_only_when_they_collide(qtbot):
    narrow = Waterfall("Score build-up")
    _shown(qtbot, narrow.widget, 260)
    narrow.set_components(COMPONENTS)
    assert _bottom_labels(narrow.widget) == ["keywords", "\nmeaning", "behaviour", "\npopular", "rules", "\ntotal"]
    assert narrow.widget.getAxis("bottom").fixedHeight is not None  # two lines high

    wide = Waterfall("Score build-up")
    _shown(qtbot, wide.widget, 1200)
    wide.set_components(COMPONENTS)
    assert _bottom_labels(wide.widget) == ["keywords", "meaning", "behaviour", "popular", "rules", "total"]

    wide.widget.resize(260, 300)  # narrowed later (e.g. the window): re-fitted
    qtbot.waitUntil(lambda: _bottom_labels(wide.widget)[1] == "\nmeaning", timeout=5000)


def test_empty_line_chart_hides_its_legend_and_refits_after(qtbot):
    chart = LineChart("Training loss", "loss", "epoch")
    chart.set_series("epoch", [1, 2, 3], [3.0, 2.6, 2.5])
    chart.empty.show("Start training")
    assert not chart.legend.isVisible() and chart.empty.text.isVisible()
    assert chart.widget.getViewBox().viewRange()[1] == [0, 1]  # the empty look pins 0..1
    chart.empty.hide()
    chart.widget.getViewBox().updateAutoRange()
    lo, hi = chart.widget.getViewBox().viewRange()[1]
    assert chart.legend.isVisible() and lo > 2.0 and hi < 3.5  # fits the curve again, not 0..1


def test_slope_chart_without_moves_says_so(qtbot):
    slope = SlopeChart("Rank moves", empty_text="Pick a query")
    assert slope.empty.shown and slope.empty.text.toPlainText() == "Pick a query"
    slope.set_moves([{"item_id": "a", "left": 1, "right": 2, "move": -1}], "before", "after", {"a": "A"}, 10)
    assert not slope.empty.shown
    slope.set_moves([], "before", "after", {}, 10, empty="No rank moves: the top 10 is the same")
    assert slope.empty.shown and slope.empty.text.toPlainText().startswith("No rank moves")


def test_version_without_test_metrics_is_not_called_missing(qtbot):
    panel = ModelVersionsPanel(lambda fn, label: None)
    qtbot.addWidget(panel)
    panel.show_comparison(SimpleNamespace(metrics={}, name="laptop check"))
    text = panel.chart.empty.text.toPlainText()
    assert panel.chart.empty.shown and "no test-period metrics" in text and "No model version yet" not in text
    panel.show_comparison(SimpleNamespace(metrics={"model": {"ndcg@10": 0.4}, "baselines": {"popularity": {
        "ndcg@10": 0.1}}}, name="m1"))
    assert not panel.chart.empty.shown


def test_word_heatmap_fits_a_laptop_panel(qtbot):
    """The title must not widen the plot past its widget (at 1280 px the right column was cut off)."""
    panel = ExplainPanel()
    _shown(qtbot, panel, 540, 700)  # its width in a 1280×720 window
    panel.heatmap.set_matrix(np.array([[1.0, 0.43, 0.28, 0.5], [0.43, 1.0, 0.34, 0.3]]), ["christmas", "lights"],
                             ["christmas", "lights", "10", "reindeer"])
    widget = panel.heatmap.widget
    qtbot.wait(200)
    assert widget.getPlotItem().width() <= widget.width() + 1  # the old title made it 290 px in 263
