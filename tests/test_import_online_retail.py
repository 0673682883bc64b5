"""Import the full Online Retail file and check the counts its README states.

What is asserted, and why:

* Raw file (independent plain ``csv`` pass): the README's numbers — 541,909
  rows, 4,070 distinct stock codes, 4,372 customers, 135,080 rows without
  customer, 9,288 rows of ``C`` invoices, 3 rows of ``A`` invoices.
* Import: ``rows_read`` = 541,909.  The importer skips non-product lines
  (postage, carriage, manual, discount, samples, bank charges, Amazon fees,
  CRUK commission, bad-debt adjustments, gift vouchers) with the reason
  ``non_product``: 2,946 rows in 16 stock codes (``POST DOT M m C2 D S B`` ``BANK
  CHARGES AMAZONFEE CRUK`` + 5 ``gift_0001_*``).  Hence
  items = 4,070 − 16 = 4,054; users = 4,372 − 9 customers whose only lines
  were non-product = 4,363; anonymous events = 135,080 − 1,030 anonymous
  non-product rows = 134,050; returns = (9,288 − 584 non-product ``C`` rows) +
  1,336 negative-quantity rows on other invoices = 10,040; purchases =
  538,963 − 10,040 = 528,923; 25,900 invoices − 604 made only of non-product
  lines = 25,296 sessions.  Every adjustment is recomputed from the raw file
  below, so the test shows where each number comes from.
"""
from __future__ import annotations

import csv
import gzip
import statistics

import pytest

from merch_app.data.importer import import_file
from merch_app.data.summary import data_summary
from merch_app.data.transactions import non_product_reason

pytestmark = pytest.mark.slow


def _raw_counts(path) -> dict:
    codes, customers, np_codes, np_only, invoices = set(), set(), set(), set(), set()
    product_customers, named = set(), set()
    prices_85123a = []
    c = {"rows": 0, "anon": 0, "c_rows": 0, "a_rows": 0, "np_rows": 0, "np_anon": 0, "np_c_rows": 0,
         "neg_other": 0}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                                "UnitPrice", "CustomerID", "Country"]
        for inv, code, _d, qty, _t, _p, cust, _c in reader:
            c["rows"] += 1
            codes.add(code)
            invoices.add(inv)
            c["anon"] += not cust
            c["c_rows"] += inv.startswith("C")
            c["a_rows"] += inv.startswith("A")
            if cust:
                customers.add(cust)
            if non_product_reason(code, inv) is not None:
                np_codes.add(code)
                c["np_rows"] += 1
                c["np_anon"] += not cust
                c["np_c_rows"] += inv.startswith("C")
                if cust:
                    np_only.add(cust)
                continue
            if cust:
                product_customers.add(cust)
            if _d.strip():
                named.add(code)
            if code == "85123A" and int(qty) > 0 and not inv.startswith("C") and float(_p) > 0:
                prices_85123a.append(float(_p))
            c["neg_other"] += int(qty) < 0 and not inv.startswith("C")
    c.update(invoices=len(invoices), codes=len(codes), customers=len(customers), np_codes=len(np_codes),
             np_only_customers=len(np_only - product_customers),
             unnamed_codes=len(codes - np_codes - named), median_85123a=statistics.median(prices_85123a))
    return c


def test_full_online_retail_import(ws, online_retail):
    raw = _raw_counts(online_retail)
    # the README's numbers
    assert (raw["rows"], raw["invoices"], raw["codes"], raw["customers"], raw["anon"], raw["c_rows"],
            raw["a_rows"]) == (541_909, 25_900, 4_070, 4_372, 135_080, 9_288, 3)
    # what the importer's non-product rule takes out
    assert (raw["np_rows"], raw["np_codes"], raw["np_only_customers"], raw["np_anon"], raw["np_c_rows"],
            raw["neg_other"]) == (2_946, 16, 9, 1_030, 584, 1_336)

    r = import_file(ws, online_retail)
    assert r.status == "ok" and r.kind == "transactions"
    assert r.rows_read == 541_909
    assert r.rejected_reasons == {"non_product": 2_946}
    assert r.rows_accepted == 541_909 - 2_946 == 538_963
    assert r.items == 4_070 - 16 == 4_054
    assert r.events == 538_963

    s = data_summary(ws)
    assert s.users == 4_372 - 9 == 4_363
    assert s.anonymous_events == 135_080 - 1_030 == 134_050
    assert s.events_by_type == {"purchase": 528_923, "return": (9_288 - 584) + 1_336}
    assert (s.first_ts, s.last_ts) == ("2010-12-01T08:26:00Z", "2011-12-09T12:50:00Z")
    sessions = ws.execute("SELECT count(DISTINCT session_id) FROM events").fetchone()[0]
    assert sessions == 25_900 - 604  # invoices made only of non-product lines drop out
    title, price = ws.execute("SELECT title, price FROM items WHERE item_id = '85123A'").fetchone()
    # title = most frequent description; price = median unit price of its purchase lines with price > 0
    assert title == "WHITE HANGING HEART T-LIGHT HOLDER" and price == raw["median_85123a"] == 2.95
    # product codes whose every line has an empty Description (README: 1,454 such rows) stay untitled
    assert raw["unnamed_codes"] == 112
    assert ws.execute("SELECT count(*) FROM items WHERE title IS NULL").fetchone()[0] == 112
