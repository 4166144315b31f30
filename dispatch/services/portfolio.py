"""Property managers' portfolios: the organization, its properties and units, its preferred
contractors. Every read and write is scoped to the caller's own organization."""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass

from flask import current_app
from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.models import (
    Organization,
    OrganizationManager,
    PreferredContractor,
    Property,
    Unit,
    User,
)
from dispatch.db.paging import Keyset, Page, PageRequest
from dispatch.domain.commands import (
    FROM_TEXT,
    OrganizationIn,
    OrganizationPatch,
    PropertyIn,
    UnitIn,
)
from dispatch.domain.csvfiles import read_rows
from dispatch.domain.errors import (
    Conflict,
    MalformedInput,
    NotFound,
    from_validation_error,
    invalid,
    refusal,
)
from dispatch.domain.messages import say
from dispatch.services.places import check_in_service_area, outside_area_problem
from geo.points import wkt_point
from notifications.org_webhooks import public_destination

UNIT_COLUMNS = ("property", "label", "address", "lat", "lng", "access_notes", "tenant_name",
                "tenant_phone")
MAX_IMPORT_ROWS = 5000


def organization_of(session: Session, user: User) -> Organization:
    org_id = session.execute(select(OrganizationManager.org_id)
                             .where(OrganizationManager.user_id == user.id)).scalar_one_or_none()
    if org_id is None:
        raise refusal(Conflict, "no_organization", "organization", "organization.missing")
    org = session.get(Organization, org_id)
    assert org is not None
    return org


def create_organization(session: Session, user: User, data: OrganizationIn) -> Organization:
    if session.execute(
            select(OrganizationManager).where(OrganizationManager.user_id == user.id)).first():
        raise refusal(Conflict, "already_member", "organization", "organization.exists")
    org = Organization(name=data.name, allow_marketplace=data.allow_marketplace,
                       created_at=clock.now())
    session.add(org)
    session.flush()
    session.add(OrganizationManager(org_id=org.id, user_id=user.id))
    session.commit()
    return org


def update_organization(session: Session, user: User,
                        data: OrganizationPatch) -> tuple[Organization, str | None]:
    """The organization, and its new webhook signing secret when this change made one (the
    first webhook URL): the only time it is shown besides a rotation. Turning the webhook
    off forgets the secret, so a later URL gets a fresh one, shown once."""
    org = organization_of(session, user)
    if data.name is not None:
        org.name = data.name
    if data.allow_marketplace is not None:
        org.allow_marketplace = data.allow_marketplace
    new_secret = None
    if data.webhook_url is not None:
        allow_private = current_app.config["DISPATCH"].webhook_allow_private
        if data.webhook_url and not allow_private and not public_destination(data.webhook_url):
            raise invalid("webhook_url", "webhook_url.private")
        org.webhook_url = data.webhook_url or None
        if not org.webhook_url:
            org.webhook_secret = None
        elif not org.webhook_secret:
            new_secret = org.webhook_secret = secrets.token_hex(32)
    session.commit()
    return org, new_secret


def rotate_webhook_secret(session: Session, user: User) -> tuple[Organization, str]:
    """A new signing secret, returned this once. HMAC signing needs the secret itself, so it
    is stored; it is never shown again (a manager who lost it rotates)."""
    org = organization_of(session, user)
    if not org.webhook_url:
        raise refusal(Conflict, "no_webhook", "webhook_url", "webhook_url.needed_for_secret")
    org.webhook_secret = secrets.token_hex(32)
    session.commit()
    return org, org.webhook_secret


def add_property(session: Session, user: User, data: PropertyIn) -> Property:
    org = organization_of(session, user)
    prop = Property(org_id=org.id, name=data.name, address=data.address)
    session.add(prop)
    _commit_named(session, data.name)
    return prop


def _commit_named(session: Session, name: str) -> None:
    """Property names are unique in a portfolio (the database says so, race-safe)."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise refusal(Conflict, "duplicate", "name", "property.name_taken") from exc


def update_property(session: Session, user: User, property_id: int,
                    data: PropertyIn) -> Property:
    prop = own_property(session, user, property_id)
    prop.name = data.name
    prop.address = data.address
    _commit_named(session, data.name)
    return prop


def properties(session: Session, user: User) -> list[Property]:
    org = organization_of(session, user)
    return list(session.execute(select(Property).where(Property.org_id == org.id)
                                .order_by(Property.name)).scalars())


PROPERTIES_BY_NAME = Keyset((Property.name, Property.id))


def properties_page(session: Session, user: User, page: PageRequest) -> Page[Property]:
    org = organization_of(session, user)
    return PROPERTIES_BY_NAME.page(session, select(Property).where(Property.org_id == org.id),
                                   page, lambda p: (p.name, p.id))


def own_property(session: Session, user: User, property_id: int,
                 field: str = "property_id") -> Property:
    org = organization_of(session, user)
    prop = session.get(Property, property_id)
    if prop is None or prop.org_id != org.id:
        raise invalid(field, "property.unknown_id", NotFound, property_id=property_id)
    return prop


def own_unit(session: Session, user: User, unit_id: int, field: str = "unit_id") -> Unit:
    org = organization_of(session, user)
    unit = session.get(Unit, unit_id)
    if unit is None or unit.property.org_id != org.id:
        raise invalid(field, "unit.unknown_id", NotFound, unit_id=unit_id)
    return unit


OPTIONAL_UNIT_FIELDS = UNIT_COLUMNS[5:]  # access_notes, tenant_name, tenant_phone


def _apply(unit: Unit, data: UnitIn, given: Collection[str] = OPTIONAL_UNIT_FIELDS) -> None:
    """`given`: the optional fields the request carries; the others keep what is stored."""
    unit.property_id = data.property_id
    unit.label = data.label
    unit.address = data.address
    unit.location = wkt_point(data.lat, data.lng)
    for name in OPTIONAL_UNIT_FIELDS:
        if name in given:
            setattr(unit, name, getattr(data, name))


def save_unit(session: Session, user: User, data: UnitIn, unit_id: int | None = None) -> Unit:
    own_property(session, user, data.property_id)
    check_in_service_area(data.lat, data.lng)
    unit = own_unit(session, user, unit_id) if unit_id is not None else Unit()
    _apply(unit, data)
    session.add(unit)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise refusal(Conflict, "duplicate", "label", "unit.label_taken") from exc
    session.refresh(unit)
    return unit


UNITS_BY_PROPERTY_AND_LABEL = Keyset((Property.name, Unit.property_id, Unit.label, Unit.id))


def units(session: Session, user: User, property_id: int | None,
          page: PageRequest) -> Page[Unit]:
    """The organization's units by property name, then label, a page at a time."""
    org = organization_of(session, user)
    stmt = select(Unit).join(Property).where(Property.org_id == org.id)
    if property_id is not None:
        stmt = stmt.where(Unit.property_id == property_id)
    return UNITS_BY_PROPERTY_AND_LABEL.page(
        session, stmt, page, lambda u: (u.property.name, u.property_id, u.label, u.id))


@dataclass
class ImportResult:
    accepted: list[Unit]
    rejected: list[tuple[int, str, str]]  # (line, field, problem)


def import_units(session: Session, user: User, raw: bytes) -> ImportResult:
    """Create or update units from CSV (header: property,label,address,lat,lng,access_notes,
    tenant_name,tenant_phone). Every row is checked; good rows are saved even when others
    are refused, and each refusal names its line and field. A unit is keyed by (property,
    label), so uploading the same file twice changes nothing. An optional column left out
    of the file keeps what is stored (a sheet of addresses must not wipe the tenants); a
    blank cell in a column that is there clears it."""
    organization_of(session, user)
    reader = read_rows(raw, UNIT_COLUMNS[:5])
    if len(reader) > MAX_IMPORT_ROWS:  # refused whole, as batches are: never stored by half
        raise invalid("file", "file.too_many_rows", MalformedInput, limit=MAX_IMPORT_ROWS)
    props = {p.name: p for p in properties(session, user)}
    accepted: list[Unit] = []
    rejected: list[tuple[int, str, str]] = []
    for row in reader:
        line = row.line
        prop = props.get((row.get("property") or "").strip())
        if prop is None:
            rejected.append((line, "property", say("property.unknown", {
                "name": (row.get("property") or "").strip()})))
            continue
        values = {k: (row.get(k) or "").strip() or None for k in UNIT_COLUMNS[1:]}
        try:
            data = UnitIn.model_validate({"property_id": prop.id, **values},
                                         context=FROM_TEXT)
        except ValidationError as exc:
            problem = from_validation_error(exc).fields[0]
            rejected.append((line, problem.field, problem.problem))
            continue
        outside = outside_area_problem(data.lat, data.lng)
        if outside is not None:
            rejected.append((line, "location", outside))
            continue
        unit = session.execute(select(Unit).where(Unit.property_id == prop.id,
                                                  Unit.label == data.label)).scalar_one_or_none()
        unit = unit or Unit()
        _apply(unit, data, given=[name for name in OPTIONAL_UNIT_FIELDS if name in row])
        session.add(unit)
        accepted.append(unit)
    try:
        session.flush()
        session.commit()
    except IntegrityError as exc:  # the same units created by an import running alongside
        session.rollback()
        raise refusal(Conflict, "concurrent_import", "file", "file.concurrent") from exc
    return ImportResult(accepted, rejected)


def delete_unit(session: Session, user: User, unit_id: int) -> None:
    unit = own_unit(session, user, unit_id)
    session.delete(unit)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise refusal(Conflict, "in_use", "unit_id", "unit.has_jobs") from exc


def remove_contractor(session: Session, user: User, worker_id: int) -> None:
    org = organization_of(session, user)
    session.execute(delete(PreferredContractor).where(PreferredContractor.org_id == org.id,
                                                      PreferredContractor.worker_id == worker_id))
    session.commit()


def contractors(session: Session, user: User,
                page: PageRequest) -> Page[tuple[PreferredContractor, str]]:
    """The preferred contractors by name, a page at a time."""
    org = organization_of(session, user)
    stmt = (select(PreferredContractor, User.name)
            .join(User, User.id == PreferredContractor.worker_id)
            .where(PreferredContractor.org_id == org.id))
    found = Keyset((User.name, PreferredContractor.worker_id)).page(
        session, stmt, page, lambda row: (row[1], row[0].worker_id), scalars=False)
    return Page([(pc, name) for pc, name in found.items], found.next_after)
