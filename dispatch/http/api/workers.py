"""The worker's own profile, skills, availability and location; operators verify skills."""

from __future__ import annotations

from dispatch.db import db
from dispatch.db.models import Role, User
from dispatch.domain.commands import LocationIn, WorkerProfileIn
from dispatch.domain.messages import location_refusal
from dispatch.domain.states import Availability
from dispatch.http.api import bp
from dispatch.http.api.routing import ID4, registry
from dispatch.http.api.schemas import (
    AvailabilityIn,
    LocationPingOut,
    SkillsIn,
    VerifySkillIn,
    WorkerProfileOut,
)
from dispatch.http.api.shapes import worker_profile_out
from dispatch.services import accounts, tracking

WORKER = (Role.WORKER,)


@registry.route(bp, "/worker/profile", "GET", summary="The worker's profile",
                response=WorkerProfileOut, roles=WORKER)
def get_profile(user: User) -> WorkerProfileOut:
    return worker_profile_out(accounts.worker_of(db.session, user))


@registry.route(bp, "/worker/profile", "PATCH", summary="Change travel mode or service radius",
                body=WorkerProfileIn, response=WorkerProfileOut, roles=WORKER)
def patch_profile(user: User, body: WorkerProfileIn) -> WorkerProfileOut:
    return worker_profile_out(accounts.update_profile(db.session, user, body))


@registry.route(bp, "/worker/skills", "PUT", summary="Replace the worker's skills",
                body=SkillsIn, response=WorkerProfileOut, roles=WORKER)
def put_skills(user: User, body: SkillsIn) -> WorkerProfileOut:
    """A category that has children stands for all its bookable leaves. New skills are
    unverified until an operator verifies them; verified ones that stay keep their flag."""
    return worker_profile_out(accounts.set_skills(db.session, user, body.category_ids))


@registry.route(bp, "/worker/availability", "POST", summary="Go online or offline",
                body=AvailabilityIn, response=WorkerProfileOut, roles=WORKER, errors=[409])
def post_availability(user: User, body: AvailabilityIn) -> WorkerProfileOut:
    return worker_profile_out(
        accounts.set_availability(db.session, user, Availability(body.availability)))


@registry.route(bp, "/worker/location", "POST", summary="Report the worker's position "
                "(HTTP fallback of the socket's `location` event)", body=LocationIn,
                response=LocationPingOut, roles=WORKER)
def post_location(user: User, body: LocationIn) -> LocationPingOut:
    """Fixes older than the last accepted one, implausible jumps and fixes faster than the
    rate limit are dropped (`accepted: false` with the reason); `worker` shows what is
    stored."""
    result = tracking.record_fix(db.session, user.id, body)
    if result.accepted:
        tracking.flush_fixes(db.session, [user.id])  # stored before the answer
    return LocationPingOut(accepted=result.accepted, reason=result.reason,
                           message=location_refusal(result.reason) if result.reason else None,
                           worker=worker_profile_out(accounts.worker_of(db.session, user)))


@registry.route(bp, f"/admin/workers/<{ID4}:worker_id>/verification", "POST",
                summary="Verify or unverify a worker for one service", body=VerifySkillIn,
                response=WorkerProfileOut, roles=(Role.ADMIN,), errors=[404])
def post_verification(user: User, worker_id: int, body: VerifySkillIn) -> WorkerProfileOut:
    return worker_profile_out(
        accounts.verify_skill(db.session, worker_id, body.category_id, body.verified))
