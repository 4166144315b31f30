"""Property managers: their organization, properties, units and preferred contractors."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Response, current_app, request
from pydantic import Field

from dispatch.db import clock, db
from dispatch.db.models import Organization, Role, Unit, User
from dispatch.domain.commands import INT4_MAX, OrganizationIn, OrganizationPatch, PropertyIn, UnitIn
from dispatch.domain.errors import problem
from dispatch.http.api import bp
from dispatch.http.api.query import ASCII_INT, PageQuery, QueryParams, next_cursor
from dispatch.http.api.routing import ID4, csv_upload, registry
from dispatch.http.api.schemas import (
    ContractorListOut,
    ContractorOut,
    OrganizationOut,
    PropertyListOut,
    PropertyOut,
    RowProblem,
    SlaReportOut,
    SlaRowOut,
    StuckJobOut,
    UnitImportOut,
    UnitListOut,
    UnitOut,
)
from dispatch.http.errors import ApiError
from dispatch.services import portfolio, reports

PM = (Role.PROPERTY_MANAGER,)


def unit_out(unit: Unit) -> UnitOut:
    return UnitOut(id=unit.id, property_id=unit.property_id, label=unit.label,
                   address=unit.address, lat=unit.lat, lng=unit.lng,
                   access_notes=unit.access_notes, tenant_name=unit.tenant_name,
                   tenant_phone=unit.tenant_phone)


def org_out(org: Organization, new_secret: str | None = None) -> OrganizationOut:
    """The signing secret is never read back from the row: only a secret just made is shown."""
    return OrganizationOut(id=org.id, name=org.name, allow_marketplace=org.allow_marketplace,
                           webhook_url=org.webhook_url,
                           webhook_secret_set=bool(org.webhook_secret),
                           webhook_secret=new_secret)


@registry.route(bp, "/org", "POST", summary="Create the caller's organization", body=OrganizationIn,
                response=OrganizationOut, status=201, roles=PM, errors=[409])
def create_org(user: User, body: OrganizationIn) -> tuple[OrganizationOut, int]:
    return org_out(portfolio.create_organization(db.session, user, body)), 201


@registry.route(bp, "/org", "GET", summary="The caller's organization",
                response=OrganizationOut, roles=PM, errors=[409])
def get_org(user: User) -> OrganizationOut:
    return org_out(portfolio.organization_of(db.session, user))


@registry.route(bp, "/org", "PATCH", summary="Rename, allow/forbid the open marketplace, set "
                "the webhook URL (the first one answers with its signing secret, once)",
                body=OrganizationPatch, response=OrganizationOut, roles=PM, errors=[409])
def patch_org(user: User, body: OrganizationPatch) -> OrganizationOut:
    return org_out(*portfolio.update_organization(db.session, user, body))


@registry.route(bp, "/org/webhook-secret", "POST", summary="Make a new webhook signing secret "
                "(shown in this answer only; the old one stops working)",
                response=OrganizationOut, roles=PM, errors=[409])
def rotate_secret(user: User) -> OrganizationOut:
    return org_out(*portfolio.rotate_webhook_secret(db.session, user))


@registry.route(bp, "/properties", "POST", summary="Add a property", body=PropertyIn,
                response=PropertyOut, status=201, roles=PM, errors=[409])
def post_property(user: User, body: PropertyIn) -> tuple[PropertyOut, int]:
    return PropertyOut.model_validate(portfolio.add_property(db.session, user, body)), 201


@registry.route(bp, f"/properties/<{ID4}:property_id>", "PUT", summary="Rename a property or "
                "change its address", body=PropertyIn, response=PropertyOut, roles=PM,
                errors=[404, 409])
def put_property(user: User, property_id: int, body: PropertyIn) -> PropertyOut:
    return PropertyOut.model_validate(portfolio.update_property(db.session, user, property_id,
                                                                body))


@registry.route(bp, "/properties", "GET", summary="The organization's properties",
                response=PropertyListOut, roles=PM, errors=[409], query=PageQuery)
def list_properties(user: User, query: PageQuery) -> PropertyListOut:
    """By name."""
    page = portfolio.properties_page(db.session, user, query.page())
    return PropertyListOut(properties=[PropertyOut.model_validate(p) for p in page.items],
                           next_cursor=next_cursor(page))


@registry.route(bp, "/units", "POST", summary="Add a unit", body=UnitIn, response=UnitOut,
                status=201, roles=PM, errors=[404, 409])
def post_unit(user: User, body: UnitIn) -> tuple[UnitOut, int]:
    return unit_out(portfolio.save_unit(db.session, user, body)), 201


@registry.route(bp, f"/units/<{ID4}:unit_id>", "PUT", summary="Replace a unit", body=UnitIn,
                response=UnitOut, roles=PM, errors=[404, 409])
def put_unit(user: User, unit_id: int, body: UnitIn) -> UnitOut:
    return unit_out(portfolio.save_unit(db.session, user, body, unit_id))


@registry.route(bp, f"/units/<{ID4}:unit_id>", "DELETE", summary="Remove a unit without jobs",
                response=None, status=204, roles=PM, errors=[404, 409])
def delete_unit(user: User, unit_id: int) -> Response:
    portfolio.delete_unit(db.session, user, unit_id)
    return Response(status=204)


class UnitListQuery(PageQuery):
    property_id: Annotated[int, Field(ge=1, le=INT4_MAX), ASCII_INT] | None = Field(
        None, description="only this property's units")


@registry.route(bp, "/units", "GET", summary="The organization's units (tenant contact "
                "included: managers only)", response=UnitListOut, roles=PM, errors=[409],
                query=UnitListQuery)
def list_units(user: User, query: UnitListQuery) -> UnitListOut:
    """By property name, then label."""
    page = portfolio.units(db.session, user, query.property_id, query.page())
    return UnitListOut(units=[unit_out(u) for u in page.items], next_cursor=next_cursor(page))


@registry.route(bp, "/units/import", "POST", summary="Import units from CSV (text/csv body; "
                "columns property,label,address,lat,lng[,access_notes,tenant_name,"
                "tenant_phone])", response=UnitImportOut, roles=PM, errors=[400, 409, 415],
                bodies=csv_upload("property,label,address,lat,lng\n"
                                  "Elm Court,1A,1 Elm St Apt 1A,37.7749,-122.4194\n"))
def import_units(user: User) -> UnitImportOut:
    """Good rows are saved even when others are refused; each refusal names its line and
    field. Units are keyed by (property, label): re-uploading a file creates nothing twice."""
    if request.mimetype not in ("text/csv", "text/plain"):
        found = problem("Content-Type", "file.not_csv")
        raise ApiError(415, "validation_failed", found.problem, [found])
    result = portfolio.import_units(db.session, user, request.get_data())
    return UnitImportOut(accepted=[unit_out(u) for u in result.accepted],
                         rejected=[RowProblem(line=line, field=field, problem=problem)
                                   for line, field, problem in result.rejected])


@registry.route(bp, "/org/contractors", "GET", summary="The organization's preferred "
                "contractors, by name", response=ContractorListOut, roles=PM, errors=[409],
                query=PageQuery)
def get_contractors(user: User, query: PageQuery) -> ContractorListOut:
    page = portfolio.contractors(db.session, user, query.page())
    return ContractorListOut(contractors=[
        ContractorOut(worker_id=pc.worker_id, name=name, approved_at=pc.approved_at)
        for pc, name in page.items], next_cursor=next_cursor(page))


@registry.route(bp, f"/org/contractors/<{ID4}:worker_id>", "DELETE",
                summary="Stop preferring a contractor", response=None, status=204, roles=PM,
                errors=[409])
def delete_contractor(user: User, worker_id: int) -> Response:
    portfolio.remove_contractor(db.session, user, worker_id)
    return Response(status=204)


class SlaQuery(QueryParams):
    month: Annotated[str | None, Field(max_length=20, examples=["2026-11"], description=(
        "YYYY-MM in the service's time zone; this month when left out"))] = None
    format: Literal["json", "csv"] = Field("json", description="csv: a download")


@registry.route(bp, "/reports/sla", "GET", summary="On-time report per property for a month "
                "(?month=2026-11; ?format=csv to download)", response=SlaReportOut, roles=PM,
                errors=[400, 409], query=SlaQuery, produces=["text/csv"])
def sla_report(user: User, query: SlaQuery) -> SlaReportOut | Response:
    tz = current_app.config["DISPATCH"].service_timezone
    start, end = reports.month_range(query.month, clock.now(), tz)
    rows = reports.sla(db.session, user, start, end, tz, clock.now())
    if query.format == "csv":
        name = f"sla-{start:%Y-%m}.csv"
        return Response(reports.to_csv(rows), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    stuck = reports.stuck(db.session, user, start, end, clock.now())
    return SlaReportOut(month=f"{start:%Y-%m}",
                        rows=[SlaRowOut.model_validate(row) for row in rows],
                        stuck=[StuckJobOut.model_validate({**vars(job), "time_zone": tz})
                               for job in stuck])
