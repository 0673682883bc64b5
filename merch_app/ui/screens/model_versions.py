"""Model versions table (rename / activate / delete) and model-vs-baselines comparison."""
from __future__ import annotations

from typing import Any, Callable, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from merch_app.engines import engine_label
from merch_app.model.encoder_versions import (
    activate_encoder, delete_encoder_version, is_version_id, models_using,
)
from merch_app.model.registry import activate, delete, rename
from merch_app.ui.charts import GroupedBarChart
from merch_app.ui.screens.common import fill_table, make_table

# Metrics shown in the comparison, in order; other metrics are appended.
METRIC_ORDER = ["ndcg@10", "precision@10", "recall@10", "map@10", "mrr", "hit_rate@10", "coverage"]
SERIES_ORDER = ["model", "popularity", "user_history", "text_only", "cf_only"]
VERSION_COLUMNS = ["name", "created", "ndcg@10", "p@10", "MAE", "active", "train time", "engine", "encoder", "id"]


def metric(metrics: dict[str, Any], *names: str) -> Optional[float]:
    """First of ``names`` present (also accepting p@10 ↔ precision@10 spellings)."""
    aliases = {"p@10": "precision@10", "precision@10": "p@10"}
    for n in names:
        for key in (n, aliases.get(n)):
            if key and isinstance(metrics.get(key), (int, float)):
                return float(metrics[key])
    return None


RATING_SEGMENTS = {"all": "all", "known": "known", "new_user": "new user", "new_item": "new item"}
RATING_PREDICTORS = {"model": "model", "damped_biases": "damped biases", "damped_item_bias": "damped item bias",
                     "global_mean": "global mean"}
RATING_BARS = {"damped_item_bias": "item bias"}  # shorter legend names where the full ones overflow the legend
RANKING_TITLE = "Model vs baselines (test period)"
RATING_TITLE = "Rating error (test MAE, lower is better)"


def rating_comparison(version_metrics: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[list[float]],
                                                                  dict[str, list[float]]]:
    """(table columns, MAE rows, RMSE rows, {predictor: MAE per segment}) of an explicit version's rating report.

    The segments (all / known user and item / new user / new item) come from
    ``metrics["ratings"]`` (:func:`merch_app.evaluation.offline.rating_report`); a row is the
    predictor's name and its MAE per segment, the RMSE rows hold the same cells' RMSE.  Empty
    when the version has no rating report.
    """
    rep = version_metrics.get("ratings")
    if not isinstance(rep, dict):
        return [], [], [], {}
    segs = [s for s in RATING_SEGMENTS if isinstance(rep.get(s), dict) and rep[s].get("n")]
    columns = ["predictor (MAE)"] + [f"{RATING_SEGMENTS[s]} ({rep[s]['n']:,})" for s in segs]
    rows, rmse, bars = [], [], {}
    for key, label in RATING_PREDICTORS.items():
        if not all(isinstance(rep[s].get(key), dict) for s in segs):
            continue
        rows.append([label] + [round(float(rep[s][key]["mae"]), 4) for s in segs])
        rmse.append([float(rep[s][key]["rmse"]) for s in segs])
        bars[RATING_BARS.get(key, label)] = [float(rep[s][key]["mae"]) for s in segs]
    return columns, rows, rmse, bars


def comparison(version_metrics: dict[str, Any]) -> tuple[list[str], dict[str, list[float]]]:
    """(metric names, {series: values}) of a version's model and baselines."""
    series_src: dict[str, dict] = {}
    if isinstance(version_metrics.get("model"), dict):
        series_src["model"] = version_metrics["model"]
    for name, m in (version_metrics.get("baselines") or {}).items():
        if isinstance(m, dict):
            series_src[name] = m
    names: list[str] = []
    for m in series_src.values():
        for k, v in m.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in names:
                names.append(k)
    ordered = [m for m in METRIC_ORDER if m in names] + [m for m in names if m not in METRIC_ORDER]
    ordered = [m for m in ordered if not m.startswith(("n_", "seconds"))]
    order = [s for s in SERIES_ORDER if s in series_src] + [s for s in series_src if s not in SERIES_ORDER]
    return ordered, {s: [float(series_src[s].get(m, float("nan"))) for m in ordered] for s in order}


class ModelVersionsPanel(QWidget):
    """Versions table + actions + baselines table and grouped bar chart.

    ``run_registry(fn, done)`` runs ``fn(db)`` in a worker and calls ``done()``
    afterwards; the panel never writes to the database itself.
    """

    selection_changed = Signal(object)  # ModelVersion or None

    def __init__(self, run_registry: Callable[[Callable[[Any], Any], str], None]) -> None:
        super().__init__()
        self.run_registry = run_registry
        self.versions: list[Any] = []
        self.columns = [c for c in VERSION_COLUMNS if c != "MAE"]  # the versions table's columns now
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Model versions</b>"))
        head.addStretch(1)
        self.rename_button = QPushButton("Rename…")
        self.activate_button = QPushButton("Activate")
        self.delete_button = QPushButton("Delete…")
        self.rename_button.clicked.connect(self._rename)
        self.activate_button.clicked.connect(self._activate)
        self.delete_button.clicked.connect(self._delete)
        for b in (self.rename_button, self.activate_button, self.delete_button):
            head.addWidget(b)
        lay.addLayout(head)
        self.table = make_table()
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.itemSelectionChanged.connect(self._selected)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        lower = QWidget()
        ll = QHBoxLayout(lower)
        ll.setContentsMargins(0, 0, 0, 0)
        self.baselines_table = make_table()
        self.chart = GroupedBarChart(RANKING_TITLE,
                                     empty_text="No model version yet:\ntrain one to compare it with the baselines")
        ll.addWidget(self.baselines_table, 2)
        ll.addWidget(self.chart.widget, 3)
        split.addWidget(lower)
        split.setSizes([180, 260])
        lay.addWidget(split, 1)
        self._update_buttons()

    # ---------------------------------------------------------------- filling
    def set_versions(self, versions: list[Any]) -> None:
        selected = self.selected()
        keep = selected.model_id if selected else None
        self.versions = list(versions)
        rows = []
        for v in self.versions:
            m = (v.metrics or {}).get("model") or {}
            nd, p = metric(m, "ndcg@10"), metric(m, "precision@10", "p@10")
            mae = metric(v.metrics or {}, "mae")  # explicit ratings only
            rows.append([v.name, (v.created or "")[:19].replace("T", " "),
                         round(nd, 4) if nd is not None else "—", round(p, 4) if p is not None else "—",
                         round(mae, 4) if mae is not None else "", "✔" if v.active else "",
                         f"{v.train_seconds:.1f}s" if v.train_seconds else "", engine_label(v), v.encoder_id,
                         v.model_id])
        # the MAE column only where some version predicts ratings (explicit feedback)
        mae_col = VERSION_COLUMNS.index("MAE")
        self.columns = list(VERSION_COLUMNS)
        if not any(r[mae_col] != "" for r in rows):
            del self.columns[mae_col]
            rows = [r[:mae_col] + r[mae_col + 1:] for r in rows]
        self.table.blockSignals(True)
        fill_table(self.table, self.columns, rows)
        self.table.setSortingEnabled(False)
        self.table.resizeColumnsToContents()
        self.table.blockSignals(False)
        row = next((i for i, v in enumerate(self.versions) if v.model_id == keep), None)
        if row is None:
            row = next((i for i, v in enumerate(self.versions) if v.active), 0 if self.versions else None)
        if row is not None:
            self.table.selectRow(row)
        self._selected()

    def selected(self) -> Optional[Any]:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or rows[0].row() >= len(self.versions):
            return None
        return self.versions[rows[0].row()]

    def _selected(self) -> None:
        v = self.selected()
        self._update_buttons()
        self.show_comparison(v)
        self.selection_changed.emit(v)

    def show_comparison(self, v: Optional[Any]) -> None:
        if v is None:
            fill_table(self.baselines_table, [], [])
            self.chart.set_groups([], {})
            return
        columns, rows, rmse, bars = rating_comparison(v.metrics or {})
        if rows:  # explicit ratings: the predicted ratings' errors, by known / new user / new item
            self.chart.widget.setTitle(RATING_TITLE, size="10pt", color="#222")
            self.chart.legend.setColumnCount(2)  # four long names: two per row fit the panel
            fill_table(self.baselines_table, columns, rows)
            for r, errors in enumerate(rmse):
                for c, e in enumerate(errors, start=1):
                    self.baselines_table.item(r, c).setToolTip(f"MAE {rows[r][c]:.4f}, RMSE {e:.4f}")
            self.baselines_table.resizeColumnsToContents()
            self.chart.set_groups([c.split(" (")[0] for c in columns[1:]], bars, headroom=1.9)  # two legend rows
            return
        self.chart.widget.setTitle(RANKING_TITLE, size="10pt", color="#222")
        self.chart.legend.setColumnCount(3)
        names, series = comparison(v.metrics or {})
        fill_table(self.baselines_table, ["ranker"] + [axis_label(n) for n in names],  # short names: less scrolling
                   [[s] + [round(x, 4) if x == x else "—" for x in vals] for s, vals in series.items()])
        self.baselines_table.resizeColumnsToContents()
        self.chart.set_groups([axis_label(n) for n in names[:5]], {s: vals[:5] for s, vals in series.items()})
        if not names:  # a version saved without a test-period evaluation: not "no version yet"
            self.chart.empty.show("This version has no test-period metrics:\nnothing to compare with the baselines")

    def _update_buttons(self) -> None:
        v = self.selected()
        for b in (self.rename_button, self.delete_button):
            b.setEnabled(v is not None)
        self.activate_button.setEnabled(v is not None and not v.active)

    # ---------------------------------------------------------------- actions
    def _rename(self) -> None:
        v = self.selected()
        if v is None:
            return
        name, ok = QInputDialog.getText(self, "Rename model", "New name:", text=v.name)
        if ok and name.strip():
            self.rename(v.model_id, name.strip())

    def rename(self, model_id: str, name: str) -> None:
        self.run_registry(lambda db: rename(db, model_id, name), f"Renaming model to {name}")

    def _activate(self) -> None:
        v = self.selected()
        if v is not None:
            self.activate(v.model_id)

    def activate(self, model_id: str) -> None:
        self.run_registry(lambda db: activate(db, model_id), "Activating model")

    def _delete(self) -> None:
        v = self.selected()
        if v is None:
            return
        answer = QMessageBox.question(self, "Delete model",
                                      f"Delete model version “{v.name}” and its files? This cannot be undone.")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(v.model_id)

    def delete(self, model_id: str) -> None:
        self.run_registry(lambda db: delete(db, model_id), "Deleting model")


_AXIS_NAMES = {"precision": "P", "recall": "R", "ndcg": "nDCG", "map": "MAP", "mrr": "MRR", "hit_rate": "HR"}


def axis_label(metric: str) -> str:
    """Short metric name for a chart axis ("precision@10" -> "P@10"): the full names overlap at panel width."""
    base, at, k = metric.partition("@")
    return _AXIS_NAMES.get(base, base) + at + k


def encoder_short_name(encoder_id: str, names: Optional[dict[str, str]] = None) -> str:
    """"all-MiniLM-L6-v2@ab12…" -> "all-MiniLM-L6-v2"; a fine-tuned version id -> its name when known."""
    name, _, rest = (encoder_id or "").partition("@")
    label = (names or {}).get(name, name) if is_version_id(name) else name
    return label + (" int8" if "+int8" in rest else "")


def before_after(test: dict[str, Any], name: str) -> str:
    """"0.123 → 0.145 (+0.022)" of one metric of a before/after table, "—" when missing."""
    row = test.get(name) if isinstance(test, dict) else None
    if not isinstance(row, dict) or not isinstance(row.get("before"), (int, float)):
        return "—"
    return f"{row['before']:.3f} → {row['after']:.3f} ({row['delta']:+.3f})"


class EncoderVersionsPanel(QWidget):
    """Fine-tuned encoder versions: table + Activate / Back to base / Delete.

    ``run_action(fn, label)`` runs ``fn(db)`` in a worker (the panel never
    touches the database itself); ``fn`` may return a message to show.
    """

    COLUMNS = ["active", "name", "id", "parent", "pairs", "NDCG@10 (held out)", "recall@50 (held out)",
               "related NDCG@10", "created"]

    def __init__(self, run_action: Callable[[Callable[[Any], Any], str], None]) -> None:
        super().__init__()
        self.run_action = run_action
        self.versions: list[Any] = []
        self.columns = [c for c in VERSION_COLUMNS if c != "MAE"]  # the versions table's columns now
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Encoder versions</b>"))
        self.active_label = QLabel()
        self.active_label.setStyleSheet("color: #555;")
        head.addWidget(self.active_label, 1)
        self.activate_button = QPushButton("Activate")
        self.activate_button.setToolTip("Rank text-only and train new models with the selected encoder")
        self.base_button = QPushButton("Back to base")
        self.base_button.setToolTip("Make the packaged all-MiniLM-L6-v2 the workspace's encoder again")
        self.delete_button = QPushButton("Delete…")
        self.activate_button.clicked.connect(self._activate)
        self.base_button.clicked.connect(self.back_to_base)
        self.delete_button.clicked.connect(self._delete)
        for b in (self.activate_button, self.base_button, self.delete_button):
            head.addWidget(b)
        lay.addLayout(head)
        self.table = make_table()
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        lay.addWidget(self.table, 1)
        note = QLabel("Models keep the encoder they were trained with: train a new model to rank with a new "
                      "encoder there; text-only ranking follows the active encoder at once.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #555;")
        lay.addWidget(note)
        self.set_versions([])

    # ---------------------------------------------------------------- filling
    def set_versions(self, versions: list[Any]) -> None:
        selected = self.selected()
        keep = selected.version_id if selected else None
        self.versions = list(versions)
        names = {v.version_id: v.name for v in self.versions}
        rows = []
        for v in self.versions:
            test = (v.metrics or {}).get("test") or {}
            rows.append(["✔" if v.active else "", v.name if v.name != v.version_id else "—", v.version_id,
                         encoder_short_name(v.parent_encoder_id, names), v.n_pairs,
                         before_after(test, "ndcg@10"), before_after(test, "recall@50"),
                         before_after(test.get("related") or {}, "ndcg@10"),
                         (v.created or "")[:16].replace("T", " ")])
        self.table.blockSignals(True)
        fill_table(self.table, self.COLUMNS, rows)
        self.table.setSortingEnabled(False)
        self.table.resizeColumnsToContents()
        for r, v in enumerate(self.versions):
            for c in (5, 6):
                self.table.item(r, c).setToolTip("frozen → fine-tuned (Δ) on the pairs after the split, "
                                                 "dense retrieval alone")
            self.table.item(r, 7).setToolTip("frozen → fine-tuned (Δ): text-only related lists against what "
                                             "each product's buyers also bought after the split")
        self.table.blockSignals(False)
        row = next((i for i, v in enumerate(self.versions) if v.version_id == keep), None)
        if row is None:
            row = next((i for i, v in enumerate(self.versions) if v.active), 0 if self.versions else None)
        if row is not None:
            self.table.selectRow(row)
        active = next((v for v in self.versions if v.active), None)
        self.active_label.setText(f"  active: {active.name} (fine-tuned)" if active
                                  else "  active: base all-MiniLM-L6-v2")
        self._update_buttons()

    def selected(self) -> Optional[Any]:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or rows[0].row() >= len(self.versions):
            return None
        return self.versions[rows[0].row()]

    def _update_buttons(self) -> None:
        v = self.selected()
        self.activate_button.setEnabled(v is not None and not v.active)
        self.delete_button.setEnabled(v is not None)
        self.base_button.setEnabled(any(x.active for x in self.versions))

    # ---------------------------------------------------------------- actions
    def _activate(self) -> None:
        v = self.selected()
        if v is not None:
            self.activate(v.version_id)

    def activate(self, version_id: str) -> None:
        self.run_action(lambda db: activate_encoder(db, version_id), "Activating encoder")

    def back_to_base(self) -> None:
        self.run_action(lambda db: activate_encoder(db, None), "Back to the base encoder")

    def _delete(self) -> None:
        v = self.selected()
        if v is None:
            return
        answer = QMessageBox.question(
            self, "Delete encoder",
            f"Delete encoder version “{v.name}”, its files and its cached vectors? Models trained with it will "
            "not rank any more. This cannot be undone.")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(v.version_id)

    def delete(self, version_id: str) -> None:
        def job(db) -> Optional[str]:
            delete_encoder_version(db, version_id)
            orphans = models_using(db, f"{version_id}@")
            return (f"{len(orphans)} model version(s) were trained with the deleted encoder and cannot rank any "
                    f"more: {', '.join(orphans)}") if orphans else None

        self.run_action(job, "Deleting encoder")
