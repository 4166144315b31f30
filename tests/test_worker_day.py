"""The worker's day as it is: no setting out at midnight for a 09:00 window (the tenant
would be texted "on the way" hours early), and "Today" is today where the jobs are, with
tomorrow's windows under tomorrow."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, ManualClock, book, job_body, offset, sql
from tests.live import LiveServer
from tests.test_batches import add_unit, run_queue
from tests.test_browser import browser, login, new_context, page_errors  # noqa: F401
from tests.test_portfolio import manager_with_property


def accepted_window(app: Flask, client: FlaskClient, make: Factory, *, worker_north_m: float,
                    email: str | None = None) -> tuple[Any, dict[str, str]]:
    """Tomorrow 09:00-12:00 at a unit on CENTER, accepted by a plumber `worker_north_m`
    north of it; (the job row, the plumber's headers)."""
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "1A")
    fields = {"email": email} if email else {}
    _, plumber_h = make.worker(lat=offset(*CENTER, north_m=worker_north_m)[0], **fields)
    r = client.post("/api/v1/batches", json={"batch_key": "tomorrow", "rows": [
        {"unit_id": unit, "category": "leak-repair", "description": "Dripping tap",
         "urgency": "tomorrow 09:00-12:00"}]}, headers=pm)
    assert r.status_code == 202 and r.json["rejected"] == [], r.json
    run_queue(app)
    offer = sql(app, "SELECT o.id, o.job_id, j.window_start FROM offers o JOIN jobs j "
                     "ON j.id = o.job_id WHERE j.batch_id = :b", b=r.json["id"])[0]
    accept = client.post(f"/api/v1/offers/{offer.id}/accept", headers=plumber_h)
    assert accept.status_code == 200, accept.json
    return offer, plumber_h


def test_setting_out_hours_before_a_window_is_refused_with_from_when_and_texts_nobody(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock, settings: Any
) -> None:
    offer, plumber_h = accepted_window(app, client, make, worker_north_m=5000,
                                       email="early@example.test")
    job = client.get(f"/api/v1/jobs/{offer.job_id}", headers=plumber_h).json
    # From 5 km by car (28 km/h, 1.3 circuity, 5 min start-up): about 19 min on the road,
    # and SET_OUT_MARGIN_MINUTES (30) before that.
    set_out_from = datetime.fromisoformat(job["set_out_from"])
    trip = offer.window_start - timedelta(minutes=30) - set_out_from
    assert timedelta(minutes=17) < trip < timedelta(minutes=21), trip
    texts_before = sql(app, "SELECT count(*) AS n FROM notifications")[0].n

    manual_clock.now = offer.window_start - timedelta(hours=9)  # midnight before a 09:00 window
    early = client.post(f"/api/v1/jobs/{offer.job_id}/status", json={"status": "en_route"},
                        headers=plumber_h)
    assert early.status_code == 409, early.json
    error = early.json["error"]
    assert error["code"] == "too_early_to_set_out"
    assert datetime.fromisoformat(error["set_out_from"]) == set_out_from
    local = set_out_from.astimezone(ZoneInfo("America/Los_Angeles"))
    assert f"set out from {local:%H:%M} P" in error["message"]  # PST or PDT, named
    assert error["fields"] == [{"field": "status", "kind": "status.too_early",
                               "problem": error["message"]}]
    assert sql(app, "SELECT count(*) AS n FROM notifications")[0].n == texts_before
    state = sql(app, "SELECT j.status, w.availability FROM jobs j JOIN workers w "
                     "ON w.user_id = j.worker_id WHERE j.id = :j", j=offer.job_id)[0]
    assert (state.status, state.availability) == ("assigned", "online")

    manual_clock.now = set_out_from  # (a day on: the factory's token has expired)
    fresh = client.post("/api/v1/auth/token", json={"email": "early@example.test",
                                                    "password": "correct horse battery"})
    assert fresh.status_code == 201, fresh.json
    on_time = client.post(f"/api/v1/jobs/{offer.job_id}/status", json={"status": "en_route"},
                          headers={"Authorization": f"Bearer {fresh.json['token']}"})
    assert on_time.status_code == 200, on_time.json
    assert on_time.json["set_out_from"] is None  # under way now


def test_today_is_todays_jobs_and_tomorrows_window_waits_under_its_day(
    browser: Browser, live_server: LiveServer, make: Factory  # noqa: F811
) -> None:
    """The worker did an urgent job today and holds a window booked today for tomorrow:
    'Today' lists only the first; the window is under tomorrow's date, and instead of an
    'On my way' that would fail, its row says from when they can set out."""
    app = make.app
    client = app.test_client()
    email = "day@example.test"
    offer, plumber_h = accepted_window(app, client, make, worker_north_m=0, email=email)
    _, resident = make.user(Role.RESIDENT)
    urgent_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    [urgent_offer] = client.get("/api/v1/offers", headers=plumber_h).json["offers"]
    assert urgent_offer["job"]["id"] == urgent_id
    taken = client.post(f"/api/v1/offers/{urgent_offer['id']}/accept", headers=plumber_h)
    assert taken.status_code == 200, taken.json
    for status in ("en_route", "arrived", "in_progress", "completed"):
        assert client.post(f"/api/v1/jobs/{urgent_id}/status", json={"status": status},
                           headers=plumber_h).status_code == 200
    tomorrow = offer.window_start.astimezone(ZoneInfo("America/Los_Angeles"))

    ctx = new_context(browser, live_server, phone=True, at=CENTER)
    page = ctx.new_page()
    errors = page_errors(page)
    try:
        login(page, email)
        today = page.locator("#today tbody tr")
        expect(today).to_have_count(1)
        expect(today).to_contain_text("completed")
        later = page.locator("#later-days")
        expect(later.locator("h2")).to_have_text(f"{tomorrow:%a, %b} {tomorrow.day}")
        expect(later.locator("tbody tr")).to_have_count(1)
        expect(later.locator("tbody tr")).to_contain_text("09:00\u201312:00 P")
        expect(later.locator("tbody tr")).to_contain_text("assigned")
        row = page.locator("#upcoming tbody tr")
        expect(row.locator(".set-out-later")).to_contain_text("You can set out from")
        expect(row.locator(".set-out-later")).to_contain_text(f"{tomorrow:%b} {tomorrow.day}")
        expect(row.locator(".set-out")).to_have_count(0)
        assert errors == [], errors
    finally:
        ctx.close()


def test_a_phone_that_does_not_move_still_asks_for_its_position(
        browser: Browser, live_server: LiveServer, make: Factory) -> None:  # noqa: F811
    """watchPosition says nothing while the phone lies still: the page asks the phone for a
    fresh fix (maximumAge 0) now and then, so a worker waiting at home stays matchable and is
    not shown as "last seen"; a moving phone is not asked (its watch reports)."""
    here = offset(*CENTER, north_m=300)
    make.worker(lat=here[0], lng=here[1], email="still@example.test")
    ctx = new_context(browser, live_server, phone=True, at=here)
    ctx.add_init_script("""(() => {
      const geo = navigator.geolocation, ask = geo.getCurrentPosition.bind(geo);
      window.freshFixesAsked = 0;
      geo.getCurrentPosition = (ok, fail, options) => {
        if (!options || options.maximumAge !== 0) return ask(ok, fail, options);
        window.freshFixesAsked++;
        return ask(ok, fail, options);
      };
    })()""")
    page = ctx.new_page()
    try:
        page.clock.install()
        login(page, "still@example.test")
        expect(page.locator("#fix")).to_contain_text("Position sent")
        assert page.evaluate("window.freshFixesAsked") == 0
        page.clock.run_for(30_000)  # the page's clock: no real wait
        assert page.evaluate("window.freshFixesAsked") == 0  # quiet for only 30 s
        page.clock.run_for(35_000)
        assert page.evaluate("window.freshFixesAsked") == 1
        # Under the page's fake clock the phone's answer never comes: one question stays
        # open, and the page does not pile more on it.
        page.clock.run_for(50_000)
        assert page.evaluate("window.freshFixesAsked") == 1
    finally:
        ctx.close()
