"""Files that used to be refused with a wrong or unreadable message, or hang: each says what it is.

Reproductions from the reliability round (issue 23, "Data and messages").
"""
from __future__ import annotations

import codecs
import gzip
import os
import threading

import pytest

from merch_app.data import csv_source
from merch_app.data.csv_source import CsvSource, SourceError, visible
from merch_app.data.importer import ImportFailed, import_file

CATALOGUE = "item_id,title,price\nA1,Red mug,2.5\nA2,Blue bowl,3.0\n"


def _titles(ws):
    return dict(ws.execute("SELECT item_id, title FROM items ORDER BY item_id").fetchall())


def test_blank_lines_before_the_header_are_skipped_and_lines_keep_their_numbers(ws, tmp_path):
    path = tmp_path / "blank_first.csv"
    path.write_text("\n\n" + CATALOGUE + "A3,\"bad \"quote,x\n", encoding="utf-8")
    src = CsvSource(path)
    assert src.headers == ["item_id", "title", "price"] and src.format.header_line == 3
    res = import_file(ws, path)
    assert res.kind == "catalogue" and _titles(ws) == {"A1": "Red mug", "A2": "Blue bowl"}
    line = ws.execute("SELECT line_no FROM rejected_rows").fetchone()[0]
    assert line == 6  # the physical line of the bad row, counting the blank lines


def test_excel_sep_line_sets_the_delimiter(ws, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("sep=;\r\nitem_id;title;price\r\nA1;Red mug, large;2.5\r\n", encoding="utf-8-sig")
    src = CsvSource(path)
    assert src.delimiter == ";" and src.headers == ["item_id", "title", "price"]
    import_file(ws, path)
    assert _titles(ws) == {"A1": "Red mug, large"}


def test_a_line_separator_inside_a_quoted_header_does_not_split_the_header(ws, tmp_path):
    path = tmp_path / "u2028.csv"
    path.write_text('item_id,"title\u2028(shown)",price\nA1,Red mug,2.5\nA2,Blue bowl,3\n', encoding="utf-8")
    src = CsvSource(path)
    assert src.headers == ["item_id", "title\u2028(shown)", "price"]
    res = import_file(ws, path, mapping={"item_id": "item_id", "title\u2028(shown)": "title", "price": "price"})
    assert (res.rows_accepted, res.rows_rejected) == (2, 0)


@pytest.mark.parametrize("encoding", ["utf-32", "utf-32-le", "utf-32-be"])
def test_utf32_with_and_without_bom_is_read(ws, tmp_path, encoding):
    path = tmp_path / f"{encoding}.csv"
    path.write_bytes("item_id,title,price\nZ1,烛台,29.9\n".encode(encoding))
    import_file(ws, path)
    assert _titles(ws) == {"Z1": "烛台"}


def test_zero_width_space_in_a_header_is_dropped_and_messages_show_invisible_characters(ws, tmp_path):
    path = tmp_path / "zwsp.csv"
    path.write_text("item\u200b_id,ti\ufefftle\nA1,Red mug\n", encoding="utf-8")
    assert CsvSource(path).headers == ["item_id", "title"]
    assert visible("a\u200bb\x00c") == "a\\u200bb\\x00c"
    bad = tmp_path / "nodelim.csv"
    bad.write_text("one\u200bcolumn\x01only\nx\n", encoding="utf-8")
    with pytest.raises(SourceError) as err:
        CsvSource(bad)
    assert "one\\u200bcolumn\\x01only" in str(err.value)


def test_a_symlink_loop_and_a_dangling_link_are_named(tmp_path):
    loop = tmp_path / "loop.csv"
    os.symlink(loop, loop)
    with pytest.raises(SourceError, match="loop of symbolic links"):
        CsvSource(loop)
    dangling = tmp_path / "dangling.csv"
    os.symlink(tmp_path / "gone.csv", dangling)
    with pytest.raises(SourceError, match="symbolic link to a file that does not exist"):
        CsvSource(dangling)


def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    out: list = []
    t = threading.Thread(target=lambda: out.append(pytest.raises(SourceError, CsvSource, fifo)), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "reading a FIFO hung"
    assert "named pipe (FIFO)" in str(out[0].value)


def test_an_rtf_file_is_refused(ws, tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text(r"{\rtf1\ansi\deff0 {\fonttbl {\f0 Times;}} item_id,title\par A1,mug}", encoding="ascii")
    with pytest.raises(ImportFailed, match="this is an RTF document"):
        import_file(ws, path)
    assert ws.execute("SELECT count(*) FROM items").fetchone()[0] == 0


def test_gzip_with_trailing_garbage_names_the_line_where_the_good_data_ends(ws, tmp_path):
    rows = "".join(f"A{n},item {n},1.0\n" for n in range(500))
    path = tmp_path / "tail.csv.gz"
    path.write_bytes(gzip.compress(("item_id,title,price\n" + rows).encode()) + b"this is not gzip" * 4)
    with pytest.raises(ImportFailed) as err:
        import_file(ws, path)
    assert "line 502: the compressed data ends there and is followed by bytes that are not compressed" \
        in str(err.value)
    assert ws.execute("SELECT count(*) FROM items").fetchone()[0] == 0


def test_an_endless_line_is_read_in_bounded_pieces(ws, tmp_path, monkeypatch):
    monkeypatch.setattr(csv_source, "MAX_LINE_CHARS", 4096)
    path = tmp_path / "nul_tail.csv"
    with open(path, "wb") as f:
        f.write(CATALOGUE.encode())
        f.write("".join(f"B{n},bowl {n},1.0\n" for n in range(400)).encode())  # the sample looks like text
        f.write(b"\0" * 300_000)  # no newline at the end
    seen = []
    src = CsvSource(path)
    real = src._lines

    def watched(text):
        for line in real(text):
            seen.append(len(line))
            yield line

    monkeypatch.setattr(src, "_lines", watched)
    rows = list(src.records())
    assert [r[2] for r in rows[:2]] == [["A1", "Red mug", "2.5"], ["A2", "Blue bowl", "3.0"]]
    assert max(seen) <= 4097  # the 300 kB line never sat in memory whole
    res = import_file(ws, path)
    assert res.rows_accepted == 402 and res.rows_rejected == 1


def test_utf32_detection_does_not_take_utf16_for_it():
    assert csv_source.wide_encoding("item_id,title\n".encode("utf-16-le")) == "utf-16-le"
    assert csv_source.wide_encoding("item_id,title\n".encode("utf-32-le")) == "utf-32-le"
    assert csv_source.detect_encoding(codecs.BOM_UTF16_LE + "ab".encode("utf-16-le")) == "utf-16"
