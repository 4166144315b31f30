"""Outgoing webhooks to a property-management system: signed with HMAC, one per job state
change, retried until the receiver takes it, failed visibly after the last retry."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.db import db
from dispatch.db.models import Job
from dispatch.entrypoints.tasks import deliver_webhook_task, webhook_attempt_failed
from dispatch.services import confirmation, org_hooks
from notifications.org_webhooks import DeliveryFailed, verify
from tests.helpers import Factory, book, set_settings, sql
from tests.test_portfolio import manager_with_property
from tests.test_statements import Org, confirmed


class Receiver:
    """A local HTTP endpoint standing in for a property-management system."""

    def __init__(self, fail_first: int = 0, host: str = "127.0.0.1", port: int = 0) -> None:
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

        self.server = HTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_port}/hooks/dispatch"
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
    [delivery] = sql(app, "SELECT id, status FROM webhook_deliveries "
                          "WHERE event = 'job.status_changed'")
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
        delivery_id = delivery_to(app, client, make, dead.url)

        class LastAttempt:
            retries_left = 0
            args = (delivery_id,)

        with app.app_context():
            with pytest.raises(DeliveryFailed):
                deliver_webhook_task(delivery_id)
            webhook_attempt_failed(LastAttempt(), None, DeliveryFailed,
                                   DeliveryFailed("HTTP 500"), None)
        row = sql(app, "SELECT status, last_error, attempts FROM webhook_deliveries "
                       "WHERE id = :d", d=delivery_id)[0]
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


def delivery_to(app: Flask, client: FlaskClient, make: Factory, url: str) -> int:
    """An organization whose webhook is `url`, and the delivery its first booking makes."""
    pm, prop_id = manager_with_property(client, make)
    assert client.patch("/api/v1/org", json={"webhook_url": url}, headers=pm).status_code == 200
    unit_id = client.post("/api/v1/units", json={"property_id": prop_id, "label": "1A",
                                                 "address": "1 Elm St", "lat": 37.7749,
                                                 "lng": -122.4194}, headers=pm).json["id"]
    make.worker()
    book(client, pm, {"category_id": make.category("leak-repair"), "description": "Leak",
                      "unit_id": unit_id})
    [delivery] = sql(app, "SELECT id FROM webhook_deliveries WHERE event = 'job.status_changed'")
    return int(delivery.id)


def deliver_with_dns(app: Flask, monkeypatch: Any, dns: Any, delivery_id: int) -> str:
    """One delivery attempt, private addresses refused, while `dns` answers lookups."""
    set_settings(app, webhook_allow_private=False)
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    try:
        with app.app_context():
            return deliver_webhook_task(delivery_id)
    finally:
        monkeypatch.setattr(socket, "getaddrinfo", real)


PUBLIC = "93.184.215.14"  # a global address: what the rebinding name answers the check


def test_a_rebinding_name_never_reaches_the_private_address(
    app: Flask, client: FlaskClient, make: Factory, settings: Any, monkeypatch: Any
) -> None:
    """A name that resolves to a public address when checked and to 127.0.0.1 when
    connected to (DNS rebinding) must not reach 127.0.0.1: the delivery connects to the
    address that was checked, and names the host in its Host header."""
    inside = Receiver()  # what the attacker wants to reach (loopback, the compose network)
    port = inside.server.server_port
    outside = Receiver(host="127.0.0.2", port=port)  # stands in for PUBLIC, in this test
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def rebinding_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        """DNS is outside the product: the first answer for the name is public, every later
        one is 127.0.0.1; the public address itself is routed to `outside`."""
        if host == "rebind.test":
            looked_up.append(host)
            address = PUBLIC if len(looked_up) == 1 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        if host == PUBLIC:
            return real("127.0.0.2", *args, **kwargs)
        return real(host, *args, **kwargs)

    try:
        delivery_id = delivery_to(app, client, make,
                                  f"http://rebind.test:{port}/hooks/dispatch?tenant=7")
        assert deliver_with_dns(app, monkeypatch, rebinding_dns, delivery_id) == "sent"
        assert inside.received == []
        assert looked_up == ["rebind.test"]  # resolved once: checked and used alike
        [(headers, _)] = outside.received
        assert headers["Host"] == f"rebind.test:{port}"
    finally:
        inside.stop()
        outside.stop()


def test_a_name_that_resolves_to_a_private_address_is_never_posted_to(
    app: Flask, client: FlaskClient, make: Factory, settings: Any, monkeypatch: Any
) -> None:
    inside = Receiver()
    real = socket.getaddrinfo

    def dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "inside.test":  # one public and one private answer: refused whole
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, 80)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))]
        return real(host, *args, **kwargs)

    try:
        delivery_id = delivery_to(app, client, make,
                                  f"http://inside.test:{inside.server.server_port}/hooks")
        assert deliver_with_dns(app, monkeypatch, dns, delivery_id) == "failed"
        assert inside.received == []
        row = sql(app, "SELECT status, last_error FROM webhook_deliveries WHERE id = :d",
                  d=delivery_id)[0]
        assert row.status == "failed" and "public" in row.last_error
    finally:
        inside.stop()


def test_money_movements_of_organization_jobs_are_posted_once_each(
    app: Flask, client: FlaskClient, make: Factory, receiver: Receiver, settings: Any,
    manual_clock: Any,
) -> None:
    """payment.held at booking, payment.captured and payment.refunded when the payer
    confirms less than was held, payment.voided when a job is called off before anyone set
    out, payment.expired when the hold lapses; a resident's job tells no organization."""
    org = Org(app, client, make)
    assert client.patch("/api/v1/org", json={"webhook_url": receiver.url},
                        headers=org.pm).status_code == 200
    done = confirmed(org, org.elm_unit)
    called_off = org.book(org.elm_unit)
    assert client.post(f"/api/v1/jobs/{called_off}/cancel", json={},
                       headers=org.pm).status_code == 200
    lapsed = org.book(org.oak_unit)
    _, resident = make.user()
    make.worker()
    assert book(client, resident, {"category_id": make.category("leak-repair"),
                                   "description": "Leak", "lat": 37.7749,
                                   "lng": -122.4194}).status_code == 201
    manual_clock.advance(days=7, seconds=1)
    with app.app_context():
        assert confirmation.sweep(db.session) >= 1

    def events(job_id: int) -> list[str]:
        return [r.event for r in sql(app, "SELECT event FROM webhook_deliveries WHERE job_id "
                                          "= :j AND event LIKE 'payment.%' ORDER BY id",
                                     j=job_id)]

    assert events(done) == ["payment.held", "payment.captured", "payment.refunded"]
    assert events(called_off) == ["payment.held", "payment.voided"]
    assert events(lapsed) == ["payment.held", "payment.expired"]
    assert sql(app, "SELECT count(*) FROM webhook_deliveries WHERE org_id IS NULL "
                    "OR job_id NOT IN (:a, :b, :c)", a=done, b=called_off, c=lapsed)[0][0] == 0

    paid = sql(app, "SELECT * FROM job_payments WHERE job_id = :j", j=done)[0]
    [captured] = sql(app, "SELECT id FROM webhook_deliveries WHERE job_id = :j "
                          "AND event = 'payment.captured'", j=done)
    receiver.fail_left = 0
    with app.app_context():
        assert deliver_webhook_task(captured.id) == "sent"
    headers, body = receiver.received[-1]
    assert headers["X-Dispatch-Event"] == "payment.captured"
    secret = sql(app, "SELECT webhook_secret FROM organizations WHERE id = "
                      "(SELECT org_id FROM jobs WHERE id = :j)", j=done)[0][0]
    assert verify(secret, body, headers["X-Dispatch-Signature"], time.time())
    payload = json.loads(body)
    assert payload == {**payload, "event": "payment.captured", "job_id": done,
                       "unit_id": org.elm_unit, "payment_status": "released",
                       "currency": "USD", "held_cents": paid.held_cents,
                       "charged_cents": paid.held_cents - 1000, "refunded_cents": 1000}

    # Told at most once per key: the movement retried writes no second delivery.
    with app.app_context():
        job = db.session.get(Job, done)
        assert job is not None
        before = sql(app, "SELECT count(*) FROM webhook_deliveries")[0][0]
        org_hooks.money_event(db.session, job, "payment.captured", {},
                              f"payment.captured:job:{done}", manual_clock.now)
        db.session.commit()
    assert sql(app, "SELECT count(*) FROM webhook_deliveries")[0][0] == before
