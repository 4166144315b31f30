"""Nothing internal reaches a page: Chromium walks the pages and their error states (bad
forms, refusals, pages for another role, unknown pages, a stale form) as each kind of user,
and fails if the visible text holds a developer's words: snake_case names, `/api/` paths,
pydantic's phrases, exception names, the framework's bare error pages."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Browser, Page, expect

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, offset
from tests.live import LiveServer
from tests.test_browser import browser, login, new_context, shot  # noqa: F401

INTERNAL = [
    re.compile(r"\b[a-z]+_[a-z_]+\b"),  # enum and field names: out_of_order, property_manager
    re.compile(r"/api/"),
    re.compile(r"String should|Input should|Value error|Field required|validation error"),
    re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b|Traceback"),
    re.compile(r"\bNot Found\b|\bForbidden\b|\bMethod Not Allowed\b|\bBad Request\b"),
    re.compile(r"\b(POST|GET|PUT|DELETE) /"),
]
# Words a person does type: the batch CSV's column headings, which the manager page lists.
TYPED_BY_PEOPLE = {"budget_cap"}


def internal_words(page: Page) -> list[str]:
    text = page.inner_text("body")
    found = [m.group(0) for pattern in INTERNAL for m in pattern.finditer(text)]
    return [word for word in found if word not in TYPED_BY_PEOPLE]


def assert_for_people(page: Page) -> None:
    assert page.locator("header .brand").count() == 1, f"{page.url}: no site layout"
    assert internal_words(page) == [], page.url


def assert_error_page(page: Page, sentence: str) -> None:
    expect(page.locator("#error-sentence")).to_contain_text(sentence)
    expect(page.locator("#error-back")).to_be_visible()
    assert_for_people(page)


def test_anonymous_pages_and_their_errors(browser: Browser,  # noqa: F811
                                          live_server: LiveServer) -> None:
    ctx = new_context(browser, live_server)
    page = ctx.new_page()
    try:
        for path in ("/", "/login", "/register"):
            page.goto(path)
            assert_for_people(page)
        page.goto("/no-such-page")
        assert_error_page(page, "There is no page at this address")

        page.goto("/register")
        page.fill("#name", "Ann")
        page.fill("#email", "ann@nowhere")
        page.fill("#phone", "12")
        page.fill("#password", "long enough password")
        page.click("button[type=submit]")
        expect(page.locator(".errors").first).to_be_visible()
        expect(page.locator("body")).to_contain_text("Enter an email address like")
        assert_for_people(page)

        page.goto("/login")
        page.fill("#email", "nobody@example.test")
        page.fill("#password", "wrong password")
        page.click("button[type=submit]")
        expect(page.locator("body")).to_contain_text("The email address or password is wrong.")
        assert_for_people(page)

        # A form left open past its session: the CSRF refusal is a page too.
        page.goto("/login")
        page.eval_on_selector("input[name=csrf_token]", "el => el.value = 'stale'")
        page.fill("#email", "nobody@example.test")
        page.fill("#password", "wrong password")
        page.click("button[type=submit]")
        assert_error_page(page, "reload the page and try again")
    finally:
        ctx.close()


def test_a_resident_meets_sentences(browser: Browser, live_server: LiveServer,  # noqa: F811
                                    make: Factory) -> None:
    make.user(Role.RESIDENT, email="words-resident@example.test")
    ctx = new_context(browser, live_server, at=CENTER)
    page = ctx.new_page()
    uncaught: list[str] = []  # refusals log failed loads by design; scripts must not throw
    page.on("pageerror", lambda exc: uncaught.append(str(exc)))
    try:
        login(page, "words-resident@example.test")
        expect(page).to_have_url(f"{live_server.url}/book")
        page.select_option("#category", label="Leak repair")
        page.fill("#description", "ab")
        page.click("#locate")
        expect(page.locator("#where")).to_contain_text("Pin at")
        page.click("#submit")
        expect(page.locator("#form-error")).to_have_text(
            "Describe the problem in at least 3 characters.")
        assert_for_people(page)

        page.goto("/work")
        assert_error_page(page, "This page is for workers. You are logged in as a resident.")
        page.click("#error-back")
        expect(page).to_have_url(f"{live_server.url}/book")
        page.goto("/jobs/999999")
        assert_error_page(page, "There is no page at this address")
        page.goto("/manage")
        assert_for_people(page)
        assert uncaught == [], uncaught
    finally:
        ctx.close()


def test_a_worker_meets_sentences(browser: Browser, live_server: LiveServer,  # noqa: F811
                                  make: Factory) -> None:
    start = offset(*CENTER, north_m=800)
    worker_id, _ = make.worker(lat=start[0], lng=start[1], email="words-worker@example.test")
    ctx = new_context(browser, live_server, phone=True, at=start)
    page = ctx.new_page()
    try:
        login(page, "words-worker@example.test")
        expect(page).to_have_url(f"{live_server.url}/work")
        expect(page.locator("#availability")).to_have_text("online")
        expect(page.locator("#fix")).to_contain_text("Position sent", timeout=10_000)
        assert_for_people(page)

        # The server already holds a newer fix (as when a delayed ping arrives late): the next
        # one is dropped, and the page says why in words, not by the reason's code.
        from redis import Redis

        redis = Redis.from_url(make.app.config["REDIS_URL"])
        fix = f"dispatch:fix:{worker_id}"  # tracking.fix_key
        later_us = int((time.time() + 3600) * 1_000_000)
        redis.hset(fix, mapping={"at": later_us, "recv": 0})
        moved = offset(*start, north_m=20)
        page.wait_for_function("due => Date.now() >= due", arg=time.time() * 1000 + 1100,
                               polling=50)
        ctx.set_geolocation({"latitude": moved[0], "longitude": moved[1], "accuracy": 10})
        expect(page.locator("#fix")).to_contain_text(
            "Position skipped: An older position arrived after a newer one", timeout=10_000)
        assert_for_people(page)

        page.goto("/book")
        assert_error_page(page, "This page is for residents or property managers. "
                                "You are logged in as a worker.")
        expect(page.locator("#error-back")).to_have_text("Back to your shift")
        shot(page, "error-wrong-role")  # and it fits a phone
    finally:
        ctx.close()


def test_a_manager_without_an_organization_is_told_what_to_do(
        browser: Browser, live_server: LiveServer, make: Factory) -> None:  # noqa: F811
    make.user(Role.PROPERTY_MANAGER, email="words-manager@example.test")
    ctx = new_context(browser, live_server)
    page = ctx.new_page()
    try:
        login(page, "words-manager@example.test")
        # Led to create the organization first, in words, wherever they start.
        expect(page).to_have_url(f"{live_server.url}/organization")
        expect(page.locator("h1")).to_have_text("Create your organization")
        assert_for_people(page)
        page.goto("/manage")
        expect(page).to_have_url(f"{live_server.url}/organization")
        page.goto("/work")
        assert_error_page(page, "This page is for workers. You are logged in as a "
                                "property manager.")
    finally:
        ctx.close()
