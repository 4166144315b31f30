"""URL converters. Werkzeug's `int` matches `\\d+`, which in Python's regular expressions
takes digits of every script, and `int()` then reads them: `/jobs/` and Arabic-Indic or
full-width one would address job 1. One spelling per id keeps caches, logs and
rate limits honest, so ids are ASCII digits only."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import BaseConverter, IntegerConverter, Map


class AsciiIntegerConverter(IntegerConverter):
    """`int` with the same `min`/`max`/`fixed_digits` arguments, ASCII digits only."""

    regex = r"[0-9]+"


class IdConverter(BaseConverter):
    """A path id: any run of ASCII digits matches, and the view refuses one outside the
    column's range with a 404 naming it (`routing.ApiRegistry`). Werkzeug's `int(max=)`
    refuses it while matching instead, and then answers 405 wherever the same path has a
    route for another method (`DELETE /units/99999999999999999999` said "method not
    allowed")."""

    regex = r"[0-9]+"
    part_isolating = True

    def __init__(self, url_map: Map, min: int = 1, max: int | None = None) -> None:
        super().__init__(url_map)
        self.min, self.max = min, max

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))
