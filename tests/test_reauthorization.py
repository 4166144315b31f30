"""Holds placed again before the card network lets them lapse (services/reauthorization.py):
once, under row locks, whatever number of sweepers run; a declined one gives the escrow back
and calls the job off. With the simulated processor and with the Stripe adapter (its SDK
answered by tests/stripe_fake.py)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.db import db
from dispatch.db.models import Role
from dispatch.infra.payments.stripe_provider import StripeProvider
from dispatch.services import confirmation, payments, reauthorization
from tests.helpers import Factory, ManualClock, book, count, job_body, set_settings, sql
from tests.stripe_fake import FakeStripe
from tests.test_escrow import authorization, books_clean, escrow_of, payment
from tests.test_races import race


def assigned_job(app: Flask, client: FlaskClient, make: Factory) -> tuple[int, Any, Any, Any]:
    """A job booked on Stripe's success token and accepted (test_job_flow's, with a method
    given, as Stripe needs)."""
    if app.config["DISPATCH"].offer_wave_size != 2:  # (a new Settings: a new provider)
        set_settings(app, offer_wave_size=2)
    worker_id, worker = make.worker()
    other = make.worker()
    resident_id, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(make.category("leak-repair"),
                                        payment_method="pm_card_visa"))
    assert r.status_code == 201, r.json
    job_id = r.json["id"]
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j AND worker_id = :w",
                   j=job_id, w=worker_id)[0].id
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker).status_code == 200
    return job_id, (worker_id, worker), (resident_id, resident), other


def _sweep(app: Flask, now: Any) -> int:
    with app.app_context():
        return reauthorization.sweep(db.session, now)


def test_a_hold_about_to_lapse_is_placed_again_once(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, _, _, _ = assigned_job(app, client, make)
    first = payment(app, job_id)
    assert first.payment_method == "pm_card_visa" and first.reauthorizations == 0
    escrow = escrow_of(app, job_id)
    manual_clock.advance(days=5)
    assert _sweep(app, manual_clock.now) == 0  # not due yet: more than 24 h left
    manual_clock.advance(days=1, hours=1)  # 23 h left
    with app.app_context():
        confirmation.sweep(db.session)  # the sweeper's backstop runs it
    again = payment(app, job_id)
    assert again.reauthorizations == 1 and again.authorization_id != first.authorization_id
    assert again.authorization_expires_at > first.authorization_expires_at
    assert (again.status, again.held_cents) == ("held", first.held_cents)
    assert authorization(app, first.authorization_id).status == "canceled"
    new = authorization(app, again.authorization_id)
    assert (new.status, new.amount_cents, new.party) == ("authorized", first.held_cents,
                                                         "pm_card_visa")
    # The books did not move: the money stayed in escrow.
    assert escrow_of(app, job_id) == escrow and books_clean(app) == []
    assert _sweep(app, manual_clock.now) == 0  # the second sweep finds nothing due
    assert payment(app, job_id).reauthorizations == 1
    assert sql(app, "SELECT count(*) AS n FROM sim_payment_objects "
                    "WHERE kind = 'authorization'")[0].n == 2


def test_sweepers_racing_reauthorize_once(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, _, _, _ = assigned_job(app, client, make)
    manual_clock.advance(days=6, hours=1)
    results = race([lambda: _sweep(app, manual_clock.now) for _ in range(4)])
    assert sorted(results) == [0, 0, 0, 1]
    assert payment(app, job_id).reauthorizations == 1
    assert sql(app, "SELECT count(*) AS n FROM sim_payment_objects WHERE kind = "
                    "'authorization' AND status = 'authorized'")[0].n == 1


def test_a_declined_reauthorization_gives_the_escrow_back_and_calls_the_job_off(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, _, (resident_id, _), _ = assigned_job(app, client, make)
    held = payment(app, job_id)
    # The card has since been refused (Stripe's test token for a declining card).
    sql(app, "UPDATE job_payments SET payment_method = 'pm_card_chargeDeclined' "
             "WHERE job_id = :j", j=job_id)
    manual_clock.advance(days=6, hours=1)
    assert _sweep(app, manual_clock.now) == 0
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0].status == "cancelled"
    after = payment(app, job_id)
    assert (after.status, after.refunded_cents) == ("voided", held.held_cents)
    assert authorization(app, held.authorization_id).status == "canceled"
    assert escrow_of(app, job_id) == 0 and books_clean(app) == []
    notice = sql(app, "SELECT event FROM notifications WHERE user_id = :u AND job_id = :j "
                      "AND event = 'card_declined'", u=resident_id, j=job_id)
    assert len(notice) == 1
    [event] = sql(app, "SELECT actor, detail FROM job_events WHERE job_id = :j AND "
                       "to_status = 'cancelled'", j=job_id)
    assert event.actor == "system"
    assert event.detail["escrow"] == "reauthorization_declined"
    assert _sweep(app, manual_clock.now) == 0 and count(app, "job_payments") == 1


def _with_stripe(app: Flask, manual_clock: ManualClock) -> FakeStripe:
    """The app's provider is the Stripe adapter, its SDK answered by the fake (whose clock
    is the app's, so holds lapse when the app thinks they do)."""
    settings = set_settings(app, payment_provider="stripe", stripe_secret_key="sk_test_123",
                            stripe_webhook_secret="whsec_test", offer_wave_size=2)
    fake = FakeStripe()
    fake.clock = lambda: manual_clock.now.timestamp()
    app.extensions[payments._KEY] = (settings, StripeProvider(
        "sk_test_123", "whsec_test", http_client=fake))
    return fake


def test_stripe_holds_are_kept_reusable_and_placed_again_off_session(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock,
        settings: Any) -> None:
    fake = _with_stripe(app, manual_clock)
    job_id, _, _, _ = assigned_job(app, client, make)
    first = payment(app, job_id)
    assert first.customer_id and first.customer_id.startswith("cus_")
    create = next(s for s in fake.sent if s.path == "/v1/payment_intents")
    assert create.params["setup_future_usage"] == ["off_session"]
    assert create.params["customer"] == [first.customer_id]
    manual_clock.advance(days=6, hours=1)
    assert _sweep(app, manual_clock.now) == 1
    assert _sweep(app, manual_clock.now) == 0
    again = payment(app, job_id)
    assert again.reauthorizations == 1 and again.authorization_id != first.authorization_id
    reauth = [s for s in fake.sent if s.path == "/v1/payment_intents"][-1]
    assert reauth.headers["Idempotency-Key"] == f"reauth:job:{job_id}:1:{first.held_cents}"
    assert reauth.params["off_session"] == ["true"]
    assert reauth.params["customer"] == [first.customer_id]
    assert reauth.params["payment_method"] == [first.payment_method]
    assert fake.intents[first.authorization_id]["status"] == "canceled"
    assert books_clean(app) == []


def test_stripe_declining_the_reauthorization_cancels_the_job(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock,
        settings: Any) -> None:
    fake = _with_stripe(app, manual_clock)
    job_id, _, _, _ = assigned_job(app, client, make)
    held = payment(app, job_id)
    sql(app, "UPDATE job_payments SET payment_method = "
             "'pm_card_chargeDeclinedInsufficientFunds' WHERE job_id = :j", j=job_id)
    manual_clock.advance(days=6, hours=1)
    assert _sweep(app, manual_clock.now) == 0
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0].status == "cancelled"
    assert payment(app, job_id).status == "voided" and escrow_of(app, job_id) == 0
    assert fake.intents[held.authorization_id]["status"] == "canceled"


def test_a_window_booked_ten_days_ahead_gets_a_timer_that_reauthorizes(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    from zoneinfo import ZoneInfo

    from redis import Redis
    from rq import Queue, SimpleWorker
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry

    from dispatch.infra.queues import TIMERS

    make.worker()
    _, resident = make.user(Role.RESIDENT)
    zone = ZoneInfo(app.config["DISPATCH"].service_timezone)
    day = (manual_clock.now.astimezone(zone) + timedelta(days=10)).date().isoformat()
    r = book(client, resident, job_body(make.category("leak-repair"),
                                        window={"date": day, "start": "10:00",
                                                "end": "12:00"}))
    assert r.status_code == 201, r.json
    job_id = r.json["id"]
    held = payment(app, job_id)
    conn = Redis.from_url(app.config["REDIS_URL"])
    queue = Queue(TIMERS, connection=conn)
    registry = ScheduledJobRegistry(queue=queue)
    assert registry.get_scheduled_time(f"reauthorize-{job_id}-1") == (
        held.authorization_expires_at - timedelta(hours=24))
    manual_clock.now = held.authorization_expires_at - timedelta(hours=23)
    rq_job = queue.fetch_job(f"reauthorize-{job_id}-1")
    assert rq_job is not None
    queue.enqueue_job(rq_job)
    with app.app_context():
        assert SimpleWorker([queue], connection=conn).work(burst=True)
    assert FailedJobRegistry(queue=queue).count == 0
    again = payment(app, job_id)
    assert again.reauthorizations == 1 and again.status == "held"
    # The new hold lasts past the window: no further timer.
    assert f"reauthorize-{job_id}-2" not in registry.get_job_ids()


def test_an_urgent_job_gets_no_timer(app: Flask, client: FlaskClient, make: Factory) -> None:
    from redis import Redis
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    from dispatch.infra.queues import TIMERS

    job_id, _, _, _ = assigned_job(app, client, make)
    registry = ScheduledJobRegistry(queue=Queue(TIMERS, connection=Redis.from_url(
        app.config["REDIS_URL"])))
    assert not [j for j in registry.get_job_ids() if j.startswith(f"reauthorize-{job_id}-")]


def test_a_declined_reauthorization_under_way_is_recorded_and_not_repeated(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    from tests.test_job_flow import post_status

    job_id, (_, worker), (resident_id, _), _ = assigned_job(app, client, make)
    assert post_status(client, job_id, worker, "en_route").status_code == 200
    sql(app, "UPDATE job_payments SET payment_method = 'pm_card_chargeDeclined' "
             "WHERE job_id = :j", j=job_id)
    manual_clock.advance(days=6, hours=1)
    assert _sweep(app, manual_clock.now) == 0
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0].status == "en_route"
    declined = payment(app, job_id)
    assert declined.status == "held" and declined.reauthorization_declined_at is not None
    with app.app_context():
        assert reauthorization.due(db.session, manual_clock.now) == []
        db.session.rollback()
    manual_clock.advance(hours=1)
    assert _sweep(app, manual_clock.now) == 0
    events = sql(app, "SELECT id FROM job_events WHERE job_id = :j AND "
                      "detail->>'escrow' = 'reauthorization_declined'", j=job_id)
    assert len(events) == 1
    assert len(sql(app, "SELECT id FROM notifications WHERE user_id = :u AND job_id = :j "
                        "AND event = 'card_declined'", u=resident_id, j=job_id)) == 1
    assert sql(app, "SELECT count(*) AS n FROM sim_payment_objects "
                    "WHERE kind = 'authorization'")[0].n == 2  # the booking's and one try


def _offers(app: Flask, job_id: int, status: str) -> int:
    return int(sql(app, "SELECT count(*) AS n FROM offers WHERE job_id = :j AND status = :s",
                   j=job_id, s=status)[0].n)


def test_a_declined_reauthorization_withdraws_a_dispatching_jobs_offers(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    if app.config["DISPATCH"].offer_wave_size != 2:
        set_settings(app, offer_wave_size=2)
    make.worker()
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(make.category("leak-repair"),
                                        payment_method="pm_card_visa"))
    assert r.status_code == 201, r.json
    job_id = r.json["id"]
    assert _offers(app, job_id, "pending") == 2
    sql(app, "UPDATE job_payments SET payment_method = 'pm_card_chargeDeclined' "
             "WHERE job_id = :j", j=job_id)
    manual_clock.advance(days=6, hours=1)
    assert _sweep(app, manual_clock.now) == 0
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0].status == "cancelled"
    assert _offers(app, job_id, "pending") == 0
    assert _offers(app, job_id, "withdrawn") == 2
    assert payment(app, job_id).status == "voided" and books_clean(app) == []


def test_the_reauthorization_key_names_the_amount(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, _, _, _ = assigned_job(app, client, make)
    held = payment(app, job_id)
    manual_clock.advance(days=6, hours=1)
    assert _sweep(app, manual_clock.now) == 1
    keys = sql(app, "SELECT idempotency_key FROM sim_payment_requests WHERE "
                    "idempotency_key LIKE :k",
               k=f"reauth:job:{job_id}:%")
    assert [k[0] for k in keys] == [f"reauth:job:{job_id}:1:{held.held_cents}"]


@pytest.mark.parametrize("hours", [0, -1, 168, 200])
def test_reauthorize_before_hours_must_be_within_a_holds_life(app: Flask, hours: float) -> None:
    with pytest.raises(ValueError, match="REAUTHORIZE_BEFORE_HOURS"):
        dataclasses.replace(app.config["DISPATCH"], reauthorize_before_hours=hours)
    assert dataclasses.replace(app.config["DISPATCH"],
                               reauthorize_before_hours=167.5).reauthorize_before_hours == 167.5
