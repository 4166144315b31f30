"""URL converters. Werkzeug's `int` matches `\\d+`, which in Python's regular expressions
takes digits of every script, and `int()` then reads them: `/jobs/` and Arabic-Indic or
full-width one would address job 1. One spelling per id keeps caches, logs and
rate limits honest, so ids are ASCII digits only."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter


class AsciiIntegerConverter(IntegerConverter):
    """`int` with the same `min`/`max`/`fixed_digits` arguments, ASCII digits only."""

    regex = r"[0-9]+"
