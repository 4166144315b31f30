"""The payment provider seam: what the product asks of a card processor, in its own words.

Services call a provider only through `PaymentProvider`, so the simulator (the default for
`make run` and the tests) and the Stripe adapter are interchangeable. Amounts are integer
cents with an ISO currency; every operation carries an idempotency key, so a retry after a
timeout never charges twice. Errors are plain exceptions: the caller decides what a decline
or an outage means for its job, and no HTTP status leaks in from either side."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

AuthorizationStatus = Literal["authorized", "declined"]
PayoutStatus = Literal["in_transit", "paid", "failed"]

# The event types providers report, in the product's words (each adapter maps its own).
AUTHORIZATION_SUCCEEDED = "authorization.succeeded"
AUTHORIZATION_DECLINED = "authorization.declined"
AUTHORIZATION_CANCELED = "authorization.canceled"
CAPTURE_SUCCEEDED = "capture.succeeded"
REFUND_SUCCEEDED = "refund.succeeded"
PAYOUT_PAID = "payout.paid"
PAYOUT_FAILED = "payout.failed"
# A worker's connected account changed (data["payouts_enabled"] says whether it can be paid).
PAYOUT_ACCOUNT_UPDATED = "payout_account.updated"

# A signed webhook older (or newer) than this is refused: a captured request replayed later
# must not pass (Stripe's own tolerance).
WEBHOOK_TOLERANCE_S = 300
# Card networks keep an uncaptured online card hold for 7 days; the processor then cancels it.
AUTHORIZATION_LIFETIME = timedelta(days=7)


class PaymentError(Exception):
    """The provider could not be reached or failed on its side: the outcome is unknown, so
    the caller retries with the same idempotency key."""


class PaymentDeclined(Exception):
    """The card was refused (`code`: card_declined, insufficient_funds, expired_card, ...).
    Retrying the same card will not help."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


class PaymentRejected(Exception):
    """The provider refused the request itself (`code`: amount_too_large,
    authorization_expired, authorization_canceled, no_such_object, idempotency_key_reused):
    a bug or a stale state on our side, never worth a retry."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


class BadSignature(Exception):
    """An incoming webhook that is not provably from the provider, or too old."""


@dataclass(frozen=True)
class Authorization:
    """A hold on the payer's card: nothing is charged until a capture."""

    id: str
    status: AuthorizationStatus
    amount_cents: int
    currency: str
    expires_at: datetime | None
    decline_code: str | None = None
    # What the hold is on (a token, never a card number) and, with Stripe, the Customer it
    # is attached to, so the same card can be held again off-session (re-authorization).
    payment_method: str | None = None
    customer: str | None = None

    def require(self) -> Authorization:
        """This hold, or PaymentDeclined for a caller to whom a decline is a failure."""
        if self.status == "declined":
            raise PaymentDeclined(self.decline_code or "card_declined")
        return self


@dataclass(frozen=True)
class Capture:
    id: str
    authorization_id: str
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class Refund:
    id: str
    capture_id: str
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class Payout:
    id: str
    destination: str
    amount_cents: int
    currency: str
    status: PayoutStatus


@dataclass(frozen=True)
class PayoutAccount:
    """A worker's connected account at the provider (Stripe: an Express account)."""

    id: str
    payouts_enabled: bool


@dataclass(frozen=True)
class ProviderEvent:
    """A verified webhook: `id` is the provider's, unique, so a replay is recognised."""

    id: str
    type: str
    object_id: str
    data: Mapping[str, Any] = field(default_factory=dict)


class PaymentProvider(Protocol):
    def authorize(self, amount_cents: int, currency: str, payment_method: str,
                  idempotency_key: str, *, customer: str | None = None,
                  reusable: bool = False) -> Authorization:
        """`reusable`: keep the method for holding again later without the payer (Stripe
        attaches it to a new Customer); `customer`: hold again, off-session, on the method
        a reusable hold kept."""
        ...

    def capture(self, authorization_id: str, amount_cents: int,
                idempotency_key: str) -> Capture: ...

    def increment(self, authorization_id: str, new_amount_cents: int,
                  idempotency_key: str) -> Authorization:
        """Grow an uncaptured hold to `new_amount_cents` (the new total). A decline leaves
        the hold as it was (the answer's status says so); a stale hold is PaymentRejected."""
        ...

    def cancel(self, authorization_id: str, idempotency_key: str) -> None: ...

    def refund(self, capture_id: str, amount_cents: int, idempotency_key: str) -> Refund: ...

    def payout(self, destination: str, amount_cents: int, currency: str,
               idempotency_key: str) -> Payout: ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent: ...

    def create_payout_account(self, worker_id: int, email: str | None,
                              idempotency_key: str) -> PayoutAccount:
        """The worker's connected account, created (once per key) to receive payouts."""
        ...

    def payout_account_link(self, account_id: str, refresh_url: str,
                            return_url: str) -> str | None:
        """Where the worker goes to finish setting the account up (Stripe's hosted
        onboarding), or None when there is nothing to fill in."""
        ...


def check_amount(amount_cents: int, name: str = "amount_cents") -> None:
    """Providers take whole positive cents only: anything else is a bug in the caller."""
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise ValueError(f"{name} must be a positive whole number of cents, not {amount_cents!r}")


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """A Stripe-style signature header value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
    "<t>.<body>">`; the time is signed too, so an old request cannot be re-dated."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, now: float,
           tolerance_s: int = WEBHOOK_TOLERANCE_S) -> None:
    """Raise BadSignature unless `header` signs `body` with `secret` within the tolerance.
    Garbage headers are a mismatch, never another exception."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    stamps = parts.get("t", [])
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit() \
            or len(stamps[0]) > 12:
        raise BadSignature("no timestamp in the signature")
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance_s:
        raise BadSignature("the signature is too old")
    expected = sign(secret, body, timestamp).split(",v1=")[1]
    if not any(hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "replace"))
               for candidate in parts.get("v1", [])):
        raise BadSignature("the signature does not match")
