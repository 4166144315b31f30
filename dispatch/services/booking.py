"""Booking urgent help: validate, find who can come in time, and either open the job with its
first wave of offers or refuse at once, honestly, holding nothing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from dispatch.db import clock
from dispatch.db.job_rows import commit_keeping_loaded, record_event
from dispatch.db.models import Job, Role, Urgency, User
from dispatch.domain.commands import JobIn
from dispatch.domain.errors import (
    Conflict,
    DomainError,
    FieldProblem,
    Forbidden,
    InvalidInput,
    MalformedInput,
    invalid,
    refusal,
)
from dispatch.domain.states import Actor, JobStatus
from dispatch.services import push
from dispatch.services.catalog import bookable_category
from dispatch.services.context import settings
from dispatch.services.dispatching import (
    search_candidates,
    send_wave,
)
from dispatch.services.jobs import transition
from dispatch.services.portfolio import own_unit
from geo.points import wkt_point

MAX_IDEMPOTENCY_KEY = 255


def fingerprint(data: JobIn) -> str:
    """What makes two requests 'the same booking' for the idempotency check."""
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise invalid("Idempotency-Key", "idempotency_key.required", MalformedInput)
    key = key.strip()
    if "\x00" in key:
        raise invalid("Idempotency-Key", "text.nul", MalformedInput)
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise invalid("Idempotency-Key", "idempotency_key.too_long", MalformedInput,
                      max_length=MAX_IDEMPOTENCY_KEY)
    return key


def _existing(session: Session, resident: User, key: str, fp: str) -> Job | None:
    job = session.execute(
        select(Job).where(Job.resident_id == resident.id, Job.idempotency_key == key)
    ).scalar_one_or_none()
    if job is not None and job.request_fingerprint != fp:
        raise refusal(InvalidInput, "idempotency_key_reused", "Idempotency-Key",
                      "idempotency_key.reused")
    return job


def _span(promise: timedelta) -> str:
    minutes = round(promise.total_seconds() / 60)
    if minutes % 60:
        return f"{minutes} minutes"
    return f"{minutes // 60} hour{'s' if minutes != 60 else ''}"


def no_coverage(earliest: datetime | None, promise: timedelta) -> Conflict:
    if earliest is None:
        message = (f"no verified worker for this service is online near you; "
                   f"nobody can arrive within {_span(promise)}")
    else:
        message = (f"nobody can arrive within {_span(promise)}; the earliest anyone could "
                   f"arrive is {earliest.isoformat(timespec='minutes')}")
    return Conflict("no_coverage", message,
                    [FieldProblem("location", "outside the reach of available workers")],
                    {"earliest_arrival": earliest.isoformat() if earliest else None})


@dataclass(frozen=True)
class Place:
    lat: float
    lng: float
    address: str | None
    org_id: int | None


def _place(session: Session, requester: User, data: JobIn) -> Place:
    """The job's place: given directly, or a unit of the property manager's portfolio (then
    the job is the organization's, and goes to its preferred contractors first)."""
    if data.unit_id is not None:
        if Role(requester.role) is not Role.PROPERTY_MANAGER:
            raise invalid("unit_id", "unit.book_needs_manager", Forbidden)
        unit = own_unit(session, requester, data.unit_id)
        return Place(unit.lat, unit.lng, data.address or unit.address, unit.property.org_id)
    for name, value in (("lat", data.lat), ("lng", data.lng)):
        if value is None:
            raise invalid(name, "location.required")
    assert data.lat is not None and data.lng is not None
    return Place(data.lat, data.lng, data.address, None)


def book_urgent(session: Session, resident: User, data: JobIn,
                idempotency_key: str | None) -> tuple[Job, bool]:
    """Returns (job, created). The same key and body return the same job, even when the two
    requests race: the unique (resident, key) constraint picks one, the other reads it."""
    key = check_idempotency_key(idempotency_key)
    fp = fingerprint(data)
    s = settings()
    now = clock.now()
    arrive_by = now + timedelta(minutes=s.promise_minutes)
    # A retry is rare, so the key is not looked up first (a round trip on every booking):
    # the unique (resident, key) constraint catches a retry that gets as far as the insert,
    # and a refusal looks for the earlier booking before it answers.
    try:
        category = bookable_category(session, data.category_id)
        place = _place(session, resident, data)
        found = search_candidates(
            session, category_id=category.id, lat=place.lat, lng=place.lng, now=now,
            deadline=arrive_by, excluded_worker_ids=[],
            limit=max(s.offer_wave_size, s.promise_min_candidates), org_id=place.org_id,
        )
        if not found.candidates:
            raise no_coverage(found.earliest_arrival, timedelta(minutes=s.promise_minutes))
    except DomainError:
        session.rollback()
        existing = _existing(session, resident, key, fp)
        if existing is not None:
            return existing, False
        raise
    # One or two workers in reach is a chance, not a promise: each may decline. The job is
    # taken and offered all the same; the promise waits for an accept. Workers finishing a
    # job nearby do not count: when they come free is an estimate.
    promised = sum(c.queued_behind_job_id is None
                   for c in found.candidates) >= s.promise_min_candidates
    wave = found.candidates[:s.offer_wave_size]
    best = found.candidates[0]
    job = Job(resident_id=resident.id, category_id=category.id, description=data.description,
              location=wkt_point(place.lat, place.lng), address=place.address,
              org_id=place.org_id, unit_id=data.unit_id,
              urgency=Urgency.URGENT.value, status=JobStatus.REQUESTED.value, wave=0,
              requested_at=now, arrive_by=arrive_by, promised=promised,
              estimated_arrival=now + timedelta(seconds=min(c.eta_s for c in found.candidates)),
              idempotency_key=key, request_fingerprint=fp)
    session.add(job)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raced = _existing(session, resident, key, fp)
        if raced is None:
            raise
        return raced, False
    # The place as written (its repr round-trips exactly through PostGIS): the offers'
    # pushes and the answer read it without a query.
    set_committed_value(job, "lat", place.lat)
    set_committed_value(job, "lng", place.lng)
    push.inserted_here(session, job)
    record_event(session, job, "requested", Actor.RESIDENT, now=now, actor_user_id=resident.id,
                 to_status=JobStatus.REQUESTED.value,
                 detail={"best_eta_seconds": round(best.eta_s), "arrive_by": arrive_by.isoformat(),
                         "promised": promised, "candidates": len(found.candidates)})
    transition(session, job, JobStatus.DISPATCHING, Actor.SYSTEM, now=now)
    send_wave(session, job, now, candidates=wave)
    commit_keeping_loaded(session)
    return job, True
