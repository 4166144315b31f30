"""Migrations that change data, run on a database of their own from the revision before
them, with rows as a deployed database holds them."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.engine import make_url

from dispatch import create_app
from dispatch.db import db
from tests.conftest import _recreate_database


@pytest.fixture
def scratch_app(app: Flask) -> Iterator[Flask]:
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    url = url.set(database=f"{url.database}_migrations").render_as_string(hide_password=False)
    _recreate_database(url)
    yield create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": app.config["REDIS_URL"],
                      "TESTING": True})
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def test_accounts_past_their_first_booking_shift_or_batch_keep_working(
        scratch_app: Flask) -> None:
    """Phones are proven before a *first* booking, shift or batch: a deployed database's
    accounts that are past theirs must not be locked out by the upgrade."""
    with scratch_app.app_context():
        upgrade(revision="0025")
        run = db.session.execute
        users = {}
        for name in ("booked", "worked", "never"):
            users[name] = run(text(
                "INSERT INTO users (email, password_hash, name, phone_e164, role, locale) "
                "VALUES (:e, 'x', :n, :p, 'resident', 'en') RETURNING id"),
                {"e": f"{name}@example.test", "n": name,
                 "p": f"+1415555{len(users):04d}"}).scalar_one()
        category = run(text("SELECT id FROM categories WHERE bookable LIMIT 1")).scalar_one()
        run(text("INSERT INTO jobs (resident_id, category_id, description, location, status, "
                 "urgency, requested_at, arrive_by, idempotency_key, request_fingerprint) "
                 "VALUES (:u, :c, 'leak', "
                 "ST_SetSRID(ST_MakePoint(-122.4, 37.77), 4326)::geography, 'completed', "
                 "'urgent', now(), now(), 'k1', 'f1')"), {"u": users["booked"], "c": category})
        run(text("UPDATE users SET role = 'worker' WHERE id = :u"), {"u": users["worked"]})
        run(text("INSERT INTO workers (user_id, availability, location, location_at) VALUES "
                 "(:u, 'offline', ST_SetSRID(ST_MakePoint(-122.4, 37.77), 4326)::geography, "
                 "now())"), {"u": users["worked"]})
        db.session.commit()
        upgrade()
        proven = dict(run(text("SELECT name, phone_verified_at IS NOT NULL FROM users")).all())
        db.session.remove()
        db.engine.dispose()
    assert proven == {"booked": True, "worked": True, "never": False}
