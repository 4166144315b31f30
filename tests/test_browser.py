"""The pages in a real browser (Debian's Chromium driven by Playwright) against a real
server: a resident books, a worker on a phone gets the offer and accepts, the resident
watches the worker's marker move, and the job completes. Screenshots of every page go to
test-artifacts/screenshots (ignored by git)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, offset, sql
from tests.live import LiveServer

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery"  # the factories' password
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_context(browser: Browser, server: LiveServer, *, phone: bool = False,
                at: tuple[float, float] | None = None) -> BrowserContext:
    options: dict[str, Any] = {"base_url": server.url, "viewport": PHONE}
    if phone:
        options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
    if at is not None:
        options.update(permissions=["geolocation"],
                       geolocation={"latitude": at[0], "longitude": at[1], "accuracy": 10})
    return browser.new_context(**options)


def page_errors(page: Page) -> list[str]:
    """Console errors and uncaught exceptions, except map tiles (there is no internet)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: m.type == "error" and "tile" not in m.text.lower()
            and "ERR_" not in m.text and errors.append(f"{m.text} {m.location.get('url')}"))
    return errors


def login(page: Page, email: str) -> None:
    page.goto("/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def shot(page: Page, name: str) -> None:
    """Save a screenshot, and check the page fits its viewport's width (no sideways scroll)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{name} scrolls sideways ({width}px)"


def test_book_accept_track_complete(browser: Browser, live_server: LiveServer,
                                    make: Factory) -> None:
    home = CENTER
    start = offset(*CENTER, north_m=1200)
    worker_email = "worker@example.test"
    worker_id, _ = make.worker(lat=start[0], lng=start[1], skills=("leak-repair",),
                               email=worker_email)
    make.user(Role.RESIDENT, email="resident@example.test")
    from redis import Redis

    from tests.helpers import sql

    sql(make.app, "INSERT INTO pool_numbers (e164) VALUES ('+14155550901')")

    resident_ctx = new_context(browser, live_server, at=home)
    worker_ctx = new_context(browser, live_server, phone=True, at=start)
    resident, worker = resident_ctx.new_page(), worker_ctx.new_page()
    errors = page_errors(resident) + page_errors(worker)
    try:
        login(worker, worker_email)
        expect(worker).to_have_url(f"{live_server.url}/work")
        expect(worker.locator("#availability")).to_have_text("online")
        expect(worker.locator("#fix")).to_contain_text("Position sent")
        shot(worker, "work-online")

        login(resident, "resident@example.test")
        expect(resident).to_have_url(f"{live_server.url}/book")
        resident.select_option("#category", label="Leak repair")
        # The price before booking: the price list (no history here), surcharge included.
        expect(resident.locator("#estimate")).to_have_text(
            "Usually $179\u2013$239 (call-out $59 included; urgent +$40) · typical prices")
        expect(resident.locator("#cancel-rule")).to_have_text(
            "Free to cancel until a worker is assigned. Once the worker has set out, "
            "cancelling costs $59.")
        resident.fill("#description", "Water is pouring from under the sink")
        resident.fill("#address", "1 Market St, Apt 2")
        resident.click("#locate")
        expect(resident.locator("#where")).to_contain_text("Pin at")
        shot(resident, "book")
        resident.click("#submit")
        resident.wait_for_url("**/jobs/*")
        # One worker in reach: the job is offered, but not promised until they accept.
        expect(resident.locator("#promise")).to_contain_text("we are asking them")
        expect(resident.locator("#status")).to_have_text("dispatching")
        shot(resident, "job-dispatching")

        offer = worker.locator(".offer")
        expect(offer).to_be_visible(timeout=10_000)
        expect(offer.locator(".title")).to_have_text("Leak repair")
        # The estimate fixed at booking less the platform's 15 %.
        expect(offer.locator(".earn")).to_have_text("You earn $152.15\u2013$203.15")
        expect(offer.locator(".countdown")).to_contain_text("s")
        shot(worker, "work-offer")
        offer.locator(".accept").click()
        expect(worker.locator("#active")).to_be_visible()
        expect(worker.locator("#active-detail")).to_contain_text("1 Market St, Apt 2")
        expect(resident.locator("#status")).to_have_text("assigned", timeout=10_000)
        expect(resident.locator("#promise")).to_contain_text("Someone by")  # now a promise
        expect(resident.locator("#masked-number")).to_have_text("+14155550901")
        expect(worker.locator("#masked-number")).to_have_text("+14155550901")
        worker.click("#moves button[data-status=en_route]")
        expect(worker.locator("#active-status")).to_have_text("en route")
        expect(resident.locator("#status")).to_have_text("en route", timeout=10_000)

        map_el = resident.locator("#map")
        redis = Redis.from_url(make.app.config["REDIS_URL"])
        for step, north in enumerate((1100, 1000, 900), start=1):
            # One fix a second (the page's rule; the server's is looser): wait until the
            # last fix the server kept, received after the page sent it, is a second old.
            kept_us = redis.hget(f"dispatch:fix:{worker_id}", "recv")  # tracking.fix_key
            assert kept_us is not None
            worker.wait_for_function("due => Date.now() >= due",
                                     arg=int(kept_us) / 1000 + 1000, polling=50)
            lat, lng = offset(*CENTER, north_m=north)
            worker_ctx.set_geolocation({"latitude": lat, "longitude": lng, "accuracy": 10})
            expect(map_el).to_have_attribute("data-worker-lat", str(lat), timeout=10_000)
            if step == 1:
                expect(resident.locator(".worker-dot")).to_be_visible()
        expect(resident.locator("#eta")).to_contain_text("ETA")
        shot(resident, "job-tracking")

        worker.click("#moves button[data-status=arrived]")
        expect(resident.locator("#status")).to_have_text("arrived", timeout=10_000)
        worker.click("#moves button[data-status=in_progress]")
        expect(worker.locator("#active-status")).to_have_text("in progress")
        worker.click("#moves button[data-status=completed]")
        # "Job done" opens the completion form: time on site (no parts), within the hold.
        worker.fill("#complete-minutes", "60")
        worker.click("#complete-submit")
        expect(worker.locator("#active")).to_be_hidden()
        expect(worker.locator("#availability")).to_have_text("online")
        expect(resident.locator("#status")).to_have_text("completed", timeout=10_000)
        expect(resident.locator("#promise")).to_contain_text("Done at")
        shot(worker, "work-done")
        shot(resident, "job-completed")
        # The resident confirms: the hold taken at booking pays the worker.
        resident.click("#confirm-done")
        expect(resident.locator("#status")).to_have_text("closed", timeout=10_000)
        expect(resident.locator("#paid")).to_be_visible()
        expect(resident.locator("#confirm-done")).to_be_hidden()

        resident.goto("/manage")
        expect(resident.locator("#jobs tbody tr")).to_have_count(1)
        expect(resident.locator("#jobs tbody .status")).to_have_text("closed")
        resident.select_option("#status-filter", "cancelled")
        expect(resident.locator("#empty")).to_be_visible()
        shot(resident, "manage")
        assert errors == [], errors
    finally:
        resident_ctx.close()
        worker_ctx.close()


def test_no_coverage_is_told_in_the_page(browser: Browser, live_server: LiveServer,
                                         make: Factory) -> None:
    make.user(Role.RESIDENT, email="alone@example.test")
    ctx = new_context(browser, live_server, at=CENTER)
    page = ctx.new_page()
    try:
        login(page, "alone@example.test")
        page.select_option("#category", label="Lockout")
        page.fill("#description", "Locked out of the flat")
        page.click("#locate")
        expect(page.locator("#where")).to_contain_text("Pin at")
        page.click("#submit")
        expect(page.locator("#no-coverage")).to_be_visible()
        expect(page.locator("#no-coverage-detail")).to_contain_text("Nothing was booked")
        shot(page, "book-no-coverage")
    finally:
        ctx.close()


def test_login_and_register_pages_fit_a_phone(browser: Browser,
                                              live_server: LiveServer) -> None:
    ctx = new_context(browser, live_server, phone=True)
    page = ctx.new_page()
    try:
        for path, name in (("/login", "login"), ("/register", "register")):
            page.goto(path)
            shot(page, name)
    finally:
        ctx.close()


def test_manager_uploads_a_batch_and_follows_it(browser: Browser, live_server: LiveServer,
                                                make: Factory, tmp_path: Path) -> None:
    from redis import Redis
    from rq import Queue, SimpleWorker

    from dispatch.infra.queues import ALL_QUEUES

    client = make.app.test_client()
    make.worker()
    make.worker()
    email = "manager@example.test"
    _, pm = make.user(Role.PROPERTY_MANAGER, email=email)
    client.post("/api/v1/org", json={"name": "Bay Homes"}, headers=pm)
    prop = client.post("/api/v1/properties", json={"name": "Elm Court"}, headers=pm).json
    for label in ("1A", "1B"):
        client.post("/api/v1/units", json={"property_id": prop["id"], "label": label,
                                           "address": f"1 Elm St {label}", "lat": CENTER[0],
                                           "lng": CENTER[1]}, headers=pm)
    upload = tmp_path / "repairs.csv"
    upload.write_text("property,unit,category,description,urgency,budget_cap\n"
                      "Elm Court,1A,leak-repair,Leak in the kitchen,urgent,\n"
                      "Elm Court,1B,lockout,Locked out,urgent,\n"
                      "Elm Court,7Q,leak-repair,No such unit,urgent,\n")
    ctx = new_context(browser, live_server)
    page = ctx.new_page()
    errors = page_errors(page)
    try:
        login(page, email)
        expect(page).to_have_url(f"{live_server.url}/manage")
        expect(page.locator("#property-filter option")).to_have_count(2)
        page.set_input_files("#batch-file", str(upload))
        page.click("#batch-form button[type=submit]")
        expect(page.locator("#batch-rejected tbody tr")).to_have_count(1)
        expect(page.locator("#batch-rejected tbody td").first).to_have_text("4")
        conn = Redis.from_url(make.app.config["REDIS_URL"])
        with make.app.app_context():  # the background worker of make run
            SimpleWorker([Queue(name, connection=conn) for name in ALL_QUEUES],
                         connection=conn).work(burst=True)
        expect(page.locator("#batch-status")).to_contain_text("done", timeout=10_000)
        expect(page.locator("#jobs tbody tr")).to_have_count(2)
        page.select_option("#property-filter", label="Elm Court")
        expect(page.locator("#jobs tbody tr")).to_have_count(2)
        expect(page.locator("#sla-table tbody tr")).to_have_count(1)
        shot(page, "manage-batch")
        assert errors == [], errors
    finally:
        ctx.close()


def test_worker_accepts_a_booked_window_and_sets_out_later(
    browser: Browser, live_server: LiveServer, make: Factory
) -> None:
    """A window offer says when, accepting it leaves the worker online, and the window
    waits under 'Next up' until they tap 'On my way'."""
    from tests.test_batches import run_queue

    client = make.app.test_client()
    email = "plumber@example.test"
    make.worker(email=email)
    _, pm = make.user(Role.PROPERTY_MANAGER)
    client.post("/api/v1/org", json={"name": "Bay Homes"}, headers=pm)
    prop = client.post("/api/v1/properties", json={"name": "Elm Court"}, headers=pm).json
    unit = client.post("/api/v1/units", json={"property_id": prop["id"], "label": "1A",
                                              "address": "1 Elm St 1A", "lat": CENTER[0],
                                              "lng": CENTER[1]}, headers=pm).json
    batch = client.post("/api/v1/batches", json={"batch_key": "tomorrow", "rows": [
        {"unit_id": unit["id"], "category": "leak-repair", "description": "Dripping tap",
         "urgency": "tomorrow 09:00-12:00"}]}, headers=pm)
    assert batch.status_code == 202 and batch.json["rejected"] == [], batch.json
    ctx = new_context(browser, live_server, phone=True, at=CENTER)
    page = ctx.new_page()
    errors = page_errors(page)
    try:
        login(page, email)
        expect(page.locator("#availability")).to_have_text("online")
        run_queue(make.app)
        offer = page.locator(".offer")
        expect(offer).to_be_visible(timeout=10_000)
        expect(offer.locator(".trip")).to_contain_text("Booked window")
        expect(offer.locator(".trip")).to_contain_text("\u2013")  # the window, start-end
        offer.locator(".accept").click()
        row = page.locator("#upcoming tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Leak repair")
        expect(page.locator("#availability")).to_have_text("online")
        expect(page.locator("#active")).to_be_hidden()
        shot(page, "work-booked-window")
        # Tomorrow's window: too early to set out, and the row says from when.
        expect(row.locator(".set-out-later")).to_contain_text("You can set out from")
        expect(row.locator(".set-out")).to_have_count(0)
        sql(make.app, "UPDATE jobs SET window_start = now() + interval '10 minutes' "
                      "WHERE urgency = 'scheduled'")  # as if the morning had come
        page.reload()
        row.locator(".set-out").click()
        expect(page.locator("#availability")).to_have_text("busy")
        expect(page.locator("#active")).to_be_visible()
        expect(page.locator("#active-detail")).to_contain_text("due")
        expect(page.locator("#upcoming-box")).to_be_hidden()
        assert errors == [], errors
    finally:
        ctx.close()


def test_worker_takes_a_next_job_while_busy_and_it_starts_when_the_first_ends(
    browser: Browser, live_server: LiveServer, make: Factory
) -> None:
    """The busy worker's page shows the offer, the accepted job waits under 'Next up', and
    'Job done' on the current one brings it up as the current job; the resident's page
    says the worker comes after a job nearby, then that they are on the job."""
    from tests.helpers import book, job_body, sql

    client = make.app.test_client()
    email = "busy@example.test"
    worker_id, worker = make.worker(email=email, skills=("leak-repair", "drain-unclogging"))
    _, first = make.user(Role.RESIDENT)
    current = book(client, first, job_body(make.category("leak-repair"))).json["id"]
    offer = sql(make.app, "SELECT id FROM offers WHERE job_id = :j", j=current)[0].id
    assert client.post(f"/api/v1/offers/{offer}/accept", headers=worker).status_code == 200
    _, next_resident = make.user(Role.RESIDENT, email="next@example.test")

    worker_ctx = new_context(browser, live_server, phone=True, at=CENTER)
    resident_ctx = new_context(browser, live_server, at=offset(*CENTER, north_m=2000))
    page, resident = worker_ctx.new_page(), resident_ctx.new_page()
    errors = page_errors(page) + page_errors(resident)
    try:
        login(page, email)
        expect(page.locator("#availability")).to_have_text("busy")
        expect(page.locator("#active-title")).to_have_text("Leak repair")
        login(resident, "next@example.test")
        booked = book(client, next_resident, job_body(make.category("drain-unclogging"),
                                                      *offset(*CENTER, north_m=2000)))
        assert booked.status_code == 201 and booked.json["promised"] is False, booked.json
        job_id = booked.json["id"]

        card = page.locator(".offer")
        expect(card).to_be_visible(timeout=10_000)
        expect(card.locator(".trip")).to_contain_text("Next, after this job")
        card.locator(".accept").click()
        row = page.locator(f"#upcoming-{job_id}")
        expect(row).to_contain_text("Next, after this job")
        expect(row).to_contain_text("Drain unclogging")
        expect(page.locator("#active-title")).to_have_text("Leak repair")
        resident.goto(f"{live_server.url}/jobs/{job_id}")
        expect(resident.locator("#worker")).to_contain_text("finishing a job nearby")
        expect(resident.locator("#promise")).to_contain_text("an estimate")
        shot(page, "work-next-job")

        for label in ["On my way", "I have arrived", "Start work", "Job done"]:
            page.locator("#moves button", has_text=label).click()
        # "Job done" opens the completion form: the time on site, then send it.
        page.fill("#complete-minutes", "45")
        page.click("#complete-submit")
        expect(page.locator("#active-title")).to_have_text("Drain unclogging")
        expect(page.locator("#availability")).to_have_text("busy")
        expect(page.locator("#upcoming-box")).to_be_hidden()
        expect(resident.locator("#worker")).to_contain_text("is on the job")
        assert sql(make.app, "SELECT availability FROM workers WHERE user_id = :w",
                   w=worker_id)[0].availability == "busy"
        assert errors == [], errors
    finally:
        worker_ctx.close()
        resident_ctx.close()
