"""Masked calls and texts on the pool numbers, through signed Twilio webhooks."""

from __future__ import annotations

import re
import threading
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from dispatch.db import db
from dispatch.db.models import Role
from notifications import masking
from tests.helpers import CENTER, Factory, ManualClock, book, job_body, offset, set_settings, sql

POOL = ["+14155550901", "+14155550902", "+14155550903"]


def signed_post(app: Flask, client: FlaskClient, path: str, form: dict[str, str],
                signature: str | None = None) -> Any:
    s = app.config["DISPATCH"]
    url = s.public_base_url.rstrip("/") + path
    if signature is None:
        signature = RequestValidator(s.twilio_auth_token).compute_signature(url, form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature})


def with_pool(app: Flask, numbers: list[str]) -> None:
    with app.app_context():
        masking.sync_pool(db.session, numbers)
        db.session.commit()


def assigned(app: Flask, client: FlaskClient, make: Factory, resident: dict[str, str],
             north_m: float = 0) -> tuple[int, int, dict[str, str], str]:
    """A job of `resident`, accepted by a new worker; (job, worker id, worker headers,
    worker's real number)."""
    set_settings(app, offer_wave_size=1)
    lat = offset(*CENTER, north_m=north_m)[0]
    worker_id, worker = make.worker(lat=lat)
    job_id = book(client, resident, job_body(make.category("leak-repair"), lat=lat)).json["id"]
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j AND worker_id = :w",
                   j=job_id, w=worker_id)[0].id
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker).status_code == 200
    phone = sql(app, "SELECT phone_e164 FROM users WHERE id = :u", u=worker_id)[0].phone_e164
    return job_id, worker_id, worker, phone


def phone_of(app: Flask, user_id: int) -> str:
    return sql(app, "SELECT phone_e164 FROM users WHERE id = :u", u=user_id)[0].phone_e164


def test_calls_connect_the_two_parties_through_the_pool_number(
    app: Flask, client: FlaskClient, make: Factory, settings: Any
) -> None:
    with_pool(app, POOL)
    resident_id, resident = make.user(Role.RESIDENT)
    job_id, _, worker, worker_phone = assigned(app, client, make, resident)
    resident_phone = phone_of(app, resident_id)
    number = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json["masked_number"]
    assert number in POOL
    assert client.get(f"/api/v1/jobs/{job_id}", headers=worker).json["masked_number"] == number

    r = signed_post(app, client, "/webhooks/twilio/voice",
                    {"From": resident_phone, "To": number, "CallSid": "CA1"})
    assert r.status_code == 200 and r.mimetype == "application/xml"
    assert f'<Dial callerId="{number}">{worker_phone}</Dial>' in r.text
    assert resident_phone not in r.text
    r = signed_post(app, client, "/webhooks/twilio/voice",
                    {"From": worker_phone, "To": number, "CallSid": "CA2"})
    assert f'<Dial callerId="{number}">{resident_phone}</Dial>' in r.text
    stranger = signed_post(app, client, "/webhooks/twilio/voice",
                           {"From": "+12025550123", "To": number})
    assert "<Dial" not in stranger.text and "<Say>" in stranger.text
    logged = sql(app, "SELECT kind, from_role, twilio_sid FROM masked_messages ORDER BY id")
    assert [tuple(r) for r in logged] == [("call", "resident", "CA1"), ("call", "worker", "CA2")]


def test_unsigned_or_wrongly_signed_webhooks_are_refused(app: Flask, client: FlaskClient,
                                                         make: Factory, settings: Any) -> None:
    with_pool(app, POOL)
    resident_id, resident = make.user(Role.RESIDENT)
    assigned(app, client, make, resident)
    form = {"From": phone_of(app, resident_id), "To": POOL[0], "Body": "hi"}
    for path in ("/webhooks/twilio/voice", "/webhooks/twilio/sms"):
        assert client.post(path, data=form).status_code == 403
        assert signed_post(app, client, path, form, signature="bm9wZQ==").status_code == 403
        forged = dict(form, Body="changed after signing")
        url = app.config["DISPATCH"].public_base_url + path
        good = RequestValidator(app.config["DISPATCH"].twilio_auth_token).compute_signature(
            url, form)
        assert client.post(path, data=forged,
                           headers={"X-Twilio-Signature": good}).status_code == 403
    assert sql(app, "SELECT count(*) AS n FROM masked_messages")[0].n == 0


def test_texts_are_forwarded_from_the_pool_number_with_media(
    app: Flask, client: FlaskClient, make: Factory, settings: Any
) -> None:
    with_pool(app, POOL)
    resident_id, resident = make.user(Role.RESIDENT)
    job_id, _, _, worker_phone = assigned(app, client, make, resident)
    resident_phone = phone_of(app, resident_id)
    number = sql(app, "SELECT p.e164 FROM masked_sessions s JOIN pool_numbers p "
                      "ON p.id = s.pool_number_id WHERE s.job_id = :j", j=job_id)[0].e164
    r = signed_post(app, client, "/webhooks/twilio/sms", {
        "From": resident_phone, "To": number, "Body": "Gate code is 4711", "NumMedia": "1",
        "MediaUrl0": "https://api.twilio.com/media/ME1", "MessageSid": "SM1"})
    assert f'<Message from="{number}" to="{worker_phone}">' in r.text
    assert "Gate code is 4711" in r.text
    assert "<Media>https://api.twilio.com/media/ME1</Media>" in r.text
    assert resident_phone not in r.text
    row = sql(app, "SELECT body, media_count FROM masked_messages")[0]
    assert (row.body, row.media_count) == (None, 1)  # bodies are not kept by default
    set_settings(app, keep_masked_message_bodies=True)
    signed_post(app, client, "/webhooks/twilio/sms",
                {"From": resident_phone, "To": number, "Body": "kept", "MessageSid": "SM2"})
    assert sql(app, "SELECT body FROM masked_messages WHERE twilio_sid = 'SM2'")[0].body == "kept"
    set_settings(app, keep_masked_message_bodies=False)

    unknown = signed_post(app, client, "/webhooks/twilio/sms",
                          {"From": "+12025550123", "To": number, "Body": "who is this"})
    assert "<Message>" in unknown.text and "not passed on" in unknown.text
    helped = signed_post(app, client, "/webhooks/twilio/sms",
                         {"From": worker_phone, "To": number, "Body": " help "})
    assert "Reply STOP" in helped.text and resident_phone not in helped.text
    stop = signed_post(app, client, "/webhooks/twilio/sms",
                       {"From": worker_phone, "To": number, "Body": "STOP"})
    assert "<Message" not in stop.text
    blocked = signed_post(app, client, "/webhooks/twilio/sms",
                          {"From": resident_phone, "To": number, "Body": "hello?"})
    assert worker_phone not in blocked.text and "turned texts off" in blocked.text
    signed_post(app, client, "/webhooks/twilio/sms",
                {"From": worker_phone, "To": number, "Body": "START"})
    again = signed_post(app, client, "/webhooks/twilio/sms",
                        {"From": resident_phone, "To": number, "Body": "hello?"})
    assert f'to="{worker_phone}"' in again.text


EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


def test_a_replayed_signed_text_or_call_is_answered_and_does_nothing(
    app: Flask, client: FlaskClient, make: Factory, settings: Any
) -> None:
    """The signature proves who sent a request, not that it is new: a captured text or call
    sent again (or Twilio's own retry) must not be forwarded or connected again."""
    with_pool(app, POOL)
    resident_id, resident = make.user(Role.RESIDENT)
    job_id, _, _, worker_phone = assigned(app, client, make, resident)
    number = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json["masked_number"]
    text = {"From": phone_of(app, resident_id), "To": number, "Body": "On my way down",
            "MessageSid": "SMreplayed"}
    call = {"From": phone_of(app, resident_id), "To": number, "CallSid": "CAreplayed"}
    first_text = signed_post(app, client, "/webhooks/twilio/sms", text)
    first_call = signed_post(app, client, "/webhooks/twilio/voice", call)
    assert f'to="{worker_phone}"' in first_text.text and "<Dial" in first_call.text
    for path, form in (("/webhooks/twilio/sms", text), ("/webhooks/twilio/voice", call)):
        again = signed_post(app, client, path, form)
        assert again.status_code == 200 and again.mimetype == "application/xml"
        assert again.text == EMPTY_TWIML, again.text
    logged = sql(app, "SELECT kind, twilio_sid FROM masked_messages ORDER BY id")
    assert [tuple(r) for r in logged] == [("sms", "SMreplayed"), ("call", "CAreplayed")]
    # A new text of the same words is a new message: it is forwarded.
    fresh = signed_post(app, client, "/webhooks/twilio/sms", {**text, "MessageSid": "SMnew"})
    assert f'to="{worker_phone}"' in fresh.text


def test_concurrent_replays_of_one_text_forward_it_once(
    app: Flask, make: Factory, settings: Any
) -> None:
    """Twilio's retry can arrive while the first delivery is still being handled: the
    primary key on the Sid lets exactly one of them through."""
    with_pool(app, POOL)
    resident_id, resident = make.user(Role.RESIDENT)
    job_id, _, _, worker_phone = assigned(app, app.test_client(), make, resident)
    number = sql(app, "SELECT p.e164 FROM masked_sessions s JOIN pool_numbers p "
                      "ON p.id = s.pool_number_id WHERE s.job_id = :j", j=job_id)[0].e164
    form = {"From": phone_of(app, resident_id), "To": number, "Body": "race",
            "MessageSid": "SMraced"}
    start = threading.Barrier(8)
    answers: list[str] = []

    def replay() -> None:
        client = app.test_client()
        start.wait()
        answers.append(signed_post(app, client, "/webhooks/twilio/sms", form).text)

    threads = [threading.Thread(target=replay) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(f'to="{worker_phone}"' in a for a in answers) == 1
    assert answers.count(EMPTY_TWIML) == 7
    assert sql(app, "SELECT count(*) AS n FROM masked_messages")[0].n == 1


def test_two_concurrent_jobs_of_one_resident_get_two_pool_numbers(
    app: Flask, client: FlaskClient, make: Factory, settings: Any
) -> None:
    with_pool(app, POOL)
    _, resident = make.user(Role.RESIDENT)
    first, *_ = assigned(app, client, make, resident)
    second, *_ = assigned(app, client, make, resident, north_m=500)
    numbers = [client.get(f"/api/v1/jobs/{j}", headers=resident).json["masked_number"]
               for j in (first, second)]
    assert None not in numbers and numbers[0] != numbers[1]


def test_closed_sessions_connect_nobody(app: Flask, client: FlaskClient, make: Factory,
                                        manual_clock: ManualClock, settings: Any) -> None:
    with_pool(app, POOL)
    set_settings(app, masking_close_after_minutes=30)
    resident_id, resident = make.user(Role.RESIDENT)
    job_id, _, worker, worker_phone = assigned(app, client, make, resident)
    number = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json["masked_number"]
    for status in ("arrived", "in_progress", "completed"):
        client.post(f"/api/v1/jobs/{job_id}/status", json={"status": status}, headers=worker)
    call = {"From": phone_of(app, resident_id), "To": number}
    manual_clock.advance(minutes=10)  # a follow-up call shortly after the job still works
    assert "<Dial" in signed_post(app, client, "/webhooks/twilio/voice", call).text
    manual_clock.advance(minutes=25)
    assert "<Dial" not in signed_post(app, client, "/webhooks/twilio/voice", call).text
    assert client.get(f"/api/v1/jobs/{job_id}", headers=resident).json["masked_number"] is None
    with app.app_context():
        from dispatch.services import contact

        contact.sweep(db.session)
    assert sql(app, "SELECT count(*) AS n FROM masked_participants WHERE open")[0].n == 0
    sms = signed_post(app, client, "/webhooks/twilio/sms",
                      {"From": worker_phone, "To": number, "Body": "one more thing"})
    assert phone_of(app, resident_id) not in sms.text


def test_pool_exhaustion_is_visible_and_the_job_goes_on(
    app: Flask, client: FlaskClient, make: Factory, settings: Any
) -> None:
    with_pool(app, POOL[:1])
    _, admin = make.user(Role.ADMIN)
    _, resident = make.user(Role.RESIDENT)
    first, *_ = assigned(app, client, make, resident)
    second, *_ = assigned(app, client, make, resident, north_m=500)
    job = client.get(f"/api/v1/jobs/{second}", headers=resident).json
    assert job["status"] == "assigned" and job["masked_number"] is None
    kinds = [e["kind"] for e in client.get(f"/api/v1/jobs/{second}/events",
                                           headers=resident).json["events"]]
    assert "masking_unavailable" in kinds
    alerts = client.get("/api/v1/admin/alerts", headers=admin).json["alerts"]
    assert [(a["kind"], a["job_id"]) for a in alerts] == [("masking_unavailable", second)]
    assert client.get(f"/api/v1/jobs/{first}", headers=resident).json["masked_number"] == POOL[0]


def test_one_busy_pair_never_drains_the_pool(app: Flask, client: FlaskClient, make: Factory,
                                            settings: Any) -> None:
    """A worker and a resident with job after job, each cancelled or finished within the
    grace period, more jobs than the pool has numbers: the next job still gets one. Ended
    jobs' sessions give their number back (at once when cancelled, on demand while a
    finished job's grace runs)."""
    with_pool(app, POOL)
    set_settings(app, offer_wave_size=1, masking_close_after_minutes=30)
    worker_id, worker = make.worker()
    resident_id, resident = make.user(Role.RESIDENT)
    category = make.category("leak-repair")

    def take_job() -> tuple[int, str | None]:
        job_id = book(client, resident, job_body(category)).json["id"]
        offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j AND worker_id = :w",
                       j=job_id, w=worker_id)[0].id
        accept = client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker)
        assert accept.status_code == 200, accept.json
        return job_id, client.get(f"/api/v1/jobs/{job_id}", headers=resident).json[
            "masked_number"]

    for n in range(len(POOL) + 3):
        job_id, number = take_job()
        assert number in POOL, n
        if n % 3 == 2:  # done: the number stays with them during the grace period...
            for status in ("arrived", "in_progress", "completed"):
                client.post(f"/api/v1/jobs/{job_id}/status", json={"status": status},
                            headers=worker)
            call = {"From": phone_of(app, resident_id), "To": number}
            assert "<Dial" in signed_post(app, client, "/webhooks/twilio/voice", call).text
        else:  # ...a cancelled job gives it back at once
            cancel = client.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=resident)
            assert cancel.status_code == 200, cancel.json
            assert client.get(f"/api/v1/jobs/{job_id}",
                              headers=resident).json["masked_number"] is None
    job_id, number = take_job()
    assert number in POOL
    assert sql(app, "SELECT count(*) AS n FROM operator_alerts")[0].n == 0
    held = sql(app, "SELECT count(*) AS n FROM masked_participants m JOIN masked_sessions s "
                    "ON s.id = m.session_id WHERE m.open AND m.user_id = :w", w=worker_id)
    assert held[0].n <= len(POOL)


def test_the_sweeper_frees_the_number_of_any_job_that_ended(
    app: Flask, client: FlaskClient, make: Factory, settings: Any
) -> None:
    """Whatever way a job left the active statuses, its session does not outlive it."""
    with_pool(app, POOL)
    _, resident = make.user(Role.RESIDENT)
    job_id, *_ = assigned(app, client, make, resident)
    sql(app, "UPDATE jobs SET status = 'unfilled' WHERE id = :j", j=job_id)  # a path that
    # forgot to say so
    with app.app_context():
        from dispatch.services import contact

        contact.sweep(db.session)
    assert sql(app, "SELECT count(*) AS n FROM masked_participants WHERE open")[0].n == 0


def test_a_failing_masked_session_never_loses_the_accept(
    app: Flask, client: FlaskClient, make: Factory, monkeypatch: Any,
    manual_clock: ManualClock, settings: Any
) -> None:
    """The accept opens the masked session in its own transaction, under a savepoint: when
    that fails the accept still stands, and the sweeper's retry opens the session later."""
    with_pool(app, POOL[:1])
    _, resident = make.user(Role.RESIDENT)

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the pool's database is having a bad day")

    real = masking.open_session
    monkeypatch.setattr(masking, "open_session", broken)
    job_id, worker_id, _, _ = assigned(app, client, make, resident)
    job = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
    assert job["status"] == "assigned" and job["worker"]["id"] == worker_id
    assert job["masked_number"] is None
    kinds = [e.kind for e in sql(app, "SELECT kind FROM job_events WHERE job_id = :j", j=job_id)]
    assert "masked_session_opened" not in kinds and "status" in kinds
    monkeypatch.setattr(masking, "open_session", real)
    manual_clock.advance(seconds=30)  # past the sweeper's settling time
    with app.app_context():
        from dispatch.services import contact

        contact.sweep(db.session)
    assert client.get(f"/api/v1/jobs/{job_id}", headers=resident).json["masked_number"] == POOL[0]


NUMBERS = st.integers(min_value=2_000_000, max_value=9_999_999).map(lambda n: f"+1415{n}")


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(pairs=st.lists(st.tuples(NUMBERS, NUMBERS).filter(lambda p: p[0] != p[1]),
                      min_size=1, max_size=6),
       pool_size=st.integers(min_value=1, max_value=4), data=st.data())
def test_no_real_number_ever_reaches_the_other_party(app: Flask, pairs: list[tuple[str, str]],
                                                     pool_size: int, data: Any) -> None:
    """Random sessions over a random pool: whoever calls or texts, the TwiML dials or
    addresses only the other party, always from the pool number, and never contains the
    caller's own real number."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    from dispatch.services import ledger

    pool = [f"+1628555{n:04d}" for n in range(pool_size)]
    client = app.test_client()
    with app.app_context():
        db.session.execute(text(ledger.ALLOW_TRUNCATE))  # the CASCADE reaches the ledger
        db.session.execute(text("TRUNCATE masked_messages, masked_participants, masked_sessions, "
                                "pool_numbers, jobs, users RESTART IDENTITY CASCADE"))
        masking.sync_pool(db.session, pool)
        opened: list[tuple[str, str, str]] = []
        for i, (a, b) in enumerate(pairs):
            ids = []
            for role, number in (("resident", a), ("worker", b)):
                ids.append(db.session.execute(text(
                    "INSERT INTO users (email, name, phone_e164, role, password_hash) VALUES "
                    "(:e, 'x', :p, :r, 'x') ON CONFLICT (phone_e164) DO UPDATE SET name = 'x' "
                    "RETURNING id"), {"e": f"{role}{i}@h.test", "p": number, "r": role}
                ).scalar_one())
            job = db.session.execute(text(
                "INSERT INTO jobs (resident_id, category_id, description, location, status, "
                "requested_at, arrive_by, idempotency_key, request_fingerprint) VALUES "
                "(:r, 3, 'x', 'SRID=4326;POINT(0 0)', 'assigned', now(), now(), :k, 'x') "
                "RETURNING id"), {"r": ids[0], "k": f"k{i}"}).scalar_one()
            try:
                _, number = masking.open_session(db.session, job, (
                    masking.Participant("resident", ids[0], a),
                    masking.Participant("worker", ids[1], b)), datetime.now(UTC))
                opened.append((a, b, number))
            except masking.PoolExhausted:
                pass
        db.session.commit()
    for a, b, number in opened:
        caller, other = data.draw(st.sampled_from([(a, b), (b, a)]))
        for path, form in (("/webhooks/twilio/voice", {"From": caller, "To": number}),
                           ("/webhooks/twilio/sms", {"From": caller, "To": number,
                                                     "Body": "hello"})):
            r = signed_post(app, client, path, form)
            assert caller not in r.text
            targets = re.findall(r"<Dial callerId=\"([^\"]+)\">([^<]+)</Dial>"
                                 r"|<Message from=\"([^\"]+)\" to=\"([^\"]+)\">", r.text)
            assert targets, r.text
            for dial_from, dial_to, msg_from, msg_to in targets:
                assert (dial_from or msg_from) == number
                assert (dial_to or msg_to) == other
    held: set[tuple[str, str]] = set()
    for a, b, number in opened:  # nobody holds one pool number in two open sessions
        for person in (a, b):
            assert (person, number) not in held
            held.add((person, number))


def test_without_an_auth_token_every_webhook_is_refused(app: Flask, client: FlaskClient,
                                                        settings: Any) -> None:
    """A deployment that forgot TWILIO_AUTH_TOKEN must not accept requests signed with an
    empty or well-known key."""
    form = {"From": "+14155550123", "To": POOL[0], "Body": "hi"}
    url = app.config["DISPATCH"].public_base_url + "/webhooks/twilio/sms"
    set_settings(app, twilio_auth_token="")
    forged = RequestValidator("").compute_signature(url, form)
    assert client.post("/webhooks/twilio/sms", data=form,
                       headers={"X-Twilio-Signature": forged}).status_code == 403


def test_ordinary_replies_are_forwarded_not_taken_as_keywords(
    app: Flask, client: FlaskClient, make: Factory, settings: Any
) -> None:
    with_pool(app, POOL)
    resident_id, resident = make.user(Role.RESIDENT)
    _, _, _, worker_phone = assigned(app, client, make, resident)
    for reply in ("Yes", "info please"):
        r = signed_post(app, client, "/webhooks/twilio/sms",
                        {"From": phone_of(app, resident_id), "To": POOL[0], "Body": reply})
        assert f'to="{worker_phone}"' in r.text
