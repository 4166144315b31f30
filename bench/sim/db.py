"""The simulation's own database (`simulate_bench`, next to the project's) and Redis (DB 13):
created, migrated and seeded by the script, reset between policies so each starts from the
same state. Nothing outside these two is touched."""

from __future__ import annotations

import json
from datetime import datetime

import psycopg
from flask import Flask
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from dispatch.infra.config import Settings, _sqlalchemy_url
from dispatch.services import ledger

from .city import City

DB_NAME = "simulate_bench"
REDIS_DB = 13
# Reference data and the seeded population survive a reset; every other table is emptied
# (so tables added by later migrations are emptied too, without being named here).
KEEP_TABLES = frozenset({
    "alembic_version", "spatial_ref_sys", "categories", "users", "api_tokens", "workers",
    "worker_skills", "organizations", "organization_managers", "properties", "units",
    "preferred_contractors", "pool_numbers"})
POOL_NUMBERS = [f"+1415555{n:04d}" for n in range(200, 260)]


def sim_urls() -> tuple[str, str]:
    """The project's servers (DATABASE_URL / REDIS_URL), with our own database and Redis DB."""
    settings = Settings.from_env()
    db = make_url(_sqlalchemy_url(settings.database_url)).set(database=DB_NAME)
    redis = make_url(settings.redis_url).set(database=str(REDIS_DB))
    return (db.render_as_string(hide_password=False),
            redis.render_as_string(hide_password=False))


def recreate_database(url: str) -> None:
    """Always from scratch: migrations under development may have changed since last run."""
    u = make_url(url)
    assert u.database == DB_NAME, u.database  # never anything but our own database
    admin = u.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        # A simulation needs no durability: not waiting for each commit's WAL flush makes
        # a day several times faster on a shared disk, and changes nothing it measures.
        conn.execute(f'ALTER DATABASE "{DB_NAME}" SET synchronous_commit = off')


def make_app(db_url: str, redis_url: str) -> Flask:
    from dispatch import create_app

    settings = Settings.from_env()
    settings.database_url = db_url
    settings.redis_url = redis_url
    # The simulated city is a 40 km square around San Francisco, the Bay included: its days
    # stay comparable with the ones measured before the service area existed.
    settings.service_area_geojson = ""
    overrides = settings.to_flask()
    overrides["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 2, "max_overflow": 2}
    return create_app(overrides)


def migrate(app: Flask) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()


def bookable_slugs(session: Session) -> dict[str, int]:
    return {slug: cid for slug, cid in session.execute(
        text("SELECT slug, id FROM categories WHERE bookable"))}


def seed(session: Session, city: City, slugs: dict[str, int], now: datetime) -> int:
    """Workers (offline, at home, verified for their trades' leaves), one resident per
    request, a property manager with an organization, units and preferred contractors, and
    a pool of masking numbers. Returns the manager's user id."""
    from notifications import masking

    workers = city.workers
    users = [{"id": w.id, "email": f"w{w.id}@sim.test", "name": f"Worker {w.id}",
              "phone": f"+1628{2000000 + w.id:07d}", "role": "worker"} for w in workers]
    first_resident = len(workers) + 1
    n_residents = len(city.requests)
    users += [{"id": first_resident + k, "email": f"r{k}@sim.test", "name": f"Resident {k}",
               "phone": f"+1628{5000000 + k:07d}", "role": "resident"}
              for k in range(n_residents)]
    manager_id = first_resident + n_residents
    users.append({"id": manager_id, "email": "manager@sim.test", "name": "Sim Manager",
                  "phone": "+16289999999", "role": "property_manager"})
    session.execute(text(
        "INSERT INTO users (id, email, name, phone_e164, role, password_hash, "
        "phone_verified_at) VALUES (:id, :email, :name, :phone, :role, 'x', :now)"),
        [{**u, "now": now} for u in users])
    session.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), :m)"),
                    {"m": manager_id})
    session.execute(text(
        "INSERT INTO workers (user_id, travel_mode, service_radius_m, availability, location) "
        "VALUES (:id, :mode, :radius, 'offline', "
        "ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography)"),
        [{"id": w.id, "mode": w.travel_mode, "radius": w.radius_m, "lat": w.home[0],
          "lng": w.home[1]} for w in workers])
    session.execute(text(
        "INSERT INTO worker_skills (worker_id, category_id, verified, verified_at) "
        "VALUES (:w, :c, true, :now)"),
        [{"w": w.id, "c": slugs[s], "now": now} for w in workers for s in w.slugs])

    org_id = session.execute(text(
        "INSERT INTO organizations (name, allow_marketplace, created_at) "
        "VALUES ('Sim Property Co', true, :now) RETURNING id"), {"now": now}).scalar_one()
    session.execute(text("INSERT INTO organization_managers (org_id, user_id) VALUES (:o, :u)"),
                    {"o": org_id, "u": manager_id})
    props: dict[str, int] = {}
    for unit in city.units:
        if unit.property_name not in props:
            props[unit.property_name] = session.execute(text(
                "INSERT INTO properties (org_id, name, address) VALUES (:o, :n, :n) "
                "RETURNING id"), {"o": org_id, "n": unit.property_name}).scalar_one()
        session.execute(text(
            "INSERT INTO units (property_id, label, address, location) VALUES (:p, :l, :a, "
            "ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography)"),
            {"p": props[unit.property_name], "l": unit.label,
             "a": f"{unit.property_name} #{unit.label}", "lat": unit.lat, "lng": unit.lng})
    session.execute(text(
        "INSERT INTO preferred_contractors (org_id, worker_id, approved_at) "
        "VALUES (:o, :w, :now)"), [{"o": org_id, "w": w, "now": now} for w in city.preferred])
    masking.sync_pool(session, POOL_NUMBERS)
    session.commit()
    session.execute(text("ANALYZE"))
    session.commit()
    return manager_id


def unit_ids(session: Session) -> list[int]:
    """Unit ids in the order `City.units` lists them (they were inserted in that order)."""
    return list(session.execute(text("SELECT id FROM units ORDER BY id")).scalars())


def reset(session: Session, city: City, redis: Redis) -> list[str]:
    """Back to the seeded state: no jobs, offers, events, texts, sessions or batches; every
    worker offline at home; Redis DB 13 empty. Returns the tables emptied."""
    tables = sorted(set(session.execute(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()) - KEEP_TABLES)
    if tables:
        session.execute(text(ledger.ALLOW_TRUNCATE))  # the ledger's tables are among them
        session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    session.execute(text("""
UPDATE workers w
   SET availability = 'offline', last_assigned_at = NULL, location_at = NULL,
       location_accuracy_m = NULL, location_heading = NULL, location_speed_mps = NULL,
       location_received_at = NULL,
       location = ST_SetSRID(ST_MakePoint(v.lng, v.lat), 4326)::geography
  FROM jsonb_to_recordset(CAST(:homes AS jsonb)) AS v(id int, lat float8, lng float8)
 WHERE w.user_id = v.id
"""), {"homes": json.dumps([{"id": w.id, "lat": w.home[0], "lng": w.home[1]}
                            for w in city.workers])})
    session.commit()
    redis.flushdb()
    return tables
