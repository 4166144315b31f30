"""Worker payouts against the real database, Redis and the simulated processor: the weekly
run pays each balance once (RQ timer or sweeper), an instant payout takes its fee and keeps
to its minimum and the balance, 20 racing requests never overdraw, a failed payout comes
back, and the earnings figures come from the ledger."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from dispatch.db import clock, db
from dispatch.db.models import Role
from dispatch.domain.money import AccountKind
from dispatch.entrypoints.sweeper import sweep_once
from dispatch.infra.config import Settings
from dispatch.infra.queues import TIMERS
from dispatch.services import ledger, payments, payouts
from dispatch.services.ledger import Payer
from tests.helpers import Factory, ManualClock, page_login, set_settings, sql
from tests.live import LiveServer
from tests.test_browser import browser, login, new_context, page_errors  # noqa: F401
from tests.test_payments_provider import (  # noqa: F401 (forwarder: a fixture)
    Forwarder,
    _run_webhooks,
    _simulated,
    forwarder,
)

THREADS = 20
_keys = itertools.count(1)
LA = ZoneInfo("America/Los_Angeles")


def _job(app: Flask, resident_id: int) -> int:
    [(job_id,)] = sql(app, """
INSERT INTO jobs (resident_id, category_id, description, location, urgency, status,
                  requested_at, arrive_by, idempotency_key, request_fingerprint)
VALUES (:r, (SELECT id FROM categories WHERE slug = 'leak-repair'), 'payout test',
        ST_GeogFromText('POINT(-122.42 37.77)'), 'urgent', 'completed', now(),
        now() + interval '2 hours', gen_random_uuid()::text, 'payout') RETURNING id""",
        r=resident_id)
    return job_id


def _earn(app: Flask, make: Factory, worker_id: int, cents: int, fee: int = 0) -> None:
    """A job of `cents` released to the worker, `fee` of it to the platform."""
    resident, _ = make.user(Role.RESIDENT)
    job = _job(app, resident)
    n = next(_keys)
    with app.app_context():
        ledger.hold(db.session, job, Payer(user_id=resident), cents, f"hold-{n}")
        ledger.release(db.session, job, worker_id, cents, fee, f"release-{n}")
        db.session.commit()


def _balance(app: Flask, worker_id: int, kind: AccountKind = AccountKind.WORKER_BALANCE
             ) -> int:
    with app.app_context():
        found = ledger.balance(db.session, ledger.account(db.session, kind, user_id=worker_id))
        db.session.commit()
        return found


def _fees(app: Flask) -> int:
    with app.app_context():
        found = ledger.balance(db.session, ledger.account(db.session,
                                                          AccountKind.PLATFORM_FEES))
        db.session.commit()
        return found


def _books_clean(app: Flask) -> None:
    with app.app_context():
        assert ledger.check(db.session) == []
        db.session.remove()


@pytest.fixture(autouse=True)
def _books_stay_clean(app: Flask) -> Iterator[None]:
    yield
    _books_clean(app)


def _payouts(app: Flask) -> list[Any]:
    return sql(app, "SELECT worker_id, kind, status, amount_cents, fee_cents, idempotency_key,"
                    " destination FROM payouts ORDER BY worker_id, id")


@pytest.fixture
def monday_noon(manual_clock: ManualClock) -> ManualClock:
    """Monday 12:00 in the service's zone: this week's run (Monday 09:00) is due."""
    manual_clock.now = datetime(2026, 11, 30, 12, 0, tzinfo=LA).astimezone(UTC)
    return manual_clock


# ---------------------------------------------------------------- weekly


def test_the_weekly_run_pays_every_balance_once(app: Flask, make: Factory,
                                                 monday_noon: ManualClock) -> None:
    first, _ = make.user(Role.WORKER)
    second, _ = make.user(Role.WORKER)
    idle, _ = make.user(Role.WORKER)
    _earn(app, make, first, 10_000, 1_500)
    _earn(app, make, second, 4_000)
    with app.app_context():
        assert payouts.run_weekly(db.session, payments.provider()) == 2
        assert payouts.run_weekly(db.session, payments.provider()) == 0  # again: nothing
        db.session.remove()
    rows = _payouts(app)
    assert [(r.worker_id, r.kind, r.status, r.amount_cents, r.fee_cents) for r in rows] == [
        (first, "weekly", "in_transit", 8_500, 0), (second, "weekly", "in_transit", 4_000, 0)]
    assert [r.idempotency_key for r in rows] == [f"payout:weekly:{first}:2026-W49",
                                                 f"payout:weekly:{second}:2026-W49"]
    assert rows[0].destination == f"acct_sim_{first}"
    assert (_balance(app, first), _balance(app, second), _balance(app, idle)) == (0, 0, 0)
    assert _balance(app, first, AccountKind.PAYOUTS_IN_TRANSIT) == 8_500
    # The provider was asked once per payout, under the payout's key.
    assert sql(app, "SELECT count(*) AS n FROM sim_payment_objects WHERE kind = 'payout'"
               )[0].n == 2
    # The next week's run has its RQ timer: Monday 7 December, 09:00 in the service's zone.
    registry = ScheduledJobRegistry(queue=Queue(TIMERS, connection=Redis.from_url(
        app.config["REDIS_URL"])))
    assert registry.get_scheduled_time("weekly-payouts-2026-W50") == datetime(
        2026, 12, 7, 9, tzinfo=LA).astimezone(UTC)

    # When it fires (here by hand, a week on), it pays that week's balances.
    monday_noon.advance(days=7)
    _earn(app, make, second, 1_200)
    with app.app_context():
        Job.fetch("weekly-payouts-2026-W50", connection=registry.connection).perform()
        db.session.remove()
    assert [(r.worker_id, r.amount_cents, r.idempotency_key) for r in _payouts(app)][-1] == (
        second, 1_200, f"payout:weekly:{second}:2026-W50")


def test_before_the_hour_the_run_is_last_weeks(app: Flask, settings: Settings) -> None:
    set_settings(app, payout_weekday=2, payout_hour=18)  # Wednesdays at 18:00
    wednesday = datetime(2026, 12, 2, 17, 59, tzinfo=LA)
    week = payouts.due_week(wednesday, app.config["DISPATCH"])
    assert (week.label, week.due_at) == ("2026-W48", datetime(2026, 11, 25, 18, tzinfo=LA))
    assert payouts.due_week(wednesday + timedelta(minutes=1),
                            app.config["DISPATCH"]).label == "2026-W49"


def test_the_sweeper_runs_a_week_whose_run_did_not_happen(app: Flask, make: Factory,
                                                          monday_noon: ManualClock) -> None:
    worker, _ = make.user(Role.WORKER)
    _earn(app, make, worker, 3_000)
    with app.app_context():
        sweep_once(db.session)  # the timer was lost: the sweeper pays the week
        sweep_once(db.session)  # and only once
        db.session.remove()
    assert [(r.amount_cents, r.status) for r in _payouts(app)] == [(3_000, "in_transit")]
    _earn(app, make, worker, 2_000)  # earned after the run: next week's
    with app.app_context():
        sweep_once(db.session)
        db.session.remove()
    assert len(_payouts(app)) == 1 and _balance(app, worker) == 2_000
    monday_noon.advance(days=7)
    with app.app_context():
        sweep_once(db.session)
        db.session.remove()
    assert [(r.amount_cents, r.idempotency_key) for r in _payouts(app)][1] == (
        2_000, f"payout:weekly:{worker}:2026-W50")
    assert _balance(app, worker) == 0


def test_a_payout_recorded_but_never_sent_is_sent_by_the_sweeper(
        app: Flask, make: Factory, monday_noon: ManualClock) -> None:
    """A crash between the commit of the ledger move and the provider call: the row stays
    `requested`, and the sweeper asks the provider with the same key."""
    worker, _ = make.user(Role.WORKER)
    _earn(app, make, worker, 5_000)
    with app.app_context():
        week = payouts.due_week(clock.now(), app.config["DISPATCH"])
        payout_id = payouts._weekly_payout(db.session, worker, week, "USD")  # then "crash"
        db.session.remove()
    assert [r.status for r in _payouts(app)] == ["requested"]
    assert _balance(app, worker) == 0  # out of the balance, in the same transaction
    with app.app_context():
        payouts.sweep(db.session, payments.provider())  # too young: maybe still in flight
        assert [r.status for r in _payouts(app)] == ["requested"]
        monday_noon.advance(minutes=2)
        payouts.sweep(db.session, payments.provider())
        payouts.sweep(db.session, payments.provider())
        db.session.remove()
    assert [r.status for r in _payouts(app)] == ["in_transit"]
    [sent] = sql(app, "SELECT amount_cents FROM sim_payment_objects WHERE kind = 'payout'")
    assert sent.amount_cents == 5_000 and payout_id is not None


# ---------------------------------------------------------------- on demand


def test_an_instant_payout_takes_its_fee_and_keeps_to_the_minimum(
        app: Flask, make: Factory, client: FlaskClient) -> None:
    worker, headers = make.user(Role.WORKER)
    _earn(app, make, worker, 5_000)
    fees_before = _fees(app)
    low = client.post("/api/v1/worker/payouts", json={"amount_cents": 999}, headers=headers)
    assert low.status_code == 422
    [found] = low.json["error"]["fields"]
    assert (found["field"], found["kind"]) == ("amount_cents", "payout.below_minimum")
    assert "$10.00" in found["problem"]
    made = client.post("/api/v1/worker/payouts", json={"amount_cents": 1_000},
                       headers={**headers, "Idempotency-Key": "k1"})
    assert made.status_code == 201
    assert {k: made.json[k] for k in ("kind", "status", "amount_cents", "fee_cents",
                                      "sent_cents")} == {
        "kind": "instant", "status": "in_transit", "amount_cents": 1_000, "fee_cents": 50,
        "sent_cents": 950}
    again = client.post("/api/v1/worker/payouts", json={"amount_cents": 1_000},
                        headers={**headers, "Idempotency-Key": "k1"})
    assert (again.status_code, again.json["id"]) == (200, made.json["id"])
    other = client.post("/api/v1/worker/payouts", json={"amount_cents": 2_000},
                        headers={**headers, "Idempotency-Key": "k1"})
    assert other.status_code == 409
    assert _balance(app, worker) == 4_000
    assert _fees(app) - fees_before == 50
    assert _balance(app, worker, AccountKind.PAYOUTS_IN_TRANSIT) == 950
    [sent] = sql(app, "SELECT amount_cents FROM sim_payment_objects WHERE kind = 'payout'")
    assert sent.amount_cents == 950


def test_more_than_the_balance_is_refused_by_name(app: Flask, make: Factory,
                                                  client: FlaskClient) -> None:
    worker, headers = make.user(Role.WORKER)
    _earn(app, make, worker, 2_500)
    answer = client.post("/api/v1/worker/payouts", json={"amount_cents": 2_501},
                         headers=headers)
    assert answer.status_code == 409
    [found] = answer.json["error"]["fields"]
    assert (found["field"], found["kind"]) == ("amount_cents", "payout.over_balance")
    assert "$25.00" in found["problem"]
    assert _balance(app, worker) == 2_500 and _payouts(app) == []


@pytest.mark.parametrize("amount", [-100, 0, 12.5, "1500", True, None, 10**20])
def test_bad_amounts_are_refused_by_name(app: Flask, make: Factory, client: FlaskClient,
                                         amount: Any) -> None:
    worker, headers = make.user(Role.WORKER)
    _earn(app, make, worker, 5_000)
    answer = client.post("/api/v1/worker/payouts", json={"amount_cents": amount},
                         headers=headers)
    assert answer.status_code == 422, answer.json
    assert [f["field"] for f in answer.json["error"]["fields"]] == ["amount_cents"]
    assert _balance(app, worker) == 5_000


def test_only_workers_take_payouts(make: Factory, client: FlaskClient) -> None:
    _, headers = make.user(Role.RESIDENT)
    assert client.post("/api/v1/worker/payouts", json={"amount_cents": 1_000},
                       headers=headers).status_code == 403


def test_twenty_racing_payouts_never_overdraw_the_balance(app: Flask, make: Factory) -> None:
    worker, headers = make.user(Role.WORKER)
    _earn(app, make, worker, 10_000)
    barrier = threading.Barrier(THREADS)
    statuses: list[int] = [0] * THREADS

    def one(i: int) -> None:
        barrier.wait()
        statuses[i] = app.test_client().post(
            "/api/v1/worker/payouts", json={"amount_cents": 1_500},
            headers={**headers, "Idempotency-Key": f"race-{i}"}).status_code

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] * 6 + [409] * 14
    assert _balance(app, worker) == 10_000 - 6 * 1_500
    assert len(_payouts(app)) == 6


# ---------------------------------------------------------------- the bank's answer


def test_a_failed_payout_returns_to_the_balance(app: Flask, make: Factory, client: FlaskClient,
                                                forwarder: Forwarder) -> None:  # noqa: F811
    failing, failing_headers = make.user(Role.WORKER)
    paid, paid_headers = make.user(Role.WORKER)
    _earn(app, make, failing, 5_000)
    _earn(app, make, paid, 5_000)
    sql(app, "UPDATE workers SET payout_destination = 'fail' WHERE user_id = :w", w=failing)
    fees_before = _fees(app)
    for headers in (failing_headers, paid_headers):
        assert client.post("/api/v1/worker/payouts", json={"amount_cents": 3_000},
                           headers=headers).status_code == 201
    assert _balance(app, failing) == 2_000
    _run_webhooks(app)  # the bank answers; the simulator's signed webhooks come in
    assert [(r.worker_id, r.status) for r in _payouts(app)] == [(failing, "failed"),
                                                                 (paid, "paid")]
    assert _balance(app, failing) == 5_000  # all of it back, the fee too
    assert _balance(app, failing, AccountKind.PAYOUTS_IN_TRANSIT) == 0
    assert _balance(app, paid) == 2_000
    assert _fees(app) - fees_before == 50  # the paid one's fee only
    assert sorted(forwarder.statuses) == [200, 200]


def test_the_same_failure_delivered_twice_returns_the_money_once(
        app: Flask, make: Factory, client: FlaskClient) -> None:
    worker, headers = make.user(Role.WORKER)
    _earn(app, make, worker, 5_000)
    made = client.post("/api/v1/worker/payouts", json={"amount_cents": 2_000},
                       headers=headers).json
    [row] = sql(app, "SELECT provider_payout_id FROM payouts WHERE id = :i", i=made["id"])
    with app.app_context():
        world = _simulated(app)
        for event_id in ("evt_sim_failed_1", "evt_sim_failed_2"):  # replayed under a new id
            body, signed = world.signed({
                "id": event_id, "type": "payout.failed", "created": 0,
                "data": {"object": {"id": row.provider_payout_id, "status": "failed"}}})
            assert client.post("/webhooks/payments", data=body,
                               headers=signed).status_code == 200
        db.session.remove()
    assert _balance(app, worker) == 5_000
    assert [r.status for r in _payouts(app)] == ["failed"]


def test_an_answer_that_overtook_its_payout_is_applied_by_the_sweeper(
        app: Flask, make: Factory, client: FlaskClient, manual_clock: ManualClock) -> None:
    """The bank's answer came in before our reply from the provider had been recorded: the
    event is kept, and the sweeper applies it once the payout has its provider id."""
    worker, headers = make.user(Role.WORKER)
    _earn(app, make, worker, 5_000)
    made = client.post("/api/v1/worker/payouts", json={"amount_cents": 2_000},
                       headers=headers).json
    [row] = sql(app, "SELECT provider_payout_id FROM payouts WHERE id = :i", i=made["id"])
    sql(app, "UPDATE payouts SET provider_payout_id = NULL WHERE id = :i", i=made["id"])
    with app.app_context():
        body, signed = _simulated(app).signed({
            "id": "evt_sim_early", "type": "payout.failed", "created": 0,
            "data": {"object": {"id": row.provider_payout_id, "status": "failed"}}})
        assert client.post("/webhooks/payments", data=body, headers=signed).status_code == 200
        db.session.remove()
    assert _balance(app, worker) == 3_000  # nobody knew whose payout that was yet
    sql(app, "UPDATE payouts SET provider_payout_id = :p WHERE id = :i",
        p=row.provider_payout_id, i=made["id"])
    week = payouts.due_week(clock.now(), app.config["DISPATCH"]).label
    sql(app, "INSERT INTO payout_runs (week, finished_at) VALUES (:w, now())", w=week)
    with app.app_context():
        payouts.sweep(db.session, payments.provider())
        assert _balance(app, worker) == 3_000  # maybe still being recorded: not yet
        manual_clock.advance(minutes=2)
        payouts.sweep(db.session, payments.provider())
        payouts.sweep(db.session, payments.provider())
        db.session.remove()
    assert [r.status for r in _payouts(app)] == ["failed"]
    assert _balance(app, worker) == 5_000


# ---------------------------------------------------------------- earnings


def test_earnings_come_from_the_ledger(app: Flask, make: Factory, client: FlaskClient) -> None:
    worker, headers = make.user(Role.WORKER)
    other, _ = make.user(Role.WORKER)
    _earn(app, make, worker, 10_000, 1_500)
    _earn(app, make, worker, 5_000, 750)
    _earn(app, make, other, 9_000, 900)  # someone else's
    client.post("/api/v1/worker/payouts", json={"amount_cents": 2_000}, headers=headers)
    answer = client.get("/api/v1/worker/earnings", headers=headers)
    assert answer.status_code == 200
    figures = {"jobs_paid": 2, "gross_cents": 15_000, "platform_fees_cents": 2_250,
               "net_cents": 12_750}
    assert answer.json["today"] == answer.json["week"] == figures
    assert answer.json["balance_cents"] == 10_750
    assert (answer.json["instant_min_cents"], answer.json["instant_fee_cents"]) == (1_000, 50)
    assert [(p["kind"], p["amount_cents"]) for p in answer.json["payouts"]] == [
        ("instant", 2_000)]
    assert answer.json["time_zone"] == app.config["DISPATCH"].service_timezone


def test_the_earnings_page_is_for_workers(make: Factory, app: Flask) -> None:
    worker, _ = make.user(Role.WORKER)
    resident, _ = make.user(Role.RESIDENT)
    as_worker, as_resident = app.test_client(), app.test_client()
    page_login(app, as_worker, worker)
    page_login(app, as_resident, resident)
    work = as_worker.get("/work").get_data(as_text=True)
    assert 'href="/earnings"' in work  # the Work page's nav leads there
    assert as_worker.get("/earnings").status_code == 200
    assert as_resident.get("/earnings").status_code == 403


def test_the_earnings_page_shows_the_day_and_pays_out_on_demand(
        browser: Browser, live_server: LiveServer, make: Factory) -> None:  # noqa: F811
    app = make.app
    email = "earner@example.test"
    worker, _ = make.user(Role.WORKER, email=email)
    _earn(app, make, worker, 10_000, 1_500)
    _earn(app, make, worker, 5_000, 750)
    ctx = new_context(browser, live_server, phone=True)
    page = ctx.new_page()
    errors = page_errors(page)
    try:
        login(page, email)
        page.click("nav >> text=Earnings")
        today = page.locator("#totals-today")
        expect(today.locator(".jobs")).to_have_text("2")
        expect(today.locator(".gross")).to_have_text("$150")
        expect(today.locator(".fees")).to_have_text("$22.50")
        expect(today.locator(".net")).to_have_text("$127.50")
        expect(page.locator("#totals-week .net")).to_have_text("$127.50")
        expect(page.locator("#balance")).to_have_text("$127.50")
        expect(page.locator("#instant-fee")).to_have_text("$0.50")
        page.fill("#instant-amount", "5")
        expect(page.locator("#instant-error")).to_have_text("")
        page.click("#instant-submit")
        expect(page.locator("#instant-error")).to_contain_text("at least $10")
        page.fill("#instant-amount", "200")
        page.click("#instant-submit")
        expect(page.locator("#instant-error")).to_contain_text("at most $127.50")
        page.fill("#instant-amount", "27.50")
        expect(page.locator("#instant-note")).to_contain_text("$27 reaches your bank")
        page.click("#instant-submit")
        expect(page.locator("#balance")).to_have_text("$100")
        rows = page.locator("#payouts tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.locator(".amount")).to_have_text("$27.50")
        expect(rows.locator(".status")).to_have_text("in transit")
        # The browser logs the two refusals it was shown (422, 409), and nothing else.
        assert len(errors) == 2 and all("/api/v1/worker/payouts" in e for e in errors), errors
    finally:
        ctx.close()
    assert _balance(app, worker) == 10_000
