"""Known answers for the three kinds and for every row rejection reason."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from merch_app.data.importer import import_file
from merch_app.data.rejected import export_rejected_csv, rejected_rows

DATA = Path(__file__).parent / "data" / "import"


def _events(ws, order="id"):
    return ws.execute(
        f"SELECT user_id, item_id, event_type, value, ts, query, session_id FROM events ORDER BY {order}"
    ).fetchall()


# -------------------------------------------------------------- transactions
def test_transactions_derivation_known_answers(ws):
    r = import_file(ws, DATA / "transactions_small.csv")
    assert r.kind == "transactions" and r.status == "ok"
    # 17 records on lines 2..19 (lines 17-18 are one record with a quoted newline)
    assert (r.rows_read, r.rows_accepted, r.rows_rejected) == (17, 9, 8)
    assert r.rejected_reasons == {"non_product": 3, "bad_date": 2, "bad_number": 1, "missing_item_id": 1,
                                  "wrong_column_count": 1}
    assert (r.items, r.events, r.items_added, r.events_added) == (4, 9, 4, 9)
    assert _events(ws) == [
        ("u1", "A1", "purchase", 2.0, "2011-01-02T10:00:00Z", None, "1001"),
        ("u1", "B2", "purchase", 1.0, "2011-01-02T10:00:00Z", None, "1001"),
        (None, "A1", "purchase", 6.0, "2011-01-03T11:30:00Z", None, "1002"),
        (None, "A1", "purchase", 1.0, "2011-01-03T11:30:00Z", None, "1002"),
        ("u1", "A1", "return", 1.0, "2011-01-04T09:00:00Z", None, "C1003"),  # cancelled invoice
        (None, "B2", "return", 3.0, "2011-01-05T12:00:00Z", None, "1004"),  # negative quantity
        ("u2", "B2", "purchase", 4.0, "2011-01-06T08:00:00Z", None, "1005"),
        ("12345.0", "C3", "purchase", 2.0, "2011-01-09T08:00:00Z", None, "1008"),  # kept: u1 is no 17850.0
        ("u4", "D4", "purchase", 1.0, "2011-01-11T10:00:00Z", None, "1011"),
    ]
    items = {row[0]: row[1:] for row in ws.execute(
        "SELECT item_id, title, price, category, attrs FROM items ORDER BY item_id")}
    # A1: 'RED MUG' x3 (one with a trailing space) beats 'Red mug' x1; purchase prices 1.50, 1.25, 2.00
    assert items["A1"] == ("RED MUG", 1.5, None, json.dumps({"countries": {"United Kingdom": 2, "France": 2}}))
    # B2: purchase prices 3.00 and 3.50 (the return line's 0 price is ignored) -> median 3.25
    assert items["B2"][:2] == ("BLUE PLATE", 3.25)
    assert items["C3"][:2] == ("GREEN BOWL", 2.0)
    assert items["D4"][:2] == ("LAMP\nWITH SHADE", 10.0)
    rejected = {(row["line_no"], row["reason"]) for row in rejected_rows(ws)}
    assert rejected == {
        (4, "non_product: 'POST'"),
        (10, "non_product: 'gift_0001_10' (gift voucher)"),
        (11, "non_product: 'B'"),
        (12, "bad_date: '31/31/2011'"),
        (13, "bad_number: Quantity 'x'"),
        (15, "missing_item_id"),
        (16, "wrong_column_count: expected 8, got 5"),
        (19, "bad_date: '2011-13-01 10:00:00'"),
    }
    raw = {row["line_no"]: row["raw"] for row in rejected_rows(ws)}
    assert raw[4] == "1001,POST,POSTAGE,1,2011-01-02 10:00:00,18.00,u1,United Kingdom"
    # FTS index was rebuilt inside the import
    hits = ws.execute("SELECT item_id FROM items_fts WHERE items_fts MATCH 'bowl'").fetchall()
    assert hits == [("C3",)]


def test_export_rejected_csv(ws, tmp_path):
    r = import_file(ws, DATA / "transactions_small.csv")
    out = tmp_path / "rejected.csv"
    assert export_rejected_csv(ws, r.import_id, out) == 8
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "import_id,line_no,reason,raw"
    assert lines[1].startswith(f"{r.import_id},4,non_product: 'POST',")
    assert len(rejected_rows(ws, import_id=r.import_id, limit=3)) == 3


# ------------------------------------------------------------------- events
def test_events_with_chinese_headers_and_synonyms(ws):
    r = import_file(ws, DATA / "events_zh.tsv")
    assert r.kind == "events"
    assert (r.rows_read, r.rows_accepted, r.rejected_reasons) == (7, 6, {"unknown_event_type": 1})
    assert _events(ws) == [
        ("u1", "I1", "view", 1.0, "2017-11-25T08:00:00Z", None, None),
        ("u1", "I1", "cart", 1.0, "2017-11-25T08:00:00Z", None, None),  # epoch seconds
        ("u1", None, "search", 1.0, "2017-11-25T08:00:00Z", "红色 杯子", None),  # epoch ms, query only
        ("u2", "I2", "purchase", 1.0, "2017-11-25T01:00:00Z", None, None),  # +08:00 -> UTC
        (None, "I2", "click", 1.0, "2017-11-26T00:00:00Z", None, None),  # anonymous
        ("u3", "I3", "cart", 1.0, "2017-11-26T10:00:00Z", None, None),  # fav -> cart
    ]
    # items referenced by events become stubs
    assert r.items == 3 and r.items_added == 3
    assert rejected_rows(ws)[0]["reason"] == "unknown_event_type: 'teleport'"


def test_ratings_without_type_column_day_first(ws):
    r = import_file(ws, DATA / "ratings_pipe.csv")
    assert r.kind == "events"
    assert r.rejected_reasons == {"missing_value": 1}
    assert _events(ws) == [
        ("c1", "p1", "rating", 5.0, "2011-02-01T10:00:00Z", None, None),  # 13/02 in the file -> day-first
        ("c1", "p2", "rating", 3.0, "2011-02-13T10:00:00Z", None, None),
    ]


def test_month_first_dates_detected(ws, tmp_path):
    f = tmp_path / "us.csv"
    f.write_text("user,item,event,date\nu,a,view,12/1/2010 8:26\nu,b,view,12/13/2010 9:05\n")
    import_file(ws, f)
    assert [e[4] for e in _events(ws)] == ["2010-12-01T08:26:00Z", "2010-12-13T09:05:00Z"]


def test_every_rejection_reason(ws, tmp_path):
    long_cell = "x" * 70_000
    lines = [
        "user_id,item_id,event_type,ts,value",  # 1
        "u1,i1,view,2011-01-01 10:00:00,",  # 2 ok
        "u1,i1,view,2011-01-01 10:00:00",  # 3 wrong_column_count
        "u1,i\x002,view,2011-01-01 10:00:00,",  # 4 nul_byte
        f"u1,{long_cell},view,2011-01-01 10:00:00,",  # 5 field_too_long
        "u1,i1,view,31/31/2011,",  # 6 bad_date
        "u1,,view,2011-01-01 10:00:00,",  # 7 missing_item_id
        "u1,i1,teleport,2011-01-01 10:00:00,",  # 8 unknown_event_type
        "u1,i1,view,2011-01-01 10:00:00,abc",  # 9 bad_number
        "u1,i1,view,,",  # 10 missing_date
        "u1,i1,rating,2011-01-01 10:00:00,",  # 11 missing_value
        'u9,"i9,view,2011-01-01 10:00:00,',  # 12 bad_csv: unbalanced quote runs over line 13
        'u10,i10",view,2011-01-01 10:00:00,',  # 13
        "u1,,search,2011-01-01 10:00:00,",  # 14 missing_query
        "u1,i1,,2011-01-01 10:00:00,",  # 15 missing_event_type
        "u1,i1,view,2011-01-01 10:00:00,,,",  # 16 ok: trailing empty cells are dropped
        "u1,i1,rating,2011-01-01 10:00:00,4.5",  # 17 ok
    ]
    f = tmp_path / "bad.csv"
    f.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    r = import_file(ws, f)
    expected = {3: "wrong_column_count: expected 5, got 4", 4: "nul_byte: column 'item_id'",
                5: "field_too_long: column 'item_id' has 70000 bytes", 6: "bad_date: '31/31/2011'",
                7: "missing_item_id", 8: "unknown_event_type: 'teleport'", 9: "bad_number: value 'abc'",
                10: "missing_date", 11: "missing_value: rating without a value",
                12: "bad_csv: line break inside column 'item_id' (unbalanced quote?)",
                14: "missing_query: search event without query or item", 15: "missing_event_type"}
    got = {row["line_no"]: row["reason"] for row in rejected_rows(ws)}
    assert got == expected
    assert (r.rows_read, r.rows_accepted, r.rows_rejected) == (15, 3, 12)
    assert sum(r.rejected_reasons.values()) == 12
    raw = {row["line_no"]: row["raw"] for row in rejected_rows(ws)}
    assert len(raw[5]) == 1024  # raw text is truncated to 1 KiB
    assert [e[3] for e in _events(ws)] == [1.0, 1.0, 4.5]


def test_bad_encoding_after_the_sniffed_sample(ws, tmp_path):
    good = "".join(f"u{i},item{i},view,2011-01-01 10:00:00\n" for i in range(40_000))  # > 1 MiB sample
    data = ("user,item,event,time\n" + good).encode("utf-8") + b"u1,caf\xe9,view,2011-01-01 10:00:00\n"
    f = tmp_path / "late_bad_byte.csv"
    f.write_bytes(data)
    r = import_file(ws, f)
    assert r.rows_accepted == 40_000
    assert r.rejected_reasons == {"bad_encoding": 1}
    row = rejected_rows(ws)[0]
    assert row["line_no"] == 40_002 and row["reason"] == "bad_encoding: column 'item' is not valid utf-8"


# ---------------------------------------------------------------- catalogue
def test_gbk_catalogue_with_attrs(ws):
    r = import_file(ws, DATA / "catalogue_gbk.csv")
    assert r.kind == "catalogue" and r.rows_accepted == 2
    rows = ws.execute("SELECT item_id, title, category, price, tags, attrs FROM items ORDER BY item_id").fetchall()
    assert rows == [
        ("SKU1", "红色陶瓷杯", "厨房", 12.5, "杯子 红色", json.dumps({"产地": "景德镇"}, ensure_ascii=False)),
        ("SKU2", "蓝色盘子", "厨房", 8.0, "盘子", None),
    ]
    assert ws.execute("SELECT item_id FROM items_fts WHERE items_fts MATCH '厨房'").fetchall()


def test_catalogue_upsert_keeps_values_not_given(ws, tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("sku,title,price,colour\n1,Lamp,10,red\n2,Desk,,\n")
    import_file(ws, a)
    b = tmp_path / "b.csv"
    b.write_text("sku,title,price,size\n1,,12,L\n3,Chair,5,\n")
    r = import_file(ws, b)
    assert (r.items, r.items_added) == (3, 1)
    rows = ws.execute("SELECT item_id, title, price, attrs FROM items ORDER BY item_id").fetchall()
    assert rows == [("1", "Lamp", 12.0, '{"colour":"red","size":"L"}'), ("2", "Desk", None, None),
                    ("3", "Chair", 5.0, None)]


def test_catalogue_bad_price_rejected(ws, tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("sku,title,price\n1,Lamp,ten\n2,Desk,3\n")
    r = import_file(ws, f)
    assert r.rejected_reasons == {"bad_number": 1}
    assert rejected_rows(ws)[0]["reason"] == "bad_number: price 'ten'"


@pytest.mark.parametrize("kind", ["events", "transactions"])
def test_header_only_file_imports_nothing(ws, tmp_path, kind):
    f = tmp_path / "h.csv"
    f.write_text("InvoiceNo,StockCode,Quantity,InvoiceDate,CustomerID,EventType\n")
    mapping = ({"InvoiceNo": "session_id", "StockCode": "item_id", "InvoiceDate": "ts", "CustomerID": "user_id"}
               if kind == "events" else None)
    r = import_file(ws, f, kind=kind, mapping=mapping)
    assert (r.status, r.rows_read, r.events) == ("ok", 0, 0)
