"""Monthly statements for organizations: what each of the organization's jobs held, charged
and gave back in a month, per job, with totals, for its books (as JSON or CSV).

Which jobs: those whose money moved in the month, in the service's time zone (the same
month bounds as the SLA report, `reports.month_range`): the hold placed at booking, or the
hold ended (captured, voided, expired). Each amount belongs to the month it moved in: the
hold to the month it was placed, the charge and what was given back to the month the hold
ended. A job held on the 30th and confirmed on the 2nd is on both statements, its hold on
the first and its charge on the second, so months add up and nothing is counted twice.

The amounts are `job_payments`' (the provider's side, which the ledger mirrors one keyed
transaction each); whether a charge was a cancellation fee is the ledger's (the kind of the
job's `settle:job:<id>` transaction). Each row names the job's invoice (number and status
now): a job whose final amount waits for a manager is on the statement as held, its invoice
`in_review`.

A job paid in stages (`job_milestones`) has one row per stage, with the same columns and
rules: a stage's hold belongs to the month it was placed (`held_at`), its charge and what
was given back to the month it ended (released, or cancelled with the job); its payment
status is said like a whole job's (held until it ends, then released, or voided when
nothing was captured), and a cancellation fee is the ledger's kind of the stage's
`settle:milestone:<id>` transaction. The totals count jobs, not rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from dispatch.db.models import User
from dispatch.domain.csvfiles import spreadsheet_safe
from dispatch.domain.money import MINOR_UNITS, TransactionKind
from dispatch.services.portfolio import organization_of, own_property

_IN_MONTH = "({col} >= :start AND {col} < :end)"
_HELD_IN = _IN_MONTH.format(col="jp.created_at")
_ENDED_IN = _IN_MONTH.format(col="jp.settled_at")

_STAGE_HELD_IN = _IN_MONTH.format(col="m.held_at")
_STAGE_ENDED_IN = _IN_MONTH.format(col="COALESCE(m.released_at, m.cancelled_at)")

# What both kinds of row (a whole job's hold, a stage's) name about the job: its category,
# place and invoice.
_JOB_JOINS = """  JOIN categories c ON c.id = j.category_id
  LEFT JOIN units u ON u.id = j.unit_id
  LEFT JOIN properties p ON p.id = u.property_id
  LEFT JOIN invoices i ON i.job_id = j.id"""

_ROWS_SQL = text(f"""
SELECT j.id AS job_id, i.number AS invoice_number, i.status AS invoice_status,
       (CASE WHEN {_ENDED_IN} THEN jp.settled_at ELSE jp.created_at END
            AT TIME ZONE :tz)::date AS day,
       p.id AS property_id, p.name AS property, u.label AS unit, c.name AS category,
       j.urgency, j.status, jp.status AS payment_status, jp.currency,
       CASE WHEN {_HELD_IN} THEN jp.held_cents ELSE 0 END AS held_cents,
       CASE WHEN {_ENDED_IN} THEN jp.captured_cents ELSE 0 END AS charged_cents,
       CASE WHEN {_ENDED_IN} THEN jp.refunded_cents ELSE 0 END AS refunded_cents,
       CASE WHEN {_ENDED_IN} AND t.kind = '{TransactionKind.FEE.value}'
            THEN jp.captured_cents ELSE 0 END AS cancellation_fee_cents
  FROM job_payments jp
  JOIN jobs j ON j.id = jp.job_id
{_JOB_JOINS}
  LEFT JOIN ledger_transactions t ON t.idempotency_key = 'settle:job:' || j.id
 WHERE jp.payer_organization_id = :org AND ({_HELD_IN} OR {_ENDED_IN})
   AND (CAST(:property AS integer) IS NULL OR p.id = CAST(:property AS integer))
UNION ALL
SELECT j.id AS job_id, i.number AS invoice_number, i.status AS invoice_status,
       (CASE WHEN {_STAGE_ENDED_IN} THEN COALESCE(m.released_at, m.cancelled_at)
             ELSE m.held_at END AT TIME ZONE :tz)::date AS day,
       p.id AS property_id, p.name AS property, u.label AS unit, c.name AS category,
       j.urgency, j.status,
       CASE WHEN m.released_at IS NULL AND m.cancelled_at IS NULL THEN 'held'
            WHEN m.captured_cents > 0 THEN 'released' ELSE 'voided' END AS payment_status,
       m.currency,
       CASE WHEN {_STAGE_HELD_IN} THEN m.amount_cents ELSE 0 END AS held_cents,
       CASE WHEN {_STAGE_ENDED_IN} THEN m.captured_cents ELSE 0 END AS charged_cents,
       CASE WHEN {_STAGE_ENDED_IN} THEN m.amount_cents - m.captured_cents ELSE 0 END
           AS refunded_cents,
       CASE WHEN {_STAGE_ENDED_IN} AND t.kind = '{TransactionKind.FEE.value}'
            THEN m.captured_cents ELSE 0 END AS cancellation_fee_cents
  FROM job_milestones m
  JOIN jobs j ON j.id = m.job_id
{_JOB_JOINS}
  LEFT JOIN ledger_transactions t ON t.idempotency_key = 'settle:milestone:' || m.id
       || CASE WHEN m.hold_attempts > 1 THEN ':' || m.hold_attempts ELSE '' END
 WHERE j.org_id = :org AND m.held_at IS NOT NULL
   AND ({_STAGE_HELD_IN} OR {_STAGE_ENDED_IN})
   AND (CAST(:property AS integer) IS NULL OR p.id = CAST(:property AS integer))
 ORDER BY day, job_id
""")


@dataclass(frozen=True)
class StatementRow:
    """One job's money in the month, in minor units (0 when that part did not move in it).
    `charged_cents` is everything captured; `cancellation_fee_cents` says how much of it was
    a cancellation fee."""

    job_id: int
    invoice_number: str | None  # jobs booked before invoices existed have none
    invoice_status: str | None
    date: date  # of the job's last money movement in the month, in the service's zone
    property_id: int | None
    property: str | None
    unit: str | None
    category: str
    urgency: str
    status: str  # the job's, now
    payment_status: str  # held, released, voided or expired, now
    currency: str
    held_cents: int
    charged_cents: int
    refunded_cents: int
    cancellation_fee_cents: int


@dataclass(frozen=True)
class StatementTotal:
    """The month's sums in one currency (one per currency the rows are in)."""

    currency: str
    jobs: int
    held_cents: int
    charged_cents: int
    refunded_cents: int
    cancellation_fee_cents: int


def rows(session: Session, user: User, start: datetime, end: datetime, tz: str,
         property_id: int | None = None) -> list[StatementRow]:
    """The caller's organization's statement rows for [start, end); a property of another
    organization (or none) is refused naming `property_id`. A month of one organization is
    bounded, so the whole month is answered at once (no paging: totals need every row)."""
    org = organization_of(session, user)
    if property_id is not None:
        own_property(session, user, property_id)
    found = session.execute(_ROWS_SQL, {"org": org.id, "start": start, "end": end, "tz": tz,
                                        "property": property_id}).all()
    return [StatementRow(
        job_id=r.job_id, invoice_number=r.invoice_number, invoice_status=r.invoice_status,
        date=r.day, property_id=r.property_id, property=r.property,
        unit=r.unit, category=r.category, urgency=r.urgency, status=r.status,
        payment_status=r.payment_status, currency=r.currency, held_cents=r.held_cents,
        charged_cents=r.charged_cents, refunded_cents=r.refunded_cents,
        cancellation_fee_cents=r.cancellation_fee_cents) for r in found]


def totals(found: Iterable[StatementRow]) -> list[StatementTotal]:
    """Sums per currency, in the order the currencies first appear; `jobs` counts each job
    once (a job paid in stages has a row per stage)."""
    sums: dict[str, list[int]] = {}
    seen: set[tuple[str, int]] = set()
    for r in found:
        s = sums.setdefault(r.currency, [0, 0, 0, 0, 0])
        first = (r.currency, r.job_id) not in seen
        seen.add((r.currency, r.job_id))
        for i, cents in enumerate((int(first), r.held_cents, r.charged_cents,
                                   r.refunded_cents, r.cancellation_fee_cents)):
            s[i] += cents
    return [StatementTotal(currency, *s) for currency, s in sums.items()]


def amount(cents: int, currency: str) -> str:
    """Minor units as a plain decimal ("1250" USD -> "12.50"): what a spreadsheet sums,
    without a currency symbol or thousands separator (the currency has its own column)."""
    per = MINOR_UNITS.get(currency.upper(), 100)
    if per == 1:
        return str(cents)
    units, minor = divmod(abs(cents), per)
    return f"{'-' if cents < 0 else ''}{units}.{minor:0{len(str(per - 1))}d}"


CSV_COLUMNS = ["job_id", "invoice", "invoice_status", "date", "property", "unit", "category",
               "urgency", "status", "payment_status", "currency", "held", "charged", "refunded",
               "cancellation_fee"]


def to_csv(found: list[StatementRow]) -> str:
    """Amounts in major units with their currency (like the SLA report's totals), then one
    `total` row per currency. Text a spreadsheet would run as a formula (a unit named
    "=HYPERLINK(...)") comes out as text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in found:
        writer.writerow(spreadsheet_safe([
            r.job_id, r.invoice_number or "", r.invoice_status or "", r.date.isoformat(),
            r.property or "", r.unit or "", r.category, r.urgency, r.status,
            r.payment_status, r.currency,
            amount(r.held_cents, r.currency), amount(r.charged_cents, r.currency),
            amount(r.refunded_cents, r.currency),
            amount(r.cancellation_fee_cents, r.currency)]))
    for t in totals(found):
        jobs = "1 job" if t.jobs == 1 else f"{t.jobs} jobs"
        writer.writerow(["total", "", "", "", "", "", jobs, "", "", "", t.currency,
                         amount(t.held_cents, t.currency), amount(t.charged_cents, t.currency),
                         amount(t.refunded_cents, t.currency),
                         amount(t.cancellation_fee_cents, t.currency)])
    return out.getvalue()
