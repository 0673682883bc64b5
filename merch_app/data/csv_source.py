"""Reading shop exports: gzip, encoding and delimiter detection, streaming rows.

A :class:`CsvSource` is opened once to sniff the format from a sample, then
:meth:`CsvSource.records` streams ``(line_no, fields)`` records in constant
memory.  Line numbers are physical lines in the file (header = line 1); a
record that spans several lines (quoted newline) gets the number of its first
line.
"""
from __future__ import annotations

import codecs
import csv
import errno
import gzip
import hashlib
import io
import os
import re
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from merch_app.errors import MerchAppError

SAMPLE_BYTES = 1 << 20  # decoded sample used to sniff encoding, delimiter, kind and date order
MAX_FIELD_CHARS = 16 << 20  # the csv module's own limit; our row check rejects > 64 KiB
MAX_LINE_CHARS = MAX_FIELD_CHARS  # a longer physical line is cut here (then rejected as too long), never held whole
DELIMITERS = (",", "\t", ";", "|")
_EXCEL_SEP = re.compile(r"^\ufeff?sep=(.)\s*$", re.IGNORECASE)
INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u200c\u200d\u2060\u00ad"))  # zero-width marks, soft hyphen

csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))

_CJK_CHAR = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


class SourceError(MerchAppError):
    """The file cannot be read as a delimited text file (message is user-facing)."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of the file's bytes as stored (compressed bytes for ``.gz``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def open_bytes(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """Open ``path`` for reading decompressed bytes.

    Returns ``(stream, raw)``: ``raw.tell()`` is the position in the file on
    disk, which drives the progress bar for compressed files too.
    """
    raw = open(path, "rb")
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw  # type: ignore[return-value]
    raw.seek(0)
    return raw, raw


def _decodes(data: bytes, encoding: str) -> Optional[str]:
    """Decode a sample strictly, tolerating a multibyte character cut at its end."""
    try:
        return codecs.getincrementaldecoder(encoding)("strict").decode(data, final=False)
    except UnicodeDecodeError:
        return None


def _mostly_utf8(sample: bytes) -> bool:
    """True when most non-ASCII lines are valid UTF-8 (a file mixing in a few cp1252 lines).

    Decoding such a file as cp1252 would garble every UTF-8 line; as UTF-8
    only the odd lines are rejected (``bad_encoding``, naming the line).
    """
    good = bad = 0
    for line in sample.split(b"\n")[:-1]:  # the last line may be cut mid-character
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            good += 1
        except UnicodeDecodeError:
            bad += 1
    return good > 0 and good >= 2 * bad


def detect_encoding(sample: bytes) -> str:
    """Choose the encoding of a file from its first bytes.

    Order: UTF-8 (``utf-8-sig`` when a BOM is present) if the sample decodes
    strictly or at least two thirds of its non-ASCII lines do; GB18030 (a superset of GBK) if it decodes and most non-ASCII
    characters are CJK; otherwise cp1252, or latin-1 when the sample holds a
    byte cp1252 leaves undefined.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE starts both
        return "utf-32"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if _decodes(sample, "utf-8") is not None or _mostly_utf8(sample):
        return "utf-8"
    text = _decodes(sample, "gb18030")
    if text is not None:
        non_ascii = [c for c in text if ord(c) > 127]
        cjk = sum(1 for c in non_ascii if _CJK_CHAR.match(c))
        if non_ascii and cjk >= 0.6 * len(non_ascii):
            return "gb18030"
    if _decodes(sample, "cp1252") is not None:
        return "cp1252"
    return "latin-1"


def visible(text: str) -> str:
    """``text`` for a message: invisible and control characters shown as escapes (``\\u200b``, ``\\x00``)."""
    return "".join(c if c.isprintable() and ord(c) not in INVISIBLE else ascii(c)[1:-1] for c in text)


def detect_delimiter(lines: list[str], path: Path, line_no: int = 1) -> str:
    """Pick the delimiter that splits the header and keeps the column count steady."""
    if not lines:
        raise SourceError(f"{path}: line {line_no}: the file is empty")
    best, best_score = None, (-1, -1.0)
    for delim in DELIMITERS:
        try:
            rows = list(csv.reader(lines[:50], delimiter=delim))
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        data = rows[1:] or rows
        steady = sum(1 for r in data if len(r) == width) / len(data)
        score = (1 if steady >= 0.8 else 0, steady * width)
        if score > best_score:
            best, best_score = delim, score
    if best is None:
        first = visible(lines[0].rstrip("\r\n")[:80])
        raise SourceError(
            f"{path}: line {line_no}: no delimiter found (tried comma, tab, semicolon, pipe) "
            f"in header '{first}'"
        )
    return best


_SAVE_AS_CSV = "; open it in your spreadsheet program, save it as CSV UTF-8 and import that file"
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx)" + _SAVE_AS_CSV),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls)" + _SAVE_AS_CSV),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"SQLite format 3\x00", "a SQLite database (a workspace?)"),
    (b"{\\rtf", "an RTF document" + _SAVE_AS_CSV),
)
_CONTROL_BYTES = frozenset(range(0, 9)) | {11} | frozenset(range(14, 27)) | frozenset(range(28, 32)) | {127}


def utf32_without_bom(head: bytes) -> Optional[str]:
    """``'utf-32-le'``/``'utf-32-be'`` when three bytes in four are NUL (text saved as UTF-32 without BOM)."""
    n = len(head) // 4 * 4
    if n < 16:
        return None
    quads = [head[i:i + 4] for i in range(0, n, 4)]
    if sum(q[1:] == b"\0\0\0" and q[0] != 0 for q in quads) >= 0.7 * len(quads):
        return "utf-32-le"
    if sum(q[:3] == b"\0\0\0" and q[3] != 0 for q in quads) >= 0.7 * len(quads):
        return "utf-32-be"
    return None


def wide_encoding(head: bytes) -> Optional[str]:
    """The UTF-32/UTF-16 encoding of a file that has no byte-order mark, else None."""
    return utf32_without_bom(head) or utf16_without_bom(head)


def utf16_without_bom(head: bytes) -> Optional[str]:
    """``'utf-16-le'``/``'utf-16-be'`` when every other byte is NUL (text saved as UTF-16 without BOM)."""
    if len(head) < 8:
        return None
    half = len(head) // 2
    even_nul, odd_nul = head[0::2].count(0), head[1::2].count(0)
    if odd_nul >= 0.7 * half and even_nul <= 0.05 * half:
        return "utf-16-le"
    if even_nul >= 0.7 * half and odd_nul <= 0.05 * half:
        return "utf-16-be"
    return None


def not_text_reason(head: bytes) -> Optional[str]:
    """What ``head`` (the first decompressed bytes) is when it is not delimited text, else None."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or wide_encoding(head):
        return None
    control = sum(1 for b in head if b in _CONTROL_BYTES)
    if control > max(8, len(head) // 33):  # > 3 % control bytes: compressed or binary data
        return "binary data"
    text = head.lstrip(codecs.BOM_UTF8).lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page (a web page or error page saved instead of the export?)"
    if text.startswith(b"<?xml"):
        return "an XML document"
    if text[:1] in (b"{", b"[") and text[1:].lstrip()[:1] in (b"{", b"[", b'"'):
        return "JSON"
    return None


def _read_sample(stream, path: Path) -> tuple[bytes, bool]:
    """Up to SAMPLE_BYTES of decompressed data and whether the file ended within them."""
    parts: list[bytes] = []
    size = 0
    try:
        while size < SAMPLE_BYTES:
            block = stream.read(min(1 << 13, SAMPLE_BYTES - size))  # small: a cut gzip loses one block
            if not block:
                return b"".join(parts), True
            parts.append(block)
            size += len(block)
        return b"".join(parts), not stream.read(1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise SourceError(gzip_problem(path, exc)) from exc


def gzip_problem(path: Path, exc: BaseException) -> str:
    """Say where a damaged gzip file goes wrong: the line its good data ends at, and what follows."""
    good, lines, tail = 0, 1, b""
    d = zlib.decompressobj(wbits=31)
    try:
        with open(path, "rb") as f:
            while not d.eof:
                block = f.read(1 << 16)
                if not block:
                    break
                data = d.decompress(block)
                good += len(data)
                lines += data.count(b"\n")
            tail = d.unused_data + (f.read(1 << 16) if d.eof else b"")
    except (OSError, zlib.error):
        pass
    if d.eof and tail and not tail.startswith(b"\x1f\x8b"):
        return (f"{path}: line {lines}: the compressed data ends there and is followed by bytes that are not "
                f"compressed data (a file appended to it, or a damaged copy); export the file again")
    return (f"{path}: line {lines}: the compressed file is cut short or damaged ({exc}); "
            f"download or export it again")


def _check_path(path: Path) -> None:
    """Refuse what cannot be read as a file, naming why (missing, a link loop, a folder, a pipe)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SourceError(f"{path}: the path is a loop of symbolic links, not a file") from exc
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            if os.path.islink(path):
                raise SourceError(f"{path}: a symbolic link to a file that does not exist") from exc
            raise SourceError(f"{path}: file not found") from exc
        raise SourceError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise SourceError(f"{path}: is {kind}, not a regular file; save the export to a file and import that")


def split_lines(text: str) -> list[str]:
    """Lines ending at ``\\n``, ``\\r\\n`` or ``\\r`` only, as the csv reader sees them
    (``str.splitlines`` would also cut at U+2028 and other Unicode breaks inside quoted cells)."""
    return io.StringIO(text, newline="").readlines()


def _header_start(lines: list[str]) -> tuple[int, Optional[str]]:
    """Index of the header line (blank lines and an Excel ``sep=`` line come first) and the ``sep=`` delimiter."""
    n, sep = 0, None
    while n < len(lines) and not lines[n].strip().lstrip("\ufeff"):
        n += 1
    if n < len(lines):
        m = _EXCEL_SEP.match(lines[n].rstrip("\r\n"))
        if m:
            sep, n = m.group(1), n + 1
            while n < len(lines) and not lines[n].strip():
                n += 1
    return n, sep


@dataclass
class SourceFormat:
    encoding: str
    delimiter: str
    size_bytes: int
    sample_lines: list[str]  # decoded lines of the sample from the header on (last, possibly cut line dropped)
    header_line: int = 1  # physical line of the header (blank lines or Excel's "sep=" line may come first)


def sniff(path: Path) -> SourceFormat:
    """Read a sample of ``path`` and detect encoding and delimiter.

    Raises
    ------
    SourceError
        Missing/unreadable file, broken gzip, binary data or no delimiter.
    """
    path = Path(path)
    _check_path(path)
    size = path.stat().st_size
    try:
        stream, raw = open_bytes(path)
        with raw, stream:
            sample, at_end = _read_sample(stream, path)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read the file ({exc})") from exc
    if not sample.lstrip(codecs.BOM_UTF8).strip():
        raise SourceError(f"{path}: line 1: the file is empty")
    head = sample[:4096]
    what = not_text_reason(head)
    if what is not None:
        raise SourceError(f"{path}: line 1: not a CSV/TSV text file: this is {what}")
    encoding = wide_encoding(head) or detect_encoding(sample)
    text = codecs.getincrementaldecoder(encoding)("replace").decode(sample, final=at_end)
    lines = split_lines(text)
    if not at_end and len(lines) > 1:
        lines = lines[:-1]
    start, sep = _header_start(lines)
    lines = lines[start:]
    if not lines:
        raise SourceError(f"{path}: line {start + 1}: the file has no header row")
    delimiter = sep if sep is not None else detect_delimiter(lines, path, start + 1)
    return SourceFormat(encoding, delimiter, size, lines, start + 1)


def dedupe_headers(headers: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Give repeated non-empty header names a suffix: ``['a', 'a']`` → ``['a', 'a (2)']``."""
    seen: set[str] = set(headers)
    counts: dict[str, int] = {}
    out, renamed = [], []
    for h in headers:
        if not h or h not in counts:
            counts[h] = 1
            out.append(h)
            continue
        n = counts[h] + 1
        while f"{h} ({n})" in seen:
            n += 1
        counts[h] = n
        new = f"{h} ({n})"
        seen.add(new)
        out.append(new)
        renamed.append((h, new))
    return out, renamed


class CsvSource:
    """A sniffed delimited file that can stream its records.

    Attributes
    ----------
    headers
        Header cells, stripped; a repeated name gets a suffix (``title``,
        ``title (2)``) so every column can be mapped on its own.
    renamed
        ``[(original, new name)]`` for the repeated header names.
    bytes_read
        Position in the file on disk while streaming (for progress).
    """

    def __init__(self, path: Path, fmt: Optional[SourceFormat] = None) -> None:
        self.path = Path(path)
        self.format = fmt or sniff(self.path)
        self.encoding = self.format.encoding
        self.delimiter = self.format.delimiter
        self.size_bytes = self.format.size_bytes
        first = next(csv.reader(self.format.sample_lines[:1], delimiter=self.delimiter), [])
        self.headers, self.renamed = dedupe_headers([h.translate(INVISIBLE).strip() for h in first])
        if not any(self.headers):
            raise SourceError(f"{self.path}: line {self.format.header_line}: the header row is empty")
        self._raw: Optional[BinaryIO] = None
        self._reader = None
        self.last_line = ""

    def sample_rows(self, n: int) -> list[list[str]]:
        """The first ``n`` data rows from the sample (for previews)."""
        reader = csv.reader(self.format.sample_lines, delimiter=self.delimiter)
        next(reader, None)
        out = []
        for row in reader:
            if not row:
                continue
            out.append(row)
            if len(out) >= n:
                break
        return out

    @property
    def line_num(self) -> int:
        """Physical lines read so far while streaming (for error messages)."""
        return self._reader.line_num if self._reader is not None else 0

    @property
    def bytes_read(self) -> int:
        try:
            return self._raw.tell() if self._raw is not None else 0
        except (ValueError, OSError):
            return self.size_bytes

    def _lines(self, text: io.TextIOBase) -> Iterator[str]:
        """Physical lines; one longer than MAX_LINE_CHARS is cut there (its rest is read and dropped)."""
        while True:
            line = text.readline(MAX_LINE_CHARS)
            if not line:
                return
            if len(line) >= MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
                while True:
                    rest = text.readline(MAX_LINE_CHARS)
                    if not rest or rest.endswith(("\n", "\r")):
                        break
                line += "\n"
            self.last_line = line
            yield line

    def records(self) -> Iterator[tuple[int, int, list[str]]]:
        """Stream ``(first_line_no, last_line_no, fields)`` for each data record.

        Blank lines are skipped.  Undecodable bytes become U+FFFD (the
        importer rejects such rows).  A line the csv module cannot parse is
        yielded with ``fields = None``.
        """
        stream, raw = open_bytes(self.path)
        self._raw = raw
        text = io.TextIOWrapper(stream, encoding=self.encoding, errors="replace", newline="")
        try:
            reader = self._reader = csv.reader(self._lines(text), delimiter=self.delimiter)
            prev = 1
            try:
                while reader.line_num < self.format.header_line:
                    next(reader)  # blank lines, Excel's "sep=" line, then the header
            except StopIteration:
                return
            prev = reader.line_num
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error:
                    yield prev + 1, reader.line_num, None  # type: ignore[misc]
                    prev = reader.line_num
                    continue
                line_no = reader.line_num
                if row:
                    yield prev + 1, line_no, row
                prev = line_no
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            problem = ("the compressed file is cut short or damaged" if isinstance(exc, (EOFError, zlib.error))
                       else "cannot read the file")
            raise SourceError(f"{self.path}: line {prev + 1}: {problem} ({exc})") from exc
        finally:
            text.close()
            raw.close()
            self._raw = None
