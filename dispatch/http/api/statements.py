"""Monthly statements of an organization's jobs' money, as JSON or a CSV download."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from flask import Response, current_app
from pydantic import Field

from dispatch.db import clock, db
from dispatch.db.models import Role, User
from dispatch.domain.commands import INT4_MAX
from dispatch.http.api import bp
from dispatch.http.api.query import ASCII_INT, QueryParams
from dispatch.http.api.routing import registry
from dispatch.http.api.schemas import StatementOut, StatementRowOut, StatementTotalOut
from dispatch.services import reports, statements

PM = (Role.PROPERTY_MANAGER,)


class StatementQuery(QueryParams):
    month: Annotated[str | None, Field(
        pattern=r"^2[0-9]{3}-(0[1-9]|1[0-2])$", examples=["2026-11"],
        description="YYYY-MM in the service's time zone; this month when left out")] = None
    property_id: Annotated[int | None, Field(ge=1, le=INT4_MAX, description=(
        "only this property's jobs")), ASCII_INT] = None


def _month(query: StatementQuery) -> tuple[datetime, datetime, str]:
    tz = current_app.config["DISPATCH"].service_timezone
    start, end = reports.month_range(query.month, clock.now(), tz)
    return start, end, tz


@registry.route(bp, "/statements", "GET", summary="The organization's money for a month, "
                "per job with totals (?month=2026-11&property_id=3)", response=StatementOut,
                roles=PM, errors=[404, 409], query=StatementQuery)
def get_statement(user: User, query: StatementQuery) -> StatementOut:
    """One row per job whose money moved in the month: the hold placed at booking, or the
    hold ended (charged, given back, expired). Each amount is on the statement of the month
    it moved in, so months add up. A property not of the caller's organization: 404 naming
    `property_id`."""
    start, end, tz = _month(query)
    rows = statements.rows(db.session, user, start, end, tz, query.property_id)
    return StatementOut(month=f"{start:%Y-%m}", time_zone=tz, property_id=query.property_id,
                        rows=[StatementRowOut.model_validate(asdict(r)) for r in rows],
                        totals=[StatementTotalOut.model_validate(asdict(t))
                                for t in statements.totals(rows)])


@registry.route(bp, "/statements.csv", "GET", summary="The month's statement as a CSV "
                "download, amounts in major units with a total row per currency",
                response=None, roles=PM, errors=[404, 409], query=StatementQuery,
                produces=["text/csv"])
def get_statement_csv(user: User, query: StatementQuery) -> Response:
    """The rows of `GET /statements` and their totals; cells a spreadsheet would run as a
    formula come out as text."""
    start, end, tz = _month(query)
    rows = statements.rows(db.session, user, start, end, tz, query.property_id)
    where = f"-property-{query.property_id}" if query.property_id else ""
    name = f"statement-{start:%Y-%m}{where}.csv"
    return Response(statements.to_csv(rows), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
