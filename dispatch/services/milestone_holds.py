"""The money of a job paid in stages (`job_milestones`): one hold per stage, never all at
once. A card processor's manual-capture authorization is captured once and lapses after 7
days, so a long job cannot sit on one hold: the first stage is held at booking (a declined
card stores no job, as for any booking), each next one when the stage before it is
released, so no hold waits longer than its own stage. Every hold and release is its own
keyed ledger transaction on the job's escrow account (`hold:milestone:{id}`,
`settle:milestone:{id}`), settled by `escrow.end_hold` exactly as a whole job's hold is.

The steps that move the job (done, confirm, auto-release) live in `services.milestones`;
this module is what `services.jobs` calls when a job is cancelled, so it does not import
it.

Each stage's money is also told like a whole job's: the job's one invoice (opened at
booking for the plan's total, paid for what the stages captured when the last one is
released or the job ends) and an organization's `payment.*` webhook per stage (keys
`payment.<event>:milestone:{id}`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.db.job_rows import record_event
from dispatch.db.models import Job, JobMilestone
from dispatch.domain.commands import MilestoneIn
from dispatch.domain.errors import DomainError, InvalidInput
from dispatch.domain.money import TransactionKind
from dispatch.domain.states import Actor, JobStatus, MilestoneStatus, check_milestone_transition
from dispatch.infra.payments.base import Authorization
from dispatch.services import escrow, invoices, ledger, org_hooks
from dispatch.services.context import settings


def locked_milestones(session: Session, job_id: int) -> list[JobMilestone]:
    """The job's stages in order, locked (after the job's own row: the lock order)."""
    return list(session.execute(
        select(JobMilestone).where(JobMilestone.job_id == job_id)
        .order_by(JobMilestone.position).with_for_update()
        .execution_options(populate_existing=True)).scalars())


def milestones_of(session: Session, job_id: int) -> list[JobMilestone]:
    return list(session.execute(select(JobMilestone).where(JobMilestone.job_id == job_id)
                                .order_by(JobMilestone.position)).scalars())


def _key(milestone: JobMilestone) -> str:
    """The stage's name in idempotency keys; a stage held again (its first hold lapsed)
    counts the attempt that held it."""
    if milestone.hold_attempts <= 1:
        return f"milestone:{milestone.id}"
    return f"milestone:{milestone.id}:{milestone.hold_attempts}"


def hold_of(job: Job, milestone: JobMilestone) -> escrow.Hold:
    payer = escrow.payer_of(job)
    assert milestone.authorization_id is not None
    return escrow.Hold(_key(milestone), milestone.authorization_id,
                       milestone.amount_cents, milestone.currency, payer.user_id,
                       payer.organization_id)


def _told(session: Session, job: Job, milestone: JobMilestone, event: str,
          now: datetime) -> None:
    """The paying organization's webhook hears of one stage's money (once per stage and
    event), with the same fields as a whole job's `payment.*` events and the stage's."""
    charged = milestone.captured_cents
    ended = event != "payment.held"
    org_hooks.money_event(session, job, event, {
        "milestone_id": milestone.id, "position": milestone.position,
        "payment_status": milestone.status, "currency": milestone.currency,
        "held_cents": milestone.amount_cents, "charged_cents": charged,
        "refunded_cents": milestone.amount_cents - charged if ended else 0},
        f"{event}:milestone:{milestone.id}", now)


def _place(session: Session, job: Job, milestone: JobMilestone, held: Authorization,
           now: datetime) -> None:
    """The stage's row and the ledger's hold for an authorization just placed."""
    milestone.authorization_id = held.id
    milestone.authorization_expires_at = held.expires_at
    if held.customer:
        milestone.customer_id = held.customer
    milestone.held_at = now
    milestone.hold_declined = None
    ledger.hold(session, job.id, escrow.payer_of(job), milestone.amount_cents,
                f"hold:{_key(milestone)}", milestone.currency)
    _told(session, job, milestone, "payment.held", now)


def _held(session: Session, job: Job, milestone: JobMilestone, held: Authorization,
          now: datetime) -> None:
    check_milestone_transition(milestone.status, MilestoneStatus.HELD)
    milestone.status = MilestoneStatus.HELD.value
    _place(session, job, milestone, held, now)


def _hold_once_more(session: Session, job: Job, milestone: JobMilestone, now: datetime,
                    payment_method: str | None) -> Authorization | None:
    """Another hold for the stage (a new attempt, its own key): on the card the booking
    kept (off-session, on its customer: Stripe), or on a card the payer gives now (kept
    reusable, for the stages after it). A refusal (a declined card, the provider down) is
    kept on the row (`hold_declined`) and None returned; a card the provider does not
    know, given by the payer now, is refused naming `payment_method`."""
    if payment_method:
        milestone.payment_method = payment_method
        milestone.customer_id = None
    milestone.hold_attempts += 1
    key = f"hold:milestone:{milestone.id}:{milestone.hold_attempts}"
    try:
        return escrow.authorize(milestone.amount_cents, milestone.payment_method, key,
                                reusable=milestone.customer_id is None,
                                customer=milestone.customer_id)
    except InvalidInput:
        if payment_method:
            raise
        milestone.hold_declined = "validation_failed"
    except DomainError as exc:
        milestone.hold_declined = str(exc.extra.get("decline_code") or exc.code)[:100]
    return None


def record_plan(session: Session, job: Job, plan: Sequence[MilestoneIn],
                payment_method: str | None, held: Authorization, now: datetime) -> None:
    """The booking's stages, the first held on `held` (placed for its amount), in the
    booking's transaction (`escrow.commit_booking`), and the job's invoice for the plan's
    total. The customer the booking's reusable hold attached the card to (Stripe) is kept
    on every stage: the later ones are held on it, off-session."""
    method = escrow.payment_method_for(payment_method)
    currency = settings().currency
    rows = [JobMilestone(job_id=job.id, position=i, title=m.title, amount_cents=m.amount_cents,
                         currency=currency, status=MilestoneStatus.PLANNED.value,
                         payment_method=method, customer_id=held.customer,
                         hold_attempts=1 if i == 1 else 0)
            for i, m in enumerate(plan, start=1)]
    session.add_all(rows)
    session.flush()
    _held(session, job, rows[0], held, now)
    invoices.open_for(session, job, sum(m.amount_cents for m in rows), now, currency)


def hold_next(session: Session, job: Job, milestone: JobMilestone, now: datetime,
              payment_method: str | None = None) -> bool:
    """Hold a planned stage (its job and row locked): True when held. A refusal (a declined
    card, the provider down) is kept on the row (`hold_declined`) and the stage waits; the
    payer is told on the job's page and may try again, with another card (one the provider
    does not know is refused naming `payment_method`)."""
    held = _hold_once_more(session, job, milestone, now, payment_method)
    if held is None:
        return False
    _held(session, job, milestone, held, now)
    return True


def _ended(session: Session, job: Job, milestone: JobMilestone, done: escrow.Settlement,
           target: MilestoneStatus, now: datetime) -> None:
    milestone.status = target.value
    milestone.captured_cents = done.charged_cents
    _told(session, job, milestone,
          "payment.captured" if done.charged_cents else "payment.voided", now)
    if done.charged_cents and done.refunded_cents:
        _told(session, job, milestone, "payment.refunded", now)


def _end(session: Session, job: Job, milestone: JobMilestone, charged_cents: int,
         kind: TransactionKind, target: MilestoneStatus, now: datetime) -> escrow.Settlement:
    """One stage's hold ended: `charged_cents` to the worker less the fee, the rest back."""
    check_milestone_transition(milestone.status, target)
    hold = hold_of(job, milestone)
    done = escrow.end_hold(session, job, hold, charged_cents, kind)
    if done is None:  # the provider let it lapse: the books give it back
        escrow.expire_hold(session, job, hold)
        done = escrow.Settlement(0, 0, 0, milestone.amount_cents)
    _ended(session, job, milestone, done, target, now)
    return done


def release(session: Session, job: Job, milestone: JobMilestone, now: datetime,
            payment_method: str | None = None) -> escrow.Settlement | None:
    """A done stage paid: captured whole, to the worker less the platform's fee. When its
    hold had lapsed (given back in the books) it is held again, still done, and captured on
    the new hold; None when that was refused: the stage stays done, the refusal on its row
    (`hold_declined`) for the payer, who may try again with another card (`hold_again`).
    A done stage with `hold_declined` has no hold in the books (it was given back)."""
    check_milestone_transition(milestone.status, MilestoneStatus.RELEASED)
    done = None
    if milestone.hold_declined is None:
        hold = hold_of(job, milestone)
        done = escrow.end_hold(session, job, hold, milestone.amount_cents,
                               TransactionKind.RELEASE)
        if done is None:
            escrow.expire_hold(session, job, hold)
            _told(session, job, milestone, "payment.expired", now)
    if done is None:
        if not hold_done_again(session, job, milestone, now, payment_method):
            return None
        done = escrow.end_hold(session, job, hold_of(job, milestone), milestone.amount_cents,
                               TransactionKind.RELEASE)
        if done is None:  # lapsed again at once: nothing held, the payer is asked again
            escrow.expire_hold(session, job, hold_of(job, milestone))
            milestone.hold_declined = "authorization_expired"
            return None
    _ended(session, job, milestone, done, MilestoneStatus.RELEASED, now)
    milestone.released_at = now
    return done


def hold_done_again(session: Session, job: Job, milestone: JobMilestone, now: datetime,
                    payment_method: str | None = None) -> bool:
    """A done stage whose hold lapsed held again, still done (True when held), so that its
    release captures on the new hold; a refusal is kept on the row (`hold_declined`)."""
    held = _hold_once_more(session, job, milestone, now, payment_method)
    if held is None:
        return False
    _place(session, job, milestone, held, now)
    return True


def paid_in_full(session: Session, job: Job, now: datetime) -> None:
    """Every stage ended (the last released, or the job called off): the job's invoice is
    paid for what the stages captured, or void when nothing was."""
    captured = session.execute(select(func.coalesce(func.sum(JobMilestone.captured_cents), 0))
                               .where(JobMilestone.job_id == job.id)).scalar_one()
    invoices.settled(session, job, int(captured), now)


def job_ended(session: Session, job: Job, previous: str, now: datetime) -> None:
    """A job paid in stages was called off (by `jobs.transition`, the job locked): released
    stages stay paid; a stage the worker marked done is paid (the work is there); the held
    one follows the cancellation rules (free before the worker set out, the cancellation fee
    after); planned ones are dropped. The invoice is then paid for what was captured, or
    void."""
    for milestone in locked_milestones(session, job.id):
        status = MilestoneStatus(milestone.status)
        if status is MilestoneStatus.DONE:
            paid = release(session, job, milestone, now)
            if paid is None:  # its hold lapsed and holding it again was refused
                check_milestone_transition(status, MilestoneStatus.CANCELLED)
                milestone.status = MilestoneStatus.CANCELLED.value
                milestone.cancelled_at = now
                paid = escrow.Settlement(0, 0, 0, 0)
            done = paid
        elif status is MilestoneStatus.HELD:
            owed = 0
            if JobStatus(previous) in escrow.SET_OUT_STATUSES:
                owed = escrow.cancel_fee_cents(job.category.call_out_cents)
            done = _end(session, job, milestone, owed, TransactionKind.FEE,
                        MilestoneStatus.CANCELLED, now)
            milestone.cancelled_at = now
        elif status is MilestoneStatus.PLANNED:
            check_milestone_transition(status, MilestoneStatus.CANCELLED)
            milestone.status = MilestoneStatus.CANCELLED.value
            milestone.cancelled_at = now
            continue
        else:
            continue
        record_event(session, job, "milestone", Actor.SYSTEM, now=now,
                     detail={"position": milestone.position, "milestone": milestone.status,
                             "escrow": "job_ended", "charged_cents": done.charged_cents,
                             "worker_cents": done.worker_cents, "fee_cents": done.fee_cents})
    paid_in_full(session, job, now)


def lapsed(session: Session, job: Job, milestone: JobMilestone, now: datetime) -> bool:
    """A held stage whose authorization the provider let lapse (7 days: a booked window far
    ahead, a stage the worker has not finished): the books give it back and it is held
    again at once on the same card; a refusal waits for the payer (`hold_declined`).
    True when it is held again."""
    escrow.expire_hold(session, job, hold_of(job, milestone))
    _told(session, job, milestone, "payment.expired", now)
    check_milestone_transition(milestone.status, MilestoneStatus.PLANNED)
    milestone.status = MilestoneStatus.PLANNED.value
    milestone.authorization_id = milestone.authorization_expires_at = None
    return hold_next(session, job, milestone, now)
