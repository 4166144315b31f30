"""What callers ask the domain to do, as validated commands: the same command whether it
came from the JSON API, a page's form, a CSV row or the command line. Unknown fields are
refused (a typo must not be silently ignored), and so is text PostgreSQL cannot store (NUL) or
that reads unlike what it is (control characters, direction overrides), by name."""

from __future__ import annotations

import re
import types
from datetime import date, datetime
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from zxcvbn import zxcvbn

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
PASSWORD_MAX_LENGTH = 128
# zxcvbn's score (0-4): 2 and up resists guessing online, which is all a password here
# meets (logins are rate limited and every check is an scrypt). Below it are the common
# passwords, keyboard runs, repeats, dates and words with digits tacked on
# ("1234567890", "password12").
MIN_PASSWORD_SCORE = 2


def too_easy_to_guess(password: str) -> str | None:
    """Why a password is too easy to guess (a sentence), or None. zxcvbn estimates the
    guesses an attacker with lists of common and leaked passwords, words and patterns
    needs; the lists ship in the package (no network)."""
    verdict = zxcvbn(password, max_length=PASSWORD_MAX_LENGTH)
    if verdict["score"] >= MIN_PASSWORD_SCORE:
        return None
    return str(verdict["feedback"]["warning"] or "It follows a pattern that is easy to guess.")


def _hard_to_guess(value: str) -> str:
    reason = too_easy_to_guess(value)
    if reason:
        raise PydanticCustomError("password.weak", "is too easy to guess", {"reason": reason})
    return value


Password = Annotated[str, Field(min_length=10, max_length=PASSWORD_MAX_LENGTH),
                     AfterValidator(_hard_to_guess)]


FROM_TEXT = {"from_text": True}
"""Validation context for commands read from text (CSV cells), where "37.7" is a number."""


class MultiLine:
    """Marks a text field where line breaks and tabs belong (a description, notes); every
    other text field is one line."""


MULTI_LINE = MultiLine()
# Text that looks like a word but is not one: characters that reorder how the rest reads
# (a name shown as "exe.gnp" to spoof a file), and the zero-width ones that hide inside it.
_HIDDEN = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\ufeff")
_LINE_BREAKS = frozenset("\t\n\r")


def text_problem(value: str, multi_line: bool = False) -> str | None:
    """Why `value` cannot be stored and shown as text (a message id), or None when it can.
    PostgreSQL refuses NUL and lone surrogates cannot be encoded (a 500 either way, later);
    other control characters and direction overrides make text that reads unlike what it
    is, in a name, an address, a text to a tenant or a spreadsheet cell."""
    if "\x00" in value:
        return "text.nul"
    for char in value:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            return "text.unreadable"
        if char in _LINE_BREAKS:
            if not multi_line:
                return "text.one_line"
        elif code < 0x20 or 0x7F <= code < 0xA0 or char in _HIDDEN:
            return "text.control"
    return None


class Command(BaseModel):
    """Numbers and yes/no fields take JSON numbers and booleans only: pydantic's lax mode
    would read `true` as latitude 1.0 and "12" as id 12. Text sources (CSV) pass
    `context=FROM_TEXT` to have their cells read as numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _typed_as_meant(cls, value: object, info: ValidationInfo) -> object:
        wanted = _scalars(cls.model_fields[info.field_name].annotation)
        if wanted:
            from_text = bool((info.context or {}).get("from_text"))
            items = value if isinstance(value, list) and wanted.many else [value]
            for item in items:
                _check_scalar(item, wanted.types, from_text)
        return value

    @field_validator("*")
    @classmethod
    def _plain_text(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            field = cls.model_fields.get(info.field_name or "")
            multi_line = field is not None and MULTI_LINE in field.metadata
            message_id = text_problem(value, multi_line)
            if message_id:
                raise PydanticCustomError(message_id, "is not plain text")
        return value


def refuse_unplain_text(value: object) -> object:
    """One-line text that cannot be stored and shown as text (NUL, control characters,
    direction overrides), refused by name: for fields outside a `Command`."""
    if isinstance(value, str):
        message_id = text_problem(value)
        if message_id:
            raise PydanticCustomError(message_id, "is not plain text")
    return value


class _Scalars:
    def __init__(self, types_: frozenset[type], many: bool) -> None:
        self.types, self.many = types_, many

    def __bool__(self) -> bool:
        return bool(self.types)


@cache
def _scalars(annotation: Any) -> _Scalars:
    """The JSON scalar types (bool, int, float) a field is declared as, looking through
    `Optional`, `Annotated` and `list[...]`; empty for anything else."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalars(get_args(annotation)[0])
    if origin is list:
        inner = _scalars(get_args(annotation)[0])
        return _Scalars(inner.types, True)
    if origin in (Union, types.UnionType):
        parts = [_scalars(a) for a in get_args(annotation) if a is not type(None)]
        if all(p.types and not p.many for p in parts):
            return _Scalars(frozenset().union(*(p.types for p in parts)), False)
        return _Scalars(frozenset(), False)
    if annotation in (bool, int, float):
        return _Scalars(frozenset({annotation}), False)
    return _Scalars(frozenset(), False)


def _check_scalar(item: object, wanted: frozenset[type], from_text: bool) -> None:
    if item is None or (from_text and isinstance(item, str)):
        return
    if bool in wanted:
        if not isinstance(item, bool):
            raise PydanticCustomError("choice.yes_no", "must be true or false")
    elif isinstance(item, bool) or not isinstance(item, int | float):
        if int in wanted and float not in wanted:
            raise PydanticCustomError("number.whole", "must be a whole number")
        raise PydanticCustomError("number.expected", "must be a number")


class RegisterIn(Command):
    email: Annotated[str, Field(max_length=254)]
    password: Password
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


# What Twilio Verify texts: 4 to 10 digits (6 by default).
Code = Annotated[str, Field(pattern=r"^[0-9]{4,10}$", examples=["123456"],
                            description="The code texted to the phone")]


class PhoneCodeIn(Command):
    """The code texted to the caller's own phone."""

    code: Code


class SignupConfirmIn(Command):
    """The ticket a sign-up was answered with and the code texted to its phone: this creates
    the account."""

    ticket: Annotated[str, Field(min_length=1, max_length=100,
                                 description="`ticket` from the sign-up's answer")]
    code: Code


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


# A job paid in stages has at least two and at most this many.
MAX_MILESTONES = 10


class MilestoneIn(Command):
    """One stage of a job paid in stages: what it is and what it costs."""

    title: Annotated[str, Field(min_length=1, max_length=200)]
    amount_cents: Annotated[int, Field(ge=1, le=10_000_000, description="what this stage "
                                       "costs, in minor units of the service's currency")]


class JobIn(Command):
    """Where: `lat`/`lng` (and an optional address), or, for a property manager, `unit_id`
    (the unit's place and address are used). When: as soon as possible (no `window`), or
    within a booked `window`."""

    category_id: Id
    description: Annotated[str, Field(min_length=3, max_length=2000), MULTI_LINE]
    lat: Lat | None = None
    lng: Lng | None = None
    address: Annotated[str | None, Field(max_length=300)] = None
    unit_id: Id | None = None
    pin_confirmed: bool = Field(False, description="the pin is right even where the address "
                                "seems elsewhere (the answer to an `address_unconfirmed` 422)")
    window: WindowIn | None = Field(None, description="book for later instead of now")
    payment_method: Annotated[str | None, Field(
        None, min_length=1, max_length=255,
        description="what the job's price is held on until the work is confirmed: a payment "
        "provider's payment-method token (with Stripe, from Stripe Elements; required) or, "
        "with the simulated provider, one of Stripe's documented test cards (a number such "
        "as 4242424242424242, or a token such as pm_card_visa; 4000000000000002 is "
        "declined). Left out with the simulated provider, `pm_card_visa` (always "
        "succeeds) is used.")] = None
    milestones: Annotated[list[MilestoneIn] | None, Field(
        None, min_length=2, max_length=MAX_MILESTONES,
        description="pay in stages (a job of several visits, or a long one): each stage is "
        "held on its own, the first at booking, the next when the one before is released "
        "on its own confirmation, instead of one hold for the estimate")] = None

class OrganizationIn(Command):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    allow_marketplace: bool = True

class OrganizationPatch(Command):
    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    allow_marketplace: bool | None = None
    webhook_url: Annotated[str | None, Field(
        max_length=500, description=(
            "where the organization's job events are POSTed; '' turns it off. Each POST is "
            "one JSON event named by its `event` (also the X-Dispatch-Event header), with "
            "job_id, unit_id, batch_id and at: `job.status_changed` (from, to) on each job "
            "state change; for the organization's payments, with payment_status, currency, "
            "held_cents, charged_cents and refunded_cents: `payment.held` (the hold placed "
            "at booking), `payment.captured` (the hold ended with a charge: charged_cents, "
            "refunded_cents the rest given back), `payment.refunded` (the part of a hold "
            "given back after a charge), `payment.voided` (the whole hold given back, "
            "nothing charged), `payment.expired` (the hold lapsed at the provider, nothing "
            "charged); for the organization's invoices, with invoice_id, number, status, "
            "previous, amount_cents and currency: `invoice.<status>` each time an invoice "
            "takes a status (`invoice.hold` when opened with the hold, then "
            "`invoice.in_review`, `invoice.approved`, `invoice.declined`, `invoice.paid` or "
            "`invoice.void`)"))] = None

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
    access_notes: Annotated[str | None, Field(max_length=2000), MULTI_LINE] = None
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


Cents = Annotated[int | None, Field(ge=0, le=INT4_MAX, description="integer minor units; "
                                    "null: not set here (inherited)")]


class LimitsIn(Command):
    """Approval limits of one scope. Each kind's soft and hard limit are set together (or
    both null: inherit the pair from the scope above); soft may not exceed hard."""

    emergency_soft_cents: Cents = None
    emergency_hard_cents: Cents = None
    routine_soft_cents: Cents = None
    routine_hard_cents: Cents = None


class DecisionIn(Command):
    reason: Annotated[str | None, Field(max_length=500, description=(
        "why: required to decline"))] = None


# The completion form's bounds: a job's parts fit on one screen, and an amount fits a column.
MAX_PARTS = 20
MAX_LINE_CHARS = 200
MAX_MINUTES = 24 * 60
MAX_LINE_CENTS = 10_000_000


class PartIn(Command):
    description: Annotated[str, Field(min_length=1, max_length=MAX_LINE_CHARS)]
    amount_cents: Annotated[int, Field(ge=1, le=MAX_LINE_CENTS,
                                       description="what the part cost the payer, minor units")]


class CompleteIn(Command):
    """The worker's completion form: time on site and parts. The server prices the rest
    (call-out fee, urgent surcharge, labour = minutes x hourly rate) from the category."""

    minutes: Annotated[int, Field(ge=0, le=MAX_MINUTES, description="time on site")]
    hourly_rate_cents: Annotated[int | None, Field(
        ge=1, le=MAX_LINE_CENTS, description="the labour rate; default the category's low "
        "rate, and within the category's range")] = None
    parts: Annotated[list[PartIn], Field(max_length=MAX_PARTS)] = []
    note: Annotated[str | None, Field(max_length=500)] = None


class FinalAmountDecisionIn(Command):
    """The payer's word on a final amount above the hold plus the tolerance."""

    approve: bool
    reason: Annotated[str | None, Field(max_length=500, description=(
        "why: required to decline"))] = None
