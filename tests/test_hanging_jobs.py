"""Jobs that must not hang on a worker who will not come: the no-show sweep, "I can't make
it" and "give this job back", an urgent accept that would miss a booked window, and operator
alerts raised once and resolved. Real PostGIS, Redis and the real sweeper steps; time is a
ManualClock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect

from dispatch.db import clock, db
from dispatch.db.models import Role
from dispatch.domain.commands import CANT_MAKE_IT_LABELS, CantMakeItReason
from dispatch.entrypoints.sweeper import sweep_once
from dispatch.services import alerts, contact, dispatching, hand_back
from tests.helpers import CENTER, Factory, ManualClock, book, job_body, offset, set_settings, sql
from tests.live import LiveServer
from tests.test_browser import browser, login, new_context, page_errors  # noqa: F401
from tests.test_masking import POOL, with_pool
from tests.test_queued_jobs import accept, availability, offer_of, post_status
from tests.test_races import race

NEARBY = offset(*CENTER, north_m=300)


@pytest.fixture
def drain_minutes(app: Flask) -> Iterator[Callable[[int], None]]:
    """Set how long unclogging a drain usually takes; the catalogue (not truncated between
    tests) gets its own figure back afterwards."""
    before = sql(app, "SELECT typical_minutes FROM categories "
                      "WHERE slug = 'drain-unclogging'")[0].typical_minutes

    def set_minutes(minutes: int) -> None:
        sql(app, "UPDATE categories SET typical_minutes = :m WHERE slug = 'drain-unclogging'",
            m=minutes)

    yield set_minutes
    set_minutes(before)


def accepted_job(app: Flask, client: FlaskClient, make: Factory,
                 ) -> tuple[int, int, dict[str, str], dict[str, str]]:
    """An urgent job accepted by the only worker asked (a wave of one); (job, worker id,
    worker headers, resident headers)."""
    set_settings(app, offer_wave_size=1)
    with_pool(app, POOL)
    worker_id, worker = make.worker()
    _, resident = make.user(Role.RESIDENT)
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    assert accept(client, app, job_id, worker_id, worker).status_code == 200
    return job_id, worker_id, worker, resident


def pending_offers(app: Flask, job_id: int) -> list[int]:
    return [r.worker_id for r in sql(app, "SELECT worker_id FROM offers WHERE job_id = :j "
                                          "AND status = 'pending'", j=job_id)]


def events(app: Flask, job_id: int, kind: str) -> list[Any]:
    return sql(app, "SELECT actor_user_id, detail FROM job_events WHERE job_id = :j "
                    "AND kind = :k ORDER BY id", j=job_id, k=kind)


def texts(app: Flask, job_id: int, event: str) -> list[int]:
    return [r.user_id for r in sql(app, "SELECT user_id FROM notifications WHERE job_id = :j "
                                        "AND event = :e", j=job_id, e=event)]


def open_alerts(app: Flask) -> list[tuple[str, int]]:
    return [(r.kind, r.job_id) for r in sql(
        app, "SELECT kind, job_id FROM operator_alerts WHERE resolved_at IS NULL ORDER BY id")]


def ping(app: Flask, worker_id: int, at: datetime) -> None:
    sql(app, "UPDATE workers SET location_at = :at WHERE user_id = :w", at=at, w=worker_id)


def sweep_no_shows(app: Flask) -> int:
    with app.app_context():
        return hand_back.sweep_no_shows(db.session)


def test_a_worker_who_never_comes_is_replaced_and_the_resident_told(
        app: Flask, client: FlaskClient, make: Factory, settings: Any,
        manual_clock: ManualClock) -> None:
    job_id, worker_id, worker, resident = accepted_job(app, client, make)
    eta = datetime.fromisoformat(client.get(f"/api/v1/jobs/{job_id}", headers=resident)
                                 .json["estimated_arrival"])
    grace = timedelta(minutes=app.config["DISPATCH"].no_show_grace_minutes)
    # Late and silent, but still within the grace: the job stays theirs.
    manual_clock.now = eta + grace - timedelta(minutes=1)
    assert sweep_no_shows(app) == 0
    # Past the grace, but the phone says where they are: they are coming, late.
    manual_clock.now = eta + grace + timedelta(minutes=1)
    ping(app, worker_id, manual_clock.now - timedelta(minutes=1))
    assert sweep_no_shows(app) == 0
    # The phone goes quiet too: a no-show. Another plumber nearby gets the job.
    manual_clock.advance(minutes=10)
    other_id, other = make.worker(lat=NEARBY[0], lng=NEARBY[1])
    with app.app_context():
        assert sweep_once(db.session) >= 1
        db.session.remove()
    seen = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
    assert (seen["status"], seen["worker"]) == ("dispatching", None)
    assert pending_offers(app, job_id) == [other_id]
    assert availability(app, worker_id) == "online"  # freed, no longer stuck busy
    [no_show] = events(app, job_id, "no_show")
    assert no_show.actor_user_id == worker_id and no_show.detail["worker_id"] == worker_id
    assert client.get(f"/api/v1/jobs/{job_id}", headers=worker).status_code == 404
    assert texts(app, job_id, "replacing") != [] and texts(app, job_id, "no_show") == [
        worker_id]
    assert open_alerts(app) == [("no_show", job_id)]
    assert sweep_no_shows(app) == 0  # once
    # Another worker takes it: the alert's cause is gone.
    assert accept(client, app, job_id, other_id, other).status_code == 200
    with app.app_context():
        assert alerts.sweep(db.session) == 1
    assert open_alerts(app) == []


def test_a_worker_who_cannot_make_it_hands_the_job_to_another_at_once(
        app: Flask, client: FlaskClient, make: Factory, settings: Any) -> None:
    job_id, worker_id, worker, resident = accepted_job(app, client, make)
    other_id, other = make.worker(lat=NEARBY[0], lng=NEARBY[1])
    assert post_status(client, job_id, worker, "en_route").status_code == 200
    url = f"/api/v1/jobs/{job_id}/cant-make-it"
    missing = client.post(url, json={}, headers=worker)
    assert missing.status_code == 422
    assert [f["field"] for f in missing.json["error"]["fields"]] == ["reason"]
    unknown = client.post(url, json={"reason": "bored"}, headers=worker)
    assert unknown.status_code == 422
    unsaid = client.post(url, json={"reason": "other"}, headers=worker)
    assert unsaid.status_code == 422
    assert [f["field"] for f in unsaid.json["error"]["fields"]] == ["note"]
    # On the way, giving the job back is not the word for it.
    on_the_way = client.post(f"/api/v1/jobs/{job_id}/give-back", json={}, headers=worker)
    assert on_the_way.status_code == 409
    assert on_the_way.json["error"]["code"] == "already_set_out"
    assert client.post(url, json={"reason": "other"}, headers=resident).status_code == 403

    r = client.post(url, json={"reason": "vehicle_trouble", "note": "flat tyre"}, headers=worker)
    assert r.status_code == 200, r.json
    assert r.json == {"job_id": job_id, "status": "dispatching", "recorded": "cant_make_it"}
    assert pending_offers(app, job_id) == [other_id]
    assert availability(app, worker_id) == "online"
    [event] = events(app, job_id, "cant_make_it")
    assert event.actor_user_id == worker_id
    assert (event.detail["reason"], event.detail["note"]) == ("vehicle_trouble", "flat tyre")
    assert texts(app, job_id, "replacing") != []
    seen = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
    assert (seen["status"], seen["worker"]) == ("dispatching", None)
    # Not theirs any more; saying it again is a 404, not a second re-dispatch.
    assert client.post(url, json={"reason": "illness"}, headers=worker).status_code == 404

    # The next worker gives it back before setting out: re-dispatched again, never to
    # either of them (nobody else is near: the job keeps looking).
    assert accept(client, app, job_id, other_id, other).status_code == 200
    back = client.post(f"/api/v1/jobs/{job_id}/give-back", json={}, headers=other)
    assert back.status_code == 200, back.json
    assert back.json["recorded"] == "gave_back"
    assert availability(app, other_id) == "online"
    assert [e.actor_user_id for e in events(app, job_id, "gave_back")] == [other_id]
    assert pending_offers(app, job_id) == []
    assert client.get(f"/api/v1/jobs/{job_id}", headers=resident).json["status"] in (
        "dispatching", "unfilled")


def test_an_arrived_worker_cannot_hand_the_job_back(
        app: Flask, client: FlaskClient, make: Factory, settings: Any) -> None:
    job_id, _, worker, _ = accepted_job(app, client, make)
    assert post_status(client, job_id, worker, "arrived").status_code == 200
    for path, body in (("cant-make-it", {"reason": "illness"}), ("give-back", {})):
        r = client.post(f"/api/v1/jobs/{job_id}/{path}", json=body, headers=worker)
        assert r.status_code == 409, (path, r.json)


@pytest.fixture
def seven_am(app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock,
             ) -> tuple[int, int, dict[str, str], datetime]:
    """`booked_window`, and the clock at 07:00 on the window's day."""
    window_id, worker_id, worker, midnight = booked_window(app, client, make)
    manual_clock.now = midnight + timedelta(hours=7)
    return window_id, worker_id, worker, midnight


def test_an_urgent_job_that_would_make_the_worker_miss_a_booked_window_is_refused(
        app: Flask, client: FlaskClient, make: Factory, settings: Any,
        seven_am: tuple[int, int, dict[str, str], datetime],
        drain_minutes: Callable[[int], None]) -> None:
    _, worker_id, worker, _ = seven_am
    # The plumber, free and next door, is not even asked to take a six-hour job.
    long_job = drain_job(app, client, make, worker_id, drain_minutes, 360)
    assert sql(app, "SELECT worker_id FROM offers WHERE job_id = :j", j=long_job) == []
    # A 45-minute one leaves time for the window: offered. Should it be known to take six
    # hours before they answer, the accept is refused, and they stay free.
    short_job = drain_job(app, client, make, worker_id, drain_minutes, 45)
    assert pending_offers(app, short_job) == [worker_id]
    drain_minutes(360)
    refused = accept(client, app, short_job, worker_id, worker)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "window_clash"
    assert availability(app, worker_id) == "online"
    drain_minutes(45)
    assert accept(client, app, short_job, worker_id, worker).status_code == 200


def drain_job(app: Flask, client: FlaskClient, make: Factory, worker_id: int,
              drain_minutes: Callable[[int], None], minutes: int) -> int:
    """A drain job (usually `minutes` long) booked next to the plumber, who pings now."""
    ping(app, worker_id, clock.now())
    drain_minutes(minutes)
    _, resident = make.user(Role.RESIDENT)
    return book(client, resident, job_body(make.category("drain-unclogging"), *NEARBY)
                ).json["id"]


def booked_window(app: Flask, client: FlaskClient, make: Factory,
                  ) -> tuple[int, int, dict[str, str], datetime]:
    """Tomorrow 09:00-12:00 (service time) booked by a resident and accepted by a plumber
    who also clears drains; (job, plumber id, plumber headers, tomorrow 00:00 there)."""
    zone = ZoneInfo("America/Los_Angeles")
    tomorrow = datetime.now(UTC).astimezone(zone).date() + timedelta(days=1)
    worker_id, worker = make.worker(skills=("leak-repair", "drain-unclogging"))
    _, tenant = make.user(Role.RESIDENT)
    window = book(client, tenant, job_body(make.category("leak-repair"), window={
        "date": tomorrow.isoformat(), "start": "09:00", "end": "12:00"}))
    assert window.status_code == 201, window.json
    assert accept(client, app, window.json["id"], worker_id, worker).status_code == 200
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone)
    return window.json["id"], worker_id, worker, midnight


def test_a_window_behind_an_urgent_job_that_ran_long_goes_to_someone_else_in_time(
        app: Flask, client: FlaskClient, make: Factory, settings: Any, manual_clock: ManualClock,
        seven_am: tuple[int, int, dict[str, str], datetime],
        drain_minutes: Callable[[int], None]) -> None:
    window_id, worker_id, worker, midnight = seven_am
    # At 07:00 the plumber takes a 45-minute drain job nearby: it fits before the window.
    drain = drain_job(app, client, make, worker_id, drain_minutes, 45)
    assert accept(client, app, drain, worker_id, worker).status_code == 200
    for status in ("arrived", "in_progress"):
        assert post_status(client, drain, worker, status).status_code == 200
    # It runs long. At 10:00 there is still time; at 11:45 there is not: someone else
    # who can get there by 12:00 is asked, and the plumber stays on the drain.
    other_id, _ = make.worker(lat=NEARBY[0], lng=NEARBY[1])
    manual_clock.now = midnight + timedelta(hours=10)
    ping(app, other_id, manual_clock.now)
    with app.app_context():
        assert dispatching.release_late_queued(db.session) == 0
    manual_clock.now = midnight + timedelta(hours=11, minutes=45)
    ping(app, other_id, manual_clock.now)
    with app.app_context():
        assert dispatching.release_late_queued(db.session) == 1
    assert pending_offers(app, window_id) == [other_id]
    assert sql(app, "SELECT status, worker_id FROM jobs WHERE id = :j", j=window_id)[0] == (
        "dispatching", None)
    assert availability(app, worker_id) == "busy"
    assert texts(app, window_id, "reassigning") != [] and texts(
        app, window_id, "released") == [worker_id]


def test_a_window_never_set_out_for_is_a_no_show_even_with_the_phone_on(
        app: Flask, client: FlaskClient, make: Factory, settings: Any,
        manual_clock: ManualClock) -> None:
    window_id, worker_id, _, midnight = booked_window(app, client, make)
    grace = timedelta(minutes=app.config["DISPATCH"].no_show_grace_minutes)
    manual_clock.now = midnight + timedelta(hours=12) + grace - timedelta(minutes=1)
    ping(app, worker_id, manual_clock.now)
    assert sweep_no_shows(app) == 0
    manual_clock.advance(minutes=2)
    ping(app, worker_id, manual_clock.now)
    assert sweep_no_shows(app) == 1
    assert [e.actor_user_id for e in events(app, window_id, "no_show")] == [worker_id]
    assert availability(app, worker_id) == "online"


def test_an_alert_is_raised_once_per_cause_and_resolved_when_it_goes(
        app: Flask, client: FlaskClient, make: Factory, settings: Any,
        manual_clock: ManualClock) -> None:
    from tests.test_masking import assigned

    with_pool(app, POOL[:1])
    admin_id, admin = make.user(Role.ADMIN)
    _, resident = make.user(Role.RESIDENT)
    first, *_ = assigned(app, client, make, resident)
    second, *_ = assigned(app, client, make, resident, north_m=500)

    def contact_sweep() -> None:
        with app.app_context():
            contact.sweep(db.session)
            alerts.sweep(db.session)

    # The pool stays empty: the sweeper retries every five minutes, the alert stays one.
    for _ in range(3):
        manual_clock.advance(minutes=6)
        contact_sweep()
    masking_events = events(app, second, "masking_unavailable")
    assert len(masking_events) == 4
    listed = client.get("/api/v1/admin/alerts", headers=admin).json["alerts"]
    assert [(a["kind"], a["job_id"]) for a in listed] == [("masking_unavailable", second)]
    # An operator deals with it by hand: who and when are kept; twice is a conflict.
    url = f"/api/v1/admin/alerts/{listed[0]['id']}/resolve"
    done = client.post(url, json={"note": "called the resident"}, headers=admin)
    assert done.status_code == 200, done.json
    assert (done.json["resolved_by"], done.json["resolution"]) == (admin_id,
                                                                   "called the resident")
    assert done.json["resolved_at"] is not None
    assert client.post(url, json={}, headers=admin).status_code == 409
    assert client.post("/api/v1/admin/alerts/999999/resolve", json={},
                       headers=admin).status_code == 404
    assert client.post(url, json={}, headers=resident).status_code == 403
    assert open_alerts(app) == []
    # Still no number at the next retry: raised again, once.
    manual_clock.advance(minutes=6)
    contact_sweep()
    contact_sweep()
    assert open_alerts(app) == [("masking_unavailable", second)]
    # The first job ends and gives its number back: the second gets it, the alert resolves.
    assert client.post(f"/api/v1/jobs/{first}/cancel", json={},
                       headers=resident).status_code == 200
    manual_clock.advance(minutes=app.config["DISPATCH"].masking_close_after_minutes + 1)
    contact_sweep()
    assert client.get(f"/api/v1/jobs/{second}", headers=resident).json["masked_number"] == (
        POOL[0])
    assert open_alerts(app) == []
    [auto] = sql(app, "SELECT resolved_by, resolution FROM operator_alerts "
                      "WHERE resolved_by IS NULL")
    assert auto.resolution == "a masked number is open"


def test_an_alert_of_a_job_that_ended_is_resolved(
        app: Flask, client: FlaskClient, make: Factory, settings: Any) -> None:
    from tests.test_masking import assigned

    with_pool(app, POOL[:1])
    _, resident = make.user(Role.RESIDENT)
    assigned(app, client, make, resident)
    second, *_ = assigned(app, client, make, resident, north_m=500)
    assert open_alerts(app) == [("masking_unavailable", second)]
    assert client.post(f"/api/v1/jobs/{second}/cancel", json={},
                       headers=resident).status_code == 200
    with app.app_context():
        assert alerts.sweep(db.session) == 1
    assert open_alerts(app) == []


def test_the_reasons_the_phone_offers_are_the_ones_the_api_takes() -> None:
    assert list(CANT_MAKE_IT_LABELS) == list(get_args(CantMakeItReason))


def test_the_phone_says_i_cant_make_it_with_a_reason(
        browser: Browser, live_server: LiveServer, make: Factory,  # noqa: F811
        settings: Any) -> None:
    """On the way to an urgent job, the worker taps "I can't make it", picks why and
    hands it back: the job card goes, they are free, and another plumber is asked."""
    app = make.app
    client = app.test_client()
    set_settings(app, offer_wave_size=1)
    worker_id, worker = make.worker(email="cant@example.test")
    _, resident = make.user(Role.RESIDENT)
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    assert accept(client, app, job_id, worker_id, worker).status_code == 200
    other_id, _ = make.worker(lat=NEARBY[0], lng=NEARBY[1])
    ctx = new_context(browser, live_server, phone=True, at=CENTER)
    page = ctx.new_page()
    errors = page_errors(page)
    try:
        login(page, "cant@example.test")
        expect(page.locator("#active")).to_be_visible()
        expect(page.locator("#give-back")).to_be_visible()  # not set out yet
        page.get_by_role("button", name="On my way").click()
        expect(page.locator("#active-status")).to_have_text("en route")
        expect(page.locator("#give-back")).to_be_hidden()  # set out: only "can't make it"
        page.locator("#cant-make-it").click()
        page.locator("#cant-reason").select_option("vehicle_trouble")
        page.locator("#cant-note").fill("flat tyre")
        page.get_by_role("button", name="Hand the job back").click()
        expect(page.locator("#active")).to_be_hidden()
        expect(page.locator("#work-error")).to_contain_text("went back to dispatch")
        expect(page.locator("#availability")).to_have_text("online")
        assert errors == [], errors
    finally:
        ctx.close()
    [event] = events(app, job_id, "cant_make_it")
    assert (event.detail["reason"], event.detail["note"]) == ("vehicle_trouble", "flat tyre")
    assert pending_offers(app, job_id) == [other_id]


def test_hand_backs_the_no_show_sweep_and_arriving_race_to_one_outcome(
        app: Flask, make: Factory, settings: Any, manual_clock: ManualClock) -> None:
    """The worker taps "I can't make it" three times, and "I have arrived", while the
    sweeper judges them a no-show: the job lock lets exactly one of these happen."""
    client = app.test_client()
    job_id, worker_id, worker, _ = accepted_job(app, client, make)
    make.worker(lat=NEARBY[0], lng=NEARBY[1])
    eta = sql(app, "SELECT estimated_arrival FROM jobs WHERE id = :j", j=job_id)[0][0]
    manual_clock.now = eta + timedelta(hours=1)  # late, and the phone long quiet
    other_id = sql(app, "SELECT user_id FROM workers WHERE user_id <> :w", w=worker_id)[0][0]
    ping(app, other_id, manual_clock.now)

    def tap(path: str, body: dict[str, Any]) -> Callable[[], int]:
        return lambda: app.test_client().post(f"/api/v1/jobs/{job_id}/{path}", json=body,
                                              headers=worker).status_code

    results = race([tap("cant-make-it", {"reason": "illness"}) for _ in range(3)]
                   + [tap("status", {"status": "arrived"}), lambda: sweep_no_shows(app)])
    assert not any(isinstance(r, Exception) for r in results), results
    *taps, arrived, swept = results
    handed = [e for kind in ("cant_make_it", "no_show") for e in events(app, job_id, kind)]
    status, holder = sql(app, "SELECT status, worker_id FROM jobs WHERE id = :j", j=job_id)[0]
    if arrived == 200:
        assert (status, holder, handed, swept) == ("arrived", worker_id, [], 0)
        assert set(taps) == {409}
    else:
        assert len(handed) == 1 and (status, holder) == ("dispatching", None)
        assert taps.count(200) + swept == 1 and arrived == 404
        assert pending_offers(app, job_id) == [other_id]
        assert availability(app, worker_id) == "online"


def test_the_resident_and_the_worker_see_the_hand_back_live(
        app: Flask, live_server: LiveServer, make: Factory) -> None:
    """The resident's open page hears the job went back to dispatch, as any job change;
    the worker's app hears it is no longer theirs."""
    import requests

    from tests.live import SocketClient

    def http(method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        return requests.request(method, f"{live_server.url}/api/v1{path}", headers=headers,
                                timeout=10, **kw)

    worker_id, worker = make.worker()
    _, resident = make.user(Role.RESIDENT)
    job_id = http("POST", "/jobs", {**resident, "Idempotency-Key": "live-1"},
                  json=job_body(make.category("leak-repair"))).json()["id"]
    assert http("POST", f"/offers/{offer_of(app, job_id, worker_id)}/accept",
                worker).status_code == 200
    worker_sock = SocketClient(live_server, worker["Authorization"].split()[1])
    resident_sock = SocketClient(live_server, resident["Authorization"].split()[1])
    try:
        assert resident_sock.call("watch_job", {"job_id": job_id})["ok"] is True
        assert http("POST", f"/jobs/{job_id}/cant-make-it", worker,
                    json={"reason": "illness"}).status_code == 200
        for sock in (resident_sock, worker_sock):
            seen = sock.wait_for("job_update", lambda j: j["id"] == job_id)
            assert (seen["status"], seen["worker"]) == ("dispatching", None)
    finally:
        worker_sock.close()
        resident_sock.close()
