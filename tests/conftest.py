"""Test fixtures: one real PostGIS database for the run (created fresh and migrated with the
project's own migrations), real Redis, the app, and small factories.

Services commit (they must: accept is a transaction), so isolation is by truncating the
mutable tables after each test rather than by a rolled-back outer transaction."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from dispatch import create_app
from dispatch.db import clock, db
from dispatch.infra.config import Settings, _sqlalchemy_url
from dispatch.services import ledger
from notifications.twilio_client import make_client
from tests.gazetteer import GazetteerServer
from tests.helpers import Factory, ManualClock
from tests.live import LiveServer
from tests.prism import PrismServer, VerifyingHttpClient, verify_spec_path

MUTABLE_TABLES = [
    "payouts", "payout_runs", "job_payments", "payment_events", "sim_payment_requests",
    "sim_payment_objects",
    "ledger_entries", "ledger_transactions", "ledger_accounts",
    "contractor_invitations", "approval_requests",
    "webhook_deliveries", "preferred_contractors", "units", "properties",
    "organization_managers", "organizations",
    "notifications", "operator_alerts", "masked_messages", "masked_participants",
    "masked_sessions", "pool_numbers", "sms_opt_outs", "job_events", "offers", "jobs",
    "twilio_requests", "login_sessions",
    "worker_skills", "workers", "batches", "api_tokens", "phone_verifications", "users",
]

# The ledger refuses TRUNCATE unless the transaction says it is maintenance (migration 0031).
LEDGER_MAINTENANCE = ledger.ALLOW_TRUNCATE


def _test_database_url() -> str:
    base = make_url(_sqlalchemy_url(Settings.from_env().database_url))
    return base.set(database=f"{base.database}_test").render_as_string(hide_password=False)


def _recreate_database(url: str) -> None:
    u = make_url(url)
    admin = u.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{u.database}"')


@pytest.fixture(scope="session")
def app() -> Iterator[Flask]:
    from flask_migrate import upgrade

    url = _test_database_url()
    _recreate_database(url)
    redis_url = make_url_redis_test(Settings.from_env().redis_url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url, "TESTING": True})
    # Nothing in the tests may reach the real Twilio: sends go to Prism where a test wants
    # them, and to a closed local port otherwise.
    app.config["DISPATCH"] = dataclasses.replace(app.config["DISPATCH"],
                                                 twilio_auth_token="test-auth-token",
                                                 twilio_api_base_url=NO_TWILIO,
                                                 twilio_verify_base_url=NO_TWILIO,
                                                 webhook_allow_private=True)
    with app.app_context():
        upgrade()
    yield app


def make_url_redis_test(url: str) -> str:
    """Tests use their own Redis database number so they never flush the app's."""
    base, _, _db = url.rpartition("/")
    return f"{base}/15" if _db.isdigit() else url.rstrip("/") + "/15"


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
NO_TWILIO = "http://127.0.0.1:9"


@pytest.fixture(scope="session")
def live_server(app: Flask) -> Iterator[LiveServer]:
    """A real gunicorn + gevent + Socket.IO server on the test database and Redis."""
    server = LiveServer(app.config["SQLALCHEMY_DATABASE_URI"], app.config["REDIS_URL"],
                        ARTIFACTS / "logs")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prism() -> Iterator[PrismServer]:
    """Stoplight Prism serving Twilio's own OpenAPI spec: the Twilio the tests talk to."""
    server = PrismServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prism_verify() -> Iterator[PrismServer]:
    """Prism serving Twilio's Verify spec: where phone codes are sent and checked."""
    server = PrismServer(verify_spec_path())
    yield server
    server.stop()


@pytest.fixture
def verify_http(app: Flask, prism: PrismServer,
                prism_verify: PrismServer) -> Iterator[VerifyingHttpClient]:
    """The app's Twilio client on Prism (texts) and Prism-on-Verify (codes), recording."""
    http = VerifyingHttpClient()
    s = app.config["DISPATCH"]
    app.extensions["dispatch.twilio"] = make_client(
        s.twilio_account_sid, s.twilio_auth_token, prism.url, http_client=http,
        verify_base_url=prism_verify.url)
    yield http
    app.extensions.pop("dispatch.twilio", None)


@pytest.fixture(scope="session")
def gazetteer() -> Iterator[GazetteerServer]:
    """The demo gazetteer: a local Nominatim-compatible address search."""
    server = GazetteerServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def geocoded_server(app: Flask, gazetteer: GazetteerServer) -> Iterator[LiveServer]:
    """A live server whose address search is the demo gazetteer."""
    server = LiveServer(app.config["SQLALCHEMY_DATABASE_URI"], app.config["REDIS_URL"],
                        ARTIFACTS / "logs", env={"GEOCODER_URL": gazetteer.url})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def second_server(app: Flask) -> Iterator[LiveServer]:
    server = LiveServer(app.config["SQLALCHEMY_DATABASE_URI"], app.config["REDIS_URL"],
                        ARTIFACTS / "logs")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean(app: Flask) -> Iterator[None]:
    # Settings a test (or a helper it calls) replaced with `set_settings` end with it, even
    # when it did not ask for the `settings` fixture: none leaks into the next test.
    settings_before = app.config["DISPATCH"]
    yield
    app.config["DISPATCH"] = settings_before
    with app.app_context():
        # A live server may still be writing (a page's last ping, the position flush): its
        # row locks can deadlock with TRUNCATE's table locks, and PostgreSQL then aborts one
        # side. When that is the TRUNCATE, the other transaction got what it waited for: the
        # TRUNCATE runs again at once and waits in PostgreSQL, on the locks, for it to end.
        deadline = time.monotonic() + 60
        while True:
            db.session.remove()
            try:
                db.session.execute(text("SET LOCAL lock_timeout = '30s'"))  # never hang
                db.session.execute(text(LEDGER_MAINTENANCE))  # see migration 0031
                db.session.execute(text(
                    f"TRUNCATE {', '.join(MUTABLE_TABLES)} RESTART IDENTITY CASCADE"))
                db.session.commit()
                break
            except OperationalError as exc:
                db.session.rollback()
                if (not isinstance(exc.orig, psycopg.errors.DeadlockDetected)
                        or time.monotonic() > deadline):
                    raise
        db.session.remove()
    Redis.from_url(app.config["REDIS_URL"]).flushdb()
    # Claimed offer-timer seconds lived in the Redis just wiped (see dispatch.entrypoints.tasks).
    app.extensions.pop("dispatch.expiry_seconds", None)


@pytest.fixture
def ctx(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield
        db.session.remove()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def settings(app: Flask) -> Iterator[Settings]:
    """The app's settings; a test may replace fields with `set_settings(app, ...)`."""
    original = app.config["DISPATCH"]
    yield original
    app.config["DISPATCH"] = original


@pytest.fixture
def manual_clock() -> Iterator[ManualClock]:
    mc = ManualClock(datetime.now(UTC).replace(microsecond=0))
    previous = clock.set_source(mc)
    yield mc
    clock.set_source(previous)


@pytest.fixture
def make(app: Flask) -> Factory:
    return Factory(app)


