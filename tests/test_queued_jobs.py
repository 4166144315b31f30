"""Queued jobs: when no free worker can come, a worker finishing a job nearby can take the
next one. It waits, assigned, behind their current job and starts the moment that job ends
(completed or called off). Real PostGIS, real threads for the races."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, book, job_body, offset, set_settings, sql
from tests.test_races import race

TWO_KM_NORTH = offset(*CENTER, north_m=2000)


def post_status(client: FlaskClient, job_id: int, headers: dict[str, str], status: str) -> Any:
    return client.post(f"/api/v1/jobs/{job_id}/status", json={"status": status}, headers=headers)


def offer_of(app: Flask, job_id: int, worker_id: int) -> int:
    return sql(app, "SELECT id FROM offers WHERE job_id = :j AND worker_id = :w",
               j=job_id, w=worker_id)[0].id


def accept(client: FlaskClient, app: Flask, job_id: int, worker_id: int,
           headers: dict[str, str]) -> Any:
    return client.post(f"/api/v1/offers/{offer_of(app, job_id, worker_id)}/accept",
                       headers=headers)


def availability(app: Flask, worker_id: int) -> str:
    return sql(app, "SELECT availability FROM workers WHERE user_id = :w",
               w=worker_id)[0].availability


def busy_worker(app: Flask, client: FlaskClient, make: Factory):
    """The only plumber around, on a leak job (assigned, not yet there)."""
    worker_id, worker = make.worker(skills=("leak-repair", "drain-unclogging"))
    _, first_resident = make.user(Role.RESIDENT)
    current = book(client, first_resident, job_body(make.category("leak-repair"))).json["id"]
    assert accept(client, app, current, worker_id, worker).status_code == 200
    assert availability(app, worker_id) == "busy"
    return (worker_id, worker), current, first_resident


def book_next(app: Flask, client: FlaskClient, make: Factory) -> tuple[Any, dict[str, str]]:
    _, resident = make.user(Role.RESIDENT)
    return book(client, resident, job_body(make.category("drain-unclogging"),
                                            *TWO_KM_NORTH)), resident


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_a_worker_finishing_nearby_takes_the_next_job_and_starts_it_when_done(
        app: Flask, client: FlaskClient, make: Factory, settings) -> None:
    (worker_id, worker), current, _ = busy_worker(app, client, make)
    booked, resident = book_next(app, client, make)
    # Nobody free: the job is taken all the same, offered to the busy plumber, no promise.
    assert booked.status_code == 201, booked.json
    job_id = booked.json["id"]
    assert booked.json["promised"] is False and booked.json["status"] == "dispatching"
    offer = sql(app, "SELECT eta_seconds FROM offers WHERE job_id = :j AND worker_id = :w",
                j=job_id, w=worker_id)[0]
    # The wait is the current job's arrival plus a leak repair's typical hour on site.
    current_eta = at(client.get(f"/api/v1/jobs/{current}", headers=worker)
                     .json["estimated_arrival"])
    requested = at(booked.json["requested_at"])
    wait_s = (current_eta - requested).total_seconds() + 60 * 60
    assert wait_s < offer.eta_seconds < wait_s + 20 * 60
    # The phone's offer says so: taking it queues the job behind the one they are on.
    listed = client.get("/api/v1/offers", headers=worker).json["offers"]
    assert [(o["job"]["id"], o["queued"]) for o in listed] == [(job_id, True)]

    r = accept(client, app, job_id, worker_id, worker)
    assert r.status_code == 200, r.json
    seen = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
    assert (seen["status"], seen["queued"], seen["worker"]["id"]) == ("assigned", True,
                                                                      worker_id)
    assert seen["promised"] is False  # when the current job ends is an estimate
    eta_queued = at(seen["estimated_arrival"])
    assert (eta_queued - requested).total_seconds() > 60 * 60
    # It waits: the worker cannot set out for it while on the other job.
    early = post_status(client, job_id, worker, "en_route")
    assert early.status_code == 409 and early.json["error"]["code"] == "worker_unavailable"
    assert client.get(f"/api/v1/jobs/{current}", headers=worker).json["queued"] is False

    for status in ["en_route", "arrived", "in_progress", "completed"]:
        assert post_status(client, current, worker, status).status_code == 200
    # The queued job is now the current one: still busy, the ETA is the trip alone.
    assert availability(app, worker_id) == "busy"
    started = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
    assert started["status"] == "assigned" and started["queued"] is False
    assert at(started["estimated_arrival"]) < eta_queued
    free = sql(app, "SELECT detail FROM job_events WHERE job_id = :j AND kind = 'worker_free'",
               j=job_id)
    assert [e.detail["previous_job_id"] for e in free] == [current]
    for status in ["en_route", "arrived", "in_progress", "completed"]:
        assert post_status(client, job_id, worker, status).status_code == 200
    assert availability(app, worker_id) == "online"


def test_too_long_a_wait_or_queueing_turned_off_is_an_honest_refusal(
        app: Flask, client: FlaskClient, make: Factory, settings) -> None:
    busy_worker(app, client, make)
    set_settings(app, queue_behind_busy=False)
    off, _ = book_next(app, client, make)
    assert off.status_code == 409 and off.json["error"]["code"] == "no_coverage"
    set_settings(app, queue_behind_busy=True)
    # A leak repair that usually takes 110 minutes leaves no time for the next job.
    sql(app, "UPDATE categories SET typical_minutes = 110 WHERE slug = 'leak-repair'")
    try:
        late, _ = book_next(app, client, make)
    finally:
        sql(app, "UPDATE categories SET typical_minutes = 60 WHERE slug = 'leak-repair'")
    assert late.status_code == 409 and late.json["error"]["code"] == "no_coverage"
    assert sql(app, "SELECT count(*) AS n FROM jobs")[0].n == 1


def test_free_workers_come_first_and_only_free_ones_make_a_promise(
        app: Flask, client: FlaskClient, make: Factory, settings) -> None:
    (busy_id, _), _, _ = busy_worker(app, client, make)
    free = [make.worker(lat=TWO_KM_NORTH[0] + 0.01 * i, lng=TWO_KM_NORTH[1],
                        skills=("drain-unclogging",))[0] for i in range(1, 3)]
    booked, _ = book_next(app, client, make)
    assert booked.status_code == 201
    wave = sql(app, "SELECT worker_id FROM offers WHERE job_id = :j ORDER BY rank",
               j=booked.json["id"])
    # Two free workers, then the one finishing nearby fills the wave of three.
    assert [w.worker_id for w in wave] == [*free, busy_id]
    assert booked.json["promised"] is False  # two free workers are not three


def queued_job(app: Flask, client: FlaskClient, make: Factory):
    """The busy plumber with a drain job queued behind their leak job."""
    (worker_id, worker), current, first_resident = busy_worker(app, client, make)
    booked, resident = book_next(app, client, make)
    job_id = booked.json["id"]
    assert accept(client, app, job_id, worker_id, worker).status_code == 200
    return (worker_id, worker), (current, first_resident), (job_id, resident)


def test_calling_off_the_queued_job_leaves_the_worker_on_their_current_one(
        app: Flask, client: FlaskClient, make: Factory, settings) -> None:
    (worker_id, worker), (current, _), (job_id, resident) = queued_job(app, client, make)
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", json={},
                       headers=resident).status_code == 200
    assert availability(app, worker_id) == "busy"
    row = sql(app, "SELECT status, queued_behind_job_id FROM jobs WHERE id = :j", j=job_id)[0]
    assert (row.status, row.queued_behind_job_id) == ("cancelled", None)
    for status in ["en_route", "arrived", "in_progress", "completed"]:
        assert post_status(client, current, worker, status).status_code == 200
    assert availability(app, worker_id) == "online"


def test_calling_off_the_current_job_starts_the_queued_one(
        app: Flask, client: FlaskClient, make: Factory, settings) -> None:
    (worker_id, worker), (current, first_resident), (job_id, _) = queued_job(app, client, make)
    # Called off on the way there: they leave from where their phone says they are, 5 km
    # south of the job that ended (7 km from the next one, not 2).
    south = offset(*CENTER, north_m=-5000)
    sql(app, "UPDATE workers SET location = ST_SetSRID(ST_MakePoint(:lng, :lat), 4326), "
             "location_at = now() WHERE user_id = :w", lat=south[0], lng=south[1], w=worker_id)
    assert client.post(f"/api/v1/jobs/{current}/cancel", json={},
                       headers=first_resident).status_code == 200
    assert availability(app, worker_id) == "busy"
    started = client.get(f"/api/v1/jobs/{job_id}", headers=worker).json
    assert started["queued"] is False
    trip_s = (at(started["estimated_arrival"]) - datetime.now(UTC)).total_seconds()
    assert 20 * 60 < trip_s < 30 * 60  # start-up + 7 km x 1.3 by car at 28 km/h: ~24.5 min
    # The resident hears the worker is coming now, with the new time.
    told = sql(app, "SELECT body FROM notifications WHERE job_id = :j AND event = "
                    "'worker_free'", j=job_id)
    assert len(told) == 1 and "free now and coming to you" in told[0].body
    assert post_status(client, job_id, worker, "en_route").status_code == 200


def test_a_worker_holds_one_queued_job_at_most(
        app: Flask, client: FlaskClient, make: Factory, settings) -> None:
    (worker_id, worker), _, _ = busy_worker(app, client, make)
    second, _ = book_next(app, client, make)
    third, _ = book_next(app, client, make)
    assert second.status_code == third.status_code == 201
    assert accept(client, app, second.json["id"], worker_id, worker).status_code == 200
    # Their other offer was withdrawn at that accept; a new request finds nobody.
    late = accept(client, app, third.json["id"], worker_id, worker)
    assert late.status_code == 409 and late.json["error"]["code"] == "offer_withdrawn"
    fourth, _ = book_next(app, client, make)
    assert fourth.status_code == 409 and fourth.json["error"]["code"] == "no_coverage"


def test_two_accepts_from_one_busy_worker_at_once_queue_exactly_one(
        app: Flask, make: Factory, settings) -> None:
    set_settings(app, offer_wave_size=1)
    client = app.test_client()
    (worker_id, worker), _, _ = busy_worker(app, client, make)
    jobs = [book_next(app, client, make)[0].json["id"] for _ in range(6)]
    offers = [offer_of(app, j, worker_id) for j in jobs]
    codes = race([lambda o=o: app.test_client().post(f"/api/v1/offers/{o}/accept",
                                                     headers=worker).status_code
                  for o in offers])
    assert Counter(codes) == {200: 1, 409: 5}, codes
    queued = sql(app, "SELECT id FROM jobs WHERE queued_behind_job_id IS NOT NULL")
    assert [q.id for q in queued] == [jobs[codes.index(200)]]


def test_an_accept_racing_the_end_of_the_current_job_never_strands_the_queued_one(
        app: Flask, make: Factory, settings) -> None:
    """Whichever lands first, the new job ends up the worker's current one (not queued
    behind a finished job) and the worker stays busy for it."""
    client = app.test_client()
    for _ in range(6):
        (worker_id, worker), current, _ = busy_worker(app, client, make)
        for status in ["en_route", "arrived", "in_progress"]:
            assert post_status(client, current, worker, status).status_code == 200
        job_id = book_next(app, client, make)[0].json["id"]
        offer_id = offer_of(app, job_id, worker_id)
        codes = race([
            lambda c=current, h=worker: post_status(app.test_client(), c, h,
                                                    "completed").status_code,
            lambda o=offer_id, h=worker: app.test_client().post(
                f"/api/v1/offers/{o}/accept", headers=h).status_code])
        assert codes == [200, 200], codes
        row = sql(app, "SELECT status, queued_behind_job_id FROM jobs WHERE id = :j",
                  j=job_id)[0]
        assert (row.status, row.queued_behind_job_id) == ("assigned", None)
        assert availability(app, worker_id) == "busy"
        for status in ["en_route", "arrived", "in_progress", "completed"]:
            assert post_status(client, job_id, worker, status).status_code == 200
        assert availability(app, worker_id) == "online"
        sql(app, "UPDATE workers SET availability = 'offline' WHERE user_id = :w", w=worker_id)


def test_only_an_offer_made_to_them_busy_can_queue_and_taken_free_it_is_the_trip_alone(
        app: Flask, client: FlaskClient, make: Factory, settings) -> None:
    set_settings(app, offer_wave_size=1)
    worker_id, worker = make.worker(skills=("leak-repair", "drain-unclogging"))
    residents = [make.user(Role.RESIDENT)[1] for _ in range(2)]
    # Two offers while free: taking one does not queue the other behind it.
    first, second = (book(client, r, job_body(make.category("leak-repair"))).json["id"]
                     for r in residents)
    first_offer, second_offer = offer_of(app, first, worker_id), offer_of(app, second, worker_id)
    listed = client.get("/api/v1/offers", headers=worker).json["offers"]
    assert [o["queued"] for o in listed] == [False, False]  # made while free
    sql(app, "UPDATE offers SET status = 'pending' WHERE id = :o", o=second_offer)
    assert client.post(f"/api/v1/offers/{first_offer}/accept", headers=worker).status_code == 200
    sql(app, "UPDATE offers SET status = 'pending' WHERE id = :o", o=second_offer)
    stale = client.post(f"/api/v1/offers/{second_offer}/accept", headers=worker)
    assert stale.status_code == 409 and stale.json["error"]["code"] == "worker_unavailable"
    assert sql(app, "SELECT count(*) AS n FROM jobs WHERE queued_behind_job_id IS NOT NULL"
               )[0].n == 0
    # An offer made busy, answered after the job ended: they leave now, no wait counted.
    booked, resident = book_next(app, client, make)
    offer = sql(app, "SELECT id, eta_seconds, queued_behind_job_id FROM offers "
                     "WHERE job_id = :j", j=booked.json["id"])[0]
    assert offer.queued_behind_job_id == first and offer.eta_seconds > 60 * 60
    for status in ["en_route", "arrived", "in_progress", "completed"]:
        assert post_status(client, first, worker, status).status_code == 200
    r = client.post(f"/api/v1/offers/{offer.id}/accept", headers=worker)
    assert r.status_code == 200, r.json
    seen = client.get(f"/api/v1/jobs/{booked.json['id']}", headers=resident).json
    assert seen["queued"] is False and seen["promised"] is True
    trip_s = (at(seen["estimated_arrival"]) - at(seen["assigned_at"])).total_seconds()
    assert 300 < trip_s < 20 * 60  # start-up + 2 km by car, not the hour's wait


def release_late(app: Flask) -> int:
    from dispatch.db import db
    from dispatch.services.dispatching import release_late_queued

    with app.app_context():
        return release_late_queued(db.session)


def test_a_queued_job_goes_back_to_the_cascade_when_the_job_before_it_runs_long(
        app: Flask, client: FlaskClient, make: Factory, settings, manual_clock,
        monkeypatch) -> None:
    from tests.test_masking import with_pool

    with_pool(app, ["+14155550101", "+14155550102"])
    (worker_id, worker), (current, _), (job_id, resident) = queued_job(app, client, make)
    for status in ["en_route", "arrived", "in_progress"]:
        assert post_status(client, current, worker, status).status_code == 200
    job = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
    arrive_by = at(job["arrive_by"])
    assert sql(app, "SELECT count(*) AS n FROM masked_sessions WHERE job_id = :j "
                    "AND closed_at IS NULL", j=job_id)[0].n == 1
    # The leak job's typical hour on site, then 2 km: still in time, with room to spare.
    assert release_late(app) == 0
    manual_clock.now = arrive_by - timedelta(minutes=30)
    assert release_late(app) == 0
    # The leak job runs on: finishing in five minutes, the worker could no longer reach the
    # next job ten minutes before its deadline. With nobody else to ask, it stays theirs.
    manual_clock.now = arrive_by - timedelta(minutes=18)
    assert release_late(app) == 0
    # It goes back to the cascade once someone else can come: a plumber came online.
    other_id, other = make.worker(skills=("drain-unclogging",), lat=TWO_KM_NORTH[0],
                                  lng=TWO_KM_NORTH[1] + 0.01)
    assert release_late(app) == 1
    assert release_late(app) == 0  # once
    seen = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
    assert (seen["status"], seen["worker"], seen["queued"]) == ("dispatching", None, False)
    assert seen["estimated_arrival"] is None
    assert client.get(f"/api/v1/jobs/{job_id}", headers=worker).status_code == 404
    event = sql(app, "SELECT detail FROM job_events WHERE job_id = :j AND kind = 'status' "
                     "AND from_status = 'assigned' AND to_status = 'dispatching'", j=job_id)
    assert [(e.detail["worker_id"], e.detail["queued_behind_job_id"]) for e in event] == [
        (worker_id, current)]
    # The first worker stays on the job they are on; both sides are told by text.
    assert availability(app, worker_id) == "busy"
    told = sql(app, "SELECT user_id, body FROM notifications WHERE job_id = :j AND event = "
                    "'released'", j=job_id)
    assert [t.user_id for t in told] == [worker_id] and "someone else" in told[0].body
    text = sql(app, "SELECT body FROM notifications WHERE job_id = :j AND event = "
                    "'reassigning'", j=job_id)
    assert len(text) == 1 and "someone else" in text[0].body
    assert sql(app, "SELECT count(*) AS n FROM masked_sessions WHERE job_id = :j "
                    "AND closed_at IS NULL", j=job_id)[0].n == 0
    # The new wave reached the other plumber, never the first one again.
    offered = sql(app, "SELECT worker_id, status FROM offers WHERE job_id = :j ORDER BY id",
                  j=job_id)
    assert [(o.worker_id, o.status) for o in offered] == [(worker_id, "withdrawn"),
                                                         (other_id, "pending")]
    # Its masked number fails at this accept; the sweeper's retry opens one for the new
    # pair, though the first worker's closed session is still on record.
    from dispatch.db import db
    from dispatch.services import contact
    from notifications import masking

    real = masking.open_session
    monkeypatch.setattr(masking, "open_session", lambda *a, **k: 1 / 0)
    took = accept(client, app, job_id, other_id, other)
    assert took.status_code == 200, took.json
    monkeypatch.setattr(masking, "open_session", real)
    manual_clock.advance(seconds=30)  # past the sweeper's settling time
    with app.app_context():
        contact.sweep(db.session)
    taken = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
    assert (taken["status"], taken["worker"]["id"], taken["queued"]) == ("assigned", other_id,
                                                                         False)
    # The resident hears of the second worker too, and calls them, not the first one.
    accepted = sql(app, "SELECT body FROM notifications WHERE job_id = :j AND event = "
                        "'accepted' ORDER BY id", j=job_id)
    assert len(accepted) == 2
    people = sql(app, "SELECT p.user_id FROM masked_sessions s JOIN masked_participants p "
                      "ON p.session_id = s.id WHERE s.job_id = :j AND s.closed_at IS NULL "
                      "AND p.role = 'worker'", j=job_id)
    assert [p.user_id for p in people] == [other_id]
    # The first worker's job ends with nothing queued behind it.
    for status in ["completed"]:
        assert post_status(client, current, worker, status).status_code == 200
    assert availability(app, worker_id) == "online"


def test_the_release_racing_the_end_of_the_job_before_it_leaves_one_outcome(
        app: Flask, make: Factory, settings, manual_clock) -> None:
    """Either the job before it ends first (the queued job starts, the worker stays busy for
    it) or the release lands first (the job is dispatching, the worker comes free)."""
    client = app.test_client()
    for _ in range(6):
        (worker_id, worker), (current, _), (job_id, resident) = queued_job(app, client, make)
        for status in ["en_route", "arrived", "in_progress"]:
            assert post_status(client, current, worker, status).status_code == 200
        arrive_by = at(client.get(f"/api/v1/jobs/{job_id}", headers=resident).json["arrive_by"])
        manual_clock.now = arrive_by - timedelta(minutes=18)
        other_id, _ = make.worker(skills=("drain-unclogging",), lat=TWO_KM_NORTH[0],
                                  lng=TWO_KM_NORTH[1] + 0.01)
        done, released = race([
            lambda c=current, h=worker: post_status(app.test_client(), c, h,
                                                    "completed").status_code,
            lambda: release_late(app)])
        assert done == 200, done
        row = sql(app, "SELECT status, worker_id, queued_behind_job_id FROM jobs "
                       "WHERE id = :j", j=job_id)[0]
        assert row.queued_behind_job_id is None
        if released:
            assert (row.status, row.worker_id) == ("dispatching", None)
            assert availability(app, worker_id) == "online"
        else:
            assert (row.status, row.worker_id) == ("assigned", worker_id)
            assert availability(app, worker_id) == "busy"
            assert post_status(client, job_id, worker, "en_route").status_code == 200
        sql(app, "UPDATE workers SET availability = 'offline' WHERE user_id IN (:w, :o)",
            w=worker_id, o=other_id)
        manual_clock.now = datetime.now(UTC).replace(microsecond=0)


def test_the_released_worker_leaves_the_job_room_and_hears_it_on_their_phone(
        app: Flask, live_server, make: Factory, settings, manual_clock) -> None:
    """After the release the job's room carries the next worker's name and live position:
    the first worker's open app must no longer be in it."""
    import requests

    from notifications import realtime
    from tests.live import SocketClient

    def http(method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        return requests.request(method, f"{live_server.url}/api/v1{path}", headers=headers,
                                timeout=10, **kw)

    worker_id, worker = make.worker(skills=("leak-repair", "drain-unclogging"))
    _, first_resident = make.user(Role.RESIDENT)
    _, resident = make.user(Role.RESIDENT)
    current = http("POST", "/jobs", {**first_resident, "Idempotency-Key": "rel-1"},
                   json=job_body(make.category("leak-repair"))).json()["id"]
    assert http("POST", f"/offers/{offer_of(app, current, worker_id)}/accept",
                worker).status_code == 200
    job = http("POST", "/jobs", {**resident, "Idempotency-Key": "rel-2"},
               json=job_body(make.category("drain-unclogging"), *TWO_KM_NORTH)).json()
    assert http("POST", f"/offers/{offer_of(app, job['id'], worker_id)}/accept",
                worker).status_code == 200
    worker_sock = SocketClient(live_server, worker["Authorization"].split()[1])
    resident_sock = SocketClient(live_server, resident["Authorization"].split()[1])
    try:
        for sock in (worker_sock, resident_sock):
            assert sock.call("watch_job", {"job_id": job["id"]})["ok"] is True
        manual_clock.now = at(job["arrive_by"]) - timedelta(minutes=18)
        make.worker(skills=("drain-unclogging",), lat=TWO_KM_NORTH[0],
                    lng=TWO_KM_NORTH[1] + 0.01)
        assert release_late(app) == 1
        gone = worker_sock.wait_for("job_update", lambda j: j["id"] == job["id"])
        assert gone["status"] == "dispatching" and gone["worker"] is None
        # No pause: the release queued the room change before it returned, the server takes
        # the queue's messages in order, and the probe is queued after it.
        realtime.emitter(app.config["REDIS_URL"]).emit(
            "worker_location", {"job_id": job["id"], "probe": True},
            realtime.job_room(job["id"]))
        assert resident_sock.wait_for("worker_location")["probe"] is True
        realtime.emitter(app.config["REDIS_URL"]).emit(  # queued after the probe
            "marker", {}, realtime.user_room(worker_id))
        assert worker_sock.received_before("worker_location", "marker") == []
        again = worker_sock.call("watch_job", {"job_id": job["id"]})
        assert again["ok"] is False and again["error"]["code"] == "not_found"
    finally:
        worker_sock.close()
        resident_sock.close()


def test_typical_minutes_are_learned_from_the_citys_completed_jobs(
        app: Flask, client: FlaskClient, make: Factory, settings) -> None:
    """What queueing counts on (when a busy worker comes free) follows the jobs done here:
    the median time on site of the category's recent jobs, once there are enough of them."""
    from dispatch.db import clock, db
    from dispatch.services.catalog import learn_typical_minutes

    worker_id, worker = make.worker()
    _, resident = make.user(Role.RESIDENT)
    category = make.category("leak-repair")
    try:
        for minutes in (30, 40, 45, 50, 95):
            job_id = book(client, resident, job_body(category)).json["id"]
            assert accept(client, app, job_id, worker_id, worker).status_code == 200
            for status in ["en_route", "arrived", "in_progress", "completed"]:
                assert post_status(client, job_id, worker, status).status_code == 200
            sql(app, "UPDATE jobs SET arrived_at = completed_at - make_interval(mins => :m) "
                     "WHERE id = :j", m=minutes, j=job_id)
        with app.app_context():
            assert learn_typical_minutes(db.session, clock.now(), min_jobs=6) == {}
            assert learn_typical_minutes(db.session, clock.now(), min_jobs=5) == {
                "leak-repair": 45}
            assert learn_typical_minutes(db.session, clock.now(), min_jobs=5) == {}
            # Jobs older than the window no longer count.
            later = clock.now() + timedelta(days=31)
            sql(app, "UPDATE categories SET typical_minutes = 60 WHERE slug = 'leak-repair'")
            assert learn_typical_minutes(db.session, later, min_jobs=5) == {}
        assert sql(app, "SELECT typical_minutes FROM categories WHERE slug = 'leak-repair'"
                   )[0].typical_minutes == 60
    finally:
        sql(app, "UPDATE categories SET typical_minutes = 60 WHERE slug = 'leak-repair'")
