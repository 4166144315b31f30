"""Preferred contractors by invitation: a manager invites a worker by the e-mail or phone they
type; the worker with that e-mail or phone sees it on their Work page and accepts or
declines; only an accept makes them the organization's preferred contractor. Until then the
manager learns nothing about the worker beyond what they typed, not even whether such an
account exists (a pending invitation to nobody looks the same)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.models import (
    ContractorInvitation,
    Organization,
    PreferredContractor,
    User,
)
from dispatch.db.paging import Keyset, Page, PageRequest
from dispatch.domain.commands import InvitationIn
from dispatch.domain.errors import Conflict, FieldProblem, NotFound, invalid
from dispatch.domain.states import InvitationStatus, check_invitation_transition
from dispatch.services.portfolio import organization_of


@dataclass(frozen=True)
class ManagerView:
    """An invitation as its organization's manager may see it."""

    id: int
    contact: str
    status: str
    created_at: datetime
    responded_at: datetime | None
    worker_id: int | None  # only once accepted
    worker_name: str | None  # only once accepted


@dataclass(frozen=True)
class WorkerView:
    id: int
    organization: str
    created_at: datetime


def invite(session: Session, user: User, data: InvitationIn) -> ContractorInvitation:
    """Invite a worker; inviting again someone with an open invitation returns that one."""
    org = organization_of(session, user)
    by_email = "@" in data.contact
    column = ContractorInvitation.email if by_email else ContractorInvitation.phone_e164
    pending = select(ContractorInvitation).where(
        ContractorInvitation.org_id == org.id, column == data.contact,
        ContractorInvitation.status == InvitationStatus.PENDING.value)
    found = session.execute(pending).scalar_one_or_none()
    if found is not None:
        return found
    invitation = ContractorInvitation(
        org_id=org.id, invited_by=user.id, status=InvitationStatus.PENDING.value,
        email=data.contact if by_email else None,
        phone_e164=None if by_email else data.contact, created_at=clock.now())
    session.add(invitation)
    try:
        session.commit()
    except IntegrityError:  # the same invitation sent twice at once: the first one stands
        session.rollback()
        return session.execute(pending).scalar_one()
    return invitation


def for_manager(session: Session, user: User, page: PageRequest) -> Page[ManagerView]:
    """The organization's invitations, newest first, a page at a time."""
    org = organization_of(session, user)
    stmt = (select(ContractorInvitation, User.name)
            .outerjoin(User, User.id == ContractorInvitation.worker_id)
            .where(ContractorInvitation.org_id == org.id))
    found = Keyset((ContractorInvitation.id,), descending=True).page(
        session, stmt, page, lambda row: (row[0].id,), scalars=False)
    return Page([manager_view(inv, name) for inv, name in found.items], found.next_after)


def manager_view(inv: ContractorInvitation, worker_name: str | None = None) -> ManagerView:
    """Who answered is shown only after an accept: a decline tells the manager nothing."""
    accepted = inv.status == InvitationStatus.ACCEPTED.value
    return ManagerView(id=inv.id, contact=inv.email or inv.phone_e164 or "", status=inv.status,
                       created_at=inv.created_at, responded_at=inv.responded_at,
                       worker_id=inv.worker_id if accepted else None,
                       worker_name=worker_name if accepted else None)


def withdraw(session: Session, user: User, invitation_id: int) -> None:
    org = organization_of(session, user)
    invitation = session.execute(
        select(ContractorInvitation).where(ContractorInvitation.id == invitation_id,
                                           ContractorInvitation.org_id == org.id)
        .with_for_update()).scalar_one_or_none()
    if invitation is None:
        raise invalid("invitation_id", "invitation.not_sent", NotFound)
    _move(invitation, InvitationStatus.WITHDRAWN)
    invitation.responded_at = clock.now()
    session.commit()


def _addressed_to(user: User) -> object:
    return or_(ContractorInvitation.email == func.lower(user.email),
               ContractorInvitation.phone_e164 == user.phone_e164)


def for_worker(session: Session, user: User, page: PageRequest) -> Page[WorkerView]:
    """The open invitations addressed to this worker's e-mail or phone, oldest first."""
    stmt = (select(ContractorInvitation, Organization.name)
            .join(Organization, Organization.id == ContractorInvitation.org_id)
            .where(_addressed_to(user),
                   ContractorInvitation.status == InvitationStatus.PENDING.value))
    found = Keyset((ContractorInvitation.id,)).page(session, stmt, page,
                                                    lambda row: (row[0].id,), scalars=False)
    return Page([WorkerView(id=inv.id, organization=name, created_at=inv.created_at)
                 for inv, name in found.items], found.next_after)


def answer(session: Session, user: User, invitation_id: int, accept: bool) -> str:
    """Accept (the worker becomes a preferred contractor in the same transaction) or
    decline. The row lock makes a double click or a withdrawal at the same moment safe:
    whichever comes second is refused by the state machine."""
    invitation = session.execute(
        select(ContractorInvitation).where(ContractorInvitation.id == invitation_id,
                                           _addressed_to(user))
        .with_for_update()).scalar_one_or_none()
    if invitation is None:
        raise invalid("invitation_id", "invitation.not_yours", NotFound)
    target = InvitationStatus.ACCEPTED if accept else InvitationStatus.DECLINED
    _move(invitation, target)
    now = clock.now()
    invitation.worker_id = user.id
    invitation.responded_at = now
    if accept:
        session.execute(insert(PreferredContractor).values(
            org_id=invitation.org_id, worker_id=user.id, approved_at=now
        ).on_conflict_do_nothing())
    session.commit()
    return invitation.status


def _move(invitation: ContractorInvitation, target: InvitationStatus) -> None:
    if invitation.status != InvitationStatus.PENDING.value:
        raise Conflict("already_answered", f"this invitation was already {invitation.status}",
                       [FieldProblem("invitation", f"already {invitation.status}")])
    check_invitation_transition(invitation.status, target)
    invitation.status = target.value
