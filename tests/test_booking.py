"""Booking urgent help: the promise, idempotency, and the honest no."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, book, count, job_body, offset, set_settings, sql


def test_booking_opens_the_job_and_offers_the_best_workers(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    leak = make.category("leak-repair")
    workers = [make.worker(lat=offset(*CENTER, north_m=300 * (i + 1))[0])[0] for i in range(5)]
    _, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(leak, address="1 Market St"))
    assert r.status_code == 201, r.json
    job = r.json
    assert job["status"] == "dispatching"
    assert job["category"]["slug"] == "leak-repair"
    assert job["address"] == "1 Market St"
    requested = datetime.fromisoformat(job["requested_at"])
    assert datetime.fromisoformat(job["arrive_by"]) - requested == timedelta(hours=2)
    assert requested < datetime.fromisoformat(job["estimated_arrival"]) < requested + timedelta(
        hours=2)
    offers = sql(app, "SELECT worker_id, status, wave, rank FROM offers WHERE job_id = :j "
                      "ORDER BY rank", j=job["id"])
    assert [o.worker_id for o in offers] == workers[:3]  # nearest three cars, by ETA
    assert {o.status for o in offers} == {"pending"} and {o.wave for o in offers} == {1}
    kinds = [e.kind for e in sql(app, "SELECT kind FROM job_events WHERE job_id = :j "
                                      "ORDER BY id", j=job["id"])]
    assert kinds == ["requested", "status", "offers_sent"]
    assert job["promised"] is True  # five could make it: a promise


def test_thin_coverage_is_offered_but_promised_only_at_the_accept(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    """With only two workers in reach either may decline: the job is taken and offered,
    but the resident is told it is not a promise until one accepts."""
    leak = make.category("leak-repair")
    _, first = make.worker(lat=offset(*CENTER, north_m=300)[0])
    make.worker(lat=offset(*CENTER, north_m=600)[0])
    _, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(leak))
    assert r.status_code == 201 and r.json["promised"] is False, r.json
    assert sql(app, "SELECT count(*) AS n FROM offers WHERE job_id = :j",
               j=r.json["id"])[0].n == 2
    offer = sql(app, "SELECT o.id FROM offers o JOIN workers w ON w.user_id = o.worker_id "
                     "WHERE o.job_id = :j ORDER BY o.rank LIMIT 1", j=r.json["id"])[0].id
    assert client.post(f"/api/v1/offers/{offer}/accept", headers=first).status_code == 200
    job = client.get(f"/api/v1/jobs/{r.json['id']}", headers=resident).json
    assert job["promised"] is True and job["status"] == "assigned"
    assert datetime.fromisoformat(job["estimated_arrival"]) <= datetime.fromisoformat(
        job["arrive_by"])


def test_same_idempotency_key_returns_the_same_job(app: Flask, client: FlaskClient,
                                                  make: Factory) -> None:
    leak = make.category("leak-repair")
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    first = book(client, resident, job_body(leak), key="tap-1")
    again = book(client, resident, job_body(leak), key="tap-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json["id"] == first.json["id"]
    assert count(app, "jobs") == 1 and count(app, "offers") == 1


def test_a_retry_after_coverage_is_gone_still_returns_the_booked_job(
    app: Flask, client: FlaskClient, make: Factory, settings
) -> None:
    """The key is not looked up before matching, so a retry must not be refused as
    'no coverage' when its job was taken earlier and the only worker now holds it."""
    set_settings(app, queue_behind_busy=False)  # the busy worker is nobody's candidate
    leak = make.category("leak-repair")
    _, worker = make.worker()
    _, resident = make.user(Role.RESIDENT)
    first = book(client, resident, job_body(leak), key="tap-1")
    assert first.status_code == 201, first.json
    offer = sql(app, "SELECT id FROM offers WHERE job_id = :j", j=first.json["id"])[0].id
    assert client.post(f"/api/v1/offers/{offer}/accept", headers=worker).status_code == 200
    fresh = book(client, resident, job_body(leak))
    assert fresh.status_code == 409 and fresh.json["error"]["code"] == "no_coverage"
    again = book(client, resident, job_body(leak), key="tap-1")
    assert again.status_code == 200, again.json
    assert again.json["id"] == first.json["id"] and again.json["status"] == "assigned"
    other = book(client, resident, job_body(leak, description="Another leak"), key="tap-1")
    assert other.status_code == 422
    assert other.json["error"]["fields"][0]["field"] == "Idempotency-Key"
    assert count(app, "jobs") == 1


def test_idempotency_key_is_per_resident(app: Flask, client: FlaskClient, make: Factory) -> None:
    leak = make.category("leak-repair")
    make.worker()
    make.worker()
    _, alice = make.user(Role.RESIDENT)
    _, bob = make.user(Role.RESIDENT)
    a = book(client, alice, job_body(leak), key="same")
    b = book(client, bob, job_body(leak), key="same")
    assert a.status_code == b.status_code == 201 and a.json["id"] != b.json["id"]


def test_reusing_a_key_for_a_different_booking_is_refused(app: Flask, client: FlaskClient,
                                                         make: Factory) -> None:
    leak = make.category("leak-repair")
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    assert book(client, resident, job_body(leak), key="k").status_code == 201
    r = book(client, resident, job_body(leak, description="Something else entirely"), key="k")
    assert r.status_code == 422
    assert r.json["error"]["fields"][0]["field"] == "Idempotency-Key"
    assert count(app, "jobs") == 1


def test_no_coverage_says_so_at_once_and_stores_nothing(app: Flask, client: FlaskClient,
                                                        make: Factory) -> None:
    leak = make.category("leak-repair")
    far = offset(*CENTER, east_m=10_000)
    make.worker(lat=far[0], lng=far[1], travel_mode="walk", radius_m=20_000)
    _, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(leak))
    assert r.status_code == 409
    error = r.json["error"]
    assert error["code"] == "no_coverage"
    assert "2 hours" in error["message"]
    earliest = datetime.fromisoformat(error["earliest_arrival"])
    assert timedelta(hours=2) < earliest - _now() < timedelta(hours=4)
    assert count(app, "jobs") == 0 and count(app, "offers") == 0 and count(app, "job_events") == 0


def test_no_coverage_without_anyone_in_reach_has_no_earliest_time(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    leak = make.category("leak-repair")
    make.worker(skills=("dog-walking",))
    _, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(leak))
    assert r.status_code == 409
    assert r.json["error"]["earliest_arrival"] is None
    assert count(app, "jobs") == 0


def test_bad_bookings_name_the_field(app: Flask, client: FlaskClient, make: Factory) -> None:
    leak = make.category("leak-repair")
    plumbing = make.category("plumbing")
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    cases = [
        (job_body(leak, lat=91), 422, "lat"),
        (job_body(leak, lng=-181), 422, "lng"),
        ({**job_body(leak), "lat": "north"}, 422, "lat"),
        ({**job_body(leak), "lat": float("nan")}, 422, "lat"),
        (job_body(leak, description=""), 422, "description"),
        (job_body(leak, description="leak\x00"), 422, "description"),
        (job_body(999_999), 422, "category_id"),
        (job_body(plumbing), 422, "category_id"),
        (job_body(leak, colour="red"), 422, "colour"),
        ({k: v for k, v in job_body(leak).items() if k != "lng"}, 422, "lng"),
    ]
    for body, status, field in cases:
        r = book(client, resident, body)
        assert r.status_code == status, (body, r.json)
        assert field in [f["field"] for f in r.json["error"]["fields"]], (body, r.json)
    missing_key = client.post("/api/v1/jobs", json=job_body(leak), headers=resident)
    assert missing_key.status_code == 400
    assert missing_key.json["error"]["fields"][0]["field"] == "Idempotency-Key"
    not_json = client.post("/api/v1/jobs", data="lat=1", headers={**resident,
                                                                 "Idempotency-Key": "x"})
    assert not_json.status_code == 415
    broken = client.post("/api/v1/jobs", data="{", content_type="application/json",
                         headers={**resident, "Idempotency-Key": "y"})
    assert broken.status_code == 400
    assert count(app, "jobs") == 0


def _now() -> datetime:
    from dispatch.db import clock

    return clock.now()


def test_earliest_arrival_is_the_minimum_over_everyone_in_reach(
    app: Flask, client: FlaskClient, make: Factory, settings
) -> None:
    """The reported earliest time is the true minimum ETA, not that of the best-scored few:
    here the fastest worker scores worst because they were just assigned (fairness)."""
    from dispatch.db import clock
    from tests.helpers import set_settings

    set_settings(app, promise_minutes=20, offer_wave_size=3, fairness_weight=1.0)
    leak = make.category("leak-repair")
    close_pt = offset(*CENTER, east_m=15_000)
    far_pt = offset(*CENTER, east_m=17_000)
    fastest, _ = make.worker(lat=close_pt[0], lng=close_pt[1], radius_m=20_000)
    sql(app, "UPDATE workers SET last_assigned_at = now() WHERE user_id = :w", w=fastest)
    for _ in range(3):
        make.worker(lat=far_pt[0], lng=far_pt[1], radius_m=20_000)
    _, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(leak))
    assert r.status_code == 409
    assert "20 minutes" in r.json["error"]["message"]
    earliest = datetime.fromisoformat(r.json["error"]["earliest_arrival"])
    with app.app_context():
        from dispatch.services.dispatching import eta_model

        expected = eta_model(app.config["DISPATCH"]).eta_seconds(15_000, "car")
        assert abs((earliest - clock.now()).total_seconds() - expected) < 60
