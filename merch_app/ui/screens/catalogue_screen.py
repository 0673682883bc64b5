"""Catalogue screen: embedding map, heatmaps, item page and the catalogue doctor."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from merch_app.services import insight_jobs as ij
from merch_app.ui.screens.base import Screen
from merch_app.ui.screens.catalogue_doctor import DoctorPanel
from merch_app.ui.screens.catalogue_item import ItemPagePanel
from merch_app.ui.screens.common import bare_column
from merch_app.ui.screens.insights_charts import CategoryMap, HourOfWeekHeatmap, SignedHeatmap
from merch_app.ui.screens.insights_common import boxed, note_label
from merch_app.ui.workers import error_text

MAP_KINDS = {"Items — text vectors (BERT)": "items-text", "Items — model vectors (CF)": "items-model",
             "Users — model vectors (CF)": "users"}
EVENT_FILTERS = {"all events": None, "purchases": ["purchase"], "views and clicks": ["view", "click"],
                 "carts": ["cart"], "searches": ["search"], "returns": ["return"]}


class CatalogueScreen(Screen):
    """Catalogue and model views; clicking an item anywhere opens its page."""

    title = "Catalogue"

    def __init__(self, window) -> None:
        super().__init__(window)
        self.model_runner = self.runner("model")
        self.heat_runner = self.runner("heatmap")
        self.item_runner = self.runner("item")
        self.doctor_runner = self.runner("doctor")
        self.encoder_spec: Optional[str] = None  # None: the model's encoder (tests use "hashing:64")
        self.generation = 0
        self.item_group: Optional[dict[str, str]] = None
        self.map_result: Optional[dict[str, Any]] = None
        self.heat = None
        self.segments: Optional[dict[str, Any]] = None
        self.item_id: Optional[str] = None
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_map(), "Map")
        self.tabs.addTab(self._build_heatmaps(), "Heatmaps")
        self.item_panel = ItemPagePanel()
        self.item_panel.item_requested.connect(self.open_item)
        self.item_panel.user_requested.connect(self._open_user)
        self.tabs.addTab(self.item_panel, "Item")
        self.doctor = DoctorPanel()
        self.doctor.run_requested.connect(self.run_doctor)
        self.doctor.item_requested.connect(self.open_item)
        self.tabs.addTab(self.doctor, "Doctor")
        lay.addWidget(self.tabs)

    def _build_map(self) -> QWidget:
        page, lay = bare_column()
        row = QHBoxLayout()
        self.map_kind = QComboBox()
        self.map_kind.addItems(list(MAP_KINDS))
        self.map_kind.currentIndexChanged.connect(lambda _i: self.load_map())
        self.find_box = QLineEdit()
        self.find_box.setPlaceholderText("Find item id on the map…")
        self.find_box.returnPressed.connect(self._find_on_map)
        row.addWidget(self.map_kind)
        row.addWidget(self.find_box)
        self.map_note = note_label("Hover a point for its title; click it to open the item page.")
        row.addWidget(self.map_note, 1)
        lay.addLayout(row)
        self.map = CategoryMap("2-D PCA of the vectors, coloured by category")
        self.map.point_clicked.connect(self._map_clicked)
        lay.addWidget(self.map.widget, 1)
        return page

    def _build_heatmaps(self) -> QWidget:
        page, lay = bare_column()
        row = QHBoxLayout()
        self.event_filter = QComboBox()
        self.event_filter.addItems(list(EVENT_FILTERS))
        self.event_filter.currentIndexChanged.connect(lambda _i: self.load_heatmap())
        self.normalise = QCheckBox("Scale each row to its busiest hour")
        self.normalise.setChecked(True)
        self.normalise.toggled.connect(lambda _on: self._draw_heatmap())
        row.addWidget(QLabel("Count"))
        row.addWidget(self.event_filter)
        row.addWidget(self.normalise)
        row.addStretch(1)
        lay.addLayout(row)
        self.how = HourOfWeekHeatmap("Activity by category and hour of the week (UTC)")
        self.how.widget.setMinimumHeight(200)  # with the segments below, the tab fits a 720 px window
        lay.addWidget(self.how.widget, 3)
        self.how_note = note_label()
        lay.addWidget(self.how_note)
        seg, sl = bare_column()
        srow = QHBoxLayout()
        self.k_box = QSpinBox()
        self.k_box.setRange(2, 20)
        self.k_box.setValue(6)
        self.k_box.valueChanged.connect(lambda _v: self.load_segments())
        srow.addWidget(QLabel("Segments (k-means of user vectors):"))
        srow.addWidget(self.k_box)
        srow.addStretch(1)
        sl.addLayout(srow)
        self.affinity = SignedHeatmap("Segment × category: model score relative to the segment's own average "
                                      "and to the other segments")
        self.affinity.widget.setMinimumHeight(200)
        sl.addWidget(self.affinity.widget, 1)
        self.seg_note = note_label()
        sl.addWidget(self.seg_note)
        lay.addWidget(boxed("User segments", seg), 3)
        return page

    # ------------------------------------------------------------------- hooks
    def on_workspace_changed(self) -> None:
        self._forget_views()
        self.item_id = None
        self.item_panel.clear()
        self.doctor.clear()
        self.reload_when_shown()

    def on_data_changed(self) -> None:
        self._forget_views()
        self.doctor.clear()
        if self.item_id:
            self.open_item(self.item_id)  # its events and buyers changed
        self.reload_when_shown()

    def on_models_changed(self) -> None:
        self.generation += 1
        self.item_group, self.map_result, self.segments = None, None, None
        if self.item_panel.page is not None and self.item_panel.page.exists:
            self._show_item(self.item_panel.page)  # related items and ranks come from the model
        self.reload_when_shown()

    def _forget_views(self) -> None:
        self.generation += 1
        self.item_group, self.map_result, self.heat, self.segments = None, None, None, None

    def on_shown(self) -> None:
        if self.load_on_show():
            self.load_map()
            self.load_heatmap()
            self.load_segments()

    # -------------------------------------------------------------------- map
    def _model_job(self, fn, label: str, on_result, channel: str, on_error=None) -> None:
        """Model jobs share one worker (one bundle in memory); a new job replaces one of its channel only."""
        self.model_runner.start(fn, label=label, on_result=on_result, on_error=on_error or self._error,
                                channel=channel)

    def load_map(self) -> None:
        if self.ctx.path is None:
            return
        kind = MAP_KINDS[self.map_kind.currentText()]
        args = (self.ctx.path, self.generation, self.encoder_spec, kind)
        self.map_note.setText("Projecting vectors…")
        self._model_job(lambda ctx: ij.map_job(ctx, *args), "Embedding map", self._show_map, "map",
                        on_error=self._map_failed)

    def _map_failed(self, exc: BaseException, _tb: str) -> None:
        """The map says why it is empty (e.g. no items yet) instead of "projecting" forever."""
        text = error_text(exc)
        self.map_note.setText(text)
        self.map.set_map(np.zeros((0, 2)), [], [], np.zeros(0, np.int32), [])
        self.map.empty.show(text)

    def _show_map(self, result: dict[str, Any]) -> None:
        self.map_result = result
        m = result["map"]
        self.map.set_map(m.xy, m.ids, m.titles, m.category_codes, m.categories)
        groups = result["groups"]
        colour = {"category": "category", "text clusters": "text cluster of the titles (no categories in "
                  "the catalogue)", "none": "nothing (no categories)"}[groups.source]
        what = {"items-text": "Item text vectors (BERT)", "items-model": "Item model vectors (CF)",
                "users": "User model vectors (CF)"}[MAP_KINDS[self.map_kind.currentText()]]
        by = groups.source if groups.source != "none" else "category"
        self.map.widget.setTitle(f"{what}, 2-D PCA, coloured by {by}", size="10pt", color="#222")
        ev = ", ".join(f"{r:.0%}" for r in m.explained_ratio)
        self.map_note.setText(f"{len(m):,} {m.kind}s from {result['model_name']}, coloured by {colour}; "
                              f"PC variance {ev}. Hover for titles, click to open.")
        if groups.source == "text clusters" and self.item_group is None:
            self.item_group = groups.mapping()
            self.load_heatmap()

    def _find_on_map(self) -> None:
        item_id = self.find_box.text().strip()
        if item_id and not self.map.select(item_id):
            self.map_note.setText(f"{item_id} is not on this map.")

    def _map_clicked(self, point_id: str) -> None:
        if self.map_result and self.map_result["map"].kind == "user":
            self._open_user(point_id)
        else:
            self.open_item(point_id)

    # --------------------------------------------------------------- heatmaps
    def load_heatmap(self) -> None:
        if self.ctx.path is None:
            return
        types = EVENT_FILTERS[self.event_filter.currentText()]
        groups = self.item_group
        self.heat_runner.start(lambda ctx, p=self.ctx.path: ij.heatmap_job(ctx, p, types, groups),
                               on_result=self._show_heatmap, on_error=self._error)

    def _show_heatmap(self, heat) -> None:
        self.heat = heat
        self._draw_heatmap()

    def _draw_heatmap(self) -> None:
        h = self.heat
        if h is None:
            return
        self.how.set_data(h.values, h.rows, normalise_rows=self.normalise.isChecked())
        total = int(h.values.sum())
        self.how_note.setText(f"{total:,} events in {len(h.rows)} rows; brighter = busier"
                              + (" (each row scaled to its own peak)." if self.normalise.isChecked() else "."))

    def load_segments(self) -> None:
        if self.ctx.path is None:
            return
        args = (self.ctx.path, self.generation, self.encoder_spec, int(self.k_box.value()))
        self._model_job(lambda ctx: ij.segments_job(ctx, *args), "User segments", self._show_segments, "segments")

    def _show_segments(self, result: Optional[dict[str, Any]]) -> None:
        self.segments = result
        if result is None:
            self.affinity.set_data([[0.0]], [""], [""], empty="Segments need a trained CF model (Train screen)")
            self.seg_note.setText("Segments need a trained CF model (Train screen).")
            return
        aff = result["segments"].affinity
        self.affinity.set_data(aff.values, aff.rows, aff.cols)
        self.seg_note.setText("Red: the segment prefers the category (beyond its usual level and beyond the "
                              "other segments); blue: avoids it. "
                              + " · ".join(f"segment {d['segment']} → {', '.join(d['top_categories'][:2])}"
                                           for d in result["described"]))

    # ------------------------------------------------------------------- item
    def open_item(self, item_id: str) -> None:
        """Open the item page of ``item_id`` (model parts follow when the model runner is free)."""
        if self.ctx.path is None:
            return
        self.item_id = str(item_id)
        self.tabs.setCurrentWidget(self.item_panel)
        self.item_panel.loading(self.item_id)
        self.item_runner.start(lambda ctx, p=self.ctx.path, i=self.item_id: ij.item_page_job(ctx, p, i),
                               on_result=self._show_item, on_error=self._error)

    def _show_item(self, page) -> None:
        self.item_panel.show_page(page)
        if not page.exists:
            return
        args = (self.ctx.path, self.generation, self.encoder_spec, str(page.item["item_id"]),
                [q["query"] for q in page.queries[:10]])
        self._model_job(lambda ctx: ij.item_model_job(ctx, *args), "Related items", self._show_item_model, "item")

    def _show_item_model(self, views: dict[str, Any]) -> None:
        if views.get("item_id") == self.item_id:  # an older item's views may arrive late
            self.item_panel.show_model_views(views)

    def _open_user(self, user_id: str) -> None:
        users = self.window_.screens.get("Users")
        if users is not None:
            self.window_.show_screen("Users")
            users.open_user(user_id)

    # ----------------------------------------------------------------- doctor
    def run_doctor(self) -> None:
        if self.ctx.path is None:
            return
        self.doctor.run_button.setEnabled(False)
        args = (self.ctx.path, self.generation, self.encoder_spec)
        self.doctor_runner.start(lambda ctx: ij.doctor_job(ctx, *args), label="Catalogue doctor",
                                 on_result=self.doctor.show_report, on_progress=self.doctor.set_progress,
                                 on_error=self._error,
                                 on_finished=lambda _s: self.doctor.run_button.setEnabled(True))

    def _error(self, exc: BaseException, _tb: str) -> None:
        self.show_error(f"Catalogue: {error_text(exc)}")
