"""Worker positions: every fix passes the same checks whether it came over the socket or
HTTP, becomes the worker's latest position (which matching reads), and, while the worker
holds an active job, streams to that job's room with a fresh ETA.

Dropped, with a reason, rather than stored: fixes older than the stored one (pings arrive out
of order), fixes that would need an impossible speed from the last one (GPS jumps), and
fixes sent faster than the per-worker rate limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import clock, push
from dispatch.api.schemas import LocationIn
from dispatch.errors import invalid
from dispatch.models import Job, User, Worker
from dispatch.services.dispatching import eta_model
from dispatch.states import ACTIVE_JOB_STATUSES, JobStatus
from geo.eta import haversine_m
from geo.points import wkt_point

# A fix from the device's future beyond this is a wrong clock, not a position.
MAX_CLOCK_SKEW = timedelta(seconds=60)
# Faster than any car in a city, with room for GPS noise: beyond it the fix is a jump.
MAX_PLAUSIBLE_SPEED_MPS = 70.0
# GPS noise over a short hop can look fast; below this distance no jump is judged.
JUMP_TOLERANCE_M = 150.0


@dataclass(frozen=True)
class PingResult:
    accepted: bool
    reason: str | None
    worker: Worker


def _rate_limited(worker: Worker, now: datetime) -> bool:
    """At most one accepted fix per interval per worker, across all web processes (the
    worker row is locked, so the check and the stamp cannot interleave)."""
    interval = timedelta(milliseconds=current_app.config["DISPATCH"].ping_min_interval_ms)
    last = worker.location_received_at
    return last is not None and now - last < interval


def record_fix(session: Session, user: User, fix: LocationIn) -> PingResult:
    """Check and store one fix. Clearly wrong input (bad clock, ancient fix) raises a 422;
    fixes that are merely superseded or implausible are dropped with a reason."""
    now = clock.now()
    at: datetime = fix.recorded_at or now
    if at.tzinfo is None:
        raise invalid("recorded_at", "must include a timezone offset")
    if at > now + MAX_CLOCK_SKEW:
        raise invalid("recorded_at", "is in the future")
    max_age = timedelta(seconds=current_app.config["DISPATCH"].location_max_age_s)
    if at < now - max_age:
        raise invalid("recorded_at", f"is older than {max_age.total_seconds():g} s; "
                                     "send the current position")
    worker = session.execute(
        select(Worker).where(Worker.user_id == user.id).with_for_update()
    ).scalar_one_or_none()
    if worker is None:
        raise invalid("role", "only workers report positions", status=403)
    if worker.location_at is not None and at <= worker.location_at:
        session.rollback()
        return PingResult(False, "out_of_order", worker)
    if worker.location_at is not None and worker.lat is not None and worker.lng is not None:
        hop = haversine_m(worker.lat, worker.lng, fix.lat, fix.lng)
        seconds = (at - worker.location_at).total_seconds()
        if hop > JUMP_TOLERANCE_M and hop / max(seconds, 1e-3) > MAX_PLAUSIBLE_SPEED_MPS:
            session.rollback()
            return PingResult(False, "implausible_jump", worker)
    if _rate_limited(worker, now):
        session.rollback()
        return PingResult(False, "rate_limited", worker)
    worker.location = wkt_point(fix.lat, fix.lng)
    worker.location_accuracy_m = fix.accuracy_m
    worker.location_heading = fix.heading
    worker.location_speed_mps = fix.speed_mps
    worker.location_at = at
    worker.location_received_at = now
    _stream_to_active_job(session, worker, fix, at)
    session.commit()
    return PingResult(True, None, worker)


def _stream_to_active_job(session: Session, worker: Worker, fix: LocationIn,
                          at: datetime) -> None:
    job = session.execute(
        select(Job).where(Job.worker_id == worker.user_id,
                          Job.status.in_([s.value for s in ACTIVE_JOB_STATUSES]))
    ).scalar_one_or_none()
    if job is None:  # positions are shared only while a job is active, only with its room
        return
    model = eta_model(current_app.config["DISPATCH"])
    straight = haversine_m(fix.lat, fix.lng, job.lat, job.lng)
    eta_s = 0.0
    if JobStatus(job.status) in (JobStatus.ASSIGNED, JobStatus.EN_ROUTE):
        eta_s = model.road_distance_m(straight) / model.speed_mps(worker.travel_mode)
    payload: dict[str, Any] = {
        "job_id": job.id, "lat": fix.lat, "lng": fix.lng, "accuracy_m": fix.accuracy_m,
        "heading": fix.heading, "speed_mps": fix.speed_mps, "at": at.isoformat(),
        "distance_m": round(straight, 1), "eta_seconds": round(eta_s),
        "eta_at": (clock.now() + timedelta(seconds=eta_s)).isoformat(),
    }
    push.worker_moved(session, job.id, payload)
