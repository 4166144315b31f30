"""Escrow: the payer's money held for a job from booking until the work is confirmed done,
and what happens to it when the job ends another way.

- Booking places a hold (a provider authorization for the job's high estimate) only once
  someone can come; a declined card stores no job. The job row, its `job_payments` row and
  the ledger's `hold` commit together.
- Ending a hold is ONE keyed ledger transaction in the same database transaction as the job's
  status change (`settle`): the captured part to the worker less the platform's fee, the rest
  back to the payer. A cancellation before the worker sets out, or an unfilled job, voids the
  hold whole; once the worker is on the way the payer owes the cancellation fee.
- Provider calls carry keys derived from the job, so a retry after a crash or a timeout asks
  the provider the same question and never charges twice.

Confirmation and the automatic release live in `services.confirmation` (they move the job
through `services.jobs`, which calls `job_ended` here: two modules, so neither imports the
other's importer)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.db.aftercommit import on_commit
from dispatch.db.models import Category, Job, JobMilestone, JobPayment, Urgency
from dispatch.domain.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    PaymentRequired,
    Unavailable,
    invalid,
    problem,
    refusal,
)
from dispatch.domain.money import AccountKind, TransactionKind
from dispatch.domain.states import JobStatus, PaymentStatus, check_payment_transition
from dispatch.infra import queues
from dispatch.infra.payments.base import (
    Authorization,
    PaymentDeclined,
    PaymentError,
    PaymentRejected,
)
from dispatch.services import invoices, ledger, org_hooks, pricing
from dispatch.services.context import settings
from dispatch.services.payments import provider

# Stripe's documented success token: with PAYMENT_PROVIDER=simulated a booking without a
# payment method is held on it (organizations have no card on file yet, so their batch jobs
# always are).
SIMULATED_DEFAULT_METHOD = "pm_card_visa"
# Once the worker is on the way, calling the job off costs the cancellation fee.
SET_OUT_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.EN_ROUTE, JobStatus.ARRIVED, JobStatus.IN_PROGRESS})
# A job ending in one of these gives the hold back (less any fee) at once.
HOLD_ENDING_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.CANCELLED, JobStatus.UNFILLED})


def payer_of(job: Job) -> ledger.Payer:
    """An organization's job (a manager's booking or batch row) is the organization's to pay;
    any other job is the resident's."""
    if job.org_id is not None:
        return ledger.Payer(organization_id=job.org_id)
    return ledger.Payer(user_id=job.resident_id)


def payment_method_for(given: str | None) -> str:
    """The method to hold the booking on: the one given, or with the simulator its success
    token. Stripe needs a real one (from Stripe Elements)."""
    if given:
        return given
    if settings().payment_provider == "simulated":
        return SIMULATED_DEFAULT_METHOD
    raise invalid("payment_method", "payment.method_required")


def authorize(amount_cents: int, payment_method: str, key: str,
              reusable: bool = False, customer: str | None = None) -> Authorization:
    """Ask the provider to hold `amount_cents`; a refusal is a domain error naming
    `payment_method` (402 for a declined card). Nothing is written here: the caller stores
    the job and the hold together, or cancels the authorization. `reusable` keeps the
    method for a re-authorization later (services/reauthorization.py); `customer` holds
    again, off-session, on the method a reusable hold kept (a job's next stage)."""
    try:
        return provider().authorize(amount_cents, settings().currency, payment_method,
                                    key, customer=customer, reusable=reusable).require()
    except PaymentDeclined as exc:
        found = problem("payment_method", "payment.declined",
                        reason=exc.code.replace("_", " "))
        raise PaymentRequired("payment_declined", found.problem, [found],
                              {"decline_code": exc.code}) from exc
    except PaymentRejected as exc:
        raise refusal(InvalidInput, "validation_failed", "payment_method",
                      "payment.method_unknown") from exc
    except PaymentError as exc:
        raise _unavailable() from exc


def _unavailable() -> DomainError:
    found = problem("payment_method", "payment.unavailable")
    return Unavailable("payment_unavailable", found.problem, [found], {"retry_after_s": 5})


def record_hold(session: Session, job: Job, held: Authorization, now: datetime) -> JobPayment:
    """The job's payment row and the ledger's hold, in the caller's (booking's) transaction."""
    payer = payer_of(job)
    currency = settings().currency
    payment = JobPayment(job_id=job.id, authorization_id=held.id,
                         authorization_expires_at=held.expires_at,
                         payer_user_id=payer.user_id,
                         payer_organization_id=payer.organization_id, currency=currency,
                         held_cents=held.amount_cents, captured_cents=0, refunded_cents=0,
                         status=PaymentStatus.HELD.value, created_at=now,
                         payment_method=held.payment_method, customer_id=held.customer,
                         reauthorizations=0)
    session.add(payment)
    ledger.hold(session, job.id, payer, held.amount_cents, f"hold:job:{job.id}", currency)
    _told(session, job, payment, "payment.held", now)
    invoices.open_for(session, job, held.amount_cents, now, currency)
    schedule_reauthorization(session, job, payment)
    return payment


def reauthorize_at(payment: JobPayment) -> datetime | None:
    """When the hold is placed again: REAUTHORIZE_BEFORE_HOURS before it lapses."""
    if payment.authorization_expires_at is None:
        return None
    return payment.authorization_expires_at - timedelta(
        hours=settings().reauthorize_before_hours)


def schedule_reauthorization(session: Session, job: Job, payment: JobPayment) -> None:
    """A job whose work may still be to do when its hold is due again (a window booked
    more than about 6 days ahead) gets an RQ timer then, after the commit
    (services/reauthorization.py; the sweeper catches a lost one). Urgent jobs, done
    within hours, get none."""
    due = reauthorize_at(payment)
    if due is None or not payment.payment_method or job.arrive_by is None \
            or job.arrive_by <= due:
        return
    job_id, n = job.id, payment.reauthorizations + 1
    on_commit(session, lambda _: queues.schedule_reauthorization(job_id, n, due))


def cancel_authorization(held: Authorization) -> None:
    """The booking's transaction failed after the hold was placed: give the hold back. If
    the provider cannot be reached either, the hold lapses on its own (7 days)."""
    with suppress(PaymentError, PaymentRejected):
        provider().cancel(held.id, f"void:{held.id}")


def hold_for_booking(amount_cents: int, payment_method: str | None, requester_id: int,
                     booking_key: str, fingerprint: str) -> Authorization:
    """The hold for a booking about to be stored. Keyed by the booking's Idempotency-Key and
    body, so a retry of the same booking gets the same authorization back (one hold), and a
    different body under a reused key is not mistaken for it. The method is kept reusable:
    a window booked more than a week ahead outlives its first hold."""
    return authorize(amount_cents, payment_method_for(payment_method),
                     f"hold:{requester_id}:{fingerprint[:16]}:{booking_key}", reusable=True)


def hold_for_batch_job(session: Session, job: Job, lat: float, lng: float, row_key: str,
                       now: datetime) -> Authorization | None:
    """The hold for a manager's batch row, the organization paying. Organizations have no
    card on file yet: with the simulator the job is held on its success token, with a real
    provider it is opened without a hold (nothing to hold it on; invoicing settles it).
    Keyed by the row, so processing the batch again asks for the same hold."""
    if settings().payment_provider != "simulated":
        return None
    priced = pricing.estimate(session, job.category_id, job.urgency, lat, lng, now)
    return authorize(priced.high_cents, SIMULATED_DEFAULT_METHOD, f"hold:{row_key}")


def commit_booking(session: Session, job: Job, held: Authorization,
                   commit: Callable[[Session], None], now: datetime,
                   record: Callable[[Session, Job, Authorization, datetime], object]
                   = record_hold) -> None:
    """Store the hold with the job just flushed (`record`: the whole job's, or its first
    stage's) and commit them together; when that fails, the authorization is cancelled and
    the error goes on."""
    try:
        record(session, job, held, now)
        commit(session)
    except BaseException:
        session.rollback()
        cancel_authorization(held)
        raise


def locked_payment(session: Session, job_id: int) -> JobPayment | None:
    return session.execute(select(JobPayment).where(JobPayment.job_id == job_id)
                           .with_for_update().execution_options(populate_existing=True)
                           ).scalar_one_or_none()


@dataclass(frozen=True)
class Settlement:
    charged_cents: int  # captured from the payer
    worker_cents: int
    fee_cents: int  # the platform's
    refunded_cents: int


@dataclass(frozen=True)
class Hold:
    """One authorization sitting in the job's escrow account: a whole job's (`job_payments`)
    or one stage's (`job_milestones`). `key` names it in the provider's and the ledger's
    idempotency keys (`capture:{key}`, `settle:{key}`): "job:7", "milestone:12"."""

    key: str
    authorization_id: str
    held_cents: int
    currency: str
    payer_user_id: int | None
    payer_organization_id: int | None


def job_hold(job: Job, payment: JobPayment) -> Hold:
    return Hold(f"job:{job.id}", payment.authorization_id, payment.held_cents,
                payment.currency, payment.payer_user_id, payment.payer_organization_id)


def settle(session: Session, job: Job, payment: JobPayment, charged_cents: int,
           kind: TransactionKind, now: datetime) -> Settlement:
    """End the job's hold (its row locked by the caller, with the job): see `end_hold`."""
    check_payment_transition(payment.status, PaymentStatus.RELEASED)
    done = end_hold(session, job, job_hold(job, payment), charged_cents, kind)
    if done is None:
        expire(session, job, payment, now)
        return Settlement(0, 0, 0, payment.held_cents)
    payment.status = (PaymentStatus.RELEASED if done.charged_cents
                      else PaymentStatus.VOIDED).value
    payment.captured_cents, payment.refunded_cents = done.charged_cents, done.refunded_cents
    payment.settled_at = now
    _told(session, job, payment,
          "payment.captured" if done.charged_cents else "payment.voided", now)
    if done.charged_cents and done.refunded_cents:
        _told(session, job, payment, "payment.refunded", now)
    invoices.settled(session, job, done.charged_cents, now)
    return done


def _told(session: Session, job: Job, payment: JobPayment, event: str, now: datetime) -> None:
    """The paying organization's webhook hears of the movement just written (one delivery
    per job and event: a hold ends once)."""
    org_hooks.money_event(session, job, event, {
        "payment_status": payment.status, "currency": payment.currency,
        "held_cents": payment.held_cents, "charged_cents": payment.captured_cents,
        "refunded_cents": payment.refunded_cents}, f"{event}:job:{job.id}", now)


def end_hold(session: Session, job: Job, hold: Hold, charged_cents: int,
             kind: TransactionKind) -> Settlement | None:
    """Capture `charged_cents` of the hold (void the authorization when it is zero), then
    ONE ledger transaction out of escrow: the charge to the worker less the platform's fee,
    the rest back to the payer. None when the provider had let the hold lapse (the caller
    records that: `expire`)."""
    charged = max(0, min(charged_cents, hold.held_cents))
    try:
        if charged:
            provider().capture(hold.authorization_id, charged, f"capture:{hold.key}")
        else:
            provider().cancel(hold.authorization_id, f"void:{hold.authorization_id}")
    except PaymentRejected as exc:
        if exc.code != "authorization_expired":
            # A stale state on our side (the hold cancelled elsewhere, a key reused with
            # another amount): refused, never a 500; an operator sorts it out.
            raise refusal(Conflict, "payment_rejected", "payment",
                          "payment.rejected", reason=exc.code.replace("_", " ")) from exc
        return None
    except PaymentError as exc:
        raise _unavailable() from exc
    category = session.get(Category, job.category_id)
    assert category is not None
    worker_cents = pricing.less_fee(charged, category) if charged else 0
    fee_cents = charged - worker_cents
    refunded = hold.held_cents - charged
    currency = hold.currency
    entries = [ledger.Entry(ledger.account(session, AccountKind.ESCROW, job_id=job.id,
                                           currency=currency), -hold.held_cents)]
    if worker_cents:
        assert job.worker_id is not None
        entries.append(ledger.Entry(ledger.account(
            session, AccountKind.WORKER_BALANCE, user_id=job.worker_id, currency=currency),
            worker_cents))
    if fee_cents:
        entries.append(ledger.Entry(ledger.account(session, AccountKind.PLATFORM_FEES,
                                                   currency=currency), fee_cents))
    if refunded:
        entries.append(ledger.Entry(_refunds(session, hold), refunded))
    ledger.post(session, f"settle:{hold.key}", kind if charged else TransactionKind.REFUND,
                entries, job_id=job.id)
    return Settlement(charged, worker_cents, fee_cents, refunded)


def _refunds(session: Session, payment: JobPayment | Hold) -> ledger.Account:
    return ledger.account(session, AccountKind.REFUNDS, user_id=payment.payer_user_id,
                          organization_id=payment.payer_organization_id,
                          currency=payment.currency)


def expire(session: Session, job: Job, payment: JobPayment, now: datetime) -> None:
    """The provider let the hold lapse: the books give the escrow back to the payer."""
    check_payment_transition(payment.status, PaymentStatus.EXPIRED)
    expire_hold(session, job, job_hold(job, payment))
    payment.status = PaymentStatus.EXPIRED.value
    payment.refunded_cents = payment.held_cents
    payment.settled_at = now
    _told(session, job, payment, "payment.expired", now)
    invoices.settled(session, job, 0, now)


def increment_hold(session: Session, job: Job, payment: JobPayment, new_amount_cents: int,
                   now: datetime) -> bool:
    """Grow the job's hold (its payment row locked by the caller) to `new_amount_cents`:
    the provider's incremental authorization, then ONE keyed ledger transaction moving the
    increase from the payer's funding into escrow. False when the card declined the
    increase, or the processor refused it (a card without incremental authorization, an
    authorization it no longer knows): the hold stays as it was, and the amount goes to
    the payer. A hold already that large changes nothing.

    The key names the authorization (a re-authorized hold is a new PaymentIntent) and the
    attempt (`declined_increments` + 1: a declined try is not replayed from the
    processor's idempotency cache when the payer approves later). A retry after the
    processor could not be reached (the transaction rolled back) reuses it: one increase."""
    check_payment_transition(payment.status, PaymentStatus.RELEASED)  # still held
    more = new_amount_cents - payment.held_cents
    if more <= 0:
        return True
    key = (f"increment:{payment.authorization_id}:{new_amount_cents}:"
           f"{payment.declined_increments + 1}")
    try:
        grown = provider().increment(payment.authorization_id, new_amount_cents, key)
    except PaymentRejected:
        grown = None
    except PaymentError as exc:
        raise _unavailable() from exc
    if grown is None or grown.status == "declined":
        increment_declined(payment)
        return False
    ledger.hold(session, job.id, payer_of(job), more, key, payment.currency)
    payment.held_cents = new_amount_cents
    if grown.expires_at is not None:
        payment.authorization_expires_at = grown.expires_at
    return True


def increment_declined(payment: JobPayment) -> None:
    """One more declined increment on this hold: the next try has a key of its own."""
    payment.declined_increments += 1


def expire_hold(session: Session, job: Job, hold: Hold) -> None:
    """A lapsed hold's escrow back to the payer, in the books."""
    ledger.post(session, f"settle:{hold.key}", TransactionKind.REFUND,
                [ledger.Entry(ledger.account(session, AccountKind.ESCROW, job_id=job.id,
                                             currency=hold.currency), -hold.held_cents),
                 ledger.Entry(_refunds(session, hold), hold.held_cents)], job_id=job.id)


def release_due_at(job: Job, done_at: datetime | None = None) -> datetime:
    """When a completed job's hold (or a stage done at `done_at`) goes to the worker unless
    the payer confirms first."""
    s = settings()
    hours = (s.auto_release_urgent_hours if job.urgency == Urgency.URGENT.value
             else s.auto_release_hours)
    done_at = done_at or job.completed_at
    assert done_at is not None
    return done_at + timedelta(hours=hours)


def has_milestones(session: Session, job_id: int) -> bool:
    """Whether the job is paid in stages (services/milestones.py) instead of one hold."""
    return session.execute(select(JobMilestone.id).where(JobMilestone.job_id == job_id)
                           .limit(1)).first() is not None


def completed(session: Session, job: Job) -> None:
    """The worker marked the job done: its automatic release is timed from now (an RQ timer
    after the commit; the sweeper catches a timer that was lost)."""
    if job.completed_at is None or has_milestones(session, job.id):
        return  # a job paid in stages releases each on its own timer
    due = release_due_at(job)
    job_id = job.id
    on_commit(session, lambda _: queues.schedule_auto_release(job_id, due))


def cancel_fee_cents(call_out_cents: int) -> int:
    """What calling a job off costs once the worker has set out: CANCEL_FEE_CENTS, else the
    category's call-out fee (what their trip there is priced at)."""
    configured = settings().cancel_fee_cents
    return call_out_cents if configured is None else configured


def job_ended(session: Session, job: Job, previous: str, now: datetime) -> None:
    """A job cancelled or unfilled (its row locked by `jobs.transition`): the hold goes back
    at once, less the cancellation fee when the worker had set out. Jobs booked without a
    hold (before escrow) have nothing to give back."""
    payment = locked_payment(session, job.id)
    if payment is None or payment.status != PaymentStatus.HELD.value:
        return
    owed = 0
    if JobStatus(previous) in SET_OUT_STATUSES:
        owed = cancel_fee_cents(job.category.call_out_cents)
    settle(session, job, payment, owed, TransactionKind.FEE, now)
