"""A manager's Statements page in a real browser: the month's rows and totals, and the CSV
download links serving CSV."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask.testing import FlaskClient
from playwright.sync_api import Browser, Page, expect

from dispatch.db.models import Role
from tests.helpers import Factory, book
from tests.live import LiveServer
from tests.test_browser import browser, login, new_context, page_errors, shot

__all__ = ["browser"]  # the module's one Chromium


def test_the_statements_page_shows_the_month_and_serves_its_csv(
    browser: Browser, live_server: LiveServer, client: FlaskClient, make: Factory
) -> None:
    _, pm = make.user(Role.PROPERTY_MANAGER, email="money@example.test")
    assert client.post("/api/v1/org", json={"name": "Bay Homes"}, headers=pm).status_code == 201
    prop_id = client.post("/api/v1/properties", json={"name": "Elm Court"},
                          headers=pm).json["id"]
    unit_id = client.post("/api/v1/units", json={"property_id": prop_id, "label": "1A",
                                                 "address": "1 Elm St", "lat": 37.7749,
                                                 "lng": -122.4194}, headers=pm).json["id"]
    make.worker()
    job = book(client, pm, {"category_id": make.category("leak-repair"),
                            "description": "Leak", "unit_id": unit_id})
    assert job.status_code == 201, job.json
    job_id = job.json["id"]
    month = datetime.now(ZoneInfo("America/Los_Angeles")).strftime("%Y-%m")

    ctx = new_context(browser, live_server)
    page: Page = ctx.new_page()
    errors = page_errors(page)
    try:
        login(page, "money@example.test")
        page.goto("/statements")
        expect(page.locator("nav.tabs a[aria-current=page]")).to_have_text("Statements")
        expect(page.locator("#statement-month")).to_have_value(month)
        row = page.locator(f"#statement-job-{job_id}")
        expect(row).to_contain_text("Elm Court 1A")
        expect(row).to_contain_text("held")
        expect(row.locator("td").nth(1)).to_have_text(f"INV-{month[:4]}-{job_id:06d}")
        expect(row.locator("td").nth(2)).to_have_text("hold")  # the invoice, money held
        expect(row.locator("td").nth(7)).to_contain_text("$")  # held
        expect(page.locator("#statement tfoot tr")).to_contain_text("1 job")
        shot(page, "statements")

        links = page.locator("a.statement-csv")
        expect(links).to_have_count(2)  # the organization's, and Elm Court's
        for i in range(2):
            href = links.nth(i).get_attribute("href")
            assert href is not None and f"month={month}" in href
            got = page.request.get(href)
            assert got.status == 200 and got.headers["content-type"].startswith("text/csv")
            lines = got.text().splitlines()
            assert lines[0].startswith("job_id,invoice,invoice_status,date,property,unit")
            assert lines[1].startswith(f"{job_id},") and lines[-1].startswith("total,")
        assert f"property_id={prop_id}" in (links.nth(1).get_attribute("href") or "")

        # Another month: nothing moved.
        page.fill("#statement-month", "2001-01")
        page.dispatch_event("#statement-month", "change")
        expect(page.locator("#statement-empty")).to_be_visible()
        expect(page.locator("#statement tbody tr")).to_have_count(0)
        assert "month=2001-01" in (links.nth(0).get_attribute("href") or "")
        assert errors == []
    finally:
        ctx.close()
