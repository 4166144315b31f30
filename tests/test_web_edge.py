"""The web edge under abuse: rate limits (per address, per target email, per user, and who
the address is behind a proxy), the page to go to after logging in, login timing, security
headers, the secret key and cookies, and the compose health check."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from dispatch import create_app
from dispatch.db.models import Role
from dispatch.domain.commands import too_easy_to_guess
from dispatch.entrypoints.cli import DEMO_PASSWORD
from dispatch.infra.config import Settings, development_key
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
    assert 0 < int(refused.headers["Retry-After"]) <= 5 * 60 + 1  # the window, rounded up
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


def test_guessing_the_current_password_is_limited_per_user(app: Flask, client: FlaskClient,
                                                           settings: Any) -> None:
    set_settings(app, rate_limit_password_change_per_user="3 per hour")
    _, headers = Factory(app).user()

    def change(current: str) -> int:
        return client.post("/api/v1/me/password", headers=headers, json={
            "current_password": current, "new_password": "a brand new long secret"}).status_code

    assert [change("a wrong guess") for _ in range(3)] == [422] * 3
    assert change(FACTORY_PASSWORD) == 429


def test_positions_are_limited_per_worker(app: Flask, client: FlaskClient,
                                          settings: Any) -> None:
    set_settings(app, rate_limit_location_per_user="2 per minute")
    make = Factory(app)
    _, worker = make.worker()
    _, other = make.worker()
    fix = {"lat": 37.77, "lng": -122.42}
    answers = [client.post("/api/v1/worker/location", headers=worker, json=fix).status_code
               for _ in range(3)]
    assert answers == [200, 200, 429]
    assert client.post("/api/v1/worker/location", headers=other, json=fix).status_code == 200


def test_signup_floods_from_one_address_are_limited(client: FlaskClient, app: Flask,
                                                    settings: Any) -> None:
    set_settings(app, rate_limit_signup_per_ip="2 per hour")
    answers = [client.post("/api/v1/auth/register", json={
        "email": f"new{n}@example.com", "password": "a long enough secret", "name": "New",
        "phone": f"+1415555{n:04d}", "role": "resident"}).status_code for n in range(3)]
    assert answers == [202, 202, 429]


def test_the_openapi_document_lists_429_where_limits_apply(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path, method in [("/api/v1/auth/token", "post"), ("/api/v1/auth/register", "post"),
                         ("/api/v1/jobs", "post"), ("/api/v1/worker/location", "post"),
                         ("/api/v1/me/password", "post"), ("/api/v1/auth/password-reset", "post")]:
        assert "429" in paths[path][method]["responses"], (path, method)
    assert "429" not in paths["/api/v1/jobs"]["get"]["responses"]


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


# --------------------------------------------------------------------------- passwords

EASY = ["1234567890", "password12", "qwertyuiop", "iloveyou12", "Password123!", "aaaaaaaaaa",
        "abcdefghij"]


def _refused_as_easy(answer: Any, field: str) -> None:
    assert answer.status_code == 422, answer.json
    [found] = answer.json["error"]["fields"]
    assert found["field"] == field and found["kind"] == "password.weak", found
    assert found["problem"].startswith("Choose a password that is harder to guess. ")
    assert len(found["problem"]) > len("Choose a password that is harder to guess. ") + 40


def test_easy_passwords_are_refused_on_sign_up_with_the_reason(client: FlaskClient) -> None:
    for n, password in enumerate(EASY):
        answer = client.post("/api/v1/auth/register", json={
            "email": f"easy{n}@example.com", "password": password, "name": "Easy",
            "phone": f"+1415555{n:04d}", "role": "resident"})
        _refused_as_easy(answer, "password")
    common = client.post("/api/v1/auth/register", json={
        "email": "e@example.com", "password": "1234567890", "name": "E",
        "phone": "+14155550000", "role": "resident"})
    assert "common password" in common.json["error"]["fields"][0]["problem"]


def test_easy_passwords_are_refused_on_change_and_reset(app: Flask, client: FlaskClient) -> None:
    user_id, headers = Factory(app).user()
    change = client.post("/api/v1/me/password", headers=headers, json={
        "current_password": FACTORY_PASSWORD, "new_password": "password12"})
    _refused_as_easy(change, "new_password")
    with app.app_context():
        from dispatch.db import db
        from dispatch.db.models import User
        from dispatch.services.password_reset import reset_token
        user = db.session.get(User, user_id)
        assert user is not None
        token = reset_token(user, datetime.now(UTC) + timedelta(minutes=10))
    reset = client.post("/api/v1/auth/password-reset/confirm", json={
        "token": token, "new_password": "1234567890"})
    _refused_as_easy(reset, "new_password")
    page = app.test_client()
    form = page.get(f"/reset-password/{token}")
    on_page = page.post(f"/reset-password/{token}", data={
        "new_password": "1234567890", "csrf_token": _csrf(form.text)})
    assert on_page.status_code == 422 and "harder to guess" in on_page.text
    assert _guess(client, _email_of(app, user_id), FACTORY_PASSWORD).status_code == 201


def test_the_demo_and_test_passwords_still_pass() -> None:
    readme = (ROOT / "README.md").read_text()
    demo = re.search(r"password `([^`]+)`", readme)
    assert demo and demo.group(1) == DEMO_PASSWORD
    for password in (DEMO_PASSWORD, FACTORY_PASSWORD, "a long enough secret",
                     "a new long password", "a brand new long secret"):
        assert too_easy_to_guess(password) is None, password


# --------------------------------------------------------------------------- headers

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)([^>]*)>")


def _page_as(app: Flask, email: str, path: str) -> Any:
    client = app.test_client()
    token = _csrf(client.get("/login").text)
    client.post("/login", data={"email": email, "password": FACTORY_PASSWORD,
                                "csrf_token": token})
    return client.get(path)


def test_pages_allow_only_their_own_scripts_and_styles(app: Flask) -> None:
    make = Factory(app)
    resident = _email_of(app, make.user(Role.RESIDENT)[0])
    worker = _email_of(app, make.worker()[0])
    pages = [app.test_client().get("/login"), app.test_client().get("/nowhere"),
             _page_as(app, resident, "/book"), _page_as(app, worker, "/work")]
    for page in pages:
        csp = page.headers["Content-Security-Policy"]
        nonce = re.search(r"script-src 'self' 'nonce-([^']+)'", csp)
        assert nonce, csp
        assert "style-src 'self';" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "img-src 'self' data: https://tile.openstreetmap.org" in csp
        inline = INLINE_SCRIPT.findall(page.text)
        assert inline and all(f'nonce="{nonce.group(1)}"' in attrs for attrs in inline)
        assert " style=" not in page.text, page.request.path
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["Referrer-Policy"] == "same-origin"
    nonces = {re.search(r"nonce-([^']+)", p.headers["Content-Security-Policy"]).group(1)
              for p in pages}
    assert len(nonces) == len(pages)  # a fresh nonce per answer


def test_no_template_has_inline_styles_or_unnonced_scripts() -> None:
    """What the CSP would block in a browser, found before a browser runs."""
    for template in (ROOT / "templates").glob("*.html"):
        html = template.read_text()
        assert not re.search(r"\sstyle=|<style", html), template.name
        for attrs in INLINE_SCRIPT.findall(html):
            assert 'nonce="{{ csp_nonce() }}"' in attrs, template.name


def test_api_answers_are_not_sniffed_or_framed(client: FlaskClient) -> None:
    r = client.get("/api/v1/me")
    assert r.status_code == 401
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in r.headers


def test_hsts_only_over_tls_as_a_trusted_proxy_tells(app: Flask, proxied_app: Flask) -> None:
    over_tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    assert "Strict-Transport-Security" not in app.test_client().get(
        "/login", headers=over_tls).headers  # nobody trusted: a client's claim is no TLS
    assert "Strict-Transport-Security" not in proxied_app.test_client().get("/login").headers
    hsts = proxied_app.test_client().get("/login", headers=over_tls).headers
    assert hsts["Strict-Transport-Security"].startswith("max-age=")


# --------------------------------------------------------------------------- secrets


def test_outside_development_no_start_without_a_real_secret_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_ENV", "production")
    for key in ("", "dev-only-not-secret", "short-but-set"):
        monkeypatch.setenv("SECRET_KEY", key)
        with pytest.raises(ValueError, match="SECRET_KEY"):
            Settings.from_env()
    monkeypatch.delenv("SECRET_KEY")
    with pytest.raises(ValueError, match="DISPATCH_ENV=development"):
        create_app()
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    assert Settings.from_env().secret_key == "k" * 40


def test_development_signs_with_the_checkouts_own_random_key(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DISPATCH_ENV", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    key = Settings.from_env().secret_key
    assert key == Settings.from_env().secret_key  # every process of the checkout agrees
    assert key == (ROOT / ".local" / "secret_key").read_text().strip()
    assert len(key) >= 32 and key != "dev-only-not-secret"
    elsewhere = development_key(tmp_path / "deeper" / "secret_key")
    assert elsewhere != key and len(elsewhere) >= 32
    assert (tmp_path / "deeper" / "secret_key").stat().st_mode & 0o077 == 0
    assert development_key(tmp_path / "deeper" / "secret_key") == elsewhere
    assert [p.name for p in (tmp_path / "deeper").iterdir()] == ["secret_key"]


def _session_cookie(app: Flask, base_url: str = "http://localhost") -> str:
    email = _email_of(app, Factory(app).user()[0])
    client = app.test_client()
    token = _csrf(client.get("/login", base_url=base_url).text)
    done = client.post("/login", base_url=base_url, headers={"Referer": f"{base_url}/login"},
                       data={"email": email, "password": FACTORY_PASSWORD, "csrf_token": token})
    assert done.status_code == 302
    cookies = [c for c in done.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, done.headers
    return cookies[-1]


def test_session_cookies_are_http_only_lax_and_secure_over_tls(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _session_cookie(app)
    assert "HttpOnly" in plain and "SameSite=Lax" in plain and "Secure" not in plain
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://dispatch.example")
    over_tls = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                           "REDIS_URL": app.config["REDIS_URL"], "TESTING": True})
    secure = _session_cookie(over_tls, "https://localhost")  # sent back over https only
    assert "Secure" in secure and "HttpOnly" in secure and "SameSite=Lax" in secure


# --------------------------------------------------------------------------- deployment


def test_compose_postgis_health_check_uses_tcp() -> None:
    """The image's init server listens on the socket only: a socket check passes before
    the other containers can connect."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    check = " ".join(compose["services"]["postgis"]["healthcheck"]["test"])
    assert "pg_isready" in check
    assert re.search(r"\s-h\s+127\.0\.0\.1\b", check), check


def test_codes_asked_for_and_tried_are_limited_per_user(client: FlaskClient, app: Flask,
                                                        make: Factory,
                                                        settings: Any) -> None:
    """Each code texted costs a text: one account cannot text code after code (to number
    after number, changing its phone between them), nor try code after code."""
    set_settings(app, rate_limit_phone_code_per_user="2 per hour")
    _, user = make.user(phone_verified=False)
    answers = [client.post("/api/v1/me/phone/code", headers=user).status_code,
               client.post("/api/v1/me/phone/verify", json={"code": "123456"},
                           headers=user).status_code,
               client.post("/api/v1/me/phone/code", headers=user).status_code]
    assert answers[2] == 429, answers


def test_sign_up_codes_are_limited_per_address_with_the_sign_ups(
        client: FlaskClient, app: Flask, settings: Any) -> None:
    """Guessing codes across fresh sign-ups from one address counts against the sign-ups."""
    set_settings(app, rate_limit_signup_per_ip="2 per hour")
    assert client.post("/api/v1/auth/register", json={
        "email": "one@example.com", "password": "a long enough secret", "name": "One",
        "phone": "+14155550101", "role": "resident"}).status_code == 202
    guess = {"ticket": "no-such-ticket", "code": "123456"}
    assert client.post("/api/v1/auth/register/confirm", json=guess).status_code == 422
    assert client.post("/api/v1/auth/register/confirm", json=guess).status_code == 429


def test_a_body_too_deep_to_read_does_not_break_the_login_limit(app: Flask) -> None:
    """A key function that raised would make Flask-Limiter take Redis for dead and count in
    the process's memory: the login key reads such a body as no email at all."""
    from dispatch.http.limits import login_email

    deep = "[" * 100_000 + "]" * 100_000
    with app.test_request_context("/api/v1/auth/token", method="POST", data=deep,
                                  content_type="application/json"):
        assert login_email() == "email:"
