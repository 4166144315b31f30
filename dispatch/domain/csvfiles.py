"""Uploaded CSV files (units, batches): decoded and header-checked the same way everywhere."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from dispatch.domain.errors import MalformedInput, invalid


class CsvRow(dict[str, str]):
    """A row, and the line of the file it starts on (header = line 1), which is what a
    person fixing the file needs: a quoted field may span several lines."""

    line: int


def read_rows(raw: bytes, required: Sequence[str]) -> list[CsvRow]:
    """The file's rows, each with its starting line. A file that is not UTF-8 or lacks a
    required column is refused as a whole, naming the problem."""
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        header = reader.fieldnames or []
    except UnicodeDecodeError as exc:
        raise invalid("file", "file.not_utf8", MalformedInput) from exc
    missing = [c for c in required if c not in header]
    if missing:
        raise invalid("file", "file.missing_columns", MalformedInput,
                      columns=", ".join(missing))
    rows: list[CsvRow] = []
    try:
        for found in reader:
            row = CsvRow(found)
            # line_num is the row's last line; quoted newlines say how many it spans.
            spans = sum(v.count("\n") for v in found.values() if isinstance(v, str))
            row.line = reader.line_num - spans
            rows.append(row)
        return rows
    except csv.Error as exc:  # e.g. a field beyond the csv module's size limit
        raise invalid("file", "file.unreadable", MalformedInput) from exc


# A cell a spreadsheet would run as a formula (=, +, -, @, or a tab or carriage return before
# one): what a tenant or a manager typed must come out as text, never as code.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(row: Sequence[object]) -> list[object]:
    """A row for an exported CSV: numbers as they are, text that a spreadsheet would read as a
    formula prefixed with an apostrophe (OWASP's CSV injection advice), so it shows as typed."""
    return [f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_START) else cell
            for cell in row]

