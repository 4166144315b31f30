"""The on-time (SLA) report per property and month, as JSON and CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import Factory, ManualClock, sql
from tests.test_portfolio import manager_with_property


def add_job(app: Flask, pm_id: int, unit_id: int, org_id: int, status: str,
            accept_min: float | None, arrive_min: float | None,
            budget_cents: int | None = None) -> None:
    """An urgent job requested 2026-11-10 10:00Z (promise: 12:00Z)."""
    sql(app, """
INSERT INTO jobs (resident_id, category_id, description, location, status, requested_at,
                  arrive_by, assigned_at, arrived_at, idempotency_key, request_fingerprint,
                  org_id, unit_id, budget_cap_cents)
VALUES (:pm, 3, 'x', 'SRID=4326;POINT(-122.41 37.77)', :status, '2026-11-10 10:00Z',
        '2026-11-10 12:00Z',
        '2026-11-10 10:00Z'::timestamptz + make_interval(secs => :acc * 60),
        '2026-11-10 10:00Z'::timestamptz + make_interval(secs => :arr * 60),
        md5(random()::text), 'x', :org, :unit, :budget)""",
        pm=pm_id, status=status, acc=accept_min, arr=arrive_min, org=org_id, unit=unit_id,
        budget=budget_cents)


def add_window_job(app: Flask, pm_id: int, unit_id: int, org_id: int,
                   arrived_at: str) -> None:
    """A job booked on the 10th for the window 2026-11-12 09:00-12:00Z."""
    sql(app, """
INSERT INTO jobs (resident_id, category_id, description, location, status, urgency,
                  requested_at, window_start, window_end, arrive_by, assigned_at, arrived_at,
                  idempotency_key, request_fingerprint, org_id, unit_id)
VALUES (:pm, 3, 'x', 'SRID=4326;POINT(-122.41 37.77)', 'completed', 'scheduled',
        '2026-11-10 10:00Z', '2026-11-12 09:00Z', '2026-11-12 12:00Z', '2026-11-12 12:00Z',
        '2026-11-10 10:01Z', :arrived, md5(random()::text), 'x', :org, :unit)""",
        pm=pm_id, arrived=arrived_at, org=org_id, unit=unit_id)


def manager_and_unit(client: FlaskClient,
                     make: Factory) -> tuple[dict[str, str], int, int, int]:
    """A manager's headers and ids, their organization's id and one unit's."""
    pm, prop_id = manager_with_property(client, make)
    pm_id = client.get("/api/v1/me", headers=pm).json["id"]
    org_id = client.get("/api/v1/org", headers=pm).json["id"]
    unit = client.post("/api/v1/units", json={"property_id": prop_id, "label": "1A",
                                              "address": "1 Elm St", "lat": 37.77,
                                              "lng": -122.41}, headers=pm).json["id"]
    return pm, pm_id, org_id, unit


def test_sla_report_per_property(app: Flask, client: FlaskClient, make: Factory) -> None:
    pm, pm_id, org_id, unit = manager_and_unit(client, make)
    add_job(app, pm_id, unit, org_id, "completed", 2, 40, 25000)     # on time
    add_job(app, pm_id, unit, org_id, "completed", 4, 100, 10050)    # on time
    add_job(app, pm_id, unit, org_id, "completed", 6, 150)    # late (promise 120 min)
    add_job(app, pm_id, unit, org_id, "unfilled", None, None)  # never served
    add_window_job(app, pm_id, unit, org_id, "2026-11-12 11:00Z")  # inside its window
    add_window_job(app, pm_id, unit, org_id, "2026-11-12 12:30Z")  # after it closed
    r = client.get("/api/v1/reports/sla?month=2026-11", headers=pm)
    assert r.status_code == 200
    [row] = r.json["rows"]
    assert (row["property"], row["jobs"], row["arrived"], row["on_time"], row["unfilled"]) == (
        "Elm Court", 6, 5, 3, 1)
    assert row["on_time_pct"] == 50.0
    # Arrival medians are over urgent jobs: a window booked two days ahead is no response.
    assert row["median_arrival_min"] == 100.0 and row["median_accept_min"] == 2.0
    assert row["budget_caps_total"] == 350.5
    assert client.get("/api/v1/reports/sla?month=2026-10", headers=pm).json["rows"] == []
    csv = client.get("/api/v1/reports/sla?month=2026-11&format=csv", headers=pm)
    assert csv.mimetype == "text/csv" and "attachment" in csv.headers["Content-Disposition"]
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("month,property,jobs") and lines[1].startswith(
        "2026-11,Elm Court,6,5,3,50.0,1,0,")
    assert lines[1].endswith(",100.0,350.5,3,0,")  # ..., late, open, cost_total (no payments)
    bad = client.get("/api/v1/reports/sla?month=November", headers=pm)
    assert bad.status_code == 400 and bad.json["error"]["fields"][0]["field"] == "month"
    other, _ = manager_with_property(client, make)
    assert client.get("/api/v1/reports/sla?month=2026-11", headers=other).json["rows"] == []




def test_a_property_named_like_a_formula_is_exported_as_text(app: Flask, client: FlaskClient,
                                                             make: Factory) -> None:
    """A spreadsheet runs a cell starting with =, +, - or @: the export keeps it text."""
    pm, pm_id, org_id, _ = manager_and_unit(client, make)
    for name in ('=HYPERLINK("http://evil.test","open")', "+1 Elm", "-Elm", "@Elm"):
        prop = client.post("/api/v1/properties", json={"name": name, "address": "2 Elm St"},
                           headers=pm)
        assert prop.status_code == 201, prop.json
        unit = client.post("/api/v1/units", json={"property_id": prop.json["id"], "label": "1",
                                                  "address": "2 Elm St", "lat": 37.77,
                                                  "lng": -122.41}, headers=pm).json["id"]
        add_job(app, pm_id, unit, org_id, "completed", 2, 40)
    export = client.get("/api/v1/reports/sla?month=2026-11&format=csv", headers=pm).text
    properties = [row[1] for row in csv.reader(io.StringIO(export))][1:]
    assert sorted(properties) == sorted(["'=HYPERLINK(\"http://evil.test\",\"open\")",
                                         "'+1 Elm", "'-Elm", "'@Elm"])


def test_the_rate_counts_overdue_jobs_as_late_shows_open_ones_and_lists_the_stuck(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock
) -> None:
    """A batch of 18: one arrived on time, five stuck looking for a worker past their
    promise, twelve still on the way with the promise ahead. Not 100 % over one job."""
    pm, pm_id, org_id, unit = manager_and_unit(client, make)
    manual_clock.now = datetime(2026, 11, 10, 13, 0, tzinfo=UTC)  # the 12:00Z promise passed
    add_job(app, pm_id, unit, org_id, "completed", 2, 40)  # on time
    for _ in range(5):
        add_job(app, pm_id, unit, org_id, "dispatching", None, None)  # nobody ever came
    for _ in range(12):
        sql(app, """
INSERT INTO jobs (resident_id, category_id, description, location, status, requested_at,
                  arrive_by, idempotency_key, request_fingerprint, org_id, unit_id, worker_id)
VALUES (:pm, 3, 'x', 'SRID=4326;POINT(-122.41 37.77)', 'assigned', '2026-11-10 12:30Z',
        '2026-11-10 14:30Z', md5(random()::text), 'x', :org, :unit, NULL)""",
            pm=pm_id, org=org_id, unit=unit)
    r = client.get("/api/v1/reports/sla?month=2026-11", headers=pm)
    assert r.status_code == 200, r.json
    [row] = r.json["rows"]
    assert (row["jobs"], row["on_time"], row["late"], row["open"]) == (18, 1, 5, 12)
    assert row["on_time_pct"] == round(100 / 6, 1)
    stuck = r.json["stuck"]
    assert len(stuck) == 5 and {s["status"] for s in stuck} == {"dispatching"}
    assert all("past its promised time" in s["reason"].lower() and s["time_zone"] for s in stuck)
    assert (stuck[0]["property"], stuck[0]["unit"]) == ("Elm Court", "1A")
