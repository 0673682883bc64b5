"""Known answers for cell parsing: timestamps, numbers, ids, event types."""
from __future__ import annotations

import pytest

from merch_app.data.values import (
    DAY_FIRST, MONTH_FIRST, TimestampParser, clean_id, guess_date_order, normalise_event_type, parse_number,
    parse_timestamp,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2010-12-01 08:26:00", "2010-12-01T08:26:00Z"),
        ("2010-12-01T08:26:00", "2010-12-01T08:26:00Z"),
        ("2010-12-01T08:26:00Z", "2010-12-01T08:26:00Z"),
        ("2010-12-01T08:26:00.123456", "2010-12-01T08:26:00Z"),
        ("2010-12-01T09:26:00+01:00", "2010-12-01T08:26:00Z"),
        ("2017-11-25T09:00:00+08:00", "2017-11-25T01:00:00Z"),
        ("2010-12-01 08:26", "2010-12-01T08:26:00Z"),
        ("2010-12-01", "2010-12-01T00:00:00Z"),
        ("2010/12/01 08:26:00", "2010-12-01T08:26:00Z"),
        ("20101201", "2010-12-01T00:00:00Z"),
        ("1511596800", "2017-11-25T08:00:00Z"),  # epoch seconds
        ("1511596800000", "2017-11-25T08:00:00Z"),  # epoch milliseconds
        ("2017年11月25日 08:00", "2017-11-25T08:00:00Z"),
        ("  2010-12-01 08:26:00 ", "2010-12-01T08:26:00Z"),
    ],
)
def test_timestamps_known_answers(raw, expected):
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize("raw", ["", "31/31/2011", "2011-13-01 10:00:00", "2011-02-30", "yesterday", "12:00",
                                 "2011-01-01 25:00:00"])
def test_bad_timestamps_are_none(raw):
    assert parse_timestamp(raw) is None


def test_day_first_and_month_first():
    assert parse_timestamp("01/02/2011 10:00", DAY_FIRST) == "2011-02-01T10:00:00Z"
    assert parse_timestamp("01/02/2011 10:00", MONTH_FIRST) == "2011-01-02T10:00:00Z"
    assert parse_timestamp("12/1/2010 8:26", MONTH_FIRST) == "2010-12-01T08:26:00Z"
    assert parse_timestamp("1/12/2010 8:26 PM", DAY_FIRST) == "2010-12-01T20:26:00Z"
    assert parse_timestamp("13.02.2011", DAY_FIRST) == "2011-02-13T00:00:00Z"
    assert parse_timestamp("13/02/2011", MONTH_FIRST) is None  # month 13


def test_guess_date_order():
    assert guess_date_order(["01/02/2011", "13/02/2011"]) == DAY_FIRST
    assert guess_date_order(["12/1/2010 8:26", "12/13/2010 9:00"]) == MONTH_FIRST
    assert guess_date_order(["01/02/2011", "2011-01-01"]) is None


def test_timestamp_parser_cache_is_bounded():
    p = TimestampParser(max_size=10)
    for day in range(1, 29):
        assert p(f"2011-02-{day:02d}") == f"2011-02-{day:02d}T00:00:00Z"
    assert len(p.cache) <= 10


@pytest.mark.parametrize("raw", ["1900-01-01", "1970-01-01 00:00:00", "000000000", "31/12/1989"])
def test_placeholder_dates_are_refused_with_a_reason(raw):
    p = TimestampParser()
    assert p(raw) is None
    assert p.problem(raw) == ("early_date", f"{raw!r} is before 1990-01-01 (a placeholder date, not an event)")
    assert p("1990-01-01") == "1990-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "raw, expected",
    [("12", 12.0), ("-3.5", -3.5), ("1,234.50", 1234.5), ("3,50", 3.5), ("£2.55", 2.55), ("€3,50", 3.5),
     ("￥12.50", 12.5), ("1e3", 1000.0), (" 7 ", 7.0), ("GBP 4.00", 4.0)],
)
def test_numbers(raw, expected):
    assert parse_number(raw) == pytest.approx(expected)


@pytest.mark.parametrize("raw", ["", "abc", "nan", "inf", "1.2.3x"])
def test_bad_numbers(raw):
    assert parse_number(raw) is None


def test_clean_id():
    assert clean_id(" 17850.0 ") == "17850"
    assert clean_id("85123A") == "85123A"
    assert clean_id("A.0") == "A.0"


@pytest.mark.parametrize(
    "raw, expected",
    [("pv", "view"), ("PV", "view"), ("page_view", "view"), ("浏览", "view"), ("click", "click"),
     ("点击", "click"), ("cart", "cart"), ("add_to_cart", "cart"), ("Add To Cart", "cart"), ("加购", "cart"),
     ("fav", "cart"), ("buy", "purchase"), ("purchase", "purchase"), ("order", "purchase"),
     ("购买", "purchase"), ("return", "return"), ("refund", "return"), ("退货", "return"),
     ("rating", "rating"), ("review", "rating"), ("评分", "rating"), ("search", "search"), ("搜索", "search"),
     ("teleport", None), ("", None)],
)
def test_event_type_synonyms(raw, expected):
    assert normalise_event_type(raw) == expected
