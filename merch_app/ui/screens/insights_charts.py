"""Charts of the insight screens: the large category map, behaviour paths, funnels, heatmaps.

All are built once and updated in place (``setData``/``setOpts``).  The map
draws one ``ScatterPlotItem`` per colour (pxMode, cached fragments, no
per-point brushes) and finds the point under the mouse itself with one
vectorised distance computation, so hovering over 100k points never
creates per-point Python objects.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsItem

from merch_app.insights.common import PATH_LEVELS, WEEKDAYS
from merch_app.ui.charts import EmptyState, Heatmap, make_plot

# 12 distinguishable colours (Tableau 10 + 2) and grey for "(other)" / "(no category)".
CATEGORY_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939"]
GREY = "#9a9a9a"
EVENT_COLOURS = {"search": "#7f7f7f", "view": "#1f77b4", "click": "#17becf", "cart": "#ff7f0e",
                 "purchase": "#2ca02c", "return": "#d62728", "rating": "#9467bd"}
HOVER_RADIUS_PX = 7


def category_colour(name: str, index: int) -> str:
    if name.startswith("(other") or name == "(no category)":
        return GREY
    return CATEGORY_COLOURS[index % len(CATEGORY_COLOURS)]


class CategoryMap(QObject):
    """Scatter map of up to a few hundred thousand points coloured by category.

    Signals
    -------
    point_clicked(str)
        Id of the point clicked (nearest within a few pixels).
    """

    point_clicked = Signal(str)

    def __init__(self, title: str = "", point_size: float = 4.0) -> None:
        super().__init__()
        self.widget = make_plot(title, "PC 2", "PC 1", min_height=300)
        self.widget.setMenuEnabled(False)
        self.widget.showGrid(x=False, y=False)  # grid lines over the whole view double the frame time
        self.legend = self.widget.addLegend(offset=(-5, 5), labelTextSize="8pt", colCount=1,
                                            brush=pg.mkBrush(255, 255, 255, 215), pen=pg.mkPen("#bbbbbb"))
        self.point_size = point_size
        self.layers: list[pg.ScatterPlotItem] = []
        self.marker = pg.ScatterPlotItem(size=14, pen=pg.mkPen("#000", width=2), brush=None)
        self.marker.setZValue(10)
        self.widget.addItem(self.marker)
        self.label = pg.TextItem("", color="#111", fill=pg.mkBrush(255, 255, 255, 230), border=pg.mkPen("#888"),
                                 anchor=(0, 1))
        self.label.setZValue(11)
        self.label.hide()
        self.widget.addItem(self.label, ignoreBounds=True)
        self.xy = np.zeros((0, 2), np.float32)
        self.ids: list[str] = []
        self.titles: list[str] = []
        self.codes = np.zeros(0, np.int32)
        self.names: list[str] = []
        self.hovered: Optional[int] = None
        self._move_proxy = pg.SignalProxy(self.widget.scene().sigMouseMoved, rateLimit=40, slot=self._moved)
        self.widget.scene().sigMouseClicked.connect(self._clicked)
        self.empty = EmptyState(self.widget, "No items yet — import a catalogue or open the demo (File menu)")

    def __len__(self) -> int:
        return len(self.ids)

    def set_map(self, xy: np.ndarray, ids: Sequence[str], titles: Sequence[str], codes: np.ndarray,
                names: Sequence[str]) -> None:
        """Show points ``xy`` with category ``codes`` (indices into ``names``)."""
        self.xy = np.ascontiguousarray(xy, dtype=np.float32).reshape(-1, 2)
        self.ids, self.titles = list(ids), list(titles)
        self.codes = np.asarray(codes, dtype=np.int32)
        self.names = list(names)
        if len(self.xy):
            self.empty.hide(grid=(False, False))
        else:
            self.empty.show()
        self.legend.setVisible(bool(self.names))
        size = self.point_size if len(self.xy) > 20000 else self.point_size + 2
        self.legend.clear()
        for c, name in enumerate(self.names):
            if c >= len(self.layers):
                layer = pg.ScatterPlotItem(pxMode=True, useCache=True, pen=None)
                # hover ring and label repaint over a cached picture of the points (ms, not tens of ms)
                layer.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
                self.widget.addItem(layer)
                self.layers.append(layer)
            layer = self.layers[c]
            rows = np.flatnonzero(self.codes == c)
            colour = QColor(category_colour(name, c))
            colour.setAlpha(170)
            layer.setData(x=self.xy[rows, 0], y=self.xy[rows, 1], size=size, brush=pg.mkBrush(colour), pen=None)
            layer.setZValue(-1 if colour.name() == GREY else 0)
            self.legend.addItem(layer, f"{name} ({len(rows):,})")
        for layer in self.layers[len(self.names):]:
            layer.setData(x=[], y=[])
        self.marker.setData([], [])
        self.label.hide()
        self.hovered = None
        self.widget.autoRange()

    def point_count(self) -> int:
        return int(sum(len(layer.data) for layer in self.layers))

    def nearest(self, x: float, y: float, radius_px: float = HOVER_RADIUS_PX) -> Optional[int]:
        """Index of the point nearest to view position (x, y) within ``radius_px`` pixels."""
        if not len(self.xy):
            return None
        px, py = self.widget.getViewBox().viewPixelSize()
        dx = (self.xy[:, 0] - x) / max(px, 1e-30)
        dy = (self.xy[:, 1] - y) / max(py, 1e-30)
        d = dx * dx + dy * dy
        i = int(np.argmin(d))
        return i if d[i] <= radius_px * radius_px else None

    def highlight(self, index: Optional[int]) -> None:
        """Ring around point ``index`` with its title (None hides both)."""
        self.hovered = index
        if index is None:
            self.marker.setData([], [])
            self.label.hide()
            return
        x, y = float(self.xy[index, 0]), float(self.xy[index, 1])
        self.marker.setData([x], [y])
        cat = self.names[self.codes[index]] if len(self.names) else ""
        self.label.setText(f"{self.titles[index]}\n{self.ids[index]} · {cat}")
        self.label.setPos(x, y)
        self.label.show()

    def select(self, item_id: str) -> bool:
        try:
            self.highlight(self.ids.index(item_id))
            return True
        except ValueError:
            return False

    def _view_pos(self, scene_pos) -> Optional[QPointF]:
        vb = self.widget.getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        return vb.mapSceneToView(scene_pos)

    def _moved(self, args) -> None:
        pos = self._view_pos(args[0])
        index = self.nearest(pos.x(), pos.y()) if pos is not None else None
        if index != self.hovered:
            self.highlight(index)

    def _clicked(self, ev) -> None:
        pos = self._view_pos(ev.scenePos())
        if pos is None:
            return
        index = self.nearest(pos.x(), pos.y())
        if index is not None:
            self.highlight(index)
            self.point_clicked.emit(self.ids[index])


class PathChart:
    """A behaviour path: event levels (search … return) over time or in step order."""

    def __init__(self, title: str = "Behaviour path") -> None:
        self.widget = make_plot(title, "", "time", date_axis=True, min_height=220)
        self.widget.getAxis("left").setTicks([[(n, name) for n, name in enumerate(PATH_LEVELS)]])
        self.widget.setYRange(-0.5, len(PATH_LEVELS) - 0.5, padding=0)
        self.widget.setMouseEnabled(x=True, y=False)
        self.line = self.widget.plot([], [], pen=pg.mkPen("#b0b0b0", width=1.5))
        self.points = pg.ScatterPlotItem(size=9, pen=pg.mkPen("#333", width=0.5), hoverable=True,
                                         tip=lambda x, y, data: str(data))
        self.widget.addItem(self.points)
        self.n_points = 0

    def set_path(self, x: np.ndarray, levels: np.ndarray, event_types: Sequence[str], tips: Sequence[str],
                 sizes: Optional[Sequence[float]] = None) -> None:
        """Points at (``x``, level) joined in order; ``sizes`` in pixels (default 9)."""
        x, levels = np.asarray(x, float), np.asarray(levels, float)
        self.n_points = len(x)
        self.line.setData(x, levels)
        brushes = [pg.mkBrush(EVENT_COLOURS.get(t, "#444")) for t in event_types]
        size = list(sizes) if sizes is not None else 9
        self.points.setData(x=x, y=levels, brush=brushes, size=size, data=list(tips))
        if len(x):
            pad = max((x.max() - x.min()) * 0.03, 0.5 if x.max() - x.min() < 1000 else 30.0)
            self.widget.setXRange(x.min() - pad, x.max() + pad, padding=0)
        self.widget.setYRange(-0.5, len(PATH_LEVELS) - 0.5, padding=0)


class VBarChart:
    """Vertical bars with a label above each (formatted by ``fmt``); at least ``min_slots`` wide."""

    def __init__(self, title: str = "", left: str = "", colour: str = "#1f77b4", min_slots: int = 4,
                 label_chars: int = 14) -> None:
        self.widget = make_plot(title, left, min_height=200)
        self.widget.showGrid(x=False, y=True, alpha=0.2)
        self.widget.setMouseEnabled(x=False, y=False)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush=colour, pen=None)
        self.widget.addItem(self.bars)
        self.colour = colour
        self.min_slots = min_slots
        self.label_chars = label_chars
        self.texts: list[pg.TextItem] = []
        self.labels: list[str] = []
        self.values = np.zeros(0)

    def set_bars(self, labels: Sequence[str], values: Sequence[float], texts: Optional[Sequence[str]] = None,
                 colours: Optional[Sequence[str]] = None) -> None:
        """Bars ``values`` named ``labels``; ``texts`` are drawn above them (default: the values)."""
        self.values = np.asarray(values, float)
        self.labels = [str(lbl) for lbl in labels]
        n = len(self.values)
        brushes = [pg.mkBrush(c) for c in colours] if colours is not None else [pg.mkBrush(self.colour)] * n
        self.bars.setOpts(x=np.arange(n, dtype=float), height=self.values, width=0.7, brushes=brushes)
        texts = list(texts) if texts is not None else [f"{v:,.4g}" for v in self.values]
        while len(self.texts) < n:
            t = pg.TextItem("", color="#222", anchor=(0.5, 1))
            self.widget.addItem(t)
            self.texts.append(t)
        for i, t in enumerate(self.texts):
            t.setVisible(i < n)
            if i < n:
                t.setText(texts[i])
                t.setPos(i, max(float(self.values[i]), 0.0))
        short = [lbl if len(lbl) <= self.label_chars else lbl[: self.label_chars - 1] + "…" for lbl in self.labels]
        self.widget.getAxis("bottom").setTicks([list(enumerate(short))])
        extra = max(self.min_slots - n, 0) / 2
        self.widget.setXRange(-0.6 - extra, n - 0.4 + extra, padding=0)
        top = float(self.values.max()) if n else 1.0
        self.widget.setYRange(0, top * 1.3 or 1.0, padding=0)


class FunnelChart(VBarChart):
    """Funnel bars with the count and the step conversion above each; returns as a last red bar."""

    def __init__(self, title: str = "Funnel") -> None:
        super().__init__(title, "shoppers", colour="#2ca02c", min_slots=5)

    def set_funnel(self, stages: Sequence[str], reached: Sequence[int], rates: Sequence[float],
                   returned: int = 0) -> None:
        labels, values = list(stages), [int(v) for v in reached]
        texts = [f"{v:,}" if n == 0 else f"{v:,}\n{rates[n]:.0%} of previous" for n, v in enumerate(values)]
        if returned:
            base = values[-1] if values else 0
            labels.append("returned")
            values.append(int(returned))
            texts.append(f"{returned:,}\n{returned / base:.0%} of buyers" if base else f"{returned:,}")
        colours = [EVENT_COLOURS.get(s, "#2ca02c") for s in stages] + (["#d62728"] if returned else [])
        self.set_bars(labels, values, texts, colours)


class HourOfWeekHeatmap(Heatmap):
    """Rows × 168 hours with one tick per day and white lines between days."""

    def __init__(self, title: str = "") -> None:
        super().__init__(title, colormap="viridis")
        self.widget.setMinimumHeight(260)
        for d in range(1, 7):
            self.widget.addItem(pg.InfiniteLine(pos=d * 24, angle=90, pen=pg.mkPen("#ffffff", width=1)))

    def set_data(self, values: np.ndarray, rows: Sequence[str], normalise_rows: bool = True) -> None:
        """Show ``values`` (rows × 168); each row scaled to its own peak if ``normalise_rows``."""
        v = np.asarray(values, float)
        if normalise_rows and v.size:
            peak = v.max(axis=1, keepdims=True)
            v = np.divide(v, peak, out=np.zeros_like(v), where=peak > 0)
        top = float(v.max()) if v.size else 1.0
        self.set_matrix(v, list(rows), [""] * (v.shape[1] if v.ndim == 2 else 0), levels=(0.0, top or 1.0))
        if not self.matrix.size:
            return
        self.widget.getAxis("left").setTicks([[(i + 0.5, r[:30]) for i, r in enumerate(rows)]])
        self.widget.getAxis("bottom").setTicks([[(d * 24 + 12, day) for d, day in enumerate(WEEKDAYS)]])


class SignedHeatmap(Heatmap):
    """Heatmap of values around zero (blue = below the others, red = above)."""

    def __init__(self, title: str = "") -> None:
        super().__init__(title, colormap="CET-D1")
        self.widget.setMinimumHeight(240)
        self.widget.getAxis("bottom").setHeight(52)

    def set_data(self, values: np.ndarray, rows: Sequence[str], cols: Sequence[str],
                 empty: Optional[str] = None) -> None:
        v = np.asarray(values, float)
        m = float(np.abs(v).max()) if v.size else 1.0
        self.set_matrix(v, list(rows), list(cols), levels=(-(m or 1.0), m or 1.0), empty=empty)
        if not self.matrix.size:
            return
        self.widget.getAxis("left").setTicks([[(i + 0.5, r[:24]) for i, r in enumerate(rows)]])
        # "a · b · c" group names wrap onto one line per word
        self.widget.getAxis("bottom").setTicks([[(j + 0.5, "\n".join(c.split(" · ")[:3])[:40])
                                                 for j, c in enumerate(cols)]])
        for k, t in enumerate(getattr(self, "cell_texts", [])[: v.size]):  # dark text on pale cells
            t.setColor("#ffffff" if abs(v.flat[k]) > 0.6 * (m or 1.0) else "#111111")


class HBarChart:
    """Horizontal bars with their labels on the left (long category names stay readable)."""

    def __init__(self, title: str = "", bottom: str = "", colour: str = "#1f77b4", label_chars: int = 28) -> None:
        self.widget = make_plot(title, "", bottom, min_height=200)
        self.widget.showGrid(x=True, y=False, alpha=0.2)
        self.widget.setMouseEnabled(x=False, y=False)
        self.widget.getViewBox().invertY(True)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush=colour, pen=None)
        self.widget.addItem(self.bars)
        self.label_chars = label_chars
        self.labels: list[str] = []
        self.values = np.zeros(0)

    def set_bars(self, labels: Sequence[str], values: Sequence[float]) -> None:
        self.values = np.asarray(values, float)
        self.labels = [str(lbl) for lbl in labels]
        n = len(self.values)
        self.bars.setOpts(x0=np.zeros(n), y=np.arange(n, dtype=float), height=0.7, width=self.values)
        short = [lbl if len(lbl) <= self.label_chars else lbl[: self.label_chars - 1] + "…" for lbl in self.labels]
        self.widget.getAxis("left").setTicks([list(enumerate(short))])
        top = float(self.values.max()) if n else 1.0
        self.widget.setXRange(0, top * 1.05 or 1.0, padding=0)
        self.widget.setYRange(-0.6, max(n - 0.4, 0.6), padding=0)
