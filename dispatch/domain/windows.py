"""Arrival windows as property managers write them: "tomorrow 09:00-12:00",
"2026-12-01 13:00-17:00", "today 14:00-16:00". Times are wall-clock in the service
area's time zone (a manager in San Francisco means 9 a.m. there, whatever the server's
zone), so "tomorrow" is tomorrow there too."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MIN_WINDOW = timedelta(minutes=30)
MAX_WINDOW = timedelta(hours=12)
MAX_AHEAD = timedelta(days=60)

_FORM = re.compile(
    r"^\s*(?P<day>today|tomorrow|\d{4}-\d{2}-\d{2})\s+"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$", re.IGNORECASE)
EXAMPLE = "tomorrow 09:00-12:00"


class WindowError(ValueError):
    """The text names no usable window; the message says why, for the row's error, and
    `field` which part of a window given in parts (date, start, end) is wrong."""

    def __init__(self, message: str, field: str = "window") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def _clock(text: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise WindowError(f"'{text}' is not a time of day")
    return time(0, minutes) if hours == 24 else time(hours, minutes)


def parse_window(text: str, now: datetime, tz: str, min_lead: timedelta) -> Window:
    """The window `text` names, as aware datetimes. A window may already be open, but must
    end at least `min_lead` from now (sooner than that is an urgent request)."""
    found = _FORM.match(text)
    if found is None:
        raise WindowError(f"'urgent' or a window such as '{EXAMPLE}'")
    zone = ZoneInfo(tz)
    today = now.astimezone(zone).date()
    word = found.group("day").lower()
    if word == "today":
        day = today
    elif word == "tomorrow":
        day = today + timedelta(days=1)
    else:
        try:
            day = date.fromisoformat(word)
        except ValueError as exc:
            raise WindowError(f"'{word}' is not a date") from exc
    return window_on(day, found.group("start"), found.group("end"), now, tz, min_lead)


def window_on(day: date, start_text: str, end_text: str, now: datetime, tz: str,
              min_lead: timedelta) -> Window:
    """The window from `start_text` to `end_text` ("HH:MM", wall clock in `tz`) on `day`."""
    zone = ZoneInfo(tz)
    try:
        start_clock = _clock(start_text)
    except WindowError as exc:
        raise WindowError(str(exc), "start") from exc
    try:
        end_clock = _clock(end_text)
    except WindowError as exc:
        raise WindowError(str(exc), "end") from exc
    end_day = day + timedelta(days=1) if end_text in ("24:00",) else day
    start = datetime.combine(day, start_clock, zone)
    end = datetime.combine(end_day, end_clock, zone)
    # Wall-clock arithmetic in a zone with DST: compare in UTC.
    length = end.astimezone(ZoneInfo("UTC")) - start.astimezone(ZoneInfo("UTC"))
    if length <= timedelta(0):
        raise WindowError("the window ends before it starts (it must end at least 30 "
                          "minutes after it starts)", "end")
    if length < MIN_WINDOW:
        raise WindowError("the window must end at least 30 minutes after it starts", "end")
    if length > MAX_WINDOW:
        raise WindowError("a window is at most 12 hours long", "end")
    if end <= now:
        raise WindowError("this window is already over", "date")
    if end < now + min_lead:
        raise WindowError("this window ends too soon to schedule; send it as 'urgent'", "end")
    if start > now + MAX_AHEAD:
        raise WindowError("windows can be booked at most 60 days ahead", "date")
    return Window(start, end)
