"""Turn models into response schemas (the one place that decides what a client may see:
no phone numbers of the other party, no exact positions outside an active job)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app

from dispatch.db import db
from dispatch.db.models import Category, Job, JobEvent, Offer, Role, User, Worker
from dispatch.domain.states import ACTIVE_JOB_STATUSES, JobStatus, MilestoneStatus
from dispatch.http.api.schemas import (
    CategoryPricesOut,
    CategoryRef,
    JobEventOut,
    JobOut,
    JobWorkerOut,
    LocationOut,
    MilestoneOut,
    OfferJobOut,
    OfferOut,
    SkillOut,
    TokenOut,
    UserOut,
    WeeklyHoursOut,
    WorkerPositionOut,
    WorkerProfileOut,
)
from dispatch.services import approvals, escrow, milestone_holds, pricing
from dispatch.services.following import Following
from dispatch.services.jobs import set_out_from


def user_out(user: User) -> UserOut:
    return UserOut(id=user.id, email=user.email, name=user.name, phone=user.phone_e164,
                   role=user.role, locale=user.locale,
                   phone_verified=user.phone_verified_at is not None)


def token_out(token: str, user: User, expires_at: datetime) -> TokenOut:
    return TokenOut(token=token, expires_at=expires_at, user=user_out(user))


def category_ref(c: Category) -> CategoryRef:
    return CategoryRef(id=c.id, slug=c.slug, name=c.name, path=c.path)


def category_prices_out(c: Category, currency: str) -> CategoryPricesOut:
    return CategoryPricesOut(
        currency=currency, call_out_cents=c.call_out_cents, hourly_low_cents=c.hourly_low_cents,
        hourly_high_cents=c.hourly_high_cents, urgent_surcharge_cents=c.urgent_surcharge_cents,
        platform_fee_percent=c.platform_fee_percent, typical_minutes=c.typical_minutes)


# ~100 m: enough to judge the trip, not enough to find the door.
APPROX_DECIMALS = 3
# Event details that every party of a job may see; the rest (who else was asked) is for
# operators only.
PUBLIC_EVENT_DETAIL = frozenset({"reason", "wave", "count", "arrive_by", "best_eta_seconds",
                                 "eta_seconds", "expires_at"})


def place_time_zone() -> str:
    """The zone a job's times are shown in: the service's (one city per deployment)."""
    return current_app.config["DISPATCH"].service_timezone


def job_out(job: Job, viewer: User | None = None, masked_number: str | None = None,
            live: Following | None = None) -> JobOut:
    """`viewer` None means a party with full sight (the resident, an operator). `live` (for
    one job's own answer) adds the search's progress and the worker's position, which only
    the requester and operators see."""
    exact = (viewer is None or Role(viewer.role) is not Role.WORKER
             or JobStatus(job.status) in ACTIVE_JOB_STATUSES)
    if viewer is not None and Role(viewer.role) is Role.WORKER:
        live = None
    worker = None
    if job.worker is not None:
        worker = JobWorkerOut(id=job.worker.user_id, name=job.worker.user.name,
                              travel_mode=job.worker.travel_mode)
    return JobOut(
        id=job.id, status=job.status, urgency=job.urgency, category=category_ref(job.category),
        description=job.description,
        lat=job.lat if exact else round(job.lat, APPROX_DECIMALS),
        lng=job.lng if exact else round(job.lng, APPROX_DECIMALS),
        address=job.address if exact else None,
        requested_at=job.requested_at, arrive_by=job.arrive_by, promised=job.promised,
        window_start=job.window_start, window_end=job.window_end,
        estimated_arrival=job.estimated_arrival, queued=job.queued_behind_job_id is not None,
        worker=worker, assigned_at=job.assigned_at,
        arrived_at=job.arrived_at, completed_at=job.completed_at, masked_number=masked_number,
        unit_id=job.unit_id, property_id=job.unit.property_id if job.unit else None,
        batch_id=job.batch_id, time_zone=place_time_zone(),
        **(_live_out(live) if live is not None else {}),
        set_out_from=(set_out_from(job, job.worker, current_app.config["DISPATCH"])
                      if job.status == JobStatus.ASSIGNED.value else None),
        estimate_low_cents=job.estimate_low_cents, estimate_high_cents=job.estimate_high_cents,
        currency=current_app.config["DISPATCH"].currency,
        ask_before_cents=approvals.ask_before_cents(db.session, job),
        milestones=milestones_out(job),
    )


def milestones_out(job: Job) -> list[MilestoneOut]:
    return [MilestoneOut(
        position=m.position, title=m.title, amount_cents=m.amount_cents, status=m.status,
        held_at=m.held_at, done_at=m.done_at, released_at=m.released_at,
        release_due_at=(escrow.release_due_at(job, m.done_at)
                        if m.status == MilestoneStatus.DONE.value and m.done_at else None),
        hold_declined=m.hold_declined if m.status in (MilestoneStatus.PLANNED.value,
                                                      MilestoneStatus.DONE.value) else None,
    ) for m in milestone_holds.milestones_of(db.session, job.id)]


def _live_out(live: Following) -> dict[str, Any]:
    position = live.worker_position
    return {
        "asking_workers": live.asking_workers, "asking_until": live.asking_until,
        "looking_until": live.looking_until,
        "worker_position": None if position is None else WorkerPositionOut(
            lat=position.lat, lng=position.lng, at=position.at, eta_at=position.eta_at),
    }


def offer_out(offer: Offer) -> OfferOut:
    job = offer.job
    earn_low, earn_high = pricing.job_earnings(job)
    return OfferOut(
        id=offer.id, status=offer.status, wave=offer.wave, created_at=offer.created_at,
        expires_at=offer.expires_at, eta_seconds=round(offer.eta_seconds, 1),
        distance_m=round(offer.distance_m, 1), queued=offer.queued_behind_job_id is not None,
        job=OfferJobOut(id=job.id, category=category_ref(job.category),
                        description=job.description,
                        approx_lat=round(job.lat, APPROX_DECIMALS),
                        approx_lng=round(job.lng, APPROX_DECIMALS), arrive_by=job.arrive_by,
                        urgency=job.urgency, window_start=job.window_start,
                        window_end=job.window_end, time_zone=place_time_zone()),
        earn_low_cents=earn_low, earn_high_cents=earn_high,
        currency=current_app.config["DISPATCH"].currency,
        ask_before_cents=approvals.ask_before_cents(db.session, job),
    )


def event_out(event: JobEvent, viewer: User) -> JobEventOut:
    detail = event.detail
    if Role(viewer.role) is not Role.ADMIN:
        detail = {k: v for k, v in detail.items() if k in PUBLIC_EVENT_DETAIL}
    return JobEventOut(id=event.id, at=event.at, actor=event.actor, kind=event.kind,
                       from_status=event.from_status, to_status=event.to_status, detail=detail)


def worker_profile_out(worker: Worker) -> WorkerProfileOut:
    location = None
    if worker.location_at is not None and worker.lat is not None and worker.lng is not None:
        location = LocationOut(lat=worker.lat, lng=worker.lng,
                               accuracy_m=worker.location_accuracy_m, at=worker.location_at)
    return WorkerProfileOut(
        user_id=worker.user_id, name=worker.user.name, travel_mode=worker.travel_mode,
        service_radius_m=worker.service_radius_m, availability=worker.availability,
        location=location,
        skills=[SkillOut(category=category_ref(s.category), verified=s.verified)
                for s in worker.skills],
        weekly_hours=[WeeklyHoursOut(**hours) for hours in worker.weekly_hours or []],
        time_zone=place_time_zone(),
    )


class ApiPresenter:
    """What pushes carry, in the API's own shapes (`dispatch.services.push.Presenter`)."""

    def category(self, category: Category) -> dict[str, Any]:
        return category_ref(category).model_dump()

    def offer(self, offer: Offer) -> dict[str, Any]:
        return offer_out(offer).model_dump(mode="json")
