"""What a resident following a job, or turned away at booking, is told: the facts in the API
(who is being asked, where the worker was last seen and the arrival that gives, the
earliest time someone could come or why nobody can say). Real PostGIS and Redis."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, book, job_body, offset, sql
from tests.test_queued_jobs import accept, at, book_next, busy_worker, post_status

ONE_KM_NORTH = offset(*CENTER, north_m=1000)


def get_job(client: FlaskClient, job_id: int, headers: dict[str, str]) -> Any:
    answer = client.get(f"/api/v1/jobs/{job_id}", headers=headers)
    assert answer.status_code == 200, answer.json
    return answer.json


def assigned(app: Flask, client: FlaskClient, make: Factory) -> tuple[int, int, dict[str, str],
                                                                       dict[str, str]]:
    """A leak job 1 km south of its worker, accepted: (job, worker, worker's and resident's
    headers)."""
    worker_id, worker = make.worker(lat=ONE_KM_NORTH[0], lng=ONE_KM_NORTH[1])
    _, resident = make.user(Role.RESIDENT)
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    assert accept(client, app, job_id, worker_id, worker).status_code == 200
    return job_id, worker_id, worker, resident


def test_the_job_answer_carries_the_workers_last_position_while_the_job_is_active(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    job_id, worker_id, worker, resident = assigned(app, client, make)
    _, operator = make.user(Role.ADMIN)
    seen = sql(app, "SELECT location_at FROM workers WHERE user_id = :w", w=worker_id)[0]
    for viewer in (resident, operator):
        position = get_job(client, job_id, viewer)["worker_position"]
        assert position is not None
        assert position["lat"] == pytest.approx(ONE_KM_NORTH[0])
        assert position["lng"] == pytest.approx(ONE_KM_NORTH[1])
        assert at(position["at"]) == seen.location_at
    # The worker knows where they are; the field is for those following them.
    assert get_job(client, job_id, worker)["worker_position"] is None
    # A list of jobs does not pay for it.
    listed = client.get("/api/v1/jobs", headers=resident).json["jobs"][0]
    assert listed["worker_position"] is None
    for status in ("en_route", "arrived", "in_progress", "completed"):
        assert post_status(client, job_id, worker, status).status_code == 200
    assert get_job(client, job_id, resident)["worker_position"] is None


def test_the_live_arrival_agrees_with_the_booking_estimate(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    """Before the worker sets out their start-up time is still ahead: the first position
    gives the arrival booking and accept gave, not one five minutes sooner."""
    job_id, _, worker, resident = assigned(app, client, make)
    job = get_job(client, job_id, resident)
    position = job["worker_position"]
    drift = abs((at(position["eta_at"]) - at(job["estimated_arrival"])).total_seconds())
    assert drift < 15, (position, job["estimated_arrival"])
    assert post_status(client, job_id, worker, "en_route").status_code == 200
    position = get_job(client, job_id, resident)["worker_position"]
    trip_s = (at(position["eta_at"]) - at(position["at"])).total_seconds()
    # 1000 m x 1.3 circuity at 28 km/h is about 167 s; set out, no start-up left.
    assert 150 < trip_s < 185


def test_the_search_says_how_many_are_asked_until_when_and_never_who(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    make.worker(lat=ONE_KM_NORTH[0], lng=ONE_KM_NORTH[1])
    _, resident = make.user(Role.RESIDENT)
    booked = book(client, resident, job_body(make.category("leak-repair"))).json
    job = get_job(client, booked["id"], resident)
    expires = sql(app, "SELECT expires_at FROM offers WHERE job_id = :j", j=booked["id"])[0]
    assert job["status"] == "dispatching" and job["asking_workers"] == 1
    assert at(job["asking_until"]) == expires.expires_at
    assert at(job["looking_until"]) > at(job["requested_at"])
    # Past its time, an offer nobody answered is nobody being asked, marked expired or not.
    sql(app, "UPDATE offers SET expires_at = now() - interval '1 second' WHERE job_id = :j",
        j=booked["id"])
    job = get_job(client, booked["id"], resident)
    assert job["status"] == "dispatching"
    assert job["asking_workers"] == 0 and job["asking_until"] is None
    # A count and a time: nothing names the workers asked.
    assert job["worker"] is None
    assert not any("offer" in key or (key.startswith("worker_") and job[key] is not None)
                   for key in job)


def refused(client: FlaskClient, make: Factory, slug: str = "leak-repair",
            lat: float = CENTER[0], lng: float = CENTER[1]) -> dict[str, Any]:
    _, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(make.category(slug), lat, lng))
    assert r.status_code == 409, r.json
    error: dict[str, Any] = r.json["error"]
    assert error["code"] == "no_coverage" and error["fields"][0]["field"] == "location"
    return error


def test_a_refusal_says_plainly_when_nobody_covers_the_place(
        app: Flask, client: FlaskClient, make: Factory, settings) -> None:
    make.worker(skills=("dog-walking",))
    far = offset(*CENTER, east_m=40_000)
    make.worker(lat=far[0], lng=far[1], radius_m=10_000)  # serves somewhere else
    error = refused(client, make)
    assert error["earliest_arrival"] is None and error["reason"] == "nobody_covers"
    assert error["earliest_after_current_job"] is False
    assert error["time_zone"] == settings.service_timezone
    assert "serves this place" in error["fields"][0]["problem"]


def test_a_refusal_tells_covered_but_nobody_on_duty_apart(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    make.worker(availability="offline")
    make.worker(seen_ago=timedelta(hours=3))  # online, but its phone went quiet long ago
    error = refused(client, make)
    assert error["earliest_arrival"] is None and error["reason"] == "nobody_on_duty"
    assert "on duty" in error["fields"][0]["problem"]


def test_a_refusal_gives_the_earliest_time_of_a_worker_finishing_nearby(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    """Finishing too late for the promise is not 'nobody': the time they could come is."""
    (_, worker), current, _ = busy_worker(app, client, make)
    sql(app, "UPDATE categories SET typical_minutes = 110 WHERE slug = 'leak-repair'")
    try:
        late, _ = book_next(app, client, make)
    finally:
        sql(app, "UPDATE categories SET typical_minutes = 60 WHERE slug = 'leak-repair'")
    assert late.status_code == 409
    error = late.json["error"]
    assert error["reason"] == "later" and error["earliest_after_current_job"] is True
    current_eta = at(get_job(client, current, worker)["estimated_arrival"])
    earliest = datetime.fromisoformat(error["earliest_arrival"])
    # The current job's arrival, 110 minutes on site, then start-up and the 2 km trip.
    assert timedelta(minutes=110) < earliest - current_eta < timedelta(minutes=125)
