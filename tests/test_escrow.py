"""Escrow: the hold at booking, its release on confirmation or by itself after completion,
and what cancelling or an unfilled job gives back, all on the real ledger and the simulated
card processor."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from dispatch.db import db
from dispatch.entrypoints.sweeper import sweep_once
from dispatch.infra.queues import TIMERS
from dispatch.services import confirmation, dispatching, ledger, payments
from tests.helpers import Factory, ManualClock, book, count, job_body, set_settings, sql
from tests.test_batches import add_unit, run_queue
from tests.test_hanging_jobs import NEARBY, accepted_job, sweep_no_shows
from tests.test_job_flow import assigned_job, post_status
from tests.test_portfolio import manager_with_property
from tests.test_races import race

DECLINED_CARD = "4000000000000002"


def escrow_of(app: Flask, job_id: int) -> int:
    return sql(app, "SELECT coalesce(sum(e.amount_cents), 0) AS n FROM ledger_entries e "
                    "JOIN ledger_accounts a ON a.id = e.account_id "
                    "WHERE a.kind = 'escrow' AND a.job_id = :j", j=job_id)[0].n


def balance_of(app: Flask, kind: str, user_id: int | None = None) -> int:
    return sql(app, "SELECT coalesce(sum(e.amount_cents), 0) AS n FROM ledger_entries e "
                    "JOIN ledger_accounts a ON a.id = e.account_id WHERE a.kind = :k "
                    "AND (CAST(:u AS integer) IS NULL OR a.user_id = :u)",
               k=kind, u=user_id)[0].n


def payment(app: Flask, job_id: int) -> Any:
    return sql(app, "SELECT * FROM job_payments WHERE job_id = :j", j=job_id)[0]


def authorization(app: Flask, authorization_id: str) -> Any:
    return sql(app, "SELECT * FROM sim_payment_objects WHERE id = :i", i=authorization_id)[0]


def books_clean(app: Flask) -> list[str]:
    with app.app_context():
        found = ledger.check(db.session)
        db.session.rollback()
        return found


def completed_job(app: Flask, client: FlaskClient, make: Factory) -> tuple[int, Any, Any]:
    job_id, (worker_id, worker), (resident_id, resident), _ = assigned_job(app, client, make)
    for status in ("en_route", "arrived", "in_progress", "completed"):
        assert post_status(client, job_id, worker, status).status_code == 200
    return job_id, (worker_id, worker), (resident_id, resident)



def timer_releases(app: Flask, job_id: int, now: datetime) -> bool:
    """The automatic release as the RQ timer runs it: in its own app context and session
    (a racing thread's)."""
    with app.app_context():
        try:
            return confirmation.auto_release(db.session, job_id, now)
        finally:
            db.session.remove()

def test_booking_holds_the_high_estimate(app: Flask, client: FlaskClient,
                                         make: Factory) -> None:
    make.worker()
    _, resident = make.user()
    r = book(client, resident, job_body(make.category("leak-repair")))
    assert r.status_code == 201, r.json
    job_id = r.json["id"]
    high = sql(app, "SELECT estimate_high_cents FROM jobs WHERE id = :j", j=job_id)[0][0]
    held = payment(app, job_id)
    assert (held.status, held.held_cents) == ("held", high)
    assert escrow_of(app, job_id) == high
    found = authorization(app, held.authorization_id)
    assert (found.status, found.amount_cents, found.party) == ("authorized", high,
                                                               "pm_card_visa")
    # The same booking again holds nothing more.
    again = book(client, resident, job_body(make.category("leak-repair")), key="same")
    assert book(client, resident, job_body(make.category("leak-repair")),
                key="same").json["id"] == again.json["id"]
    assert count(app, "job_payments") == 2
    assert sql(app, "SELECT count(*) FROM sim_payment_objects WHERE kind = 'authorization'"
               )[0][0] == 2
    assert books_clean(app) == []


def test_a_declined_card_stores_no_job_and_holds_nothing(app: Flask, client: FlaskClient,
                                                          make: Factory) -> None:
    make.worker()
    _, resident = make.user()
    r = book(client, resident, job_body(make.category("leak-repair"),
                                        payment_method=DECLINED_CARD))
    assert r.status_code == 402, r.json
    assert r.json["error"]["code"] == "payment_declined"
    [field] = r.json["error"]["fields"]
    assert field["field"] == "payment_method" and "card declined" in field["problem"]
    assert count(app, "jobs") == 0 and count(app, "job_payments") == 0
    assert count(app, "ledger_entries") == 0
    unknown = book(client, resident, job_body(make.category("leak-repair"),
                                              payment_method="pm_nonsense"))
    assert unknown.status_code == 422
    assert unknown.json["error"]["fields"][0]["field"] == "payment_method"


def test_stripe_needs_a_payment_method(app: Flask, client: FlaskClient, make: Factory,
                                       settings: Any) -> None:
    set_settings(app, payment_provider="stripe", stripe_secret_key="sk_test_x")
    make.worker()
    _, resident = make.user()
    r = book(client, resident, job_body(make.category("leak-repair")))
    assert r.status_code == 422, r.json
    assert r.json["error"]["fields"][0]["field"] == "payment_method"
    assert count(app, "jobs") == 0


def test_an_honest_refusal_holds_nothing(app: Flask, client: FlaskClient,
                                         make: Factory) -> None:
    _, resident = make.user()  # no worker anywhere
    r = book(client, resident, job_body(make.category("leak-repair")))
    assert r.status_code == 409, r.json
    assert count(app, "sim_payment_objects") == 0 and count(app, "ledger_entries") == 0


def test_confirmation_pays_the_worker_less_the_fee_and_refunds_the_rest(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    job_id, (worker_id, _), (_, resident) = completed_job(app, client, make)
    held = payment(app, job_id).held_cents
    sql(app, "UPDATE jobs SET final_amount_cents = :c WHERE id = :j", c=held - 5000, j=job_id)
    early = client.post(f"/api/v1/jobs/{job_id}/confirm", headers=resident)
    assert early.status_code == 200, early.json
    assert early.json["status"] == "closed"
    charged = held - 5000
    fee = -(-charged * 15 // 100)  # leak repair: 15 %
    assert balance_of(app, "worker_balance", worker_id) == charged - fee
    assert balance_of(app, "platform_fees") == fee
    assert balance_of(app, "refunds") == 5000
    assert escrow_of(app, job_id) == 0
    done = payment(app, job_id)
    assert (done.status, done.captured_cents, done.refunded_cents) == ("released", charged, 5000)
    # Confirming again charges nothing more.
    assert client.post(f"/api/v1/jobs/{job_id}/confirm", headers=resident).status_code == 200
    assert sql(app, "SELECT count(*) FROM sim_payment_objects WHERE kind = 'capture'")[0][0] == 1
    assert balance_of(app, "worker_balance", worker_id) == charged - fee
    assert books_clean(app) == []


def test_only_a_completed_job_can_be_confirmed(app: Flask, client: FlaskClient,
                                               make: Factory) -> None:
    job_id, (_, worker), (_, resident), _ = assigned_job(app, client, make)
    r = client.post(f"/api/v1/jobs/{job_id}/confirm", headers=resident)
    assert r.status_code == 409 and r.json["error"]["code"] == "not_completed"
    assert client.post(f"/api/v1/jobs/{job_id}/confirm", headers=worker).status_code == 403
    assert payment(app, job_id).status == "held"


def test_the_timer_releases_a_completed_job_by_itself(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, (worker_id, _), _ = completed_job(app, client, make)
    conn = Redis.from_url(app.config["REDIS_URL"])
    queue = Queue(TIMERS, connection=conn)
    registry = ScheduledJobRegistry(queue=queue)
    assert f"auto-release-{job_id}" in registry.get_job_ids()
    completed_at = sql(app, "SELECT completed_at FROM jobs WHERE id = :j", j=job_id)[0][0]
    # Urgent: two hours after completion.
    assert registry.get_scheduled_time(f"auto-release-{job_id}") == completed_at + timedelta(
        hours=2)
    rq_job = queue.fetch_job(f"auto-release-{job_id}")
    assert rq_job is not None
    queue.enqueue_job(rq_job)  # run before its time: it does nothing
    with app.app_context():
        assert SimpleWorker([queue], connection=conn).work(burst=True)
    assert payment(app, job_id).status == "held"
    manual_clock.advance(hours=2, seconds=1)
    queue.enqueue_job(rq_job)
    with app.app_context():
        assert SimpleWorker([queue], connection=conn).work(burst=True)
    assert FailedJobRegistry(queue=queue).count == 0
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0][0] == "closed"
    assert payment(app, job_id).status == "released"
    assert balance_of(app, "worker_balance", worker_id) > 0
    assert books_clean(app) == []


def test_the_sweeper_releases_when_the_timer_was_lost(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, _, _ = completed_job(app, client, make)
    Redis.from_url(app.config["REDIS_URL"]).flushdb()  # the timer is gone
    with app.app_context():
        sweep_once(db.session)
    assert payment(app, job_id).status == "held"
    manual_clock.advance(hours=2, seconds=1)
    with app.app_context():
        sweep_once(db.session)
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0][0] == "closed"
    assert payment(app, job_id).status == "released" and escrow_of(app, job_id) == 0


def test_the_sweeper_gives_back_a_hold_the_provider_let_lapse(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, _, _, _ = assigned_job(app, client, make)
    manual_clock.advance(days=7, seconds=1)
    with app.app_context():
        assert confirmation.sweep(db.session) == 1
    found = payment(app, job_id)
    assert (found.status, found.refunded_cents) == ("expired", found.held_cents)
    assert escrow_of(app, job_id) == 0
    assert books_clean(app) == []


def test_cancelling_before_the_worker_sets_out_is_free(app: Flask, client: FlaskClient,
                                                       make: Factory) -> None:
    job_id, _, (_, resident), _ = assigned_job(app, client, make)
    held = payment(app, job_id)
    r = client.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=resident)
    assert r.status_code == 200, r.json
    done = payment(app, job_id)
    assert (done.status, done.captured_cents, done.refunded_cents) == (
        "voided", 0, held.held_cents)
    assert authorization(app, held.authorization_id).status == "canceled"
    assert escrow_of(app, job_id) == 0 and balance_of(app, "refunds") == held.held_cents
    assert books_clean(app) == []


def test_cancelling_once_the_worker_set_out_pays_the_fee(app: Flask, client: FlaskClient,
                                                         make: Factory) -> None:
    job_id, (worker_id, worker), (_, resident), _ = assigned_job(app, client, make)
    assert post_status(client, job_id, worker, "en_route").status_code == 200
    held = payment(app, job_id).held_cents
    call_out = sql(app, "SELECT c.call_out_cents FROM categories c JOIN jobs j "
                        "ON j.category_id = c.id WHERE j.id = :j", j=job_id)[0][0]
    assert call_out > 0
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", json={},
                       headers=resident).status_code == 200
    fee = -(-call_out * 15 // 100)
    done = payment(app, job_id)
    assert (done.status, done.captured_cents, done.refunded_cents) == (
        "released", call_out, held - call_out)
    assert balance_of(app, "worker_balance", worker_id) == call_out - fee
    assert balance_of(app, "platform_fees") == fee
    assert escrow_of(app, job_id) == 0 and books_clean(app) == []


def test_an_unfilled_job_gives_its_hold_back_at_once(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    _, worker = make.worker()
    _, resident = make.user()
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j", j=job_id)[0][0]
    assert client.post(f"/api/v1/offers/{offer_id}/decline", json={},
                       headers=worker).status_code == 200
    manual_clock.advance(hours=3)
    with app.app_context():
        dispatching.sweep(db.session)
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0][0] == "unfilled"
    assert payment(app, job_id).status == "voided" and escrow_of(app, job_id) == 0
    assert books_clean(app) == []


def test_confirm_timer_sweeper_and_cancel_racing_end_the_job_once(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, (worker_id, _), (_, resident) = completed_job(app, client, make)
    manual_clock.advance(hours=3)  # the automatic release is due as well

    def confirm() -> int:
        return app.test_client().post(f"/api/v1/jobs/{job_id}/confirm",
                                      headers=resident).status_code

    def cancel() -> int:
        return app.test_client().post(f"/api/v1/jobs/{job_id}/cancel", json={},
                                      headers=resident).status_code

    def auto() -> bool:
        return timer_releases(app, job_id, manual_clock.now)

    results = race([confirm] * 8 + [auto] * 8 + [cancel] * 4)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert Counter(results[16:]) == {409: 4}
    # Confirms answer 200 (closed) whoever won; the timer's releases at most once.
    assert set(results[:8]) == {200}
    assert sum(results[8:16]) <= 1
    assert sql(app, "SELECT count(*) FROM ledger_transactions WHERE kind = 'release'"
               )[0][0] == 1
    assert sql(app, "SELECT count(*) FROM sim_payment_objects WHERE kind = 'capture'"
               )[0][0] == 1
    [closing] = sql(app, "SELECT detail ->> 'escrow' AS how FROM job_events WHERE job_id = :j "
                         "AND to_status = 'closed'", j=job_id)
    # Exactly one of them closed it: the timer says so when it was the timer.
    assert (sum(results[8:16]) == 1) == (closing.how == "auto_released"), closing.how
    assert balance_of(app, "worker_balance", worker_id) > 0 and books_clean(app) == []


def test_racing_retries_of_one_booking_and_one_confirmation_charge_once(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    """A phone retrying on a bad network: ten copies of one booking (one Idempotency-Key,
    one body) and then ten of its confirmation, all at once."""
    set_settings(app, offer_wave_size=1)
    worker_id, worker = make.worker()
    _, resident = make.user()
    body = job_body(make.category("leak-repair"))
    booked = race([lambda: book(app.test_client(), resident, body, key="retried")] * 10)
    assert not [r for r in booked if isinstance(r, Exception)], booked
    assert len({r.json["id"] for r in booked}) == 1, [r.json for r in booked]
    assert sorted(r.status_code for r in booked) == [200] * 9 + [201]
    job_id = booked[0].json["id"]
    assert count(app, "job_payments") == 1
    assert sql(app, "SELECT count(*) FROM sim_payment_objects WHERE kind = 'authorization'"
               )[0][0] == 1
    assert sql(app, "SELECT count(*) FROM ledger_transactions WHERE kind = 'hold'")[0][0] == 1
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j", j=job_id)[0][0]
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker).status_code == 200
    for status in ("en_route", "arrived", "in_progress", "completed"):
        assert post_status(client, job_id, worker, status).status_code == 200
    confirmed = race([lambda: app.test_client().post(f"/api/v1/jobs/{job_id}/confirm",
                                                     headers=resident).status_code] * 10)
    assert confirmed == [200] * 10, confirmed
    assert sql(app, "SELECT count(*) FROM sim_payment_objects WHERE kind = 'capture'"
               )[0][0] == 1
    assert sql(app, "SELECT count(*) FROM ledger_transactions WHERE kind = 'release'"
               )[0][0] == 1
    held = payment(app, job_id).held_cents
    assert balance_of(app, "worker_balance", worker_id) == held - -(-held * 15 // 100)
    assert books_clean(app) == []


def test_a_batch_holds_each_job_on_the_organization(app: Flask, client: FlaskClient,
                                                    make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    units = [add_unit(client, pm, prop_id, label) for label in ("1A", "1B")]
    make.worker()
    rows = [{"unit_id": unit, "category": "leak-repair", "description": "Leak"}
            for unit in units]
    assert client.post("/api/v1/batches", json={"batch_key": "k", "rows": rows},
                       headers=pm).status_code == 202
    run_queue(app)
    run_queue(app)  # processing again holds nothing more
    held = sql(app, "SELECT p.job_id, p.held_cents, p.payer_user_id, p.payer_organization_id, "
                    "j.org_id FROM job_payments p JOIN jobs j ON j.id = p.job_id")
    assert len(held) == 2
    for found in held:
        assert found.payer_user_id is None and found.payer_organization_id == found.org_id
        assert escrow_of(app, found.job_id) == found.held_cents > 0
    assert sql(app, "SELECT count(*) FROM sim_payment_objects WHERE kind = 'authorization'"
               )[0][0] == 2
    assert books_clean(app) == []


def test_a_no_show_keeps_the_hold_while_the_job_is_offered_again(
        app: Flask, client: FlaskClient, make: Factory, settings: Any,
        manual_clock: ManualClock) -> None:
    job_id, _, _, resident = accepted_job(app, client, make)
    held = payment(app, job_id)
    eta = datetime.fromisoformat(client.get(f"/api/v1/jobs/{job_id}", headers=resident)
                                 .json["estimated_arrival"])
    manual_clock.now = eta + timedelta(
        minutes=app.config["DISPATCH"].no_show_grace_minutes + 15)
    make.worker(lat=NEARBY[0], lng=NEARBY[1])  # someone else can take it
    assert sweep_no_shows(app) == 1
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0][0] == "dispatching"
    after = payment(app, job_id)
    assert (after.status, after.authorization_id) == ("held", held.authorization_id)
    assert escrow_of(app, job_id) == held.held_cents
    assert books_clean(app) == []


def test_a_hold_the_provider_refuses_to_capture_is_a_409_not_a_500(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    job_id, _, (_, resident) = completed_job(app, client, make)
    held = payment(app, job_id)
    with app.app_context():
        payments.provider().cancel(held.authorization_id, "voided-elsewhere")
    r = client.post(f"/api/v1/jobs/{job_id}/confirm", headers=resident)
    assert r.status_code == 409 and r.json["error"]["code"] == "payment_rejected", r.json
    assert r.json["error"]["fields"][0]["field"] == "payment"
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0][0] == "completed"
    assert payment(app, job_id).status == "held" and escrow_of(app, job_id) == held.held_cents
