"""Dialog confirming how a file is imported: kind, column → field mapping, duplicates."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QRadioButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

IGNORE = "(ignore)"
DUPLICATE_CHOICES = (
    ("skip", "Skip (keep what was imported before)"),
    ("replace", "Replace the earlier import of this file"),
    ("append", "Append again (rows counted twice)"),
)


@dataclass
class ImportRequest:
    """One file to import, as confirmed in the mapping dialog."""

    path: Path
    kind: str = "auto"
    mapping: Optional[dict[str, str]] = None
    on_duplicate: str = "skip"
    label: str = field(default="")

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.label = self.label or self.path.name


def confidence_colour(c: float) -> QColor:
    """Green for sure guesses, amber for weak ones, red for none."""
    if c >= 0.85:
        return QColor("#d7f0d2")
    if c >= 0.5:
        return QColor("#fff1c9")
    return QColor("#f9d6d5")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class MappingDialog(QDialog):
    """Shows a :class:`FilePreview` and lets the user fix kind and mapping.

    Parameters
    ----------
    preview
        ``merch_app.data.importer.FilePreview`` of the file.
    fields_by_kind
        ``FIELDS`` of the importer: kind → target fields.
    repreview
        ``repreview(kind, callback)`` asks (in a worker) for the preview
        guessed for another kind and calls ``callback(preview)``; None keeps
        the columns and only swaps the field lists.
    """

    def __init__(self, preview: Any, fields_by_kind: dict[str, list[str]],
                 repreview: Optional[Callable[[str, Callable[[Any], None]], None]] = None,
                 parent=None) -> None:
        super().__init__(parent)
        self.preview = preview
        self.fields_by_kind = fields_by_kind
        self.repreview = repreview
        self.setWindowTitle(f"Import {Path(preview.path).name}")
        self.resize(1000, 680)

        lay = QVBoxLayout(self)
        info = QLabel(self._info_text(preview))
        info.setTextFormat(Qt.TextFormat.RichText)
        info.setWordWrap(True)
        lay.addWidget(info)

        form = QFormLayout()
        self.kind_combo = QComboBox()
        for kind in fields_by_kind:
            self.kind_combo.addItem(kind, kind)
        self.kind_note = QLabel()
        row = QHBoxLayout()
        row.addWidget(self.kind_combo)
        row.addWidget(self.kind_note, 1)
        form.addRow("File kind:", row)
        lay.addLayout(form)

        split = QSplitter(Qt.Orientation.Vertical)
        self.columns = QTableWidget(0, 4)
        self.columns.setHorizontalHeaderLabels(["Column in file", "Field", "Confidence", "Example values"])
        self.columns.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.columns.verticalHeader().setVisible(False)
        self.columns.setColumnWidth(0, 180)
        self.columns.setColumnWidth(1, 170)
        split.addWidget(self.columns)
        self.rows = QTableWidget(0, 0)
        self.rows.verticalHeader().setVisible(True)
        split.addWidget(self.rows)
        lay.addWidget(split, 1)

        dup_box = QGroupBox("If this exact file was imported before")
        dup_lay = QHBoxLayout(dup_box)
        self.dup_group = QButtonGroup(self)
        for i, (key, text) in enumerate(DUPLICATE_CHOICES):
            rb = QRadioButton(text)
            rb.setProperty("choice", key)
            self.dup_group.addButton(rb, i)
            dup_lay.addWidget(rb)
        self.dup_group.button(0).setChecked(True)
        if preview.already_imported:
            dup_box.setTitle("⚠ This exact file was imported before — choose what to do")
            dup_box.setStyleSheet("QGroupBox { color: #8a1c12; font-weight: bold; }")
        lay.addWidget(dup_box)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)

        self._fill(preview)
        self.kind_combo.currentIndexChanged.connect(self._kind_changed)

    # ----------------------------------------------------------------- filling
    @staticmethod
    def _info_text(p: Any) -> str:
        delim = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(p.delimiter, repr(p.delimiter))
        saved = " · <i>saved mapping for these headers applied</i>" if p.saved_mapping_used else ""
        return (f"<b>{Path(p.path).name}</b> · {human_size(p.size_bytes)} · encoding {p.encoding} · "
                f"delimiter {delim} · {len(p.headers)} columns{saved}")

    def _fill(self, p: Any) -> None:
        self.preview = p
        idx = self.kind_combo.findData(p.kind)
        self.kind_combo.blockSignals(True)
        self.kind_combo.setCurrentIndex(max(idx, 0))
        self.kind_combo.blockSignals(False)
        self.kind_note.setText(f"detected as <b>{p.kind}</b> (confidence {p.kind_confidence:.0%})")
        fields = [IGNORE] + list(self.fields_by_kind.get(p.kind, []))
        guesses = {c.source: c for c in p.columns}
        self.columns.setRowCount(len(p.headers))
        for r, header in enumerate(p.headers):
            src = QTableWidgetItem(header)
            src.setFlags(src.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.columns.setItem(r, 0, src)
            combo = QComboBox()
            combo.addItems(fields)
            target = p.mapping.get(header)
            combo.setCurrentText(target if target in fields else IGNORE)
            self.columns.setCellWidget(r, 1, combo)
            g = guesses.get(header)
            conf = float(g.confidence) if g is not None and g.field else 0.0
            ci = QTableWidgetItem(f"{conf:.0%}" if conf else "—")
            ci.setBackground(QBrush(confidence_colour(conf)))
            ci.setFlags(ci.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.columns.setItem(r, 2, ci)
            examples = ", ".join(str(row[r]) for row in p.rows[:3] if r < len(row))
            ex = QTableWidgetItem(examples)
            ex.setFlags(ex.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.columns.setItem(r, 3, ex)
        self.rows.setColumnCount(len(p.headers))
        self.rows.setHorizontalHeaderLabels(list(p.headers))
        self.rows.setRowCount(len(p.rows))
        for r, row in enumerate(p.rows):
            for c, value in enumerate(row[: len(p.headers)]):
                self.rows.setItem(r, c, QTableWidgetItem(str(value)))
        self.rows.resizeColumnsToContents()

    def _kind_changed(self) -> None:
        kind = self.kind_combo.currentData()
        if self.repreview is not None:
            self.kind_note.setText("re-guessing columns…")
            self.repreview(kind, self._repreviewed)
        else:
            fields = [IGNORE] + list(self.fields_by_kind.get(kind, []))
            for r in range(self.columns.rowCount()):
                combo: QComboBox = self.columns.cellWidget(r, 1)
                current = combo.currentText()
                combo.clear()
                combo.addItems(fields)
                combo.setCurrentText(current if current in fields else IGNORE)

    def _repreviewed(self, preview: Any) -> None:
        if preview.kind == self.kind_combo.currentData():
            self._fill(preview)

    # ------------------------------------------------------------------ result
    def mapping(self) -> dict[str, str]:
        """Source column → field for every column not set to (ignore)."""
        out = {}
        for r in range(self.columns.rowCount()):
            combo: QComboBox = self.columns.cellWidget(r, 1)
            if combo.currentText() != IGNORE:
                out[self.columns.item(r, 0).text()] = combo.currentText()
        return out

    def request(self) -> ImportRequest:
        """The confirmed import (what OK passes to the Data screen)."""
        button = self.dup_group.checkedButton()
        return ImportRequest(
            path=Path(self.preview.path),
            kind=self.kind_combo.currentData(),
            mapping=self.mapping(),
            on_duplicate=button.property("choice") if button else "skip",
        )
