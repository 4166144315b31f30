"""A property manager sets up in a real browser, from nothing: the organization, a property,
units from a spreadsheet with one bad row, a contractor invited (who accepts on their Work
page), a batch sent twice (the second time caught as a duplicate) and its open jobs
cancelled in bulk."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, offset, sql
from tests.live import LiveServer
from tests.test_batches import run_queue
from tests.test_browser import browser, login, new_context, page_errors, shot

__all__ = ["browser"]  # the module's one Chromium, shared with these tests

UNITS = ("property,label,address,lat,lng,access_notes,tenant_name,tenant_phone\n"
         f"Elm Court,1A,1 Elm St Apt 1A,{CENTER[0]},{CENTER[1]},Lockbox 1234,Ann Lee,"
         "+14155550111\n"
         "Elm Court,1B,1 Elm St Apt 1B,97.5,-122.4194,,,\n"
         f"Elm Court,1C,1 Elm St Apt 1C,{CENTER[0]},{CENTER[1]},,,\n")
BATCH = ("property,unit,category,description,urgency,budget_cap\n"
         "Elm Court,1A,leak-repair,Water under the kitchen sink,urgent,\n"
         "Elm Court,1C,lockout,Tenant locked out,urgent,\n"
         "Elm Court,9Z,leak-repair,No such unit,urgent,\n")


def csv_file(name: str, text: str) -> dict[str, object]:
    return {"name": name, "mimeType": "text/csv", "buffer": text.encode()}


def test_manager_sets_up_from_nothing_to_a_cancelled_batch(
    browser: Browser, live_server: LiveServer, make: Factory
) -> None:
    near = offset(*CENTER, north_m=300)
    make.worker(lat=near[0], lng=near[1], skills=("leak-repair", "lockout"),
                email="pat@example.test", name="Pat Plumber")
    make.worker(lat=near[0], lng=near[1], skills=("leak-repair", "lockout"))
    make.user(Role.PROPERTY_MANAGER, email="manager@example.test")
    ctx = new_context(browser, live_server)
    worker_ctx = new_context(browser, live_server, phone=True)
    page = ctx.new_page()
    errors = page_errors(page)
    try:
        # A manager with no organization is led to create it, not shown an API path.
        login(page, "manager@example.test")
        expect(page).to_have_url(f"{live_server.url}/organization")
        expect(page.locator("h1")).to_have_text("Create your organization")
        page.click("#org-create button[type=submit]")
        expect(page.locator("#org-error")).to_contain_text("Company name")
        page.fill("#org-name", "Bay Homes")
        page.click("#org-create button[type=submit]")
        expect(page).to_have_url(f"{live_server.url}/properties")

        page.fill("#property-name", "Elm Court")
        page.fill("#property-address", "1 Elm St")
        page.click("#property-save")
        expect(page.locator("#properties tbody tr")).to_have_count(1)
        page.locator("#properties tbody button").click()  # edit it
        page.fill("#property-address", "1 Elm Street")
        page.click("#property-save")
        expect(page.locator("#properties tbody tr td").nth(1)).to_have_text("1 Elm Street")

        page.set_input_files("#import-file", csv_file("units.csv", UNITS))
        page.click("#import-form button[type=submit]")
        expect(page.locator("#import-result")).to_contain_text("2 units saved, 1 row refused")
        rejected = page.locator("#import-rejected tbody tr td")
        expect(rejected.nth(0)).to_have_text("3")
        expect(rejected.nth(1)).to_have_text("lat")
        expect(page.locator("#units tbody tr")).to_have_count(2)
        with page.expect_download() as download:
            page.click("#import a[download]")
        assert download.value.path().read_text().startswith("property,label,address,lat,lng")
        shot(page, "setup-properties")

        # The webhook address is checked, and the refusal is in words.
        page.goto("/organization")
        page.fill("#webhook-url", "https://nowhere.invalid/hook")
        page.click("#webhook button[type=submit]")
        expect(page.locator("#webhook-error")).to_have_text(
            "Address: Enter a web address on the public internet.")
        expect(page.locator("#secret-box")).to_be_hidden()
        # An address set elsewhere (here: straight in the database, which the test server
        # cannot resolve) gets a new secret from the page: shown once, never again.
        sql(make.app, "UPDATE organizations SET webhook_url = 'https://pms.example.test/h', "
                      "webhook_secret = 'old'")
        page.reload()
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#rotate")
        expect(page.locator("#secret-box")).to_be_visible()
        secret = page.locator("#secret").inner_text()
        assert sql(make.app, "SELECT webhook_secret FROM organizations")[0].webhook_secret \
            == secret and len(secret) == 64
        page.reload()
        expect(page.locator("#secret-box")).to_be_hidden()
        assert secret not in page.content()
        expect(page.locator("#webhook-state")).to_contain_text("make a new one")

        page.goto("/contractors")
        page.fill("#invite-contact", "Pat@Example.test")
        page.click("#invite-form button[type=submit]")
        expect(page.locator("#invitations tbody tr")).to_have_count(1)
        expect(page.locator("#invitations .answer")).to_have_text("Waiting for an answer")
        expect(page.locator("#no-contractors")).to_be_visible()

        worker = worker_ctx.new_page()
        worker_errors = page_errors(worker)
        login(worker, "pat@example.test")
        card = worker.locator("#invitations .invitation")
        expect(card).to_contain_text("Bay Homes invites you")
        shot(worker, "work-invitation")
        card.locator("button", has_text="Accept").click()
        expect(card).to_have_count(0)
        assert worker_errors == [], worker_errors

        page.reload()
        expect(page.locator("#invitations .answer")).to_have_text("Accepted by Pat Plumber")
        expect(page.locator("#contractors tbody tr")).to_contain_text("Pat Plumber")
        shot(page, "setup-contractors")

        page.goto("/batches")
        expect(page.locator("#categories")).to_contain_text("leak-repair")
        page.set_input_files("#batch-file", csv_file("repairs.csv", BATCH))
        page.click("#batch-form button[type=submit]")
        expect(page.locator("#batch-sent")).to_have_text(
            "Sent as batch 1: 2 repairs accepted, 1 row refused.")
        expect(page.locator("#batch-rejected tbody td").first).to_have_text("4")
        run_queue(make.app)
        expect(page.locator("#batch-1")).to_contain_text("Done", timeout=10_000)

        # The same file again (as if sent once from here and once by a script).
        page.set_input_files("#batch-file", csv_file("repairs.csv", BATCH))
        page.click("#batch-form button[type=submit]")
        expect(page.locator("#duplicate-text")).to_contain_text(
            "This file was already sent as batch 1.")
        shot(page, "setup-batch-duplicate")
        page.click("#keep-first")
        expect(page.locator("#batches tbody tr")).to_have_count(1)

        page.locator("#batch-1 button", has_text="Show").click()
        cancel = page.locator("#cancel-open")
        expect(cancel).to_have_text("Cancel 2 open jobs")
        page.once("dialog", lambda dialog: dialog.accept())
        cancel.click()
        expect(page.locator("#cancel-result")).to_have_text("2 jobs cancelled.")
        expect(page.locator("#detail-jobs .status.cancelled")).to_have_count(2)
        expect(cancel).to_be_hidden()
        shot(page, "setup-batches")
        assert sql(make.app, "SELECT count(*) AS n FROM batches")[0].n == 1
        # The refusals this test provoked are the browser's only complaints (no 5xx, no
        # script errors).
        unexpected = [e for e in errors if "responded with a status of 4" not in e]
        assert unexpected == [] and len(errors) == 3, errors
    finally:
        ctx.close()
        worker_ctx.close()


def test_set_up_pages_are_for_managers_only(browser: Browser, live_server: LiveServer,
                                            make: Factory) -> None:
    make.worker(email="wanda@example.test")
    ctx = new_context(browser, live_server)
    page: Page = ctx.new_page()
    try:
        login(page, "wanda@example.test")
        expect(page.locator("header")).not_to_contain_text("Set-up")
        for path in ("/organization", "/properties", "/contractors", "/batches"):
            assert page.goto(path).status == 403, path
    finally:
        ctx.close()
