"""Booking and following jobs."""

from __future__ import annotations

from flask import request
from pydantic import Field

from dispatch.db import clock, db
from dispatch.db.models import Role, User
from dispatch.domain.commands import CantMakeItIn, GiveBackIn, JobIn
from dispatch.domain.states import JobStatus
from dispatch.http.api import bp
from dispatch.http.api.query import PageQuery, next_cursor
from dispatch.http.api.routing import ID8, HeaderParam, registry
from dispatch.http.api.schemas import (
    CancelIn,
    HandedBackOut,
    JobEventsOut,
    JobListOut,
    JobOut,
    JobStatusIn,
    MilestoneHoldIn,
    NoCoverageOut,
)
from dispatch.http.api.shapes import event_out, job_out
from dispatch.services import booking, confirmation, contact, hand_back, jobs, milestones
from dispatch.services.following import following

IDEMPOTENCY = HeaderParam("Idempotency-Key", True,
                          "a unique string per booking; repeating it returns the same job")


@registry.route(bp, "/jobs", "POST", summary="Book help now, or for a window later",
                body=JobIn, response=JobOut,
                status=201, roles=(Role.RESIDENT, Role.PROPERTY_MANAGER), errors=[400],
                headers=[IDEMPOTENCY],
                extra_responses={200: JobOut, 409: NoCoverageOut})
def create_job(user: User, body: JobIn) -> tuple[JobOut, int]:
    """Matches nearby verified workers and sends the first wave of offers. If nobody can
    arrive within the promise (two hours), answers 409 `no_coverage` at once, with the
    earliest time someone could come when there is one, and stores nothing. When only one
    or two workers could make it, the job is taken and offered but `promised` is false
    until one accepts. A repeated Idempotency-Key answers 200 with the job it created the
    first time. A pin outside the service area is 422 `outside_service_area` (field
    `location`); an `address` the geocoder places far from the pin, or cannot find, is 422
    `address_unconfirmed` (field `address`, with `address_found` when it was found): send
    the booking again with `pin_confirmed: true` if the pin is right. Neither stores anything.

    With `window` (a date and a start and end time, wall clock in the service's time zone,
    the `time_zone` every job carries), the job is booked for that window
    (`urgency` `scheduled`) and offered to workers who could reach it; there is no 409 for
    nobody being free right now. A window already over, ending before it starts or within
    the urgent promise, or starting more than 60 days ahead is refused with 422 naming
    `window.date`, `window.start` or `window.end`."""
    job, created = booking.book(db.session, user, body,
                                       request.headers.get("Idempotency-Key"))
    return job_out(job), 201 if created else 200


class JobListQuery(PageQuery):
    status: JobStatus | None = Field(None, description="only jobs in this status")


@registry.route(bp, "/jobs", "GET", summary="The caller's jobs (resident or property "
                "manager: booked; worker: assigned; admin: all), newest first",
                response=JobListOut, query=JobListQuery)
def list_jobs(user: User, query: JobListQuery) -> JobListOut:
    status = query.status.value if query.status else None
    page = jobs.jobs_for(db.session, user, status, query.page())
    return JobListOut(jobs=[job_out(j, user) for j in page.items], next_cursor=next_cursor(page))


@registry.route(bp, f"/jobs/<{ID8}:job_id>", "GET", summary="One job", response=JobOut,
                errors=[404])
def get_job(user: User, job_id: int) -> JobOut:
    job = jobs.visible_job(db.session, user, job_id)
    number = contact.masked_number(db.session, job) if Role(user.role) is not Role.ADMIN else None
    return job_out(job, user, number, following(db.session, job, clock.now()))


@registry.route(bp, f"/jobs/<{ID8}:job_id>/events", "GET", summary="The job's history",
                response=JobEventsOut, errors=[404], query=PageQuery)
def get_job_events(user: User, job_id: int, query: PageQuery) -> JobEventsOut:
    """Oldest first."""
    job = jobs.visible_job(db.session, user, job_id)
    page = jobs.job_events(db.session, job, query.page())
    return JobEventsOut(events=[event_out(e, user) for e in page.items],
                        next_cursor=next_cursor(page))


@registry.route(bp, f"/jobs/<{ID8}:job_id>/status", "POST", summary="The assigned worker reports "
                "progress", body=JobStatusIn, response=JobOut, roles=(Role.WORKER,),
                errors=[404, 409])
def post_job_status(user: User, job_id: int, body: JobStatusIn) -> JobOut:
    """Legal moves: assigned -> en_route -> arrived -> in_progress -> completed (arrived may
    follow assigned directly). Anything else is 409 with the current status. A job paid in
    stages completes when its last stage is marked done (.../milestones/{n}/done):
    `completed` here is 409 `paid_in_stages`."""
    job = jobs.worker_update_status(db.session, user, job_id, JobStatus(body.status))
    return job_out(job, user)


@registry.route(bp, f"/jobs/<{ID8}:job_id>/cancel", "POST", summary="Cancel a job",
                body=CancelIn, response=JobOut,
                roles=(Role.RESIDENT, Role.PROPERTY_MANAGER, Role.ADMIN),
                errors=[404, 409])
def post_cancel(user: User, job_id: int, body: CancelIn) -> JobOut:
    """Residents may cancel until the worker has arrived; pending offers are withdrawn and an
    assigned worker is released. Free until the worker sets out: the whole hold is given
    back. Once they are on the way, the cancellation fee (CANCEL_FEE_CENTS, else the
    category's call-out fee) is charged and paid to the worker less the platform's fee."""
    return job_out(jobs.cancel_job(db.session, user, job_id, body.reason))


@registry.route(bp, f"/jobs/<{ID8}:job_id>/confirm", "POST", summary="The payer confirms the "
                "work is done", response=JobOut,
                roles=(Role.RESIDENT, Role.PROPERTY_MANAGER), errors=[404, 409])
def post_confirm(user: User, job_id: int) -> JobOut:
    """On a `completed` job, by whoever booked it: the final amount (else the amount held at
    booking) is charged and paid to the worker less the platform's fee, the rest of the hold
    is given back, and the job is `closed`. Unconfirmed, this happens by itself
    AUTO_RELEASE_HOURS after completion (24; AUTO_RELEASE_URGENT_HOURS, 2, for urgent jobs).
    Confirming again answers with the closed job and charges nothing more; a job not yet
    completed is 409 `not_completed`. A job paid in stages (`milestones`) is confirmed
    stage by stage (.../milestones/{n}/confirm): here it is 409 `paid_in_stages`."""
    return job_out(confirmation.confirm(db.session, user, job_id), user)


MILESTONE = f"/jobs/<{ID8}:job_id>/milestones/<{ID8}:position>"


@registry.route(bp, f"{MILESTONE}/done", "POST", summary="The assigned worker marks a stage "
                "of a job paid in stages done", response=JobOut, roles=(Role.WORKER,),
                errors=[404, 409])
def post_milestone_done(user: User, job_id: int, position: int) -> JobOut:
    """While the job is `in_progress`, on the stage whose money is held (`position` from 1).
    Its release is timed from now (AUTO_RELEASE_HOURS, AUTO_RELEASE_URGENT_HOURS for urgent
    jobs) unless the payer confirms it first; the last stage done completes the job. A stage
    not held yet is 409 `milestone_not_held`; an unknown stage 404."""
    return job_out(milestones.mark_done(db.session, user, job_id, position), user)


@registry.route(bp, f"{MILESTONE}/confirm", "POST", summary="The payer confirms a stage of a "
                "job paid in stages", response=JobOut,
                roles=(Role.RESIDENT, Role.PROPERTY_MANAGER), errors=[404, 409])
def post_milestone_confirm(user: User, job_id: int, position: int) -> JobOut:
    """On a `done` stage, by whoever booked the job: its amount is charged and paid to the
    worker less the platform's fee, and the next stage's money is held (a declined card
    is said in the stage's `hold_declined`, and the work waits: hold it again with
    .../hold). The last stage released closes the job. Confirming again charges nothing
    more; a stage not done is 409 `milestone_not_done`."""
    return job_out(milestones.confirm(db.session, user, job_id, position), user)


@registry.route(bp, f"{MILESTONE}/hold", "POST", summary="The payer holds a stage's money "
                "again after its hold was refused", body=MilestoneHoldIn, response=JobOut,
                roles=(Role.RESIDENT, Role.PROPERTY_MANAGER), errors=[404, 409, 422])
def post_milestone_hold(user: User, job_id: int, position: int,
                        body: MilestoneHoldIn) -> JobOut:
    """Only for a stage whose hold was refused (`hold_declined`), with the same card or
    another `payment_method` (one the provider does not know is 422 naming it); a done
    stage whose lapsed hold was refused is held and released at once; anything else is 409
    `milestone_not_waiting`."""
    return job_out(milestones.hold_again(db.session, user, job_id, position,
                                         body.payment_method), user)


@registry.route(bp, f"/jobs/<{ID8}:job_id>/cant-make-it", "POST", summary="The assigned worker "
                "cannot come after all", body=CantMakeItIn, response=HandedBackOut,
                roles=(Role.WORKER,), errors=[404, 409])
def post_cant_make_it(user: User, job_id: int, body: CantMakeItIn) -> HandedBackOut:
    """Any time before arriving (assigned or on the way), with a reason (`note` is required
    when it is `other`). The job goes back to dispatch at once, offered to other workers
    and never to this one again; the resident is told; a `cant_make_it` event with the
    reason is recorded against the worker. After arriving it is 409."""
    job = hand_back.cant_make_it(db.session, user, job_id, body.reason, body.note)
    return HandedBackOut(job_id=job.id, status=job.status, recorded="cant_make_it")


@registry.route(bp, f"/jobs/<{ID8}:job_id>/give-back", "POST", summary="The assigned worker "
                "gives the job back before setting out", body=GiveBackIn, response=HandedBackOut,
                roles=(Role.WORKER,), errors=[404, 409])
def post_give_back(user: User, job_id: int, body: GiveBackIn) -> HandedBackOut:
    """Only before setting out (status `assigned`; on the way it is 409 `already_set_out`:
    say "can't make it" and why instead), reason optional. Re-dispatched at once like a
    can't-make-it, and recorded as a `gave_back` event against the worker: returning a job
    nobody is waiting on the road for yet weighs less than a broken promise."""
    job = hand_back.give_back(db.session, user, job_id, body.reason)
    return HandedBackOut(job_id=job.id, status=job.status, recorded="gave_back")
