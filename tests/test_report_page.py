"""The manager's on-time report in a real browser: the rate says over how many due jobs,
open jobs are counted, and the stuck jobs are listed with why and when they were due, in
the place's zone, named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import Browser, expect

from dispatch.db.models import Role
from tests.helpers import Factory, sql
from tests.live import LiveServer
from tests.test_browser import browser, login, new_context, page_errors  # noqa: F401


def test_the_report_counts_due_and_open_jobs_and_lists_the_stuck_ones(
    browser: Browser, live_server: LiveServer, make: Factory  # noqa: F811
) -> None:
    client = make.app.test_client()
    email = "report@example.test"
    pm_id, pm = make.user(Role.PROPERTY_MANAGER, email=email)
    org_id = client.post("/api/v1/org", json={"name": "Bay Homes"}, headers=pm).json["id"]
    prop = client.post("/api/v1/properties", json={"name": "Elm Court"}, headers=pm).json
    unit = client.post("/api/v1/units", json={"property_id": prop["id"], "label": "1A",
                                              "address": "1 Elm St 1A", "lat": 37.77,
                                              "lng": -122.41}, headers=pm).json["id"]
    now = datetime.now(UTC).replace(microsecond=0)
    # Requested two minutes ago (this month in any zone, but for two minutes a month): one
    # arrived in time, one was due a minute ago and nobody came, one is still on its way.
    overdue_at = now - timedelta(minutes=1)
    for status, arrive_by, arrived_at in (("completed", now + timedelta(hours=2), now),
                                          ("dispatching", overdue_at, None),
                                          ("assigned", now + timedelta(hours=2), None)):
        sql(make.app, """
INSERT INTO jobs (resident_id, category_id, description, location, status, requested_at,
                  arrive_by, arrived_at, idempotency_key, request_fingerprint, org_id, unit_id)
VALUES (:pm, 3, 'x', 'SRID=4326;POINT(-122.41 37.77)', :status, :requested, :arrive_by,
        :arrived, md5(random()::text), 'x', :org, :unit)""",
            pm=pm_id, status=status, requested=now - timedelta(minutes=2),
            arrive_by=arrive_by, arrived=arrived_at, org=org_id, unit=unit)
    due = overdue_at.astimezone(ZoneInfo("America/Los_Angeles"))

    ctx = new_context(browser, live_server)
    page = ctx.new_page()
    errors = page_errors(page)
    try:
        login(page, email)
        page.goto("/manage")
        row = page.locator("#sla-table tbody tr")
        expect(row).to_have_count(1)
        expect(row.locator("td").nth(2)).to_have_text("50% (1 of 2 due)")
        expect(row.locator("td").nth(4)).to_have_text("1")  # late
        expect(row.locator("td").nth(5)).to_have_text("1")  # not yet due
        stuck = page.locator("#stuck-table tbody tr")
        expect(stuck).to_have_count(1)
        expect(stuck).to_contain_text("Elm Court 1A")
        expect(stuck).to_contain_text("Past its promised time")
        expect(stuck).to_contain_text(f"by {due:%H:%M} P")  # PST or PDT: the zone, named
        assert errors == [], errors
    finally:
        ctx.close()
