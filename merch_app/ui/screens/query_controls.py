"""Query screen controls: query box, mode, user picker, filters, k and weight sliders."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from merch_app.ranking.types import DEFAULT_WEIGHTS, MODES, Filters, RankRequest, Weights
from merch_app.ui.charts import COMPONENT_COLOURS
from merch_app.ui.widgets import shrinkable

ANONYMOUS = "(anonymous)"
ANY_CATEGORY = "(any category)"
WEIGHT_SLIDERS = (("lex", "keywords", "lexical"), ("text", "meaning", "text"), ("cf", "behaviour", "cf"),
                  ("pop", "popularity", "popularity"))
PLACEHOLDERS = {"search": "Search the catalogue… (results update as you type)",
                "recommend": "Recommend mode ranks items for the chosen user (no query needed)",
                "related": "Item id or title whose related items to show"}


class QueryControls(QWidget):
    """All inputs of a :class:`RankRequest`; emits ``changed`` on every edit.

    Signals
    -------
    changed()
        Any input changed (the screen debounces and re-ranks).
    user_changed(str or None)
        Another user was picked (the screen looks up the profile line).
    """

    changed = Signal()
    user_changed = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)

        row1 = QHBoxLayout()
        self.mode = QComboBox()
        for m in MODES:
            self.mode.addItem(m, m)
        self.mode.setToolTip("search: words → items · recommend: a user's next items · related: items like one item")
        self.query_box = QLineEdit()
        self.query_box.setClearButtonEnabled(True)
        self.query_box.setPlaceholderText(PLACEHOLDERS["search"])
        self.query_box.setStyleSheet("font-size: 12pt; padding: 3px;")
        self.related_by = QComboBox()
        self.related_by.addItem("by text", "text")
        self.related_by.addItem("by behaviour", "cf")
        self.related_by.hide()
        self.user = QComboBox()
        self.user.setEditable(True)
        self.user.setMinimumWidth(130)
        self.user.addItem(ANONYMOUS, None)
        self.user.setToolTip("Rank as this customer (their behaviour adds the CF component); type an id")
        self.user.completer().setFilterMode(Qt.MatchFlag.MatchContains)
        self.user.completer().setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.k = QSpinBox()
        self.k.setRange(1, 200)
        self.k.setValue(20)
        self.k.setPrefix("k = ")
        row1.addWidget(self.mode)
        row1.addWidget(self.query_box, 1)
        row1.addWidget(self.related_by)
        row1.addWidget(QLabel("User:"))
        row1.addWidget(self.user)
        row1.addWidget(self.k)
        lay.addLayout(row1)

        self.profile = shrinkable(QLabel("anonymous: popularity and text only"))
        self.profile.setStyleSheet("color: #555;")
        filters = QHBoxLayout()  # the user's profile line, then the filters (three rows fit a 1280 px window)
        filters.addWidget(self.profile, 1)

        row2 = QHBoxLayout()
        self.category = QComboBox()
        self.category.addItem(ANY_CATEGORY, None)
        self.category.setMinimumWidth(140)
        self.price_min = QLineEdit()
        self.price_max = QLineEdit()
        for box, text in ((self.price_min, "min"), (self.price_max, "max")):
            box.setValidator(QDoubleValidator(0.0, 1e12, 2))
            box.setPlaceholderText(text)
            box.setFixedWidth(70)
        self.has_events = QCheckBox("has events")
        self.has_events.setToolTip("Only items that someone viewed, bought, … at least once")
        filters.addWidget(self.category)
        filters.addWidget(QLabel("Price:"))
        filters.addWidget(self.price_min)
        filters.addWidget(QLabel("–"))
        filters.addWidget(self.price_max)
        filters.addWidget(self.has_events)
        lay.addLayout(filters)
        row2.addWidget(QLabel("Weights:"))
        self.sliders: dict[str, QLabeledDoubleSlider] = {}
        for key, label, comp in WEIGHT_SLIDERS:
            name = QLabel(f"<span style='color:{COMPONENT_COLOURS[comp]}'>■</span> {label}")
            s = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            s.setRange(0.0, 1.0)
            s.setDecimals(2)
            s.setSingleStep(0.05)
            s.setValue(DEFAULT_WEIGHTS[key])
            s.setMinimumWidth(90)
            s.setToolTip(f"Weight of the {comp} component in the final score")
            self.sliders[key] = s
            row2.addWidget(name)
            row2.addWidget(s, 1)
        lay.addLayout(row2)

        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.query_box.textChanged.connect(self.changed)
        self.related_by.currentIndexChanged.connect(self.changed)
        self.user.currentIndexChanged.connect(self._user_changed)
        self.user.lineEdit().editingFinished.connect(self._user_changed)
        self.k.valueChanged.connect(self.changed)
        self.category.currentIndexChanged.connect(self.changed)
        self.price_min.textChanged.connect(self.changed)
        self.price_max.textChanged.connect(self.changed)
        self.has_events.toggled.connect(self.changed)
        for s in self.sliders.values():
            s.valueChanged.connect(self.changed)
        self._last_user: Optional[str] = None

    # -------------------------------------------------------------- choices
    def set_choices(self, users: list[tuple[str, int]], categories: list[str],
                    price_range: tuple[float, float]) -> None:
        """Fill the user and category pickers (keeps the current choices)."""
        current_user = self.user_id()
        self.user.blockSignals(True)
        self.user.clear()
        self.user.addItem(ANONYMOUS, None)
        for uid, n in users:
            self.user.addItem(uid, uid)
            self.user.setItemData(self.user.count() - 1, f"{n:,} events", Qt.ItemDataRole.ToolTipRole)
        idx = self.user.findData(current_user) if current_user else 0
        if idx >= 0:
            self.user.setCurrentIndex(idx)
        else:
            self.user.setEditText(current_user or ANONYMOUS)
        self.user.blockSignals(False)

        cat = self.category.currentData()
        self.category.blockSignals(True)
        self.category.clear()
        self.category.addItem(ANY_CATEGORY, None)
        for c in categories:
            self.category.addItem(c, c)
        self.category.setCurrentIndex(max(self.category.findData(cat), 0))
        self.category.blockSignals(False)
        lo, hi = price_range
        self.price_min.setPlaceholderText(f"min {lo:g}")
        self.price_max.setPlaceholderText(f"max {hi:g}")

    def clear_choices(self) -> None:
        """Empty the user and category pickers (another workspace was opened: its users and categories differ)."""
        for box, first in ((self.user, ANONYMOUS), (self.category, ANY_CATEGORY)):
            box.blockSignals(True)
            box.clear()
            box.addItem(first, None)
            box.setCurrentIndex(0)
            box.blockSignals(False)
        self._last_user = None
        self.price_min.setPlaceholderText("min")
        self.price_max.setPlaceholderText("max")

    def _mode_changed(self) -> None:
        mode = self.mode.currentData()
        self.query_box.setPlaceholderText(PLACEHOLDERS[mode])
        self.related_by.setVisible(mode == "related")
        self.query_box.setEnabled(mode != "recommend")
        self.changed.emit()

    def _user_changed(self) -> None:
        uid = self.user_id()
        if uid != self._last_user:
            self._last_user = uid
            self.user_changed.emit(uid)
            self.changed.emit()

    # --------------------------------------------------------------- values
    def user_id(self) -> Optional[str]:
        text = self.user.currentText().strip()
        return None if not text or text == ANONYMOUS else text

    def set_user(self, user_id: Optional[str]) -> None:
        idx = self.user.findData(user_id) if user_id else 0
        if idx >= 0:
            self.user.setCurrentIndex(idx)
        else:
            self.user.setEditText(user_id)
        self._user_changed()

    def weights(self) -> Weights:
        return Weights(**{k: float(s.value()) for k, s in self.sliders.items()})

    def filters(self) -> Filters:
        def num(box: QLineEdit) -> Optional[float]:
            try:
                return float(box.text().replace(",", "."))
            except ValueError:
                return None

        return Filters(category=self.category.currentData(), price_min=num(self.price_min),
                       price_max=num(self.price_max), has_events=self.has_events.isChecked())

    def request(self) -> Optional[RankRequest]:
        """The request the inputs describe, or None when it cannot run yet (related without an item)."""
        mode = self.mode.currentData()
        text = self.query_box.text().strip()
        req = RankRequest(mode=mode, k=self.k.value(), weights=self.weights(), filters=self.filters(),
                          user_id=self.user_id())
        if mode == "related":
            if not text:
                return None
            req.item_id = text
            req.related_by = self.related_by.currentData()
        elif mode == "search":
            req.query = text
        return req
