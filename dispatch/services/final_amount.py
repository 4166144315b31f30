"""What a job came to: the worker's completion form, and who must agree to the amount.

The worker enters minutes and parts; the server writes the line items (call-out fee and
urgent surcharge from the category's price list, labour = minutes x hourly rate, parts as
entered) and their total is the job's final amount. Then (`approvals.decide_final_amount`):
- A resident's job, up to the hold plus FINAL_TOLERANCE_PERCENT: charged on confirmation
  (or the automatic release). Above the hold the authorization grows first (an incremental
  authorization, and the ledger's escrow by the same amount); a card that declines the
  increase sends the amount to the payer instead.
- A resident's job above that: the payer approves it (the hold grows then) or declines it
  with a reason; the worker may then revise the line items, and the revision goes to the
  payer again (they said no once: a changed amount is theirs to see).
- An organization's job: approved by itself up to the hard limit; above it an approval
  request goes to the organization's managers (/approvals), whose decision moves the
  invoice (`decide_approval`).
While an amount waits (invoice `in_review` or `declined`) nothing is charged: confirming is
refused, and the automatic release and the sweeper leave the job alone (see
`confirmation`). They wait rather than charge the hold: closing the job on the hold would
settle the amount the payer has not agreed to in the worker's disfavour and end the
decline-and-revise exchange; the hold's own 7-day lapse is the backstop, as it is for a
job nobody confirms. The hold is not placed again while an amount waits
(`reauthorization.due`): holding a payer's card every six days, indefinitely, for an amount
they have not agreed to is not fair to them either. When the hold lapses the job is closed
with nothing charged and both are told (`confirmation.sweep`): a week is long enough for
either side to act, and what is still owed is then theirs to settle (a dispute), as for
any unpaid bill.

The worker's completion always goes through when its input is valid: a card that declines
the increase (or a processor that refuses it) sends the amount to the payer, or to the
organization's approvers, instead of refusing the worker. A settled invoice (paid, or void
because the hold lapsed) is left as it was: the line items are recorded, nothing is
charged.

Locks: the job row first (as every job step), then the invoice and the payment row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.job_rows import lock_job, record_event
from dispatch.db.models import ApprovalRequest, Category, Invoice, Job, JobLineItem, Role, User
from dispatch.domain.commands import CompleteIn
from dispatch.domain.errors import Conflict, PaymentRequired, invalid, not_found, problem, refusal
from dispatch.domain.money import LineItemKind, format_cents
from dispatch.domain.states import (
    INVOICE_AWAITING,
    Actor,
    ApprovalStatus,
    InvoiceStatus,
    JobStatus,
    PaymentStatus,
    check_job_transition,
)
from dispatch.services import approvals, escrow, invoices, push
from dispatch.services.approvals import MAX_REASON_CHARS, Decision
from dispatch.services.context import settings
from dispatch.services.jobs import REQUESTER_ROLES, transition
from dispatch.services.pricing import surcharge_for

# The worker may complete from here (arrived: the work was quick and never marked started).
COMPLETABLE = (JobStatus.ARRIVED, JobStatus.IN_PROGRESS)
REVISED_BELOW_LIMIT = "revised below the hard limit"
SETTLED_INVOICES = frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID})


def labour_cents(minutes: int, hourly_rate_cents: int) -> int:
    """Minutes x the hourly rate, to the nearest cent (halves up)."""
    return (minutes * hourly_rate_cents + 30) // 60


def price_lines(job: Job, category: Category, body: CompleteIn,
                now: datetime) -> list[JobLineItem]:
    """The line items of a completion, or the refusal naming the field (a rate outside
    the category's range is `hourly_rate_cents`; a bad part is `parts.<i>.<field>`)."""
    rate = body.hourly_rate_cents or category.hourly_low_cents
    if not category.hourly_low_cents <= rate <= category.hourly_high_cents:
        currency = settings().currency
        raise invalid("hourly_rate_cents", "final_amount.rate_outside",
                      low=format_cents(category.hourly_low_cents, currency),
                      high=format_cents(category.hourly_high_cents, currency))
    lines: list[tuple[LineItemKind, str, int, int, int]] = []
    if category.call_out_cents:
        lines.append((LineItemKind.CALL_OUT, "Call-out", 1, category.call_out_cents,
                      category.call_out_cents))
    surcharge = surcharge_for(category, job.urgency)
    if surcharge:
        lines.append((LineItemKind.SURCHARGE, "Urgent (within two hours)", 1, surcharge,
                      surcharge))
    if body.minutes:
        lines.append((LineItemKind.LABOUR, f"Labour, {body.minutes} min", body.minutes, rate,
                      labour_cents(body.minutes, rate)))
    for part in body.parts:
        lines.append((LineItemKind.PARTS, part.description, 1, part.amount_cents,
                      part.amount_cents))
    if not lines:
        raise invalid("minutes", "amount.not_positive")
    return [JobLineItem(job_id=job.id, position=i, kind=kind.value, description=text,
                        quantity=quantity, unit_amount_cents=unit, amount_cents=amount,
                        created_at=now)
            for i, (kind, text, quantity, unit, amount) in enumerate(lines, start=1)]


def complete(session: Session, worker: User, job_id: int, body: CompleteIn) -> tuple[
        Job, Invoice, Decision]:
    """The assigned worker completes the job with its line items, or revises them while
    the amount awaits approval (in review or declined). Anything else is 409."""
    job = lock_job(session, job_id)
    if job.worker_id != worker.id:
        raise not_found("job")
    if escrow.has_milestones(session, job.id):
        # its stages' amounts were agreed at booking; each is marked done on its own
        raise refusal(Conflict, "paid_in_stages", "milestones", "milestone.mark_each")
    now = clock.now()
    revising = job.status == JobStatus.COMPLETED.value
    invoice = invoices.of_job(session, job.id, lock=True)
    if revising:
        if invoice is None or InvoiceStatus(invoice.status) not in INVOICE_AWAITING:
            raise refusal(Conflict, "final_amount_settled", "status", "final_amount.settled")
    elif JobStatus(job.status) not in COMPLETABLE:
        check_job_transition(job.status, JobStatus.COMPLETED, Actor.WORKER)  # says why: 409
    lines = price_lines(job, job.category, body, now)
    total = sum(line.amount_cents for line in lines)
    session.execute(delete(JobLineItem).where(JobLineItem.job_id == job.id))
    session.flush()
    session.add_all(lines)
    job.final_amount_cents = total
    payment = escrow.locked_payment(session, job.id)
    if invoice is None:  # booked before invoices, or without a hold
        invoice = invoices.open_for(session, job, payment.held_cents if payment else total, now)
    settled = InvoiceStatus(invoice.status) in SETTLED_INVOICES
    if not settled:  # a paid or void invoice keeps the amount it was settled for
        invoice.amount_cents = total
    if not revising:
        if job.status == JobStatus.ARRIVED.value:
            transition(session, job, JobStatus.IN_PROGRESS, Actor.WORKER, now=now,
                       actor_user_id=worker.id)
        transition(session, job, JobStatus.COMPLETED, Actor.WORKER, now=now,
                   actor_user_id=worker.id)
    # Nothing left to charge on a settled invoice (revising needs one awaiting): no decision.
    decision: Decision = "auto_approved" if settled else _decide(
        session, job, invoice, worker, total, revising, now)
    record_event(session, job, "final_amount", Actor.WORKER, now=now, actor_user_id=worker.id,
                 detail={"amount_cents": total, "decision": decision, "revised": revising,
                         **({"invoice": invoice.status} if settled else {}),
                         "note": body.note,
                         "line_items": [{"kind": line.kind, "description": line.description,
                                         "amount_cents": line.amount_cents}
                                        for line in lines]})
    push.job_changed(session, job)
    session.commit()
    return job, invoice, decision


def _held_cents(session: Session, job: Job) -> int | None:
    payment = escrow.locked_payment(session, job.id)
    if payment is None or payment.status != PaymentStatus.HELD.value:
        return None
    return payment.held_cents


def _grow_hold(session: Session, job: Job, total: int, now: datetime) -> bool:
    """The hold covers `total` (grown if it must be): False when the card declined."""
    payment = escrow.locked_payment(session, job.id)
    if payment is None or payment.status != PaymentStatus.HELD.value \
            or total <= payment.held_cents:
        return True
    return escrow.increment_hold(session, job, payment, total, now)


def _to_review(session: Session, invoice: Invoice, now: datetime) -> None:
    if invoice.status != InvoiceStatus.IN_REVIEW.value:
        invoices.move(session, invoice, InvoiceStatus.IN_REVIEW, now)


def _decide(session: Session, job: Job, invoice: Invoice, worker: User, total: int,
            revising: bool, now: datetime) -> Decision:
    held = _held_cents(session, job)
    decision = approvals.decide_final_amount(session, job, total, held,
                                             settings().final_tolerance_percent)
    if job.org_id is None:
        if revising or decision == "needs_payer_approval" \
                or not _grow_hold(session, job, total, now):
            _to_review(session, invoice, now)
            return "needs_payer_approval"
        return "auto_approved"
    if decision == "needs_approval":
        approvals.request_approval(session, job, total, worker, commit=False)
        _to_review(session, invoice, now)
        return decision
    if not _grow_hold(session, job, total, now):
        # the card would not cover it: the approvers see it rather than the worker a 402
        approvals.request_approval(session, job, total, worker, commit=False, force=True)
        _to_review(session, invoice, now)
        return "needs_approval"
    _withdraw_pending(session, job, now)
    if revising:  # a revision under the hard limit: reviewed, and approved by the limit
        _to_review(session, invoice, now)
        invoices.move(session, invoice, InvoiceStatus.APPROVED, now)
    return decision


def _withdraw_pending(session: Session, job: Job, now: datetime) -> None:
    """A revision the hard limit now covers: the request it replaces is closed."""
    session.execute(update(ApprovalRequest)
                    .where(ApprovalRequest.job_id == job.id,
                           ApprovalRequest.status == ApprovalStatus.PENDING.value)
                    .values(status=ApprovalStatus.DECLINED.value, decided_at=now,
                            reason=REVISED_BELOW_LIMIT))


def _increment_declined() -> PaymentRequired:
    found = problem("payment_method", "final_amount.increment_declined")
    return PaymentRequired("payment_declined", found.problem, [found])


def _check_reason(approve: bool, reason: str | None) -> str | None:
    reason = (reason or "").strip() or None
    if not approve and reason is None:
        raise invalid("reason", "approval.reason_needed")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise invalid("reason", "text.too_long", max_length=MAX_REASON_CHARS)
    return reason


def _apply(session: Session, job: Job, invoice: Invoice, user: User, approve: bool,
           reason: str | None, now: datetime) -> None:
    """The payer's (or a manager's) word on the amount in review, in the caller's
    transaction: approved, the hold grows to cover it (a declined increase refuses the
    approval, 402); declined, the worker is told why and may revise."""
    if approve:
        if job.final_amount_cents is not None \
                and not _grow_hold(session, job, job.final_amount_cents, now):
            raise _increment_declined()
        invoices.move(session, invoice, InvoiceStatus.APPROVED, now)
        invoice.decline_reason = None
    else:
        invoices.move(session, invoice, InvoiceStatus.DECLINED, now)
        invoice.decline_reason = reason
    record_event(session, job, "final_amount", Actor.RESIDENT, now=now, actor_user_id=user.id,
                 detail={"amount_cents": job.final_amount_cents,
                         "decision": "approved" if approve else "declined", "reason": reason})
    push.job_changed(session, job)


def payer_decides(session: Session, user: User, job_id: int, approve: bool,
                  reason: str | None) -> tuple[Job, Invoice]:
    """A resident approves or declines the final amount in review on their job. An
    organization's job is its approvers' (409); nothing in review is 409 too."""
    reason = _check_reason(approve, reason)
    job = lock_job(session, job_id)
    if Role(user.role) not in REQUESTER_ROLES or job.resident_id != user.id:
        raise not_found("job")
    if job.org_id is not None:
        raise refusal(Conflict, "organization_approval", "final_amount",
                      "final_amount.org_approvers")
    invoice = invoices.of_job(session, job.id, lock=True)
    if invoice is None or invoice.status != InvoiceStatus.IN_REVIEW.value:
        raise refusal(Conflict, "not_in_review", "final_amount", "final_amount.not_in_review")
    try:
        _apply(session, job, invoice, user, approve, reason, clock.now())
    except PaymentRequired:
        _remember_declined_increment(session, job_id)
        raise
    session.commit()
    return job, invoice


def _remember_declined_increment(session: Session, job_id: int) -> None:
    """An approval refused because the card declined the increase (402) rolls back, but
    the decline is kept: the next approval is a new attempt at the processor, not the
    replay of this one (`escrow.increment_hold`'s key)."""
    session.rollback()
    lock_job(session, job_id)
    payment = escrow.locked_payment(session, job_id)
    if payment is not None:
        escrow.increment_declined(payment)
    session.commit()


def _approval_decided(session: Session, request: ApprovalRequest, user: User, approve: bool,
                      reason: str | None) -> None:
    """A manager decided an approval request: the job's invoice follows when the request
    is for the amount in review (an older amount's request changes nothing)."""
    job = session.get(Job, request.job_id)
    invoice = invoices.of_job(session, request.job_id, lock=True)
    if job is None or invoice is None or invoice.status != InvoiceStatus.IN_REVIEW.value \
            or job.final_amount_cents != request.amount_cents:
        return
    _apply(session, job, invoice, user, approve, reason, clock.now())


def decide_approval(session: Session, user: User, request_id: int, approve: bool,
                    reason: str | None) -> ApprovalRequest:
    """`approvals.decide` with the job's invoice following, in one transaction. The job's
    row is locked before the request's (the lock order of every job step)."""
    job_id = session.execute(select(ApprovalRequest.job_id)
                             .where(ApprovalRequest.id == request_id)).scalar_one_or_none()
    if job_id is not None:
        lock_job(session, job_id)
    try:
        return approvals.decide(session, user, request_id, approve, reason,
                                on_decided=_approval_decided)
    except PaymentRequired:
        if job_id is not None:
            _remember_declined_increment(session, job_id)
        raise
