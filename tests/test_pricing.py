"""Prices: the category's price list, the estimate before booking (defaults, or p25-p75 of
the area's completed jobs), the urgent surcharge, the worker's share, and the amounts the
job and the offer carry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect

from dispatch.db import clock, db
from dispatch.db.models import Category, Job, Role
from dispatch.domain.money import format_cents
from dispatch.services import pricing
from tests import test_browser
from tests.helpers import CENTER, Factory, book, job_body, offset, sql
from tests.live import LiveServer
from tests.test_browser import login, new_context, page_errors

browser = test_browser.browser  # the module's Chromium
_keys = count(1)
# Leak repair's price list (migration 0030) and time on site (0014): call-out $59, $80-$140
# an hour, one hour on site, +$40 when urgent, 15 % to the platform.
LEAK_SCHEDULED = (5900 + 8000, 5900 + 14000)
LEAK_URGENT = (LEAK_SCHEDULED[0] + 4000, LEAK_SCHEDULED[1] + 4000)


def completed_job(app: Flask, resident_id: int, category_id: int, amount: int | None,
                  lat: float = CENTER[0], lng: float = CENTER[1], days_ago: float = 5,
                  urgency: str = "urgent", status: str = "completed") -> None:
    """A finished job with its final amount, written as the completion form would leave it."""
    done = clock.now() - timedelta(days=days_ago)
    window = ("NULL, NULL, :done" if urgency == "urgent"
              else ":start, :done, :done")
    sql(app, f"""
INSERT INTO jobs (resident_id, category_id, description, location, urgency, status,
                  requested_at, window_start, window_end, arrive_by, arrived_at, completed_at,
                  final_amount_cents, idempotency_key, request_fingerprint)
VALUES (:resident, :category, 'Fixed the leak', ST_MakePoint(:lng, :lat)::geography, :urgency,
        :status, :start, {window}, :start, :done, :amount, :key, 'fp')""",
        resident=resident_id, category=category_id, lat=lat, lng=lng, urgency=urgency,
        status=status, start=done - timedelta(hours=2), done=done, amount=amount,
        key=f"history-{next(_keys)}")


def estimate(client: FlaskClient, headers: dict[str, str], **params: Any) -> Any:
    return client.get("/api/v1/estimate", query_string=params, headers=headers)


def test_the_category_list_shows_each_bookable_categorys_prices(
        client: FlaskClient, make: Factory) -> None:
    r = client.get("/api/v1/categories")
    assert r.status_code == 200
    home = next(c for c in r.json["categories"] if c["slug"] == "home-repair")
    assert home["prices"] is None  # a group is not booked, so not priced
    plumbing = next(c for c in home["children"] if c["slug"] == "plumbing")
    leak = next(c for c in plumbing["children"] if c["slug"] == "leak-repair")
    assert leak["prices"] == {"currency": "USD", "call_out_cents": 5900,
                              "hourly_low_cents": 8000, "hourly_high_cents": 14000,
                              "urgent_surcharge_cents": 4000, "platform_fee_percent": 15,
                              "typical_minutes": 60}
    pets = next(c for c in r.json["categories"] if c["slug"] == "pet-care")
    walk = next(c for c in pets["children"] if c["slug"] == "dog-walking")
    # Pet care is priced by the hour, without a call-out.
    assert walk["prices"]["call_out_cents"] == 0
    assert walk["prices"]["hourly_high_cents"] < leak["prices"]["hourly_low_cents"]


def test_defaults_stand_with_fewer_than_20_jobs(app: Flask, client: FlaskClient,
                                                make: Factory) -> None:
    resident_id, headers = make.user(Role.RESIDENT)
    leak = make.category("leak-repair")
    for i in range(pricing.HISTORY_MIN_JOBS - 1):
        completed_job(app, resident_id, leak, 50_000 + i, urgency="scheduled")
    r = estimate(client, headers, category_id=leak, urgency="scheduled", lat=CENTER[0],
                 lng=CENTER[1])
    assert r.status_code == 200, r.json
    assert r.json == {"low_cents": LEAK_SCHEDULED[0], "high_cents": LEAK_SCHEDULED[1],
                      "currency": "USD", "call_out_cents": 5900, "surcharge_cents": 0,
                      "basis": "default", "jobs_counted": 0, "cancel_fee_cents": 5900}
    # Without a place there is no area to look at: the price list.
    bare = estimate(client, headers, category_id=leak, urgency="scheduled")
    assert bare.status_code == 200 and bare.json["basis"] == "default"


def test_history_is_p25_to_p75_of_the_areas_recent_completed_jobs(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    resident_id, headers = make.user(Role.RESIDENT)
    leak = make.category("leak-repair")
    near = offset(*CENTER, north_m=300, east_m=-200)  # the same ~4 km geohash cell
    # 21 final amounts $100..$300 (urgent ones carried the $40 surcharge on top):
    # p25 = $150, p75 = $250.
    for i in range(21):
        urgent = i % 2 == 0
        completed_job(app, resident_id, leak, 10_000 + 1000 * i + (4000 if urgent else 0),
                      lat=near[0], lng=near[1], urgency="urgent" if urgent else "scheduled",
                      status="closed" if i == 3 else "completed", days_ago=1 + i * 4)
    # None of these count: too old, elsewhere, another service, never finished.
    far = offset(*CENTER, north_m=12_000)
    for _ in range(5):
        completed_job(app, resident_id, leak, 900_000, days_ago=91)
        completed_job(app, resident_id, leak, 900_000, lat=far[0], lng=far[1])
        completed_job(app, resident_id, make.category("lockout"), 900_000)
        completed_job(app, resident_id, leak, 900_000, status="cancelled")
        completed_job(app, resident_id, leak, None)
    scheduled = estimate(client, headers, category_id=leak, urgency="scheduled", lat=CENTER[0],
                         lng=CENTER[1])
    assert scheduled.status_code == 200, scheduled.json
    assert scheduled.json == {"low_cents": 15_000, "high_cents": 25_000, "currency": "USD",
                              "call_out_cents": 5900, "surcharge_cents": 0,
                              "basis": "history", "jobs_counted": 21,
                              "cancel_fee_cents": 5900}
    urgent = estimate(client, headers, category_id=leak, urgency="urgent", lat=CENTER[0],
                      lng=CENTER[1])
    assert (urgent.json["low_cents"], urgent.json["high_cents"]) == (19_000, 29_000)
    assert urgent.json["surcharge_cents"] == 4000 and urgent.json["jobs_counted"] == 21
    # Far away, the same service has no history of its own.
    elsewhere = estimate(client, headers, category_id=leak, urgency="scheduled", lat=far[0],
                         lng=far[1])
    assert elsewhere.json["basis"] == "default"


def test_an_urgent_job_carries_the_surcharge(client: FlaskClient, make: Factory) -> None:
    _, headers = make.user(Role.RESIDENT)
    leak = make.category("leak-repair")
    urgent = estimate(client, headers, category_id=leak, urgency="urgent").json
    scheduled = estimate(client, headers, category_id=leak, urgency="scheduled").json
    assert (urgent["low_cents"], urgent["high_cents"]) == LEAK_URGENT
    assert urgent["surcharge_cents"] == 4000 and scheduled["surcharge_cents"] == 0
    # Dog walking: no call-out, $20-$35 an hour for 45 minutes, +$15 when urgent.
    walk = estimate(client, headers, category_id=make.category("dog-walking"),
                    urgency="urgent").json
    assert (walk["low_cents"], walk["high_cents"]) == (3000, 4100)


def test_the_worker_earns_the_estimate_less_the_platform_fee(app: Flask) -> None:
    with app.app_context():
        leak = db.session.query(Category).filter_by(slug="leak-repair").one()
        found = pricing.estimate(db.session, leak.id, "urgent", None, None)
        # 15 % of $179 is $26.85 and of $239 is $35.85.
        assert pricing.worker_earnings(found, leak) == (17_900 - 2685, 23_900 - 3585)
        walk = db.session.query(Category).filter_by(slug="dog-walking").one()
        # The fee rounds up: 20 % of 1001 cents is 200.2, so 201 go to the platform.
        assert pricing.worker_earnings((1001, 1001), walk) == (800, 800)


def test_a_job_booked_without_an_estimate_pays_by_the_price_list(app: Flask) -> None:
    """A manager's batch row stores no estimate: its offers go by the category's defaults."""
    with app.app_context():
        leak = db.session.query(Category).filter_by(slug="leak-repair").one()
        job = Job(category=leak, urgency="scheduled")
        assert pricing.job_earnings(job) == (13_900 - 2085, 19_900 - 2985)
        job.estimate_low_cents, job.estimate_high_cents = 10_000, 20_000
        assert pricing.job_earnings(job) == (8500, 17_000)
        db.session.expunge_all()


@pytest.mark.parametrize(("params", "field"), [
    ({"category_id": "abc", "urgency": "urgent"}, "category_id"),
    ({"category_id": "0", "urgency": "urgent"}, "category_id"),
    ({"category_id": "99999", "urgency": "urgent"}, "category_id"),
    ({"category_id": "GROUP", "urgency": "urgent"}, "category_id"),
    ({"category_id": "LEAK", "urgency": "soon"}, "urgency"),
    ({"category_id": "LEAK"}, "urgency"),
    ({"category_id": "LEAK", "urgency": "urgent", "lat": "91", "lng": "0"}, "lat"),
    ({"category_id": "LEAK", "urgency": "urgent", "lat": "37.7", "lng": "east"}, "lng"),
    ({"category_id": "LEAK", "urgency": "urgent", "lat": "37.7"}, "lng"),
    ({"category_id": "LEAK", "urgency": "urgent", "lng": "-122.4"}, "lat"),
    ({"category_id": "LEAK", "urgency": "urgent", "price": "1"}, "price"),
])
def test_bad_estimate_queries_are_refused_naming_the_field(
        client: FlaskClient, make: Factory, params: dict[str, str], field: str) -> None:
    _, headers = make.user(Role.RESIDENT)
    ids = {"LEAK": str(make.category("leak-repair")), "GROUP": str(make.category("plumbing"))}
    r = estimate(client, headers, **{k: ids.get(v, v) for k, v in params.items()})
    assert r.status_code == 422, r.json
    assert [f["field"] for f in r.json["error"]["fields"]] == [field]


def test_the_estimate_is_for_people_logged_in(client: FlaskClient, make: Factory) -> None:
    r = client.get("/api/v1/estimate", query_string={
        "category_id": make.category("leak-repair"), "urgency": "urgent"})
    assert r.status_code == 401


def test_the_job_keeps_its_estimate_and_the_offer_says_what_the_worker_earns(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    _, worker = make.worker(lat=offset(*CENTER, north_m=500)[0])
    _, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(make.category("leak-repair")))
    assert r.status_code == 201, r.json
    job_id = r.json["id"]
    assert (r.json["estimate_low_cents"], r.json["estimate_high_cents"]) == LEAK_URGENT
    assert r.json["currency"] == "USD"
    # Fixed at booking: a price list changed since does not move it.
    sql(app, "UPDATE categories SET hourly_high_cents = 30000 WHERE slug = 'leak-repair'")
    try:
        again = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
        assert (again["estimate_low_cents"], again["estimate_high_cents"]) == LEAK_URGENT
        offers = client.get("/api/v1/offers", headers=worker).json["offers"]
        assert [o["job"]["id"] for o in offers] == [job_id]
        assert (offers[0]["earn_low_cents"], offers[0]["earn_high_cents"]) == (
            17_900 - 2685, 23_900 - 3585)
        assert offers[0]["currency"] == "USD"
    finally:
        sql(app, "UPDATE categories SET hourly_high_cents = 14000 WHERE slug = 'leak-repair'")


def test_a_booked_window_keeps_the_areas_estimate_without_the_surcharge(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    resident_id, resident = make.user(Role.RESIDENT)
    leak = make.category("leak-repair")
    for i in range(21):
        completed_job(app, resident_id, leak, 10_000 + 1000 * i, urgency="scheduled")
    tomorrow = (datetime.now(UTC).astimezone(ZoneInfo("America/Los_Angeles")).date()
                + timedelta(days=1))
    r = book(client, resident, job_body(leak, window={
        "date": tomorrow.isoformat(), "start": "09:00", "end": "12:00"}))
    assert r.status_code == 201, r.json
    assert r.json["urgency"] == "scheduled"
    assert (r.json["estimate_low_cents"], r.json["estimate_high_cents"]) == (15_000, 25_000)


def test_money_is_formatted_in_its_currency() -> None:
    assert format_cents(1250, "USD") == "$12.50"
    assert format_cents(9500, "usd", whole=True) == "$95"
    assert format_cents(123456789, "EUR") == "€1,234,567.89"
    assert format_cents(-5, "CHF") == "-CHF 0.05"
    assert format_cents(1500, "JPY") == "¥1,500"


def test_the_book_page_shows_the_estimate_for_the_service_urgency_and_area(
        app: Flask, browser: Browser, live_server: LiveServer, make: Factory) -> None:
    resident_id, _ = make.user(Role.RESIDENT, email="prices@example.test")
    leak = make.category("leak-repair")
    for i in range(pricing.HISTORY_MIN_JOBS):
        completed_job(app, resident_id, leak, 10_000 + 1000 * i, urgency="scheduled")
    context = new_context(browser, live_server, at=CENTER)
    page = context.new_page()
    errors = page_errors(page)
    try:
        login(page, "prices@example.test")
        expect(page).to_have_url(f"{live_server.url}/book")
        page.select_option("#category", label="Dog walking")
        expect(page.locator("#estimate")).to_have_text(
            "Usually $30\u2013$41 (urgent +$15) · typical prices")
        page.select_option("#category", label="Leak repair")
        page.check("input[name=when][value=later]")
        expect(page.locator("#estimate")).to_have_text(
            "Usually $139\u2013$199 (call-out $59 included) · typical prices")
        # Pinned: the area has 20 leak repairs finished with $100..$290 (p25 $148, p75 $243).
        page.click("#locate")
        expect(page.locator("#estimate")).to_have_text(
            "Usually $148\u2013$243 (call-out $59 included) · from 20 jobs nearby")
        page.check("input[name=when][value=now]")
        expect(page.locator("#estimate")).to_have_text(
            "Usually $188\u2013$283 (call-out $59 included; urgent +$40) · from 20 jobs nearby")
        expect(page.locator("#cancel-rule")).to_have_text(
            "Free to cancel until a worker is assigned. Once the worker has set out, "
            "cancelling costs $59.")
        assert errors == [], errors
    finally:
        context.close()
