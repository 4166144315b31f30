"""The Book page's address box in Chromium, against a live server whose geocoder is the demo
gazetteer: the pin fills the address, a picked suggestion moves the pin, and an address far
from the pin is asked about before anything is booked."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from dispatch.db.models import Role
from tests import test_browser
from tests.helpers import Factory, sql
from tests.live import LiveServer
from tests.test_browser import login, new_context, page_errors, shot

browser = test_browser.browser  # the module's Chromium, shared by these tests
CITY_HALL = (37.7793, -122.41925)
MISSION_LOFTS = (37.76325, -122.41945)


def pin_position(page: Page) -> tuple[float, float]:
    data = page.evaluate("({...document.getElementById('book-form').dataset})")
    return float(data["lat"]), float(data["lng"])


def start_booking(browser: Browser, server: LiveServer, make: Factory) -> Page:
    make.worker(lat=MISSION_LOFTS[0], lng=MISSION_LOFTS[1])
    make.user(Role.RESIDENT, email="resident@example.test")
    page = new_context(browser, server, at=MISSION_LOFTS).new_page()
    login(page, "resident@example.test")
    page.select_option("#category", label="Leak repair")
    page.fill("#description", "Water is pouring from under the sink")
    return page


def test_the_pin_fills_the_address_and_a_picked_address_moves_the_pin(
        browser: Browser, geocoded_server: LiveServer, make: Factory) -> None:
    page = start_booking(browser, geocoded_server, make)
    errors = page_errors(page)
    try:
        page.click("#locate")
        expect(page.locator("#address")).to_have_value(
            "Mission Lofts, 2100 Mission Street, Mission District, San Francisco, California, "
            "94110, United States")

        page.fill("#address", "")
        page.locator("#address").press_sequentially("city ha")
        suggestion = page.locator("#address-suggestions button",
                                  has_text="San Francisco City Hall")
        expect(suggestion).to_be_visible()
        shot(page, "book-address-suggestions")
        suggestion.click()
        expect(page.locator("#address-suggestions")).to_be_hidden()
        expect(page.locator("#where")).to_contain_text("Pin at 37.77930, -122.41925")
        assert pin_position(page) == pytest.approx(CITY_HALL)

        page.click("#submit")
        page.wait_for_url("**/jobs/*")
        job = sql(make.app, "SELECT address, ST_Y(location::geometry) AS lat, "
                            "ST_X(location::geometry) AS lng FROM jobs")
        assert len(job) == 1 and job[0].address.startswith("San Francisco City Hall")
        assert (job[0].lat, job[0].lng) == pytest.approx(CITY_HALL)
        assert errors == []
    finally:
        page.context.close()


def test_an_address_far_from_the_pin_is_asked_about_and_the_pin_confirmed(
        browser: Browser, geocoded_server: LiveServer, make: Factory) -> None:
    page = start_booking(browser, geocoded_server, make)
    errors = page_errors(page)
    try:
        page.fill("#address", "1 Market St, Apt 2")  # typed, not picked: the pin stays home
        page.click("#locate")
        expect(page.locator("#where")).to_contain_text("Pin at")
        page.click("#submit")
        check = page.locator("#address-check")
        expect(check).to_be_visible()
        expect(check).to_contain_text("km from the pin")
        expect(check).to_contain_text("Nothing was booked yet")
        expect(check.locator("#use-address")).to_be_visible()
        shot(page, "book-address-check")
        assert sql(make.app, "SELECT count(*) AS n FROM jobs")[0].n == 0
        page.click("#confirm-pin")
        page.wait_for_url("**/jobs/*")
        job = sql(make.app, "SELECT address, ST_Y(location::geometry) AS lat FROM jobs")
        assert job[0].address == "1 Market St, Apt 2"
        assert job[0].lat == pytest.approx(MISSION_LOFTS[0])
        # The browser logs the asked-about booking's 422 itself; nothing else may fail.
        assert [e for e in errors if "status of 422" not in e] == []
    finally:
        page.context.close()
