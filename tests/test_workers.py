"""Worker profile: skills from the tree, verification, availability, location reports."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from tests.helpers import Factory, ManualClock, sql


def test_skills_from_a_branch_cover_its_leaves_and_start_unverified(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    worker_id, worker = make.user(Role.WORKER)
    _, admin = make.user(Role.ADMIN)
    plumbing, dogs = make.category("plumbing"), make.category("dog-walking")
    r = client.put("/api/v1/worker/skills", json={"category_ids": [plumbing, dogs]},
                   headers=worker)
    assert r.status_code == 200, r.json
    slugs = {s["category"]["slug"]: s["verified"] for s in r.json["skills"]}
    assert slugs == {"leak-repair": False, "drain-unclogging": False, "water-heater": False,
                     "dog-walking": False}
    leak = make.category("leak-repair")
    v = client.post(f"/api/v1/admin/workers/{worker_id}/verification",
                    json={"category_id": leak, "verified": True}, headers=admin)
    assert v.status_code == 200
    # Narrowing skills keeps the verification of what stays.
    r = client.put("/api/v1/worker/skills", json={"category_ids": [leak]}, headers=worker)
    assert [(s["category"]["slug"], s["verified"]) for s in r.json["skills"]] == [
        ("leak-repair", True)]
    bad = client.put("/api/v1/worker/skills", json={"category_ids": [leak, 424242]},
                     headers=worker)
    assert bad.status_code == 422 and bad.json["error"]["fields"][0]["field"] == "category_ids.1"
    assert len(sql(app, "SELECT 1 FROM worker_skills WHERE worker_id = :w", w=worker_id)) == 1
    unlisted = client.post(f"/api/v1/admin/workers/{worker_id}/verification",
                           json={"category_id": dogs, "verified": True}, headers=admin)
    assert unlisted.status_code == 422


def test_profile_changes_are_validated(client: FlaskClient, make: Factory) -> None:
    _, worker = make.user(Role.WORKER)
    ok = client.patch("/api/v1/worker/profile", json={"travel_mode": "bike",
                                                      "service_radius_m": 8000}, headers=worker)
    assert ok.status_code == 200 and ok.json["travel_mode"] == "bike"
    for body, field in [({"travel_mode": "rocket"}, "travel_mode"),
                        ({"service_radius_m": 5}, "service_radius_m")]:
        r = client.patch("/api/v1/worker/profile", json=body, headers=worker)
        assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == field
    profile = client.get("/api/v1/worker/profile", headers=worker).json
    assert (profile["travel_mode"], profile["service_radius_m"]) == ("bike", 8000)


def test_location_reports_keep_the_newest_fix(app: Flask, client: FlaskClient, make: Factory,
                                              manual_clock: ManualClock) -> None:
    worker_id, worker = make.user(Role.WORKER)
    now = manual_clock.now
    first = {"lat": 37.78, "lng": -122.41, "accuracy_m": 12, "heading": 90, "speed_mps": 8,
             "recorded_at": now.isoformat()}
    r = client.post("/api/v1/worker/location", json=first, headers=worker)
    assert r.status_code == 200 and r.json["accepted"] is True
    assert r.json["worker"]["location"]["lat"] == 37.78
    manual_clock.advance(seconds=5)
    older = {**first, "lat": 37.781, "recorded_at": (now - timedelta(seconds=5)).isoformat()}
    r = client.post("/api/v1/worker/location", json=older, headers=worker)
    assert (r.json["accepted"], r.json["reason"]) == (False, "out_of_order")
    assert r.json["worker"]["location"]["lat"] == 37.78
    future = {**first, "recorded_at": (manual_clock.now + timedelta(minutes=5)).isoformat()}
    r = client.post("/api/v1/worker/location", json=future, headers=worker)
    assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == "recorded_at"
    naive = {**first, "recorded_at": "2026-11-26T10:00:00"}
    r = client.post("/api/v1/worker/location", json=naive, headers=worker)
    assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == "recorded_at"
    for body, field in [({**first, "lat": 95}, "lat"), ({**first, "lng": 200}, "lng"),
                        ({**first, "accuracy_m": -1}, "accuracy_m"),
                        ({**first, "heading": 361}, "heading"),
                        ({**first, "speed_mps": -3}, "speed_mps")]:
        r = client.post("/api/v1/worker/location", json=body, headers=worker)
        assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == field
    # 5 s later, 2 km away: 400 m/s is no bicycle, it is a GPS jump.
    jump = {"lat": 37.798, "lng": -122.41, "recorded_at": manual_clock.now.isoformat()}
    r = client.post("/api/v1/worker/location", json=jump, headers=worker)
    assert (r.json["accepted"], r.json["reason"]) == (False, "implausible_jump")
    manual_clock.advance(seconds=10)
    newer = {"lat": 37.781, "lng": -122.40}
    r = client.post("/api/v1/worker/location", json=newer, headers=worker)
    assert r.json["accepted"] is True and r.json["worker"]["location"]["lat"] == 37.781
    row = sql(app, "SELECT location_at, location_heading FROM workers WHERE user_id = :w",
              w=worker_id)[0]
    assert row.location_at == manual_clock.now and row.location_heading is None


def test_pings_faster_than_the_rate_limit_are_dropped(app: Flask, client: FlaskClient,
                                                      make: Factory,
                                                      manual_clock: ManualClock) -> None:
    _, worker = make.user(Role.WORKER)
    fix = {"lat": 37.78, "lng": -122.41}
    assert client.post("/api/v1/worker/location", json=fix, headers=worker).json["accepted"]
    manual_clock.advance(seconds=0.3)
    r = client.post("/api/v1/worker/location", json={**fix, "lat": 37.7801}, headers=worker)
    assert (r.json["accepted"], r.json["reason"]) == (False, "rate_limited")
    manual_clock.advance(seconds=1)
    r = client.post("/api/v1/worker/location", json={**fix, "lat": 37.7802}, headers=worker)
    assert r.json["accepted"] is True


def test_going_online_makes_a_worker_matchable(app: Flask, client: FlaskClient,
                                               make: Factory) -> None:
    worker_id, worker = make.worker(availability="offline")
    assert not sql(app, "SELECT available FROM worker_skills WHERE worker_id = :w",
                   w=worker_id)[0].available
    r = client.post("/api/v1/worker/availability", json={"availability": "online"},
                    headers=worker)
    assert r.status_code == 200 and r.json["availability"] == "online"
    assert sql(app, "SELECT available FROM worker_skills WHERE worker_id = :w",
               w=worker_id)[0].available
    bad = client.post("/api/v1/worker/availability", json={"availability": "busy"},
                      headers=worker)
    assert bad.status_code == 422


def test_stale_or_ancient_fixes_are_refused_and_nothing_is_stored(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    """A year-1 timestamp with an offset is a BC instant in UTC: it must never be stored."""
    worker_id, worker = make.user(Role.WORKER)
    for when in ("0001-01-01T00:00:00+01:00", "2020-01-01T00:00:00+00:00"):
        r = client.post("/api/v1/worker/location",
                        json={"lat": 37.7, "lng": -122.4, "recorded_at": when}, headers=worker)
        assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == "recorded_at"
    assert sql(app, "SELECT location_at FROM workers WHERE user_id = :w",
               w=worker_id)[0].location_at is None
    assert client.get("/api/v1/worker/profile", headers=worker).status_code == 200


def test_going_offline_hands_pending_offers_on(app: Flask, client: FlaskClient,
                                               make: Factory, settings) -> None:
    from tests.helpers import CENTER, book, job_body, offset, set_settings

    set_settings(app, offer_wave_size=1)
    first_id, first = make.worker()
    second_id, _ = make.worker(lat=offset(*CENTER, north_m=2000)[0])
    _, resident = make.user(Role.RESIDENT)
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    pending = "SELECT worker_id FROM offers WHERE job_id = :j AND status = 'pending'"
    assert [r.worker_id for r in sql(app, pending, j=job_id)] == [first_id]
    r = client.post("/api/v1/worker/availability", json={"availability": "offline"},
                    headers=first)
    assert r.status_code == 200
    assert [r.worker_id for r in sql(app, pending, j=job_id)] == [second_id]
