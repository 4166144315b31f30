"""A job paid in stages, moved along: the worker marks the current stage done, the payer
confirms it (or nobody says anything for AUTO_RELEASE_HOURS, AUTO_RELEASE_URGENT_HOURS for
urgent jobs, and the system does: an RQ timer per stage, the sweeper as backstop), which
releases that stage's hold to the worker less the fee and holds the next one. The job is
`completed` when its last stage is done and `closed` when its last stage is released,
through `jobs.transition`, so the events are recorded.

Every step locks the job's row first, then its stages' rows: a confirmation, the timer,
the sweeper and a cancellation racing each other end a stage exactly once. The money
itself is in `services.milestone_holds`."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.aftercommit import on_commit
from dispatch.db.job_rows import lock_job, record_event
from dispatch.db.models import Job, JobMilestone, Role, User
from dispatch.domain.errors import Conflict, NotFound, not_found, refusal
from dispatch.domain.states import Actor, JobStatus, MilestoneStatus, check_milestone_transition
from dispatch.infra import queues
from dispatch.services import escrow, milestone_holds, push
from dispatch.services.context import settings
from dispatch.services.jobs import REQUESTER_ROLES, transition

log = logging.getLogger(__name__)

# A done stage is released (by its timer, the sweeper) only while the job's work stands: a
# disputed job waits for the dispute, a closed or called-off one has nothing to release.
RELEASING_STATUSES = frozenset({JobStatus.IN_PROGRESS.value, JobStatus.COMPLETED.value})
# A lapsed held stage is held again until the job's money is settled: not for a disputed
# job (it waits for the dispute) nor one closed or called off.
NOT_HELD_AGAIN = frozenset({JobStatus.DISPUTED.value, JobStatus.CLOSED.value,
                            JobStatus.CANCELLED.value, JobStatus.UNFILLED.value})


def _stage(stages: list[JobMilestone], position: int) -> JobMilestone:
    for milestone in stages:
        if milestone.position == position:
            return milestone
    raise not_found("milestone")


def _event(session: Session, job: Job, milestone: JobMilestone, actor: Actor, now: datetime,
           actor_user_id: int | None = None, **detail: object) -> None:
    record_event(session, job, "milestone", actor, now=now, actor_user_id=actor_user_id,
                 detail={"position": milestone.position, "milestone": milestone.status,
                         **detail})
    push.job_changed(session, job)


def mark_done(session: Session, worker: User, job_id: int, position: int) -> Job:
    """The assigned worker says this stage's work is done: its release is timed from now.
    The last stage done completes the job. Again on a stage already done: nothing more."""
    job = lock_job(session, job_id)
    if job.worker_id != worker.id:
        raise not_found("job")
    stages = milestone_holds.locked_milestones(session, job.id)
    milestone = _stage(stages, position)
    if milestone.status in (MilestoneStatus.DONE.value, MilestoneStatus.RELEASED.value):
        session.rollback()
        return job
    if job.status != JobStatus.IN_PROGRESS.value:
        raise refusal(Conflict, "not_in_progress", "status", "milestone.not_in_progress")
    if milestone.status != MilestoneStatus.HELD.value:
        raise refusal(Conflict, "milestone_not_held", "milestone", "milestone.not_held")
    now = clock.now()
    check_milestone_transition(milestone.status, MilestoneStatus.DONE)
    milestone.status = MilestoneStatus.DONE.value
    milestone.done_at = now
    _event(session, job, milestone, Actor.WORKER, now, worker.id)
    if milestone is stages[-1]:
        transition(session, job, JobStatus.COMPLETED, Actor.WORKER, now=now,
                   actor_user_id=worker.id)
    due, milestone_id = escrow.release_due_at(job, now), milestone.id
    on_commit(session, lambda _: queues.schedule_milestone_release(milestone_id, due))
    session.commit()
    return job


def confirm(session: Session, user: User, job_id: int, position: int) -> Job:
    """The payer confirms a done stage: its hold is captured and released to the worker
    less the platform's fee, and the next stage is held (or, the last one, the job closed).
    A repeat of a confirmation that went through charges nothing more."""
    job = lock_job(session, job_id)
    if Role(user.role) not in REQUESTER_ROLES or job.resident_id != user.id:
        raise not_found("job")
    stages = milestone_holds.locked_milestones(session, job.id)
    milestone = _stage(stages, position)
    if milestone.status == MilestoneStatus.RELEASED.value:
        session.rollback()
        return job
    if milestone.status != MilestoneStatus.DONE.value:
        raise refusal(Conflict, "milestone_not_done", "milestone", "milestone.not_done")
    _release(session, job, stages, milestone, clock.now(), Actor.RESIDENT, user.id, "confirmed")
    session.commit()
    return job


def auto_release(session: Session, milestone_id: int, now: datetime) -> bool:
    """The timer's (and the sweeper's) release of one done stage: True when it released it.
    Early (a clock moved), already confirmed, cancelled or gone, its job no longer in
    progress or completed (a dispute), or its lapsed hold refused again (the payer's to
    sort out, `hold_declined`): it does nothing."""
    job_id = session.execute(select(JobMilestone.job_id).where(
        JobMilestone.id == milestone_id)).scalar_one_or_none()
    session.rollback()
    if job_id is None:
        return False
    try:
        job = lock_job(session, job_id)
    except NotFound:
        session.rollback()
        return False
    stages = milestone_holds.locked_milestones(session, job.id)
    milestone = next(m for m in stages if m.id == milestone_id)
    if (milestone.status != MilestoneStatus.DONE.value or milestone.done_at is None
            or job.status not in RELEASING_STATUSES or milestone.hold_declined is not None
            or escrow.release_due_at(job, milestone.done_at) > now):
        session.rollback()
        return False
    released = _release(session, job, stages, milestone, now, Actor.SYSTEM, None,
                        "auto_released")
    session.commit()
    return released


def _release(session: Session, job: Job, stages: list[JobMilestone], milestone: JobMilestone,
             now: datetime, actor: Actor, actor_user_id: int | None, how: str,
             payment_method: str | None = None) -> bool:
    """Release a done stage and hold the next (the last: the invoice paid, the job closed).
    False when its hold had lapsed and holding it again was refused: it stays done and the
    payer is told (`hold_declined` on the job's page), to try again (`hold_again`)."""
    done = milestone_holds.release(session, job, milestone, now, payment_method)
    if done is None:
        _event(session, job, milestone, actor, now, actor_user_id, escrow="lapsed",
               hold_declined=milestone.hold_declined)
        return False
    _event(session, job, milestone, actor, now, actor_user_id, escrow=how,
           charged_cents=done.charged_cents, worker_cents=done.worker_cents,
           fee_cents=done.fee_cents)
    following = [m for m in stages if m.position > milestone.position]
    if not following:
        milestone_holds.paid_in_full(session, job, now)
        transition(session, job, JobStatus.CLOSED, actor, now=now,
                   actor_user_id=actor_user_id, detail={"escrow": how})
        return True
    _hold(session, job, following[0], now)
    return True


def _hold(session: Session, job: Job, milestone: JobMilestone, now: datetime,
          payment_method: str | None = None) -> bool:
    held = milestone_holds.hold_next(session, job, milestone, now, payment_method)
    _event(session, job, milestone, Actor.SYSTEM, now,
           **({} if held else {"hold_declined": milestone.hold_declined}))
    return held


def hold_again(session: Session, user: User, job_id: int, position: int,
               payment_method: str | None) -> Job:
    """The payer tries again to hold a stage whose hold was refused (a declined card): with
    the same card, or another one. The work on it waits until it is held. A done stage
    whose lapsed hold could not be held again is held and released at once."""
    job = lock_job(session, job_id)
    if Role(user.role) not in REQUESTER_ROLES or job.resident_id != user.id:
        raise not_found("job")
    stages = milestone_holds.locked_milestones(session, job.id)
    milestone = _stage(stages, position)
    if milestone.status == MilestoneStatus.HELD.value:
        session.rollback()
        return job
    waiting = (milestone.status in (MilestoneStatus.PLANNED.value, MilestoneStatus.DONE.value)
               and milestone.hold_declined is not None)
    if (not waiting or job.status in (JobStatus.CANCELLED.value, JobStatus.CLOSED.value)
            or (milestone.status == MilestoneStatus.DONE.value
                and job.status not in RELEASING_STATUSES)):
        raise refusal(Conflict, "milestone_not_waiting", "milestone", "milestone.not_waiting")
    if milestone.status == MilestoneStatus.DONE.value:
        _release(session, job, stages, milestone, clock.now(), Actor.RESIDENT, user.id,
                 "confirmed", payment_method)
    else:
        _hold(session, job, milestone, clock.now(), payment_method)
    session.commit()
    return job


def sweep(session: Session, now: datetime | None = None) -> int:
    """The backstop for lost timers: done stages whose release is due; and held stages whose
    hold the provider let lapse, held again. Returns how many stages it moved. Each stage
    is its own transaction: one that fails is logged and the others still move."""
    now = now or clock.now()
    s = settings()
    soonest = timedelta(hours=min(s.auto_release_hours, s.auto_release_urgent_hours))
    due = session.execute(select(JobMilestone.id).where(
        JobMilestone.status == MilestoneStatus.DONE.value,
        JobMilestone.done_at <= now - soonest)).scalars().all()
    session.rollback()
    moved = 0
    for milestone_id in due:
        try:
            moved += auto_release(session, milestone_id, now)
        except Exception:
            session.rollback()
            log.exception("releasing stage %s failed", milestone_id)
    expired = session.execute(select(JobMilestone.job_id, JobMilestone.id).where(
        JobMilestone.status == MilestoneStatus.HELD.value,
        JobMilestone.authorization_expires_at <= now)).all()
    session.rollback()
    for job_id, milestone_id in expired:
        try:
            moved += _hold_lapsed(session, job_id, milestone_id, now)
        except Exception:
            session.rollback()
            log.exception("holding stage %s again failed", milestone_id)
    return moved


def _hold_lapsed(session: Session, job_id: int, milestone_id: int, now: datetime) -> bool:
    """One held stage whose hold lapsed, given back and held again (its own transaction);
    not for a job disputed, closed or called off."""
    job = lock_job(session, job_id)
    milestone = next(m for m in milestone_holds.locked_milestones(session, job_id)
                     if m.id == milestone_id)
    if (job.status in NOT_HELD_AGAIN or milestone.status != MilestoneStatus.HELD.value
            or milestone.authorization_expires_at is None
            or milestone.authorization_expires_at > now):
        session.rollback()
        return False
    held = milestone_holds.lapsed(session, job, milestone, now)
    _event(session, job, milestone, Actor.SYSTEM, now, escrow="lapsed",
           **({} if held else {"hold_declined": milestone.hold_declined}))
    session.commit()
    return True
