"""The web edge under abuse: rate limits (per address, per target email, per user, and who
the address is behind a proxy), the page to go to after logging in, and login timing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from dispatch import create_app
from dispatch.db.models import Role
from dispatch.services import credentials
from tests.helpers import Factory, book, job_body, set_settings

ROOT = Path(__file__).resolve().parent.parent
FACTORY_PASSWORD = "correct horse battery"  # tests/helpers.py's one hash


def _email_of(app: Flask, user_id: int) -> str:
    from tests.helpers import sql
    return sql(app, "SELECT email FROM users WHERE id = :id", id=user_id)[0].email


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def _guess(client: FlaskClient, email: str, password: str = "not the password",
           **headers: str) -> Any:
    return client.post("/api/v1/auth/token", json={"email": email, "password": password},
                       headers=headers)


# --------------------------------------------------------------------------- rate limits


def test_guessing_one_accounts_password_ends_in_429(app: Flask, client: FlaskClient,
                                                   settings: Any) -> None:
    """The default limit: 10 failed logins for one email, then 429 in the API's error shape
    with Retry-After, even for the right password; other accounts are unaffected."""
    make = Factory(app)
    victim = _email_of(app, make.user()[0])
    other = _email_of(app, make.user()[0])
    answers = [_guess(client, victim) for _ in range(11)]
    assert [a.status_code for a in answers] == [401] * 10 + [429]
    refused = answers[-1]
    assert 0 < int(refused.headers["Retry-After"]) <= 300
    error = refused.json["error"]
    assert error["code"] == "too_many_requests" and error["fields"] == []
    assert error["retry_after_s"] == int(refused.headers["Retry-After"])
    assert "try again in" in error["message"]
    assert _guess(client, victim.upper(), FACTORY_PASSWORD).status_code == 429
    assert _guess(client, other, FACTORY_PASSWORD).status_code == 201


def test_successful_logins_do_not_count_against_the_account(app: Flask,
                                                            client: FlaskClient) -> None:
    email = _email_of(app, Factory(app).user()[0])
    for _ in range(12):
        assert _guess(client, email, FACTORY_PASSWORD).status_code == 201


def test_login_page_guessing_gets_a_readable_429_page(app: Flask, settings: Any) -> None:
    """The page and the API are one door: failures through either count together."""
    set_settings(app, rate_limit_login_per_email="3 per minute")
    email = _email_of(app, Factory(app).user()[0])
    page = app.test_client()
    token = _csrf(page.get("/login").text)
    assert _guess(app.test_client(), email).status_code == 401
    for _ in range(2):
        wrong = page.post("/login", data={"email": email, "password": "not the password",
                                          "csrf_token": token})
        assert wrong.status_code == 422
    refused = page.post("/login", data={"email": email, "password": FACTORY_PASSWORD,
                                        "csrf_token": token})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.mimetype == "text/html"
    assert "Too many tries" in refused.text and "try again in" in refused.text
    assert page.get("/login").status_code == 200  # looking at the form is not a try


def test_logins_from_one_address_are_limited_across_emails(app: Flask, client: FlaskClient,
                                                           settings: Any) -> None:
    set_settings(app, rate_limit_login_per_ip="5 per minute")
    answers = [_guess(client, f"nobody{n}@example.test").status_code for n in range(6)]
    assert answers == [401] * 5 + [429]


def test_forwarded_for_is_not_believed_without_a_trusted_proxy(app: Flask, client: FlaskClient,
                                                               settings: Any) -> None:
    """TRUSTED_PROXIES=0 (the default): a client cannot pick a fresh key per request by
    writing X-Forwarded-For itself."""
    set_settings(app, rate_limit_login_per_ip="3 per minute")
    answers = [_guess(client, "nobody@example.test", **{"X-Forwarded-For": f"203.0.113.{n}"})
               .status_code for n in range(4)]
    assert answers == [401] * 3 + [429]


@pytest.fixture
def proxied_app(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The app as docker-compose.yml runs it: behind one proxy (nginx) whose
    X-Forwarded-* headers are trusted. Same database and Redis as `app`."""
    monkeypatch.setenv("TRUSTED_PROXIES", "1")
    proxied = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                          "REDIS_URL": app.config["REDIS_URL"], "TESTING": True})
    yield proxied


def test_limits_key_on_the_forwarded_client_behind_a_trusted_proxy(proxied_app: Flask) -> None:
    set_settings(proxied_app, rate_limit_login_per_ip="2 per minute")
    client = proxied_app.test_client()

    def guess(address: str) -> int:
        return _guess(client, "nobody@example.test",
                      **{"X-Forwarded-For": address}).status_code

    assert [guess("203.0.113.7") for _ in range(3)] == [401, 401, 429]
    assert guess("198.51.100.9") == 401  # another client behind the same proxy
    # Only the last hop (the one the trusted proxy added) counts, not what the client wrote.
    assert guess("10.9.9.9, 203.0.113.7") == 429


def test_bookings_are_limited_per_user_not_per_address(app: Flask, client: FlaskClient,
                                                       settings: Any) -> None:
    """One address may carry many users (the load bench books 20/s from one)."""
    set_settings(app, rate_limit_booking_per_user="2 per minute")
    make = Factory(app)
    category = make.category("leak-repair")
    _, first = make.user(Role.RESIDENT)
    _, second = make.user(Role.RESIDENT)
    answers = [book(client, first, job_body(category)).status_code for _ in range(3)]
    assert answers[:2] != [429, 429] and answers[2] == 429
    assert book(client, second, job_body(category)).status_code != 429


def test_signup_floods_from_one_address_are_limited(client: FlaskClient, app: Flask,
                                                    settings: Any) -> None:
    set_settings(app, rate_limit_signup_per_ip="2 per hour")
    answers = [client.post("/api/v1/auth/register", json={
        "email": f"new{n}@example.com", "password": "a long enough secret", "name": "New",
        "phone": f"+1415555{n:04d}", "role": "resident"}).status_code for n in range(3)]
    assert answers == [201, 201, 429]


def test_limits_can_be_switched_off_for_a_process(monkeypatch: pytest.MonkeyPatch,
                                                  app: Flask) -> None:
    monkeypatch.setenv("RATE_LIMITS", "0")
    monkeypatch.setenv("RATE_LIMIT_LOGIN_PER_IP", "1 per hour")
    unlimited = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                            "REDIS_URL": app.config["REDIS_URL"], "TESTING": True})
    client = unlimited.test_client()
    assert [_guess(client, "nobody@example.test").status_code for _ in range(3)] == [401] * 3


# --------------------------------------------------------------------------- after login

NASTY_NEXT = [
    "/%09/evil.example/",  # a tab: browsers drop it and read //evil.example/
    "/%0d%0a/evil.example/",  # CR LF: cannot go in a header (was a 500 after logging in)
    "/%0d%0aSet-Cookie:%20x=1",
    "//evil.example/",
    "///evil.example/",
    "/%2F/evil.example/",
    "/\\evil.example/",
    "/%5Cevil.example/",
    "%2F%2Fevil.example",
    "https://evil.example/",
    "https:/evil.example/",
    "javascript:alert(1)",
    "%20//evil.example/",
    "/%E3%80%80/evil.example/",  # an ideographic space
    "/%00/evil.example/",
    "/no-such-page",
    "/logout",  # routed, but not a page to land on (POST only)
    "evil.example",
]


def _login_to(app: Flask, email: str, raw_next: str) -> Any:
    client = app.test_client()
    token = _csrf(client.get("/login").text)
    return client.post(f"/login?next={raw_next}", data={
        "email": email, "password": FACTORY_PASSWORD, "csrf_token": token})


def test_login_goes_only_to_the_apps_own_pages(app: Flask) -> None:
    email = _email_of(app, Factory(app).user()[0])
    for raw in NASTY_NEXT:
        done = _login_to(app, email, raw)
        assert done.status_code == 302, (raw, done.status_code)
        assert done.headers["Location"] == "/", (raw, done.headers["Location"])
    kept = _login_to(app, email, "/profile%3Ftab%3Dpassword")
    assert kept.status_code == 302 and kept.headers["Location"] == "/profile?tab=password"


# --------------------------------------------------------------------------- login timing


@pytest.fixture
def hash_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password-hash check, counted at the seam to Werkzeug (which still does it)."""
    seen: list[str] = []
    real = credentials.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        seen.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(credentials, "check_password_hash", counting)
    return seen


def test_login_checks_one_hash_of_the_same_kind_whether_or_not_the_email_exists(
        app: Flask, client: FlaskClient, hash_checks: list[str]) -> None:
    """An unknown email costs the same scrypt check as a known one: its time tells nothing."""
    email = _email_of(app, Factory(app).user()[0])
    for who, password, status in [("nobody@example.test", "not the password", 401),
                                  (email, "not the password", 401),
                                  (email, FACTORY_PASSWORD, 201)]:
        hash_checks.clear()
        assert _guess(client, who, password).status_code == status
        assert len(hash_checks) == 1, who
        method, _, _ = hash_checks[0].partition("$")
        assert method == f"{credentials.PASSWORD_METHOD}:32768:8:1", hash_checks[0]


def test_login_page_checks_a_hash_for_unknown_emails_too(app: Flask,
                                                         hash_checks: list[str]) -> None:
    client = app.test_client()
    token = _csrf(client.get("/login").text)
    hash_checks.clear()
    wrong = client.post("/login", data={"email": "nobody@example.test",
                                        "password": "not the password", "csrf_token": token})
    assert wrong.status_code == 422 and len(hash_checks) == 1


# --------------------------------------------------------------------------- deployment


def test_compose_postgis_health_check_uses_tcp() -> None:
    """The image's init server listens on the socket only: a socket check passes before
    the other containers can connect."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    check = " ".join(compose["services"]["postgis"]["healthcheck"]["test"])
    assert "pg_isready" in check
    assert re.search(r"\s-h\s+127\.0\.0\.1\b", check), check
