"""Reading survey exports row by row (CSV, TSV, JSONL, XLSX, Parquet) and writing tagged ones.

Readers stream: no file is ever loaded whole, so memory depends on the chunk size, not on the
file. Every reader yields `(row, notes)`: `row` maps column names to values, `notes` lists what
was wrong with that row (a malformed CSV line, a JSON line that does not parse), so that bad
rows travel to the output marked instead of being dropped.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

__all__ = [
    "InputFileError",
    "FORMATS",
    "TEXT_FORMATS",
    "DecodingChoice",
    "RowReader",
    "cell_text",
    "choose_encoding",
    "file_fingerprint",
    "format_of",
    "choose_text_column",
    "open_reader",
    "sample_rows",
]

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".xlsx": "xlsx",
    ".parquet": "parquet",
}
TEXT_FORMATS = ("jsonl", "csv", "tsv")
# The encodings survey tools actually export in China, tried in this order.
AUTO_ENCODINGS = ("utf-8", "gb18030")
# A UTF-8 file with a few corrupt bytes is still UTF-8; a GB18030 file read as UTF-8 fails on
# nearly every non-ASCII byte. Below this share of bad non-ASCII bytes the bytes are replaced.
TOLERATED_BAD_BYTE_SHARE = 0.01
BLOCK = 1 << 20
# The longest field Python's csv accepts by default is 128 KiB; pasted essays exceed it.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class InputFileError(ValueError):
    """The input or output file cannot be used; the message says why."""


def format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputFileError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(FORMATS)}")
    return fmt


def file_fingerprint(path: Path) -> dict:
    """Size and SHA-256 of the whole file: resuming must never mix rows of two different files."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


@dataclass(frozen=True)
class DecodingChoice:
    encoding: str  # codec name given to open()
    label: str  # what the user is told, e.g. "GB18030"
    replaced_bytes: int  # undecodable bytes that become U+FFFD (their rows get a note)


class _BadByteCounter:
    """A codec error handler that counts undecodable bytes instead of stopping."""

    def __init__(self):
        self.bad = 0
        self.first_bad: int | None = None
        self.consumed = 0  # bytes decoded before the current block, to report file offsets

    def __call__(self, exc: UnicodeDecodeError):
        self.bad += exc.end - exc.start
        if self.first_bad is None:
            self.first_bad = self.consumed + exc.start
        return "\ufffd", exc.end


_active_counter: list[_BadByteCounter] = []
codecs.register_error("kesheng-count", lambda exc: _active_counter[-1](exc))
ASCII_BYTES = bytes(range(128))


def _count_bad_bytes(path: Path, encoding: str) -> tuple[int, int, int | None]:
    """(undecodable bytes, non-ASCII bytes, offset of the first undecodable byte)."""
    counter = _BadByteCounter()
    decoder = codecs.getincrementaldecoder(encoding)(errors="kesheng-count")
    non_ascii = 0
    _active_counter.append(counter)
    try:
        with open(path, "rb") as handle:
            while True:
                block = handle.read(BLOCK)
                non_ascii += len(block.translate(None, ASCII_BYTES))
                decoder.decode(block, final=not block)
                counter.consumed += len(block)
                if not block:
                    break
    finally:
        _active_counter.pop()
    return counter.bad, non_ascii, counter.first_bad


def choose_encoding(path: Path, explicit: str | None = None) -> DecodingChoice:
    """The encoding to read a text file with: UTF-8, UTF-8 with BOM, UTF-16 with BOM, or GB18030.

    The whole file is checked, so a choice made here cannot fail halfway through a long run.
    """
    if explicit:
        try:
            codecs.lookup(explicit)
        except LookupError as exc:
            raise InputFileError(f"unknown encoding {explicit!r}") from exc
        bad, _, _ = _count_bad_bytes(path, explicit)
        return DecodingChoice(explicit, explicit, bad)
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(codecs.BOM_UTF8):
        candidates = [("utf-8-sig", "UTF-8-SIG (UTF-8 with BOM)")]
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = [("utf-16", "UTF-16 (with BOM)")]
    else:
        candidates = [(encoding, encoding.upper()) for encoding in AUTO_ENCODINGS]
    tried = []
    for encoding, label in candidates:
        bad, non_ascii, first_bad = _count_bad_bytes(path, encoding)
        if bad == 0:
            return DecodingChoice(encoding, label, 0)
        tried.append((encoding, label, bad, non_ascii, first_bad))
    encoding, label, bad, non_ascii, first_bad = min(tried, key=lambda t: t[2])
    if non_ascii and bad / non_ascii <= TOLERATED_BAD_BYTE_SHARE:
        return DecodingChoice(encoding, label, bad)
    details = "; ".join(f"{t[1]}: {t[2]} bad bytes, first at byte {t[4]}" for t in tried)
    raise InputFileError(
        f"{path}: cannot tell the text encoding ({details}). Pass --encoding ENCODING "
        "(e.g. big5, utf-16, latin-1); undecodable bytes are then replaced and their rows marked"
    )


def cell_text(value: Any) -> str:
    """A value as CSV/TSV text: nested JSON stays JSON, dates ISO 8601, missing empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return json.dumps(value, ensure_ascii=False, default=str)


class _CountingReader(io.RawIOBase):
    """Counts bytes handed to the text decoder: the progress bar's position in the file."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.raw.readinto(buffer)
        self.position += count or 0
        return count


@dataclass
class RowReader:
    """An open input: its columns (known before any row is tagged) and a stream of rows."""

    path: Path
    fmt: str
    columns: list[str]  # header / first JSON object's fields / schema names
    progress_total: int | None  # bytes for text files, rows for XLSX/Parquet; None when unknown
    decoding: DecodingChoice | None = None  # text files only
    arrow_schema: Any = None  # Parquet input: column types to keep in Parquet output
    _rows: Iterator[tuple[dict, list[str], int]] | None = None
    _position: Any = None  # callable returning progress units consumed so far
    _close: list = field(default_factory=list)

    def rows(self) -> Iterator[tuple[dict, list[str], int]]:
        """(row, notes, number): `number` is the row a user sees, the same in every message: the
        spreadsheet row for tables (header = row 1), the line for JSONL."""
        assert self._rows is not None
        return self._rows

    def progress_done(self) -> int:
        return self._position() if self._position else 0

    def close(self) -> None:
        for closer in self._close:
            closer()
        self._close.clear()


def open_reader(path: Path, text_field: str | None, encoding: str | None = None, sheet: str | None = None, strict: bool = False) -> RowReader:
    """Open and validate an input (type, encoding, text column) before anything is written.

    Every command that reads a user's file reads it here. `text_field` None: no column is
    required (the caller checks its own columns). `strict`: a malformed row is an error naming
    it instead of a kept row with a note."""
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    fmt = format_of(path)
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: empty file (0 bytes), nothing to tag")
    if fmt in TEXT_FORMATS:
        return _open_text(path, fmt, text_field, encoding, strict)
    if fmt == "xlsx":
        return _open_xlsx(path, text_field, sheet)
    return _open_parquet(path, text_field)


TEXT_SAMPLE_ROWS = 500  # rows read to find the comments column when none is named


def choose_text_column(columns: Sequence[str], rows: Iterable[dict], given: str | None = None, exclude: Iterable[str] = ()) -> tuple[str, bool]:
    """The column holding the comments, chosen the same way by every command: the one given;
    else a column named "text"; else the column whose values in `rows` (a sample) are the longest
    strings on average. Returns the name and whether it was guessed (commands then say so)."""
    if given is not None:
        return given, False
    if "text" in columns:
        return "text", False
    skip = set(exclude)
    sample = list(rows)
    lengths = {}
    for column in columns:
        if column in skip:
            continue
        values = [row.get(column) for row in sample]
        strings = [len(v) for v in values if isinstance(v, str) and v.strip()]
        if strings and len(strings) * 2 >= len([v for v in values if v is not None]):
            lengths[column] = sum(strings) / len(sample)
    if not lengths:
        raise InputFileError(f"no column of text found; columns are {list(columns)}: name the comments column with --text-column")
    return max(lengths, key=lengths.get), True


def sample_rows(path: Path, encoding: str | None = None, sheet: str | None = None, n: int = TEXT_SAMPLE_ROWS) -> tuple[list[str], list[dict]]:
    """The columns and the first `n` rows of a file, read by the same readers."""
    reader = open_reader(path, None, encoding, sheet)
    try:
        rows = []
        for row, _, _ in reader.rows():
            rows.append(row)
            if len(rows) >= n:
                break
        return list(reader.columns), rows
    finally:
        reader.close()


def _missing_column(path: Path, text_field: str, columns: list[str], what: str = "column") -> InputFileError:
    return InputFileError(f"{path}: {what} {text_field!r} not found; {what}s are {columns}")


def _open_text(path: Path, fmt: str, text_field: str | None, encoding: str | None, strict: bool) -> RowReader:
    decoding = choose_encoding(path, encoding)
    raw = open(path, "rb")
    counter = _CountingReader(raw)
    handle = io.TextIOWrapper(io.BufferedReader(counter, BLOCK), encoding=decoding.encoding, errors="replace", newline="")
    reader = RowReader(path, fmt, [], path.stat().st_size, decoding, _position=lambda: counter.position, _close=[handle.close, raw.close])
    try:
        if fmt == "jsonl":
            reader.columns, reader._rows = _jsonl_rows(handle, path, text_field, strict)
        else:
            reader.columns, reader._rows = _delimited_rows(handle, path, fmt, text_field, strict)
    except BaseException:
        reader.close()
        raise
    return reader


def _jsonl_rows(handle: IO[str], path: Path, text_field: str | None, strict: bool):
    lines = enumerate(handle, start=1)
    first: tuple[int, dict] | None = None
    early: list[tuple[dict, list[str], int]] = []
    for number, line in lines:
        row, notes = _parse_json_line(line, number, path, strict)
        if row is None:
            continue
        early.append((row, notes, number))
        if not notes:
            first = (number, row)
            break
    if first is None:
        if not early:
            raise InputFileError(f"{path}: no JSON objects in the file, nothing to tag")
        raise InputFileError(f"{path}: no line is a valid JSON object (line 1: {early[0][1][0]})")
    if text_field is not None and text_field not in first[1]:
        raise InputFileError(f"{path}: field {text_field!r} not found; line {first[0]} has fields {list(first[1])}")
    columns = list(first[1])

    def rows():
        yield from early
        for number, line in lines:
            row, notes = _parse_json_line(line, number, path, strict)
            if row is not None:
                yield row, notes, number

    return columns, rows()


def _parse_json_line(line: str, number: int, path: Path, strict: bool) -> tuple[dict | None, list[str]]:
    if not line.strip():
        return None, []
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        problem = f"line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
        if strict:
            raise InputFileError(f"{path}: {problem}") from exc
        return {}, [f"malformed row: {problem}; raw line: {line.rstrip(chr(10) + chr(13))}"]
    if not isinstance(row, dict):
        problem = f"line {number} is a JSON {type(row).__name__}, expected an object"
        if strict:
            raise InputFileError(f"{path}: {problem}")
        return {}, [f"malformed row: {problem}; raw line: {line.rstrip(chr(10) + chr(13))}"]
    return row, []


def _unique_header(path: Path, header: list[str]) -> list[str]:
    seen: set[str] = set()
    duplicates = sorted({h for h in header if h in seen or seen.add(h)})
    if duplicates:
        raise InputFileError(f"{path}: duplicate column names {duplicates}; rename them so that no value is lost")
    return header


def _delimited_rows(handle: IO[str], path: Path, fmt: str, text_field: str | None, strict: bool):
    reader = csv.reader(handle, delimiter="\t" if fmt == "tsv" else ",")
    header = None
    # The row a spreadsheet shows: one per record, blank ones included, the header counted
    # (a quoted line break does not start a new row, so this is not the file's line number).
    sheet_row = 0
    for fields in reader:
        sheet_row += 1
        if fields:
            header = fields
            break
    if header is None:
        raise InputFileError(f"{path}: empty file, no header row")
    header = _unique_header(path, header)
    if text_field is not None and text_field not in header:
        raise _missing_column(path, text_field, header)
    width = len(header)

    def rows():
        number = sheet_row
        for fields in reader:
            number += 1
            if not fields:
                continue  # a blank line is not a row in CSV
            notes = []
            if len(fields) != width:
                problem = f"row {number} has {len(fields)} fields, the header has {width}"
                if strict:
                    raise InputFileError(f"{path}: {problem}")
                if len(fields) > width:
                    problem += f"; extra fields: {json.dumps(fields[width:], ensure_ascii=False)}"
                notes.append(f"malformed row: {problem}")
                fields = fields[:width] + [None] * (width - len(fields))
            yield dict(zip(header, fields)), notes, number

    return header, rows()


def _open_xlsx(path: Path, text_field: str | None, sheet: str | None) -> RowReader:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zip, XML and key errors for damaged files
        raise InputFileError(f"{path}: not a readable XLSX workbook ({type(exc).__name__}: {exc})") from exc
    if sheet is not None and sheet not in book.sheetnames:
        book.close()
        raise InputFileError(f"{path}: no sheet {sheet!r}; sheets are {book.sheetnames}")
    worksheet = book[sheet] if sheet is not None else book.worksheets[0]
    cells = worksheet.iter_rows(values_only=True)
    header_cells = next(cells, None)
    if header_cells is None or all(c is None for c in header_cells):
        book.close()
        raise InputFileError(f"{path}: sheet {worksheet.title!r} is empty, no header row")
    header = _unique_header(path, [str(c) if c is not None else f"column_{i + 1}" for i, c in enumerate(header_cells)])
    if text_field is not None and text_field not in header:
        book.close()
        raise _missing_column(path, text_field, header)
    width = len(header)
    done = [0]

    def rows():
        for values in cells:
            done[0] += 1
            if all(v is None for v in values):
                continue  # Excel reports formatted but empty rows; they hold no answer
            values = list(values[:width]) + [None] * (width - len(values))
            yield dict(zip(header, values)), [], done[0] + 1  # the header is row 1

    total = (worksheet.max_row - 1) if worksheet.max_row else None
    return RowReader(path, "xlsx", header, total, _rows=rows(), _position=lambda: done[0], _close=[book.close])


def _open_parquet(path: Path, text_field: str | None) -> RowReader:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(f"{path}: not a readable Parquet file ({exc})") from exc
    schema = parquet.schema_arrow
    columns = list(schema.names)
    if text_field is not None and text_field not in columns:
        raise _missing_column(path, text_field, columns)
    done = [0]

    def rows():
        for batch in parquet.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                done[0] += 1
                yield row, [], done[0] + 1  # numbered as a spreadsheet of the table would show it

    return RowReader(
        path, "parquet", columns, parquet.metadata.num_rows, arrow_schema=schema, _rows=rows(), _position=lambda: done[0], _close=[parquet.close]
    )
