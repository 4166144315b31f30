"""The demo fleet keeps the seeded demo city alive: stale demo workers become bookable again,
a demo worker someone is using is left alone, offers are answered and jobs done, and, in a
browser against a real server with the fleet process running, a resident's booking is met."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect
from sqlalchemy import event

from dispatch import create_app
from dispatch.db import db
from dispatch.db.models import Role, User
from dispatch.entrypoints.cli import DEMO_PASSWORD
from dispatch.entrypoints.demo_fleet import bounded_overrides, run
from dispatch.infra.config import Settings
from dispatch.services import demo_fleet
from dispatch.services.credentials import issue_token
from tests.helpers import Factory, ManualClock, book, job_body, set_settings, sql
from tests.live import ROOT, LiveServer, SocketClient
from tests.test_batches import add_unit, run_queue
from tests.test_browser import browser, new_context, page_errors, shot  # noqa: F401
from tests.test_portfolio import manager_with_property

DOMAIN = demo_fleet.DEMO_DOMAIN
CITY_HALL = demo_fleet.KEPT_FOR_PEOPLE[f"worker1@{DOMAIN}"]
STALE = "UPDATE workers SET location_at = now() - interval '700 seconds'"


def seed(app: Flask, workers: int = 6) -> None:
    result = app.test_cli_runner().invoke(args=["seed-demo", "--workers", str(workers)])
    assert result.exit_code == 0, result.output


def demo_worker(app: Flask, n: int) -> tuple[int, dict[str, str]]:
    with app.app_context():
        user = db.session.query(User).filter_by(email=f"worker{n}@{DOMAIN}").one()
        token, _ = issue_token(db.session, user, timedelta(days=1))
        db.session.commit()
        return user.id, {"Authorization": f"Bearer {token}"}


def common_skill(app: Flask) -> int:
    """A service most demo workers are verified for."""
    return sql(app, "SELECT category_id FROM worker_skills GROUP BY category_id "
                    "ORDER BY count(*) DESC, category_id LIMIT 1")[0][0]


def fleet_tick(app: Flask) -> demo_fleet.TickReport:
    with app.app_context():
        try:
            return demo_fleet.tick(db.session)
        finally:
            db.session.remove()


def test_a_tick_makes_stale_demo_workers_bookable_again(app: Flask, client: FlaskClient,
                                                         make: Factory) -> None:
    seed(app)
    sql(app, STALE)
    someone, _ = make.worker(email="plumber@example.test", seen_ago=timedelta(seconds=700))
    _, resident = make.user(Role.RESIDENT)
    body = job_body(common_skill(app), *demo_fleet.DEMO_CENTER)
    refused = book(client, resident, body)
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["error"]["code"] == "no_coverage"

    report = fleet_tick(app)

    assert len(report.played) == 6 and report.fixes == 6 and report.failures == 0
    assert someone not in report.played  # only ever the demo domain's workers
    fresh = sql(app, "SELECT user_id FROM workers WHERE location_at > now() - interval '60 s'")
    assert len(fresh) == 6 and someone not in {row[0] for row in fresh}
    served = book(client, resident, body)
    assert served.status_code == 201, served.get_json()
    assert served.get_json()["status"] == "dispatching"


def test_worker1_waits_at_city_hall_for_a_person_and_is_never_answered_for(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock) -> None:
    """The README's walk-through logs in as worker1 and books at City Hall: the fleet keeps
    worker1 there with a fresh position and leaves their offers to a person."""
    seed(app, 3)
    sql(app, STALE)
    kept, _ = demo_worker(app, 1)
    report = fleet_tick(app)
    assert kept in report.played and report.failures == 0
    row = sql(app, "SELECT ST_Distance(location, ST_MakePoint(:lng, :lat)::geography) AS m, "
                   "location_at > now() - interval '60 s' AS fresh FROM workers "
                   "WHERE user_id = :w", w=kept, lat=CITY_HALL[0], lng=CITY_HALL[1])[0]
    assert row.fresh and row.m < 30
    _, resident = make.user(Role.RESIDENT)
    skill = sql(app, "SELECT category_id FROM worker_skills WHERE worker_id = :w LIMIT 1",
                w=kept)[0][0]
    booked = book(client, resident, job_body(skill, *CITY_HALL))
    assert booked.status_code == 201, booked.get_json()
    [offer] = sql(app, "SELECT id FROM offers WHERE worker_id = :w", w=kept)
    for _ in range(5):  # past any answer delay the fleet would take
        manual_clock.advance(seconds=5)
        fleet_tick(app)
    # Never answered for worker1: left pending, or withdrawn when a fleet worker took it.
    status = sql(app, "SELECT status FROM offers WHERE id = :o", o=offer.id)[0][0]
    assert status in ("pending", "withdrawn")


def test_the_fleet_lets_a_person_answer_first(app: Flask, client: FlaskClient, make: Factory,
                                              live_server: LiveServer,
                                              manual_clock: ManualClock) -> None:
    """A job offered to worker2 (played by a person: their page is open) and to fleet
    workers: the fleet holds back while the person can still answer."""
    seed(app, 3)
    person, person_token = demo_worker(app, 2)
    skill = sql(app, "SELECT category_id FROM worker_skills WHERE worker_id = :w LIMIT 1",
                w=person)[0][0]
    # Everyone in reach and able: the same skill, next to the job.
    sql(app, "INSERT INTO worker_skills (worker_id, category_id, verified, verified_at) "
             "SELECT w.user_id, :c, true, now() FROM workers w WHERE NOT EXISTS (SELECT 1 FROM "
             "worker_skills s WHERE s.worker_id = w.user_id AND s.category_id = :c)", c=skill)
    sql(app, "UPDATE workers SET location = ST_MakePoint(-122.4194, 37.7749)::geography, "
             "location_at = now(), availability = 'online'")
    socket = SocketClient(live_server, token=person_token["Authorization"].split()[1])
    try:
        _, resident = make.user(Role.RESIDENT)
        booked = book(client, resident, job_body(skill, *demo_fleet.DEMO_CENTER))
        assert booked.status_code == 201, booked.get_json()
        job_id = booked.get_json()["id"]
        asked = {r.worker_id for r in sql(app, "SELECT worker_id FROM offers WHERE job_id = :j",
                                          j=job_id)}
        assert person in asked and len(asked) == 3
        manual_clock.advance(seconds=25)  # past every fleet answer delay, within the window
        report = fleet_tick(app)
        assert report.accepted == [] and report.declined == []
    finally:
        socket.close()
    # The person is gone (no open page): the fleet answers as usual.
    report = fleet_tick(app)
    assert report.accepted or report.declined


def test_a_quiet_tick_is_a_handful_of_statements(app: Flask,
                                                 manual_clock: ManualClock) -> None:
    seed(app, 12)
    fleet_tick(app)  # the first fixes learn (and cache) that nobody holds a job
    manual_clock.advance(seconds=3)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        report = fleet_tick(app)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert report.fixes == 12 and report.failures == 0
    # Who is played, their offers, their jobs, and one write of all their positions.
    assert len(statements) == 4, statements


def test_a_demo_worker_someone_uses_is_left_alone(app: Flask, client: FlaskClient,
                                                  live_server: LiveServer,
                                                  manual_clock: ManualClock,
                                                  settings: Settings) -> None:
    seed(app, 3)
    sql(app, STALE)
    on_page, page_token = demo_worker(app, 1)
    on_phone, phone_token = demo_worker(app, 2)
    socket = SocketClient(live_server, token=page_token["Authorization"].split()[1])
    try:
        ping = client.post("/api/v1/worker/location", headers=phone_token,
                           json={"lat": 37.78, "lng": -122.41})
        assert ping.status_code == 200, ping.get_json()
        report = fleet_tick(app)
        assert sorted(report.left_alone) == [on_page, on_phone]
        assert on_page not in report.played and on_phone not in report.played
        played = report.played
        assert len(played) == 1
        stale = sql(app, "SELECT user_id FROM workers WHERE location_at < now() - "
                         "interval '600 s' ORDER BY user_id")
        assert [row[0] for row in stale] == [on_page]  # the phone's own fix is stored

        # The phone goes quiet: after the hands-off time the fleet plays that worker again.
        manual_clock.advance(seconds=app.config["DISPATCH"].demo_fleet_hands_off_s + 1)
        report = fleet_tick(app)
        assert report.left_alone == [on_page]
        assert on_phone in report.played
    finally:
        socket.close()


def test_an_offer_to_a_demo_worker_goes_all_the_way_to_completed(
        app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock,
        settings: Settings) -> None:
    set_settings(app, demo_fleet_speed=20.0)
    seed(app)
    _, resident = make.user(Role.RESIDENT)
    booked = book(client, resident, job_body(common_skill(app), 37.78, -122.42))
    assert booked.status_code == 201, booked.get_json()
    job_id = booked.get_json()["id"]
    answered = 0
    for _ in range(600):  # at most 50 simulated minutes
        manual_clock.advance(seconds=5)
        report = fleet_tick(app)
        assert report.failures == 0
        answered += len(report.accepted) + len(report.declined)
        status = sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0][0]
        if status == "completed":
            break
    assert status == "completed"
    assert answered >= 1
    moves = sql(app, "SELECT to_status FROM job_events WHERE job_id = :j AND kind = 'status' "
                     "ORDER BY id", j=job_id)
    assert [m[0] for m in moves] == ["dispatching", "assigned", "en_route", "arrived",
                                     "in_progress", "completed"]
    free = sql(app, "SELECT availability FROM workers w JOIN jobs j ON j.worker_id = w.user_id "
                    "WHERE j.id = :j", j=job_id)
    assert free[0][0] == "online"


def test_a_demo_worker_keeps_a_booked_window(app: Flask, client: FlaskClient, make: Factory,
                                             manual_clock: ManualClock) -> None:
    seed(app)
    # worker1 is kept for people (the fleet never answers for them): out of this planning.
    sql(app, "UPDATE workers SET availability = 'offline' WHERE user_id = "
             "(SELECT id FROM users WHERE email = :e)", e=f"worker1@{DOMAIN}")
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "1A")
    slug = sql(app, "SELECT slug FROM categories WHERE id = :c", c=common_skill(app))[0][0]
    batch = client.post("/api/v1/batches", headers=pm, json={"batch_key": "fleet", "rows": [
        {"unit_id": unit, "category": slug, "description": "Dripping tap",
         "urgency": "tomorrow 09:00-12:00"}]})
    assert batch.status_code == 202 and batch.get_json()["rejected"] == [], batch.get_json()
    run_queue(app)

    def job() -> Any:
        return sql(app, "SELECT id, status, window_start, window_end, arrived_at FROM jobs")[0]

    for _ in range(60):  # a booked window's offer waits five minutes for an answer
        manual_clock.advance(seconds=10)
        fleet_tick(app)
        if job().status == "assigned":
            break
    assert job().status == "assigned"
    start, end = job().window_start, job().window_end
    manual_clock.now = start - timedelta(hours=3)
    fleet_tick(app)
    assert job().status == "assigned"  # accepted tonight, not set out hours early
    manual_clock.now = start - timedelta(hours=2)
    while job().status == "assigned" and manual_clock.now < end:
        manual_clock.advance(seconds=60)
        fleet_tick(app)
    left_at = manual_clock.now
    assert job().status == "en_route" and left_at < start
    while job().status == "en_route" and manual_clock.now < end:
        manual_clock.advance(seconds=20)
        fleet_tick(app)
    assert job().status == "arrived"
    assert start - timedelta(minutes=20) <= job().arrived_at <= end


@pytest.fixture
def fleet_process(app: Flask, live_server: LiveServer) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m dispatch.entrypoints.demo_fleet` on the test database, forty times faster."""
    log_path = Path(live_server.log_path).with_name("demo-fleet.log")
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "REDIS_URL": app.config["REDIS_URL"], "TWILIO_API_BASE_URL": "http://127.0.0.1:9",
           "DEMO_FLEET": "1", "DEMO_FLEET_SPEED": "40", "DEMO_FLEET_TICK_SECONDS": "1",
           "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "dispatch.entrypoints.demo_fleet"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    yield process
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.mark.parametrize(("asked", "told"), [
    ({"DEMO_FLEET": "0"}, b"set DEMO_FLEET=1"),
    ({"DEMO_FLEET": "1", "DEMO_FLEET_SPEED": "0"}, b"must be positive"),
])
def test_the_fleet_refuses_to_start_unless_demo_mode_is_asked_for(
        app: Flask, asked: dict[str, str], told: bytes) -> None:
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "REDIS_URL": app.config["REDIS_URL"], **asked}
    env.pop("DEMO_FLEET_TICK_SECONDS", None)
    done = subprocess.run([sys.executable, "-m", "dispatch.entrypoints.demo_fleet", "--once"],
                          cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 2
    assert told in done.stderr


def test_a_resident_books_and_a_demo_worker_arrives(
        app: Flask, browser: Browser, live_server: LiveServer,  # noqa: F811
        fleet_process: subprocess.Popen[bytes]) -> None:
    seed(app)
    sql(app, STALE)
    home = demo_fleet.DEMO_CENTER  # on land, inside the service area
    deadline = time.monotonic() + 60
    while sql(app, "SELECT count(*) FROM workers WHERE location_at < now() - interval '600 s'"
              )[0][0]:
        assert time.monotonic() < deadline, "the fleet did not refresh the demo workers"
        time.sleep(0.2)
    ctx = new_context(browser, live_server, at=(home[0], home[1]))
    page = ctx.new_page()
    errors = page_errors(page)
    try:
        page.goto("/login")
        page.fill("#email", f"resident@{DOMAIN}")
        page.fill("#password", DEMO_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/book")
        page.select_option("#category", value=str(common_skill(app)))
        page.fill("#description", "Water is coming through the ceiling")
        page.click("#locate")
        expect(page.locator("#where")).to_contain_text("Pin at")
        page.click("#submit")
        page.wait_for_url("**/jobs/*")
        expect(page.locator("#promise")).to_contain_text("Arrived at", timeout=120_000)
        shot(page, "job-demo-fleet-arrived")
        assert fleet_process.poll() is None, "the fleet process died"
        assert errors == [], errors
    finally:
        ctx.close()


def test_a_failed_tick_is_logged_and_the_fleet_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    unreachable = create_app(bounded_overrides(
        "postgresql+psycopg://nobody@127.0.0.1:9/nothing", "redis://127.0.0.1:9/0", {}))
    run(unreachable, once=True)  # returns: the loop would tick again
    assert "demo fleet tick failed" in caplog.text
