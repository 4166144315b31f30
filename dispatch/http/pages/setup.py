"""A property manager's set-up: the organization (and its webhook), properties and units,
contractors by invitation, and batch history. The pages render what they start with and
talk to the JSON API for every change, like the other pages."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import Response, abort, current_app, redirect, render_template, url_for
from flask_login import current_user, login_required

from dispatch.db import clock, db
from dispatch.db.models import Organization, Role, User
from dispatch.domain.errors import Conflict
from dispatch.http.pages import bp
from dispatch.services import batches, portfolio
from dispatch.services.catalog import bookable_groups

UNITS_TEMPLATE = ",".join(portfolio.UNIT_COLUMNS) + "\r\n" + (
    "Elm Court,1A,1 Elm St Apt 1A,37.7749,-122.4194,Key in lockbox,Ann Lee,+14155550111\r\n")
BATCH_TEMPLATE = ",".join(batches.CSV_COLUMNS) + "\r\n" + (
    "Elm Court,1A,leak-repair,Water under the kitchen sink,urgent,250\r\n"
    "Elm Court,1A,lockout,Tenant locked out,tomorrow 09:00-12:00,\r\n")


def manager() -> User:
    """These pages are for property managers only (an operator has no organization)."""
    if Role(current_user.role) is not Role.PROPERTY_MANAGER:
        abort(403)
    user = db.session.get(User, current_user.id)
    assert user is not None
    return user


def organization_or_none(user: User) -> Organization | None:
    try:
        return portfolio.organization_of(db.session, user)
    except Conflict:
        return None


def _with_organization(template: str, **context: object) -> str | Response:
    """A manager without an organization is led to create it first."""
    user = manager()
    org = organization_or_none(user)
    if org is None:
        return redirect(url_for("web.organization"))
    return render_template(template, org=org, **context)


@bp.get("/organization")
@login_required
def organization() -> str:
    return render_template("setup_org.html", org=organization_or_none(manager()))


@bp.get("/properties")
@login_required
def properties() -> str | Response:
    return _with_organization("setup_properties.html")


@bp.get("/contractors")
@login_required
def contractors() -> str | Response:
    return _with_organization("setup_contractors.html")


@bp.get("/batches")
@login_required
def batch_history() -> str | Response:
    return _with_organization("setup_batches.html", categories=bookable_groups(db.session))


@bp.get("/invoices")
@login_required
def invoices() -> str | Response:
    """The organization's invoices and their status (hold, in review, paid, ...)."""
    return _with_organization("setup_invoices.html")


@bp.get("/approvals")
@login_required
def approvals() -> str | Response:
    """Final amounts above the hard limit, for a manager to approve or decline."""
    return _with_organization("setup_approvals.html")


@bp.get("/statements")
@login_required
def statements() -> str | Response:
    """The organization's money per month: each job's hold, charge and what was given back,
    with totals, and CSV downloads for the organization and for each property."""
    user = manager()
    if organization_or_none(user) is None:
        return redirect(url_for("web.organization"))
    tz = current_app.config["DISPATCH"].service_timezone
    return _with_organization("setup_statements.html",
                              properties=portfolio.properties(db.session, user),
                              month=clock.now().astimezone(ZoneInfo(tz)).strftime("%Y-%m"),
                              time_zone=tz)


def _csv_download(text: str, name: str) -> Response:
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/properties/units-template.csv")
@login_required
def units_template() -> Response:
    manager()
    return _csv_download(UNITS_TEMPLATE, "units-template.csv")


@bp.get("/batches/template.csv")
@login_required
def batch_template() -> Response:
    manager()
    return _csv_download(BATCH_TEMPLATE, "batch-template.csv")
