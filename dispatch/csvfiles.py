"""Uploaded CSV files (units, batches): decoded and header-checked the same way everywhere."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from dispatch.errors import invalid


def read_rows(raw: bytes, required: Sequence[str]) -> list[dict[str, str]]:
    """The file's rows as dicts (line n+2 is row n: the header is line 1). A file that is
    not UTF-8 or lacks a required column is refused as a whole, naming the problem."""
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        header = reader.fieldnames or []
    except UnicodeDecodeError as exc:
        raise invalid("file", "must be UTF-8 text", status=400) from exc
    missing = [c for c in required if c not in header]
    if missing:
        raise invalid("file", f"header lacks the column(s): {', '.join(missing)}", status=400)
    try:
        return [dict(row) for row in reader]
    except csv.Error as exc:  # e.g. a field beyond the csv module's size limit
        raise invalid("file", f"cannot be read as CSV: {exc}", status=400) from exc
