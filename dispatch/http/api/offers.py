"""A worker's offers: list, accept, decline."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dispatch.db import db
from dispatch.db.models import Role, User
from dispatch.domain.states import OfferStatus
from dispatch.http.api import bp
from dispatch.http.api.query import PageQuery, next_cursor
from dispatch.http.api.routing import ID8, registry
from dispatch.http.api.schemas import OfferListOut, OfferResultOut
from dispatch.http.api.shapes import job_out, offer_out
from dispatch.services import dispatching

WORKER = (Role.WORKER,)


class OfferListQuery(PageQuery):
    status: OfferStatus | Literal["all"] = Field(
        OfferStatus.PENDING, description="only offers in this status, or `all`")


@registry.route(bp, "/offers", "GET", summary="The worker's offers (pending by default), "
                "newest first", response=OfferListOut, roles=WORKER, query=OfferListQuery)
def list_offers(user: User, query: OfferListQuery) -> OfferListOut:
    status = None if query.status == "all" else OfferStatus(query.status).value
    page = dispatching.offers_for(db.session, user, status, query.page())
    return OfferListOut(offers=[offer_out(o) for o in page.items], next_cursor=next_cursor(page))


@registry.route(bp, f"/offers/<{ID8}:offer_id>/accept", "POST", summary="Accept an offer",
                response=OfferResultOut, roles=WORKER, errors=[404, 409])
def accept(user: User, offer_id: int) -> OfferResultOut:
    """The first accept wins; later ones get 409 (`offer_withdrawn`, `offer_expired`,
    `job_unavailable`, or `worker_unavailable` if the worker already holds a job)."""
    offer, job = dispatching.accept_offer(db.session, offer_id, user)
    return OfferResultOut(offer=offer_out(offer), job=job_out(job, user))


@registry.route(bp, f"/offers/<{ID8}:offer_id>/decline", "POST", summary="Decline an offer",
                response=OfferResultOut, roles=WORKER, errors=[404, 409])
def decline(user: User, offer_id: int) -> OfferResultOut:
    return OfferResultOut(offer=offer_out(dispatching.decline_offer(db.session, offer_id, user)))
