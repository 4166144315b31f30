"""Approval limits for organizations, and approval of a final amount above them.

Each organization sets, per kind of work (emergency = urgent jobs, routine = scheduled
jobs), a soft limit (the worker is told "ask before going above") and a hard limit (a final
amount up to it is approved automatically; above it, one of the organization's managers
decides). A property may override the organization's limits and a single job the
property's. Each kind is a (soft, hard) PAIR set or cleared together and inherited as a
pair, so soft <= hard holds for whatever a job inherits. A batch row's budget cap is that
job's hard limit (its soft limit is then never above the cap)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.models import (
    ApprovalRequest,
    Job,
    Organization,
    Property,
    Unit,
    Urgency,
    User,
)
from dispatch.db.paging import Keyset, Page, PageRequest
from dispatch.domain.errors import Conflict, NotFound, invalid
from dispatch.domain.money import check_amount
from dispatch.domain.states import ApprovalStatus, check_approval_transition
from dispatch.services.portfolio import organization_of, own_property

Source = Literal["job", "property", "organization", "none"]
Decision = Literal["auto_approved", "needs_approval", "needs_payer_approval"]
KINDS = ("emergency", "routine")
# A resident's final amount may exceed the hold by this much before the payer is asked.
DEFAULT_TOLERANCE_PERCENT = 10
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class Limits:
    soft_cents: int | None
    hard_cents: int | None
    source: Source


@dataclass(frozen=True)
class LimitSet:
    """One scope's own limits (None: not set here, inherited)."""

    emergency_soft_cents: int | None = None
    emergency_hard_cents: int | None = None
    routine_soft_cents: int | None = None
    routine_hard_cents: int | None = None


Scope = Organization | Property | Job


def kind_of(job: Job) -> str:
    return "emergency" if job.urgency == Urgency.URGENT.value else "routine"


def _pair(scope: Scope, kind: str) -> tuple[int | None, int | None]:
    return getattr(scope, f"soft_{kind}_cents"), getattr(scope, f"hard_{kind}_cents")


def limits_of(scope: Scope) -> LimitSet:
    return LimitSet(scope.soft_emergency_cents, scope.hard_emergency_cents,
                    scope.soft_routine_cents, scope.hard_routine_cents)


def check_limits(data: LimitSet) -> LimitSet:
    """Refuse, naming the field: amounts that are not whole cents >= 0, half a pair, a
    soft limit above its hard limit."""
    for kind in KINDS:
        soft_field, hard_field = f"{kind}_soft_cents", f"{kind}_hard_cents"
        soft, hard = getattr(data, soft_field), getattr(data, hard_field)
        if soft is not None:
            check_amount(soft, soft_field, positive=False)
        if hard is not None:
            check_amount(hard, hard_field, positive=False)
        if (soft is None) != (hard is None):
            raise invalid(hard_field if hard is None else soft_field, "limits.pair")
        if soft is not None and hard is not None and soft > hard:
            raise invalid(soft_field, "limits.soft_above_hard")
    return data


def _store(session: Session, scope: Scope, data: LimitSet) -> LimitSet:
    check_limits(data)
    for kind in KINDS:
        setattr(scope, f"soft_{kind}_cents", getattr(data, f"{kind}_soft_cents"))
        setattr(scope, f"hard_{kind}_cents", getattr(data, f"{kind}_hard_cents"))
    session.commit()
    return limits_of(scope)


def org_limits(session: Session, user: User) -> LimitSet:
    return limits_of(organization_of(session, user))


def set_org_limits(session: Session, user: User, data: LimitSet) -> LimitSet:
    return _store(session, organization_of(session, user), data)


def property_limits(session: Session, user: User, property_id: int) -> LimitSet:
    return limits_of(own_property(session, user, property_id))


def set_property_limits(session: Session, user: User, property_id: int,
                        data: LimitSet) -> LimitSet:
    return _store(session, own_property(session, user, property_id), data)


def own_job(session: Session, user: User, job_id: int) -> Job:
    """A job of the caller's organization; any other is "not found" (not "forbidden"), so
    a manager cannot learn which job numbers exist elsewhere."""
    org = organization_of(session, user)
    job = session.get(Job, job_id)
    if job is None or job.org_id != org.id:
        raise invalid("job_id", "not_found", NotFound, what="job")
    return job


def job_limits(session: Session, user: User, job_id: int) -> tuple[Job, LimitSet]:
    job = own_job(session, user, job_id)
    return job, limits_of(job)


def set_job_limits(session: Session, user: User, job_id: int,
                   data: LimitSet) -> tuple[Job, LimitSet]:
    job = own_job(session, user, job_id)
    return job, _store(session, job, data)


def _scopes(session: Session, job: Job) -> list[tuple[Source, Scope]]:
    """The job's scopes, most specific first."""
    scopes: list[tuple[Source, Scope]] = [("job", job)]
    # By primary key through the identity map: a list of one property's jobs reads the
    # property and the organization once, not once per job.
    unit = session.get(Unit, job.unit_id) if job.unit_id is not None else None
    if unit is not None:
        prop = session.get(Property, unit.property_id)
        if prop is not None:
            scopes.append(("property", prop))
    if job.org_id is not None:
        org = session.get(Organization, job.org_id)
        if org is not None:
            scopes.append(("organization", org))
    return scopes


def effective_limits(session: Session, job: Job) -> Limits:
    """The limits that hold for this job's kind of work: the job's own override, else its
    property's, else its organization's (a pair from the most specific scope that has
    one). A budget cap (from a batch row) is the hard limit, and the soft limit is never
    above it. A job of nobody's organization has none."""
    kind = kind_of(job)
    found = Limits(None, None, "none")
    if job.org_id is None:
        return found
    for source, scope in _scopes(session, job):
        soft, hard = _pair(scope, kind)
        if hard is not None:
            found = Limits(soft, hard, source)
            break
    if job.budget_cap_cents is not None and found.source != "job":
        cap = job.budget_cap_cents
        soft = cap if found.soft_cents is None else min(found.soft_cents, cap)
        found = Limits(soft, cap, "job")
    return found


def ask_before_cents(session: Session, job: Job) -> int | None:
    """What the worker sees: "ask before going above" this (organizations' jobs only)."""
    return effective_limits(session, job).soft_cents if job.org_id is not None else None


def decide_final_amount(session: Session, job: Job, amount_cents: int,
                        held_cents: int | None = None,
                        tolerance_percent: int = DEFAULT_TOLERANCE_PERCENT) -> Decision:
    """Whether a final amount may be charged as it is. An organization's job: up to the
    hard limit it is approved automatically, above it a manager decides (no limit set: the
    organization chose not to cap, so it is approved). Anyone else's job: above the hold
    plus the tolerance the payer approves it explicitly (the escrow's business); an
    unknown hold asks nobody."""
    check_amount(amount_cents, "amount_cents", positive=False)
    if job.org_id is None:
        if held_cents is not None and amount_cents * 100 > held_cents * (100 + tolerance_percent):
            return "needs_payer_approval"
        return "auto_approved"
    hard = effective_limits(session, job).hard_cents
    if hard is None or amount_cents <= hard:
        return "auto_approved"
    return "needs_approval"


def request_approval(session: Session, job: Job, amount_cents: int,
                     requested_by: User | None, retry: bool = True,
                     commit: bool = True, force: bool = False) -> ApprovalRequest | None:
    """A pending approval request when the amount needs one (None when it is approved
    automatically). A job has at most one pending request: asking again with a new
    amount replaces the amount of the one waiting. `commit=False`: written in the caller's
    transaction (which holds the job's row lock, so no other request for it races).
    `force`: asked even under the hard limit (the card declined to cover the amount)."""
    if job.org_id is None or (not force and decide_final_amount(session, job, amount_cents)
                              != "needs_approval"):
        return None
    pending = session.execute(
        select(ApprovalRequest).where(ApprovalRequest.job_id == job.id,
                                      ApprovalRequest.status == ApprovalStatus.PENDING.value)
        .with_for_update()).scalar_one_or_none()
    hard = effective_limits(session, job).hard_cents
    if pending is None:
        pending = ApprovalRequest(job_id=job.id, org_id=job.org_id, amount_cents=amount_cents,
                                  hard_limit_cents=hard, requested_at=clock.now(),
                                  requested_by=requested_by.id if requested_by else None)
        session.add(pending)
    else:
        pending.amount_cents, pending.hard_limit_cents = amount_cents, hard
    if not commit:
        session.flush()
        return pending
    try:
        session.commit()
    except IntegrityError:
        # Another request for this job was made meanwhile (the partial unique index keeps
        # one pending per job): ask again, which now updates that one.
        session.rollback()
        if retry:
            return request_approval(session, job, amount_cents, requested_by, retry=False)
        raise
    return pending


DecidedHook = Callable[[Session, ApprovalRequest, User, bool, "str | None"], None]


def decide(session: Session, user: User, request_id: int, approve: bool,
           reason: str | None = None, on_decided: DecidedHook | None = None) -> ApprovalRequest:
    """One manager's decision. The request row is locked first, so of two managers racing
    exactly one decides and the other is told it was decided already (409). `on_decided`
    runs in the same transaction (services.final_amount: the job's invoice follows)."""
    org = organization_of(session, user)
    reason = (reason or "").strip() or None
    if not approve and reason is None:
        raise invalid("reason", "approval.reason_needed")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise invalid("reason", "text.too_long", max_length=MAX_REASON_CHARS)
    found = session.execute(select(ApprovalRequest).where(ApprovalRequest.id == request_id)
                            .with_for_update()).scalar_one_or_none()
    if found is None or found.org_id != org.id:
        session.rollback()
        raise invalid("approval_id", "not_found", NotFound, what="approval request")
    target = ApprovalStatus.APPROVED if approve else ApprovalStatus.DECLINED
    try:
        check_approval_transition(found.status, target)
    except Conflict:
        session.rollback()
        raise
    session.execute(update(ApprovalRequest).where(ApprovalRequest.id == found.id)
                    .values(status=target.value, decided_by=user.id, decided_at=clock.now(),
                            reason=reason))
    if on_decided is not None:
        on_decided(session, found, user, approve, reason)
    session.commit()
    session.refresh(found)
    return found


APPROVALS_BY_ID = Keyset((ApprovalRequest.id,))


def approvals_page(session: Session, user: User, status: ApprovalStatus | None,
                   page: PageRequest) -> Page[ApprovalRequest]:
    """The caller's organization's approval requests, oldest first."""
    org = organization_of(session, user)
    stmt = select(ApprovalRequest).where(ApprovalRequest.org_id == org.id)
    if status is not None:
        stmt = stmt.where(ApprovalRequest.status == status.value)
    return APPROVALS_BY_ID.page(session, stmt, page, lambda a: (a.id,))

