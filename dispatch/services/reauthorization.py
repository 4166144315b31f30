"""Holds placed again before they lapse. Card networks keep an uncaptured hold for 7 days
(base.AUTHORIZATION_LIFETIME), but a window may be booked up to 60 days ahead: without this
the hold placed at booking would lapse before the work, and the job would go ahead with no
money held.

So a held payment of a job still open whose authorization expires within
REAUTHORIZE_BEFORE_HOURS is authorized again, for the same amount, on the method kept at
booking (`job_payments.payment_method`, with Stripe through its Customer, off-session),
under the key `reauth:job:{id}:{n}:{held_cents}`; then the old authorization is cancelled
and the row points at the new one. Under the job's and the payment's row locks, so two
sweepers (or a sweeper and a confirmation) re-authorize once: the second finds the new
expiry far off.

The books do not move: the money was in escrow and stays there, the hold behind it is only
a newer one at the processor. A declined re-authorization means the payer's card no longer
covers the job. A real product cannot send someone to work that nobody will pay for, and a
window days ahead leaves the payer time to book again: the job is cancelled by the system
(which gives the escrow back through `escrow.job_ended`, a ledger refund, and voids the old
hold; its pending offers are withdrawn, as for any call-off) and the payer is told to book
again with another card. A job already under way or done cannot be called off: its old hold
stays until it lapses (the sweeper then gives the escrow back, `escrow.expire`) and the
payer is told the same. A declined re-authorization is recorded
(`job_payments.reauthorization_declined_at`) and not tried again: asking the same card
every sweep would only repeat the decline (and the payer's notice).

A completed job whose final amount waits for the payer's (or approvers') word is not
re-authorized either (final_amount.py): its hold lapses after 7 days and the sweeper closes
it."""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.job_rows import lock_job, record_event
from dispatch.db.models import Invoice, Job, JobPayment
from dispatch.domain.errors import NotFound
from dispatch.domain.states import (
    INVOICE_AWAITING,
    JOB_TRANSITIONS,
    Actor,
    JobStatus,
    PaymentStatus,
)
from dispatch.infra.payments.base import PaymentError, PaymentRejected
from dispatch.services import escrow, invoices, notify
from dispatch.services.context import settings
from dispatch.services.jobs import call_off
from dispatch.services.payments import provider

log = logging.getLogger(__name__)

# A job in one of these has nothing left to hold for.
ENDED_STATUSES = frozenset({JobStatus.CLOSED.value, JobStatus.CANCELLED.value,
                            JobStatus.UNFILLED.value})
REAUTHORIZED, DECLINED, NOT_DUE, UNAVAILABLE = "reauthorized", "declined", "not_due", \
    "unavailable"


def _window(now: datetime) -> datetime:
    return now + timedelta(hours=settings().reauthorize_before_hours)


def due(session: Session, now: datetime) -> list[int]:
    """Jobs whose hold lapses within REAUTHORIZE_BEFORE_HOURS and can be placed again (a
    method was kept, the last re-authorization was not declined, no final amount awaits the
    payer's word; holds already lapsed are the sweeper's `expire`)."""
    awaiting = exists().where(Invoice.job_id == Job.id,
                              Invoice.status.in_([s.value for s in INVOICE_AWAITING]))
    found = session.execute(
        select(JobPayment.job_id).join(Job, Job.id == JobPayment.job_id)
        .where(JobPayment.status == PaymentStatus.HELD.value,
               JobPayment.payment_method.is_not(None),
               JobPayment.authorization_expires_at > now,
               JobPayment.authorization_expires_at <= _window(now),
               JobPayment.reauthorization_declined_at.is_(None),
               Job.status.not_in(ENDED_STATUSES), ~awaiting)
        .order_by(JobPayment.authorization_expires_at)).scalars().all()
    return list(found)


def reauthorize(session: Session, job_id: int, now: datetime | None = None) -> str:
    """Place the job's hold again if it is (still) due; commits. Returns what happened:
    reauthorized, declined, not_due (done meanwhile by someone else, or ended) or
    unavailable (the provider could not be reached: the next sweep asks again, same key)."""
    now = now or clock.now()
    try:
        job = lock_job(session, job_id)
    except NotFound:
        session.rollback()
        return NOT_DUE
    payment = escrow.locked_payment(session, job_id)
    if (payment is None or payment.status != PaymentStatus.HELD.value
            or job.status in ENDED_STATUSES or not payment.payment_method
            or payment.authorization_expires_at is None
            or payment.reauthorization_declined_at is not None
            or not now < payment.authorization_expires_at <= _window(now)
            or invoices.awaiting(session, job_id)):
        session.rollback()
        return NOT_DUE
    n = payment.reauthorizations + 1
    try:
        held = provider().authorize(payment.held_cents, payment.currency,
                                    payment.payment_method,
                                    f"reauth:job:{job.id}:{n}:{payment.held_cents}",
                                    customer=payment.customer_id)
    except PaymentError:
        session.rollback()
        return UNAVAILABLE
    except PaymentRejected as exc:  # the method is gone (detached, deleted): a decline
        _declined(session, job, payment, exc.code, now)
        return DECLINED
    if held.status == "declined":
        _declined(session, job, payment, held.decline_code or "card_declined", now)
        return DECLINED
    old = payment.authorization_id
    payment.authorization_id = held.id
    payment.authorization_expires_at = held.expires_at
    payment.reauthorizations = n
    escrow.schedule_reauthorization(session, job, payment)  # the next one, if it comes to it
    record_event(session, job, "payment", Actor.SYSTEM, now=now,
                 detail={"escrow": "reauthorized", "reauthorizations": n,
                         "expires_at": held.expires_at.isoformat() if held.expires_at
                         else None})
    session.commit()
    # After the commit: the row names the new hold before the old one goes. A cancel that
    # fails leaves the old hold to lapse on its own; nothing was captured on it.
    with suppress(PaymentError, PaymentRejected):
        provider().cancel(old, f"void:{old}")
    return REAUTHORIZED


def _declined(session: Session, job: Job, payment: JobPayment, code: str,
              now: datetime) -> None:
    """The card no longer covers the job: call it off while that is still possible (the
    hold goes back through `escrow.job_ended`, pending offers are withdrawn), and tell the
    payer either way. Recorded, so the next sweep does not ask the card again."""
    detail = {"escrow": "reauthorization_declined", "decline_code": code}
    payment.reauthorization_declined_at = now
    if Actor.SYSTEM in JOB_TRANSITIONS.get((JobStatus(job.status), JobStatus.CANCELLED),
                                           frozenset()):
        call_off(session, job, Actor.SYSTEM, None, detail, now)
    else:
        record_event(session, job, "payment", Actor.SYSTEM, now=now, detail=detail)
    notify.card_declined(session, job)
    session.commit()
    log.info("job %s: re-authorization declined (%s)", job.id, code)


def sweep(session: Session, now: datetime | None = None) -> int:
    """Re-authorize every hold due; returns how many were placed again."""
    now = now or clock.now()
    job_ids = due(session, now)
    session.rollback()
    return sum(reauthorize(session, job_id, now) == REAUTHORIZED for job_id in job_ids)
