"""Money as plain integers: an amount is a whole number of minor units (cents) beside an ISO
4217 currency code, never a float and never a `Money` object, so SQL, JSON and arithmetic all
see the same thing.

The ledger's vocabulary lives here too, in one place: the kinds of accounts, the kinds of
transactions, and which accounts may never go below zero. The schema's CHECK constraints,
`dispatch.services.ledger` and `flask ledger check` all read these.

Sign convention of ledger entries: a positive `amount_cents` adds to the account's balance,
a negative one takes from it, and every transaction's entries sum to zero per currency. The
payer's funding account is the outside world's side of the books: it goes negative by what
payers put in, and it is the only kind that may."""

from __future__ import annotations

from enum import StrEnum

from dispatch.domain.errors import DomainError, invalid
from dispatch.domain.states import JobStatus

# ISO 4217 minor units per major unit; only currencies the platform may be configured with.
MINOR_UNITS: dict[str, int] = {"USD": 100, "EUR": 100, "GBP": 100, "CAD": 100, "AUD": 100,
                              "JPY": 1}
SYMBOLS: dict[str, str] = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$",
                           "JPY": "¥"}
DEFAULT_CURRENCY = "USD"


class AccountKind(StrEnum):
    """Whose money an account holds. The owner column each kind needs is in `ACCOUNT_OWNER`."""

    PAYER_FUNDING = "payer_funding"            # a resident's or organization's card side
    ESCROW = "escrow"                          # held for one job
    WORKER_BALANCE = "worker_balance"          # earned, not yet paid out
    PLATFORM_FEES = "platform_fees"            # the platform's cut
    REFUNDS = "refunds"                        # given back to a payer
    PAYOUTS_IN_TRANSIT = "payouts_in_transit"  # sent to a worker's bank, not yet settled


class Owner(StrEnum):
    """Which owner column identifies an account of a kind (one of them, or none)."""

    JOB = "job_id"
    USER = "user_id"
    PAYER = "payer"  # a user (resident) or an organization, exactly one
    PLATFORM = "platform"  # one account per currency


ACCOUNT_OWNER: dict[AccountKind, Owner] = {
    AccountKind.PAYER_FUNDING: Owner.PAYER,
    AccountKind.ESCROW: Owner.JOB,
    AccountKind.WORKER_BALANCE: Owner.USER,
    AccountKind.PLATFORM_FEES: Owner.PLATFORM,
    AccountKind.REFUNDS: Owner.PAYER,
    AccountKind.PAYOUTS_IN_TRANSIT: Owner.USER,
}

# Only the outside world's side may go negative: every other account holds money that exists.
NEVER_NEGATIVE: frozenset[AccountKind] = frozenset(set(AccountKind) - {AccountKind.PAYER_FUNDING})


class TransactionKind(StrEnum):
    HOLD = "hold"                      # payer funding -> escrow
    CAPTURE = "capture"                # the provider took the held money (bookkeeping only)
    RELEASE = "release"                # escrow -> worker balance (+ platform fees)
    FEE = "fee"                        # a cancellation or instant-payout fee
    REFUND = "refund"                  # escrow -> refunds
    PAYOUT = "payout"                  # worker balance -> payouts in transit
    PAYOUT_FAILED = "payout_failed"    # payouts in transit -> worker balance
    ADJUSTMENT = "adjustment"          # a correction an operator makes, said in the memo


class PayoutKind(StrEnum):
    WEEKLY = "weekly"    # the whole balance, on the weekly run
    INSTANT = "instant"  # on demand, above a minimum, for a fee


class LineItemKind(StrEnum):
    """The lines of a job's invoice (`job_line_items`): the server writes the call-out fee,
    the urgent surcharge and the labour from the category's price list; parts are the
    worker's, as entered."""

    CALL_OUT = "call_out"
    LABOUR = "labour"  # quantity: minutes on site
    PARTS = "parts"
    SURCHARGE = "surcharge"


# A job in one of these owes nobody anything: its escrow must be empty.
ESCROW_EMPTY_JOB_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.CLOSED, JobStatus.CANCELLED, JobStatus.UNFILLED})


def check_amount(value: object, field: str, positive: bool = True) -> int:
    """An amount in cents from outside, or the refusal naming `field`: a whole number (not a
    float, a string or a bool), above zero when `positive`, else zero or more."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, "amount.not_whole")
    if positive and value <= 0:
        raise invalid(field, "amount.not_positive")
    if value < 0:
        raise invalid(field, "amount.negative")
    return value


def check_currency(value: object, field: str, expected: str) -> str:
    """The platform takes one currency (settings `CURRENCY`); anything else names `field`."""
    if not isinstance(value, str) or value.upper() != expected:
        raise invalid(field, "currency.other", expected=expected)
    return expected


def format_cents(cents: int, currency: str = DEFAULT_CURRENCY, whole: bool = False) -> str:
    """`format_cents(1250, "USD")` -> "$12.50", a negative amount as "-$12.50";
    `whole=True` drops ".00" from whole amounts ("$95"), as estimates are shown. The pages'
    JS does the same with Intl.NumberFormat (static/js/common.js `formatCents`)."""
    code = currency.upper()
    per = MINOR_UNITS.get(code, 100)
    sign = "-" if cents < 0 else ""
    units, minor = divmod(abs(cents), per)
    symbol = SYMBOLS.get(code)
    if per == 1 or (whole and minor == 0):  # JPY has no minor units
        number = f"{units:,}"
    else:
        number = f"{units:,}.{minor:0{len(str(per - 1))}d}"
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{code} {number}"


def unbalanced() -> DomainError:
    return invalid("entries", "ledger.unbalanced")
