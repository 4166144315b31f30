"""Monthly statements for organizations: real bookings through the real escrow (the simulated
card processor and the ledger), read back per job with totals, as JSON and as CSV; the SLA
report's cost column."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from tests.helpers import Factory, ManualClock, book, page_login, set_settings, sql
from tests.test_job_flow import post_status
from tests.test_portfolio import manager_with_property

LA = ZoneInfo("America/Los_Angeles")
FORMULA_UNIT = '=HYPERLINK("http://evil.test","1A")'


class Org:
    """A manager's organization with two properties of one unit each, and workers to call
    on (each job is accepted by whichever worker its offer went to). Changes the settings:
    a test using it asks for the `settings` fixture, which puts them back."""

    def __init__(self, app: Flask, client: FlaskClient, make: Factory,
                 unit_label: str = "1A") -> None:
        set_settings(app, offer_wave_size=5, service_timezone="America/Los_Angeles")
        self.app, self.client, self.make = app, client, make
        self.pm, self.elm = manager_with_property(client, make)
        self.oak = client.post("/api/v1/properties", json={"name": "Oak Row"},
                               headers=self.pm).json["id"]
        self.elm_unit = self.unit(self.elm, unit_label)
        self.oak_unit = self.unit(self.oak, "2B")
        self.workers = dict(make.worker() for _ in range(3))

    def unit(self, prop_id: int, label: str) -> int:
        r = self.client.post("/api/v1/units", json={"property_id": prop_id, "label": label,
                                                    "address": "1 Elm St", "lat": 37.7749,
                                                    "lng": -122.4194}, headers=self.pm)
        assert r.status_code == 201, r.json
        return int(r.json["id"])

    def book(self, unit_id: int) -> int:
        r = book(self.client, self.pm, {"category_id": self.make.category("leak-repair"),
                                        "description": "Leak", "unit_id": unit_id})
        assert r.status_code == 201, r.json
        return int(r.json["id"])

    def accepted(self, unit_id: int) -> tuple[int, dict[str, str]]:
        job_id = self.book(unit_id)
        offer = sql(self.app, "SELECT id, worker_id FROM offers WHERE job_id = :j "
                              "AND status = 'pending' ORDER BY id LIMIT 1", j=job_id)[0]
        worker = self.workers[offer.worker_id]
        r = self.client.post(f"/api/v1/offers/{offer.id}/accept", headers=worker)
        assert r.status_code == 200, r.json
        return job_id, worker

    def statement(self, month: str, **params: Any) -> Any:
        r = self.client.get("/api/v1/statements", query_string={"month": month, **params},
                            headers=self.pm)
        assert r.status_code == 200, r.json
        return r.json


def payment(app: Flask, job_id: int) -> Any:
    return sql(app, "SELECT * FROM job_payments WHERE job_id = :j", j=job_id)[0]


def confirmed(org: Org, unit_id: int) -> int:
    job_id, worker = org.accepted(unit_id)
    for status in ("en_route", "arrived", "in_progress", "completed"):
        assert post_status(org.client, job_id, worker, status).status_code == 200
    held = payment(org.app, job_id).held_cents
    sql(org.app, "UPDATE jobs SET final_amount_cents = :c WHERE id = :j", c=held - 1000,
        j=job_id)
    r = org.client.post(f"/api/v1/jobs/{job_id}/confirm", headers=org.pm)
    assert r.status_code == 200 and r.json["status"] == "closed", r.json
    return job_id


def cancelled_after_setting_out(org: Org, unit_id: int) -> int:
    job_id, worker = org.accepted(unit_id)
    assert post_status(org.client, job_id, worker, "en_route").status_code == 200
    r = org.client.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=org.pm)
    assert r.status_code == 200, r.json
    return job_id


def test_a_month_of_jobs_with_charges_fees_and_holds(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock,
        settings: Any) -> None:
    manual_clock.now = datetime(2026, 11, 15, 10, 0, tzinfo=LA)
    org = Org(app, client, make, unit_label=FORMULA_UNIT)
    done = confirmed(org, org.elm_unit)
    fee_job = cancelled_after_setting_out(org, org.elm_unit)
    open_job = org.book(org.oak_unit)  # still looking for a worker: held

    got = org.statement("2026-11")
    assert got["month"] == "2026-11" and got["time_zone"] == "America/Los_Angeles"
    rows = {row["job_id"]: row for row in got["rows"]}
    assert set(rows) == {done, fee_job, open_job}

    paid = payment(app, done)
    assert paid.status == "released" and paid.captured_cents == paid.held_cents - 1000
    assert rows[done] == {**rows[done], "date": "2026-11-15", "property": "Elm Court",
                          "unit": FORMULA_UNIT, "category": "Leak repair",
                          "urgency": "urgent", "status": "closed",
                          "payment_status": "released", "currency": "USD",
                          "held_cents": paid.held_cents, "charged_cents": paid.held_cents - 1000,
                          "refunded_cents": 1000, "cancellation_fee_cents": 0}

    fee = payment(app, fee_job)
    call_out = sql(app, "SELECT call_out_cents FROM categories WHERE slug = 'leak-repair'")[0][0]
    assert rows[fee_job] == {**rows[fee_job], "status": "cancelled",
                             "payment_status": "released", "held_cents": fee.held_cents,
                             "charged_cents": call_out, "cancellation_fee_cents": call_out,
                             "refunded_cents": fee.held_cents - call_out}

    # Each row names the job's invoice and where it stands.
    assert {job: (rows[job]["invoice_number"], rows[job]["invoice_status"])
            for job in rows} == {done: (f"INV-2026-{done:06d}", "paid"),
                                 fee_job: (f"INV-2026-{fee_job:06d}", "paid"),
                                 open_job: (f"INV-2026-{open_job:06d}", "hold")}

    held = payment(app, open_job)
    assert rows[open_job] == {**rows[open_job], "property": "Oak Row", "unit": "2B",
                              "payment_status": "held", "held_cents": held.held_cents,
                              "charged_cents": 0, "refunded_cents": 0,
                              "cancellation_fee_cents": 0}

    [total] = got["totals"]
    assert total == {"currency": "USD", "jobs": 3,
                     "held_cents": paid.held_cents + fee.held_cents + held.held_cents,
                     "charged_cents": paid.held_cents - 1000 + call_out,
                     "refunded_cents": 1000 + fee.held_cents - call_out,
                     "cancellation_fee_cents": call_out}
    # The ledger agrees: what the organization was charged left its funding for good.
    refunds = sql(app, "SELECT coalesce(sum(e.amount_cents), 0) FROM ledger_entries e "
                       "JOIN ledger_accounts a ON a.id = e.account_id "
                       "WHERE a.kind = 'refunds' AND a.organization_id IS NOT NULL")[0][0]
    assert refunds == total["refunded_cents"]

    # One property's statement.
    oak = org.statement("2026-11", property_id=org.oak)
    assert [r["job_id"] for r in oak["rows"]] == [open_job]
    assert oak["totals"][0]["held_cents"] == held.held_cents

    # The CSV: the same rows, amounts in dollars, a total row, formulas as text.
    r = client.get("/api/v1/statements.csv?month=2026-11", headers=org.pm)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert 'filename="statement-2026-11.csv"' in r.headers["Content-Disposition"]
    lines = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    by_job = {line["job_id"]: line for line in lines}
    assert by_job[str(done)]["unit"] == "'" + FORMULA_UNIT
    assert by_job[str(fee_job)]["cancellation_fee"] == f"{call_out // 100}.{call_out % 100:02d}"
    assert by_job[str(done)]["refunded"] == "10.00"
    last = lines[-1]
    assert last["job_id"] == "total" and last["category"] == "3 jobs"
    charged = total["charged_cents"]
    assert last["charged"] == f"{charged // 100}.{charged % 100:02d}"
    assert not any(cell.startswith(("=", "+", "@")) for line in lines for cell in line.values())

    r = client.get(f"/api/v1/statements.csv?month=2026-11&property_id={org.elm}",
                   headers=org.pm)
    assert f'statement-2026-11-property-{org.elm}.csv' in r.headers["Content-Disposition"]
    ids = [line["job_id"] for line in csv.DictReader(io.StringIO(r.get_data(as_text=True)))]
    assert ids == [str(done), str(fee_job), "total"]

    # Another month has none of it.
    assert org.statement("2026-10") == {**org.statement("2026-10"), "rows": [], "totals": []}


def test_amounts_belong_to_the_month_they_moved_in_the_service_time_zone(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock,
        settings: Any) -> None:
    """Held at 23:30 on 31 October in Los Angeles (07:30 UTC on 1 November) and given back
    an hour later, on 1 November there: the hold is October's, the refund November's."""
    manual_clock.now = datetime(2026, 10, 31, 23, 30, tzinfo=LA)
    org = Org(app, client, make)
    job_id = org.book(org.elm_unit)
    manual_clock.advance(hours=1)
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", json={},
                       headers=org.pm).status_code == 200
    held = payment(app, job_id).held_cents

    [october] = org.statement("2026-10")["rows"]
    assert (october["date"], october["held_cents"], october["refunded_cents"]) == (
        "2026-10-31", held, 0)
    [november] = org.statement("2026-11")["rows"]
    assert (november["date"], november["held_cents"], november["refunded_cents"],
            november["charged_cents"], november["payment_status"]) == (
        "2026-11-01", 0, held, 0, "voided")


def test_statements_are_for_the_organizations_own_managers(
        app: Flask, client: FlaskClient, make: Factory, settings: Any) -> None:
    org = Org(app, client, make)
    job_id = org.book(org.elm_unit)
    month = sql(app, "SELECT to_char(created_at AT TIME ZONE 'America/Los_Angeles', "
                     "'YYYY-MM') FROM job_payments WHERE job_id = :j", j=job_id)[0][0]
    assert [r["job_id"] for r in org.statement(month)["rows"]] == [job_id]

    other_pm, _ = manager_with_property(client, make)
    theirs = client.get(f"/api/v1/statements?month={month}", headers=other_pm)
    assert theirs.status_code == 200 and theirs.json["rows"] == []
    for path in ("/api/v1/statements", "/api/v1/statements.csv"):
        r = client.get(f"{path}?month={month}&property_id={org.elm}", headers=other_pm)
        assert r.status_code == 404 and r.json["error"]["fields"][0]["field"] == "property_id"
    _, resident = make.user(Role.RESIDENT)
    assert client.get("/api/v1/statements", headers=resident).status_code == 403
    assert client.get("/api/v1/statements.csv", headers=resident).status_code == 403
    assert client.get("/api/v1/statements").status_code == 401
    _, lone_pm = make.user(Role.PROPERTY_MANAGER)  # no organization yet
    assert client.get("/api/v1/statements", headers=lone_pm).status_code == 409


def test_bad_months_and_properties_are_refused_by_name(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    pm, _ = manager_with_property(client, make)
    for path in ("/api/v1/statements", "/api/v1/statements.csv"):
        for month in ("2026-13", "nov", "2026-1", "1999-12", "2026-11-01", ""):
            r = client.get(path, query_string={"month": month}, headers=pm)
            assert r.status_code == 422, (path, month)
            assert r.json["error"]["fields"][0]["field"] == "month"
        for prop in ("0", "x", "99999999999", "2147483647"):
            r = client.get(path, query_string={"month": "2026-11", "property_id": prop},
                           headers=pm)
            assert r.status_code in (404, 422), (path, prop)
            assert r.json["error"]["fields"][0]["field"] == "property_id"
        r = client.get(path, query_string={"month": "2026-11", "propety_id": "1"}, headers=pm)
        assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == "propety_id"
    assert client.get("/api/v1/statements?property_id=2147483647",
                      headers=pm).status_code == 404


def test_the_sla_report_shows_what_the_jobs_cost(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock,
        settings: Any) -> None:
    manual_clock.now = datetime(2026, 11, 15, 10, 0, tzinfo=LA)
    org = Org(app, client, make)
    done = confirmed(org, org.elm_unit)
    fee_job = cancelled_after_setting_out(org, org.elm_unit)
    org.book(org.oak_unit)  # held: nothing charged yet
    cost = payment(app, done).captured_cents + payment(app, fee_job).captured_cents
    r = client.get("/api/v1/reports/sla?month=2026-11", headers=org.pm)
    rows = {row["property"]: row for row in r.json["rows"]}
    assert rows["Elm Court"]["cost_total"] == round(cost / 100, 2)
    assert rows["Oak Row"]["cost_total"] is None  # blank while held
    r = client.get("/api/v1/reports/sla?month=2026-11&format=csv", headers=org.pm)
    lines = {line["property"]: line
             for line in csv.DictReader(io.StringIO(r.get_data(as_text=True)))}
    assert float(lines["Elm Court"]["cost_total"]) == round(cost / 100, 2)
    assert lines["Oak Row"]["cost_total"] == ""


def test_the_statements_page_is_for_managers(app: Flask, client: FlaskClient,
                                             make: Factory) -> None:
    resident_id, _ = make.user(Role.RESIDENT)
    page_login(app, client, resident_id)
    assert client.get("/statements").status_code == 403
    lone_id, _ = make.user(Role.PROPERTY_MANAGER)
    page_login(app, client, lone_id)
    r = client.get("/statements")  # no organization yet: make it first
    assert r.status_code == 302 and r.headers["Location"].endswith("/organization")
    pm_id, pm = make.user(Role.PROPERTY_MANAGER)
    assert client.post("/api/v1/org", json={"name": "Bay Homes"}, headers=pm).status_code == 201
    page_login(app, client, pm_id)
    r = client.get("/statements")
    assert r.status_code == 200 and b'id="statement-month"' in r.data
