"""Hyper-parameter form of the Train screen (values ↔ ``HybridConfig`` dict)."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QDate
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

ENCODERS = [
    ("minilm", "BERT all-MiniLM-L6-v2 (best quality)"),
    ("minilm+int8", "BERT all-MiniLM-L6-v2, int8 (~4x faster encoding)"),
    ("hashing:64", "Hashing, 64-d (fast, no BERT)"),
]

TIPS = {
    "dim": "Size of the learned user/item vectors. Larger fits more patterns but needs more data "
           "and time (32–128 is typical).",
    "epochs": "Passes over the training interactions. Training stops earlier when the validation "
              "nDCG@10 stops improving (early stopping).",
    "lr": "Learning rate of the Adam optimiser. Too high: the loss jumps around; too low: slow.",
    "l2": "L2 regularisation (weight decay) on the embeddings; raise it if the model over-fits.",
    "dropout": "Fraction of vector entries dropped while training (regularisation).",
    "negatives": "Sampled non-interacted items per positive interaction (ranking loss).",
    "batch_size": "Interactions per optimisation step.",
    "split_date": "Events on/after this date are held out for validation and the baseline "
                  "comparison; unchecked = automatic (last ~20% of the time range).",
    "encoder": "Text encoder for item titles/descriptions. BERT understands meaning "
               "(\"mug\" ≈ \"cup\"); int8 BERT encodes ~4x faster at slightly lower quality "
               "(−0.01 NDCG@10 on the demo suite); hashing only matches spellings but is much faster.",
    "event_weights": "How much each event type counts as evidence of interest (0 = ignored; "
                     "a negative value subtracts).",
}


def _spin(lo: int, hi: int, step: int = 1) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    return s


def _dspin(lo: float, hi: float, step: float, decimals: int) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setDecimals(decimals)
    s.setRange(lo, hi)
    s.setSingleStep(step)
    return s


class TrainForm(QWidget):
    """Editable training settings; :meth:`values` returns a HybridConfig dict."""

    def __init__(self, defaults: dict[str, Any], event_types: list[str]) -> None:
        super().__init__()
        self.defaults = dict(defaults)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)

        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        self.dim = _spin(4, 512, 8)
        self.epochs = _spin(1, 500)
        self.lr = _dspin(1e-5, 1.0, 0.001, 5)
        self.l2 = _dspin(0.0, 1.0, 1e-5, 6)
        self.dropout = _dspin(0.0, 0.9, 0.05, 2)
        self.negatives = _spin(1, 100)
        self.batch_size = _spin(64, 1 << 20, 1024)
        self.encoder = QComboBox()
        for spec, text in ENCODERS:
            self.encoder.addItem(text, spec)
        rows = [("Dimension", self.dim, "dim"), ("Epochs", self.epochs, "epochs"),
                ("Learning rate", self.lr, "lr"), ("L2", self.l2, "l2"), ("Dropout", self.dropout, "dropout"),
                ("Negatives", self.negatives, "negatives"), ("Batch size", self.batch_size, "batch_size"),
                ("Text encoder", self.encoder, "encoder")]
        for label, widget, key in rows:
            widget.setToolTip(TIPS[key])
            lbl = QLabel(label + ":")
            lbl.setToolTip(TIPS[key])
            form.addRow(lbl, widget)
        split_row = QHBoxLayout()
        self.split_auto = QCheckBox("automatic")
        self.split_date = QDateEdit()
        self.split_date.setCalendarPopup(True)
        self.split_date.setDisplayFormat("yyyy-MM-dd")
        self.split_auto.toggled.connect(lambda on: self.split_date.setEnabled(not on))
        split_row.addWidget(self.split_auto)
        split_row.addWidget(self.split_date, 1)
        lbl = QLabel("Split date:")
        lbl.setToolTip(TIPS["split_date"])
        self.split_auto.setToolTip(TIPS["split_date"])
        self.split_date.setToolTip(TIPS["split_date"])
        form.addRow(lbl, split_row)
        lay.addWidget(model_box, 3)

        weights_box = QGroupBox("Event weights")
        weights_box.setToolTip(TIPS["event_weights"])
        grid = QGridLayout(weights_box)
        self.event_weights: dict[str, QDoubleSpinBox] = {}
        for i, et in enumerate(event_types):
            spin = _dspin(-1.0, 5.0, 0.1, 2)
            spin.setToolTip(TIPS["event_weights"])
            self.event_weights[et] = spin
            grid.addWidget(QLabel(et), i, 0)
            grid.addWidget(spin, i, 1)
        grid.setRowStretch(len(event_types), 1)
        lay.addWidget(weights_box, 2)
        self.reset()

    def reset(self) -> None:
        """Put the default values back."""
        d = self.defaults
        self.dim.setValue(int(d.get("dim", 64)))
        self.epochs.setValue(int(d.get("epochs", 20)))
        self.lr.setValue(float(d.get("lr", 0.005)))
        self.l2.setValue(float(d.get("l2", 1e-4)))
        self.dropout.setValue(float(d.get("dropout", 0.1)))
        self.negatives.setValue(int(d.get("negatives", 4)))
        self.batch_size.setValue(int(d.get("batch_size", 8192)))
        idx = self.encoder.findData(d.get("encoder") or "minilm")
        self.encoder.setCurrentIndex(max(idx, 0))
        weights = d.get("event_weights") or {}
        for et, spin in self.event_weights.items():
            spin.setValue(float(weights.get(et, 0.0)))
        self.split_auto.setChecked(not d.get("split_date"))
        self.set_date_range(None, None, d.get("split_date"))

    def set_date_range(self, first: str | None, last: str | None, current: str | None = None) -> None:
        """Limit the split date to the data's range (ISO strings)."""
        if first:
            self.split_date.setMinimumDate(QDate.fromString(first[:10], "yyyy-MM-dd"))
        if last:
            self.split_date.setMaximumDate(QDate.fromString(last[:10], "yyyy-MM-dd"))
        if current:
            self.split_date.setDate(QDate.fromString(current[:10], "yyyy-MM-dd"))
        elif first and last:
            a, b = QDate.fromString(first[:10], "yyyy-MM-dd"), QDate.fromString(last[:10], "yyyy-MM-dd")
            self.split_date.setDate(a.addDays(int(a.daysTo(b) * 0.8)))

    def set_encoder(self, spec: str) -> None:
        idx = self.encoder.findData(spec)
        if idx < 0:
            self.encoder.addItem(spec, spec)
            idx = self.encoder.count() - 1
        self.encoder.setCurrentIndex(idx)

    def values(self) -> dict[str, Any]:
        """The settings as a ``HybridConfig.to_dict()``-style dict."""
        out = dict(self.defaults)
        out.update(
            dim=self.dim.value(), epochs=self.epochs.value(), lr=self.lr.value(), l2=self.l2.value(),
            dropout=self.dropout.value(), negatives=self.negatives.value(), batch_size=self.batch_size.value(),
            encoder=self.encoder.currentData(),
            event_weights={et: s.value() for et, s in self.event_weights.items()},
            split_date=None if self.split_auto.isChecked() else self.split_date.date().toString("yyyy-MM-dd"),
        )
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        """Fill the form from a config dict (e.g. an earlier version's)."""
        self.defaults = {**self.defaults, **values}
        self.reset()


# FinetuneConfig's defaults for the fields the form shows (merch_app.model.finetune imports torch, which
# the GUI thread never loads: tests/test_ui_finetune.py checks that the two agree).
FINETUNE_DEFAULTS: dict[str, Any] = {"epochs": 1, "max_pairs": 20000}

FINETUNE_TIPS = {
    "epochs": "Passes over the training pairs. One pass is usually enough; the weights with the best "
              "validation NDCG@10 are kept.",
    "max_pairs": "Training pairs drawn from the behaviour before the split (searches followed by clicks, "
                 "items bought together, history → next item). ~20k pairs take a few minutes on two cores.",
    "activate": "Make the new encoder the workspace's when it improves the held-out NDCG@10. Unchecked: it is "
                "only registered; activate it below.",
    "name": "Display name of the new encoder version (default: its id).",
}


class FinetuneForm(QGroupBox):
    """Settings of an encoder fine-tuning run; :meth:`values` returns a ``FinetuneConfig`` dict (partial)."""

    def __init__(self) -> None:
        super().__init__("Fine-tuning")
        form = QFormLayout(self)
        self.epochs = _spin(1, 100)
        self.max_pairs = _spin(2, 10_000_000, 1000)
        self.max_pairs.setGroupSeparatorShown(True)
        self.activate = QCheckBox("activate when better")
        self.name = QLineEdit()
        self.name.setPlaceholderText("optional, e.g. shop v2")
        for label, widget, key in (("Epochs", self.epochs, "epochs"), ("Max pairs", self.max_pairs, "max_pairs"),
                                   ("Name", self.name, "name"), ("", self.activate, "activate")):
            widget.setToolTip(FINETUNE_TIPS[key])
            lbl = QLabel(label + ":" if label else "")
            lbl.setToolTip(FINETUNE_TIPS[key])
            form.addRow(lbl, widget)
        self.reset()

    def reset(self) -> None:
        """Put the default values back."""
        self.epochs.setValue(int(FINETUNE_DEFAULTS["epochs"]))
        self.max_pairs.setValue(int(FINETUNE_DEFAULTS["max_pairs"]))
        self.activate.setChecked(True)
        self.name.clear()

    def values(self) -> dict[str, Any]:
        """``epochs``, ``max_pairs``, ``activate`` (None = when it improves the held-out metric, or False) and
        ``name`` (None = the version id)."""
        return {"epochs": self.epochs.value(), "max_pairs": self.max_pairs.value(),
                "activate": None if self.activate.isChecked() else False, "name": self.name.text().strip() or None}
