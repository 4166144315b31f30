"""Accounts in a real browser (Debian's Chromium) against the live server: a new worker is
told no offers will come until a skill is verified and sets up their profile; an operator
lands on the operations page; a resident books a window for later; the login page leads to
a password reset; a new person signs up with the texted code, and an account whose phone is
not confirmed is led to confirm it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from dispatch.db.models import Role
from tests.helpers import CENTER, CODE, Factory, sql
from tests.live import LiveServer
from tests.prism import LOG_DIR, PrismServer
from tests.test_browser import browser, login, new_context, page_errors, shot  # noqa: F401


@contextmanager
def opened(browser: Browser, server: LiveServer,  # noqa: F811
           **options: Any) -> Iterator[tuple[Page, list[str]]]:
    """A page in its own browser context, and the errors it logs."""
    context = new_context(browser, server, **options)
    page = context.new_page()
    try:
        yield page, page_errors(page)
    finally:
        context.close()


@pytest.fixture(scope="module")
def verify_server(app: Flask, prism_verify: PrismServer) -> Iterator[LiveServer]:
    """A live server whose Twilio Verify is Prism on Twilio's Verify spec."""
    server = LiveServer(app.config["SQLALCHEMY_DATABASE_URI"], app.config["REDIS_URL"],
                        LOG_DIR, env={"TWILIO_VERIFY_BASE_URL": prism_verify.url})
    yield server
    server.stop()


def test_a_new_person_signs_up_with_the_texted_code(
    browser: Browser, verify_server: LiveServer, app: Flask  # noqa: F811
) -> None:
    with opened(browser, verify_server, phone=True) as (page, errors):
        page.goto("/register")
        page.fill("#name", "Nia")
        page.fill("#email", "nia@example.test")
        page.fill("#phone", "+1 415 555 2671")
        page.fill("#password", "a long enough secret")
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{verify_server.url}/register/confirm")
        expect(page.locator("main")).to_contain_text("+14155552671")
        shot(page, "signup-code")
        page.fill("#code", CODE)
        page.click("button[type=submit]")
        expect(page.locator(".flash").first).to_contain_text("Welcome to dispatch")
        expect(page.locator("#confirm-phone")).to_have_count(0)
        assert sql(app, "SELECT phone_verified_at IS NOT NULL AS ok FROM users "
                        "WHERE email = 'nia@example.test'")[0].ok
        assert errors == []


def test_an_unconfirmed_phone_is_confirmed_from_the_profile(
    browser: Browser, verify_server: LiveServer, make: Factory  # noqa: F811
) -> None:
    make.user(phone_verified=False, email="unproven@example.test", phone="+14155550166")
    with opened(browser, verify_server, phone=True) as (page, errors):
        login(page, "unproven@example.test")
        page.goto("/book")
        page.click("#confirm-phone a")
        expect(page).to_have_url(f"{verify_server.url}/profile#phone-check")
        page.click("text=Send code")
        page.fill("#phone-code", CODE)
        shot(page, "profile-phone-code")
        page.click("text=Confirm phone")
        expect(page.locator("#phone-check")).to_contain_text("+14155550166 is confirmed")
        page.goto("/book")
        expect(page.locator("#confirm-phone")).to_have_count(0)
        assert errors == []


def test_a_worker_without_a_verified_skill_is_told_no_offers_will_come(
    browser: Browser, live_server: LiveServer, make: Factory  # noqa: F811
) -> None:
    make.worker(skills=(), availability="offline", email="new-worker@example.test")
    with opened(browser, live_server, phone=True, at=CENTER) as (page, errors):
        login(page, "new-worker@example.test")
        expect(page).to_have_url(f"{live_server.url}/work")
        warning = page.locator("#no-offers")
        expect(warning).to_be_visible()  # before going online
        expect(warning).to_contain_text("No offers will come until you add a skill")
        page.click("#toggle")
        expect(page.locator("#availability")).to_have_text("online")
        expect(warning).to_be_visible()  # and when going online
        shot(page, "work-no-skills")

        page.click("#no-offers a")
        expect(page).to_have_url(f"{live_server.url}/work/profile")
        expect(page.locator("#profile-warning")).to_contain_text("No offers will come")
        page.check("#skill-leak-repair")
        page.click("#save-skills")
        expect(page.locator("#skills-saved")).to_have_text("Saved.")
        state = page.locator("label:has(#skill-leak-repair) .skill-state")
        expect(state).to_have_text("waiting for an operator to verify")
        page.select_option("#travel_mode", "bike")
        page.fill("#service_radius_km", "5")
        page.click("#add-hours")
        row = page.locator("#hours .hours-row").last
        row.locator(".day").select_option("2")
        row.locator(".start").fill("08:30")
        row.locator(".end").fill("16:00")
        page.click("#save-travel")
        expect(page.locator("#travel-saved")).to_have_text("Saved.")
        expect(page.locator(".zone-name").first).not_to_be_empty()
        shot(page, "work-profile")
        stored = sql(make.app, "SELECT travel_mode, service_radius_m, weekly_hours FROM workers")
        assert tuple(stored[0]) == ("bike", 5000, [{"day": 2, "start": "08:30",
                                                     "end": "16:00"}])
        page.reload()
        expect(page.locator("#hours .hours-row .start")).to_have_value("08:30")

        page.goto("/work")
        expect(warning).to_contain_text("until an operator verifies one of your skills")
        assert not errors, errors


def test_a_worker_with_a_verified_skill_sees_no_warning(
    browser: Browser, live_server: LiveServer, make: Factory  # noqa: F811
) -> None:
    make.worker(email="ready@example.test", availability="offline")
    with opened(browser, live_server, phone=True, at=CENTER) as (page, errors):
        login(page, "ready@example.test")
        expect(page.locator("#availability")).to_have_text("offline")
        page.click("#toggle")
        expect(page.locator("#availability")).to_have_text("online")
        expect(page.locator("#no-offers")).to_be_hidden()
        assert not errors, errors


def test_an_operator_lands_on_the_operations_page(
    browser: Browser, live_server: LiveServer, make: Factory  # noqa: F811
) -> None:
    make.user(Role.ADMIN, email="admin@demo.dispatch.test")
    with opened(browser, live_server) as (page, errors):
        login(page, "admin@demo.dispatch.test")
        expect(page).to_have_url(f"{live_server.url}/admin")
        expect(page.locator("h1")).to_have_text("Operations")
        for words in ("Jobs dashboard", "Alerts", "Failed text messages", "API reference"):
            expect(page.get_by_role("link", name=words)).to_be_visible()
        shot(page, "admin-landing")
        assert not errors, errors


def test_a_resident_books_a_window_for_later(
    browser: Browser, live_server: LiveServer, make: Factory  # noqa: F811
) -> None:
    make.worker()
    make.user(Role.RESIDENT, email="later@example.test")
    with opened(browser, live_server, at=CENTER) as (page, errors):
        login(page, "later@example.test")
        page.select_option("#category", label="Leak repair")
        page.fill("#description", "The tap drips; any time tomorrow morning")
        page.click("#locate")
        expect(page.locator("#where")).to_contain_text("Pin at")
        page.check("input[name=when][value=later]")
        expect(page.locator("#later")).to_be_visible()
        expect(page.locator("#later .zone-name")).to_contain_text("Pacific")
        expect(page.locator("#submit")).to_have_text("Book this window")
        tomorrow = page.input_value("#window-date")  # the page's first offer
        # A day already gone is refused, in the form's words (no field codes).
        page.evaluate("""() => { const d = document.getElementById('window-date');
            d.value = new Date(Date.now() - 3 * 86400000).toISOString().slice(0, 10); }""")
        page.click("#submit")
        expect(page.locator("#form-error")).to_have_text("Day: This window is already over.")
        assert sql(make.app, "SELECT count(*) FROM jobs")[0][0] == 0
        shot(page, "book-later-refused")

        page.fill("#window-date", tomorrow)
        page.select_option("#window-slot", "08:00-12:00")
        page.click("#submit")
        page.wait_for_url("**/jobs/*")
        [job] = sql(make.app, "SELECT urgency, window_start, window_end FROM jobs")
        assert job.urgency == "scheduled"
        assert (job.window_end - job.window_start).total_seconds() == 4 * 3600
        # The refusal is a 422 the browser logs; nothing else may go wrong.
        assert not [e for e in errors if "422" not in e], errors


def test_the_login_page_leads_to_a_password_reset(
    browser: Browser, live_server: LiveServer, make: Factory  # noqa: F811
) -> None:
    make.user(Role.RESIDENT, email="forgetful@example.test")
    with opened(browser, live_server) as (page, errors):
        page.goto("/login")
        page.get_by_role("link", name="Forgot password?").click()
        expect(page).to_have_url(f"{live_server.url}/forgot-password")
        page.fill("#email", "forgetful@example.test")
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{live_server.url}/login")
        expect(page.locator(".flash")).to_contain_text("If an account uses that email")
        [event] = sql(make.app, "SELECT event FROM notifications")
        assert event.event == "password_reset"
        assert not errors, errors
