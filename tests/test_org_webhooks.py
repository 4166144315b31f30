"""Outgoing webhooks to a property-management system: signed with HMAC, one per job state
change, retried until the receiver takes it, failed visibly after the last retry."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.entrypoints.tasks import deliver_webhook_task, webhook_attempt_failed
from notifications.org_webhooks import DeliveryFailed, verify
from tests.helpers import Factory, book, set_settings, sql
from tests.test_portfolio import manager_with_property


class Receiver:
    """A local HTTP endpoint standing in for a property-management system."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_left = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                code = 500 if receiver.fail_left > 0 else 204
                receiver.fail_left -= 1
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/dispatch"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    r.stop()


def test_state_changes_are_posted_signed_and_retried(app: Flask, client: FlaskClient,
                                                     make: Factory, receiver: Receiver,
                                                     settings: Any) -> None:
    set_settings(app, offer_wave_size=1)
    pm, prop_id = manager_with_property(client, make)
    org = client.patch("/api/v1/org", json={"webhook_url": receiver.url}, headers=pm).json
    secret = org["webhook_secret"]
    assert org["webhook_url"] == receiver.url and len(secret) == 64
    unit_id = client.post("/api/v1/units", json={"property_id": prop_id, "label": "1A",
                                                 "address": "1 Elm St", "lat": 37.7749,
                                                 "lng": -122.4194}, headers=pm).json["id"]
    make.worker()
    job = book(client, pm, {"category_id": make.category("leak-repair"),
                            "description": "Leak", "unit_id": unit_id}).json
    [delivery] = sql(app, "SELECT id, status FROM webhook_deliveries")
    with app.app_context(), pytest.raises(DeliveryFailed):
        deliver_webhook_task(delivery.id)  # the receiver is down the first time: retry
    with app.app_context():
        assert deliver_webhook_task(delivery.id) == "sent"
        assert deliver_webhook_task(delivery.id) == "already_done"  # never twice
    assert len(receiver.received) == 2
    headers, body = receiver.received[-1]
    signature = headers["X-Dispatch-Signature"]
    assert verify(secret, body, signature, time.time())
    assert not verify(secret, body + b" ", signature, time.time())
    # A captured request replayed later is refused: the send time is signed too.
    assert not verify(secret, body, signature, time.time() + 301)
    sent_at = int(signature.split(",")[0].removeprefix("t="))
    forged = signature.replace(f"t={sent_at}", f"t={sent_at + 600}")
    assert not verify(secret, body, forged, time.time() + 600)
    # Garbage is a mismatch, never an exception in the receiver.
    for junk in ("", "t=\u00b2,sha256=00", "t=" + "9" * 5000, f"t={sent_at},sha256=\u00e9",
                 signature.split(",")[1]):
        assert not verify(secret, body, junk, time.time())
    payload = json.loads(body)
    assert payload == {**payload, "event": "job.status_changed", "job_id": job["id"],
                       "unit_id": unit_id, "from": "requested", "to": "dispatching"}
    assert headers["X-Dispatch-Delivery"] == str(delivery.id)


def test_a_receiver_that_never_answers_fails_visibly(app: Flask, client: FlaskClient,
                                                     make: Factory, settings: Any) -> None:
    dead = Receiver(fail_first=100)
    try:
        pm, prop_id = manager_with_property(client, make)
        client.patch("/api/v1/org", json={"webhook_url": dead.url}, headers=pm)
        unit_id = client.post("/api/v1/units", json={"property_id": prop_id, "label": "1A",
                                                     "address": "1 Elm St", "lat": 37.7749,
                                                     "lng": -122.4194}, headers=pm).json["id"]
        make.worker()
        book(client, pm, {"category_id": make.category("leak-repair"), "description": "Leak",
                          "unit_id": unit_id})
        [delivery] = sql(app, "SELECT id FROM webhook_deliveries")

        class LastAttempt:
            retries_left = 0
            args = (delivery.id,)

        with app.app_context():
            with pytest.raises(DeliveryFailed):
                deliver_webhook_task(delivery.id)
            webhook_attempt_failed(LastAttempt(), None, DeliveryFailed,
                                   DeliveryFailed("HTTP 500"), None)
        row = sql(app, "SELECT status, last_error, attempts FROM webhook_deliveries")[0]
        assert (row.status, row.attempts) == ("failed", 1) and "HTTP 500" in row.last_error
    finally:
        dead.stop()


def test_webhook_url_is_validated(client: FlaskClient, make: Factory) -> None:
    pm, _ = manager_with_property(client, make)
    r = client.patch("/api/v1/org", json={"webhook_url": "ftp://example.test/x"}, headers=pm)
    assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == "webhook_url"
    off = client.patch("/api/v1/org", json={"webhook_url": ""}, headers=pm)
    assert off.status_code == 200 and off.json["webhook_url"] is None


def test_webhooks_to_private_addresses_are_refused(app: Flask, client: FlaskClient,
                                                   make: Factory, settings: Any) -> None:
    set_settings(app, webhook_allow_private=False)
    pm, _ = manager_with_property(client, make)
    for url in ("http://127.0.0.1:55432/x", "http://169.254.169.254/latest", "http://10.0.0.7/"):
        r = client.patch("/api/v1/org", json={"webhook_url": url}, headers=pm)
        assert r.status_code == 422, url
        assert r.json["error"]["fields"][0]["field"] == "webhook_url"
