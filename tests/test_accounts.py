"""Registration, login, tokens, phone numbers, password storage, and the login pages."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db import db
from dispatch.db.models import Role
from tests.helpers import Factory, count, csrf_in, run_texts, sign_up, sql
from tests.prism import VerifyingHttpClient
from tests.test_password_reset import page_login

ALICE = {"email": "Alice@Example.com", "password": "a long enough secret", "name": "Alice",
         "phone": "(415) 555-2671", "role": "resident"}


def test_register_normalizes_and_returns_a_working_token(
        app: Flask, client: FlaskClient, verify_http: VerifyingHttpClient) -> None:
    r = sign_up(client, ALICE)
    assert r.json["user"]["email"] == "alice@example.com"
    assert r.json["user"]["phone"] == "+14155552671"
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {r.json['token']}"})
    assert me.status_code == 200 and me.json["role"] == "resident"
    stored = sql(app, "SELECT password_hash FROM users")[0].password_hash
    assert stored.startswith("scrypt:") and ALICE["password"] not in stored
    token_rows = sql(app, "SELECT token_sha256 FROM api_tokens")
    assert token_rows[0].token_sha256 != r.json["token"]


def test_register_worker_creates_offline_profile(client: FlaskClient,
                                                 verify_http: VerifyingHttpClient) -> None:
    r = sign_up(client, {**ALICE, "role": "worker", "phone": "+44 20 7946 0958"})
    assert r.json["user"]["phone"] == "+442079460958"
    profile = client.get("/api/v1/worker/profile",
                         headers={"Authorization": f"Bearer {r.json['token']}"}).json
    assert profile["availability"] == "offline" and profile["skills"] == []


def test_registration_errors_name_the_field_and_keep_what_exists(
        app: Flask, client: FlaskClient, verify_http: VerifyingHttpClient) -> None:
    sign_up(client, ALICE)
    cases = [
        ({**ALICE, "email": "not-an-email"}, 422, "email"),
        ({**ALICE, "email": "c@example.com", "phone": "12"}, 422, "phone"),
        ({**ALICE, "email": "c@example.com", "phone": "+1 415 555 26"}, 422, "phone"),
        ({**ALICE, "email": "c@example.com", "password": "short"}, 422, "password"),
        ({**ALICE, "email": "c@example.com", "role": "admin"}, 422, "role"),
    ]
    for body, status, field in cases:
        r = client.post("/api/v1/auth/register", json=body)
        assert r.status_code == status, (body, r.json)
        assert r.json["error"]["fields"][0]["field"] == field, r.json
    assert count(app, "users") == 1
    assert len(verify_http.codes_sent()) == 1  # a refused sign-up texts nothing


def test_login_issues_tokens_and_refuses_bad_passwords(
        client: FlaskClient, verify_http: VerifyingHttpClient) -> None:
    sign_up(client, ALICE)
    ok = client.post("/api/v1/auth/token", json={"email": "alice@example.com",
                                                 "password": ALICE["password"]})
    assert ok.status_code == 201 and ok.json["token_type"] == "bearer"
    bad = client.post("/api/v1/auth/token", json={"email": "alice@example.com",
                                                  "password": "wrong password"})
    assert bad.status_code == 401 and bad.json["error"]["code"] == "bad_credentials"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def test_web_register_and_login_with_csrf(app: Flask,
                                         verify_http: VerifyingHttpClient) -> None:
    client = app.test_client()
    page = client.get("/register")
    assert page.status_code == 200
    form = {"name": "Wei", "email": "wei@example.com", "phone": "+86 138 0013 8000",
            "password": "a long enough secret", "role": "worker", "locale": "zh-CN"}
    no_token = client.post("/register", data=form)
    assert no_token.status_code == 400 and count(app, "users") == 0
    asked = client.post("/register", data={**form, "csrf_token": _csrf(page.text)})
    run_texts(app)
    assert asked.status_code == 302 and asked.location == "/register/confirm"
    assert count(app, "users") == 0  # nothing exists until the phone answers
    assert [r.data["To"] for r in verify_http.codes_sent()] == ["+8613800138000"]
    code_page = client.get("/register/confirm")
    assert "+8613800138000" in code_page.text
    done = client.post("/register/confirm", data={"code": "123456",
                                                  "csrf_token": _csrf(code_page.text)})
    assert done.status_code == 302
    home = client.get("/", follow_redirects=True)
    assert home.request.path == "/work" and "wei@example.com" in home.text
    assert sql(app, "SELECT phone_e164, locale FROM users")[0] == ("+8613800138000", "zh-CN")
    # The page session also authenticates the API (reads need no CSRF token).
    assert client.get("/api/v1/me").json["email"] == "wei@example.com"
    write = client.post("/api/v1/worker/availability", json={"availability": "online"})
    assert write.status_code == 400 and write.json["error"]["code"] == "csrf_failed"

    fresh = app.test_client()
    login_page = fresh.get("/login")
    wrong = fresh.post("/login", data={"email": "wei@example.com", "password": "nope nope",
                                       "csrf_token": _csrf(login_page.text)})
    assert wrong.status_code == 422 and "wrong" in wrong.text
    right = fresh.post("/login", data={"email": "wei@example.com",
                                       "password": "a long enough secret",
                                       "csrf_token": _csrf(login_page.text)})
    assert right.status_code == 302


def test_create_admin_command(app: Flask) -> None:
    runner = app.test_cli_runner()
    args = ["create-admin", "--email", "ops@example.com", "--name", "Ops", "--phone",
            "+14155550123", "--password", "a long enough secret"]
    done = runner.invoke(args=args)
    assert done.exit_code == 0, done.output
    assert sql(app, "SELECT role FROM users WHERE email = 'ops@example.com'")[0].role == "admin"
    again = runner.invoke(args=args)
    assert again.exit_code != 0 and "already registered" in again.output
    short = runner.invoke(args=[*args[:-1], "short"])
    assert short.exit_code != 0 and "password" in short.output


def _replay(app: Flask, cookie: str) -> FlaskClient:
    """Another client carrying a copy of a captured session cookie."""
    thief = app.test_client()
    thief.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie, domain="localhost")
    return thief


def test_logout_ends_the_session_for_every_copy_of_its_cookie(app: Flask,
                                                              make: Factory) -> None:
    make.user(Role.RESIDENT, email="rita@example.com")
    client = page_login(app, "rita@example.com")
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    assert _replay(app, cookie.value).get("/api/v1/me").status_code == 200  # the control
    other = page_login(app, "rita@example.com")  # another device stays logged in
    home = client.get("/profile")
    out = client.post("/logout", data={"csrf_token": csrf_in(home.text)})
    assert out.status_code == 302
    assert _replay(app, cookie.value).get("/api/v1/me").status_code == 401
    assert _replay(app, cookie.value).get("/profile").status_code == 302  # to the login page
    assert other.get("/api/v1/me").status_code == 200


def test_a_cookie_naming_only_a_user_id_opens_nothing(app: Flask, make: Factory) -> None:
    """A session cookie without a server-side session (forged with a leaked secret, or from
    before sessions were revocable) cannot be ended, so it is not accepted."""
    user_id, _ = make.user(Role.RESIDENT)
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(user_id)
    assert client.get("/api/v1/me").status_code == 401


def test_log_out_everywhere_ends_every_session_and_token(app: Flask, make: Factory) -> None:
    _, headers = make.user(Role.RESIDENT, email="rita@example.com")
    here = page_login(app, "rita@example.com")
    there = page_login(app, "rita@example.com")
    assert there.get("/api/v1/me").status_code == 200
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 200
    page = here.get("/profile")
    assert 'id="everywhere-form"' in page.text
    out = here.post("/logout-everywhere", data={"csrf_token": csrf_in(page.text)})
    assert out.status_code == 302
    for client in (here, there):
        assert client.get("/api/v1/me").status_code == 401
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 401


def test_ended_login_sessions_are_forgotten_by_the_sweeper(app: Flask, make: Factory) -> None:
    """Every logout used to leave its row for ever; an ended session opens nothing, so the
    sweeper forgets it (hourly), and live sessions stay."""
    from dispatch.entrypoints.sweeper import sweep_once

    make.user(Role.RESIDENT, email="lena@example.com")
    leaving = page_login(app, "lena@example.com")
    staying = page_login(app, "lena@example.com")
    page = leaving.get("/profile")
    assert leaving.post("/logout", data={"csrf_token": csrf_in(page.text)}).status_code == 302
    assert count(app, "login_sessions") == 2
    with app.app_context():
        sweep_once(db.session)
        db.session.remove()
    assert count(app, "login_sessions") == 1
    assert staying.get("/api/v1/me").status_code == 200
