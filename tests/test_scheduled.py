"""Scheduled jobs: a property manager books arrival windows; the windows are chained onto
workers (OR-Tools), accepted ahead of time without making the worker busy, and occupy the
worker only once they set out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import IntegrityError

from dispatch.domain.windows import WindowError, parse_window
from tests.helpers import CENTER, Factory, book, job_body, offset, sql
from tests.test_batches import add_unit, run_queue
from tests.test_portfolio import manager_with_property

TZ = "America/Los_Angeles"
LA = ZoneInfo(TZ)
TWO_HOURS = timedelta(hours=2)


# --------------------------------------------------------------------------- window text


def test_windows_are_read_in_the_service_areas_time_zone() -> None:
    # 23:30 on Nov 26 in San Francisco is already Nov 27 in UTC: "tomorrow" is still Nov 27.
    now = datetime(2026, 11, 26, 23, 30, tzinfo=LA)
    w = parse_window("tomorrow 09:00-12:00", now, TZ, TWO_HOURS)
    assert (w.start, w.end) == (datetime(2026, 11, 27, 9, tzinfo=LA),
                                datetime(2026, 11, 27, 12, tzinfo=LA))
    w = parse_window(" 2026-12-01 13:00 - 17:30 ", now, TZ, TWO_HOURS)
    assert w.start.astimezone(UTC) == datetime(2026, 12, 1, 21, tzinfo=UTC)
    assert parse_window("Tomorrow 20:00-24:00", now, TZ, TWO_HOURS).end == datetime(
        2026, 11, 28, 0, tzinfo=LA)
    # A window already open is fine while enough of it is left.
    morning = datetime(2026, 11, 26, 9, 30, tzinfo=LA)
    assert parse_window("today 09:00-12:00", morning, TZ, TWO_HOURS).start.hour == 9


@pytest.mark.parametrize(("text", "problem"), [
    ("soon", "'urgent' or a window"),
    ("tomorrow 12:00-09:00", "at least 30 minutes"),
    ("tomorrow 09:00-09:15", "at least 30 minutes"),
    ("tomorrow 06:00-20:00", "at most 12 hours"),
    ("tomorrow 25:00-26:00", "not a time of day"),
    ("2026-02-30 09:00-12:00", "not a date"),
    ("today 08:00-10:00", "already over"),
    ("today 09:00-12:00", "too soon"),
    ("2027-06-01 09:00-12:00", "60 days ahead"),
])
def test_unusable_windows_are_refused_with_the_reason(text: str, problem: str) -> None:
    now = datetime(2026, 11, 26, 10, 30, tzinfo=LA)
    with pytest.raises(WindowError, match=problem):
        parse_window(text, now, TZ, TWO_HOURS)


# --------------------------------------------------------------------------- the flow


def _offers(app: Flask, batch_id: int) -> dict[int, Any]:
    return {r.unit_id: r for r in sql(
        app, "SELECT j.unit_id, j.id AS job_id, o.id AS offer_id, o.worker_id, o.eta_seconds, "
             "j.window_start, j.window_end, j.urgency FROM offers o JOIN jobs j "
             "ON j.id = o.job_id WHERE j.batch_id = :b", b=batch_id)}


def _availability(app: Flask, worker_id: int) -> str:
    return sql(app, "SELECT availability FROM workers WHERE user_id = :w",
               w=worker_id)[0].availability


def test_windows_chain_onto_one_worker_who_stays_free_until_setting_out(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    pm, prop_id = manager_with_property(client, make)
    units = [add_unit(client, pm, prop_id, label, east_m=300 * i)
             for i, label in enumerate(("1A", "1B", "1C"))]
    plumber, plumber_h = make.worker(lat=offset(*CENTER, north_m=800)[0], lng=CENTER[1])
    rows = [
        {"unit_id": units[0], "category": "leak-repair", "description": "Dripping tap",
         "urgency": "tomorrow 09:00-12:00"},
        {"unit_id": units[1], "category": "leak-repair", "description": "Running toilet",
         "urgency": "tomorrow 09:00-12:00"},
        {"unit_id": units[2], "category": "leak-repair", "description": "Slow drain",
         "urgency": "tomorrow 13:00-17:00"},
    ]
    r = client.post("/api/v1/batches", json={"batch_key": "windows", "rows": rows}, headers=pm)
    assert r.status_code == 202 and r.json["rejected"] == [], r.json
    run_queue(app)
    offers = _offers(app, r.json["id"])
    # One plumber, three windows: all three chained onto them, each planned inside its
    # window (two in the morning one after the other, with an hour's work in between).
    assert {o.worker_id for o in offers.values()} == {plumber}
    for o in offers.values():
        assert o.urgency == "scheduled"
        offered = sql(app, "SELECT created_at, expires_at FROM offers WHERE id = :o",
                      o=o.offer_id)[0]
        # No race for tomorrow's job: five minutes to answer, not thirty seconds.
        assert offered.expires_at - offered.created_at == timedelta(seconds=300)
        planned = offered.created_at + timedelta(seconds=o.eta_seconds)
        assert o.window_start <= planned <= o.window_end
    morning = sorted(o.eta_seconds for u, o in offers.items() if u != units[2])
    assert morning[1] - morning[0] >= 3600

    # Accepting windows leaves the plumber free for urgent work now.
    for o in offers.values():
        a = client.post(f"/api/v1/offers/{o.offer_id}/accept", headers=plumber_h)
        assert a.status_code == 200, a.json
        job = a.json["job"]
        assert job["status"] == "assigned" and job["window_end"] is not None
        at = {k: datetime.fromisoformat(job[k])
              for k in ("window_start", "estimated_arrival", "window_end")}
        assert at["window_start"] <= at["estimated_arrival"] <= at["window_end"]
    assert _availability(app, plumber) == "online"

    _, resident = make.user()
    urgent = book(client, resident, job_body(make.category("leak-repair")))
    assert urgent.status_code == 201, urgent.json
    urgent_offer = sql(app, "SELECT id FROM offers WHERE job_id = :j",
                       j=urgent.json["id"])[0].id
    assert client.post(f"/api/v1/offers/{urgent_offer}/accept",
                       headers=plumber_h).status_code == 200
    assert _availability(app, plumber) == "busy"

    # Busy on the urgent job: they cannot set out for a window until it is done.
    first = offers[units[0]].job_id
    refused = client.post(f"/api/v1/jobs/{first}/status", json={"status": "en_route"},
                          headers=plumber_h)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "worker_unavailable"
    for status in ("arrived", "in_progress", "completed"):
        assert client.post(f"/api/v1/jobs/{urgent.json['id']}/status",
                           json={"status": status}, headers=plumber_h).status_code == 200
    assert _availability(app, plumber) == "online"

    # Setting out for a window makes them busy (no urgent offers meanwhile) ...
    # (not hours ahead: the morning windows are brought forward as if the morning had come)
    sql(app, "UPDATE jobs SET window_start = now() + interval '10 minutes' WHERE id IN "
             "(:a, :b)", a=offers[units[0]].job_id, b=offers[units[1]].job_id)
    assert client.post(f"/api/v1/jobs/{first}/status", json={"status": "en_route"},
                       headers=plumber_h).status_code == 200
    assert _availability(app, plumber) == "busy"
    # ... and one window at a time: the next waits until this one is done.
    second = offers[units[1]].job_id
    assert client.post(f"/api/v1/jobs/{second}/status", json={"status": "en_route"},
                       headers=plumber_h).status_code == 409
    for status in ("arrived", "in_progress", "completed"):
        assert client.post(f"/api/v1/jobs/{first}/status", json={"status": status},
                           headers=plumber_h).status_code == 200
    assert _availability(app, plumber) == "online"

    # Cancelling a window they have not set out for does not free them from another job.
    assert client.post(f"/api/v1/jobs/{second}/status", json={"status": "en_route"},
                       headers=plumber_h).status_code == 200
    third = offers[units[2]].job_id
    assert client.post(f"/api/v1/jobs/{third}/cancel", json={}, headers=pm).status_code == 200
    assert _availability(app, plumber) == "busy"


def test_the_database_holds_one_occupying_job_per_worker(app: Flask, client: FlaskClient,
                                                         make: Factory) -> None:
    """Whatever the code does, the partial unique index refuses a second job under way."""
    worker, _ = make.worker()
    _, resident = make.user()
    ids = [book(client, resident, job_body(make.category("leak-repair"))).json["id"]
           for _ in range(2)]
    start = datetime.now(UTC) + timedelta(days=1)
    sql(app, "UPDATE jobs SET urgency = 'scheduled', window_start = :s, window_end = :e, "
             "arrive_by = :e, worker_id = :w, status = 'assigned' WHERE id = ANY(:ids)",
        s=start, e=start + timedelta(hours=3), w=worker, ids=ids)
    # Two accepted windows are fine; two under way are not.
    sql(app, "UPDATE jobs SET status = 'en_route' WHERE id = :j", j=ids[0])
    with pytest.raises(IntegrityError, match="ux_jobs_one_occupying_per_worker"):
        sql(app, "UPDATE jobs SET status = 'en_route' WHERE id = :j", j=ids[1])
    with pytest.raises(IntegrityError, match="ck_jobs_window"):
        sql(app, "UPDATE jobs SET window_end = window_start WHERE id = :j", j=ids[1])


def one_worker_and_boilers(app: Flask, client: FlaskClient, make: Factory, labels: list[str],
                           window: str) -> tuple[int, int, dict[str, str]]:
    """A batch of hour-long jobs, one per unit, all in `window`, and one worker to do them,
    processed: (the batch's id, the worker's id, their headers)."""
    pm, prop_id = manager_with_property(client, make)
    units = [add_unit(client, pm, prop_id, label) for label in labels]
    worker_id, worker_h = make.worker()
    rows = [{"unit_id": u, "category": "leak-repair", "description": "Replace the boiler",
             "urgency": window} for u in units]
    r = client.post("/api/v1/batches", json={"batch_key": window, "rows": rows}, headers=pm)
    assert r.status_code == 202, r.json
    run_queue(app)
    return r.json["id"], worker_id, worker_h


def test_a_window_nobody_can_fit_goes_to_the_cascade_and_cannot_be_double_booked(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    """Two hour-long jobs in the same 45-minute window and one worker: the plan gives the
    worker one; the other goes to the usual cascade, which may ask the same worker, but
    they cannot hold both windows: the accept says they clash."""
    batch_id, _, worker_h = one_worker_and_boilers(app, client, make, ["1A", "1B"],
                                                   "tomorrow 09:00-09:45")
    offers = sorted(_offers(app, batch_id).values(), key=lambda o: o.eta_seconds)
    assert len(offers) == 2
    first = client.post(f"/api/v1/offers/{offers[0].offer_id}/accept", headers=worker_h)
    assert first.status_code == 200, first.json
    clash = client.post(f"/api/v1/offers/{offers[1].offer_id}/accept", headers=worker_h)
    assert clash.status_code == 409 and clash.json["error"]["code"] == "window_clash"
    assert sql(app, "SELECT status FROM offers WHERE id = :o",
               o=offers[1].offer_id)[0].status == "pending"  # declining stays possible


def _accepted_window(app: Flask, client: FlaskClient, make: Factory) -> tuple[Any, int]:
    """Tomorrow's window, accepted by a plumber; (its offer row, the plumber's id)."""
    from tests.test_masking import with_pool

    with_pool(app, ["+14155550111"])
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "1A")
    plumber, plumber_h = make.worker()
    rows = [{"unit_id": unit, "category": "leak-repair", "description": "Dripping tap",
             "urgency": "tomorrow 09:00-12:00"}]
    r = client.post("/api/v1/batches", json={"batch_key": "masked", "rows": rows}, headers=pm)
    assert r.status_code == 202, r.json
    run_queue(app)
    [offer] = _offers(app, r.json["id"]).values()
    assert client.post(f"/api/v1/offers/{offer.offer_id}/accept",
                       headers=plumber_h).status_code == 200
    seen = client.get(f"/api/v1/jobs/{offer.job_id}", headers=pm).json
    assert seen["status"] == "assigned" and seen["masked_number"] is None
    return offer, plumber


def _open_number(app: Flask, job_id: int) -> str | None:
    rows = sql(app, "SELECT p.e164 FROM masked_sessions s JOIN pool_numbers p "
                    "ON p.id = s.pool_number_id WHERE s.job_id = :j "
                    "AND s.closed_at IS NULL", j=job_id)
    return rows[0].e164 if rows else None


def test_a_booked_windows_masked_number_opens_shortly_before_the_window(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: Any, settings: Any
) -> None:
    """Accepting tomorrow's window holds no pool number overnight: it opens
    MASKING_OPEN_BEFORE_MINUTES (120) before the window starts."""
    from dispatch.db import db
    from dispatch.services import contact

    offer, _ = _accepted_window(app, client, make)

    def number_after_sweep() -> str | None:
        with app.app_context():
            contact.sweep(db.session)
        return _open_number(app, offer.job_id)

    manual_clock.advance(seconds=30)  # past the sweeper's settling time
    assert number_after_sweep() is None
    manual_clock.now = offer.window_start - timedelta(minutes=121)
    assert number_after_sweep() is None
    manual_clock.now = offer.window_start - timedelta(minutes=119)
    assert number_after_sweep() == "+14155550111"


def test_setting_out_early_for_a_window_opens_its_masked_number_at_once(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: Any, settings: Any
) -> None:
    from dispatch.db import db
    from dispatch.db.models import User
    from dispatch.domain.states import JobStatus
    from dispatch.services.jobs import worker_update_status

    offer, plumber = _accepted_window(app, client, make)
    # Before the sweeper opens it (120 min ahead): from the earliest allowed set-out, the
    # window's start less a trip of start-up time only, less the 30 min margin.
    manual_clock.now = offer.window_start - timedelta(minutes=34)
    with app.app_context():
        worker = db.session.get(User, plumber)
        assert worker is not None
        worker_update_status(db.session, worker, offer.job_id, JobStatus.EN_ROUTE)
    assert _open_number(app, offer.job_id) == "+14155550111"  # no sweep needed
