"""The end of a completed job's escrow: the payer confirms the work is done, or nobody says
anything for AUTO_RELEASE_HOURS (AUTO_RELEASE_URGENT_HOURS for urgent jobs) and the system
releases it (an RQ timer set at completion, the sweeper as backstop). Either way the job
goes `completed -> closed` in the transaction that posts the release, under the job's row
lock, so a confirmation, the timer, the sweeper and a cancellation racing each other end
the job exactly once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.job_rows import lock_job
from dispatch.db.models import Job, JobPayment, Role, User
from dispatch.domain.errors import Conflict, NotFound, not_found, refusal
from dispatch.domain.money import TransactionKind
from dispatch.domain.states import Actor, JobStatus, PaymentStatus
from dispatch.services import escrow, invoices, notify, reauthorization
from dispatch.services.context import settings
from dispatch.services.jobs import REQUESTER_ROLES, transition


def confirm(session: Session, user: User, job_id: int) -> Job:
    """The payer says the work is done: the final amount (else the hold) is captured and
    released to the worker less the platform's fee, the rest refunded, the job closed. A
    repeat of a confirmation that went through answers with the closed job, charging
    nothing more."""
    job = lock_job(session, job_id)
    if Role(user.role) not in REQUESTER_ROLES or job.resident_id != user.id:
        raise not_found("job")
    if job.status == JobStatus.CLOSED.value:
        session.rollback()
        return job
    if escrow.has_milestones(session, job.id):
        # each stage on its own: POST /jobs/{id}/milestones/{n}/confirm
        raise refusal(Conflict, "paid_in_stages", "milestones", "milestone.confirm_each")
    if job.status != JobStatus.COMPLETED.value:
        raise refusal(Conflict, "not_completed", "status", "payment.not_completed")
    if invoices.awaiting(session, job.id):
        raise refusal(Conflict, "final_amount_pending", "final_amount",
                      "final_amount.awaiting")
    _release(session, job, clock.now(), Actor.RESIDENT, user.id, "confirmed")
    session.commit()
    return job


def auto_release(session: Session, job_id: int, now: datetime) -> bool:
    """The timer's (and the sweeper's) release: True when it closed the job. Early (a
    clock moved), already confirmed, disputed or gone: it does nothing."""
    try:
        job = lock_job(session, job_id)  # not read before: the lock must see it fresh
    except NotFound:
        session.rollback()
        return False
    if (job.status != JobStatus.COMPLETED.value or job.completed_at is None
            or escrow.release_due_at(job) > now or escrow.has_milestones(session, job.id)
            # An amount awaiting approval is charged on nobody's say-so (final_amount.py).
            or invoices.awaiting(session, job.id)):
        session.rollback()
        return False
    _release(session, job, now, Actor.SYSTEM, None, "auto_released")
    session.commit()
    return True


def _release(session: Session, job: Job, now: datetime, actor: Actor,
             actor_user_id: int | None, how: str) -> None:
    payment = escrow.locked_payment(session, job.id)
    detail: dict[str, object] = {"escrow": how}
    if payment is not None and payment.status == PaymentStatus.HELD.value:
        charged = (job.final_amount_cents if job.final_amount_cents is not None
                   else payment.held_cents)
        done = escrow.settle(session, job, payment, charged, TransactionKind.RELEASE, now)
        detail.update(charged_cents=done.charged_cents, worker_cents=done.worker_cents,
                      fee_cents=done.fee_cents, refunded_cents=done.refunded_cents)
    transition(session, job, JobStatus.CLOSED, actor, now=now, actor_user_id=actor_user_id,
               detail=detail)


def sweep(session: Session, now: datetime | None = None) -> int:
    """The backstop: completed jobs whose release is due (a lost timer), holds about to
    lapse placed again (`reauthorization`), and holds the provider let lapse. Returns how
    many holds it ended."""
    now = now or clock.now()
    ended = 0
    reauthorization.sweep(session, now)
    s = settings()
    soonest = timedelta(hours=min(s.auto_release_hours, s.auto_release_urgent_hours))
    due = session.execute(
        select(Job.id).join(JobPayment, JobPayment.job_id == Job.id)
        .where(Job.status == JobStatus.COMPLETED.value, Job.completed_at <= now - soonest,
               JobPayment.status == PaymentStatus.HELD.value)).scalars().all()
    session.rollback()
    for job_id in due:
        ended += auto_release(session, job_id, now)
    lapsed = session.execute(
        select(JobPayment.job_id).where(JobPayment.status == PaymentStatus.HELD.value,
                                        JobPayment.authorization_expires_at <= now)
    ).scalars().all()
    session.rollback()
    for job_id in lapsed:
        job = lock_job(session, job_id)
        payment = escrow.locked_payment(session, job_id)
        if payment is not None and payment.status == PaymentStatus.HELD.value \
                and payment.authorization_expires_at is not None \
                and payment.authorization_expires_at <= now:
            escrow.expire(session, job, payment, now)
            if job.status == JobStatus.COMPLETED.value:
                _lapsed(session, job, now)
            ended += 1
        session.commit()
    return ended


def _lapsed(session: Session, job: Job, now: datetime) -> None:
    """A completed job's hold lapsed (its final amount waited for the payer's word, which
    never came: final_amount.py): nothing can be charged on it now, so the job is closed
    rather than left `completed` for ever, and the payer and the worker are told. What the
    work is still owed is between them (a dispute), not taken from a card without a hold."""
    transition(session, job, JobStatus.CLOSED, Actor.SYSTEM, now=now,
               detail={"escrow": "expired"})
    notify.hold_lapsed(session, job)
