"""Jobs paid in stages: one hold per stage, each released on its own confirmation (or by
itself), all on the real ledger and the simulated card processor."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect, sync_playwright
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from dispatch.db import clock, db
from dispatch.db.models import Role
from dispatch.entrypoints.sweeper import sweep_once
from dispatch.infra.queues import TIMERS
from dispatch.services import milestones
from tests.helpers import (
    CENTER,
    Factory,
    ManualClock,
    book,
    count,
    job_body,
    set_settings,
    sql,
)
from tests.test_batches import add_unit
from tests.test_browser import CHROMIUM_ARGS, login, new_context, page_errors, shot
from tests.test_escrow import DECLINED_CARD, authorization, balance_of, books_clean, escrow_of
from tests.test_job_flow import post_status
from tests.test_portfolio import manager_with_property
from tests.test_races import race

PLAN = [{"title": "Strip the old tiles", "amount_cents": 30000},
        {"title": "Lay the new floor", "amount_cents": 50000},
        {"title": "Grout and seal", "amount_cents": 20000}]


def later(app: Flask, days: int = 1) -> dict[str, str]:
    """A booked window (stages are for booked windows / long jobs, not urgent ones)."""
    zone = ZoneInfo(app.config["DISPATCH"].service_timezone)
    day = (clock.now().astimezone(zone) + timedelta(days=days)).date().isoformat()
    return {"date": day, "start": "09:00", "end": "12:00"}


def window_came(app: Flask, job_id: int) -> None:
    """The booked window has come (the worker may set out): its start moved to now."""
    sql(app, "UPDATE jobs SET window_start = :t WHERE id = :j", t=clock.now(), j=job_id)


def fee_of(cents: int) -> int:
    return -(-cents * 15 // 100)  # leak repair: 15 %


def stages(app: Flask, job_id: int) -> list[Any]:
    return sql(app, "SELECT * FROM job_milestones WHERE job_id = :j ORDER BY position",
               j=job_id)


def staged_job(app: Flask, client: FlaskClient, make: Factory,
               plan: list[dict[str, Any]] = PLAN, to: str = "in_progress",
               **extra: Any) -> tuple[int, tuple[int, dict[str, str]], tuple[int, dict[str, str]]]:
    s = app.config["DISPATCH"]
    if (s.offer_wave_size, s.auto_release_hours) != (10, 2):  # (a new Settings: a new provider)
        set_settings(app, offer_wave_size=10, auto_release_hours=2)
    worker_id, worker = make.worker()
    resident_id, resident = make.user()
    extra.setdefault("window", later(app))
    r = book(client, resident, job_body(make.category("leak-repair"), milestones=plan, **extra))
    assert r.status_code == 201, r.json
    job_id = r.json["id"]
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j AND worker_id = :w",
                   j=job_id, w=worker_id)[0].id
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker).status_code == 200
    window_came(app, job_id)
    moves = ["en_route", "arrived", "in_progress"]
    for status in moves[:moves.index(to) + 1] if to in moves else []:
        assert post_status(client, job_id, worker, status).status_code == 200
    return job_id, (worker_id, worker), (resident_id, resident)


def done(client: FlaskClient, job_id: int, n: int, worker: dict[str, str]) -> Any:
    return client.post(f"/api/v1/jobs/{job_id}/milestones/{n}/done", headers=worker)


def confirm(client: FlaskClient, job_id: int, n: int, payer: dict[str, str]) -> Any:
    return client.post(f"/api/v1/jobs/{job_id}/milestones/{n}/confirm", headers=payer)


def test_booking_in_stages_holds_the_first_stage_only(app: Flask, client: FlaskClient,
                                                      make: Factory) -> None:
    make.worker()
    _, resident = make.user()
    r = book(client, resident, job_body(make.category("leak-repair"), milestones=PLAN,
                                        window=later(app)))
    assert r.status_code == 201, r.json
    job_id = r.json["id"]
    assert [(m["position"], m["title"], m["amount_cents"], m["status"])
            for m in r.json["milestones"]] == [
        (1, "Strip the old tiles", 30000, "held"), (2, "Lay the new floor", 50000, "planned"),
        (3, "Grout and seal", 20000, "planned")]
    assert count(app, "job_payments") == 0  # no hold for the whole estimate
    first = stages(app, job_id)[0]
    assert escrow_of(app, job_id) == 30000
    found = authorization(app, first.authorization_id)
    assert (found.status, found.amount_cents) == ("authorized", 30000)
    assert sql(app, "SELECT count(*) FROM sim_payment_objects WHERE kind = 'authorization'"
               )[0][0] == 1
    assert sql(app, "SELECT idempotency_key FROM ledger_transactions WHERE kind = 'hold'"
               )[0][0] == f"hold:milestone:{first.id}"
    seen = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
    assert [m["status"] for m in seen["milestones"]] == ["held", "planned", "planned"]
    assert books_clean(app) == []


def test_a_manager_books_in_stages_and_the_organization_pays_each(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "2B")
    set_settings(app, offer_wave_size=1)
    worker_id, worker = make.worker()
    body = {"category_id": make.category("leak-repair"), "unit_id": unit,
            "description": "Replace the boiler", "milestones": PLAN[:2], "window": later(app)}
    r = book(client, pm, body)
    assert r.status_code == 201, r.json
    job_id = r.json["id"]
    org_id = sql(app, "SELECT org_id FROM jobs WHERE id = :j", j=job_id)[0][0]
    assert org_id is not None
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j", j=job_id)[0].id
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker).status_code == 200
    window_came(app, job_id)
    for status in ("en_route", "arrived", "in_progress"):
        assert post_status(client, job_id, worker, status).status_code == 200
    for n in (1, 2):
        assert done(client, job_id, n, worker).status_code == 200
        assert confirm(client, job_id, n, pm).status_code == 200
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0][0] == "closed"
    funding = sql(app, "SELECT DISTINCT a.organization_id, a.user_id FROM ledger_entries e "
                       "JOIN ledger_accounts a ON a.id = e.account_id "
                       "WHERE a.kind = 'payer_funding'")
    assert funding == [(org_id, None)]
    assert balance_of(app, "worker_balance", worker_id) == 80000 - fee_of(30000) - fee_of(50000)
    assert books_clean(app) == []


def test_a_declined_card_stores_no_staged_job(app: Flask, client: FlaskClient,
                                              make: Factory) -> None:
    make.worker()
    _, resident = make.user()
    r = book(client, resident, job_body(make.category("leak-repair"), milestones=PLAN,
                                        payment_method=DECLINED_CARD, window=later(app)))
    assert r.status_code == 402, r.json
    assert count(app, "jobs") == 0 and count(app, "job_milestones") == 0
    assert count(app, "ledger_entries") == 0


def test_stages_are_done_confirmed_paid_and_the_last_closes_the_job(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    job_id, (worker_id, worker), (_, resident) = staged_job(app, client, make)
    # Not done yet: nothing to confirm; a stage not held cannot be done.
    assert confirm(client, job_id, 1, resident).json["error"]["code"] == "milestone_not_done"
    r = done(client, job_id, 2, worker)
    assert r.status_code == 409 and r.json["error"]["code"] == "milestone_not_held"
    r = done(client, job_id, 1, worker)
    assert r.status_code == 200, r.json
    assert r.json["status"] == "in_progress"
    assert r.json["milestones"][0]["status"] == "done"
    assert r.json["milestones"][0]["release_due_at"]
    assert done(client, job_id, 1, worker).status_code == 200  # again: nothing more
    # The job's own confirm is refused by name; so is the worker's "completed".
    r = client.post(f"/api/v1/jobs/{job_id}/confirm", headers=resident)
    assert r.status_code == 409 and r.json["error"]["code"] == "paid_in_stages"
    assert r.json["error"]["fields"][0]["field"] == "milestones"
    r = post_status(client, job_id, worker, "completed")
    assert r.status_code == 409 and r.json["error"]["code"] == "paid_in_stages"

    r = confirm(client, job_id, 1, resident)
    assert r.status_code == 200, r.json
    assert [m["status"] for m in r.json["milestones"]] == ["released", "held", "planned"]
    assert balance_of(app, "worker_balance", worker_id) == 30000 - fee_of(30000)
    assert balance_of(app, "platform_fees") == fee_of(30000)
    assert escrow_of(app, job_id) == 50000  # the next stage, held
    first = stages(app, job_id)[0]
    assert authorization(app, first.authorization_id).status == "captured"
    assert sql(app, "SELECT count(*) FROM ledger_transactions WHERE idempotency_key = :k",
               k=f"settle:milestone:{first.id}")[0][0] == 1
    # Confirming again charges nothing more.
    assert confirm(client, job_id, 1, resident).status_code == 200
    assert sql(app, "SELECT count(*) FROM sim_payment_objects WHERE kind = 'capture'")[0][0] == 1
    assert books_clean(app) == []

    assert done(client, job_id, 2, worker).status_code == 200
    assert confirm(client, job_id, 2, resident).status_code == 200
    r = done(client, job_id, 3, worker)
    assert r.json["status"] == "completed"  # the last stage done completes the job
    r = confirm(client, job_id, 3, resident)
    assert r.status_code == 200 and r.json["status"] == "closed"
    assert [m["status"] for m in r.json["milestones"]] == ["released"] * 3
    total_fee = sum(fee_of(m["amount_cents"]) for m in PLAN)
    assert balance_of(app, "worker_balance", worker_id) == 100000 - total_fee
    assert balance_of(app, "platform_fees") == total_fee
    assert escrow_of(app, job_id) == 0 and balance_of(app, "refunds") == 0
    assert sql(app, "SELECT to_status FROM job_events WHERE job_id = :j AND kind = 'status' "
                    "ORDER BY id DESC LIMIT 2", j=job_id) == [("closed",), ("completed",)]
    # No whole-job timer for a job paid in stages.
    registry = ScheduledJobRegistry(queue=Queue(TIMERS, connection=Redis.from_url(
        app.config["REDIS_URL"])))
    assert f"auto-release-{job_id}" not in registry.get_job_ids()
    assert books_clean(app) == []


def test_a_stage_is_released_by_its_timer_and_by_the_sweeper(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, (worker_id, worker), _ = staged_job(app, client, make)
    assert done(client, job_id, 1, worker).status_code == 200
    first = stages(app, job_id)[0]
    conn = Redis.from_url(app.config["REDIS_URL"])
    queue = Queue(TIMERS, connection=conn)
    registry = ScheduledJobRegistry(queue=queue)
    name = f"milestone-release-{first.id}"
    assert registry.get_scheduled_time(name) == first.done_at + timedelta(hours=2)
    rq_job = queue.fetch_job(name)
    assert rq_job is not None
    queue.enqueue_job(rq_job)  # before its time: nothing
    with app.app_context():
        assert SimpleWorker([queue], connection=conn).work(burst=True)
    assert stages(app, job_id)[0].status == "done"
    manual_clock.advance(hours=2, seconds=1)
    queue.enqueue_job(rq_job)
    with app.app_context():
        assert SimpleWorker([queue], connection=conn).work(burst=True)
    assert FailedJobRegistry(queue=queue).count == 0
    assert [m.status for m in stages(app, job_id)] == ["released", "held", "planned"]
    assert balance_of(app, "worker_balance", worker_id) == 30000 - fee_of(30000)
    # The second stage's timer is lost: the sweeper releases it.
    assert done(client, job_id, 2, worker).status_code == 200
    conn.flushdb()
    with app.app_context():
        sweep_once(db.session)
    assert stages(app, job_id)[1].status == "done"
    manual_clock.advance(hours=2, seconds=1)
    with app.app_context():
        sweep_once(db.session)
    assert [m.status for m in stages(app, job_id)] == ["released", "released", "held"]
    assert sql(app, "SELECT actor FROM job_events WHERE job_id = :j AND kind = 'milestone' "
                    "AND detail->>'escrow' = 'auto_released'", j=job_id) == [("system",)] * 2
    assert escrow_of(app, job_id) == 20000 and books_clean(app) == []


def test_a_declined_next_hold_waits_for_the_payer(app: Flask, client: FlaskClient,
                                                   make: Factory) -> None:
    job_id, (_, worker), (_, resident) = staged_job(app, client, make)
    sql(app, "UPDATE job_milestones SET payment_method = :c WHERE job_id = :j",
        c=DECLINED_CARD, j=job_id)
    assert done(client, job_id, 1, worker).status_code == 200
    r = confirm(client, job_id, 1, resident)
    assert r.status_code == 200, r.json  # the release went through
    second = r.json["milestones"][1]
    assert (second["status"], second["hold_declined"]) == ("planned", "card_declined")
    assert escrow_of(app, job_id) == 0
    r = done(client, job_id, 2, worker)
    assert r.status_code == 409 and r.json["error"]["code"] == "milestone_not_held"
    r = client.post(f"/api/v1/jobs/{job_id}/milestones/2/hold",
                    json={"payment_method": "pm_card_visa"}, headers=resident)
    assert r.status_code == 200, r.json
    assert r.json["milestones"][1]["status"] == "held"
    assert r.json["milestones"][1]["hold_declined"] is None
    assert escrow_of(app, job_id) == 50000
    r = client.post(f"/api/v1/jobs/{job_id}/milestones/3/hold", json={}, headers=resident)
    assert r.status_code == 409 and r.json["error"]["code"] == "milestone_not_waiting"
    assert done(client, job_id, 2, worker).status_code == 200
    assert books_clean(app) == []


def test_a_lapsed_stage_hold_is_given_back_and_held_again(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    """A booked window far ahead, or a stage that takes long: its hold outlives the card
    processor's 7 days, so it is given back in the books and held again on the same card."""
    job_id, (worker_id, worker), (_, resident) = staged_job(app, client, make)
    first = stages(app, job_id)[0]
    # Seven days on (the work waited), as the processor said when it authorized it.
    sql(app, "UPDATE job_milestones SET authorization_expires_at = :t WHERE id = :i",
        t=manual_clock.now - timedelta(seconds=1), i=first.id)
    with app.app_context():
        assert milestones.sweep(db.session, manual_clock.now) == 1
    again = stages(app, job_id)[0]
    assert (again.status, again.hold_attempts) == ("held", 2)
    assert again.authorization_id != first.authorization_id
    assert sql(app, "SELECT kind FROM ledger_transactions WHERE idempotency_key = :k",
               k=f"settle:milestone:{first.id}") == [("refund",)]
    assert escrow_of(app, job_id) == 30000 and balance_of(app, "refunds") == 30000
    assert done(client, job_id, 1, worker).status_code == 200
    assert confirm(client, job_id, 1, resident).status_code == 200
    assert authorization(app, again.authorization_id).status == "captured"
    assert balance_of(app, "worker_balance", worker_id) == 30000 - fee_of(30000)
    assert books_clean(app) == []


def test_cancelling_before_the_worker_sets_out_gives_the_first_hold_back(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    job_id, _, (_, resident) = staged_job(app, client, make, to="assigned")
    r = client.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=resident)
    assert r.status_code == 200, r.json
    assert [m["status"] for m in r.json["milestones"]] == ["cancelled"] * 3
    assert authorization(app, stages(app, job_id)[0].authorization_id).status == "canceled"
    assert escrow_of(app, job_id) == 0 and balance_of(app, "refunds") == 30000
    assert books_clean(app) == []


def test_cancelling_mid_way_keeps_paid_stages_and_charges_the_fee_on_the_held_one(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    job_id, (worker_id, worker), (_, resident) = staged_job(app, client, make)
    assert done(client, job_id, 1, worker).status_code == 200
    assert confirm(client, job_id, 1, resident).status_code == 200
    # In progress, a resident can no longer call it off; an operator can.
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", json={},
                       headers=resident).status_code == 409
    _, admin = make.user(role=Role.ADMIN)
    r = client.post(f"/api/v1/jobs/{job_id}/cancel", json={"reason": "stopped"}, headers=admin)
    assert r.status_code == 200, r.json
    assert r.json["status"] == "cancelled"
    assert [m["status"] for m in r.json["milestones"]] == ["released", "cancelled", "cancelled"]
    call_out = sql(app, "SELECT c.call_out_cents FROM categories c JOIN jobs j "
                        "ON j.category_id = c.id WHERE j.id = :j", j=job_id)[0][0]
    second = stages(app, job_id)[1]
    assert second.captured_cents == call_out
    assert balance_of(app, "worker_balance", worker_id) == (
        30000 - fee_of(30000) + call_out - fee_of(call_out))
    assert balance_of(app, "refunds") == 50000 - call_out
    assert escrow_of(app, job_id) == 0 and books_clean(app) == []


def test_confirm_timer_sweeper_and_cancel_racing_end_a_stage_once(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, (worker_id, worker), (_, resident) = staged_job(app, client, make)
    _, admin = make.user(role=Role.ADMIN)
    assert done(client, job_id, 1, worker).status_code == 200
    first_id = stages(app, job_id)[0].id
    manual_clock.advance(hours=3)  # the automatic release is due as well

    def confirm_it() -> int:
        return confirm(app.test_client(), job_id, 1, resident).status_code

    def cancel() -> int:
        return app.test_client().post(f"/api/v1/jobs/{job_id}/cancel", json={},
                                      headers=admin).status_code

    def auto() -> bool:
        with app.app_context():
            try:
                return milestones.auto_release(db.session, first_id, manual_clock.now)
            finally:
                db.session.remove()

    def sweep() -> int:
        with app.app_context():
            try:
                return milestones.sweep(db.session, manual_clock.now)
            finally:
                db.session.remove()

    results = race([confirm_it] * 7 + [auto] * 6 + [sweep] * 4 + [cancel] * 3)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert set(results[:7]) == {200}, results  # released, by whoever won
    # Stage 1 was released exactly once, whoever got there first.
    assert sql(app, "SELECT count(*) FROM ledger_transactions WHERE idempotency_key = :k",
               k=f"settle:milestone:{first_id}")[0][0] == 1
    assert sql(app, "SELECT count(*) FROM sim_payment_objects WHERE kind = 'capture'"
               )[0][0] >= 1
    assert stages(app, job_id)[0].status == "released"
    assert sql(app, "SELECT count(*) FROM job_events WHERE job_id = :j AND kind = 'milestone' "
                    "AND detail->>'milestone' = 'released'", j=job_id)[0][0] == 1
    # One cancel wins (the job is in progress: an operator's); the others find it cancelled.
    assert Counter(results[17:]) == {200: 1, 409: 2}, results
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0][0] == "cancelled"
    assert [m.status for m in stages(app, job_id)][1:] == ["cancelled", "cancelled"]
    assert balance_of(app, "worker_balance", worker_id) >= 30000 - fee_of(30000)
    assert escrow_of(app, job_id) == 0 and books_clean(app) == []


def test_bad_plans_are_refused_naming_the_field(app: Flask, client: FlaskClient,
                                               make: Factory) -> None:
    make.worker()
    _, resident = make.user()
    category = make.category("leak-repair")

    def refused(plan: Any) -> list[str]:
        r = book(client, resident, job_body(category, milestones=plan, window=later(app)))
        assert r.status_code == 422, r.json
        return [f["field"] for f in r.json["error"]["fields"]]

    one = {"title": "All of it", "amount_cents": 1000}
    assert refused([one]) == ["milestones"]
    assert refused([one] * 11) == ["milestones"]
    assert refused([one, {"title": "", "amount_cents": 1000}]) == ["milestones.1.title"]
    assert refused([one, {"title": "x", "amount_cents": 0}]) == ["milestones.1.amount_cents"]
    assert refused([one, {"title": "x", "amount_cents": -5}]) == ["milestones.1.amount_cents"]
    assert refused([one, {"title": "x", "amount_cents": 10.5}]) == ["milestones.1.amount_cents"]
    assert refused([one, {"title": "x", "amount_cents": "100"}]) == [
        "milestones.1.amount_cents"]
    assert refused([one, {"title": "x"}]) == ["milestones.1.amount_cents"]
    assert count(app, "jobs") == 0 and count(app, "sim_payment_objects") == 0


def test_unknown_stages_and_strangers_are_404(app: Flask, client: FlaskClient,
                                              make: Factory) -> None:
    job_id, (_, worker), (_, resident) = staged_job(app, client, make)
    assert done(client, job_id, 4, worker).status_code == 404
    assert confirm(client, job_id, 9, resident).status_code == 404
    _, stranger = make.user()
    assert confirm(client, job_id, 1, stranger).status_code == 404
    _, other_worker = make.worker()
    assert done(client, job_id, 1, other_worker).status_code == 404
    assert client.post(f"/api/v1/jobs/{job_id}/milestones/1/confirm",
                       headers=worker).status_code == 403
    assert stages(app, job_id)[0].status == "held"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                  args=CHROMIUM_ARGS)
        yield found
        found.close()


def test_booking_in_stages_and_paying_them_in_the_pages(browser: Browser, live_server: Any,
                                                        make: Factory, app: Flask) -> None:
    make.worker(skills=("leak-repair",), email="stages-worker@example.test")
    make.user(Role.RESIDENT, email="stages@example.test")
    resident_ctx = new_context(browser, live_server, at=CENTER)
    worker_ctx = new_context(browser, live_server, phone=True, at=CENTER)
    resident, worker = resident_ctx.new_page(), worker_ctx.new_page()
    errors = page_errors(resident) + page_errors(worker)
    try:
        login(worker, "stages-worker@example.test")
        expect(worker.locator("#availability")).to_have_text("online")
        login(resident, "stages@example.test")
        resident.select_option("#category", label="Leak repair")
        resident.fill("#description", "Redo the bathroom floor")
        resident.click("#locate")
        expect(resident.locator("#where")).to_contain_text("Pin at")
        resident.check("input[name=when][value=later]")  # stages are for booked windows
        resident.click("#stages summary")
        rows = resident.locator("#stage-rows li")
        expect(rows).to_have_count(2)
        for i, (title, price) in enumerate((("Strip the old tiles", "300"),
                                            ("Lay the new floor", "500"))):
            rows.nth(i).locator(".stage-title").fill(title)
            rows.nth(i).locator(".stage-amount").fill(price)
        shot(resident, "book-stages")
        resident.click("#submit")
        resident.wait_for_url("**/jobs/*")
        stages_rows = resident.locator("#milestone-rows tr")
        expect(stages_rows).to_have_count(2)
        expect(stages_rows.nth(0)).to_contain_text("$300")
        expect(stages_rows.nth(0)).to_contain_text("held")
        expect(stages_rows.nth(1)).to_contain_text("not held yet")

        worker.locator(".offer .accept").click(timeout=10_000)
        job_id = int(resident.url.rstrip("/").rsplit("/", 1)[-1])
        expect(resident.locator("#status")).to_have_text("assigned", timeout=10_000)
        window_came(app, job_id)
        worker.reload()
        worker.click(f"#upcoming-{job_id} button.set-out")
        expect(worker.locator("#active-status")).to_have_text("en route")
        for status in ("arrived", "in_progress"):
            worker.click(f"#moves button[data-status={status}]")
            expect(worker.locator("#active-status")).to_have_text(status.replace("_", " "))
        expect(worker.locator("#moves button[data-status=completed]")).to_have_count(0)
        expect(worker.locator("#stage-done")).to_have_text(
            "Stage 1 done: Strip the old tiles")
        worker.click("#stage-done")
        expect(worker.locator("#moves")).to_contain_text("not held yet")
        confirm_button = stages_rows.nth(0).locator("button.stage-action")
        expect(confirm_button).to_have_text("Confirm", timeout=10_000)
        shot(resident, "job-stage-done")
        confirm_button.click()
        expect(stages_rows.nth(0)).to_contain_text("paid")
        expect(stages_rows.nth(1)).to_contain_text("held")
        expect(worker.locator("#stage-done")).to_have_text("Stage 2 done: Lay the new floor",
                                                           timeout=10_000)
        worker.click("#stage-done")
        expect(worker.locator("#active")).to_be_hidden()
        expect(resident.locator("#status")).to_have_text("completed", timeout=10_000)
        expect(resident.locator("#confirm-done")).to_be_hidden()
        stages_rows.nth(1).locator("button.stage-action").click()
        expect(resident.locator("#status")).to_have_text("closed", timeout=10_000)
        expect(stages_rows.nth(1)).to_contain_text("paid")
        shot(resident, "job-stages-paid")
        assert errors == [], errors
    finally:
        resident_ctx.close()
        worker_ctx.close()


# The seams where stages meet the rest of the money code.

def test_stages_have_an_invoice_statement_rows_sla_cost_and_webhooks(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "2B")
    set_settings(app, offer_wave_size=1)
    _, worker = make.worker()
    r = book(client, pm, {"category_id": make.category("leak-repair"), "unit_id": unit,
                          "description": "Replace the boiler", "milestones": PLAN[:2],
                          "window": later(app)})
    assert r.status_code == 201, r.json
    job_id = r.json["id"]
    sql(app, "UPDATE organizations SET webhook_url = 'https://hooks.example.test/x' "
             "WHERE id = (SELECT org_id FROM jobs WHERE id = :j)", j=job_id)
    invoice = sql(app, "SELECT status, amount_cents FROM invoices WHERE job_id = :j", j=job_id)
    assert invoice == [("hold", 80000)]  # the plan's total
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j", j=job_id)[0].id
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker).status_code == 200
    window_came(app, job_id)
    for status in ("en_route", "arrived", "in_progress"):
        assert post_status(client, job_id, worker, status).status_code == 200
    for n in (1, 2):
        assert done(client, job_id, n, worker).status_code == 200
        assert confirm(client, job_id, n, pm).status_code == 200
    assert sql(app, "SELECT status, amount_cents FROM invoices WHERE job_id = :j",
               j=job_id) == [("paid", 80000)]
    first, second = (m.id for m in stages(app, job_id))
    keys = {k for (k,) in sql(app, "SELECT idempotency_key FROM webhook_deliveries "
                                   "WHERE job_id = :j", j=job_id)}
    assert {f"payment.held:milestone:{second}", f"payment.captured:milestone:{first}",
            f"payment.captured:milestone:{second}"} <= keys
    captured = sql(app, "SELECT payload FROM webhook_deliveries WHERE idempotency_key = :k",
                   k=f"payment.captured:milestone:{second}")[0][0]
    assert (captured["event"], captured["milestone_id"], captured["charged_cents"],
            captured["refunded_cents"]) == ("payment.captured", second, 50000, 0)
    zone = ZoneInfo(app.config["DISPATCH"].service_timezone)
    month = clock.now().astimezone(zone).strftime("%Y-%m")
    statement = client.get(f"/api/v1/statements?month={month}", headers=pm)
    assert statement.status_code == 200, statement.json
    rows = [r for r in statement.json["rows"] if r["job_id"] == job_id]
    assert sorted((r["held_cents"], r["charged_cents"], r["payment_status"])
                  for r in rows) == [(30000, 30000, "released"), (50000, 50000, "released")]
    assert statement.json["totals"][0]["jobs"] == 1
    assert statement.json["totals"][0]["charged_cents"] == 80000
    sla = client.get(f"/api/v1/reports/sla?month={month}", headers=pm)
    assert sla.status_code == 200, sla.json
    assert [row["cost_total"] for row in sla.json["rows"]] == [800.0]
    assert books_clean(app) == []


def test_a_job_in_stages_ending_settles_its_invoice(app: Flask, client: FlaskClient,
                                                      make: Factory) -> None:
    job_id, _, (_, resident) = staged_job(app, client, make, to="assigned")
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", json={},
                       headers=resident).status_code == 200
    assert sql(app, "SELECT status FROM invoices WHERE job_id = :j", j=job_id) == [("void",)]
    job_id, (_, worker), (_, resident) = staged_job(app, client, make)
    assert done(client, job_id, 1, worker).status_code == 200
    assert confirm(client, job_id, 1, resident).status_code == 200
    _, admin = make.user(role=Role.ADMIN)
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", json={"reason": "stopped"},
                       headers=admin).status_code == 200
    fee = stages(app, job_id)[1].captured_cents
    assert sql(app, "SELECT status, amount_cents FROM invoices WHERE job_id = :j",
               j=job_id) == [("paid", 30000 + fee)]
    assert books_clean(app) == []


def test_plans_that_do_not_cover_the_work_are_refused(app: Flask, client: FlaskClient,
                                                      make: Factory) -> None:
    make.worker()
    _, resident = make.user()
    leak = make.category("leak-repair")
    tiny = [{"title": "a", "amount_cents": 1}, {"title": "b", "amount_cents": 1}]

    def refused(headers: dict[str, str], body: dict[str, Any]) -> str:
        r = book(client, headers, body)
        assert r.status_code == 422, r.json
        assert [f["field"] for f in r.json["error"]["fields"]] == ["milestones"]
        return str(r.json["error"]["message"])

    assert "booked window" in refused(resident, job_body(leak, milestones=PLAN))  # urgent
    assert "estimate" in refused(resident, job_body(leak, milestones=tiny, window=later(app)))
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "2B")
    sql(app, "UPDATE organizations SET soft_routine_cents = 50000, hard_routine_cents = 60000")
    assert "limit" in refused(pm, {"category_id": leak, "unit_id": unit,
                                   "description": "Replace the boiler",
                                   "milestones": PLAN[:2], "window": later(app)})
    assert count(app, "jobs") == 0 and count(app, "sim_payment_objects") == 0


def test_with_stripe_the_later_stages_are_held_off_session_on_the_customer(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock,
        settings: Any) -> None:
    from dispatch.infra.payments.stripe_provider import StripeProvider
    from dispatch.services import payments
    from tests.stripe_fake import FakeStripe

    changed = set_settings(app, payment_provider="stripe", stripe_secret_key="sk_test_123",
                           stripe_webhook_secret="whsec_test", offer_wave_size=10,
                           auto_release_hours=2)
    fake = FakeStripe()
    fake.clock = lambda: manual_clock.now.timestamp()
    app.extensions[payments._KEY] = (changed, StripeProvider(
        "sk_test_123", "whsec_test", http_client=fake))
    job_id, (_, worker), (_, resident) = staged_job(app, client, make,
                                                    payment_method="pm_card_visa")
    customers = {m.customer_id for m in stages(app, job_id)}
    assert len(customers) == 1 and next(iter(customers)).startswith("cus_")
    for n in (1, 2):
        assert done(client, job_id, n, worker).status_code == 200
        r = confirm(client, job_id, n, resident)
        assert r.status_code == 200, r.json
        assert r.json["milestones"][n]["status"] == "held", r.json["milestones"]
        held = [s for s in fake.sent if s.path == "/v1/payment_intents"][-1]
        assert held.params["customer"] == list(customers)
        assert held.params["off_session"] == ["true"]
    assert escrow_of(app, job_id) == 20000 and books_clean(app) == []


def lapse(app: Flask, milestone: Any) -> None:
    """The processor let the stage's hold lapse (its 7 days passed)."""
    sql(app, "UPDATE sim_payment_objects SET expires_at = now() - interval '1 minute' "
             "WHERE id = :i", i=milestone.authorization_id)


def test_a_done_stage_whose_hold_lapsed_is_held_again_and_paid(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    job_id, (worker_id, worker), (_, resident) = staged_job(app, client, make)
    assert done(client, job_id, 1, worker).status_code == 200
    first = stages(app, job_id)[0]
    lapse(app, first)
    r = confirm(client, job_id, 1, resident)
    assert r.status_code == 200, r.json
    paid = stages(app, job_id)[0]
    assert (paid.status, paid.captured_cents, paid.hold_attempts) == ("released", 30000, 2)
    assert authorization(app, paid.authorization_id).status == "captured"
    assert balance_of(app, "worker_balance", worker_id) == 30000 - fee_of(30000)
    assert books_clean(app) == []


def test_a_done_stage_whose_hold_lapsed_and_is_refused_stays_done_for_the_payer(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    job_id, (worker_id, worker), (_, resident) = staged_job(app, client, make)
    assert done(client, job_id, 1, worker).status_code == 200
    lapse(app, stages(app, job_id)[0])
    sql(app, "UPDATE job_milestones SET payment_method = :c WHERE job_id = :j AND position = 1",
        c=DECLINED_CARD, j=job_id)
    r = confirm(client, job_id, 1, resident)
    assert r.status_code == 200, r.json
    first = r.json["milestones"][0]
    assert (first["status"], first["hold_declined"]) == ("done", "card_declined")
    assert escrow_of(app, job_id) == 0 and balance_of(app, "worker_balance", worker_id) == 0
    manual_clock.advance(hours=3)
    with app.app_context():  # the sweeper leaves it to the payer (no card hammered)
        assert milestones.sweep(db.session, manual_clock.now) == 0
    r = client.post(f"/api/v1/jobs/{job_id}/milestones/1/hold",
                    json={"payment_method": "pm_card_visa"}, headers=resident)
    assert r.status_code == 200, r.json
    assert [m["status"] for m in r.json["milestones"]][:2] == ["released", "held"]
    assert balance_of(app, "worker_balance", worker_id) == 30000 - fee_of(30000)
    assert books_clean(app) == []


def test_stage_timers_and_the_sweep_leave_disputed_jobs_alone_and_go_on_past_failures(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    disputed, (_, worker), _ = staged_job(app, client, make, plan=PLAN[:1] + PLAN[1:2])
    assert done(client, disputed, 1, worker).status_code == 200
    assert done(client, disputed, 2, worker).status_code == 409  # not held yet
    broken, (_, worker2), _ = staged_job(app, client, make)
    assert done(client, broken, 1, worker2).status_code == 200
    fine, (_, worker3), _ = staged_job(app, client, make)
    assert done(client, fine, 1, worker3).status_code == 200
    sql(app, "UPDATE jobs SET status = 'disputed' WHERE id = :j", j=disputed)
    # A stale authorization: its release fails (a refusal, not a lapse).
    sql(app, "UPDATE job_milestones SET authorization_id = 'auth_gone' "
             "WHERE job_id = :j AND position = 1", j=broken)
    manual_clock.advance(hours=3)
    with app.app_context():
        assert milestones.auto_release(db.session, stages(app, disputed)[0].id,
                                       manual_clock.now) is False
        assert milestones.sweep(db.session, manual_clock.now) == 1
    assert stages(app, disputed)[0].status == "done"
    assert stages(app, broken)[0].status == "done"
    assert [m.status for m in stages(app, fine)] == ["released", "held", "planned"]
    # A lapsed held stage of a disputed job is not held again, sweep after sweep.
    other, _, _ = staged_job(app, client, make)
    sql(app, "UPDATE jobs SET status = 'disputed' WHERE id = :j", j=other)
    sql(app, "UPDATE job_milestones SET authorization_expires_at = :t WHERE job_id = :j "
             "AND status = 'held'", t=manual_clock.now - timedelta(seconds=1), j=other)
    with app.app_context():
        assert milestones.sweep(db.session, manual_clock.now) == 0
        assert milestones.sweep(db.session, manual_clock.now) == 0
    assert stages(app, other)[0].hold_attempts == 1


def test_holding_again_on_an_unknown_card_is_422(app: Flask, client: FlaskClient,
                                                 make: Factory) -> None:
    job_id, (_, worker), (_, resident) = staged_job(app, client, make)
    sql(app, "UPDATE job_milestones SET payment_method = :c WHERE job_id = :j",
        c=DECLINED_CARD, j=job_id)
    assert done(client, job_id, 1, worker).status_code == 200
    assert confirm(client, job_id, 1, resident).status_code == 200
    r = client.post(f"/api/v1/jobs/{job_id}/milestones/2/hold",
                    json={"payment_method": "pm_no_such_card"}, headers=resident)
    assert r.status_code == 422, r.json
    assert [f["field"] for f in r.json["error"]["fields"]] == ["payment_method"]
    assert stages(app, job_id)[1].hold_declined == "card_declined"
