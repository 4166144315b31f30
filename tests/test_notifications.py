"""Notifications: the outbox written with the change, sent by RQ through the real Twilio SDK
(against Prism serving Twilio's spec), at most once, retried, failed visibly, tracked by
signed status callbacks, in the recipient's language."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker

from dispatch.db import db
from dispatch.db.models import Role
from dispatch.entrypoints.tasks import (
    notification_attempt_failed,
    send_notification_task,
)
from dispatch.infra import presence
from dispatch.infra.queues import TEXTS
from dispatch.services import notify
from notifications.twilio_client import RecordingHttpClient, make_client
from tests.helpers import Factory, book, job_body, set_settings, sql
from tests.live import free_port
from tests.prism import PrismServer


@pytest.fixture
def twilio_http(app: Flask, prism: PrismServer) -> Iterator[RecordingHttpClient]:
    """Point the app's Twilio client at Prism, recording what the SDK sends."""
    http = RecordingHttpClient()
    s = app.config["DISPATCH"]
    app.extensions["dispatch.twilio"] = make_client(s.twilio_account_sid, s.twilio_auth_token,
                                                    prism.url, http_client=http)
    yield http
    app.extensions.pop("dispatch.twilio", None)


def run_queue(app: Flask) -> None:
    conn = Redis.from_url(app.config["REDIS_URL"])
    queue = Queue(TEXTS, connection=conn)
    with app.app_context():
        SimpleWorker([queue], connection=conn).work(burst=True)


def assign(app: Flask, client: FlaskClient, make: Factory, resident: dict[str, str]) -> int:
    set_settings(app, offer_wave_size=1)
    _, worker = make.worker(name="Wang Wei")
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j", j=job_id)[0].id
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker).status_code == 200
    return job_id


def post_status(app: Flask, client: FlaskClient, form: dict[str, str],
                signed: bool = True) -> Any:
    """A Twilio status callback, signed as Twilio signs it (or not at all)."""
    from twilio.request_validator import RequestValidator

    s = app.config["DISPATCH"]
    headers = {}
    if signed:
        headers["X-Twilio-Signature"] = RequestValidator(s.twilio_auth_token).compute_signature(
            s.public_base_url + "/webhooks/twilio/status", form)
    return client.post("/webhooks/twilio/status", data=form, headers=headers)


def sms_sent(http: RecordingHttpClient) -> list[dict[str, Any]]:
    return [r.data for r in http.requests if r.url.endswith("/Messages.json")]


def test_accepted_job_texts_the_resident_in_their_language(
    app: Flask, client: FlaskClient, make: Factory, twilio_http: RecordingHttpClient,
    settings: Any
) -> None:
    resident_id, resident = make.user(Role.RESIDENT)
    sql(app, "UPDATE users SET locale = 'zh-CN' WHERE id = :u", u=resident_id)
    job_id = assign(app, client, make, resident)
    run_queue(app)
    rows = sql(app, "SELECT event, status, twilio_sid, to_number FROM notifications "
                    "WHERE user_id = :u", u=resident_id)
    assert [(r.event, r.status) for r in rows] == [("accepted", "sent")]
    assert rows[0].twilio_sid  # Prism's answer, accepted by Twilio's own spec
    [sent] = [m for m in sms_sent(twilio_http) if m["To"] == rows[0].to_number]
    assert "Wang Wei" in sent["Body"] and "已接受" in sent["Body"]
    assert sent["From"] == app.config["DISPATCH"].twilio_messaging_from
    assert sent["StatusCallback"].endswith("/webhooks/twilio/status")
    assert job_id


def test_each_event_is_sent_at_most_once(app: Flask, client: FlaskClient, make: Factory,
                                         twilio_http: RecordingHttpClient,
                                         settings: Any) -> None:
    resident_id, resident = make.user(Role.RESIDENT)
    assign(app, client, make, resident)
    [notification_id] = [r.id for r in sql(
        app, "SELECT id FROM notifications WHERE user_id = :u", u=resident_id)]
    run_queue(app)
    with app.app_context():
        assert send_notification_task(notification_id) == "already_done"  # the job ran twice
    to = sql(app, "SELECT to_number FROM notifications WHERE id = :n", n=notification_id)[0]
    assert len([m for m in sms_sent(twilio_http) if m["To"] == to.to_number]) == 1
    with app.app_context():  # the same event queued again is refused by its key
        job = db.session.execute(db.text("SELECT id FROM jobs")).scalar_one()
        from dispatch.db.models import Job

        notify.job_status_changed(db.session, db.session.get(Job, job), "assigned", "dispatching")
        db.session.commit()
    assert sql(app, "SELECT count(*) AS n FROM notifications WHERE user_id = :u",
               u=resident_id)[0].n == 1


def test_a_rolled_back_change_sends_nothing(app: Flask, make: Factory) -> None:
    from dispatch.db.models import Job

    make.worker()
    _, resident = make.user(Role.RESIDENT)
    job_id = book(app.test_client(), resident, job_body(make.category("leak-repair"))).json["id"]
    before = Queue(TEXTS, connection=Redis.from_url(app.config["REDIS_URL"])).count
    with app.app_context():
        notify.job_status_changed(db.session, db.session.get(Job, job_id), "unfilled",
                                  "dispatching")
        db.session.rollback()
    assert sql(app, "SELECT count(*) AS n FROM notifications WHERE event = 'unfilled'")[0].n == 0
    assert Queue(TEXTS, connection=Redis.from_url(app.config["REDIS_URL"])).count == before


class _TwilioSaysNo(BaseHTTPRequestHandler):
    """Answers every request the way Twilio refuses an invalid 'To' number."""

    def do_POST(self) -> None:
        body = json.dumps({"code": 21211, "message": "The 'To' number is not a valid phone "
                           "number.", "more_info": "", "status": 400}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_permanent_and_exhausted_failures_are_recorded(app: Flask, client: FlaskClient,
                                                       make: Factory, settings: Any) -> None:
    resident_id, resident = make.user(Role.RESIDENT)
    assign(app, client, make, resident)
    [notification_id] = [r.id for r in sql(
        app, "SELECT id FROM notifications WHERE user_id = :u", u=resident_id)]
    s = app.config["DISPATCH"]
    # Twilio refuses the number: no retry can help, so it fails at once, visibly.
    server = HTTPServer(("127.0.0.1", 0), _TwilioSaysNo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app.extensions["dispatch.twilio"] = make_client(
        s.twilio_account_sid, s.twilio_auth_token, f"http://127.0.0.1:{server.server_port}")
    try:
        with app.app_context():
            assert send_notification_task(notification_id) == "failed"
    finally:
        server.shutdown()
    row = sql(app, "SELECT status, last_error, attempts FROM notifications WHERE id = :n",
              n=notification_id)[0]
    assert (row.status, row.attempts) == ("failed", 1) and "21211" in row.last_error

    # Twilio unreachable: each attempt raises for RQ to retry; after the last, it fails.
    sql(app, "UPDATE notifications SET status = 'queued' WHERE id = :n", n=notification_id)
    app.extensions["dispatch.twilio"] = make_client(
        s.twilio_account_sid, s.twilio_auth_token, f"http://127.0.0.1:{free_port()}")
    try:
        with app.app_context(), pytest.raises(Exception):  # noqa: B017
            send_notification_task(notification_id)
        assert sql(app, "SELECT status FROM notifications WHERE id = :n",
                   n=notification_id)[0].status == "retrying"

        class LastAttempt:
            retries_left = 0
            args = (notification_id,)

        with app.app_context():
            notification_attempt_failed(LastAttempt(), None, ConnectionError,
                                        ConnectionError("refused"), None)
    finally:
        app.extensions.pop("dispatch.twilio", None)
    row = sql(app, "SELECT status, last_error FROM notifications WHERE id = :n",
              n=notification_id)[0]
    assert row.status == "failed" and "gave up" in row.last_error
    _, admin = make.user(Role.ADMIN)
    failed = client.get("/api/v1/admin/notifications", headers=admin).json["notifications"]
    assert [(n["id"], n["status"]) for n in failed] == [(notification_id, "failed")]
    # A tenant's text (a unit's contact, no account) that failed is listed too, not a 500.
    sql(app, "INSERT INTO notifications (idempotency_key, user_id, event, to_number, locale, "
             "body, status, created_at, updated_at) VALUES ('tenant-1', NULL, 'tenant_update', "
             "'+14155550177', 'en', 'On the way', 'failed', now(), now())")
    failed = client.get("/api/v1/admin/notifications", headers=admin)
    assert failed.status_code == 200, failed.json
    assert [n["user_id"] for n in failed.json["notifications"]].count(None) == 1


def test_status_callbacks_update_delivery_only_when_signed(
    app: Flask, client: FlaskClient, make: Factory, twilio_http: RecordingHttpClient,
    settings: Any
) -> None:
    resident_id, resident = make.user(Role.RESIDENT)
    assign(app, client, make, resident)
    run_queue(app)
    sid = sql(app, "SELECT twilio_sid FROM notifications WHERE user_id = :u",
              u=resident_id)[0].twilio_sid
    form = {"MessageSid": sid, "MessageStatus": "delivered"}
    assert post_status(app, client, form, signed=False).status_code == 403
    assert post_status(app, client, form).status_code == 204
    assert sql(app, "SELECT status FROM notifications WHERE twilio_sid = :s",
               s=sid)[0].status == "delivered"


def test_offers_go_by_sms_only_to_workers_without_the_app_open(
    app: Flask, client: FlaskClient, make: Factory, settings: Any
) -> None:
    set_settings(app, offer_wave_size=2)
    away_id, _ = make.worker()
    present_id, _ = make.worker()
    with app.app_context():
        presence.socket_opened(present_id, "sid-1")
    _, resident = make.user(Role.RESIDENT)
    book(client, resident, job_body(make.category("leak-repair")))
    texted = [r.user_id for r in sql(app, "SELECT user_id FROM notifications "
                                          "WHERE event = 'offer'")]
    assert texted == [away_id]


def test_messages_whose_queue_entry_was_lost_are_sent_by_the_sweeper(
    app: Flask, client: FlaskClient, make: Factory, twilio_http: RecordingHttpClient,
    manual_clock: Any, settings: Any
) -> None:
    resident_id, resident = make.user(Role.RESIDENT)
    assign(app, client, make, resident)
    Redis.from_url(app.config["REDIS_URL"]).flushdb()  # every queued send is lost
    [row] = sql(app, "SELECT id, status FROM notifications WHERE user_id = :u", u=resident_id)
    assert row.status == "queued"
    with app.app_context():
        assert notify.sweep(db.session) == 0  # too fresh: it may still be on its way
    manual_clock.advance(minutes=3)
    with app.app_context():
        assert notify.sweep(db.session) == 2  # the resident's text and the worker's offer
    run_queue(app)
    assert sql(app, "SELECT status FROM notifications WHERE id = :n",
               n=row.id)[0].status == "sent"


def test_a_send_in_progress_is_not_sent_again_by_a_second_run(
    app: Flask, client: FlaskClient, make: Factory, twilio_http: RecordingHttpClient,
    settings: Any
) -> None:
    resident_id, resident = make.user(Role.RESIDENT)
    assign(app, client, make, resident)
    [row] = sql(app, "SELECT id FROM notifications WHERE user_id = :u", u=resident_id)
    sql(app, "UPDATE notifications SET status = 'sending' WHERE id = :n", n=row.id)
    with app.app_context():
        assert send_notification_task(row.id) == "already_done"
    assert sms_sent(twilio_http) == []


def test_late_offer_texts_are_skipped(
    app: Flask, client: FlaskClient, make: Factory, twilio_http: RecordingHttpClient,
    manual_clock: Any, settings: Any
) -> None:
    set_settings(app, offer_wave_size=1)
    worker_id, _ = make.worker()
    _, resident = make.user(Role.RESIDENT)
    book(client, resident, job_body(make.category("leak-repair")))
    [offer_text] = sql(app, "SELECT id FROM notifications WHERE event = 'offer'")
    manual_clock.advance(seconds=45)  # the queue was slow: the offer is over
    with app.app_context():
        assert send_notification_task(offer_text.id) == "already_done"
    row = sql(app, "SELECT status, last_error FROM notifications WHERE id = :n",
              n=offer_text.id)[0]
    assert row.status == "skipped" and "expired" in row.last_error
    assert worker_id


def test_texts_to_opted_out_numbers_are_skipped(
    app: Flask, client: FlaskClient, make: Factory, twilio_http: RecordingHttpClient,
    settings: Any
) -> None:
    resident_id, resident2 = make.user(Role.RESIDENT)
    phone = sql(app, "SELECT phone_e164 FROM users WHERE id = :u", u=resident_id)[0].phone_e164
    sql(app, "INSERT INTO sms_opt_outs (number, at) VALUES (:n, now())", n=phone)
    assign(app, client, make, resident2)
    [text_row] = sql(app, "SELECT id FROM notifications WHERE user_id = :u", u=resident_id)
    with app.app_context():
        send_notification_task(text_row.id)
    assert sql(app, "SELECT status FROM notifications WHERE id = :n",
               n=text_row.id)[0].status == "skipped"
    assert not any(m["To"] == phone for m in sms_sent(twilio_http))


def test_a_late_sent_callback_does_not_undo_delivered(app: Flask, client: FlaskClient,
                                                      make: Factory,
                                                      twilio_http: RecordingHttpClient,
                                                      settings: Any) -> None:
    resident_id, resident = make.user(Role.RESIDENT)
    assign(app, client, make, resident)
    run_queue(app)
    sid = sql(app, "SELECT twilio_sid FROM notifications WHERE user_id = :u",
              u=resident_id)[0].twilio_sid
    for state in ("delivered", "sent"):
        assert post_status(app, client, {"MessageSid": sid, "MessageStatus": state}
                           ).status_code == 204
    assert sql(app, "SELECT status FROM notifications WHERE user_id = :u",
               u=resident_id)[0].status == "delivered"


def test_booking_goes_on_when_redis_is_down(app: Flask, make: Factory) -> None:
    from redis import Redis as RedisClient

    make.worker()
    _, resident = make.user(Role.RESIDENT)
    real = app.extensions.get("dispatch.redis")
    app.extensions["dispatch.redis"] = RedisClient(port=free_port(), socket_connect_timeout=0.2)
    try:
        r = book(app.test_client(), resident, job_body(make.category("leak-repair")))
    finally:
        if real is None:
            app.extensions.pop("dispatch.redis")
        else:
            app.extensions["dispatch.redis"] = real
    assert r.status_code == 201 and r.json["status"] == "dispatching"
    # The offer text is in the outbox (nobody could be seen connected); the sweeper will
    # hand it to the queue once Redis is back.
    assert sql(app, "SELECT status FROM notifications WHERE event = 'offer'")[0].status == (
        "queued")


def test_the_last_failed_attempt_marks_the_text_failed_through_rq(
    app: Flask, client: FlaskClient, make: Factory, settings: Any
) -> None:
    """The failure callback is found by RQ by its import path and acts after the last try."""
    from rq import Retry

    from dispatch.infra.queues import queue

    resident_id, resident = make.user(Role.RESIDENT)
    assign(app, client, make, resident)
    [row] = sql(app, "SELECT id FROM notifications WHERE user_id = :u", u=resident_id)
    Redis.from_url(app.config["REDIS_URL"]).flushdb()
    with app.app_context():
        from rq import Callback

        queue(TEXTS).enqueue(send_notification_task, row.id, retry=Retry(max=1, interval=0),
                        on_failure=Callback(notification_attempt_failed))
    run_queue(app)  # fails (Twilio is a closed port here), retried once, fails again
    run_queue(app)
    state = sql(app, "SELECT status, attempts, last_error FROM notifications WHERE id = :n",
                n=row.id)[0]
    assert (state.status, state.attempts) == ("failed", 2) and "gave up" in state.last_error
