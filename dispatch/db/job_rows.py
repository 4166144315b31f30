"""The job row as every service handles it: locked in one order, its events appended, and
the SQL twin of the rule for which job occupies its worker; and the bulk status updates of
offers and workers, each checked against its state machine (`dispatch.domain.states`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, or_, select, update
from sqlalchemy.orm import Session, scoped_session

from dispatch.db.models import Job, JobEvent, Offer, Urgency, Worker
from dispatch.domain.errors import not_found
from dispatch.domain.states import (
    UNDER_WAY_STATUSES,
    Actor,
    Availability,
    JobStatus,
    OfferStatus,
    availability_from,
    check_availability_transition,
    check_offer_transition,
)


def record_event(
    session: Session, job: Job, kind: str, actor: Actor, *, now: datetime,
    actor_user_id: int | None = None, from_status: str | None = None,
    to_status: str | None = None, detail: dict[str, Any] | None = None,
) -> JobEvent:
    event = JobEvent(job_id=job.id, at=now, actor=actor.value, actor_user_id=actor_user_id,
                     kind=kind, from_status=from_status, to_status=to_status,
                     detail=detail or {})
    session.add(event)
    return event

def occupying_job(job: Any = Job) -> ColumnElement[bool]:
    """SQL twin of `occupies_worker`: the job (at most one per worker) they are on now.
    `job`: an alias of `Job`, when the statement reads two jobs."""
    return or_(job.status.in_([s.value for s in UNDER_WAY_STATUSES]),
               and_(job.urgency == Urgency.URGENT.value,
                    job.status == JobStatus.ASSIGNED.value,
                    job.queued_behind_job_id.is_(None)))

def commit_keeping_loaded(session: Session) -> None:
    """Commit without expiring what the session holds: the answer shows the job (or offer)
    as this transaction wrote it, instead of reading it and what it refers to back (a
    booking's job and category, an accept's offer, job, category and worker)."""
    real = session() if isinstance(session, scoped_session) else session
    previous, real.expire_on_commit = real.expire_on_commit, False
    try:
        real.commit()
    finally:
        real.expire_on_commit = previous

def lock_job(session: Session, job_id: int) -> Job:
    """The job row, locked for this transaction. Lock order everywhere: job, offer, worker.

    FOR NO KEY UPDATE, not FOR UPDATE: it excludes every other step on this job just the
    same, but lets a row that refers to the job (a job queued behind it, an offer, an
    event) be written meanwhile. Their foreign-key check takes a key-share lock on this row;
    under FOR UPDATE an accept queueing a job behind this one (job, offer, worker, then this
    key-share) deadlocked with this job's completion (this job, then the worker)."""
    job = session.execute(
        select(Job).where(Job.id == job_id).with_for_update(key_share=True)
    ).scalar_one_or_none()
    if job is None:
        raise not_found("job")
    return job



def offers_moving(current: OfferStatus, target: OfferStatus, *where: Any,
                  **values: Any) -> Update:
    """UPDATE of every offer in `current` matching `where` to `target` (a move the offer
    state machine allows, or this raises before any SQL is written)."""
    check_offer_transition(current, target)
    return (update(Offer).where(Offer.status == current.value, *where)
            .values(status=target.value, **values))


def workers_moving(target: Availability, *where: Any, current: Availability | None = None,
                   **values: Any) -> Update:
    """UPDATE of every worker matching `where` to `target`: from `current` only when given
    (a rule stricter than the map, e.g. only an online worker takes an urgent job), else
    from every availability the map lets reach `target`."""
    if current is not None:
        check_availability_transition(current, target)
        sources = [current.value]
    else:
        sources = availability_from(target)
    return (update(Worker).where(Worker.availability.in_(sources), *where)
            .values(availability=target.value, **values))
