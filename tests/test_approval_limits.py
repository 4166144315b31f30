"""Approval limits for organizations: inherited organization -> property -> job, emergency
and routine apart, a batch row's budget cap as the job's limit, what the worker is shown,
and managers deciding final amounts above the hard limit (once, by one of them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect

from dispatch.db import db
from dispatch.db.models import Job, Role
from dispatch.services import approvals
from tests.helpers import CENTER, Factory, book, sql
from tests.live import LiveServer
from tests.test_browser import browser, login, new_context, page_errors, shot
from tests.test_portfolio import manager_with_property
from tests.test_races import race

__all__ = ["browser"]  # the module's one Chromium, shared with the page test

LIMITS = {"emergency_soft_cents": 20000, "emergency_hard_cents": 50000,
          "routine_soft_cents": 10000, "routine_hard_cents": 30000}
CLEAR = dict.fromkeys(LIMITS)


def org_job(client: FlaskClient, make: Factory, pm: dict[str, str], prop_id: int,
            label: str = "1A", add_worker: bool = True) -> int:
    """A job booked by the manager for a new unit (a worker nearby, so it is taken)."""
    if add_worker:
        make.worker()
    unit_id = client.post("/api/v1/units", json={
        "property_id": prop_id, "label": label, "address": f"1 Elm St Apt {label}",
        "lat": CENTER[0], "lng": CENTER[1]}, headers=pm).json["id"]
    body = {"category_id": make.category("leak-repair"), "description": "Leak",
            "unit_id": unit_id}
    job = book(client, pm, body)
    assert job.status_code == 201, job.json
    return int(job.json["id"])


def make_routine(app: Flask, job_id: int) -> None:
    sql(app, "UPDATE jobs SET urgency = 'scheduled', window_start = arrive_by - "
             "interval '3 hours', window_end = arrive_by WHERE id = :j", j=job_id)


def effective(app: Flask, job_id: int) -> approvals.Limits:
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job is not None
        return approvals.effective_limits(db.session, job)


def decide_amount(app: Flask, job_id: int, amount: int, **kw: Any) -> str:
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job is not None
        return approvals.decide_final_amount(db.session, job, amount, **kw)


def field_of(response: Any) -> str:
    return str(response.json["error"]["fields"][0]["field"])


def test_limits_inherit_org_then_property_then_job_and_clear(app: Flask, client: FlaskClient,
                                                            make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    job_id = org_job(client, make, pm, prop_id)
    assert effective(app, job_id) == approvals.Limits(None, None, "none")
    assert decide_amount(app, job_id, 10**8) == "auto_approved"  # no cap chosen
    put = client.put("/api/v1/org/limits", json=LIMITS, headers=pm)
    assert put.status_code == 200 and put.json["emergency_hard_cents"] == 50000
    assert client.get("/api/v1/org/limits", headers=pm).json["routine_soft_cents"] == 10000
    assert effective(app, job_id) == approvals.Limits(20000, 50000, "organization")
    prop = {**CLEAR, "emergency_soft_cents": 5000, "emergency_hard_cents": 8000}
    assert client.put(f"/api/v1/properties/{prop_id}/limits", json=prop,
                      headers=pm).status_code == 200
    assert effective(app, job_id) == approvals.Limits(5000, 8000, "property")
    job = client.put(f"/api/v1/jobs/{job_id}/limits",
                     json={**CLEAR, "emergency_soft_cents": 0, "emergency_hard_cents": 100},
                     headers=pm)
    assert job.status_code == 200, job.json
    assert job.json["effective"] == {"soft_cents": 0, "hard_cents": 100, "source": "job"}
    assert job.json["kind"] == "emergency"
    assert decide_amount(app, job_id, 100) == "auto_approved"
    assert decide_amount(app, job_id, 101) == "needs_approval"
    cleared = client.put(f"/api/v1/jobs/{job_id}/limits", json=CLEAR, headers=pm)
    assert cleared.json["effective"]["source"] == "property"
    assert client.put(f"/api/v1/properties/{prop_id}/limits", json={},
                      headers=pm).json == {**CLEAR, "currency": "USD"}
    got = client.get(f"/api/v1/jobs/{job_id}/limits", headers=pm).json
    assert got["effective"] == {"soft_cents": 20000, "hard_cents": 50000,
                                "source": "organization"}


def test_emergency_and_routine_limits_are_apart(app: Flask, client: FlaskClient,
                                                make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    job_id = org_job(client, make, pm, prop_id)
    client.put("/api/v1/org/limits", json=LIMITS, headers=pm)
    assert decide_amount(app, job_id, 40000) == "auto_approved"  # emergency: hard 500.00
    make_routine(app, job_id)
    assert effective(app, job_id) == approvals.Limits(10000, 30000, "organization")
    assert decide_amount(app, job_id, 40000) == "needs_approval"  # routine: hard 300.00
    # A property overriding only emergency work leaves routine work to the organization.
    client.put(f"/api/v1/properties/{prop_id}/limits",
               json={"emergency_soft_cents": 1, "emergency_hard_cents": 2}, headers=pm)
    assert effective(app, job_id).source == "organization"


def test_batch_budget_cap_becomes_the_jobs_hard_limit(app: Flask, client: FlaskClient,
                                                      make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    job_id = org_job(client, make, pm, prop_id)
    sql(app, "UPDATE jobs SET budget_cap_cents = 25000 WHERE id = :j", j=job_id)
    assert effective(app, job_id) == approvals.Limits(25000, 25000, "job")
    client.put("/api/v1/org/limits", json=LIMITS, headers=pm)
    assert effective(app, job_id) == approvals.Limits(20000, 25000, "job")
    assert decide_amount(app, job_id, 25001) == "needs_approval"
    sql(app, "UPDATE jobs SET budget_cap_cents = 15000 WHERE id = :j", j=job_id)
    assert effective(app, job_id) == approvals.Limits(15000, 15000, "job")


def test_resident_jobs_ask_the_payer_above_hold_and_tolerance(app: Flask, client: FlaskClient,
                                                              make: Factory) -> None:
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    job_id = book(client, resident, {"category_id": make.category("leak-repair"),
                                     "description": "Leak", "lat": CENTER[0],
                                     "lng": CENTER[1]}).json["id"]
    assert effective(app, job_id).source == "none"
    assert decide_amount(app, job_id, 11000, held_cents=10000) == "auto_approved"
    assert decide_amount(app, job_id, 11001, held_cents=10000) == "needs_payer_approval"
    assert decide_amount(app, job_id, 10**6) == "auto_approved"  # hold unknown


def test_bad_limits_are_refused_by_name(client: FlaskClient, make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    soft_above = client.put("/api/v1/org/limits", json={**LIMITS, "routine_soft_cents": 30001},
                            headers=pm)
    assert soft_above.status_code == 422 and field_of(soft_above) == "routine_soft_cents"
    assert "hard limit" in soft_above.json["error"]["fields"][0]["problem"]
    half = client.put(f"/api/v1/properties/{prop_id}/limits",
                      json={"emergency_hard_cents": 100}, headers=pm)
    assert half.status_code == 422 and field_of(half) == "emergency_soft_cents"
    for value in (-1, 1.5, "100", True, 2**31):
        bad = client.put("/api/v1/org/limits", json={**LIMITS, "emergency_hard_cents": value},
                         headers=pm)
        assert bad.status_code == 422, (value, bad.json)
        assert field_of(bad) == "emergency_hard_cents", value
    unknown = client.put("/api/v1/org/limits", json={"emergency_cap": 1}, headers=pm)
    assert unknown.status_code == 422 and field_of(unknown) == "emergency_cap"
    assert client.get("/api/v1/org/limits", headers=pm).json["emergency_hard_cents"] is None


def test_another_organizations_manager_cannot_see_or_set_limits(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    job_id = org_job(client, make, pm, prop_id)
    _, other = make.user(Role.PROPERTY_MANAGER)
    client.post("/api/v1/org", json={"name": "Rival"}, headers=other)
    for path in (f"/api/v1/properties/{prop_id}/limits", f"/api/v1/jobs/{job_id}/limits"):
        assert client.get(path, headers=other).status_code == 404
        assert client.put(path, json=LIMITS, headers=other).status_code == 404
    _, resident = make.user(Role.RESIDENT)
    assert client.get("/api/v1/org/limits", headers=resident).status_code == 403
    _, worker = make.worker()
    assert client.put(f"/api/v1/jobs/{job_id}/limits", json=LIMITS,
                      headers=worker).status_code == 403
    assert sql(app, "SELECT hard_emergency_cents FROM jobs")[0].hard_emergency_cents is None


def test_the_offer_and_job_tell_the_worker_when_to_ask(app: Flask, client: FlaskClient,
                                                       make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    client.put("/api/v1/org/limits", json=LIMITS, headers=pm)
    _, worker = make.worker()
    job_id = org_job(client, make, pm, prop_id)
    [offer] = client.get("/api/v1/offers", headers=worker).json["offers"]
    assert offer["job"]["id"] == job_id and offer["ask_before_cents"] == 20000
    accepted = client.post(f"/api/v1/offers/{offer['id']}/accept", headers=worker)
    assert accepted.status_code == 200 and accepted.json["job"]["ask_before_cents"] == 20000
    _, resident = make.user(Role.RESIDENT)
    own = book(client, resident, {"category_id": make.category("leak-repair"),
                                  "description": "Leak", "lat": CENTER[0], "lng": CENTER[1]})
    assert own.json["ask_before_cents"] is None  # nobody's organization: no limit


def pending_request(app: Flask, client: FlaskClient, make: Factory
                    ) -> tuple[dict[str, str], int, int]:
    pm, prop_id = manager_with_property(client, make)
    job_id = org_job(client, make, pm, prop_id)
    client.put(f"/api/v1/jobs/{job_id}/limits",
               json={**CLEAR, "emergency_soft_cents": 100, "emergency_hard_cents": 200},
               headers=pm)
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job is not None
        assert approvals.request_approval(db.session, job, 200, None) is None
        request = approvals.request_approval(db.session, job, 201, None)
        assert request is not None
        again = approvals.request_approval(db.session, job, 250, None)  # one per job
        assert again is not None and again.id == request.id
        return pm, job_id, request.id


def test_managers_approve_or_decline_once(app: Flask, client: FlaskClient,
                                          make: Factory) -> None:
    pm, job_id, request_id = pending_request(app, client, make)
    listed = client.get("/api/v1/approvals?status=pending", headers=pm).json
    assert [(a["id"], a["job_id"], a["amount_cents"], a["hard_limit_cents"])
            for a in listed["approvals"]] == [(request_id, job_id, 250, 200)]
    _, other = make.user(Role.PROPERTY_MANAGER)
    client.post("/api/v1/org", json={"name": "Rival"}, headers=other)
    assert client.get("/api/v1/approvals", headers=other).json["approvals"] == []
    assert client.post(f"/api/v1/approvals/{request_id}/approve", json={},
                       headers=other).status_code == 404
    no_reason = client.post(f"/api/v1/approvals/{request_id}/decline", json={}, headers=pm)
    assert no_reason.status_code == 422 and field_of(no_reason) == "reason"
    declined = client.post(f"/api/v1/approvals/{request_id}/decline",
                           json={"reason": "Too much for a tap"}, headers=pm)
    assert declined.status_code == 200 and declined.json["status"] == "declined"
    assert declined.json["reason"] == "Too much for a tap" and declined.json["decided_at"]
    twice = client.post(f"/api/v1/approvals/{request_id}/approve", json={}, headers=pm)
    assert twice.status_code == 409
    assert client.get("/api/v1/approvals", headers=pm).json["approvals"] == []
    done = client.get("/api/v1/approvals?status=all", headers=pm).json["approvals"]
    assert [a["status"] for a in done] == ["declined"]
    bad = client.get("/api/v1/approvals?status=maybe", headers=pm)
    assert bad.status_code in (400, 422)
    assert field_of(bad).startswith("status")


def test_managers_racing_make_exactly_one_decision(app: Flask, client: FlaskClient,
                                                   make: Factory) -> None:
    _, _, request_id = pending_request(app, client, make)
    org_id = sql(app, "SELECT org_id FROM approval_requests")[0].org_id
    managers = []
    for _ in range(20):
        user_id, headers = make.user(Role.PROPERTY_MANAGER)
        sql(app, "INSERT INTO organization_managers (org_id, user_id) VALUES (:o, :u)",
            o=org_id, u=user_id)
        managers.append((user_id, headers))

    def decide(i: int, headers: dict[str, str]) -> Callable[[], int]:
        verb, body = ("approve", {}) if i % 2 else ("decline", {"reason": "No"})
        return lambda: app.test_client().post(f"/api/v1/approvals/{request_id}/{verb}",
                                              json=body, headers=headers).status_code

    codes = race([decide(i, h) for i, (_, h) in enumerate(managers)])
    assert Counter(codes) == {200: 1, 409: 19}, codes
    row = sql(app, "SELECT status, decided_by FROM approval_requests")[0]
    winner = managers[codes.index(200)][0]
    assert row.decided_by == winner
    assert row.status == ("approve" if codes.index(200) % 2 else "decline") + "d"


def test_approvals_page_decides_and_sets_limits(browser: Browser, live_server: LiveServer,
                                                app: Flask, client: FlaskClient,
                                                make: Factory) -> None:
    _, pm = make.user(Role.PROPERTY_MANAGER, email="boss@example.test")
    client.post("/api/v1/org", json={"name": "Bay Homes"}, headers=pm)
    prop_id = client.post("/api/v1/properties", json={"name": "Elm Court"}, headers=pm).json["id"]
    job_id = org_job(client, make, pm, prop_id)
    sql(app, "UPDATE jobs SET budget_cap_cents = 10000 WHERE id = :j", j=job_id)
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job is not None
        assert approvals.request_approval(db.session, job, 12345, None) is not None
    page = new_context(browser, live_server).new_page()
    errors = page_errors(page)
    login(page, "boss@example.test")
    page.click("header nav a:text('Approvals')")
    row = page.locator("#approvals tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text(f"#{job_id}")
    expect(row.locator("td").nth(1)).to_have_text("$123.45")
    row.locator("button.decline").click()  # no reason given
    expect(page.locator("#approval-error")).to_contain_text("Reason")
    row.locator("button.approve").click()
    expect(row).to_have_count(0)
    assert sql(app, "SELECT status FROM approval_requests")[0].status == "approved"
    page.fill("#routine_soft_cents", "400")
    page.fill("#routine_hard_cents", "300")
    page.click("#limits-form button[type=submit]")
    expect(page.locator("#limits-error")).to_contain_text("Routine soft limit")
    page.fill("#routine_soft_cents", "250.50")
    page.click("#limits-form button[type=submit]")
    expect(page.locator("#limits-saved")).to_have_text("Saved.")
    assert sql(app, "SELECT soft_routine_cents FROM organizations")[0].soft_routine_cents == 25050
    shot(page, "approvals")
    # The two refusals above are the only console errors (the browser logs 4xx answers).
    unexpected = [e for e in errors if "responded with a status of 422" not in e]
    assert unexpected == [] and len(errors) == 2, errors


def test_work_page_offer_says_when_to_ask(browser: Browser, live_server: LiveServer,
                                          client: FlaskClient, make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    client.put("/api/v1/org/limits", json=LIMITS, headers=pm)
    make.worker(email="fixer@example.test")
    org_job(client, make, pm, prop_id, add_worker=False)
    page = new_context(browser, live_server, phone=True).new_page()
    errors = page_errors(page)
    login(page, "fixer@example.test")
    page.goto("/work")
    expect(page.locator(".offer .ask")).to_have_text("Ask before going above $200")
    assert errors == [], errors


def test_racing_requests_for_one_job_leave_one_pending(app: Flask, client: FlaskClient,
                                                       make: Factory) -> None:
    _, job_id, _request = pending_request(app, client, make)
    sql(app, "DELETE FROM approval_requests")

    def ask(amount: int) -> Callable[[], int | None]:
        def call() -> int | None:
            with app.app_context():
                job = db.session.get(Job, job_id)
                assert job is not None
                made = approvals.request_approval(db.session, job, amount, None)
                return made.id if made else None
        return call

    ids = race([ask(300 + i) for i in range(12)])
    assert all(isinstance(i, int) for i in ids), ids
    rows = sql(app, "SELECT id, status FROM approval_requests")
    assert len(rows) == 1 and rows[0].status == "pending" and set(ids) == {rows[0].id}
