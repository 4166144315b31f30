"""Command-line tools: `flask seed-demo`, `flask sweeper`, `flask create-admin`,
`flask sync-pool` and `flask ledger check`."""

from __future__ import annotations

import random
from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from pydantic import ValidationError
from sqlalchemy import select, text, update

from dispatch.db import clock, db
from dispatch.db.models import Category, Role, User, Worker, WorkerSkill
from dispatch.domain.commands import RegisterIn
from dispatch.domain.errors import DomainError, from_validation_error
from dispatch.domain.phones import normalize_phone
from dispatch.domain.states import Availability
from dispatch.entrypoints.sweeper import run_sweeper
from dispatch.services import accounts, ledger
from dispatch.services.demo_fleet import DEMO_CENTER, DEMO_DOMAIN, KEPT_FOR_PEOPLE
from dispatch.services.places import service_area
from geo.points import wkt_point
from notifications import masking

DEMO_PASSWORD = "demo-password"


def register(app: Flask) -> None:
    app.cli.add_command(seed_demo)
    app.cli.add_command(sweeper)
    app.cli.add_command(create_admin)
    app.cli.add_command(sync_pool)
    app.cli.add_command(ledger_group)


# Demo pool numbers (the fictional 555-0100..0199 range) for the mocked Twilio of make run.
DEMO_POOL = [f"+1415555{n:04d}" for n in range(150, 160)]


@click.group("ledger")
def ledger_group() -> None:
    """The double-entry ledger."""


@ledger_group.command("check")
@with_appcontext
def ledger_check() -> None:
    """Verify every invariant of the books; print what is wrong and exit 1 if anything is."""
    problems = ledger.check(db.session)
    db.session.rollback()
    for found in problems:
        click.echo(found, err=True)
    if problems:
        raise SystemExit(1)
    click.echo("ledger ok")


@click.command("sync-pool")
@with_appcontext
def sync_pool() -> None:
    """Load TWILIO_POOL_NUMBERS (comma-separated E.164) into the masking pool."""
    raw = current_app.config["DISPATCH"].twilio_pool_numbers
    numbers = [normalize_phone(n.strip()) for n in raw.split(",") if n.strip()]
    if not numbers:
        raise click.UsageError("TWILIO_POOL_NUMBERS is empty")
    count = masking.sync_pool(db.session, numbers)
    db.session.commit()
    click.echo(f"{count} pool numbers active")


@click.command("create-admin")
@with_appcontext
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--phone", required=True, help="E.164, e.g. +14155550100")
@click.password_option()
def create_admin(email: str, name: str, phone: str, password: str) -> None:
    """Create an operator account (admins cannot sign up through the API or the pages)."""
    try:
        data = RegisterIn(email=email, name=name, phone=phone, password=password,
                          role="resident")
        user = accounts.register(db.session, data, role=Role.ADMIN)
    except ValidationError as exc:
        raise click.UsageError(from_validation_error(exc).message) from exc
    except DomainError as exc:
        raise click.UsageError(exc.message) from exc
    db.session.commit()
    click.echo(f"admin {user.email} created (id {user.id})")


@click.command("seed-demo")
@with_appcontext
@click.option("--workers", default=40, show_default=True)
def seed_demo(workers: int) -> None:
    """Demo accounts on first start; on every start, demo workers come online with fresh
    positions so a booking can be matched straight away."""
    session = db.session
    if session.execute(select(User).where(User.email == f"admin@{DEMO_DOMAIN}")).first() is None:
        _create_demo(workers)
        click.echo(f"demo data created; every demo account's password is '{DEMO_PASSWORD}'")
    settings = current_app.config["DISPATCH"]
    has_pool = session.execute(text("SELECT 1 FROM pool_numbers LIMIT 1")).first()
    if not has_pool and not settings.twilio_pool_numbers and settings.twilio_api_base_url:
        masking.sync_pool(session, DEMO_POOL)  # masked numbers work in the (mocked) demo
    now = clock.now()
    # The demo's numbers are fictional: it vouches for them, on a database seeded before
    # phones had to be confirmed too (the README books and goes online straight away).
    session.execute(update(User).where(User.email.like(f"%@{DEMO_DOMAIN}"),
                                       User.phone_verified_at.is_(None))
                    .values(phone_verified_at=now))
    rng = random.Random(7)
    demo_workers = session.execute(
        select(Worker).join(User).where(User.email.like(f"%@{DEMO_DOMAIN}"))
        .where(Worker.availability != Availability.BUSY.value)
    ).scalars().all()
    area = service_area()
    for worker in demo_workers:
        lat, lng = _scatter(rng, 6000)
        while area is not None and not area.contains(lat, lng):  # on land, not in the Bay
            lat, lng = _scatter(rng, 6000)
        if worker.user.email in KEPT_FOR_PEOPLE:
            lat, lng = KEPT_FOR_PEOPLE[worker.user.email]
            _ensure_skill(worker, "leak-repair", now)  # the README books a leak repair
        worker.location = wkt_point(lat, lng)
        worker.location_at = now
        worker.location_accuracy_m = 15.0
        worker.availability = Availability.ONLINE.value
    session.commit()
    click.echo(f"{len(demo_workers)} demo workers online around San Francisco; log in as "
               f"resident@{DEMO_DOMAIN}, worker1@{DEMO_DOMAIN}, admin@{DEMO_DOMAIN}")


def _ensure_skill(worker: Worker, slug: str, now: datetime) -> None:
    category = db.session.execute(select(Category).where(Category.slug == slug)).scalar_one()
    skill = next((s for s in worker.skills if s.category_id == category.id), None)
    if skill is None:
        worker.skills.append(WorkerSkill(category_id=category.id, verified=True, verified_at=now))
    elif not skill.verified:
        skill.verified, skill.verified_at = True, now


def _scatter(rng: random.Random, radius_m: float) -> tuple[float, float]:
    import math

    r = radius_m * math.sqrt(rng.random())
    theta = rng.random() * 2 * math.pi
    dlat = r * math.cos(theta) / 111_320
    dlng = r * math.sin(theta) / (111_320 * math.cos(math.radians(DEMO_CENTER[0])))
    return DEMO_CENTER[0] + dlat, DEMO_CENTER[1] + dlng


def _create_demo(n_workers: int) -> None:
    session = db.session
    leaves = session.execute(select(Category).where(Category.bookable)).scalars().all()
    rng = random.Random(42)

    def person(email: str, name: str, role: Role, phone: str) -> User:
        return accounts.register(session, RegisterIn(
            email=f"{email}@{DEMO_DOMAIN}", password=DEMO_PASSWORD, name=name,
            phone=phone, role="resident" if role is Role.ADMIN else role.value,
        ), role=role)

    person("admin", "Ada Operator", Role.ADMIN, "+14155550100")
    person("resident", "Rosa Resident", Role.RESIDENT, "+14155550101")
    person("manager", "Max Manager", Role.PROPERTY_MANAGER, "+14155550102")
    modes = ["car", "car", "bike", "walk"]
    manager = session.execute(select(User).where(
        User.email == f"manager@{DEMO_DOMAIN}")).scalar_one()
    _create_demo_portfolio(manager)
    for i in range(1, n_workers + 1):
        user = person(f"worker{i}", f"Worker {i}", Role.WORKER, f"+1415555{1000 + i:04d}")
        worker = session.get(Worker, user.id)
        assert worker is not None
        worker.travel_mode = modes[i % len(modes)]
        worker.service_radius_m = 15000
        for leaf in rng.sample(list(leaves), k=min(4, len(leaves))):
            worker.skills.append(WorkerSkill(category_id=leaf.id, verified=True,
                                             verified_at=clock.now()))
    session.flush()
    _approve_demo_contractors(min(5, n_workers - 1))
    session.commit()


# The demo organization's property; samples/batch.csv names its units.
DEMO_PROPERTY = ("Mission Lofts", "2100 Mission St, San Francisco")
DEMO_UNITS = [("1A", 37.7632, -122.4194), ("1B", 37.7633, -122.4193), ("2A", 37.7634, -122.4195),
              ("2B", 37.7631, -122.4196), ("3A", 37.7635, -122.4192), ("3B", 37.7630, -122.4197)]


def _create_demo_portfolio(manager: User) -> None:
    from dispatch.db.models import Organization, OrganizationManager, Property, Unit

    session = db.session
    org = Organization(name="Demo Property Co", allow_marketplace=True, created_at=clock.now())
    session.add(org)
    session.flush()
    session.add(OrganizationManager(org_id=org.id, user_id=manager.id))
    prop = Property(org_id=org.id, name=DEMO_PROPERTY[0], address=DEMO_PROPERTY[1])
    session.add(prop)
    session.flush()
    for label, lat, lng in DEMO_UNITS:
        session.add(Unit(property_id=prop.id, label=label, address=f"{DEMO_PROPERTY[1]} #{label}",
                         location=wkt_point(lat, lng), tenant_name=f"Tenant {label}"))
    session.flush()


def _approve_demo_contractors(count: int) -> None:
    from dispatch.db.models import OrganizationManager, PreferredContractor

    session = db.session
    org_id = session.execute(select(OrganizationManager.org_id).join(
        User, User.id == OrganizationManager.user_id).where(
        User.email == f"manager@{DEMO_DOMAIN}")).scalar_one()
    # worker1 is kept for people (the README's walk-through): contractors start at worker2.
    for i in range(2, count + 2):
        worker_id = session.execute(select(User.id).where(
            User.email == f"worker{i}@{DEMO_DOMAIN}")).scalar_one()
        session.add(PreferredContractor(org_id=org_id, worker_id=worker_id,
                                        approved_at=clock.now()))


@click.command("sweeper")
@with_appcontext
@click.option("--every", "interval", type=float, default=None,
              help="seconds between sweeps (default: SWEEP_INTERVAL_SECONDS)")
@click.option("--once", is_flag=True, help="sweep once and exit")
def sweeper(interval: float | None, once: bool) -> None:
    """Expire overdue offers and move stalled jobs on, and write pending positions, forever:
    the net under RQ timers and the web processes' position writers."""
    interval = interval or current_app.config["DISPATCH"].sweep_interval_s
    run_sweeper(db.session, interval, once=once, say=click.echo)
