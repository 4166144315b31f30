"""Job status changes and who may see a job. Every change goes through `transition`, which
asks the state machine, stamps the job and appends the event in the same transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.job_rows import lock_job, offers_moving, record_event, workers_moving
from dispatch.db.models import Job, JobEvent, Offer, Role, Urgency, User, Worker
from dispatch.db.paging import Keyset, Page, PageRequest
from dispatch.domain.errors import Conflict, invalid, not_found, problem, refusal
from dispatch.domain.states import (
    ACTIVE_JOB_STATUSES,
    FINAL_JOB_STATUSES,
    Actor,
    Availability,
    JobStatus,
    OfferStatus,
    check_job_transition,
    occupies_worker,
)
from dispatch.infra.config import Settings
from dispatch.services import contact, escrow, milestone_holds, notify, org_hooks, push
from dispatch.services.context import eta_model, settings
from geo.eta import TravelMode, haversine_m

_STAMPS = {
    JobStatus.ASSIGNED: "assigned_at",
    JobStatus.ARRIVED: "arrived_at",
    JobStatus.COMPLETED: "completed_at",
}




def transition(
    session: Session, job: Job, target: JobStatus, actor: Actor, *, now: datetime,
    actor_user_id: int | None = None, detail: dict[str, Any] | None = None,
) -> None:
    """Move a job (already locked by the caller) along the state machine and log it. Leaving
    the active statuses frees the assigned worker, whatever the exit (done, cancelled,
    disputed), so no path can leave a worker busy without a job."""
    current = job.status
    check_job_transition(current, target, actor)
    job.status = target.value
    stamp = _STAMPS.get(target)
    if stamp:
        setattr(job, stamp, now)
    if target in FINAL_JOB_STATUSES and job.ended_at is None:
        job.ended_at = now
    if job.worker_id is not None:
        queued = job.queued_behind_job_id is not None
        if queued and target is not JobStatus.ASSIGNED:
            job.queued_behind_job_id = None  # called off while waiting (a cancel)
        if (occupies_worker(job.urgency, current, queued)
                and not occupies_worker(job.urgency, target)):
            release_or_start_queued(session, job, now)
        if JobStatus(current) in ACTIVE_JOB_STATUSES and target not in ACTIVE_JOB_STATUSES:
            contact.schedule_close(session, job, target, now)
    if target in escrow.HOLD_ENDING_STATUSES:  # however it ended, the hold goes back now
        escrow.job_ended(session, job, current, now)
        milestone_holds.job_ended(session, job, current, now)
    elif target is JobStatus.COMPLETED:
        escrow.completed(session, job)
    record_event(session, job, "status", actor, now=now, actor_user_id=actor_user_id,
                 from_status=current, to_status=target.value, detail=detail)
    push.job_changed(session, job)
    notify.job_status_changed(session, job, target.value, current)
    org_hooks.job_status_changed(session, job, current, target.value, now)








def withdraw_pending_offers(session: Session, job: Job, now: datetime,
                            except_offer_id: int | None = None) -> int:
    stmt = (offers_moving(OfferStatus.PENDING, OfferStatus.WITHDRAWN, Offer.job_id == job.id,
                          responded_at=now)
            .returning(Offer.worker_id, Offer.id))
    if except_offer_id is not None:
        stmt = stmt.where(Offer.id != except_offer_id)
    closed = [(w, o) for w, o in session.execute(stmt).all()]
    push.offers_closed(session, closed, OfferStatus.WITHDRAWN.value)
    return len(closed)


def release_or_start_queued(session: Session, job: Job, now: datetime) -> None:
    """The job occupying a worker ended. A job queued behind it becomes their current one
    at once (they stay busy and set out for it); otherwise they are free for offers.

    The worker row is locked first, so an accept queueing a job behind this one (which takes
    the same lock) either lands before this look and is started, or sees the worker free."""

    assert job.worker_id is not None
    session.flush()  # this job's new status is in the database before the next one starts
    worker = session.execute(select(
        Worker.travel_mode, Worker.lat, Worker.lng, Worker.location_at).where(
        Worker.user_id == job.worker_id).with_for_update()).one()
    queued = session.execute(
        select(Job).where(Job.queued_behind_job_id == job.id).with_for_update()
    ).scalar_one_or_none()
    if queued is None:
        release_worker(session, job.worker_id)
        return
    s = settings()
    # They leave from the job that ended, or, called off before they got there, from
    # wherever their phone last said they were.
    origin = (job.lat, job.lng)
    fresh = now - timedelta(seconds=s.location_max_age_s)
    if (job.arrived_at is None and worker.lat is not None and worker.location_at is not None
            and worker.location_at >= fresh):
        origin = (worker.lat, worker.lng)
    trip_s = eta_model(s).eta_seconds(
        haversine_m(*origin, queued.lat, queued.lng), worker.travel_mode)
    queued.queued_behind_job_id = None
    queued.estimated_arrival = now + timedelta(seconds=trip_s)
    record_event(session, queued, "worker_free", Actor.SYSTEM, now=now,
                 actor_user_id=job.worker_id,
                 detail={"previous_job_id": job.id, "eta_seconds": round(trip_s)})
    push.job_changed(session, queued)
    notify.worker_free(session, queued)


def release_worker(session: Session, worker_id: int) -> None:
    """A worker whose job ended is free for offers again (if they had not gone offline)."""
    session.execute(workers_moving(Availability.ONLINE, Worker.user_id == worker_id,
                                   current=Availability.BUSY))


def visible_job(session: Session, user: User, job_id: int) -> Job:
    """A job the caller may see: their own request, their assignment, or any for an admin.

    Strangers get 404, not 403, so job ids cannot be probed."""
    job = session.get(Job, job_id)
    if job is None or not can_see(user, job):
        raise not_found("job")
    return job


def job_events(session: Session, job: Job, page: PageRequest) -> Page[JobEvent]:
    """The job's history, oldest first, a page at a time."""
    return Keyset((JobEvent.id,)).page(session, select(JobEvent).where(JobEvent.job_id == job.id),
                                       page, lambda event: (event.id,))


# Who books: residents for themselves, property managers for their units.
REQUESTER_ROLES = frozenset({Role.RESIDENT, Role.PROPERTY_MANAGER})


def can_see(user: User, job: Job) -> bool:
    role = Role(user.role)
    return (role is Role.ADMIN or (role in REQUESTER_ROLES and job.resident_id == user.id)
            or (role is Role.WORKER and job.worker_id == user.id))


NEWEST_JOBS_FIRST = Keyset((Job.id,), descending=True)


def jobs_for(session: Session, user: User, status: str | None,
             page: PageRequest) -> Page[Job]:
    """The caller's jobs, newest first, a page at a time."""
    stmt = select(Job)
    role = Role(user.role)
    if role in REQUESTER_ROLES:
        stmt = stmt.where(Job.resident_id == user.id)
    elif role is Role.WORKER:
        stmt = stmt.where(Job.worker_id == user.id)
    if status:
        stmt = stmt.where(Job.status == status)
    return NEWEST_JOBS_FIRST.page(session, stmt, page, lambda job: (job.id,))


_WORKER_MOVES = {JobStatus.EN_ROUTE, JobStatus.ARRIVED, JobStatus.IN_PROGRESS,
                 JobStatus.COMPLETED}


def worker_update_status(session: Session, worker: User, job_id: int,
                         target: JobStatus) -> Job:
    """The assigned worker reports progress; finishing frees them for the next offer."""
    if target not in _WORKER_MOVES:
        raise invalid("status", "status.not_for_workers", status=target.value.replace("_", " "))
    job = lock_job(session, job_id)
    now = clock.now()
    if job.worker_id != worker.id:
        raise not_found("job")
    check_job_transition(job.status, target, Actor.WORKER)
    if target is JobStatus.COMPLETED and escrow.has_milestones(session, job.id):
        # completed when its last stage is marked done (services/milestones.py)
        raise refusal(Conflict, "paid_in_stages", "status", "milestone.mark_each")
    if job.queued_behind_job_id is not None:
        raise _busy()  # queued: it starts when the job they are on ends
    setting_out = (not occupies_worker(job.urgency, job.status)
                   and occupies_worker(job.urgency, target))
    if setting_out:
        take_worker_for(session, job, worker.id)
        _check_not_too_early(session, job, now)
    transition(session, job, target, Actor.WORKER, now=now, actor_user_id=worker.id)
    try:
        if setting_out and job.urgency == Urgency.SCHEDULED.value:
            # A booked window's masked number may not be open yet (it opens shortly before
            # the window): setting out opens it now, not at the sweeper's next pass.
            session.flush()  # a double booking fails here, not inside the masking's savepoint
            contact.open_masked_session(session, job, now)
        session.commit()
    except IntegrityError as exc:  # the one-occupying-job index: a race with an accept
        session.rollback()
        raise _busy() from exc
    return job


def set_out_from(job: Job, worker: Worker | None, s: Settings) -> datetime | None:
    """When the worker may set out for a booked window: its start, less their trip there
    from where their phone last was (start-up time only when it never said), less
    `set_out_margin_minutes`. None for an urgent job: they go at once."""
    if job.window_start is None or job.urgency != Urgency.SCHEDULED.value:
        return None
    distance_m = 0.0
    mode = TravelMode.CAR.value
    if worker is not None:
        mode = worker.travel_mode
        if worker.lat is not None and worker.lng is not None:
            distance_m = haversine_m(worker.lat, worker.lng, job.lat, job.lng)
    trip = timedelta(seconds=eta_model(s).eta_seconds(distance_m, mode))
    return job.window_start - trip - timedelta(minutes=s.set_out_margin_minutes)


def _check_not_too_early(session: Session, job: Job, now: datetime) -> None:
    """Setting out texts the tenant "on the way": not at midnight for a 09:00 window."""
    s = settings()
    start = set_out_from(job, job.worker, s)
    if start is None or now >= start:
        return
    session.rollback()
    found = problem("status", "status.too_early", time=_local_text(start, now, s))
    raise Conflict("too_early_to_set_out", found.problem, [found],
                   {"set_out_from": start.isoformat()})


def _local_text(at: datetime, now: datetime, s: Settings) -> str:
    """"08:10 PST", or "Fri Dec 4, 08:10 PST" when it is not today there."""
    zone = ZoneInfo(s.service_timezone)
    local = at.astimezone(zone)
    day = "" if local.date() == now.astimezone(zone).date() else (
        f"{local:%a %b} {local.day}, ")
    return f"{day}{local:%H:%M %Z}"


def _busy() -> Conflict:
    return refusal(Conflict, "worker_unavailable", "status", "status.busy")


def take_worker_for(session: Session, job: Job, worker_id: int) -> None:
    """A worker setting out for a scheduled job becomes busy (no urgent offers meanwhile);
    one already busy on another job must finish that first."""
    took = session.execute(
        workers_moving(Availability.BUSY, Worker.user_id == worker_id)
        .returning(Worker.user_id)
    ).scalar_one_or_none()
    if took is None:
        session.rollback()
        raise _busy()


def cancel_job(session: Session, user: User, job_id: int, reason: str | None) -> Job:
    """The resident (or an operator) calls it off: pending offers are withdrawn and an
    assigned worker is released, all in one transaction."""
    job = lock_job(session, job_id)
    now = clock.now()
    role = Role(user.role)
    if not can_see(user, job) or role is Role.WORKER:
        raise not_found("job")
    actor = Actor.ADMIN if role is Role.ADMIN else Actor.RESIDENT
    call_off(session, job, actor, user.id, {"reason": reason} if reason else None, now)
    session.commit()
    return job


def call_off(session: Session, job: Job, actor: Actor, actor_user_id: int | None,
             detail: dict[str, Any] | None, now: datetime) -> None:
    """Cancel a job its caller has locked: its pending offers are withdrawn and an assigned
    worker is released, in the caller's transaction."""
    transition(session, job, JobStatus.CANCELLED, actor, now=now, actor_user_id=actor_user_id,
               detail=detail)
    withdrawn = withdraw_pending_offers(session, job, now)
    if withdrawn:
        record_event(session, job, "offers_withdrawn", Actor.SYSTEM, now=now,
                     detail={"count": withdrawn})
