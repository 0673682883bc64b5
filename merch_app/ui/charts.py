"""pyqtgraph charts built once and updated in place (``setData`` / ``setOpts``).

Each class owns one ``pg.PlotWidget`` (``.widget``) and the plot items it
draws; ``set_*`` methods only push new data into those items.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontMetrics

from merch_app.ranking.types import COMPONENT_NAMES

# One colour per score component, used by every chart and the table delegate.
COMPONENT_COLOURS = {
    "lexical": "#1f77b4",
    "text": "#ff7f0e",
    "cf": "#2ca02c",
    "popularity": "#9467bd",
    "rules": "#d62728",
}
MAX_CELL_LABELS = 120
SERIES_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def configure_pyqtgraph() -> None:
    """White background, dark axes, antialiasing: readable in screenshots and print."""
    pg.setConfigOptions(background="w", foreground="#222", antialias=True)


def component_colour(name: str) -> QColor:
    return QColor(COMPONENT_COLOURS.get(name, "#7f7f7f"))


def make_plot(title: str = "", left: str = "", bottom: str = "", date_axis: bool = False,
              min_height: int = 180) -> pg.PlotWidget:
    """A PlotWidget with title, axis labels and a light grid."""
    axis_items = {"bottom": pg.DateAxisItem(orientation="bottom")} if date_axis else None
    w = pg.PlotWidget(axisItems=axis_items)
    w.setBackground("w")
    if title:
        w.setTitle(title, size="10pt", color="#222")
    if left:
        w.setLabel("left", left)
    if bottom:
        w.setLabel("bottom", bottom)
    w.showGrid(x=True, y=True, alpha=0.2)
    for name in ("left", "bottom"):
        w.getAxis(name).enableAutoSIPrefix(False)  # "(x0.001)" axis scaling confuses readers
    # pyqtgraph measures tick text at 80% of its height: shrunk to that, the axis cuts "g", "p" and "@10"
    w.getAxis("bottom").setStyle(autoReduceTextSpace=False)
    w.setMinimumHeight(min_height)
    w.setMenuEnabled(True)
    return w


def category_axis(widget: pg.PlotWidget, tolerance: int = 40) -> None:
    """Let the first and last category labels reach ``tolerance`` px past the plot's ends.

    pyqtgraph hides a bottom label that does not fit inside the axis, so a bar chart lost
    the name of its first bar ("keywords" in the score build-up).
    """
    widget.getAxis("bottom").setStyle(hideOverlappingLabels=tolerance)


class StaggeredTicks:
    """Category labels on a bottom axis, every other one a line lower while neighbours would overlap.

    Re-fitted whenever the plot is resized: a chart filled while hidden (another tab)
    has no width yet to decide with.
    """

    def __init__(self, widget: pg.PlotWidget) -> None:
        self.widget = widget
        self.ticks: list[tuple[float, str]] = []
        widget.getViewBox().sigResized.connect(self.fit)

    def set(self, positions: Sequence[float], labels: Sequence[str]) -> None:
        """Show ``labels`` at ``positions`` (one data unit apart); call after the x range is set."""
        self.ticks = [(float(x), str(lbl)) for x, lbl in zip(positions, labels)]
        self.fit()

    def fit(self, *_args) -> None:
        """Stagger the labels (and make the axis two lines high) if two neighbours are wider than a slot."""
        axis = self.widget.getAxis("bottom")
        vb = self.widget.getViewBox()
        (x0, x1), _ = vb.viewRange()
        slot = vb.width() / ((x1 - x0) or 1.0)  # pixels per category
        metrics = QFontMetrics(axis.style["tickFont"] or self.widget.font())
        widths = [metrics.horizontalAdvance(lbl) for _, lbl in self.ticks]
        if all((a + b) / 2 + 6 <= slot for a, b in zip(widths, widths[1:])):
            axis.setHeight(None)
            axis.setTicks([self.ticks])
            return
        axis.setHeight(2 * metrics.lineSpacing() + 10)  # pyqtgraph's own measure cuts the second line
        axis.setTicks([[(x, ("\n" + lbl) if i % 2 else lbl) for i, (x, lbl) in enumerate(self.ticks)]])


def export_png(widget: pg.PlotWidget | pg.GraphicsLayoutWidget, path: str | Path, width: int = 1200) -> Path:
    """Save a chart as PNG with pyqtgraph's ImageExporter."""
    item = widget.getPlotItem() if isinstance(widget, pg.PlotWidget) else widget.scene()
    exporter = ImageExporter(item)
    exporter.parameters()["width"] = width
    exporter.export(str(path))
    return Path(path)


NO_DATA = "No events yet:\nimport files or open the demo (File menu)"


class EmptyState:
    """A chart's "no data" look: axes and grid hidden, one grey sentence in the middle.

    Drawn instead of fake axes or a solid colour when a chart has nothing to show.
    """

    def __init__(self, widget: pg.PlotWidget, message: str = NO_DATA) -> None:
        self.widget = widget
        self.message = message
        self.text = pg.TextItem(color="#777777", anchor=(0.5, 0.5))
        self.text.hide()
        widget.addItem(self.text, ignoreBounds=True)
        self.shown = False

    def show(self, message: Optional[str] = None) -> None:
        item = self.widget.getPlotItem()
        for axis in ("left", "bottom"):
            item.hideAxis(axis)
        if item.legend is not None:  # no legend for curves that are not there
            item.legend.hide()
        item.showGrid(x=False, y=False)
        self.text.setText(message or self.message)
        self.widget.setXRange(0, 1, padding=0)
        self.widget.setYRange(0, 1, padding=0)
        self.text.setPos(0.5, 0.5)
        self.text.show()
        self.shown = True

    def hide(self, grid: tuple[bool, bool] = (True, True)) -> None:
        if not self.shown:
            return
        item = self.widget.getPlotItem()
        for axis in ("left", "bottom"):
            item.showAxis(axis)
        if item.legend is not None:
            item.legend.show()
        item.showGrid(x=grid[0], y=grid[1], alpha=0.2)
        self.text.hide()
        self.shown = False
        # show() pinned the range to 0..1: data drawn next fits itself (charts that set a range still do)
        self.widget.enableAutoRange()


def _short(label: str, n: int = 18) -> str:
    label = str(label)
    return label if len(label) <= n else label[: n - 1] + "…"


class LineChart:
    """Several named curves on one plot; curves are created on first use only."""

    def __init__(self, title: str = "", left: str = "", bottom: str = "", date_axis: bool = False,
                 legend: bool = True, symbols: bool = False, legend_offset: tuple[int, int] = (-10, 10)) -> None:
        self.widget = make_plot(title, left, bottom, date_axis)
        # a see-through white box: curves passing under the legend do not cross its text
        box = pg.mkBrush(255, 255, 255, 210)
        self.legend = self.widget.addLegend(offset=legend_offset, brush=box) if legend else None
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.symbols = symbols
        self.empty = EmptyState(self.widget)

    def curve(self, name: str, colour: Optional[str] = None) -> pg.PlotDataItem:
        if name not in self.curves:
            colour = colour or SERIES_COLOURS[len(self.curves) % len(SERIES_COLOURS)]
            kw = dict(symbol="o", symbolSize=5, symbolBrush=colour, symbolPen=None) if self.symbols else {}
            self.curves[name] = self.widget.plot([], [], name=name, pen=pg.mkPen(colour, width=2), **kw)
        return self.curves[name]

    def set_series(self, name: str, x: Sequence[float], y: Sequence[float], colour: Optional[str] = None) -> None:
        self.curve(name, colour).setData(np.asarray(x, float), np.asarray(y, float))

    def clear(self) -> None:
        for c in self.curves.values():
            c.setData([], [])


class BarChart:
    """Vertical bars with category labels on the x axis."""

    def __init__(self, title: str = "", left: str = "", colour: str = "#1f77b4", rotate_labels: bool = False) -> None:
        self.widget = make_plot(title, left)
        self.widget.showGrid(x=False, y=True, alpha=0.2)
        category_axis(self.widget)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush=colour, pen=None)
        self.widget.addItem(self.bars)
        self.widget.setMouseEnabled(x=False, y=False)
        self.labels: list[str] = []
        self.value_texts: list[pg.TextItem] = []  # one per bar slot, reused between updates
        self.empty = EmptyState(self.widget)

    def set_bars(self, labels: Sequence[str], values: Sequence[float], brushes: Optional[list] = None) -> None:
        if len(values) == 0 or not np.any(np.asarray(values, float)):
            self.bars.setOpts(x=[], height=[], width=0.7)
            for t in self.value_texts:
                t.hide()
            self.empty.show()
            return
        self.empty.hide(grid=(False, True))
        x = np.arange(len(values), dtype=float)
        opts = dict(x=x, height=np.asarray(values, float), width=0.7)
        if brushes is not None:
            opts["brushes"] = brushes
        self.bars.setOpts(**opts)
        while len(self.value_texts) < len(values):
            t = pg.TextItem(color="#222", anchor=(0.5, 1.0))
            self.widget.addItem(t)
            self.value_texts.append(t)
        for i, t in enumerate(self.value_texts):
            if i < len(values):
                v = float(values[i])
                t.setText(f"{v:,.0f}" if abs(v) >= 10 else f"{v:.3g}")
                t.setPos(i, max(v, 0.0))
                t.show()
            else:
                t.hide()
        self.labels = [str(lbl) for lbl in labels]
        self.widget.getAxis("bottom").setTicks([[(i, _short(lbl)) for i, lbl in enumerate(self.labels)]])
        top = float(np.max(values)) if len(values) else 1.0
        self.widget.setXRange(-0.6, max(len(values) - 0.4, 0.6), padding=0)
        self.widget.setYRange(min(0.0, float(np.min(values)) if len(values) else 0.0), top * 1.15 or 1.0, padding=0)


class GroupedBarChart:
    """Groups (e.g. metrics) of bars, one colour per series (e.g. model, baselines)."""

    def __init__(self, title: str = "", left: str = "", empty_text: str = NO_DATA) -> None:
        self.widget = make_plot(title, left)
        self.widget.showGrid(x=False, y=True, alpha=0.2)
        self.widget.setMouseEnabled(x=False, y=False)
        category_axis(self.widget)
        self.legend = self.widget.addLegend(offset=(8, 4), colCount=3)  # a band above the bars
        self.items: dict[str, pg.BarGraphItem] = {}
        self.empty = EmptyState(self.widget, empty_text)
        self.empty.show()

    def set_groups(self, groups: Sequence[str], series: dict[str, Sequence[float]], headroom: float = 1.45) -> None:
        """``series[name][g]`` is the bar height of series ``name`` in group ``g`` (no groups: the empty state).

        ``headroom``: the y range ends at this multiple of the tallest bar (the legend band above the bars).
        """
        if not groups:
            for item in self.items.values():
                item.setOpts(x=[], height=[])
            self.empty.show()
            return
        self.empty.hide(grid=(False, True))
        n = max(len(series), 1)
        width = 0.8 / n
        for name in list(self.items):
            if name not in series:
                self.items[name].setOpts(x=[], height=[])
        for s, (name, values) in enumerate(series.items()):
            if name not in self.items:
                colour = SERIES_COLOURS[len(self.items) % len(SERIES_COLOURS)]
                self.items[name] = pg.BarGraphItem(x=[], height=[], width=width, brush=colour, pen=None, name=name)
                self.widget.addItem(self.items[name])  # named: the legend picks it up
            x = np.arange(len(groups)) - 0.4 + width * (s + 0.5)
            self.items[name].setOpts(x=x, height=np.nan_to_num(np.asarray(values, float)), width=width)
        self.widget.getAxis("bottom").setTicks([[(i, g) for i, g in enumerate(groups)]])
        top = max([float(np.nanmax(v)) for v in series.values() if len(v)] + [0.0])
        self.widget.setXRange(-0.6, len(groups) - 0.4, padding=0)
        self.widget.setYRange(0, top * headroom or 1.0, padding=0)


class Histogram:
    """Step histogram with a vertical cut-off line."""

    def __init__(self, title: str = "", bottom: str = "", left: str = "count") -> None:
        self.widget = make_plot(title, left, bottom)
        self.curve = self.widget.plot([0, 1], [0], stepMode="center", fillLevel=0,
                                      brush=(31, 119, 180, 120), pen=pg.mkPen("#1f77b4"))
        self.cutoff = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#d62728", width=2, style=Qt.PenStyle.DashLine),
                                      label="cut-off", labelOpts={"position": 0.9, "color": "#d62728"})
        self.widget.addItem(self.cutoff)
        self.empty = EmptyState(self.widget, "No scores yet — type a query")

    def set_values(self, values: np.ndarray, cutoff: Optional[float], bins: int = 40) -> None:
        values = np.asarray(values, float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            self.curve.setData([0, 1], [0])
            self.cutoff.hide()
            self.empty.show()
            return
        self.empty.hide()
        counts, edges = np.histogram(values, bins=bins)
        self.curve.setData(edges, counts)
        if cutoff is None or not np.isfinite(cutoff):
            self.cutoff.hide()
        else:
            self.cutoff.setValue(float(cutoff))
            self.cutoff.show()


class Heatmap:
    """Matrix as a coloured image with row/column labels (query words × item words)."""

    def __init__(self, title: str = "", colormap: str = "viridis", stagger: bool = False) -> None:
        """``stagger``: column labels that would overlap go on two lines (see :class:`StaggeredTicks`)."""
        self.widget = make_plot(title)
        self.widget.showGrid(x=False, y=False)
        self.widget.setMouseEnabled(x=False, y=False)
        self.widget.getViewBox().invertY(True)
        category_axis(self.widget)
        self.columns = StaggeredTicks(self.widget) if stagger else None
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get(colormap))
        self.widget.addItem(self.image)
        self.cell_texts: list[pg.TextItem] = []  # value labels, a pool reused between updates
        self.matrix = np.zeros((0, 0))
        self.empty = EmptyState(self.widget)

    def set_matrix(self, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str],
                   levels: tuple[float, float] = (0.0, 1.0), empty: Optional[str] = None) -> None:
        """Show ``matrix``; an empty (or all-zero) one shows ``empty`` (default: the chart's message)."""
        m = np.asarray(matrix, float)
        if m.ndim != 2 or m.size == 0 or not np.any(np.nan_to_num(m)):
            self.matrix = np.zeros((0, 0))
            self.image.clear()
            self._label_cells(np.zeros((0, 0)), levels)
            self.widget.getAxis("left").setTicks([[]])
            self.widget.getAxis("bottom").setTicks([[]])
            self.empty.show(empty)
            return
        self.empty.hide(grid=(False, False))
        self.matrix = m
        self.image.setImage(np.nan_to_num(m), levels=levels)
        self._label_cells(m if m.size <= MAX_CELL_LABELS and any(rows) else np.zeros((0, 0)), levels)
        self.image.setRect(0, 0, m.shape[1], m.shape[0])
        self.widget.getAxis("left").setTicks([[(i + 0.5, _short(r, 14)) for i, r in enumerate(rows)]])
        self.widget.setXRange(0, m.shape[1], padding=0)
        self.widget.setYRange(0, m.shape[0], padding=0)
        short = [_short(c, 12) for c in cols]
        if self.columns is not None:
            self.columns.set(np.arange(len(cols)) + 0.5, short)
        else:
            self.widget.getAxis("bottom").setTicks([list(zip(np.arange(len(cols)) + 0.5, short))])


    def _label_cells(self, m: np.ndarray, levels: tuple[float, float]) -> None:
        n = m.size
        while len(self.cell_texts) < n:
            t = pg.TextItem(anchor=(0.5, 0.5))
            self.widget.addItem(t)
            self.cell_texts.append(t)
        mid = (levels[0] + levels[1]) / 2
        for k, t in enumerate(self.cell_texts):
            if k >= n:
                t.hide()
                continue
            i, j = divmod(k, m.shape[1])
            v = float(m[i, j])
            t.setText(f"{v:.2f}" if round(v, 2) != 0 else "0.00")  # never "-0.00"
            t.setColor("#000" if v > mid else "#fff")
            t.setPos(j + 0.5, i + 0.5)
            t.show()


class Waterfall:
    """Score build-up: one floating bar per component, then the total."""

    def __init__(self, title: str = "") -> None:
        self.widget = make_plot(title, "score")
        self.widget.showGrid(x=False, y=True, alpha=0.2)
        self.widget.setMouseEnabled(x=False, y=False)
        category_axis(self.widget)
        self.labels = StaggeredTicks(self.widget)
        self.bars = pg.BarGraphItem(x=[], y0=[], height=[], width=0.6, pen=None)
        self.widget.addItem(self.bars)
        self.zero = pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen("#888"))
        self.widget.addItem(self.zero)
        self.values: dict[str, float] = {}
        self.empty = EmptyState(self.widget, "Select a result to see\nits score build-up")

    def set_components(self, components: dict[str, float]) -> None:
        self.zero.setVisible(bool(components))
        if not components:
            self.bars.setOpts(x=[], y0=[], height=[], width=0.6)
            self.values = {}
            self.empty.show()
            return
        self.empty.hide(grid=(False, True))
        names = list(components)
        vals = np.array([float(components[n]) for n in names])
        start = np.concatenate([[0.0], np.cumsum(vals)[:-1]]) if len(vals) else np.zeros(0)
        total = float(vals.sum()) if len(vals) else 0.0
        x = np.arange(len(names) + 1, dtype=float)
        y0 = np.concatenate([start, [0.0]])
        heights = np.concatenate([vals, [total]])
        brushes = [component_colour(n) for n in names] + [QColor("#444444")]
        self.bars.setOpts(x=x, y0=y0, height=heights, width=0.6, brushes=brushes)
        self.values = dict(components, total=total)
        short = {**COMPONENT_NAMES, "popularity": "popular"}
        lo = min(0.0, float(np.min(np.concatenate([y0, y0 + heights]))))
        hi = max(0.0, float(np.max(np.concatenate([y0, y0 + heights]))))
        pad = (hi - lo) * 0.1 or 0.1
        self.widget.setXRange(-0.6, len(names) + 0.6, padding=0)
        self.widget.setYRange(lo - pad * (lo < 0), hi + pad, padding=0)
        self.labels.set(range(len(names) + 1), [short.get(n, n) for n in names + ["total"]])


class ScatterMap:
    """2-D map of items; a highlighted subset drawn on top; hover shows titles."""

    def __init__(self, title: str = "") -> None:
        self.widget = make_plot(title, "PC 2", "PC 1")
        self.all = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(150, 150, 150, 110),
                                      hoverable=True, tip=self._tip)
        self.hits = pg.ScatterPlotItem(size=10, pen=pg.mkPen("#222"), brush=pg.mkBrush("#ff7f0e"),
                                       hoverable=True, tip=self._tip)
        self.widget.addItem(self.all)
        self.widget.addItem(self.hits)

    @staticmethod
    def _tip(x: float, y: float, data: object) -> str:
        return str(data) if data is not None else f"({x:.2f}, {y:.2f})"

    def set_points(self, xy: np.ndarray, titles: Sequence[str]) -> None:
        xy = np.asarray(xy, float).reshape(-1, 2)
        self.all.setData(x=xy[:, 0], y=xy[:, 1], data=list(titles))

    def set_highlight(self, xy: np.ndarray, titles: Sequence[str]) -> None:
        xy = np.asarray(xy, float).reshape(-1, 2)
        self.hits.setData(x=xy[:, 0], y=xy[:, 1], data=list(titles))
