"""Accounts as people meet them: the operator's landing page, everyone's profile (name,
phone, language, password), a worker's profile (skills, travel, weekly hours), and booking
for later through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db import db
from dispatch.db.models import Role
from dispatch.entrypoints.sweeper import sweep_once
from tests.helpers import Factory, ManualClock, book, count, job_body, sql
from tests.test_password_reset import PASSWORD, _csrf, page_login


def test_an_operator_lands_on_a_page_that_says_where_things_are(app: Flask,
                                                                 make: Factory) -> None:
    make.user(Role.ADMIN, email="ops@example.test")
    client = page_login(app, "ops@example.test")
    home = client.get("/", follow_redirects=True)
    assert home.request.path == "/admin"
    for words in ("Jobs dashboard", "Alerts", "Failed text messages", "API reference"):
        assert words in home.text
    assert 'href="/manage"' in home.text and 'href="/api/v1/openapi.json"' in home.text
    make.user(Role.RESIDENT, email="res@example.test")
    assert page_login(app, "res@example.test").get("/admin").status_code == 403


def test_profile_changes_name_phone_and_language(app: Flask, make: Factory) -> None:
    make.user(Role.RESIDENT, email="li@example.test")
    make.user(Role.RESIDENT, phone="+14155550199")
    client = page_login(app, "li@example.test")
    page = client.get("/profile")
    token = _csrf(page.text, "account-")
    taken = client.post("/profile", data={"form": "account", "account-csrf_token": token,
                                          "account-name": "Li Na",
                                          "account-phone": "+1 415 555 0199",
                                          "account-locale": "zh-CN"})
    assert taken.status_code == 422
    assert "is already registered" in taken.text
    assert sql(app, "SELECT locale FROM users WHERE email = 'li@example.test'")[0].locale == "en"
    saved = client.post("/profile", data={"form": "account", "account-csrf_token": token,
                                          "account-name": "Li Na",
                                          "account-phone": "(415) 555-0123",
                                          "account-locale": "zh-CN"})
    assert saved.status_code == 302
    row = sql(app, "SELECT name, phone_e164, locale FROM users WHERE email = 'li@example.test'")
    assert tuple(row[0]) == ("Li Na", "+14155550123", "zh-CN")
    assert 'lang="zh-CN"' in client.get("/profile").text


def test_password_change_needs_the_current_one_and_ends_other_sessions(
    app: Flask, make: Factory
) -> None:
    _, api_headers = make.user(Role.WORKER, email="wu@example.test")
    here, elsewhere = page_login(app, "wu@example.test"), page_login(app, "wu@example.test")
    token = _csrf(here.get("/profile").text, "password-")
    wrong = here.post("/profile", data={"form": "password", "password-csrf_token": token,
                                        "password-current_password": "not my password",
                                        "password-new_password": "a new long password"})
    assert wrong.status_code == 422 and "is not your current password" in wrong.text
    assert app.test_client().get("/api/v1/me", headers=api_headers).status_code == 200
    done = here.post("/profile", data={"form": "password", "password-csrf_token": token,
                                       "password-current_password": PASSWORD,
                                       "password-new_password": "a new long password"})
    assert done.status_code == 302
    assert here.get("/profile").status_code == 200  # the session that changed it stays
    assert elsewhere.get("/profile").status_code == 302  # others are logged out
    assert app.test_client().get("/api/v1/me", headers=api_headers).status_code == 401
    page_login(app, "wu@example.test", "a new long password")


def test_account_api_names_the_field(client: FlaskClient, make: Factory) -> None:
    _, headers = make.user(Role.RESIDENT)
    bad = client.patch("/api/v1/me", json={"locale": "fr"}, headers=headers)
    assert bad.status_code == 422 and bad.json["error"]["fields"][0]["field"] == "locale"
    ok = client.patch("/api/v1/me", json={"locale": "zh-CN"}, headers=headers)
    assert ok.status_code == 200 and ok.json["locale"] == "zh-CN"
    wrong = client.post("/api/v1/me/password", headers=headers,
                        json={"current_password": "nope", "new_password": "long enough now"})
    assert wrong.status_code == 422
    assert wrong.json["error"]["fields"][0]["field"] == "current_password"


def test_worker_profile_keeps_weekly_hours(client: FlaskClient, make: Factory) -> None:
    _, headers = make.user(Role.WORKER)
    hours = [{"day": 4, "start": "9:00", "end": "17:30"}, {"day": 0, "start": "08:00",
                                                           "end": "12:00"}]
    r = client.patch("/api/v1/worker/profile", headers=headers,
                     json={"weekly_hours": hours, "travel_mode": "bike"})
    assert r.status_code == 200, r.json
    assert r.json["weekly_hours"] == [{"day": 0, "start": "08:00", "end": "12:00"},
                                      {"day": 4, "start": "09:00", "end": "17:30"}]
    assert r.json["time_zone"] == "America/Los_Angeles"
    assert client.get("/api/v1/worker/profile", headers=headers).json["weekly_hours"] == \
        r.json["weekly_hours"]
    backwards = client.patch("/api/v1/worker/profile", headers=headers, json={
        "weekly_hours": [{"day": 1, "start": "18:00", "end": "09:00"}]})
    assert backwards.status_code == 422
    assert backwards.json["error"]["fields"][0]["field"] == "weekly_hours.0.end"
    assert len(client.get("/api/v1/worker/profile", headers=headers).json["weekly_hours"]) == 2


def _tomorrow() -> str:
    zone = ZoneInfo("America/Los_Angeles")
    return (datetime.now(UTC).astimezone(zone).date() + timedelta(days=1)).isoformat()


def test_a_resident_books_a_window_for_later(app: Flask, client: FlaskClient,
                                             make: Factory) -> None:
    worker_id, _ = make.worker()
    _, resident = make.user(Role.RESIDENT)
    day = _tomorrow()
    body = job_body(make.category("leak-repair"),
                    window={"date": day, "start": "09:00", "end": "12:00"})
    r = book(client, resident, body)
    assert r.status_code == 201, r.json
    job = r.json
    assert job["urgency"] == "scheduled" and job["time_zone"] == "America/Los_Angeles"
    zone = ZoneInfo("America/Los_Angeles")
    start = datetime.fromisoformat(job["window_start"]).astimezone(zone)
    end = datetime.fromisoformat(job["window_end"]).astimezone(zone)
    assert (start.date().isoformat(), start.hour, end.hour) == (day, 9, 12)
    assert datetime.fromisoformat(job["arrive_by"]) == datetime.fromisoformat(job["window_end"])
    # Offered now to the worker who can reach it, with minutes (not seconds) to answer.
    [offer] = sql(app, "SELECT worker_id, expires_at - created_at AS answer FROM offers")
    assert offer.worker_id == worker_id
    assert offer.answer == timedelta(seconds=app.config["DISPATCH"].scheduled_offer_window_s)


def test_a_window_nobody_is_free_for_now_is_still_booked(client: FlaskClient,
                                                         make: Factory) -> None:
    _, resident = make.user(Role.RESIDENT)
    body = job_body(make.category("leak-repair"),
                    window={"date": _tomorrow(), "start": "13:00", "end": "17:00"})
    r = book(client, resident, body)
    assert r.status_code == 201 and r.json["status"] == "dispatching"


def test_a_window_booked_for_tomorrow_keeps_looking_past_the_urgent_patience(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    """Nobody free tonight: the job keeps looking (the sweeper asks whoever comes online)
    instead of going unfilled when the urgent patience runs out."""
    _, resident = make.user(Role.RESIDENT)
    body = job_body(make.category("leak-repair"),
                    window={"date": _tomorrow(), "start": "13:00", "end": "17:00"})
    r = book(client, resident, body)
    assert r.status_code == 201 and r.json["status"] == "dispatching", r.json
    manual_clock.advance(minutes=app.config["DISPATCH"].dispatch_patience_minutes + 30)
    with app.app_context():
        sweep_once(db.session)
    status = sql(app, "SELECT status FROM jobs WHERE id = :j", j=r.json["id"])[0][0]
    assert status == "dispatching"
    worker_id, _ = make.worker()  # someone comes online: asked for the window
    with app.app_context():
        sweep_once(db.session)
    assert [o.worker_id for o in sql(app, "SELECT worker_id FROM offers "
                                          "WHERE job_id = :j", j=r.json["id"])] == [worker_id]


def test_unusable_windows_are_refused_naming_the_field(app: Flask, client: FlaskClient,
                                                       make: Factory) -> None:
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    zone = ZoneInfo("America/Los_Angeles")
    today = datetime.now(UTC).astimezone(zone).date()
    cases = [
        ({"date": (today - timedelta(days=1)).isoformat(), "start": "09:00", "end": "12:00"},
         "window.date", "already over"),
        ({"date": (today + timedelta(days=90)).isoformat(), "start": "09:00", "end": "12:00"},
         "window.date", "60 days"),
        ({"date": _tomorrow(), "start": "12:00", "end": "09:00"},
         "window.end", "ends before it starts"),
        ({"date": _tomorrow(), "start": "25:00", "end": "26:00"},
         "window.start", "not a time of day"),
        ({"date": "tomorrow", "start": "09:00", "end": "12:00"}, "window.date", "date"),
    ]
    for window, field, problem in cases:
        r = book(client, resident, job_body(make.category("leak-repair"), window=window))
        assert r.status_code == 422, (window, r.json)
        [named] = r.json["error"]["fields"]
        assert named["field"] == field and problem in named["problem"], (window, named)
    assert count(app, "jobs") == 0


def test_the_api_document_describes_booking_for_later(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").json
    job_in = doc["components"]["schemas"]["JobIn"]
    assert "window" in job_in["properties"]
    assert "window.date" in doc["paths"]["/api/v1/jobs"]["post"]["description"]
