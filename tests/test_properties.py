"""Property tests (hypothesis): CSV reader, import of arbitrary bytes, header mapper, values, metrics."""
from __future__ import annotations

import csv
import gzip
import io
import math
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from merch_app.data.csv_source import DELIMITERS, CsvSource, SourceError, dedupe_headers
from merch_app.data.header_mapping import (
    ATTRS, FIELDS, KINDS, apply_overrides, detect_kind, guess_columns, header_key, normalise_header,
    resolve_source,
)
from merch_app.data.importer import ImportFailed, import_file
from merch_app.data.values import MAX_ABS_NUMBER, parse_number, parse_timestamp
from merch_app.data.workspace import open_workspace
from merch_app.evaluation import metrics as M

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Cell text: any printable character (also quotes, CJK, emoji, line feeds) but the
# delimiters (the one in use is added back per example), NUL, CR and other controls.
_CELL_CHARS = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="".join(DELIMITERS) + "\ufeff\ufffd\u2028\u2029\x85"
)


def _cells(delim: str):
    return st.text(alphabet=st.one_of(_CELL_CHARS, st.sampled_from([delim, '"', "\n", " "])), max_size=12)


@st.composite
def tables(draw):
    delim = draw(st.sampled_from(DELIMITERS))
    ncols = draw(st.integers(2, 5))
    header_text = st.text(alphabet=st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=8)
    headers = draw(st.lists(header_text, min_size=ncols, max_size=ncols, unique=True))
    rows = draw(st.lists(st.lists(_cells(delim), min_size=ncols, max_size=ncols), max_size=15))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
    compress = draw(st.booleans())
    return delim, headers, rows, encoding, compress


def _write(folder: Path, delim, headers, rows, encoding, compress) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delim, lineterminator="\n")
    w.writerow(headers)
    w.writerows(rows)
    data = buf.getvalue().encode(encoding)
    path = folder / ("t.csv.gz" if compress else "t.csv")
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


@FAST
@given(tables())
def test_csv_reader_round_trips_any_table(table):
    delim, headers, rows, encoding, compress = table
    with tempfile.TemporaryDirectory() as d:
        source = CsvSource(_write(Path(d), *table))
        assert source.delimiter == delim
        assert source.headers == [h.strip() for h in headers]
        got = list(source.records())
    expected, line = [], 2
    for row in rows:
        lines = 1 + sum(c.count("\n") for c in row)
        expected.append((line, line + lines - 1, row))
        line += lines
    assert got == expected


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
@example(b"\x1f\x8b\x08\x00garbage")
@example(b"a,b\n\"1,2\n")
@example("a\u2028b,c\n1,2\n".encode())
def test_import_of_arbitrary_bytes_fails_cleanly_or_imports(data):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "blob.csv"
        f.write_bytes(data)
        db = open_workspace(Path(d) / "ws.sqlite")
        try:
            result = import_file(db, f)
        except ImportFailed as exc:
            assert str(exc).startswith(f"{f}: ")
            assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 0
            assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        else:
            assert result.rows_accepted + result.rows_rejected == result.rows_read
            n_rejects = db.execute("SELECT count(*) FROM rejected_rows").fetchone()[0]
            assert n_rejects == result.rows_rejected
        finally:
            db.close()


@FAST
@given(st.text(max_size=200))
def test_csv_source_on_any_text_raises_only_source_error(text):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "t.csv"
        f.write_text(text, encoding="utf-8")
        try:
            source = CsvSource(f)
            for _ in source.records():
                pass
        except SourceError as exc:
            assert str(exc).startswith(f"{f}: ")


# ---------------------------------------------------------------- the mapper
_header = st.text(max_size=15)


@FAST
@given(st.lists(_header, min_size=1, max_size=10), st.sampled_from(KINDS))
def test_guess_columns_gives_each_field_to_one_column(headers, kind):
    guesses = guess_columns(headers, kind)
    assert [g[0] for g in guesses] == headers
    fields = [f for _, f, _ in guesses if f and f != ATTRS]
    assert len(fields) == len(set(fields))
    for _, field, conf in guesses:
        assert field is None or field in FIELDS[kind]
        assert 0.0 <= conf <= 1.0
    detected, conf = detect_kind(headers)
    assert detected in KINDS and 0.0 <= conf <= 1.0


@FAST
@given(_header)
def test_normalise_header_is_idempotent(h):
    once = normalise_header(h)
    assert normalise_header(once) == once


@FAST
@given(st.text(alphabet="abcdefgHIJK _-.#", min_size=1, max_size=12))
def test_header_key_ignores_case_and_separators(h):
    assert header_key([h]) == header_key([h.upper().replace("_", " ")]) == header_key([f" {h.lower()} "])


@FAST
@given(st.lists(st.sampled_from(["a", "b", "", "a (2)", "title"]), max_size=8))
def test_dedupe_headers_makes_names_unique(headers):
    out, renamed = dedupe_headers(headers)
    assert len(out) == len(headers)
    named = [h for h in out if h]
    assert len(named) == len(set(named))
    named_in = [h for h in headers if h]
    assert len(renamed) == len(named_in) - len(set(named_in))
    assert all(o == h for o, h in zip(out, headers) if (h, o) not in renamed)
    for h in out:
        assert resolve_source(out, h) == h or h == ""


@FAST
@given(st.lists(st.text(alphabet=st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=8),
                min_size=2, max_size=6, unique=True),
       st.sampled_from(KINDS), st.data())
def test_apply_overrides_keeps_fields_unique(headers, kind, data):
    mapping = {s: f for s, f, _ in guess_columns(headers, kind) if f}
    overrides = data.draw(st.dictionaries(st.sampled_from(headers), st.sampled_from(FIELDS[kind] + ["", "attrs"]),
                                          max_size=4))
    out = apply_overrides(headers, kind, mapping, overrides)
    fields = [f for f in out.values() if f != ATTRS]
    assert len(fields) == len(set(fields))
    last_for_field = {fld: src for src, fld in overrides.items()}  # a field given twice: the last one wins
    for src, fld in overrides.items():
        if fld == "":
            assert src not in out
        elif fld in ("attrs", ATTRS):
            assert out[src] == ATTRS
        elif last_for_field[fld] == src:
            assert out[src] == fld
        else:
            assert out.get(src) != fld


# ---------------------------------------------------------------- the values
@FAST
@given(st.floats(min_value=-MAX_ABS_NUMBER, max_value=MAX_ABS_NUMBER, allow_nan=False))
def test_parse_number_round_trips_floats(x):
    assert parse_number(repr(x)) == x


@FAST
@given(st.text(max_size=30))
def test_parse_number_and_timestamp_never_raise(text):
    value = parse_number(text)
    assert value is None or (math.isfinite(value) and abs(value) <= MAX_ABS_NUMBER)
    ts = parse_timestamp(text)
    assert ts is None or datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")


@FAST
@given(st.datetimes(min_value=datetime(1973, 3, 4), max_value=datetime(2100, 1, 1)))
def test_parse_timestamp_known_formats(dt):
    dt = dt.replace(microsecond=0)
    want = dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    epoch = int(dt.replace(tzinfo=timezone.utc).timestamp())
    for text in (dt.strftime("%Y-%m-%d %H:%M:%S"), want, dt.strftime("%Y%m%d%H%M%S"), str(epoch),
                 str(epoch * 1000), dt.strftime("%d/%m/%Y %H:%M:%S")):
        assert parse_timestamp(text) == want, text
    shifted = (dt + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    assert parse_timestamp(shifted) == want


# --------------------------------------------------------------- the metrics
_items = st.integers(0, 30)
_ranked = st.lists(_items, max_size=20, unique=True)
_relevant = st.sets(_items, max_size=10)
_k = st.integers(1, 25)


@FAST
@given(_ranked, _relevant, _k)
def test_ranking_metrics_are_bounded_and_consistent(ranked, relevant, k):
    values = {f.__name__: f(ranked, relevant, k) for f in (
        M.precision_at_k, M.recall_at_k, M.hit_rate_at_k, M.ndcg_at_k, M.average_precision_at_k)}
    values["rr"] = M.reciprocal_rank(ranked, relevant, k)
    for name, v in values.items():
        assert 0.0 <= v <= 1.0 + 1e-12, name
    hits = len(set(ranked[:k]) & relevant)
    assert math.isclose(values["precision_at_k"] * k, hits)
    assert values["hit_rate_at_k"] == (1.0 if hits else 0.0)
    assert (values["ndcg_at_k"] > 0) == (hits > 0) == (values["rr"] > 0)
    assert values["rr"] <= values["hit_rate_at_k"]
    if relevant:
        assert math.isclose(values["recall_at_k"], hits / len(relevant))
        assert M.recall_at_k(ranked, relevant, k + 1) >= values["recall_at_k"]


@FAST
@given(st.dictionaries(_items, st.integers(1, 3), min_size=1, max_size=10), _k, st.floats(0.1, 10))
def test_ideal_ranking_has_ndcg_one_and_scaling_does_not_matter(gains, k, scale):
    ideal = sorted(gains, key=lambda i: -gains[i])
    assert math.isclose(M.ndcg_at_k(ideal, gains, k), 1.0)
    reversed_ = list(reversed(ideal))
    nd = M.ndcg_at_k(reversed_, gains, k)
    assert nd <= 1.0 + 1e-12
    assert math.isclose(M.ndcg_at_k(reversed_, {i: g * scale for i, g in gains.items()}, k), nd)


@FAST
@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=1, max_size=30))
def test_rating_errors(pairs):
    pred, true = zip(*pairs)
    mae, rmse = M.mae(pred, true), M.rmse(pred, true)
    assert 0.0 <= mae <= rmse + 1e-9
    assert M.mae(true, true) == 0.0 == M.rmse(true, true)


@FAST
@given(st.lists(st.floats(0, 1000), min_size=1, max_size=50))
def test_gini_bounds(counts):
    g = M.gini(counts)
    assert -1e-9 <= g < 1.0
    assert abs(M.gini([counts[0]] * len(counts))) < 1e-9


@FAST
@given(st.lists(_ranked, max_size=10), st.integers(31, 60))
def test_coverage_and_long_tail_share_bounds(rankings, n_items):
    assert 0.0 <= M.catalogue_coverage(rankings, n_items) <= 1.0
    tail = M.long_tail_items({i: float(i) for i in range(n_items)})
    assert 0.0 <= M.long_tail_share(rankings, tail) <= 1.0
    counts = M.recommendation_counts(rankings, list(range(n_items)))
    assert counts.sum() == sum(len(r) for r in rankings)


# ----------------------------------------------------------- the query box
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def ranker(tmp_path_factory):
    from merch_app.model.encoder import load_encoder
    from merch_app.ranking.ranker import Ranker
    from merch_app.model.bundle import load_bundle

    folder = tmp_path_factory.mktemp("rank")
    cat = folder / "cat.csv"
    cat.write_text("sku,title,category,price\n" + "".join(
        f"S{i},{t} {i},{c},{i}.5\n" for i, (t, c) in enumerate(
            [("red heart mug", "kitchen"), ("blue \"star\" plate", "kitchen"), ("NEAR lamp AND OR", "decor"),
             ("title:colon cushion", "decor"), ("中文 茶杯", "厨房"), ("emoji 🎁 gift box", "gifts")] * 3)))
    db = open_workspace(folder / "ws.sqlite")
    import_file(db, cat)
    yield Ranker(db, load_bundle(db, encoder=load_encoder("hashing:32")))
    db.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40), st.booleans())
@example('"', True)
@example("NEAR(a b", False)
@example("title:* OR -", True)
@example("a AND", True)
@example("'; DROP TABLE items; --", True)
@example("*", True)
@example("\x00", True)
def test_any_query_text_ranks_without_error(ranker, query, prefix):
    from merch_app.ranking.types import RankRequest

    result = ranker.rank(RankRequest(query=query, k=5, prefix=prefix))
    assert len(result.item_ids) <= 5
    assert all(math.isfinite(float(s)) for s in result.scores)
