"""One injectable clock: every service asks it for the time, so a simulation can run a day
in minutes and tests can step past an offer's expiry without sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_source: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    return _source()


def set_source(source: Callable[[], datetime]) -> Callable[[], datetime]:
    """Replace the clock; returns the previous source so callers can restore it."""
    global _source
    previous, _source = _source, source
    return previous
