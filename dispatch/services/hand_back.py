"""Jobs that must not hang on a worker who will not come. Before arriving, a job goes back
to the cascade (`assigned`/`en_route` -> `dispatching`, fresh offers to others, never this
worker again) in three ways, each recorded against the worker as a job event naming them
(`cant_make_it`, `gave_back`, `no_show`), which reputation can count later:

- "I can't make it" (the worker, any time before arriving, a reason from a fixed list): a
  promise broken, the car broke down on the way, they fell ill.
- "Give this job back" (the worker, only before setting out, reason optional): a job
  returned while nobody is waiting on the road yet, such as tomorrow's window.
- A no-show (the sweeper): on the way, or due, with a phone that has gone quiet (no fix for
  `location_max_age_s`) and the expected arrival `no_show_grace_minutes` behind; or a
  booked window over by the grace that they never set out for. An operator alert is raised
  too: someone should call the worker.

A booked window whose worker is still busy on another job when they should be leaving for
it goes back to the cascade earlier, while someone else can still come
(`dispatching.release_late_queued`)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.job_rows import lock_job, record_event
from dispatch.db.models import Job, Urgency, User, Worker
from dispatch.domain.errors import Conflict, invalid, not_found, refusal
from dispatch.domain.states import (
    COMING_STATUSES,
    GIVE_BACK_STATUSES,
    Actor,
    JobStatus,
    check_job_transition,
)
from dispatch.services import alerts, notify
from dispatch.services.context import settings
from dispatch.services.dispatching import redispatch

log = logging.getLogger(__name__)


def cant_make_it(session: Session, worker: User, job_id: int, reason: str,
                 note: str | None) -> Job:
    """The worker cannot come after all (assigned or on the way): re-dispatch at once."""
    if reason == "other" and not note:
        raise invalid("note", "hand_back.note_needed")
    job = _own_job(session, worker, job_id)
    _hand_back(session, job, worker.id, "cant_make_it", {"reason": reason, "note": note})
    return job


def give_back(session: Session, worker: User, job_id: int, reason: str | None) -> Job:
    """The worker returns a job they have not set out for: re-dispatch at once."""
    job = _own_job(session, worker, job_id)
    if JobStatus(job.status) not in GIVE_BACK_STATUSES:
        session.rollback()
        raise refusal(Conflict, "already_set_out", "status", "hand_back.set_out")
    _hand_back(session, job, worker.id, "gave_back", {"reason": reason})
    return job


def _own_job(session: Session, worker: User, job_id: int) -> Job:
    job = lock_job(session, job_id)
    if job.worker_id != worker.id:
        session.rollback()
        raise not_found("job")
    check_job_transition(job.status, JobStatus.DISPATCHING, Actor.WORKER)
    return job


def _hand_back(session: Session, job: Job, worker_id: int, kind: str,
               detail: dict[str, Any]) -> None:
    now = clock.now()
    record_event(session, job, kind, Actor.WORKER, now=now, actor_user_id=worker_id,
                 detail={"worker_id": worker_id, "status": job.status, **detail})
    redispatch(session, job, Actor.WORKER, now, resident_event="replacing",
               detail={"reason": kind, "worker_id": worker_id})
    session.commit()


def _no_show_filter(now: datetime) -> list[Any]:
    """On the way (or due) and not queued behind another job (that has its own release),
    and either the expected arrival plus the grace behind us with no fresh fix from the
    phone, or a booked window over (plus the grace) that they never set out for."""
    s = settings()
    grace_ago = now - timedelta(minutes=s.no_show_grace_minutes)
    silent = and_(func.coalesce(Job.estimated_arrival, Job.arrive_by) < grace_ago,
                  or_(Worker.location_at.is_(None),
                      Worker.location_at < now - timedelta(seconds=s.location_max_age_s)))
    never_set_out = and_(Job.urgency == Urgency.SCHEDULED.value,
                         Job.status == JobStatus.ASSIGNED.value, Job.arrive_by < grace_ago)
    return [Job.status.in_([st.value for st in COMING_STATUSES]),
            Job.queued_behind_job_id.is_(None), or_(silent, never_set_out)]


def sweep_no_shows(session: Session) -> int:
    """Take each no-show's job back, each in its own transaction; returns how many."""
    rows = session.execute(
        select(Job.id, Job.worker_id).join(Worker, Worker.user_id == Job.worker_id)
        .where(*_no_show_filter(clock.now()))).all()
    session.rollback()
    taken = 0
    for job_id, worker_id in rows:
        try:
            taken += _take_from_no_show(session, job_id, worker_id)
        except Exception:
            session.rollback()
            log.exception("could not take job %s back from worker %s", job_id, worker_id)
    return taken


def _take_from_no_show(session: Session, job_id: int, worker_id: int) -> bool:
    """Judged again under the job lock (the worker may have arrived or pinged meanwhile)."""
    job = lock_job(session, job_id)
    now = clock.now()
    still = session.execute(
        select(Worker.location_at).join(Job, Job.worker_id == Worker.user_id)
        .where(Job.id == job_id, Job.worker_id == worker_id, *_no_show_filter(now))
    ).one_or_none()
    if still is None:
        session.rollback()
        return False
    expected = job.estimated_arrival or job.arrive_by
    detail = {"worker_id": worker_id, "status": job.status,
              "expected_arrival": expected.isoformat(),
              "last_fix_at": still.location_at.isoformat() if still.location_at else None}
    record_event(session, job, "no_show", Actor.SYSTEM, now=now, actor_user_id=worker_id,
                 detail=detail)
    alerts.raise_alert(session, "no_show", job.id, detail)
    notify.worker_no_show(session, job, worker_id)
    redispatch(session, job, Actor.SYSTEM, now, resident_event="replacing",
               detail={"reason": "no_show", "worker_id": worker_id})
    session.commit()
    return True
