"""Invoices: one per job, opened with the hold at booking and following the job's money to
the end (`hold -> in_review -> approved | declined -> paid`, or `void`; the map is
`domain.states.INVOICE_TRANSITIONS`). Every status change goes through `move`, the one
place an organization's invoice webhook would be sent from. For a resident, the paid
invoice with its line items is the receipt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.db.models import Invoice, Job, JobLineItem, JobPayment, Unit, User
from dispatch.db.paging import Keyset, Page, PageRequest
from dispatch.domain.errors import NotFound, invalid, not_found
from dispatch.domain.states import INVOICE_AWAITING, InvoiceStatus, check_invoice_transition
from dispatch.services import org_hooks
from dispatch.services.context import settings
from dispatch.services.portfolio import organization_of


def number_for(job: Job, issued_at: datetime) -> str:
    """A human number: the year it was issued and the job's (unique) id."""
    return f"INV-{issued_at.year}-{job.id:06d}"


def open_for(session: Session, job: Job, amount_cents: int, now: datetime,
             currency: str | None = None) -> Invoice:
    """The job's invoice for the amount held, created once (a job booked before invoices
    existed gets its own on first use)."""
    found = of_job(session, job.id, lock=True)
    if found is not None:
        return found
    unit = session.get(Unit, job.unit_id) if job.unit_id is not None else None
    invoice = Invoice(number=number_for(job, now), job_id=job.id,
                      payer_user_id=None if job.org_id is not None else job.resident_id,
                      payer_organization_id=job.org_id, org_id=job.org_id,
                      property_id=unit.property_id if unit is not None else None,
                      status=InvoiceStatus.HOLD.value, amount_cents=amount_cents,
                      currency=currency or settings().currency, issued_at=now, updated_at=now)
    session.add(invoice)
    session.flush()
    _tell(session, job, invoice, None, now)
    return invoice


def of_job(session: Session, job_id: int, lock: bool = False) -> Invoice | None:
    stmt = select(Invoice).where(Invoice.job_id == job_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.execute(stmt).scalar_one_or_none()


def move(session: Session, invoice: Invoice, status: InvoiceStatus, now: datetime) -> str:
    """THE place an invoice changes status (checked against its state machine); returns the
    previous status. An organization's `invoice.*` webhook belongs here."""
    previous = invoice.status
    check_invoice_transition(previous, status)
    invoice.status = status.value
    invoice.updated_at = now
    if status is InvoiceStatus.PAID:
        invoice.paid_at = now
    job = session.get(Job, invoice.job_id)
    assert job is not None
    _tell(session, job, invoice, previous, now)
    return previous


def _tell(session: Session, job: Job, invoice: Invoice, previous: str | None,
          now: datetime) -> None:
    """An organization's webhook hears `invoice.<status>` for every status its invoice
    takes (an invoice may come back to one, after a revision: the key has the time)."""
    event = f"invoice.{invoice.status}"
    org_hooks.money_event(
        session, job, event,
        {"invoice_id": invoice.id, "number": invoice.number, "status": invoice.status,
         "previous": previous, "amount_cents": invoice.amount_cents,
         "currency": invoice.currency},
        f"{event}:invoice:{invoice.id}:{now.isoformat()}", now)


def settled(session: Session, job: Job, charged_cents: int, now: datetime) -> None:
    """The hold ended (escrow.settle / expire): paid for what was charged, else void."""
    invoice = of_job(session, job.id, lock=True)
    if invoice is None or invoice.status in (InvoiceStatus.PAID, InvoiceStatus.VOID):
        return
    invoice.amount_cents = charged_cents
    move(session, invoice, InvoiceStatus.PAID if charged_cents else InvoiceStatus.VOID, now)


def awaiting(session: Session, job_id: int) -> bool:
    """Whether the job's final amount waits for someone's word (nothing may be charged)."""
    invoice = of_job(session, job_id)
    return invoice is not None and InvoiceStatus(invoice.status) in INVOICE_AWAITING


def line_items(session: Session, job_id: int) -> list[JobLineItem]:
    return list(session.execute(select(JobLineItem).where(JobLineItem.job_id == job_id)
                                .order_by(JobLineItem.position)).scalars())


@dataclass(frozen=True)
class InvoiceView:
    invoice: Invoice
    items: list[JobLineItem]
    payment: JobPayment | None


def view(session: Session, invoice: Invoice) -> InvoiceView:
    return InvoiceView(invoice, line_items(session, invoice.job_id),
                       session.get(JobPayment, invoice.job_id))


def for_payer(session: Session, user: User, job_id: int) -> InvoiceView:
    """The invoice of a job the caller booked (a resident's receipt once paid), or worked
    (the worker wrote its line items, and revises them when declined)."""
    job = session.get(Job, job_id)
    if job is None or user.id not in (job.resident_id, job.worker_id):
        raise not_found("job")
    invoice = of_job(session, job_id)
    if invoice is None:
        raise not_found("invoice")
    return view(session, invoice)


def for_manager(session: Session, user: User, invoice_id: int) -> InvoiceView:
    """One of the caller's organization's invoices; any other is "not found"."""
    org = organization_of(session, user)
    invoice = session.get(Invoice, invoice_id)
    if invoice is None or invoice.org_id != org.id:
        raise invalid("invoice_id", "not_found", NotFound, what="invoice")
    return view(session, invoice)


INVOICES_NEWEST_FIRST = Keyset((Invoice.id,), descending=True)


def invoices_page(session: Session, user: User, status: InvoiceStatus | None,
                  property_id: int | None, page: PageRequest) -> Page[Invoice]:
    """The caller's organization's invoices, newest first."""
    org = organization_of(session, user)
    stmt = select(Invoice).where(Invoice.org_id == org.id)
    if status is not None:
        stmt = stmt.where(Invoice.status == status.value)
    if property_id is not None:
        stmt = stmt.where(Invoice.property_id == property_id)
    return INVOICES_NEWEST_FIRST.page(session, stmt, page, lambda i: (i.id,))
