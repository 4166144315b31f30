"""The payment provider seam: one contract for the simulated card processor (against the
real database) and the Stripe adapter (through the stripe SDK's HTTP-client seam, answered in
Stripe's documented shapes), then what only the simulator does (expiry, raw test card
numbers, idempotency under races, webhooks delivered by an RQ worker), and the webhook
endpoint (once per event, signatures, staleness)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import create_engine

from dispatch.db import clock
from dispatch.infra.config import Settings
from dispatch.infra.payments import provider_for
from dispatch.infra.payments.base import (
    BadSignature,
    PaymentDeclined,
    PaymentError,
    PaymentProvider,
    PaymentRejected,
    sign,
)
from dispatch.infra.payments.simulated import SIGNATURE_HEADER, SimulatedProvider
from dispatch.infra.payments.stripe_provider import StripeProvider
from dispatch.infra.queues import WEBHOOKS
from dispatch.services import payments
from tests.helpers import ManualClock, set_settings, sql
from tests.stripe_fake import FakeStripe

STRIPE_WEBHOOK_SECRET = "whsec_test_secret"


@dataclass
class World:
    """A provider under test, and how its side signs a webhook at a given time."""

    name: str
    provider: PaymentProvider
    header: str
    secret: str
    now: Callable[[], float]
    stripe: FakeStripe | None = None

    def signed(self, event: dict[str, Any], at: float | None = None) -> tuple[bytes,
                                                                              dict[str, str]]:
        body = json.dumps(event).encode()
        return body, {self.header: sign(self.secret, body, int(self.now() if at is None
                                                               else at))}


def _simulated(app: Flask) -> World:
    provider = payments.simulator()
    return World("simulated", provider, SIGNATURE_HEADER,
                 app.config["DISPATCH"].payments_webhook_secret,
                 lambda: clock.now().timestamp())


def _stripe() -> World:
    fake = FakeStripe()
    return World("stripe", StripeProvider("sk_test_123", STRIPE_WEBHOOK_SECRET,
                                          http_client=fake),
                 "Stripe-Signature", STRIPE_WEBHOOK_SECRET, time.time, fake)


@pytest.fixture(params=["simulated", "stripe"])
def world(request: pytest.FixtureRequest, app: Flask, ctx: None) -> World:
    return _simulated(app) if request.param == "simulated" else _stripe()


@pytest.fixture
def sim(app: Flask, ctx: None) -> SimulatedProvider:
    return payments.simulator()


def _event(event_id: str, kind: str = "payment_intent.canceled",
           object_id: str = "pi_123") -> dict[str, Any]:
    """An event as Stripe sends it (the simulator sends the same envelope)."""
    return {"id": event_id, "object": "event", "type": kind, "created": int(time.time()),
            "api_version": "2024-06-20", "livemode": False,
            "data": {"object": {"id": object_id, "object": "payment_intent",
                                "status": "canceled"}}}


# ---------------------------------------------------------------- the contract, both ways


def test_a_hold_is_placed_captured_in_part_and_refunded(world: World) -> None:
    held = world.provider.authorize(12_500, "USD", "pm_card_visa", "book-1")
    assert (held.status, held.amount_cents, held.currency, held.decline_code) == (
        "authorized", 12_500, "USD", None)
    assert held.expires_at is not None
    assert timedelta(days=6, hours=23) < held.expires_at - clock.now() <= timedelta(days=7)
    assert held.require() is held
    captured = world.provider.capture(held.id, 10_000, "confirm-1")
    assert (captured.authorization_id, captured.amount_cents, captured.currency) == (
        held.id, 10_000, "USD")
    refund = world.provider.refund(captured.id, 2_500, "refund-1")
    assert (refund.capture_id, refund.amount_cents, refund.currency) == (
        captured.id, 2_500, "USD")


@pytest.mark.parametrize(("card", "code"), [
    ("pm_card_chargeDeclined", "card_declined"),
    ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
])
def test_documented_test_cards_decline_with_their_code(world: World, card: str,
                                                       code: str) -> None:
    held = world.provider.authorize(5_000, "USD", card, f"decline-{card}")
    assert (held.status, held.decline_code, held.expires_at) == ("declined", code, None)
    with pytest.raises(PaymentDeclined) as refused:
        held.require()
    assert refused.value.code == code


def test_a_capture_above_the_hold_is_refused(world: World) -> None:
    held = world.provider.authorize(5_000, "USD", "pm_card_visa", "hold-small")
    with pytest.raises(PaymentRejected) as refused:
        world.provider.capture(held.id, 5_001, "too-much")
    assert refused.value.code == "amount_too_large"
    assert world.provider.capture(held.id, 5_000, "all-of-it").amount_cents == 5_000


def test_a_hold_grows_by_an_incremental_authorization(world: World) -> None:
    held = world.provider.authorize(5_000, "USD", "pm_card_visa", "hold-grow")
    grown = world.provider.increment(held.id, 6_500, "grow-1")
    assert (grown.id, grown.status, grown.amount_cents) == (held.id, "authorized", 6_500)
    assert world.provider.increment(held.id, 6_500, "grow-1") == grown  # the same key
    assert world.provider.capture(held.id, 6_500, "all-of-grown").amount_cents == 6_500
    with pytest.raises(PaymentRejected):  # captured: no longer incrementable
        world.provider.increment(held.id, 7_000, "grow-2")


def test_a_cancelled_hold_cannot_be_captured(world: World) -> None:
    held = world.provider.authorize(5_000, "USD", "pm_card_visa", "hold-void")
    world.provider.cancel(held.id, "void-1")
    with pytest.raises(PaymentRejected):
        world.provider.capture(held.id, 1_000, "after-void")


def test_the_same_key_gets_the_same_answer(world: World) -> None:
    first = world.provider.authorize(7_000, "USD", "pm_card_visa", "same-key")
    again = world.provider.authorize(7_000, "USD", "pm_card_visa", "same-key")
    assert again == first
    if world.stripe is not None:  # the key went to Stripe as its Idempotency-Key
        assert [s.headers["Idempotency-Key"] for s in world.stripe.sent] == ["same-key"] * 2


def test_a_payout_goes_to_the_destination(world: World) -> None:
    paid = world.provider.payout("acct_1Worker", 9_000, "USD", "payout-1")
    assert (paid.destination, paid.amount_cents, paid.currency) == ("acct_1Worker", 9_000,
                                                                      "USD")
    assert paid.status in ("in_transit", "paid")


@pytest.mark.parametrize("amount", [0, -100, 12.5, True])
def test_amounts_are_positive_whole_cents(world: World, amount: Any) -> None:
    with pytest.raises(ValueError, match="amount_cents"):
        world.provider.authorize(amount, "USD", "pm_card_visa", f"bad-{amount!r}")


def test_webhooks_are_verified(world: World) -> None:
    body, headers = world.signed(_event("evt_1"))
    event = world.provider.parse_webhook(body, headers)
    assert (event.id, event.object_id) == ("evt_1", "pi_123")
    wrong = {k: v[:-1] + ("0" if v[-1] != "0" else "1") for k, v in headers.items()}
    for bad_body, bad_headers in [(body + b" ", headers), (body, wrong), (body, {}),
                                  (body, {world.header: "t=x,v1=zz"}),
                                  world.signed(_event("evt_1"), at=world.now() - 301)]:
        with pytest.raises(BadSignature):
            world.provider.parse_webhook(bad_body, bad_headers)


# ---------------------------------------------------------------- Stripe, on the wire


def test_stripe_is_asked_for_a_manual_capture_payment_intent() -> None:
    w = _stripe()
    assert w.stripe is not None
    held = w.provider.authorize(12_500, "USD", "pm_card_visa", "book-42")
    w.provider.capture(held.id, 11_000, "confirm-42")
    w.provider.cancel(held.id, "void-42")
    w.provider.payout("acct_1Worker", 9_000, "USD", "payout-42")
    create, capture, cancel, transfer = w.stripe.sent
    assert (create.method, create.path) == ("POST", "/v1/payment_intents")
    assert create.params == {"amount": ["12500"], "currency": ["usd"],
                             "payment_method": ["pm_card_visa"],
                             "payment_method_types[0]": ["card"],
                             "capture_method": ["manual"], "confirm": ["true"],
                             "payment_method_options[card][request_incremental_authorization]":
                                 ["if_available"]}
    assert create.headers["Idempotency-Key"] == "book-42"
    assert create.headers["Authorization"] == "Bearer sk_test_123"
    assert (capture.path, capture.params) == (f"/v1/payment_intents/{held.id}/capture",
                                              {"amount_to_capture": ["11000"]})
    assert capture.headers["Idempotency-Key"] == "confirm-42"
    assert cancel.path == f"/v1/payment_intents/{held.id}/cancel"
    assert (transfer.path, transfer.params) == ("/v1/transfers", {
        "amount": ["9000"], "currency": ["usd"], "destination": ["acct_1Worker"]})
    assert transfer.headers["Idempotency-Key"] == "payout-42"


def test_stripe_outages_are_retryable_errors() -> None:
    w = _stripe()
    assert w.stripe is not None
    w.stripe.down = True
    with pytest.raises(PaymentError):
        w.provider.authorize(1_000, "USD", "pm_card_visa", "outage")


def test_stripe_event_types_are_said_in_the_seams_words() -> None:
    w = _stripe()
    body, headers = w.signed(_event("evt_9", "payment_intent.amount_capturable_updated"))
    assert w.provider.parse_webhook(body, headers).type == "authorization.succeeded"


def test_stripe_without_its_keys_refuses_to_start(monkeypatch: pytest.MonkeyPatch,
                                                  app: Flask) -> None:
    monkeypatch.setenv("PAYMENT_PROVIDER", "stripe")
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET)
    with pytest.raises(ValueError, match="STRIPE_SECRET_KEY"):
        Settings.from_env()
    monkeypatch.setenv("PAYMENT_PROVIDER", "paypal")
    with pytest.raises(ValueError, match="PAYMENT_PROVIDER"):
        Settings.from_env()
    monkeypatch.setenv("PAYMENT_PROVIDER", "stripe")
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_123")
    settings = Settings.from_env()
    assert isinstance(provider_for(settings, lambda: None, clock.now),  # type: ignore[arg-type,return-value]
                      StripeProvider)
    with pytest.raises(ValueError):
        StripeProvider("", STRIPE_WEBHOOK_SECRET)


# ---------------------------------------------------------------- the simulator's own


def test_a_hold_expires_after_seven_days(sim: SimulatedProvider,
                                         manual_clock: ManualClock) -> None:
    late = sim.authorize(5_000, "USD", "pm_card_visa", "hold-late")
    in_time = sim.authorize(5_000, "USD", "4242424242424242", "hold-in-time")
    manual_clock.advance(days=6, hours=23, minutes=59)
    assert sim.capture(in_time.id, 5_000, "capture-in-time").amount_cents == 5_000
    manual_clock.advance(minutes=1)
    with pytest.raises(PaymentRejected) as refused:
        sim.capture(late.id, 5_000, "capture-late")
    assert refused.value.code == "authorization_expired"


@pytest.mark.parametrize(("card", "code"), [
    ("4242424242424242", None), ("4000000000000002", "card_declined"),
    ("4000000000009995", "insufficient_funds"), ("4000000000000069", "expired_card"),
])
def test_documented_test_card_numbers(sim: SimulatedProvider, card: str,
                                      code: str | None) -> None:
    held = sim.authorize(1_000, "USD", card, f"number-{card}")
    assert held.decline_code == code
    assert held.status == ("declined" if code else "authorized")


def test_an_unknown_card_and_a_reused_key_are_refused(sim: SimulatedProvider) -> None:
    with pytest.raises(PaymentRejected, match="payment method"):
        sim.authorize(1_000, "USD", "4111111111111112", "unknown-card")
    sim.authorize(1_000, "USD", "pm_card_visa", "reused")
    with pytest.raises(PaymentRejected) as refused:
        sim.authorize(2_000, "USD", "pm_card_visa", "reused")
    assert refused.value.code == "idempotency_key_reused"


def test_a_refusal_is_answered_again_for_its_key(sim: SimulatedProvider) -> None:
    held = sim.authorize(1_000, "USD", "pm_card_visa", "hold-r")
    for _ in range(2):
        with pytest.raises(PaymentRejected) as refused:
            sim.capture(held.id, 1_001, "capture-r")
        assert refused.value.code == "amount_too_large"


def test_an_unreachable_processor_is_a_retryable_error(app: Flask) -> None:
    nowhere = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/nothing",
                            connect_args={"connect_timeout": 2})
    cut_off = SimulatedProvider(lambda: nowhere, clock.now, "secret", "http://127.0.0.1:1/")
    with pytest.raises(PaymentError):
        cut_off.authorize(1_000, "USD", "pm_card_visa", "no-network")
    nowhere.dispose()


def _race(app: Flask, work: Callable[[int], Any], threads: int = 20) -> list[Any]:
    """Run `work(i)` on real threads released together; each answer or exception."""
    results: list[Any] = [None] * threads
    gate = threading.Barrier(threads)

    def run(i: int) -> None:
        with app.app_context():
            gate.wait()
            try:
                results[i] = work(i)
            except Exception as exc:  # the race's outcome is what we assert
                results[i] = exc

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


def test_retries_racing_with_one_key_capture_once(app: Flask, sim: SimulatedProvider) -> None:
    held = sim.authorize(10_000, "USD", "pm_card_visa", "hold-race")
    answers = _race(app, lambda i: sim.capture(held.id, 4_000, "capture-race"))
    assert len({a.id for a in answers}) == 1, answers
    assert sql(app, "SELECT count(*) AS n FROM sim_payment_objects WHERE kind = 'capture'")[
        0].n == 1


def test_captures_racing_for_one_hold_never_take_more_than_it(app: Flask,
                                                              sim: SimulatedProvider) -> None:
    held = sim.authorize(10_000, "USD", "pm_card_visa", "hold-split")
    answers = _race(app, lambda i: sim.capture(held.id, 4_000, f"split-{i}"))
    taken = [a for a in answers if not isinstance(a, Exception)]
    assert len(taken) == 2, answers
    assert all(isinstance(a, PaymentRejected) for a in answers if a not in taken)
    [row] = sql(app, "SELECT settled_cents FROM sim_payment_objects WHERE id = :i", i=held.id)
    assert row.settled_cents == 8_000


class Forwarder:
    """Our public address for the simulator's webhooks: a real HTTP endpoint that hands each
    request to the app (its test client), as the web process would take it."""

    def __init__(self, client: FlaskClient) -> None:
        self.statuses: list[int] = []
        forwarder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = client.post(self.path, data=body, headers=dict(self.headers))
                forwarder.statuses.append(answer.status_code)
                self.send_response(answer.status_code)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def forwarder(app: Flask, client: FlaskClient, settings: Settings) -> Iterator[Forwarder]:
    f = Forwarder(client)
    set_settings(app, public_base_url=f.url)
    yield f
    f.server.shutdown()


def _run_webhooks(app: Flask) -> None:
    conn = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        SimpleWorker([Queue(WEBHOOKS, connection=conn)], connection=conn).work(burst=True)


def test_operations_send_signed_webhooks_after_the_fact(app: Flask, forwarder: Forwarder,
                                                         ctx: None) -> None:
    sim = payments.simulator()
    held = sim.authorize(3_000, "USD", "pm_card_visa", "hold-hook")
    declined = sim.authorize(3_000, "USD", "pm_card_chargeDeclined", "hold-hook-declined")
    sim.authorize(3_000, "USD", "pm_card_visa", "hold-hook")  # a retry sends nothing more
    assert sql(app, "SELECT count(*) AS n FROM payment_events")[0].n == 0  # not yet: async
    _run_webhooks(app)
    rows = sql(app, "SELECT type, object_id FROM payment_events ORDER BY type")
    assert [(r.type, r.object_id) for r in rows] == [
        ("authorization.declined", declined.id), ("authorization.succeeded", held.id)]
    assert forwarder.statuses == [200, 200]


def test_a_payout_to_a_failing_account_fails_later(app: Flask, forwarder: Forwarder,
                                                   ctx: None) -> None:
    sim = payments.simulator()
    failing = sim.payout("fail", 4_000, "USD", "payout-fail")
    paying = sim.payout("acct_1Worker", 4_000, "USD", "payout-ok")
    assert failing.status == paying.status == "in_transit"
    _run_webhooks(app)
    rows = sql(app, "SELECT type, object_id FROM payment_events ORDER BY type")
    assert [(r.type, r.object_id) for r in rows] == [("payout.failed", failing.id),
                                                     ("payout.paid", paying.id)]
    assert sim.settle_payout(failing.id) == "already_settled"  # a retried job: once


# ---------------------------------------------------------------- the endpoint


def test_a_signed_event_is_taken_once(app: Flask, client: FlaskClient, ctx: None) -> None:
    w = _simulated(app)
    body, headers = w.signed(_event("evt_sim_once", "capture.succeeded", "ch_sim_1"))
    first = client.post("/webhooks/payments", data=body, headers=headers)
    assert (first.status_code, first.json) == (200, {"id": "evt_sim_once",
                                                     "duplicate": False})
    again = client.post("/webhooks/payments", data=body, headers=headers)
    assert (again.status_code, again.json["duplicate"]) == (200, True)
    [row] = sql(app, "SELECT id, type, object_id, data FROM payment_events")
    assert (row.id, row.type, row.object_id, row.data["status"]) == (
        "evt_sim_once", "capture.succeeded", "ch_sim_1", "canceled")


@pytest.mark.parametrize("how", ["unsigned", "wrong", "stale", "future"])
def test_a_badly_signed_event_is_refused(app: Flask, client: FlaskClient, ctx: None,
                                         manual_clock: ManualClock, how: str) -> None:
    w = _simulated(app)
    at = {"stale": w.now() - 301, "future": w.now() + 301}.get(how)
    body, headers = w.signed(_event("evt_sim_bad"), at=at)
    if how == "unsigned":
        headers = {}
    if how == "wrong":
        headers = {SIGNATURE_HEADER: sign("not-the-secret", body, int(w.now()))}
    answer = client.post("/webhooks/payments", data=body, headers=headers)
    assert answer.status_code == 400
    [found] = answer.json["error"]["fields"]
    assert (found["field"], found["kind"]) == ("signature", "signature.bad")
    assert sql(app, "SELECT count(*) AS n FROM payment_events")[0].n == 0


def test_every_process_signs_simulated_webhooks_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """The RQ worker signs what the web process verifies: without PAYMENTS_WEBHOOK_SECRET
    both derive it from the SECRET_KEY they share (never the key itself)."""
    monkeypatch.delenv("PAYMENTS_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    web, worker = Settings.from_env(), Settings.from_env()
    assert web.payments_webhook_secret == worker.payments_webhook_secret
    assert len(web.payments_webhook_secret) == 64 and "s" * 40 not in web.payments_webhook_secret
    monkeypatch.setenv("PAYMENTS_WEBHOOK_SECRET", "given")
    assert Settings.from_env().payments_webhook_secret == "given"


def test_deliveries_racing_record_an_event_once(app: Flask, ctx: None) -> None:
    w = _simulated(app)
    body, headers = w.signed(_event("evt_sim_race", "refund.succeeded", "re_sim_1"))
    answers = _race(app, lambda i: app.test_client().post("/webhooks/payments", data=body,
                                                          headers=headers).json)
    assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 19
    assert sql(app, "SELECT count(*) AS n FROM payment_events")[0].n == 1


def test_stripe_webhooks_reach_the_same_endpoint(app: Flask, client: FlaskClient,
                                                 settings: Settings) -> None:
    set_settings(app, payment_provider="stripe", stripe_secret_key="sk_test_123",
                 stripe_webhook_secret=STRIPE_WEBHOOK_SECRET)
    body, headers = _stripe().signed(_event("evt_1Stripe", "charge.captured", "ch_1"))
    taken = client.post("/webhooks/payments", data=body, headers=headers)
    assert (taken.status_code, taken.json["duplicate"]) == (200, False)
    assert [(r.type, r.object_id) for r in sql(app, "SELECT type, object_id FROM "
                                                    "payment_events")] == [
        ("capture.succeeded", "ch_1")]
    # The simulator's signature means nothing to Stripe's endpoint.
    forged = {SIGNATURE_HEADER: sign(settings.payments_webhook_secret, body, int(time.time()))}
    assert client.post("/webhooks/payments", data=body, headers=forged).status_code == 400
