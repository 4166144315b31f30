"""The resident's pages tell the truth, in a real browser against the live server: an ended
job names no worker on the job and no number; a search whose offers ran out says it is
still looking; a reload draws the worker at once; a quiet worker is "last seen", not
counted down; a refusal says when someone could come or why nobody can say."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Browser, BrowserContext, Page, expect

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, book, job_body, offset, sql
from tests.live import LiveServer
from tests.test_browser import browser, login, new_context, page_errors, shot  # noqa: F401
from tests.test_queued_jobs import accept, busy_worker, post_status

ONE_KM_NORTH = offset(*CENTER, north_m=1000)
RESIDENT = "follower@example.test"
# The factories' zone (SERVICE_TIMEZONE's default): pages name it.
ZONE = r"(PST|PDT)"


@pytest.fixture
def resident_page(browser: Browser, live_server: LiveServer,  # noqa: F811
                  make: Factory) -> Iterator[tuple[Page, dict[str, str]]]:
    _, headers = make.user(Role.RESIDENT, email=RESIDENT)
    context: BrowserContext = new_context(browser, live_server, at=CENTER)
    page = context.new_page()
    errors = page_errors(page)
    try:
        login(page, RESIDENT)
        yield page, headers
        # A refusal is a 409 the page expects (Chromium logs every 4xx it loads).
        assert [e for e in errors if "status of 409" not in e] == [], errors
    finally:
        context.close()


def accepted_job(client: FlaskClient, make: Factory,
                 resident: dict[str, str]) -> tuple[int, int, dict[str, str]]:
    worker_id, worker = make.worker(lat=ONE_KM_NORTH[0], lng=ONE_KM_NORTH[1],
                                    name="Worker Forty")
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    assert accept(client, make.app, job_id, worker_id, worker).status_code == 200
    return job_id, worker_id, worker


def test_an_ended_job_names_no_worker_on_it_and_no_number(
        resident_page: tuple[Page, dict[str, str]], client: FlaskClient, make: Factory) -> None:
    page, resident = resident_page
    sql(make.app, "INSERT INTO pool_numbers (e164) VALUES ('+14155550902')")
    done, _, worker = accepted_job(client, make, resident)
    for status in ("en_route", "arrived", "in_progress", "completed"):
        assert post_status(client, done, worker, status).status_code == 200
    page.goto(f"/jobs/{done}")
    expect(page.locator("#promise")).to_contain_text("Done at")
    expect(page.locator("#worker")).to_have_text("Worker Forty (car) did this job.")
    expect(page.locator("#contact")).to_be_hidden()
    expect(page.locator(".worker-dot")).to_have_count(0)
    shot(page, "job-ended")

    called_off, _, _ = accepted_job(client, make, resident)
    assert client.post(f"/api/v1/jobs/{called_off}/cancel", json={},
                       headers=resident).status_code == 200
    page.goto(f"/jobs/{called_off}")
    expect(page.locator("#promise")).to_have_text("Cancelled.")
    expect(page.locator("#worker")).to_have_text("")
    expect(page.locator("#contact")).to_be_hidden()


def test_a_search_whose_offers_ran_out_says_it_is_still_looking(
        resident_page: tuple[Page, dict[str, str]], client: FlaskClient, make: Factory) -> None:
    page, resident = resident_page
    make.worker(lat=ONE_KM_NORTH[0], lng=ONE_KM_NORTH[1])
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    # The offer runs out while the page is open (nobody marks it expired: no RQ worker).
    sql(make.app, "UPDATE offers SET expires_at = now() + interval '6 seconds' "
                  "WHERE job_id = :j", j=job_id)
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#worker")).to_have_text("Asking 1 vetted worker nearby…")
    expect(page.locator("#promise")).to_contain_text("we are asking them")
    expect(page.locator("#promise")).to_contain_text("Still looking", timeout=20_000)
    expect(page.locator("#promise")).to_have_text(
        re.compile(rf"come online until \d\d:\d\d {ZONE}"))
    expect(page.locator("#worker")).to_have_text("")
    shot(page, "job-still-looking")


def test_a_reload_draws_the_worker_and_a_quiet_worker_is_last_seen(
        resident_page: tuple[Page, dict[str, str]], client: FlaskClient, make: Factory) -> None:
    page, resident = resident_page
    job_id, worker_id, worker = accepted_job(client, make, resident)
    assert post_status(client, job_id, worker, "en_route").status_code == 200
    page.goto(f"/jobs/{job_id}")
    # No ping since the page opened: the marker comes from the job's own answer.
    map_el = page.locator("#map")
    expect(page.locator(".worker-dot")).to_be_visible()
    expect(map_el).to_have_attribute("data-worker-lat", str(ONE_KM_NORTH[0]))
    expect(page.locator("#eta")).to_contain_text("ETA")
    expect(page.locator("#seen")).to_have_text("")

    # The worker's page closed six minutes ago: no live countdown, the time last seen.
    sql(make.app, "UPDATE workers SET location_at = now() - interval '6 minutes 10 seconds' "
                  "WHERE user_id = :w", w=worker_id)
    page.reload()
    expect(page.locator("#seen")).to_have_text(re.compile(
        rf"last seen \d\d:\d\d {ZONE}, 6 min ago"))
    expect(page.locator("#eta")).to_have_text("")
    expect(page.locator(".worker-dot")).to_be_visible()
    shot(page, "job-last-seen")


def refusal_detail(page: Page, slug_label: str) -> None:
    page.goto("/book")
    page.select_option("#category", label=slug_label)
    page.fill("#description", "Help needed")
    page.click("#locate")
    expect(page.locator("#where")).to_contain_text("Pin at")
    page.click("#submit")
    expect(page.locator("#no-coverage")).to_be_visible()


def test_a_refusal_says_when_someone_could_come_or_why_nobody_can(
        resident_page: tuple[Page, dict[str, str]], client: FlaskClient, make: Factory) -> None:
    page, _ = resident_page
    detail = page.locator("#no-coverage-detail")
    refusal_detail(page, "Lockout")
    expect(detail).to_have_text(
        "No vetted worker for this service covers this place. Nothing was booked.")

    make.worker(skills=("lockout",), availability="offline")
    refusal_detail(page, "Lockout")
    expect(detail).to_contain_text("offline or busy right now")

    # The only plumber is on a long job: the next one could be taken after it, too late.
    busy_worker(make.app, client, make)
    sql(make.app, "UPDATE categories SET typical_minutes = 110 WHERE slug = 'leak-repair'")
    try:
        refusal_detail(page, "Drain unclogging")
    finally:
        sql(make.app, "UPDATE categories SET typical_minutes = 60 WHERE slug = 'leak-repair'")
    expect(detail).to_have_text(re.compile(
        rf"The earliest anyone could arrive is about (\w+, \w+ \d+ )?\d\d:\d\d {ZONE}, "
        r"after a job they are finishing nearby: too uncertain to promise\. "
        r"Nothing was booked\."))

    # A free worker too far away: a plain time.
    far = offset(*CENTER, east_m=10_000)
    make.worker(skills=("lockout",), lat=far[0], lng=far[1], travel_mode="walk",
                radius_m=20_000)
    refusal_detail(page, "Lockout")
    expect(detail).to_have_text(re.compile(
        rf"^The earliest anyone could arrive is (\w+, \w+ \d+ )?\d\d:\d\d {ZONE}\. "
        r"Nothing was booked\.$"))
    shot(page, "book-earliest-time")
