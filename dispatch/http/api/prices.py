"""Price estimates before booking."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from dispatch.db import db
from dispatch.db.models import Urgency, User
from dispatch.domain.commands import INT4_MAX
from dispatch.domain.errors import invalid
from dispatch.http.api import bp
from dispatch.http.api.query import ASCII_FLOAT, ASCII_INT, QueryParams
from dispatch.http.api.routing import registry
from dispatch.http.api.schemas import EstimateOut
from dispatch.services import escrow, pricing


class EstimateQuery(QueryParams):
    category_id: Annotated[int, Field(ge=1, le=INT4_MAX, description="a bookable category"),
                           ASCII_INT]
    urgency: Urgency = Field(description="'urgent' (within two hours, with the surcharge) or "
                                         "'scheduled' (a booked window)")
    lat: Annotated[float, Field(ge=-90, le=90, description="WGS84 latitude of the place; "
                                                          "with lng, prices from the area's "
                                                          "history"), ASCII_FLOAT] | None = None
    lng: Annotated[float, Field(ge=-180, le=180, description="WGS84 longitude"),
                   ASCII_FLOAT] | None = None


@registry.route(bp, "/estimate", "GET", summary="What a job will likely cost, before booking",
                response=EstimateOut, query=EstimateQuery)
def estimate(user: User, query: EstimateQuery) -> EstimateOut:
    """From the area's completed jobs of the category when at least 20 in the last 90 days
    have a final amount (`basis: history`), else from the category's price list. `lat` and
    `lng` come together or not at all (without them: the price list)."""
    for name, other in (("lat", query.lng), ("lng", query.lat)):
        if getattr(query, name) is None and other is not None:
            raise invalid(name, "location.required")
    found = pricing.estimate(db.session, query.category_id, query.urgency.value, query.lat,
                             query.lng)
    return EstimateOut(low_cents=found.low_cents, high_cents=found.high_cents,
                       currency=found.currency, call_out_cents=found.call_out_cents,
                       surcharge_cents=found.surcharge_cents, basis=found.basis,
                       jobs_counted=found.jobs_counted,
                       cancel_fee_cents=escrow.cancel_fee_cents(found.call_out_cents))
