"""Booking urgent help: validate, find who can come in time, and either open the job with its
first wave of offers or refuse at once, honestly, holding nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from dispatch.db import clock
from dispatch.db.job_rows import commit_keeping_loaded, record_event
from dispatch.db.models import Job, Role, Urgency, User
from dispatch.domain import messages
from dispatch.domain.commands import JobIn, WindowIn
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
from dispatch.domain.money import format_cents
from dispatch.domain.states import Actor, JobStatus
from dispatch.domain.windows import Window, WindowError, window_on
from dispatch.infra.config import Settings
from dispatch.infra.payments.base import Authorization
from dispatch.services import approvals, escrow, milestone_holds, pricing, push
from dispatch.services.catalog import bookable_category
from dispatch.services.context import eta_model, settings
from dispatch.services.credentials import require_verified_phone
from dispatch.services.dispatching import (
    QUEUE_MIN_WAIT_S,
    search_candidates,
    send_wave,
)
from dispatch.services.jobs import transition
from dispatch.services.places import check_job_place
from dispatch.services.portfolio import own_unit
from geo.candidates import MatchRequest, anyone_serves, find_finishing
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


def _earlier_booking(session: Session, resident: User, key: str, fp: str) -> Job | None:
    """After a refusal: a retry of a booking that went through gets that job, not the
    refusal (the world may have changed since)."""
    session.rollback()
    return _existing(session, resident, key, fp)


def _span(promise: timedelta) -> str:
    minutes = round(promise.total_seconds() / 60)
    if minutes % 60:
        return f"{minutes} minutes"
    return f"{minutes // 60} hour{'s' if minutes != 60 else ''}"


class NoCoverageReason(StrEnum):
    LATER = "later"  # someone could come, at the earliest arrival given
    NOBODY_ON_DUTY = "nobody_on_duty"  # workers serve the place; none is online or finishing
    NOBODY_COVERS = "nobody_covers"  # no verified worker for the service serves the place


# How far ahead the earliest arrival of a worker finishing a job is looked for.
EARLIEST_HORIZON = timedelta(hours=12)
# Busy workers weighed for it (they come ranked by score, so more than a wave, to find the
# fastest).
FINISHING_LOOKED_AT = 50


def no_coverage(earliest: datetime | None, promise: timedelta,
                reason: NoCoverageReason = NoCoverageReason.LATER,
                after_current_job: bool = False) -> Conflict:
    if earliest is not None:
        reason = NoCoverageReason.LATER
        message = (f"nobody can arrive within {_span(promise)}; the earliest anyone could "
                   f"arrive is {earliest.isoformat(timespec='minutes')}")
        problem = "outside the reach of available workers"
    elif reason is NoCoverageReason.NOBODY_ON_DUTY:
        message = (f"nobody can arrive within {_span(promise)}: the workers who serve this "
                   f"place are offline or busy, so no time can be given")
        problem = "no worker who serves this place is on duty"
    else:
        message = (f"nobody can arrive within {_span(promise)}: no verified worker for this "
                   f"service serves this place")
        problem = "no verified worker for this service serves this place"
    return Conflict("no_coverage", message, [FieldProblem("location", problem)],
                    {"earliest_arrival": earliest.isoformat() if earliest else None,
                     "earliest_after_current_job": earliest is not None and after_current_job,
                     "reason": reason.value,
                     "time_zone": settings().service_timezone})


def no_coverage_refusal(session: Session, category_id: int, place: Place,
                        now: datetime, earliest: datetime | None) -> Conflict:
    """Nobody can come in time: say when someone could, counting workers finishing a job
    nearby as well as free ones too far away; or, when nobody can say, why."""
    s = settings()
    after_current_job = False
    if s.queue_behind_busy:
        request = MatchRequest(
            category_id=category_id, lat=place.lat, lng=place.lng, now=now,
            deadline=now + EARLIEST_HORIZON, eta=eta_model(s),
            max_location_age=timedelta(seconds=s.location_max_age_s), limit=FINISHING_LOOKED_AT)
        finishing = find_finishing(session, request, min_wait_s=QUEUE_MIN_WAIT_S, margin_s=0)
        if finishing:
            after = now + timedelta(seconds=min(c.eta_s for c in finishing))
            if earliest is None or after < earliest:
                # Maybe even within the promise, but too uncertain to promise: their current
                # job's end is an estimate (hence the margin matching keeps).
                earliest, after_current_job = after, True
    reason = NoCoverageReason.LATER
    if earliest is None:
        reason = (NoCoverageReason.NOBODY_ON_DUTY
                  if anyone_serves(session, category_id, place.lat, place.lng)
                  else NoCoverageReason.NOBODY_COVERS)
    return no_coverage(earliest, timedelta(minutes=s.promise_minutes), reason,
                       after_current_job)


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


def _insert(session: Session, job: Job, resident: User, place: Place, key: str,
            fp: str) -> Job | None:
    """Write the new job; None when it is written, else the job a racing retry with the
    same key wrote first."""
    session.add(job)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raced = _existing(session, resident, key, fp)
        if raced is None:
            raise
        return raced
    # The place as written (its repr round-trips exactly through PostGIS): the offers'
    # pushes and the answer read it without a query.
    set_committed_value(job, "lat", place.lat)
    set_committed_value(job, "lng", place.lng)
    push.inserted_here(session, job)
    return None


def _insert_held(session: Session, job: Job, resident: User, place: Place, key: str,
                 fp: str, held: Authorization) -> Job | None:
    """`_insert` for a booking whose hold is placed: a racing retry of the same booking
    holds the same authorization (the same key), so it keeps it; when the insert fails
    otherwise, the hold is given back."""
    try:
        return _insert(session, job, resident, place, key, fp)
    except BaseException:
        escrow.cancel_authorization(held)
        raise


def _first_hold_cents(data: JobIn, high_cents: int) -> int:
    """What booking holds: the first stage of a job paid in stages, else the high estimate."""
    return data.milestones[0].amount_cents if data.milestones else high_cents


def _check_plan(session: Session, data: JobIn, job: Job, low_cents: int) -> None:
    """A plan of stages must cover the work: its total at least the estimate's low end (a
    plan of 1-cent stages would hold nothing). For an organization's job a total above the
    job's hard limit (`approvals.effective_limits`) is refused: stages are captured whole
    on each confirmation, with no final amount for a manager to approve, so the simplest
    honest answer is to book such a job in one hold (which goes through approval)."""
    if not data.milestones:
        return
    total = sum(m.amount_cents for m in data.milestones)
    currency = settings().currency
    if total < low_cents:
        raise invalid("milestones", "milestone.below_estimate",
                      total=format_cents(total, currency), low=format_cents(low_cents, currency))
    hard = approvals.effective_limits(session, job).hard_cents
    if hard is not None and total > hard:
        raise invalid("milestones", "milestone.above_limit",
                      total=format_cents(total, currency), limit=format_cents(hard, currency))


def _record_hold(data: JobIn) -> Callable[[Session, Job, Authorization, datetime], object]:
    """How the booking's hold is stored: the whole job's, or its first stage's."""
    if not data.milestones:
        return escrow.record_hold
    plan, method = data.milestones, data.payment_method
    return lambda session, job, held, now: milestone_holds.record_plan(
        session, job, plan, method, held, now)


def book(session: Session, requester: User, data: JobIn,
         idempotency_key: str | None) -> tuple[Job, bool]:
    """Help now, or within a booked window when the request names one. Texts about the job
    go to the requester's phone, so it must be proven first."""
    require_verified_phone(requester)
    if data.window is not None:
        return book_for_later(session, requester, data, idempotency_key)
    return book_urgent(session, requester, data, idempotency_key)


def _window(window: WindowIn, now: datetime, s: Settings) -> Window:
    """The booked window as a manager's batch row would have it (`domain.windows`), with a
    refusal naming the part that is wrong."""
    try:
        return window_on(window.date, window.start, window.end, now, s.service_timezone,
                         timedelta(minutes=s.promise_minutes))
    except WindowError as exc:
        problem = str(exc).replace("send it as 'urgent'", "book it as soon as possible instead")
        raise invalid(f"window.{exc.field}", "window.refused",
                      detail=messages.capitalized(problem)) from exc


def book_for_later(session: Session, requester: User, data: JobIn,
                   idempotency_key: str | None) -> tuple[Job, bool]:
    """A booked window, the same kind of job a manager's batch row makes (urgency
    `scheduled`, due by the window's end, promised like any booked window). It is offered
    at once to verified workers who could reach it, with minutes to answer; when nobody is
    free now, the sweeper keeps asking as workers come online (`dispatching.send_wave`)."""
    assert data.window is not None
    key = check_idempotency_key(idempotency_key)
    fp = fingerprint(data)
    now = clock.now()
    try:
        category = bookable_category(session, data.category_id)
        place = _place(session, requester, data)
        check_job_place(place.lat, place.lng, data.address, data.pin_confirmed)
        window = _window(data.window, now, settings())
    except DomainError:
        earlier = _earlier_booking(session, requester, key, fp)
        if earlier is not None:
            return earlier, False
        raise
    priced = pricing.estimate(session, category.id, Urgency.SCHEDULED.value, place.lat,
                              place.lng, now)
    _check_plan(session, data, Job(org_id=place.org_id, unit_id=data.unit_id,
                                   category_id=category.id, urgency=Urgency.SCHEDULED.value),
                priced.low_cents)
    try:
        held = escrow.hold_for_booking(_first_hold_cents(data, priced.high_cents),
                                       data.payment_method, requester.id, key, fp)
    except DomainError:
        # A retry whose estimate moved since (the area's history) asks the processor for
        # another amount under the same key, refused: the booking it retries answers.
        earlier = _earlier_booking(session, requester, key, fp)
        if earlier is not None:
            return earlier, False
        raise
    job = Job(resident_id=requester.id, category_id=category.id, description=data.description,
              location=wkt_point(place.lat, place.lng), address=place.address,
              org_id=place.org_id, unit_id=data.unit_id, urgency=Urgency.SCHEDULED.value,
              window_start=window.start, window_end=window.end, arrive_by=window.end,
              status=JobStatus.REQUESTED.value, wave=0, requested_at=now, promised=True,
              estimate_low_cents=priced.low_cents, estimate_high_cents=priced.high_cents,
              idempotency_key=key, request_fingerprint=fp)
    raced = _insert_held(session, job, requester, place, key, fp, held)
    if raced is not None:
        return raced, False
    record_event(session, job, "requested", Actor.RESIDENT, now=now,
                 actor_user_id=requester.id, to_status=JobStatus.REQUESTED.value,
                 detail={"window_start": window.start.isoformat(),
                         "window_end": window.end.isoformat()})
    transition(session, job, JobStatus.DISPATCHING, Actor.SYSTEM, now=now)
    send_wave(session, job, now)
    escrow.commit_booking(session, job, held, commit_keeping_loaded, now,
                          _record_hold(data))
    return job, True


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
        if data.milestones:  # stages are for booked windows / long jobs (`_check_plan`)
            raise invalid("milestones", "milestone.urgent")
        category = bookable_category(session, data.category_id)
        place = _place(session, resident, data)
        check_job_place(place.lat, place.lng, data.address, data.pin_confirmed)
        found = search_candidates(
            session, category_id=category.id, lat=place.lat, lng=place.lng, now=now,
            deadline=arrive_by, excluded_worker_ids=[],
            limit=max(s.offer_wave_size, s.promise_min_candidates), org_id=place.org_id,
        )
        if not found.candidates:
            raise no_coverage_refusal(session, category.id, place, now, found.earliest_arrival)
    except DomainError:
        earlier = _earlier_booking(session, resident, key, fp)
        if earlier is not None:
            return earlier, False
        raise
    # One or two workers in reach is a chance, not a promise: each may decline. The job is
    # taken and offered all the same; the promise waits for an accept. Workers finishing a
    # job nearby do not count: when they come free is an estimate.
    promised = sum(c.queued_behind_job_id is None
                   for c in found.candidates) >= s.promise_min_candidates
    wave = found.candidates[:s.offer_wave_size]
    best = found.candidates[0]
    priced = pricing.estimate(session, category.id, Urgency.URGENT.value, place.lat, place.lng,
                              now)
    try:
        held = escrow.hold_for_booking(_first_hold_cents(data, priced.high_cents),
                                       data.payment_method, resident.id, key, fp)
    except DomainError:
        # A retry whose estimate moved since (the area's history) asks the processor for
        # another amount under the same key, refused: the booking it retries answers.
        earlier = _earlier_booking(session, resident, key, fp)
        if earlier is not None:
            return earlier, False
        raise
    job = Job(resident_id=resident.id, category_id=category.id, description=data.description,
              location=wkt_point(place.lat, place.lng), address=place.address,
              org_id=place.org_id, unit_id=data.unit_id,
              urgency=Urgency.URGENT.value, status=JobStatus.REQUESTED.value, wave=0,
              requested_at=now, arrive_by=arrive_by, promised=promised,
              estimated_arrival=now + timedelta(seconds=min(c.eta_s for c in found.candidates)),
              estimate_low_cents=priced.low_cents, estimate_high_cents=priced.high_cents,
              idempotency_key=key, request_fingerprint=fp)
    raced = _insert_held(session, job, resident, place, key, fp, held)
    if raced is not None:
        return raced, False
    record_event(session, job, "requested", Actor.RESIDENT, now=now, actor_user_id=resident.id,
                 to_status=JobStatus.REQUESTED.value,
                 detail={"best_eta_seconds": round(best.eta_s), "arrive_by": arrive_by.isoformat(),
                         "promised": promised, "candidates": len(found.candidates)})
    transition(session, job, JobStatus.DISPATCHING, Actor.SYSTEM, now=now)
    send_wave(session, job, now, candidates=wave)
    escrow.commit_booking(session, job, held, commit_keeping_loaded, now,
                          _record_hold(data))
    return job, True
