"""Invoices: one per job from the hold at booking, through review to paid (or void), and
the organization's managers' list of them."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.domain.errors import IllegalTransition
from dispatch.domain.states import INVOICE_TRANSITIONS, InvoiceStatus, check_invoice_transition
from tests.helpers import Factory, page_login, sql
from tests.test_approval_limits import org_job
from tests.test_escrow import payment
from tests.test_final_amount import HOLD, complete, part, working_job
from tests.test_job_flow import assigned_job, post_status
from tests.test_portfolio import manager_with_property


def statuses(app: Flask, job_id: int) -> str:
    return str(sql(app, "SELECT status FROM invoices WHERE job_id = :j", j=job_id)[0][0])


def test_the_invoice_follows_a_whole_job(app: Flask, client: FlaskClient,
                                         make: Factory) -> None:
    job_id, (_, worker), (resident_id, resident) = working_job(app, client, make)
    opened = client.get(f"/api/v1/jobs/{job_id}/invoice", headers=resident).json
    assert (opened["status"], opened["amount_cents"], opened["held_cents"]) == (
        "hold", HOLD, HOLD)
    assert opened["payer_user_id"] == resident_id and opened["payer_organization_id"] is None
    assert opened["line_items"] == [] and opened["paid_at"] is None
    seen = [statuses(app, job_id)]
    complete(client, job_id, worker, 60, [part(9000)], hourly_rate_cents=14000)
    seen.append(statuses(app, job_id))
    client.post(f"/api/v1/jobs/{job_id}/final-amount",
                json={"approve": False, "reason": "Too dear"}, headers=resident)
    seen.append(statuses(app, job_id))
    complete(client, job_id, worker, 60, [part(1000)])
    seen.append(statuses(app, job_id))
    client.post(f"/api/v1/jobs/{job_id}/final-amount", json={"approve": True}, headers=resident)
    seen.append(statuses(app, job_id))
    client.post(f"/api/v1/jobs/{job_id}/confirm", headers=resident)
    seen.append(statuses(app, job_id))
    assert seen == ["hold", "in_review", "declined", "in_review", "approved", "paid"]
    receipt = client.get(f"/api/v1/jobs/{job_id}/invoice", headers=resident).json
    total = 5900 + 4000 + 8000 + 1000
    assert (receipt["amount_cents"], receipt["charged_cents"], receipt["refunded_cents"]) == (
        total, total, HOLD - total)
    assert receipt["decline_reason"] is None and receipt["paid_at"]
    assert [i["kind"] for i in receipt["line_items"]] == [
        "call_out", "surcharge", "labour", "parts"]
    page_login(app, client, resident_id)
    page = client.get(f"/jobs/{job_id}/receipt")
    assert page.status_code == 200 and receipt["number"] in page.text
    assert "Receipt" in page.text and "given back" in page.text


def test_a_free_cancellation_voids_the_invoice(app: Flask, client: FlaskClient,
                                               make: Factory) -> None:
    job_id, _, (_, resident), _ = assigned_job(app, client, make)
    client.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=resident)
    assert statuses(app, job_id) == "void"


def test_a_cancellation_fee_is_paid_on_the_invoice(app: Flask, client: FlaskClient,
                                                   make: Factory) -> None:
    other_id, (_, worker), (_, other), _ = assigned_job(app, client, make)
    assert post_status(client, other_id, worker, "en_route").status_code == 200
    client.post(f"/api/v1/jobs/{other_id}/cancel", json={}, headers=other)
    fee = client.get(f"/api/v1/jobs/{other_id}/invoice", headers=other).json
    assert (fee["status"], fee["amount_cents"]) == ("paid", payment(app, other_id).captured_cents)


def test_the_state_machine_refuses_what_it_does_not_name() -> None:
    check_invoice_transition("declined", "in_review")
    for bad in (("paid", "hold"), ("void", "paid"), ("hold", "approved"),
                ("declined", "paid")):
        with pytest.raises(IllegalTransition):
            check_invoice_transition(*bad)
    assert not INVOICE_TRANSITIONS.get(InvoiceStatus.PAID)


def test_managers_list_their_organizations_invoices(app: Flask, client: FlaskClient,
                                                    make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    pm_id = sql(app, "SELECT user_id FROM organization_managers")[0][0]
    first = org_job(client, make, pm, prop_id, "1A")
    second = org_job(client, make, pm, prop_id, "1B")
    listed = client.get("/api/v1/invoices?limit=1", headers=pm).json
    assert [i["job_id"] for i in listed["invoices"]] == [second]
    more = client.get(f"/api/v1/invoices?limit=1&cursor={listed['next_cursor']}",
                      headers=pm).json
    assert [i["job_id"] for i in more["invoices"]] == [first]
    assert more["invoices"][0]["property_id"] == prop_id
    assert more["invoices"][0]["payer_organization_id"] is not None
    assert client.get(f"/api/v1/invoices?property_id={prop_id}&status=hold",
                      headers=pm).json["invoices"][0]["status"] == "hold"
    assert client.get("/api/v1/invoices?status=paid", headers=pm).json["invoices"] == []
    bad = client.get("/api/v1/invoices?status=owed", headers=pm)
    assert bad.status_code in (400, 422)
    invoice_id = listed["invoices"][0]["id"]
    assert client.get(f"/api/v1/invoices/{invoice_id}", headers=pm).json["job_id"] == second
    rival, _ = manager_with_property(client, make)
    assert client.get(f"/api/v1/invoices/{invoice_id}", headers=rival).status_code == 404
    assert client.get("/api/v1/invoices", headers=rival).json["invoices"] == []
    assert client.get(f"/api/v1/jobs/{second}/invoice", headers=pm).status_code == 200
    page_login(app, client, pm_id)
    assert "Invoices" in client.get("/invoices").text


def test_every_money_route_is_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path in ("/api/v1/jobs/{job_id}/complete", "/api/v1/jobs/{job_id}/final-amount",
                 "/api/v1/jobs/{job_id}/invoice", "/api/v1/invoices",
                 "/api/v1/invoices/{invoice_id}"):
        assert path in paths, path
