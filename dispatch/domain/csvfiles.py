"""Uploaded CSV files (units, batches): decoded and header-checked the same way everywhere.

Whatever a file holds, reading it ends in rows or in one refusal that names the line and the
problem (never a crash): people export CSV from many programs, and some send junk."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from dispatch.domain import messages
from dispatch.domain.errors import FieldProblem, MalformedInput, invalid

# More columns than any real sheet of units or repairs has; a header of thousands would make
# every row cost thousands of steps (a 1 MB body could name half a million columns).
MAX_COLUMNS = 100


class CsvRow(dict[str, str]):
    """A row, and the line of the file it starts on (header = line 1), which is what a
    person fixing the file needs: a quoted field may span several lines."""

    line: int


def _refused(message_id: str, line: int, **params: Any) -> MalformedInput:
    """The whole file refused, naming the line (also as `line`, for programs)."""
    text = messages.say(message_id, {"line": line, **params}, "file")
    return MalformedInput("validation_failed", text, [FieldProblem("file", text, message_id)],
                          {"line": line})


def _text(raw: bytes) -> str:
    """The file as text with every line ending as "\\n": old Mac files end lines with a lone
    CR, Windows ones with CRLF, and a file edited on both mixes them."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[:exc.start].decode("utf-8-sig", "replace")
        raise _refused("file.not_utf8", _normalized(before).count("\n") + 1) from exc
    text = _normalized(text)
    nul = text.find("\x00")
    if nul >= 0:  # a text file never holds one: this is a binary file or UTF-16
        raise _refused("file.nul", text.count("\n", 0, nul) + 1)
    return text


def _normalized(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank record with the line it starts on. Strict: an unclosed quote would
    otherwise swallow the rest of the file into one cell, silently."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise _refused("file.cell_too_long", start,
                               limit=f"{csv.field_size_limit():,}") from exc
            if "unexpected end of data" in str(exc):
                raise _refused("file.unclosed_quote", start) from exc
            raise _refused("file.unreadable", start) from exc
        if any(cell.strip() for cell in cells):
            yield start, cells


def read_rows(raw: bytes, required: Sequence[str]) -> list[CsvRow]:
    """The file's rows, each with its starting line. A file that is not UTF-8 text, is not
    well-formed CSV, lacks a required column, names a column twice or too many, has no rows,
    or has a row with more cells than columns (an unquoted comma) is refused as a whole,
    naming the line and the problem: storing part of it would store wrong data."""
    records = _records(_text(raw))
    _, header = next(records, (1, []))
    header = [name.replace("\ufeff", "").strip() for name in header]
    if len(header) > MAX_COLUMNS:
        raise _refused("file.too_many_columns", 1, found=len(header), limit=MAX_COLUMNS)
    twice = sorted(name for name, n in Counter(header).items() if name and n > 1)
    if twice:
        raise _refused("file.duplicate_column", 1, name=twice[0])
    missing = [c for c in required if c not in header]
    if missing:
        raise invalid("file", "file.missing_columns", MalformedInput,
                      columns=", ".join(missing))
    rows: list[CsvRow] = []
    for line, cells in records:
        named = {name: cell for name, cell in zip(header, cells, strict=False) if name}
        unnamed = cells[len(header):] + [cell for name, cell in zip(header, cells, strict=False)
                                         if not name]
        if any(cell.strip() for cell in unnamed):
            raise _refused("file.extra_cells", line, found=len(cells), columns=len(header))
        row = CsvRow({name: named.get(name, "") for name in header if name})
        row.line = line
        rows.append(row)
    if not rows:
        raise invalid("file", "file.no_rows", MalformedInput)
    return rows


# A cell a spreadsheet would run as a formula (=, +, -, @, or a tab or carriage return before
# one): what a tenant or a manager typed must come out as text, never as code.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(row: Sequence[object]) -> list[object]:
    """A row for an exported CSV: numbers as they are, text that a spreadsheet would read as a
    formula prefixed with an apostrophe (OWASP's CSV injection advice), so it shows as typed."""
    return [f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_START) else cell
            for cell in row]

