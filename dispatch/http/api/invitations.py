"""Preferred contractors by invitation: managers invite, workers answer."""

from __future__ import annotations

from flask import Response

from dispatch.db import db
from dispatch.db.models import Role, User
from dispatch.domain.commands import InvitationIn
from dispatch.http.api import bp
from dispatch.http.api.query import PageQuery, next_cursor
from dispatch.http.api.routing import ID4, registry
from dispatch.http.api.schemas import (
    InvitationAnswerOut,
    InvitationListOut,
    InvitationOut,
    WorkerInvitationListOut,
    WorkerInvitationOut,
)
from dispatch.services import invitations

PM = (Role.PROPERTY_MANAGER,)
WORKER = (Role.WORKER,)


@registry.route(bp, "/org/invitations", "POST", summary="Invite a worker (by e-mail or phone) "
                "to be a preferred contractor; they become one when they accept",
                body=InvitationIn, response=InvitationOut, status=201, roles=PM, errors=[409])
def post_invitation(user: User, body: InvitationIn) -> tuple[InvitationOut, int]:
    invitation = invitations.invite(db.session, user, body)
    return InvitationOut.model_validate(invitations.manager_view(invitation)), 201


@registry.route(bp, "/org/invitations", "GET", summary="The organization's invitations, "
                "newest first (a worker's name only once they accepted)",
                response=InvitationListOut, roles=PM, errors=[409], query=PageQuery)
def get_invitations(user: User, query: PageQuery) -> InvitationListOut:
    page = invitations.for_manager(db.session, user, query.page())
    return InvitationListOut(invitations=[InvitationOut.model_validate(v) for v in page.items],
                             next_cursor=next_cursor(page))


@registry.route(bp, f"/org/invitations/<{ID4}:invitation_id>", "DELETE",
                summary="Withdraw a pending invitation", response=None, status=204, roles=PM,
                errors=[404, 409])
def delete_invitation(user: User, invitation_id: int) -> Response:
    invitations.withdraw(db.session, user, invitation_id)
    return Response(status=204)


@registry.route(bp, "/invitations", "GET", summary="Open invitations to the calling worker, "
                "oldest first", response=WorkerInvitationListOut, roles=WORKER, query=PageQuery)
def my_invitations(user: User, query: PageQuery) -> WorkerInvitationListOut:
    page = invitations.for_worker(db.session, user, query.page())
    return WorkerInvitationListOut(
        invitations=[WorkerInvitationOut.model_validate(v) for v in page.items],
        next_cursor=next_cursor(page))


@registry.route(bp, f"/invitations/<{ID4}:invitation_id>/accept", "POST",
                summary="Accept: become the organization's preferred contractor",
                response=InvitationAnswerOut, roles=WORKER, errors=[404, 409])
def accept_invitation(user: User, invitation_id: int) -> InvitationAnswerOut:
    status = invitations.answer(db.session, user, invitation_id, accept=True)
    return InvitationAnswerOut(id=invitation_id, status=status)


@registry.route(bp, f"/invitations/<{ID4}:invitation_id>/decline", "POST",
                summary="Decline the invitation", response=InvitationAnswerOut, roles=WORKER,
                errors=[404, 409])
def decline_invitation(user: User, invitation_id: int) -> InvitationAnswerOut:
    status = invitations.answer(db.session, user, invitation_id, accept=False)
    return InvitationAnswerOut(id=invitation_id, status=status)
