"""Helpers shared by the tests: factories, a manual clock and request shortcuts."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import text

from dispatch.db import clock, db
from dispatch.db.models import Role, User, Worker, WorkerSkill
from dispatch.infra.config import Settings
from dispatch.infra.queues import TEXTS
from dispatch.services.credentials import (
    LOGIN_SESSION_KEY,
    hash_password,
    issue_token,
    open_login_session,
)
from geo.points import wkt_point

CENTER = (37.7749, -122.4194)
# One hash for every factory user: scrypt per user would dominate the suite's time.
FACTORY_PASSWORD = "correct horse battery"
_FACTORY_HASH = hash_password(FACTORY_PASSWORD)


def set_settings(app: Flask, **changes: Any) -> Settings:
    app.config["DISPATCH"] = dataclasses.replace(app.config["DISPATCH"], **changes)
    return app.config["DISPATCH"]


class ManualClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


_seq = itertools.count(1)


class Factory:
    """Builds users, workers and tokens straight in the database (committed)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def category(self, slug: str) -> int:
        with self.app.app_context():
            return db.session.execute(
                text("SELECT id FROM categories WHERE slug = :s"), {"s": slug}).scalar_one()

    def user(self, role: Role = Role.RESIDENT, **fields: Any) -> tuple[int, dict[str, str]]:
        """A committed user and the headers that authenticate as them."""
        n = next(_seq)
        with self.app.app_context():
            user = User(email=fields.get("email", f"user{n}@example.test"),
                        name=fields.get("name", f"User {n}"),
                        phone_e164=fields.get("phone", f"+1415{n:07d}"), role=role.value,
                        password_hash=_FACTORY_HASH,
                        # Proven unless a test says not: most tests are about what comes after.
                        phone_verified_at=clock.now() if fields.get("phone_verified", True)
                        else None)
            db.session.add(user)
            db.session.flush()
            if role is Role.WORKER:
                db.session.add(Worker(user_id=user.id))
            token, _ = issue_token(db.session, user, timedelta(days=1))
            db.session.commit()
            return user.id, {"Authorization": f"Bearer {token}"}

    def worker(
        self, *, lat: float = CENTER[0], lng: float = CENTER[1], skills: tuple[str, ...] = (
            "leak-repair",), verified: bool = True, availability: str = "online",
        travel_mode: str = "car", radius_m: int = 15000, seen_ago: timedelta = timedelta(0),
        **fields: Any,
    ) -> tuple[int, dict[str, str]]:
        worker_id, headers = self.user(Role.WORKER, **fields)
        with self.app.app_context():
            worker = db.session.get(Worker, worker_id)
            assert worker is not None
            worker.travel_mode = travel_mode
            worker.service_radius_m = radius_m
            worker.availability = availability
            worker.location = wkt_point(lat, lng)
            worker.location_at = clock.now() - seen_ago
            worker.location_accuracy_m = 10.0
            for slug in skills:
                category_id = db.session.execute(
                    text("SELECT id FROM categories WHERE slug = :s"), {"s": slug}).scalar_one()
                worker.skills.append(WorkerSkill(category_id=category_id, verified=verified))
            db.session.commit()
        return worker_id, headers


def csrf_in(html: str) -> str:
    """The page's CSRF token (a form field, or the hidden input of a plain form)."""
    match = re.search(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def page_login(app: Flask, client: FlaskClient, user_id: int) -> None:
    """Give the test client a login session, as the login page would: a server-side session
    row and its key in the cookie (a cookie naming only a user id opens nothing)."""
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        key = open_login_session(db.session, user)
        db.session.commit()
    with client.session_transaction() as session:
        session["_user_id"] = str(user_id)
        session["_fresh"] = True
        session[LOGIN_SESSION_KEY] = key


def offset(lat: float, lng: float, north_m: float = 0.0, east_m: float = 0.0) -> tuple[float,
                                                                                     float]:
    """A point `north_m` / `east_m` metres away (small distances)."""
    return (lat + north_m / 111_320,
            lng + east_m / (111_320 * math.cos(math.radians(lat))))


def job_body(slug_id: int, lat: float = CENTER[0], lng: float = CENTER[1],
             **extra: Any) -> dict[str, Any]:
    return {"category_id": slug_id, "description": "Water is leaking under the sink",
            "lat": lat, "lng": lng, **extra}


def book(client: FlaskClient, headers: dict[str, str], body: dict[str, Any],
         key: str | None = None) -> Any:
    return client.post("/api/v1/jobs", json=body,
                       headers={**headers, "Idempotency-Key": key or f"key-{next(_seq)}"})


def count(app: Flask, table: str) -> int:
    with app.app_context():
        return db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def sql(app: Flask, statement: str, **params: Any) -> list[Any]:
    with app.app_context():
        result = db.session.execute(text(statement), params)
        rows = result.all() if result.returns_rows else []
        db.session.commit()
        return rows



# Any code of the right form: Prism on Twilio's Verify spec approves it (see
# tests.prism.VerifyingHttpClient for a wrong one).
CODE = "123456"


def run_texts(app: Flask) -> None:
    """Send what is queued to be texted (codes, notifications), here and now."""
    conn = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        SimpleWorker([Queue(TEXTS, connection=conn)], connection=conn).work(burst=True)


def sign_up(client: FlaskClient, body: dict[str, Any]) -> Any:
    """Sign up through the API as a person does: ask, then answer the texted code. Needs the
    `verify_http` fixture (Prism on Twilio's Verify spec)."""
    asked = client.post("/api/v1/auth/register", json=body)
    assert asked.status_code == 202, asked.json
    run_texts(client.application)
    done = client.post("/api/v1/auth/register/confirm",
                       json={"ticket": asked.json["ticket"], "code": CODE})
    assert done.status_code == 201, done.json
    return done
