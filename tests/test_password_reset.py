"""Password reset: a signed, expiring, single-use link texted (through the outbox, the real
Twilio SDK and Prism) to the account's phone; the answer never tells whether the account
exists; a few links an hour per account; the new password ends every other session."""

from __future__ import annotations

import re
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from notifications.twilio_client import RecordingHttpClient
from tests.helpers import Factory, ManualClock, count, sql
from tests.test_notifications import run_queue, sms_sent, twilio_http  # noqa: F401

PASSWORD = "correct horse battery"  # the factories'
NEW_PASSWORD = "a brand new long secret"


def _csrf(html: str, prefix: str = "") -> str:
    match = re.search(rf'name="{prefix}csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def page_login(app: Flask, email: str, password: str = PASSWORD) -> FlaskClient:
    client = app.test_client()
    page = client.get("/login")
    done = client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": _csrf(page.text)})
    assert done.status_code == 302, done.text
    return client


def ask_for_link(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    page = client.get("/forgot-password")
    answer = client.post("/forgot-password", data={"email": email,
                                                   "csrf_token": _csrf(page.text)})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/login")
    return client


def texted_link(app: Flask, http: RecordingHttpClient, phone: str) -> str:
    run_queue(app)
    [text] = [m["Body"] for m in sms_sent(http) if m["To"] == phone]
    found = re.search(r"(https?://\S+/reset-password/\S+)", text)
    assert found, text
    return found.group(1)


def test_the_texted_link_sets_a_new_password_once_and_ends_other_sessions(
    app: Flask, make: Factory, twilio_http: RecordingHttpClient  # noqa: F811
) -> None:
    user_id, api_headers = make.user(Role.RESIDENT, email="ana@example.test",
                                     phone="+14155550177")
    other_device = page_login(app, "ana@example.test")
    assert other_device.get("/profile").status_code == 200

    asking = ask_for_link(app, "ana@example.test")
    told = asking.get("/login").text
    assert "If an account uses that email" in told
    link = texted_link(app, twilio_http, "+14155550177")
    assert sql(app, "SELECT status FROM notifications WHERE user_id = :u",
               u=user_id)[0].status == "sent"
    path = link.split("://", 1)[1].split("/", 1)[1]

    client = app.test_client()
    form = client.get(f"/{path}")
    assert form.status_code == 200 and "new password" in form.text.lower()
    short = client.post(f"/{path}", data={"new_password": "short", "csrf_token": _csrf(form.text)})
    assert short.status_code == 422
    done = client.post(f"/{path}", data={"new_password": NEW_PASSWORD,
                                         "csrf_token": _csrf(form.text)})
    assert done.status_code == 302 and done.headers["Location"].endswith("/login")

    # Once: the link names the password it replaced.
    again = app.test_client().get(f"/{path}")
    assert again.status_code == 410 and "expired or was already used" in again.text
    token = path.rsplit("/", 1)[1]
    by_api = app.test_client().post("/api/v1/auth/password-reset/confirm",
                                    json={"token": token, "new_password": "yet another secret"})
    assert by_api.status_code == 422
    assert by_api.json["error"]["fields"][0]["field"] == "token"

    # Everything opened with the old password has ended; the new one works.
    assert other_device.get("/profile").status_code == 302
    assert app.test_client().get("/api/v1/me", headers=api_headers).status_code == 401
    page_login(app, "ana@example.test", NEW_PASSWORD)


def test_the_answer_is_the_same_for_unknown_accounts_and_nothing_is_sent(
    app: Flask, make: Factory
) -> None:
    make.user(Role.RESIDENT, email="known@example.test")
    api = app.test_client()
    unknown = api.post("/api/v1/auth/password-reset", json={"email": "nobody@example.test"})
    known = api.post("/api/v1/auth/password-reset", json={"email": "known@example.test"})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json == known.json
    assert count(app, "notifications") == 1
    assert sql(app, "SELECT event FROM notifications")[0].event == "password_reset"


def test_links_are_rate_limited_per_account(app: Flask, make: Factory,
                                            manual_clock: ManualClock) -> None:
    make.user(Role.RESIDENT, email="flood@example.test")
    make.user(Role.RESIDENT, email="other@example.test")
    limit = app.config["DISPATCH"].password_resets_per_hour
    api = app.test_client()
    first = api.post("/api/v1/auth/password-reset", json={"email": "flood@example.test"})
    for _ in range(limit + 2):
        manual_clock.advance(minutes=1)
        r = api.post("/api/v1/auth/password-reset", json={"email": "flood@example.test"})
        assert r.status_code == 202 and r.json == first.json
    assert count(app, "notifications") == limit
    # Another account is not held back by the first one's limit.
    api.post("/api/v1/auth/password-reset", json={"email": "other@example.test"})
    assert count(app, "notifications") == limit + 1
    # An hour after the first link, the account may have another.
    manual_clock.advance(minutes=60)
    api.post("/api/v1/auth/password-reset", json={"email": "flood@example.test"})
    assert count(app, "notifications") == limit + 2


def test_a_link_expires(app: Flask, make: Factory, manual_clock: ManualClock) -> None:
    from dispatch.db import db
    from dispatch.db.models import User
    from dispatch.services.password_reset import reset_token

    user_id, _ = make.user(Role.RESIDENT)
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        minutes = app.config["DISPATCH"].password_reset_ttl_minutes
        token = reset_token(user, manual_clock.now + timedelta(minutes=minutes))
    client = app.test_client()
    assert client.get(f"/reset-password/{token}").status_code == 200
    manual_clock.advance(minutes=minutes, seconds=1)
    assert client.get(f"/reset-password/{token}").status_code == 410
    forged = client.post("/api/v1/auth/password-reset/confirm",
                         json={"token": token[:-2] + "xx", "new_password": NEW_PASSWORD})
    assert forged.status_code == 422 and forged.json["error"]["fields"][0]["field"] == "token"
