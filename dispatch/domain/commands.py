"""What callers ask the domain to do, as validated commands: the same command whether it
came from the JSON API, a page's form, a CSV row or the command line. Unknown fields are
refused (a typo must not be silently ignored), and text with NUL characters, which PostgreSQL
cannot store, is refused by name."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from dispatch.domain.phones import normalize_phone

Lat = Annotated[float, Field(ge=-90, le=90, description="WGS84 latitude in degrees")]
Lng = Annotated[float, Field(ge=-180, le=180, description="WGS84 longitude in degrees")]
INT4_MAX = 2_147_483_647
# Ids of int4 columns: anything larger could never match and must not reach the database.
Id = Annotated[int, Field(ge=1, le=INT4_MAX)]
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
Locale = Literal["en", "zh-CN"]
ClockTime = Annotated[str, Field(pattern=r"^\d{1,2}:\d{2}$", examples=["09:00"],
                                 description="HH:MM, 24-hour clock")]
Password = Annotated[str, Field(min_length=10, max_length=128)]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise PydanticCustomError("text.nul", "must not contain NUL characters")
        return value


class RegisterIn(Command):
    email: Annotated[str, Field(max_length=254)]
    password: Annotated[str, Field(min_length=10, max_length=128)]
    name: Annotated[str, Field(min_length=1, max_length=120)]
    phone: Annotated[str, Field(description="E.164, or national format in the default region")]
    role: Literal["resident", "worker", "property_manager"]
    locale: Locale = "en"

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not EMAIL.match(value):
            raise PydanticCustomError("email.invalid", "is not an email address")
        return value.lower()

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return normalize_phone(value)

class WeeklyHoursIn(Command):
    """One stretch of the week when the worker is usually available (service time zone)."""

    day: Annotated[int, Field(ge=0, le=6, description="0 is Monday, 6 is Sunday")]
    start: ClockTime
    end: ClockTime

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        return _padded(value)

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: str, info: Any) -> str:
        value = _padded(value)
        start = info.data.get("start")
        if start is not None and value <= start:
            raise ValueError("must be after the start")
        return value


def _padded(clock_time: str) -> str:
    """"9:00" as "09:00": stored times sort and compare as text."""
    hours, minutes = (int(part) for part in clock_time.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(f"'{clock_time}' is not a time of day")
    return f"{hours:02d}:{minutes:02d}"


class WorkerProfileIn(Command):
    travel_mode: Literal["walk", "bike", "car"] | None = None
    service_radius_m: Annotated[int | None, Field(ge=100, le=200_000)] = None
    weekly_hours: Annotated[list[WeeklyHoursIn] | None, Field(max_length=28)] = None


class AccountIn(Command):
    """The caller's own account details; fields left out stay as they are."""

    name: Annotated[str | None, Field(min_length=1, max_length=120)] = None
    phone: Annotated[str | None, Field(description="E.164, or national format")] = None
    locale: Locale | None = None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalize_phone(value) if value is not None else None


class PasswordChangeIn(Command):
    current_password: Annotated[str, Field(max_length=128)]
    new_password: Password


class PasswordResetRequestIn(Command):
    email: Annotated[str, Field(max_length=254)]


class PasswordResetIn(Command):
    token: Annotated[str, Field(min_length=1, max_length=500)]
    new_password: Password

class LocationIn(Command):
    lat: Lat
    lng: Lng
    accuracy_m: Annotated[float | None, Field(ge=0, le=10_000)] = None
    heading: Annotated[float | None, Field(ge=0, le=360, description="degrees from north")] = None
    speed_mps: Annotated[float | None, Field(ge=0, le=100)] = None
    recorded_at: datetime | None = Field(None, description="when the device took the fix")

class WindowIn(Command):
    """A booked arrival window, wall clock in the service's time zone (e.g. 09:00 to 12:00
    on 2026-12-04 in America/Los_Angeles)."""

    date: date
    start: ClockTime
    end: ClockTime


class JobIn(Command):
    """Where: `lat`/`lng` (and an optional address), or, for a property manager, `unit_id`
    (the unit's place and address are used). When: as soon as possible (no `window`), or
    within a booked `window`."""

    category_id: Id
    description: Annotated[str, Field(min_length=3, max_length=2000)]
    lat: Lat | None = None
    lng: Lng | None = None
    address: Annotated[str | None, Field(max_length=300)] = None
    unit_id: Id | None = None
    pin_confirmed: bool = Field(False, description="the pin is right even where the address "
                                "seems elsewhere (the answer to an `address_unconfirmed` 422)")
    window: WindowIn | None = Field(None, description="book for later instead of now")

class OrganizationIn(Command):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    allow_marketplace: bool = True

class OrganizationPatch(Command):
    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    allow_marketplace: bool | None = None
    webhook_url: Annotated[str | None, Field(
        max_length=500, description="where job state changes are POSTed; '' turns it off")] = None

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://[^\s/$.?#][^\s]*$", value):
            raise PydanticCustomError("webhook_url.invalid", "must be an http(s) URL")
        return value

class PropertyIn(Command):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    address: Annotated[str | None, Field(max_length=300)] = None

class UnitIn(Command):
    property_id: Id
    label: Annotated[str, Field(min_length=1, max_length=100)]
    address: Annotated[str, Field(min_length=3, max_length=300)]
    lat: Lat
    lng: Lng
    access_notes: Annotated[str | None, Field(max_length=2000)] = None
    tenant_name: Annotated[str | None, Field(max_length=120)] = None
    tenant_phone: str | None = None

    @field_validator("tenant_phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalize_phone(value) if value else None


class InvitationIn(Command):
    contact: Annotated[str, Field(min_length=1, max_length=254, description=(
        "the worker's e-mail address or mobile phone number (E.164, or national format in "
        "the default region)"))]

    @field_validator("contact")
    @classmethod
    def _contact(cls, value: str) -> str:
        if "@" in value:
            if not EMAIL.match(value):
                raise PydanticCustomError("contact.invalid", "is not an e-mail address")
            return value.lower()
        try:
            return normalize_phone(value)
        except ValueError as exc:
            raise PydanticCustomError("contact.invalid",
                                      "is neither an e-mail address nor a phone number") from exc


CantMakeItReason = Literal["vehicle_trouble", "illness", "emergency", "running_late", "other"]
# The words the worker's phone shows for each reason, in the list's order.
CANT_MAKE_IT_LABELS: dict[str, str] = {
    "vehicle_trouble": "My vehicle broke down", "illness": "I am ill",
    "emergency": "A personal emergency", "running_late": "I am held up too long elsewhere",
    "other": "Something else (say what)",
}


class CantMakeItIn(Command):
    """Why a worker cannot make it to a job they accepted (recorded against them)."""

    reason: CantMakeItReason
    note: Annotated[str | None, Field(max_length=500, description=(
        "a few words; required when the reason is `other`"))] = None


class GiveBackIn(Command):
    reason: Annotated[str | None, Field(max_length=500)] = None
