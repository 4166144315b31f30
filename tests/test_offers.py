"""The offer cascade: accept, decline, expiry, the next wave, unfilled, the sweeper, RQ."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from dispatch.db import db
from dispatch.db.models import Role
from dispatch.entrypoints.tasks import expire_due_offers_task
from dispatch.infra.queues import EXPIRY_GRACE, TIMERS, expiry_second
from dispatch.services.dispatching import sweep
from tests.helpers import CENTER, Factory, ManualClock, book, job_body, offset, set_settings, sql


def pending_offers(app: Flask, job_id: int) -> list:
    return sql(app, "SELECT id, worker_id, wave FROM offers WHERE job_id = :j AND "
                    "status = 'pending' ORDER BY rank", j=job_id)


def job_status(app: Flask, job_id: int) -> str:
    return sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0].status


def setup_job(app: Flask, client: FlaskClient, make: Factory, workers: int = 2,
              wave: int = 1) -> tuple[int, list[tuple[int, dict[str, str]]]]:
    set_settings(app, offer_wave_size=wave)
    crew = [make.worker(lat=offset(*CENTER, north_m=400 * (i + 1))[0]) for i in range(workers)]
    _, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(make.category("leak-repair")))
    assert r.status_code == 201, r.json
    return r.json["id"], crew


def test_accept_assigns_the_job_and_withdraws_the_rest(app: Flask, client: FlaskClient,
                                                      make: Factory, settings) -> None:
    job_id, crew = setup_job(app, client, make, workers=3, wave=3)
    offers = pending_offers(app, job_id)
    (winner_id, winner_headers) = crew[1]
    offer = next(o for o in offers if o.worker_id == winner_id)
    r = client.post(f"/api/v1/offers/{offer.id}/accept", headers=winner_headers)
    assert r.status_code == 200, r.json
    assert r.json["job"]["status"] == "assigned"
    assert r.json["job"]["worker"]["id"] == winner_id
    assert r.json["offer"]["status"] == "accepted"
    statuses = dict(sql(app, "SELECT worker_id, status FROM offers WHERE job_id = :j", j=job_id))
    assert statuses == {crew[0][0]: "withdrawn", winner_id: "accepted", crew[2][0]: "withdrawn"}
    assert sql(app, "SELECT availability FROM workers WHERE user_id = :w",
               w=winner_id)[0].availability == "busy"
    # The match index follows: the busy worker is no longer available for matching.
    assert not any(r.available for r in sql(
        app, "SELECT available FROM worker_skills WHERE worker_id = :w", w=winner_id))
    loser = next(o for o in offers if o.worker_id == crew[0][0])
    late = client.post(f"/api/v1/offers/{loser.id}/accept", headers=crew[0][1])
    assert late.status_code == 409 and late.json["error"]["code"] == "offer_withdrawn"


def test_decline_sends_the_next_wave_at_once(app: Flask, client: FlaskClient, make: Factory,
                                             settings) -> None:
    job_id, crew = setup_job(app, client, make, workers=2, wave=1)
    [first] = pending_offers(app, job_id)
    assert first.worker_id == crew[0][0]
    r = client.post(f"/api/v1/offers/{first.id}/decline", headers=crew[0][1])
    assert r.status_code == 200 and r.json["offer"]["status"] == "declined"
    [second] = pending_offers(app, job_id)
    assert second.worker_id == crew[1][0] and second.wave == 2
    again = client.post(f"/api/v1/offers/{first.id}/decline", headers=crew[0][1])
    assert again.status_code == 409


def test_expired_offers_move_the_cascade_on_then_unfilled(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock, settings
) -> None:
    job_id, crew = setup_job(app, client, make, workers=2, wave=1)
    [first] = pending_offers(app, job_id)
    with app.app_context():
        assert expire_due_offers_task() == 0  # not due yet: nothing happens
    manual_clock.advance(seconds=31)
    late = client.post(f"/api/v1/offers/{first.id}/accept", headers=crew[0][1])
    assert late.status_code == 409 and late.json["error"]["code"] == "offer_expired"
    with app.app_context():
        assert expire_due_offers_task() == 1  # one job moved on
    [second] = pending_offers(app, job_id)
    assert second.worker_id == crew[1][0]
    manual_clock.advance(seconds=31)
    with app.app_context():
        expire_due_offers_task()
    assert pending_offers(app, job_id) == []
    # Everyone in reach was asked: the job keeps looking (workers come free, come online)
    # while the promise can still be kept, and says so once.
    assert job_status(app, job_id) == "dispatching"
    manual_clock.advance(minutes=10)
    with app.app_context():
        sweep(db.session)
        sweep(db.session)
    assert job_status(app, job_id) == "dispatching"
    waiting = sql(app, "SELECT detail FROM job_events WHERE job_id = :j AND "
                       "kind = 'waiting_for_workers'", j=job_id)
    assert len(waiting) == 1
    manual_clock.advance(minutes=106)  # past the deadline less a start-up: nobody can make it
    with app.app_context():
        sweep(db.session)
    assert job_status(app, job_id) == "unfilled"
    last = sql(app, "SELECT actor, from_status, to_status, detail FROM job_events "
                    "WHERE job_id = :j ORDER BY id DESC LIMIT 1", j=job_id)[0]
    assert (last.actor, last.from_status, last.to_status) == ("system", "dispatching",
                                                               "unfilled")
    assert "no worker" in last.detail["reason"]


def test_a_waiting_job_goes_to_a_worker_who_comes_online(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock, settings
) -> None:
    job_id, crew = setup_job(app, client, make, workers=1, wave=1)
    [first] = pending_offers(app, job_id)
    assert client.post(f"/api/v1/offers/{first.id}/decline",
                       headers=crew[0][1]).status_code == 200
    assert pending_offers(app, job_id) == [] and job_status(app, job_id) == "dispatching"
    manual_clock.advance(minutes=20)
    newcomer, newcomer_h = make.worker(lat=offset(*CENTER, north_m=700)[0])
    with app.app_context():
        sweep(db.session)
    [offer] = pending_offers(app, job_id)
    assert offer.worker_id == newcomer
    assert client.post(f"/api/v1/offers/{offer.id}/accept",
                       headers=newcomer_h).status_code == 200
    assert job_status(app, job_id) == "assigned"


def test_sweeper_catches_offers_whose_timer_was_lost(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock, settings
) -> None:
    job_id, crew = setup_job(app, client, make, workers=2, wave=1)
    Redis.from_url(app.config["REDIS_URL"]).flushdb()  # every scheduled expiry is lost
    manual_clock.advance(seconds=45)
    with app.app_context():
        assert sweep(db.session) == 1
        assert sweep(db.session) == 0  # idempotent: nothing more to do until the next expiry
    [second] = pending_offers(app, job_id)
    assert second.worker_id == crew[1][0]


def test_offer_expiry_is_scheduled_on_rq_and_runs_on_a_real_worker(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock, settings
) -> None:
    job_id, _ = setup_job(app, client, make, workers=4, wave=1)
    _, other_resident = make.user(Role.RESIDENT)
    other_id = book(client, other_resident, job_body(make.category("leak-repair"))).json["id"]
    [first] = pending_offers(app, job_id)
    [other_first] = pending_offers(app, other_id)
    conn = Redis.from_url(app.config["REDIS_URL"])
    queue = Queue(TIMERS, connection=conn)
    registry = ScheduledJobRegistry(queue=queue)
    # Both windows close in the same second: one timer serves them.
    [rq_job_id] = registry.get_job_ids()
    expires_at = sql(app, "SELECT expires_at FROM offers WHERE id = :o", o=first.id)[0].expires_at
    scheduled = registry.get_scheduled_time(rq_job_id)
    assert timedelta(0) <= scheduled - (expires_at + EXPIRY_GRACE) < timedelta(seconds=1)
    # Run the scheduled job now on a real RQ worker, as the scheduler would at its time.
    manual_clock.advance(seconds=31)
    rq_job = queue.fetch_job(rq_job_id)
    assert rq_job is not None
    queue.enqueue_job(rq_job)
    worker = SimpleWorker([queue], connection=conn)
    with app.app_context():  # the worker process's app, here the test app
        assert worker.work(burst=True)
    assert FailedJobRegistry(queue=queue).count == 0
    [second] = pending_offers(app, job_id)
    [other_second] = pending_offers(app, other_id)
    assert second.wave == other_second.wave == 2
    assert {first.worker_id, other_first.worker_id}.isdisjoint(
        {second.worker_id, other_second.worker_id})
    # The second wave's windows close in a later second: a timer of its own.
    later = sql(app, "SELECT expires_at FROM offers WHERE id = :o", o=second.id)[0].expires_at
    assert f"expire-offers-at-{expiry_second(later)}" in registry.get_job_ids()
    assert expiry_second(later) > expiry_second(expires_at)


def test_a_worker_who_takes_a_job_is_freed_from_other_offers(
    app: Flask, client: FlaskClient, make: Factory, settings
) -> None:
    set_settings(app, offer_wave_size=1)
    solo, solo_headers = make.worker()
    backup, _ = make.worker(lat=offset(*CENTER, north_m=3000)[0])
    _, alice = make.user(Role.RESIDENT)
    _, bob = make.user(Role.RESIDENT)
    leak = make.category("leak-repair")
    job_a = book(client, alice, job_body(leak)).json["id"]
    job_b = book(client, bob, job_body(leak)).json["id"]
    [offer_a] = pending_offers(app, job_a)
    [offer_b] = pending_offers(app, job_b)
    assert offer_a.worker_id == offer_b.worker_id == solo
    assert client.post(f"/api/v1/offers/{offer_a.id}/accept",
                       headers=solo_headers).status_code == 200
    [next_b] = pending_offers(app, job_b)
    assert next_b.worker_id == backup  # job B did not wait 30 s for an offer solo can't take


def test_unverified_worker_cannot_accept_and_retried_accept_is_idempotent(
    app: Flask, client: FlaskClient, make: Factory, settings
) -> None:
    job_id, crew = setup_job(app, client, make, workers=2, wave=2)
    offers = {o.worker_id: o.id for o in pending_offers(app, job_id)}
    (revoked_id, revoked), (good_id, good) = crew
    sql(app, "UPDATE worker_skills SET verified = false WHERE worker_id = :w", w=revoked_id)
    r = client.post(f"/api/v1/offers/{offers[revoked_id]}/accept", headers=revoked)
    assert r.status_code == 409 and r.json["error"]["code"] == "not_qualified"
    first = client.post(f"/api/v1/offers/{offers[good_id]}/accept", headers=good)
    retry = client.post(f"/api/v1/offers/{offers[good_id]}/accept", headers=good)
    assert first.status_code == retry.status_code == 200
    assert retry.json["job"]["worker"]["id"] == good_id
    assert sql(app, "SELECT count(*) AS n FROM job_events WHERE job_id = :j AND "
                    "to_status = 'assigned'", j=job_id)[0].n == 1


def test_offers_show_only_an_approximate_place(app: Flask, client: FlaskClient, make: Factory,
                                               settings) -> None:
    set_settings(app, offer_wave_size=1)
    _, worker = make.worker()
    _, resident = make.user(Role.RESIDENT)
    body = job_body(make.category("leak-repair"), lat=37.774912, lng=-122.419416,
                    address="12 Secret St, Apt 4")
    job_id = book(client, resident, body).json["id"]
    [offer] = client.get("/api/v1/offers", headers=worker).json["offers"]
    assert "address" not in offer["job"] and "lat" not in offer["job"]
    assert (offer["job"]["approx_lat"], offer["job"]["approx_lng"]) == (37.775, -122.419)
    accepted = client.post(f"/api/v1/offers/{offer['id']}/accept", headers=worker).json
    assert accepted["job"]["address"] == "12 Secret St, Apt 4"
    client.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=resident)
    after = client.get(f"/api/v1/jobs/{job_id}", headers=worker).json
    assert after["status"] == "cancelled" and after["address"] is None
    assert after["lat"] == 37.775
    assert client.get(f"/api/v1/jobs/{job_id}", headers=resident).json["address"] == (
        "12 Secret St, Apt 4")


def test_residents_do_not_see_who_else_was_asked(app: Flask, client: FlaskClient,
                                                 make: Factory) -> None:
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    _, admin = make.user(Role.ADMIN)
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    mine = client.get(f"/api/v1/jobs/{job_id}/events", headers=resident).json["events"]
    sent = next(e for e in mine if e["kind"] == "offers_sent")
    assert "worker_ids" not in sent["detail"] and sent["detail"]["wave"] == 1
    ops = client.get(f"/api/v1/jobs/{job_id}/events", headers=admin).json["events"]
    assert "worker_ids" in next(e for e in ops if e["kind"] == "offers_sent")["detail"]


def test_sweeper_command_runs_every_sweep(app: Flask, client: FlaskClient, make: Factory,
                                          manual_clock: ManualClock, settings) -> None:
    job_id, crew = setup_job(app, client, make, workers=2, wave=1)
    manual_clock.advance(seconds=31)
    result = app.test_cli_runner().invoke(args=["sweeper", "--once"])
    assert result.exit_code == 0, result.output
    assert "swept 1 job" in result.output
    [second] = pending_offers(app, job_id)
    assert second.worker_id == crew[1][0]
