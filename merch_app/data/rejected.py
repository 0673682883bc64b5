"""The rows an import left out: listing them and exporting them as CSV."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Union

from merch_app.data.export_log import record_export
from merch_app.data.import_tx import open_db
from merch_app.safety import csv_row


def rejected_rows(db, import_id: Optional[int] = None, limit: int = 1000) -> list[dict]:
    """Rejected rows (newest import first unless ``import_id`` is given).

    Each dict has ``import_id, file_name, line_no, reason, raw``.
    """
    db, close = open_db(db)
    try:
        sql = ("SELECT r.import_id, i.file_name, r.line_no, r.reason, r.raw FROM rejected_rows r "
               "LEFT JOIN imports i ON i.id = r.import_id")
        args: list = []
        if import_id is not None:
            sql += " WHERE r.import_id = ?"
            args.append(import_id)
        sql += " ORDER BY r.import_id DESC, r.line_no LIMIT ?"
        args.append(int(limit))
        keys = ("import_id", "file_name", "line_no", "reason", "raw")
        return [dict(zip(keys, row)) for row in db.execute(sql, args).fetchall()]
    finally:
        if close:
            db.close()


def export_rejected_csv(db, import_id: Optional[int], path: Union[str, Path]) -> int:
    """Write the rejected rows of an import (all imports when None) to a UTF-8 CSV; returns the count.

    Cells that a spreadsheet would run as a formula get a leading apostrophe
    (:func:`merch_app.safety.csv_cell`).
    """
    db, close = open_db(db)
    try:
        sql = "SELECT import_id, line_no, reason, raw FROM rejected_rows"
        args: list = []
        if import_id is not None:
            sql += " WHERE import_id = ?"
            args.append(import_id)
        sql += " ORDER BY import_id, line_no"
        n = 0
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["import_id", "line_no", "reason", "raw"])
            for row in db.execute(sql, args):
                writer.writerow(csv_row(row))  # raw shop text may hold =formulas
                n += 1
        record_export(db, path, "rejected_rows")  # raw lines hold customer ids: a forget must find this file
        return n
    finally:
        if close:
            db.close()
