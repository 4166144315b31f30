"""Sign-up that tells nothing, and phones proven with Twilio Verify (on Prism) before the
first booking, the first shift online and the first batch."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.registry import ScheduledJobRegistry

from dispatch.db import db
from dispatch.db.models import Role, User
from dispatch.domain.errors import DomainError
from dispatch.infra.queues import TEXTS
from dispatch.services import phone_verification
from notifications.twilio_client import make_client
from tests.helpers import (
    CODE,
    Factory,
    ManualClock,
    book,
    count,
    job_body,
    run_texts,
    sql,
)
from tests.prism import PrismServer, VerifyingHttpClient
from tests.test_portfolio import manager_with_property

NEW = {"email": "nia@example.com", "password": "a long enough secret", "name": "Nia",
       "phone": "+14155552671", "role": "resident"}


def _register(client: FlaskClient, body: dict[str, Any]) -> tuple[int, Any]:
    """Sign up, and let the queue text what it was asked to."""
    r = client.post("/api/v1/auth/register", json=body)
    run_texts(client.application)
    return r.status_code, r.json


def _ticket(client: FlaskClient, body: dict[str, Any]) -> str:
    status, answer = _register(client, body)
    assert status == 202, answer
    return str(answer["ticket"])


def _confirm(client: FlaskClient, ticket: str, code: str = CODE) -> Any:
    return client.post("/api/v1/auth/register/confirm", json={"ticket": ticket, "code": code})


def test_sign_up_texts_a_code_and_only_the_code_creates_the_account(
        app: Flask, client: FlaskClient, verify_http: VerifyingHttpClient) -> None:
    status, body = _register(client, NEW)
    assert status == 202 and "code" in body["message"]
    assert count(app, "users") == 0
    sent = verify_http.codes_sent()
    assert len(sent) == 1 and sent[0].method == "POST"
    assert sent[0].url.endswith("/v2/Services/VA" + "0" * 32 + "/Verifications")
    assert (sent[0].data["To"], sent[0].data["Channel"]) == ("+14155552671", "sms")
    done = _confirm(client, body["ticket"])
    assert done.status_code == 201, done.json
    check = verify_http.checks()[-1]
    assert (check.data["To"], check.data["Code"]) == ("+14155552671", CODE)
    assert done.json["user"]["phone_verified"] is True
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {done.json['token']}"})
    assert me.json["phone_verified"] is True
    # The code works once.
    assert _confirm(client, body["ticket"]).status_code == 422
    assert count(app, "users") == 1


def _shape(answer: tuple[int, Any]) -> tuple[int, str, int]:
    status, body = answer
    assert set(body) == {"message", "ticket"}
    return status, body["message"], len(body["ticket"])


def test_sign_up_answers_alike_when_the_email_or_phone_has_an_account(
        app: Flask, client: FlaskClient, verify_http: VerifyingHttpClient) -> None:
    """The owner is texted a notice instead; nothing is created, no code is sent, and the
    answer is the one a new person gets."""
    fresh = _register(client, NEW)
    _confirm(client, fresh[1]["ticket"])
    codes = len(verify_http.codes_sent())
    same_email = _register(client, {**NEW, "email": "NIA@example.com", "phone": "+14155550199"})
    same_phone = _register(client, {**NEW, "email": "other@example.com", "name": "Other"})
    assert _shape(same_email) == _shape(fresh) and _shape(same_phone) == _shape(fresh)
    assert len(verify_http.codes_sent()) == codes
    assert count(app, "users") == 1 and count(app, "phone_verifications") == 0
    notices = sql(app, "SELECT to_number, event FROM notifications ORDER BY id")
    # Once an hour at most, however many sign-ups try.
    assert [tuple(n) for n in notices] == [("+14155552671", "signup_attempted")]
    for ticket in (same_email[1]["ticket"], same_phone[1]["ticket"]):
        assert _confirm(client, ticket).json["error"]["fields"][0]["field"] == "code"
    assert count(app, "users") == 1


def test_a_code_for_someone_elses_sign_up_does_not_create_it(
        app: Flask, client: FlaskClient, verify_http: VerifyingHttpClient) -> None:
    """Someone who knows Nia's number signs up with it just after her: her code must not
    create their account on her phone. The later sign-up replaces hers (her ticket dies),
    and theirs needs the code texted to her."""
    hers = _ticket(client, NEW)
    theirs = _ticket(client, {**NEW, "email": "mallory@example.com",
                              "password": "mallory's own secret"})
    assert _confirm(client, hers).status_code == 422
    assert count(app, "users") == 0
    assert len(verify_http.codes_sent()) == 1  # no second text to her phone either
    assert theirs != hers


def test_a_wrong_code_creates_nothing_and_a_code_has_few_tries(
        app: Flask, client: FlaskClient, verify_http: VerifyingHttpClient,
        manual_clock: ManualClock) -> None:
    ticket = _ticket(client, NEW)
    verify_http.wrong_codes = True
    for _ in range(app.config["DISPATCH"].phone_code_checks):
        wrong = _confirm(client, ticket, "000000")
        assert wrong.status_code == 422, wrong.json
        assert wrong.json["error"]["fields"][0] == {
            "field": "code", "kind": "phone_code.wrong",
            "problem": "That code is wrong or no longer works: ask for a new one."}
    checks = len(verify_http.checks())
    verify_http.wrong_codes = False
    # Out of tries: even the right code is refused, without asking Twilio again.
    assert _confirm(client, ticket).status_code == 422
    assert len(verify_http.checks()) == checks and count(app, "users") == 0
    # Signing up again at once sends nothing and gives no new tries ...
    again = _ticket(client, NEW)
    assert _confirm(client, again).status_code == 422
    # ... a while later it texts again, but Twilio sends the same code while it lives, so
    # asking again buys no more guesses at it ...
    manual_clock.advance(seconds=app.config["DISPATCH"].phone_code_resend_s)
    resent = _ticket(client, NEW)
    assert len(verify_http.codes_sent()) == 2
    assert _confirm(client, resent).status_code == 422
    assert len(verify_http.checks()) == checks
    # ... and once that code is dead, a new one comes with its own tries.
    manual_clock.advance(minutes=app.config["DISPATCH"].phone_code_ttl_minutes)
    later = _ticket(client, NEW)
    assert len(verify_http.codes_sent()) == 3
    assert _confirm(client, later).status_code == 201


def test_signing_up_again_at_once_does_not_text_again(
        app: Flask, client: FlaskClient, verify_http: VerifyingHttpClient,
        manual_clock: ManualClock) -> None:
    """Sign-ups cannot flood a number with codes; the latest form is the one created."""
    tickets = [_ticket(client, {**NEW, "name": name}) for name in ("Nia", "Nia", "Nia B")]
    assert len(verify_http.codes_sent()) == 1
    assert _confirm(client, tickets[-1]).json["user"]["name"] == "Nia B"


def test_twilio_verify_down_changes_nothing_in_the_answer_and_the_queue_retries(
        app: Flask, client: FlaskClient, prism: PrismServer,
        prism_verify: PrismServer) -> None:
    """The test app's Twilio is a closed port. Sign-up answers as ever (the code is texted by
    the queue, so neither a slow Twilio nor one that fails shows in the answer), the failed
    send is retried, and once Twilio answers the code goes."""
    status, body = _register(client, NEW)
    assert status == 202 and body["ticket"]
    conn = Redis.from_url(app.config["REDIS_URL"])
    assert ScheduledJobRegistry(queue=Queue(TEXTS, connection=conn)).get_job_ids()
    http = VerifyingHttpClient()
    s = app.config["DISPATCH"]
    app.extensions["dispatch.twilio"] = make_client(
        s.twilio_account_sid, s.twilio_auth_token, prism.url, http_client=http,
        verify_base_url=prism_verify.url)
    try:
        sent_at = sql(app, "SELECT sent_at FROM phone_verifications")[0].sent_at
        with app.app_context():
            assert phone_verification.text_code(db.session, NEW["phone"], sent_at) is True
            # A code since replaced or answered is not texted.
            earlier = sent_at - timedelta(seconds=1)
            assert phone_verification.text_code(db.session, NEW["phone"], earlier) is False
        assert [r.data["To"] for r in http.codes_sent()] == [NEW["phone"]]
    finally:
        app.extensions.pop("dispatch.twilio", None)


def test_a_code_that_cannot_be_checked_is_a_503_naming_the_phone(
        app: Flask, client: FlaskClient) -> None:
    """The test app's Twilio is a closed port: not a 500, and nothing created."""
    r = _confirm(client, _ticket(client, NEW))
    assert r.status_code == 503 and r.json["error"]["code"] == "sms_unavailable"
    assert r.json["error"]["fields"][0]["field"] == "phone" and "Retry-After" in r.headers
    assert count(app, "users") == 0


def test_a_code_expires(app: Flask, client: FlaskClient, verify_http: VerifyingHttpClient,
                        manual_clock: ManualClock) -> None:
    ticket = _ticket(client, NEW)
    with app.app_context():
        assert phone_verification.sweep(db.session) == 0  # still alive: kept
    manual_clock.advance(minutes=app.config["DISPATCH"].phone_code_ttl_minutes, seconds=1)
    assert _confirm(client, ticket).status_code == 422
    assert verify_http.checks() == []
    # The sweeper forgets the unfinished sign-up (its email and password hash).
    with app.app_context():
        assert phone_verification.sweep(db.session) == 1
    assert count(app, "phone_verifications") == 0


def test_a_code_is_digits(client: FlaskClient, verify_http: VerifyingHttpClient) -> None:
    ticket = _ticket(client, NEW)
    for code in ("12ab56", "123", "12345678901", ""):
        r = _confirm(client, ticket, code)
        assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == "code"
    assert verify_http.checks() == []


def _unverified(make: Factory, role: Role = Role.RESIDENT) -> tuple[int, dict[str, str]]:
    return make.user(role, phone_verified=False)


def _refused_for_phone(r: Any) -> None:
    assert r.status_code == 403, r.json
    assert r.json["error"]["code"] == "phone_unverified"
    assert r.json["error"]["fields"][0]["field"] == "phone"


def _prove(client: FlaskClient, headers: dict[str, str]) -> None:
    assert client.post("/api/v1/me/phone/code", headers=headers).status_code == 202
    run_texts(client.application)
    r = client.post("/api/v1/me/phone/verify", json={"code": CODE}, headers=headers)
    assert r.status_code == 200 and r.json["phone_verified"] is True, r.json


def test_the_first_booking_needs_a_proven_phone(
        app: Flask, client: FlaskClient, make: Factory,
        verify_http: VerifyingHttpClient) -> None:
    make.worker()
    _, resident = _unverified(make)
    body = job_body(make.category("leak-repair"))
    _refused_for_phone(book(client, resident, body))
    assert count(app, "jobs") == 0
    assert client.get("/api/v1/me", headers=resident).json["phone_verified"] is False
    _prove(client, resident)
    assert [r.data["To"] for r in verify_http.codes_sent()] == [
        client.get("/api/v1/me", headers=resident).json["phone"]]
    assert book(client, resident, body).status_code == 201
    # A proven phone needs no second code.
    again = client.post("/api/v1/me/phone/code", headers=resident)
    assert again.status_code == 422 and again.json["error"]["fields"][0]["field"] == "phone"


def test_changing_the_phone_unproves_it(app: Flask, client: FlaskClient, make: Factory,
                                        verify_http: VerifyingHttpClient) -> None:
    make.worker()
    _, resident = make.user(phone="+14155550155")
    assert client.patch("/api/v1/me", json={"phone": "(415) 555-0155"},
                        headers=resident).json["phone_verified"] is True
    changed = client.patch("/api/v1/me", json={"phone": "+14155550188"}, headers=resident)
    assert changed.json["phone_verified"] is False
    _refused_for_phone(book(client, resident, job_body(make.category("leak-repair"))))


def test_a_wrong_code_does_not_prove_the_phone(client: FlaskClient, make: Factory,
                                               verify_http: VerifyingHttpClient) -> None:
    _, resident = _unverified(make)
    nothing_sent = client.post("/api/v1/me/phone/verify", json={"code": CODE}, headers=resident)
    assert nothing_sent.status_code == 422 and verify_http.checks() == []
    client.post("/api/v1/me/phone/code", headers=resident)
    verify_http.wrong_codes = True
    wrong = client.post("/api/v1/me/phone/verify", json={"code": "999999"}, headers=resident)
    assert wrong.status_code == 422 and wrong.json["error"]["fields"][0]["field"] == "code"
    assert client.get("/api/v1/me", headers=resident).json["phone_verified"] is False


def test_going_online_the_first_time_needs_a_proven_phone(
        client: FlaskClient, make: Factory, verify_http: VerifyingHttpClient) -> None:
    _, worker = make.worker(availability="offline", phone_verified=False)
    online = {"availability": "online"}
    _refused_for_phone(client.post("/api/v1/worker/availability", json=online, headers=worker))
    _prove(client, worker)
    r = client.post("/api/v1/worker/availability", json=online, headers=worker)
    assert r.status_code == 200 and r.json["availability"] == "online"


def test_a_managers_first_batch_needs_a_proven_phone(
        app: Flask, client: FlaskClient, make: Factory,
        verify_http: VerifyingHttpClient) -> None:
    pm, prop_id = manager_with_property(client, make)
    app_user = sql(app, "SELECT id FROM users WHERE role = 'property_manager'")[0].id
    sql(app, "UPDATE users SET phone_verified_at = NULL WHERE id = :u", u=app_user)
    unit = client.post("/api/v1/units", json={
        "property_id": prop_id, "label": "1A", "address": "1 Elm St", "lat": 37.77,
        "lng": -122.42}, headers=pm).json
    batch = {"batch_key": "b1", "rows": [{"unit_id": unit["id"], "category": "leak-repair",
                                          "description": "Leak"}]}
    _refused_for_phone(client.post("/api/v1/batches", json=batch, headers=pm))
    assert count(app, "batches") == 0
    _prove(client, pm)
    assert client.post("/api/v1/batches", json=batch, headers=pm).status_code == 202


def _csrf(html: str, prefix: str = "") -> str:
    match = re.search(rf'name="{prefix}csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def test_the_profile_page_sends_and_takes_the_code(
        app: Flask, make: Factory, verify_http: VerifyingHttpClient) -> None:
    make.user(phone_verified=False, email="pat@example.test", phone="+14155550166")
    web = app.test_client()
    login = web.get("/login")
    web.post("/login", data={"email": "pat@example.test", "password": "correct horse battery",
                             "csrf_token": _csrf(login.text)})
    page = web.get("/profile")
    assert "Send code" in page.text and 'id="phone-verify-form"' not in page.text
    token = _csrf(page.text, "phone-")
    sent = web.post("/profile", data={"form": "phone_code", "csrf_token": token},
                    follow_redirects=True)
    run_texts(app)
    assert [r.data["To"] for r in verify_http.codes_sent()] == ["+14155550166"]
    assert 'id="phone-verify-form"' in sent.text
    verify_http.wrong_codes = True
    wrong = web.post("/profile", data={"form": "phone_verify", "phone-code": "111111",
                                       "csrf_token": _csrf(sent.text, "phone-")})
    assert wrong.status_code == 422 and "wrong" in wrong.text
    verify_http.wrong_codes = False
    done = web.post("/profile", data={"form": "phone_verify", "phone-code": CODE,
                                      "csrf_token": _csrf(sent.text, "phone-")},
                    follow_redirects=True)
    assert "is confirmed" in done.text
    assert sql(app, "SELECT phone_verified_at IS NOT NULL AS ok FROM users")[0].ok


def test_seeded_demo_accounts_have_proven_phones(app: Flask) -> None:
    done = app.test_cli_runner().invoke(args=["seed-demo", "--workers", "2"])
    assert done.exit_code == 0, done.output
    assert sql(app, "SELECT count(*) AS n FROM users WHERE phone_verified_at IS NULL")[0].n == 0
    # A demo database seeded before phones were confirmed is put right at the next start.
    sql(app, "UPDATE users SET phone_verified_at = NULL")
    assert app.test_cli_runner().invoke(args=["seed-demo", "--workers", "2"]).exit_code == 0
    assert sql(app, "SELECT count(*) AS n FROM users WHERE phone_verified_at IS NULL")[0].n == 0


def test_a_code_proves_only_the_number_it_went_to(app: Flask, client: FlaskClient,
                                                 make: Factory,
                                                 verify_http: VerifyingHttpClient) -> None:
    """The phone changed while Twilio was checking the code texted to the old one: the code
    proves nothing about the new number."""
    user_id, resident = _unverified(make)
    assert client.post("/api/v1/me/phone/code", headers=resident).status_code == 202
    run_texts(app)
    with app.app_context():
        user = db.session.get(User, user_id)  # as the request read it, before the change
        assert user is not None
        sql(app, "UPDATE users SET phone_e164 = '+14155550199' WHERE id = :u", u=user_id)
        with pytest.raises(DomainError) as refused:
            phone_verification.verify_account_phone(db.session, user, CODE)
        assert refused.value.fields[0].field == "code"
        db.session.remove()
    assert sql(app, "SELECT phone_verified_at FROM users WHERE id = :u",
               u=user_id)[0].phone_verified_at is None
