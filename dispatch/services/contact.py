"""Keeping resident and worker reachable without their real numbers: a masked session opens
when a job is assigned and closes a while after it ends. When the pool cannot serve a pair,
the job goes on and the failure is visible (a job event and an operator alert)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.job_rows import lock_job, record_event
from dispatch.db.models import Job, User
from dispatch.domain.states import ACTIVE_JOB_STATUSES, DONE_STATUSES, Actor, JobStatus
from dispatch.services import alerts, push
from notifications import masking
from notifications.masking import Participant, PoolExhausted

log = logging.getLogger(__name__)


def open_for_job(session: Session, job_id: int) -> str | None:
    """Open (or find) the job's masked session in a transaction of its own (the sweeper's
    retry); returns its pool number, or None when the pool is exhausted."""
    job = lock_job(session, job_id)
    now = clock.now()
    if JobStatus(job.status) not in ACTIVE_JOB_STATUSES or job.worker_id is None:
        session.rollback()
        return None
    number = open_in_transaction(session, job, now)
    session.commit()
    return number


def open_in_transaction(session: Session, job: Job, now: datetime) -> str | None:
    """Open (or find) the masked session of the (locked, assigned) job in the caller's
    transaction: the accept opens it in its own, so the parties hear of the job once, with
    the number already there. An exhausted pool is recorded and alerted, never raised: the
    job proceeds without a masked number."""
    assert job.worker_id is not None
    both = {u.id: u for u in session.execute(
        select(User).where(User.id.in_((job.resident_id, job.worker_id)))).scalars()}
    resident, worker = both[job.resident_id], both[job.worker_id]
    people = (Participant("resident", resident.id, resident.phone_e164),
              Participant("worker", worker.id, worker.phone_e164))
    try:
        _, number = masking.open_session(session, job.id, people, now)
    except PoolExhausted as exc:
        record_event(session, job, "masking_unavailable", Actor.SYSTEM, now=now,
                     detail={"reason": "no pool number is free for this pair"})
        alerts.raise_alert(session, "masking_unavailable", job.id, {"error": str(exc)})
        log.warning("job %s proceeds without a masked number: %s", job.id, exc)
        return None
    record_event(session, job, "masked_session_opened", Actor.SYSTEM, now=now,
                 detail={"pool_number": number})
    alerts.resolve(session, "masking_unavailable", job.id, "a masked number is open", now)
    push.job_changed(session, job)  # the parties' pages fetch the number to call
    return number


def schedule_close(session: Session, job: Job, target: JobStatus, now: datetime) -> None:
    """Called as the job leaves its active statuses (same transaction). Work that was done
    keeps its number a while (a question after the visit, keys left behind); every other
    exit (cancelled, unfilled, disputed, back to the cascade) gives it back at once."""
    if target in DONE_STATUSES:
        grace = timedelta(minutes=current_app.config["DISPATCH"].masking_close_after_minutes)
        masking.schedule_close(session, job.id, now + grace)
    else:
        masking.close_for_job(session, job.id, now)


def masked_number(session: Session, job: Job) -> str | None:
    return masking.pool_number_for(session, job.id, clock.now())


def sweep(session: Session) -> int:
    """Close sessions whose time has come, and open sessions for active jobs that have none:
    a retry (the pool may have freed up; failures are retried at most every 5 minutes and
    alert once, until a number opens or the job ends: `alerts`), or a
    booked window coming up (`masking_open_before_minutes` ahead, or once the worker sets
    out)."""
    now = clock.now()
    active = [s.value for s in ACTIVE_JOB_STATUSES]
    # A session whose job ended by a path that did not say so gives its number back too.
    session.execute(text("""
UPDATE masked_sessions s SET close_after = :now FROM jobs j
 WHERE j.id = s.job_id AND s.closed_at IS NULL AND s.close_after IS NULL
   AND NOT (j.status = ANY(:active))"""), {"now": now, "active": active})
    closed = masking.close_due(session, now)
    session.commit()
    waiting = session.execute(text("""
SELECT j.id FROM jobs j
 WHERE j.status = ANY(:active)
   AND j.assigned_at < :settled
   AND (j.urgency <> 'scheduled' OR j.status <> 'assigned' OR j.window_start <= :open_from)
   AND NOT EXISTS (SELECT 1 FROM masked_sessions s WHERE s.job_id = j.id
                    AND s.closed_at IS NULL)
   AND NOT EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.id
                    AND e.kind = 'masking_unavailable' AND e.at > :recent)
"""), {"active": active, "settled": now - timedelta(seconds=10),
       "recent": now - timedelta(minutes=5),
       "open_from": now + timedelta(
           minutes=current_app.config["DISPATCH"].masking_open_before_minutes)}
    ).scalars().all()
    session.rollback()
    for job_id in waiting:
        open_for_job(session, job_id)
    return closed + len(waiting)

def open_masked_session(session: Session, job: Job, now: datetime) -> None:
    """In the caller's transaction (an accept, or a worker setting out for a booked window),
    under a savepoint: a failure there loses the masked number (the sweeper retries it),
    never the step itself."""
    try:
        with session.begin_nested():
            open_in_transaction(session, job, now)
    except Exception:
        log.exception("could not open the masked session of job %s", job.id)
