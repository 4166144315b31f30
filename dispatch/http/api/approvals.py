"""Approval limits (organization, property, job) and the approval of final amounts above
them: for the organization's managers, their own organization only."""

from __future__ import annotations

from typing import Literal

from flask import current_app
from pydantic import Field

from dispatch.db import db
from dispatch.db.models import ApprovalRequest, Job, Role, User
from dispatch.domain.commands import DecisionIn, LimitsIn
from dispatch.domain.states import ApprovalStatus
from dispatch.http.api import bp
from dispatch.http.api.query import PageQuery, next_cursor
from dispatch.http.api.routing import ID4, ID8, registry
from dispatch.http.api.schemas import (
    ApprovalListOut,
    ApprovalOut,
    EffectiveLimitsOut,
    JobLimitsOut,
    LimitsOut,
)
from dispatch.services import approvals, final_amount
from dispatch.services.approvals import LimitSet

PM = (Role.PROPERTY_MANAGER,)


def _currency() -> str:
    return str(current_app.config["DISPATCH"].currency)


def limits_out(limits: LimitSet) -> LimitsOut:
    return LimitsOut(**vars(limits), currency=_currency())


def _limit_set(body: LimitsIn) -> LimitSet:
    return LimitSet(**body.model_dump())


def job_limits_out(job: Job, limits: LimitSet) -> JobLimitsOut:
    effective = approvals.effective_limits(db.session, job)
    return JobLimitsOut(**vars(limits), currency=_currency(), job_id=job.id,
                        kind=approvals.kind_of(job),  # type: ignore[arg-type]
                        effective=EffectiveLimitsOut(soft_cents=effective.soft_cents,
                                                     hard_cents=effective.hard_cents,
                                                     source=effective.source))


@registry.route(bp, "/org/limits", "GET", summary="The organization's approval limits",
                response=LimitsOut, roles=PM, errors=[409])
def get_org_limits(user: User) -> LimitsOut:
    return limits_out(approvals.org_limits(db.session, user))


@registry.route(bp, "/org/limits", "PUT", summary="Set the organization's approval limits "
                "(soft: the worker asks before going above; hard: approved automatically up "
                "to it), for emergency and routine work", body=LimitsIn, response=LimitsOut,
                roles=PM, errors=[409])
def put_org_limits(user: User, body: LimitsIn) -> LimitsOut:
    return limits_out(approvals.set_org_limits(db.session, user, _limit_set(body)))


@registry.route(bp, f"/properties/<{ID4}:property_id>/limits", "GET",
                summary="A property's own approval limits (null: the organization's hold)",
                response=LimitsOut, roles=PM, errors=[404, 409])
def get_property_limits(user: User, property_id: int) -> LimitsOut:
    return limits_out(approvals.property_limits(db.session, user, property_id))


@registry.route(bp, f"/properties/<{ID4}:property_id>/limits", "PUT",
                summary="Override the organization's approval limits for a property (null "
                "clears the override)", body=LimitsIn, response=LimitsOut, roles=PM,
                errors=[404, 409])
def put_property_limits(user: User, property_id: int, body: LimitsIn) -> LimitsOut:
    return limits_out(approvals.set_property_limits(db.session, user, property_id,
                                                    _limit_set(body)))


@registry.route(bp, f"/jobs/<{ID8}:job_id>/limits", "GET", summary="A job's own approval "
                "limits and the ones in effect (with where they come from)",
                response=JobLimitsOut, roles=PM, errors=[404, 409])
def get_job_limits(user: User, job_id: int) -> JobLimitsOut:
    return job_limits_out(*approvals.job_limits(db.session, user, job_id))


@registry.route(bp, f"/jobs/<{ID8}:job_id>/limits", "PUT", summary="Override the approval "
                "limits for one job (null clears the override)", body=LimitsIn,
                response=JobLimitsOut, roles=PM, errors=[404, 409])
def put_job_limits(user: User, job_id: int, body: LimitsIn) -> JobLimitsOut:
    return job_limits_out(*approvals.set_job_limits(db.session, user, job_id,
                                                    _limit_set(body)))


def approval_out(request: ApprovalRequest) -> ApprovalOut:
    return ApprovalOut(id=request.id, job_id=request.job_id, amount_cents=request.amount_cents,
                       hard_limit_cents=request.hard_limit_cents,
                       requested_by=request.requested_by, requested_at=request.requested_at,
                       status=request.status, decided_by=request.decided_by,
                       decided_at=request.decided_at, reason=request.reason,
                       currency=_currency())


class ApprovalListQuery(PageQuery):
    status: ApprovalStatus | Literal["all"] = Field(
        ApprovalStatus.PENDING, description="only requests in this status, or `all`")


@registry.route(bp, "/approvals", "GET", summary="The organization's approval requests "
                "(pending by default), oldest first", response=ApprovalListOut, roles=PM,
                errors=[409], query=ApprovalListQuery)
def list_approvals(user: User, query: ApprovalListQuery) -> ApprovalListOut:
    status = None if query.status == "all" else ApprovalStatus(query.status)
    page = approvals.approvals_page(db.session, user, status, query.page())
    return ApprovalListOut(approvals=[approval_out(a) for a in page.items],
                           next_cursor=next_cursor(page))


@registry.route(bp, f"/approvals/<{ID8}:approval_id>/approve", "POST",
                summary="Approve a final amount above the hard limit", body=DecisionIn,
                response=ApprovalOut, roles=PM, errors=[402, 404, 409])
def approve_amount(user: User, approval_id: int, body: DecisionIn) -> ApprovalOut:
    """Decided once: a second decision (or a colleague's, first) gets 409. Approving the
    amount the job's invoice is in review for makes it chargeable on confirmation (the
    hold grows to it; a hold that cannot grow is 402 and nothing is decided); declining
    it lets the worker revise the line items."""
    return approval_out(final_amount.decide_approval(db.session, user, approval_id, True,
                                                       body.reason))


@registry.route(bp, f"/approvals/<{ID8}:approval_id>/decline", "POST",
                summary="Decline a final amount above the hard limit (say why)",
                body=DecisionIn, response=ApprovalOut, roles=PM, errors=[404, 409])
def decline_amount(user: User, approval_id: int, body: DecisionIn) -> ApprovalOut:
    """Decided once: a second decision (or a colleague's, first) gets 409."""
    return approval_out(final_amount.decide_approval(db.session, user, approval_id, False,
                                                       body.reason))
