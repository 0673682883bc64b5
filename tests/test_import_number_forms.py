"""A file's decimal convention and id form, decided from the file (issue 23, round 2).

European numbers in a semicolon file (``1.234,56``) were stored as 1.23456, and
ids ``123.0`` / ``00123.0`` were merged into ``123`` / ``00123`` (9 distinct ids
became 5 items).  Now the decimal comma is detected from the file's sample and
said in the summary, a file that mixes both forms has its two-way cells
rejected, and ``.0`` is dropped only when the whole id column is written so.
"""
from __future__ import annotations

from pathlib import Path

from merch_app.data.importer import import_file
from merch_app.data.privacy import pseudonym, workspace_key
from merch_app.data.values import (
    DECIMAL_COMMA, DECIMAL_MIXED, DECIMAL_POINT, IdReader, NumberParser, guess_decimal, parse_number,
    spreadsheet_id_column,
)
from merch_app.services.forget import forget_user


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def prices(db) -> dict:
    return dict(db.execute("SELECT item_id, price FROM items").fetchall())


def rejected(db) -> list[tuple]:
    """(line, reason code) of every rejected row."""
    rows = db.execute("SELECT line_no, reason FROM rejected_rows ORDER BY line_no").fetchall()
    return [(line, reason.split(":")[0]) for line, reason in rows]


# ------------------------------------------------------------ decimal comma
def test_semicolon_catalogue_with_european_prices(ws, tmp_path):
    f = write(tmp_path / "cat.csv", "sku;title;price\nA1;mug;1.234,56\nA2;plate;2.500,00\nA3;cup;3,5\n"
                                    "A4;bowl;12\nA5;vase;1.000\nA6;jug;€ 4,99\n")
    result = import_file(ws, f)
    assert result.rows_accepted == 6 and result.rows_rejected == 0
    assert prices(ws) == {"A1": 1234.56, "A2": 2500.0, "A3": 3.5, "A4": 12.0, "A5": 1000.0, "A6": 4.99}
    assert "Numbers read with decimal comma (1.234,56 = 1234.56)." in result.message


def test_semicolon_transactions_and_ratings_with_decimal_comma(ws, tmp_path):
    tx = write(tmp_path / "tx.csv", "InvoiceNo;StockCode;Description;Quantity;InvoiceDate;UnitPrice;CustomerID\n"
                                    "1;A1;MUG;1.000;2011-01-02 10:00:00;1.234,56;u1\n"
                                    "2;A2;PLATE;2;2011-01-03 10:00:00;0,85;u2\n")
    result = import_file(ws, tx)
    assert result.rows_accepted == 2 and "decimal comma" in result.message
    assert prices(ws) == {"A1": 1234.56, "A2": 0.85}
    assert ws.execute("SELECT value FROM events WHERE item_id = 'A1'").fetchone()[0] == 1000.0
    ratings = write(tmp_path / "r.csv", "user_id;item_id;rating;ts\nu1;A1;4,5;2011-02-01\nu2;A2;3;2011-02-02\n")
    assert import_file(ws, ratings).rows_accepted == 2
    assert ws.execute("SELECT value FROM events WHERE event_type = 'rating' AND user_id = 'u1'").fetchone()[0] == 4.5


def test_a_file_with_both_conventions_rejects_the_cells_that_read_two_ways(ws, tmp_path):
    f = write(tmp_path / "mixed.csv", "sku;title;price\nA1;mug;1.234,56\nA2;plate;12.5\nA3;cup;7\nA4;bowl;1.500\n")
    result = import_file(ws, f)
    assert prices(ws) == {"A2": 12.5, "A3": 7.0}  # never guessed
    assert rejected(ws) == [(2, "ambiguous_number"), (5, "ambiguous_number")]
    assert result.rejected_reasons == {"ambiguous_number": 2}
    assert "both with a decimal comma (1.234,56) and a decimal point (12.5)" in result.message
    first = ws.execute("SELECT reason FROM rejected_rows ORDER BY line_no").fetchone()[0]
    assert first.startswith("ambiguous_number: price '1.234,56' reads two ways: this file writes numbers both")


def test_comma_files_and_point_numbers_are_read_as_before(ws, tmp_path):
    f = write(tmp_path / "cat.csv", 'sku,title,price\nA1,mug,"1,234.50"\nA2,plate,2.55\nA3,cup,"3,50"\n')
    result = import_file(ws, f)
    assert prices(ws) == {"A1": 1234.5, "A2": 2.55, "A3": 3.5} and "decimal comma" not in result.message
    g = write(tmp_path / "semi.csv", "sku;title;price\nB1;mug;12.5\nB2;plate;1.234\n")  # no comma: a point
    assert "decimal comma" not in import_file(ws, g).message
    assert prices(ws)["B1"] == 12.5 and prices(ws)["B2"] == 1.234


def test_decimal_known_answers():
    assert guess_decimal(["1.234,56", "2.500,00", "3"], ";") == DECIMAL_COMMA
    assert guess_decimal(["1.234,56", "12.5"], ";") == DECIMAL_MIXED
    assert guess_decimal(["1.234,56"], ",") == DECIMAL_POINT  # a comma file: the old rule
    assert guess_decimal(["1.234", "7"], ";") == DECIMAL_POINT
    comma = NumberParser(DECIMAL_COMMA)
    assert [comma(x) for x in ("1.234,56", "-1,5", "1.234", "12", "12.5", "1e3")] == [
        1234.56, -1.5, 1234.0, 12.0, None, 1000.0]
    assert comma.problem("price", "12.5") == ("bad_number", "price '12.5' does not use the file's decimal comma "
                                                            "(1.234,56)")
    assert NumberParser(DECIMAL_MIXED)("1,5") is None and NumberParser(DECIMAL_MIXED)("12.5") == 12.5
    assert NumberParser()("1e308") is None and NumberParser()("2.5") == 2.5
    assert parse_number("1.234,56") == 1234.56 and parse_number("1,234.56") == 1234.56  # the last mark decides


# ------------------------------------------------------------------ ids
NINE_IDS = ["123", "123.0", "00123", "00123.0", "7", "7.0", "5", "5.0", "8.0"]


def test_nine_distinct_ids_stay_nine_items(ws, tmp_path):
    f = write(tmp_path / "cat.csv", "sku,title,price\n" + "".join(
        f"{item},title {n},{n + 1}\n" for n, item in enumerate(NINE_IDS)))
    result = import_file(ws, f)
    assert result.items == 9 and sorted(prices(ws)) == sorted(NINE_IDS)
    assert prices(ws)["123.0"] == 2.0 and prices(ws)["123"] == 1.0  # nothing overwritten
    assert "spreadsheet numbers" not in result.message


def test_a_column_all_in_spreadsheet_form_is_read_without_dot_zero_and_said(ws, tmp_path):
    f = write(tmp_path / "ev.csv", "user_id,item_id,event_type,ts\n17850.0,123.0,view,2011-01-01\n"
                                   "13047.0,00124.0,view,2011-01-02\n,125.0,view,2011-01-03\n")
    result = import_file(ws, f)
    users = {u for (u,) in ws.execute("SELECT user_id FROM events WHERE user_id IS NOT NULL")}
    items = {i for (i,) in ws.execute("SELECT item_id FROM events")}
    assert users == {"17850", "13047"} and items == {"123", "00124", "125"}
    assert "Item ids are written as spreadsheet numbers (17850.0) in the whole column: read without the .0." \
        in result.message
    assert "User ids are written as spreadsheet numbers" in result.message


def test_a_plain_id_after_the_sample_is_refused_not_merged(ws, tmp_path):
    """The form is decided from the file's first MiB; a later plain ``12345`` would be merged with ``12345.0``."""
    rows = "".join(f"{12000 + i % 500}.0,A{i % 40},view,2011-01-{1 + i % 28:02d} 10:00:00\n" for i in range(40_000))
    f = write(tmp_path / "ev.csv", "user_id,item_id,event_type,ts\n" + rows + "12345,A1,view,2011-02-01 10:00:00\n")
    assert f.stat().st_size > 1 << 20
    result = import_file(ws, f)
    assert result.rows_accepted == 40_000 and result.rejected_reasons == {"id_form": 1}
    assert rejected(ws) == [(40_002, "id_form")]
    assert ws.execute("SELECT count(*) FROM events WHERE user_id = '12345'").fetchone()[0] == 80  # the 12345.0 rows
    assert "User ids are written as spreadsheet numbers" in result.message


def test_id_known_answers():
    assert spreadsheet_id_column(["17850.0", "", "13047.0"]) and not spreadsheet_id_column(["17850.0", "u1"])
    assert not spreadsheet_id_column(["", " "]) and not spreadsheet_id_column(["١٢.0"])  # Arabic-Indic digits
    rewrite, keep = IdReader(True), IdReader(False)
    assert [rewrite(x) for x in ("123.0", "00123.0", "123", "A1", " 9.0 ")] == ["123", "00123", None, "A1", "9"]
    assert [keep(x) for x in ("123.0", " 123 ")] == ["123.0", "123"]
    assert rewrite.problem("user id", "123")[0] == "id_form"


def test_forget_still_finds_users_kept_in_spreadsheet_form(ws, tmp_path):
    """A mixed column keeps ``99887.0``; ``forget 99887`` finds it, also by pseudonym."""
    f = write(tmp_path / "ev.csv", "user_id,item_id,event_type,ts\n99887.0,A1,view,2011-01-01\n"
                                   "u5,A2,view,2011-01-02\n99887.0,A2,view,2011-01-03\n")
    import_file(ws, f)
    assert ws.execute("SELECT count(*) FROM events WHERE user_id = '99887.0'").fetchone()[0] == 2
    assert forget_user(ws, "99887", retrain=False).events_removed == 2
    g = write(tmp_path / "ev2.csv", f.read_text(encoding="utf-8").replace("u5", "u6").replace("2011-01", "2011-02"))
    result = import_file(ws, g, pseudonymise=True)
    assert result.rows_forgotten == 2  # the list holds the .0 form's digest too
    h = write(tmp_path / "ev3.csv", "user_id,item_id,event_type,ts\n55555.0,A1,view,2011-03-01\n"
                                    "u7,A2,view,2011-03-02\n")
    import_file(ws, h, pseudonymise=True)
    anon = pseudonym(workspace_key(ws), "55555.0")
    assert ws.execute("SELECT count(*) FROM events WHERE user_id = ?", [anon]).fetchone()[0] == 1
    assert forget_user(ws, "55555", retrain=False).events_removed == 1  # the pseudonym of its .0 form
