"""Encoding/delimiter detection, header mapping, kind detection and saved mappings."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from merch_app.data.csv_source import CsvSource, SourceError, detect_encoding
from merch_app.data.header_mapping import (
    apply_overrides, detect_kind, guess_columns, header_key, kind_scores, normalise_header,
)
from merch_app.data.importer import ImportFailed, import_file, preview_file

DATA = Path(__file__).parent / "data" / "import"
ZH = "商品名称,红色陶瓷杯,蓝色盘子,景德镇\n"


# ------------------------------------------------------------------ encodings
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("item,title\n1,Café\n".encode("utf-8"), "utf-8"),
        (b"\xef\xbb\xbf" + "item,title\n1,Café\n".encode("utf-8"), "utf-8-sig"),
        ("item,title\n1,Café crème\n".encode("cp1252"), "cp1252"),
        ("item,title\n1,€5 – offer\n".encode("cp1252"), "cp1252"),
        (("item,title\n1," + ZH).encode("gbk"), "gb18030"),
        (("商品ID,商品名称\n1,红色陶瓷杯\n").encode("gb18030"), "gb18030"),
        (b"item,title\n1,caf\xe9 \x81\n", "latin-1"),  # 0x81 is undefined in cp1252
    ],
)
def test_detect_encoding_known_answers(raw, expected):
    assert detect_encoding(raw) == expected


def test_utf8_sample_cut_inside_a_character_is_still_utf8():
    data = ("a,b\n" + "x,红色\n" * 100).encode("utf-8")
    assert detect_encoding(data[:-2]) == "utf-8"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_chinese_text_round_trips(ws, tmp_path, encoding):
    text = "商品ID,商品名称,价格\nSKU1,红色陶瓷杯（景德镇）,12.5\nSKU2,蓝色盘子·大号,8\n"
    f = tmp_path / f"cat_{encoding}.csv"
    f.write_bytes(text.encode(encoding))
    result = import_file(ws, f)
    assert result.status == "ok" and result.kind == "catalogue"
    titles = dict(ws.execute("SELECT item_id, title FROM items").fetchall())
    assert titles == {"SKU1": "红色陶瓷杯（景德镇）", "SKU2": "蓝色盘子·大号"}


def test_cp1252_and_bom_files_round_trip(ws):
    import_file(ws, DATA / "catalogue_cp1252.csv")
    import_file(ws, DATA / "catalogue_utf8_bom.csv")
    rows = dict(ws.execute("SELECT item_id, title FROM items").fetchall())
    assert rows["C1"] == "Café crème"
    assert rows["C2"] == "Crêpe pan – 24 cm"
    assert rows["P-1"] == "Ünïcödé lamp 💡"
    assert ws.execute("SELECT price FROM items WHERE item_id = 'C1'").fetchone()[0] == 3.5


# ----------------------------------------------------------------- delimiters
@pytest.mark.parametrize("delim", [",", "\t", ";", "|"])
def test_delimiter_sniffed(tmp_path, delim):
    f = tmp_path / "f.txt"
    with open(f, "w", newline="") as out:  # the writer quotes the title where it holds the delimiter
        csv.writer(out, delimiter=delim).writerows([["sku", "title", "price"], ["1", "a, b; c", "2"]])
    src = CsvSource(f)
    assert src.delimiter == delim
    assert src.headers == ["sku", "title", "price"]
    assert list(src.records()) == [(2, 2, ["1", "a, b; c", "2"])]


def test_gzip_file_is_read(tmp_path):
    f = tmp_path / "events.csv.gz"
    with gzip.open(f, "wt", encoding="utf-8") as g:
        g.write("user,item,event,time\nu1,i1,view,2011-01-01\n")
    src = CsvSource(f)
    assert src.headers == ["user", "item", "event", "time"]
    assert [r for _, _, r in src.records()] == [["u1", "i1", "view", "2011-01-01"]]


@pytest.mark.parametrize(
    "content, problem",
    [(b"", "empty"), (b"justoneword\nfoo\n", "no delimiter"), (b"\x00\x01\x02\x03" * 200, "binary")],
)
def test_unreadable_files_fail_with_a_clear_message(ws, tmp_path, content, problem):
    f = tmp_path / "bad.csv"
    f.write_bytes(content)
    with pytest.raises(ImportFailed) as err:
        import_file(ws, f)
    assert str(f) in str(err.value) and problem in str(err.value)
    assert ws.execute("SELECT count(*) FROM items").fetchone()[0] == 0


def test_missing_file_and_broken_gzip(ws, tmp_path):
    with pytest.raises(ImportFailed, match="file not found"):
        import_file(ws, tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ImportFailed, match="bad.csv.gz"):
        import_file(ws, bad)
    with pytest.raises(SourceError):
        CsvSource(bad)


# -------------------------------------------------------------------- headers
def test_normalise_header():
    assert normalise_header(" Customer_ID ") == "customerid"
    assert normalise_header("Stock Code") == "stockcode"
    assert normalise_header("ＳＫＵ") == "sku"  # full-width
    assert normalise_header("\ufeffInvoice No.") == "invoiceno"


@pytest.mark.parametrize(
    "headers, expected",
    [
        (["Customer ID", "Product Id", "Event", "Timestamp"],
         {"Customer ID": "user_id", "Product Id": "item_id", "Event": "event_type", "Timestamp": "ts"}),
        (["client_id", "sku", "action", "date"],
         {"client_id": "user_id", "sku": "item_id", "action": "event_type", "date": "ts"}),
        (["USER", "ITEM CODE", "TYPE", "TIME", "SEARCH TERM", "Session"],
         {"USER": "user_id", "ITEM CODE": "item_id", "TYPE": "event_type", "TIME": "ts",
          "SEARCH TERM": "query", "Session": "session_id"}),
        (["用户ID", "商品ID", "行为类型", "时间"],
         {"用户ID": "user_id", "商品ID": "item_id", "行为类型": "event_type", "时间": "ts"}),
    ],
)
def test_event_header_synonyms(headers, expected):
    mapping = {s: f for s, f, _ in guess_columns(headers, "events") if f}
    assert mapping == expected
    assert detect_kind(headers)[0] == "events"


def test_catalogue_and_transaction_headers():
    cat = ["Product Code", "Name", "Long Description", "Keywords", "Department", "List Price", "Colour"]
    guesses = {s: (f, c) for s, f, c in guess_columns(cat, "catalogue")}
    assert guesses["Product Code"] == ("item_id", 0.9)
    assert guesses["Name"] == ("title", 0.9)
    assert guesses["Long Description"][0] == "description"
    assert guesses["Keywords"][0] == "tags"
    assert guesses["Department"][0] == "category"
    assert guesses["List Price"][0] == "price"
    assert guesses["Colour"] == ("attrs*", 0.3)
    assert detect_kind(cat)[0] == "catalogue"
    tr = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
    kind, conf = detect_kind(tr)
    assert kind == "transactions" and conf == 0.95
    assert {s: f for s, f, _ in guess_columns(tr, "transactions")}["Description"] == "title"
    scores = kind_scores(tr)
    assert scores["transactions"] > scores["events"] > 0


def test_no_item_column_is_a_clear_failure(ws, tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("alpha,beta\n1,2\n")
    with pytest.raises(ImportFailed, match="no column for item_id"):
        import_file(ws, f)


def test_overrides():
    headers = ["who", "what", "when", "how"]
    mapping = apply_overrides(headers, "events", {}, {"who": "user_id", "WHAT": "item_id", "when": "ts"})
    assert mapping == {"who": "user_id", "what": "item_id", "when": "ts"}
    mapping = apply_overrides(headers, "events", mapping, {"how": "item_id", "when": ""})
    assert mapping == {"who": "user_id", "how": "item_id"}  # field moved, column dropped
    with pytest.raises(ValueError, match="no column 'nope'"):
        apply_overrides(headers, "events", {}, {"nope": "ts"})
    with pytest.raises(ValueError, match="no field 'price'"):
        apply_overrides(headers, "events", {}, {"who": "price"})


def test_preview_reports_mapping_and_confidence(ws):
    p = preview_file(ws, DATA / "events_zh.tsv")
    assert (p.encoding, p.delimiter, p.kind) == ("utf-8", "\t", "events")
    assert p.headers == ["用户ID", "商品ID", "行为类型", "时间", "搜索词"]
    assert p.mapping == {"用户ID": "user_id", "商品ID": "item_id", "行为类型": "event_type", "时间": "ts",
                         "搜索词": "query"}
    assert all(0 < c.confidence <= 1 for c in p.columns)
    assert p.rows[0] == ["u1", "I1", "pv", "2017-11-25 08:00:00", ""]
    assert len(p.sha256) == 64 and not p.already_imported and not p.saved_mapping_used
    assert p.size_bytes == (DATA / "events_zh.tsv").stat().st_size


def test_saved_mapping_is_reused_for_same_headers(ws, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("who,what,when,how\nu1,i1,2011-01-01,view\n")
    b.write_text("WHO,What,When,How\nu2,i2,2011-01-02,buy\n")
    mapping = {"who": "user_id", "what": "item_id", "when": "ts", "how": "event_type"}
    r = import_file(ws, a, kind="events", mapping=mapping)
    assert r.status == "ok" and r.events == 1
    assert header_key(["who", "what", "when", "how"]) == header_key(["WHO", "What", "When", "How"])
    p = preview_file(ws, b)
    assert p.saved_mapping_used and p.kind == "events"
    assert p.mapping == {"WHO": "user_id", "What": "item_id", "When": "ts", "How": "event_type"}
    r2 = import_file(ws, b)
    assert (r2.kind, r2.events, r2.rows_rejected) == ("events", 2, 0)


def test_movielens_camel_case_headers_map_without_help(tmp_path):
    """MovieLens' movies.csv / ratings.csv (movieId, userId, genres, epoch timestamps) import as they are."""
    from merch_app.data.workspace import open_workspace

    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Comedy\n"
                                         "2,Jumanji (1995),Adventure|Fantasy\n", encoding="utf-8")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
                                          "2,2,3.5,1445714835\n", encoding="utf-8")
    db = open_workspace(tmp_path / "ml.sqlite")
    assert import_file(db, tmp_path / "movies.csv").kind == "catalogue"
    assert import_file(db, tmp_path / "ratings.csv").kind == "events"
    assert db.execute("SELECT item_id, tags FROM items ORDER BY item_id").fetchall() == [
        ("1", "Adventure|Animation|Comedy"), ("2", "Adventure|Fantasy")]
    assert db.execute("SELECT user_id, item_id, event_type, value, ts FROM events ORDER BY id").fetchall() == [
        ("1", "1", "rating", 4.0, "2000-07-30T18:45:03Z"), ("2", "2", "rating", 3.5, "2015-10-24T19:27:15Z")]
    db.close()
