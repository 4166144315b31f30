"""Fault drills: real processes (web, RQ workers, sweeper) on a PostgreSQL cluster and a Redis
of the drills' own, killed and restarted while jobs are live. Each drill ends the same way:
no job stuck, no offer lost or accepted twice, no text sent twice, every client in sync again.

Select them with `pytest -m drills`; they run in the normal suite too."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import socketio
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect
from redis import Redis
from rq.registry import StartedJobRegistry

from dispatch import create_app
from dispatch.db import db
from dispatch.db.models import Role
from dispatch.infra.config import _sqlalchemy_url
from dispatch.infra.presence import connected_users
from dispatch.infra.queues import TIMERS
from tests.conftest import ARTIFACTS, MUTABLE_TABLES
from tests.helpers import CENTER, Factory, job_body, offset, set_settings, sql
from tests.live import free_port
from tests.prism import PrismServer
from tests.servers import (
    PostgresCluster,
    Process,
    app_process,
    http_status,
    redis_server,
    wait_until,
    web_process,
)
from tests.test_browser import PHONE, browser, login

pytestmark = pytest.mark.drills
__all__ = ["browser"]  # test_browser's Chromium, for the drill that watches a real page

LOGS = ARTIFACTS / "logs"
# Short windows: the drills see expiries happen rather than wait long for them; long enough
# that a test's accept, on a busy machine, lands inside one.
OFFER_WINDOW_S = 5
AUTH_TOKEN = "drill-auth-token"


@dataclass
class Stack:
    """The drills' own servers and the app's processes on them."""

    app: Flask  # in this process, on the drills' database: factories and reads
    pg: PostgresCluster
    redis: Process
    redis_url: str
    web: Process
    web_url: str
    timers: Process
    messages: Process
    sweeper: Process

    @property
    def processes(self) -> list[Process]:
        return [self.web, self.timers, self.messages, self.sweeper]


@pytest.fixture(scope="module")
def stack(prism: PrismServer) -> Iterator[Stack]:
    pg = PostgresCluster(LOGS)
    started: list[Process] = []
    try:
        database_url = pg.create_database("dispatch_drills")
        redis_port = free_port()
        redis = redis_server(redis_port, LOGS)
        started.append(redis)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        app = create_app({"SQLALCHEMY_DATABASE_URI": _sqlalchemy_url(database_url),
                          "REDIS_URL": redis_url, "TESTING": True})
        app.config["DISPATCH"] = dataclasses.replace(
            app.config["DISPATCH"], twilio_auth_token=AUTH_TOKEN,
            twilio_api_base_url=prism.url, offer_window_s=OFFER_WINDOW_S, offer_wave_size=1)
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            db.session.remove()
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "PYTHONUNBUFFERED": "1", "TWILIO_API_BASE_URL": prism.url,
               "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OFFER_WINDOW_SECONDS": str(OFFER_WINDOW_S),
               "OFFER_WAVE_SIZE": "1", "SWEEP_INTERVAL_SECONDS": "0.5",
               "PRESENCE_TTL_SECONDS": "3"}
        web_port = free_port()
        web = web_process(web_port, env, LOGS)
        started.append(web)
        python = Path(sys.executable).name
        timers = app_process("worker-timers",
                             [python, "-m", "dispatch.entrypoints.rq_worker", "timers"], env, LOGS)
        started.append(timers)
        messages = app_process("worker-messages",
                               [python, "-m", "dispatch.entrypoints.rq_worker", "messages"],
                               env, LOGS)
        started.append(messages)
        sweeper = app_process("sweeper", ["flask", "--app", "dispatch", "sweeper"], env, LOGS)
        started.append(sweeper)
        yield Stack(app, pg, redis, redis_url, web, f"http://127.0.0.1:{web_port}", timers,
                    messages, sweeper)
    finally:
        for process in reversed(started):
            process.stop()
        pg.destroy()


@pytest.fixture
def drill(stack: Stack) -> Iterator[Stack]:
    """Every server up at the start of a drill; the drill's rows gone after it."""
    if not stack.redis.alive:
        stack.redis.start()
    for process in stack.processes:
        if not process.alive:
            process.start()
    yield stack
    for process in stack.processes:  # a drill that failed half-way may have left one down
        if not process.alive:
            process.start()
    wait_until(lambda: _truncate(stack.pg.url("dispatch_drills")), "the drill's rows removed")
    Redis.from_url(stack.redis_url).flushdb()


def _truncate(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute("SET dispatch.ledger_maintenance = 'on'")  # see migration 0031
        conn.execute(f"TRUNCATE {', '.join(MUTABLE_TABLES)} RESTART IDENTITY CASCADE")
    return True


# --- what every drill ends with -------------------------------------------------------------

def api(stack: Stack, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
    return requests.request(method, f"{stack.web_url}/api/v1{path}", headers=headers,
                            timeout=30, **kwargs)


def assert_settled(stack: Stack, job_ids: list[int]) -> None:
    """No job stuck, no offer lost or accepted twice, no text sent twice.

    - every job is assigned (or further), or still dispatching and worked: an offer whose
      window is open, or everyone in reach asked and the sweeper looking on
      (`waiting_for_workers`); none dispatching with an overdue offer nobody expired;
    - no job has two accepted offers, no worker holds two active jobs;
    - every text left the outbox (sent, or skipped once expired) after one attempt."""
    app = stack.app

    def cascade_moving() -> bool:
        stuck = sql(app, """
SELECT j.id FROM jobs j WHERE j.id = ANY(:ids) AND j.status = 'dispatching'
   AND (EXISTS (SELECT 1 FROM offers o WHERE o.job_id = j.id AND o.status = 'pending'
                AND o.expires_at < now() - interval '3 seconds')
        OR (NOT EXISTS (SELECT 1 FROM offers o WHERE o.job_id = j.id AND o.status = 'pending')
            AND NOT EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.id
                            AND e.kind = 'waiting_for_workers')))""", ids=job_ids)
        return not stuck

    wait_until(cascade_moving, f"jobs {job_ids} are assigned or still worked")
    twice = sql(app, "SELECT job_id, count(*) FROM offers WHERE status = 'accepted' "
                     "GROUP BY job_id HAVING count(*) > 1")
    assert twice == []
    double_booked = sql(app, "SELECT worker_id FROM jobs WHERE status IN "
                             "('assigned', 'en_route', 'arrived', 'in_progress') "
                             "AND queued_behind_job_id IS NULL "
                             "GROUP BY worker_id HAVING count(*) > 1")
    assert double_booked == []

    def texts_out() -> bool:
        return not waiting_texts()

    def waiting_texts() -> list[Any]:
        return sql(app, "SELECT id, event, status, attempts, last_error FROM notifications "
                        "WHERE status NOT IN ('sent', 'delivered', 'skipped')")

    try:
        wait_until(texts_out, "every text is sent or skipped (expired)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; waiting: {waiting_texts()}") from None
    assert sql(app, "SELECT id, attempts FROM notifications WHERE attempts > 1") == []


def crew(make: Factory, n: int) -> list[tuple[int, dict[str, str]]]:
    """`n` online workers north of the centre, nearest first (so offers go in this order)."""
    return [make.worker(lat=offset(*CENTER, north_m=400 * (i + 1))[0]) for i in range(n)]


@contextmanager
def api_process(stack: Stack, window_s: int) -> Iterator[FlaskClient]:
    """This process's app serving the API, as an api process (WEB_ROLE=api) would, with
    offer windows of `window_s`: for a drill that must act before a window closes, however
    busy the machine, or that needs the API while the web process is down."""
    original = stack.app.config["DISPATCH"]
    set_settings(stack.app, offer_window_s=window_s)
    try:
        yield stack.app.test_client()
    finally:
        stack.app.config["DISPATCH"] = original


def book(stack: Stack, resident: dict[str, str], make: Factory, key: str,
         window_s: int | None = None) -> int:
    """A job booked through the web process, or with `window_s` through `api_process`."""
    body, headers = job_body(make.category("leak-repair")), {**resident, "Idempotency-Key": key}
    if window_s is None:
        r = api(stack, "POST", "/jobs", headers, json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])
    with api_process(stack, window_s) as client:
        answer = client.post("/api/v1/jobs", json=body, headers=headers)
    assert answer.status_code == 201, answer.json
    return int(answer.json["id"])


def pending_offer(stack: Stack, job_id: int, worker_id: int) -> int:
    """The id of the worker's open offer for the job, once it has one."""
    def found() -> int | None:
        rows = sql(stack.app, "SELECT id FROM offers WHERE job_id = :j AND worker_id = :w "
                              "AND status = 'pending' AND expires_at > now()",
                   j=job_id, w=worker_id)
        return rows[0].id if rows else None

    return wait_until(found, f"worker {worker_id} is offered job {job_id}")


class PageClient:
    """What a page does with its socket (static/js/work.js, job.js), in Python: it keeps the
    offers and the job it was told of, and re-reads them over HTTP on every (re)connect and
    whenever the server says `resync` (its pushes may have been lost). Reconnects as the
    browser's socket.io-client does, only sooner."""

    def __init__(self, stack: Stack, headers: dict[str, str], job_id: int | None = None) -> None:
        self.stack, self.headers, self.job_id = stack, headers, job_id
        self.offers: set[int] = set()
        self.job_status: str | None = None
        self.rereads = 0
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                   reconnection_delay_max=1, reconnection_attempts=0)
        self.sio.on("connect", self._reread_later)
        self.sio.on("resync", self._reread_later)
        self.sio.on("offer", lambda offer: self.offers.add(offer["id"]))
        self.sio.on("job_update", self._job_update)
        token = headers["Authorization"].split()[1]
        self.sio.connect(stack.web_url, auth={"token": token}, transports=["websocket"],
                         wait_timeout=10)

    def _job_update(self, job: dict[str, Any]) -> None:
        if job["id"] == self.job_id:
            self.job_status = job["status"]

    def _reread_later(self, *_: Any) -> None:
        # Not in the handler itself: it runs on the socket's reading thread, and an
        # acknowledged emit (watch_job) waits for that thread.
        self.sio.start_background_task(self._reread)

    def _reread(self) -> None:
        try:
            offers = api(self.stack, "GET", "/offers", self.headers)
            if offers.status_code == 200:
                self.offers |= {o["id"] for o in offers.json()["offers"]}
            if self.job_id is not None:
                answer = self.sio.call("watch_job", {"job_id": self.job_id}, timeout=10)
                if answer and answer.get("ok"):
                    self.job_status = answer["job"]["status"]
            self.rereads += 1
        except Exception:  # the server went away again: the next connect re-reads
            pass

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture
def pages() -> Iterator[list[PageClient]]:
    opened: list[PageClient] = []
    yield opened
    for page in opened:
        page.close()


def offer_closed_by(stack: Stack, offer_id: int) -> datetime:
    [row] = sql(stack.app, "SELECT expires_at FROM offers WHERE id = :o", o=offer_id)
    return row.expires_at


def wait_past(moment: datetime, what: str) -> None:
    wait_until(lambda: datetime.now(UTC) > moment, what)


# --- PostgreSQL -----------------------------------------------------------------------------

def test_postgres_restart_answers_503_meanwhile_and_the_cascade_goes_on(
        drill: Stack, pages: list[PageClient]) -> None:
    """PostgreSQL stops with an offer out and its window closes during the outage (the RQ
    timer fires into the outage and fails). Meanwhile every request and socket call answers
    at once, 503 (`unavailable`) in the API's error shape, never 500 and never a hang;
    afterwards the pools reconnect, the sweeper moves the job on to the next worker, whose
    page shows the offer, and the resident's page shows the accept."""
    make = Factory(drill.app)
    (first, _), (second, second_headers) = crew(make, 2)
    _, resident = make.user(Role.RESIDENT)
    job_id = book(drill, resident, make, "pg-1", window_s=6)
    offer = pending_offer(drill, job_id, first)
    closes = offer_closed_by(drill, offer)
    second_page, resident_page = PageClient(drill, second_headers), PageClient(drill, resident,
                                                                               job_id)
    pages.extend([second_page, resident_page])
    wait_until(lambda: resident_page.job_status == "dispatching", "the job page shows the job")

    drill.pg.stop()
    try:
        for path in (f"/jobs/{job_id}", "/offers"):
            began = time.monotonic()
            r = api(drill, "GET", path, resident if path.startswith("/jobs") else second_headers)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.json()["error"]["code"] == "unavailable"
            assert r.headers.get("Retry-After")
            assert time.monotonic() - began < 10  # answered, not hung on the pool
        assert http_status(f"{drill.web_url}/healthz") == 503
        answer = resident_page.sio.call("watch_job", {"job_id": job_id}, timeout=30)
        assert answer["ok"] is False and answer["error"]["code"] == "unavailable", answer
        page = requests.get(f"{drill.web_url}/login", timeout=30)
        assert page.status_code in (200, 503)  # the login form needs no database
        wait_past(closes, "the first offer's window closes during the outage")
    finally:
        drill.pg.start()

    second_offer = pending_offer(drill, job_id, second)
    wait_until(lambda: second_offer in second_page.offers, "the worker's page shows the offer")
    r = api(drill, "POST", f"/offers/{second_offer}/accept", second_headers)
    assert r.status_code == 200, r.text
    assert r.json()["job"]["status"] == "assigned"
    wait_until(lambda: resident_page.job_status == "assigned", "the job page shows the worker")
    [expired] = sql(drill.app, "SELECT status FROM offers WHERE id = :o", o=offer)
    assert expired.status == "expired"
    assert all(p.alive for p in drill.processes)  # nothing died of the outage
    assert_settled(drill, [job_id])


# --- Redis ----------------------------------------------------------------------------------

def test_redis_restart_loses_nothing_and_pages_catch_up(
        drill: Stack, pages: list[PageClient], browser: Browser) -> None:
    """Redis dies (without persistence: timers, presence and queued work are gone) while a
    job is being offered, and comes back empty. Meanwhile a decline still sends the next
    wave (PostgreSQL holds the state), requests that need Redis answer 503, never 500.
    Afterwards the lost offer timer is the sweeper's, the lost text the sweeper hands to
    the queue again, the open pages, whose pushes were lost, are told to re-read, and the
    RQ timers run again."""
    make = Factory(drill.app)
    (first, first_headers), (second, second_headers), (third, third_headers) = crew(make, 3)
    _, resident = make.user(Role.RESIDENT)
    job_id = book(drill, resident, make, "redis-1", window_s=120)
    offer = pending_offer(drill, job_id, first)
    # The second worker's Work page in a real browser (static/js/work.js), the resident's
    # job page as its Python stand-in.
    context = browser.new_context(base_url=drill.web_url, viewport=PHONE)
    work = context.new_page()
    [email] = sql(drill.app, "SELECT email FROM users WHERE id = :u", u=second)
    login(work, email.email)
    work.goto("/work")
    with drill.app.app_context():
        wait_until(lambda: connected_users([second]), "the Work page's socket is open")
    resident_page = PageClient(drill, resident, job_id)
    pages.append(resident_page)
    wait_until(lambda: resident_page.job_status == "dispatching", "the job page shows the job")

    drill.redis.kill()
    try:
        with api_process(drill, 120) as client:  # the next offer outlives the restart
            r = client.post(f"/api/v1/offers/{offer}/decline", headers=first_headers)
        assert r.status_code == 200, r.json  # the state is PostgreSQL's
        assert http_status(f"{drill.web_url}/healthz") == 503
        ping = api(drill, "POST", "/worker/location", first_headers,
                   json={"lat": CENTER[0], "lng": CENTER[1], "accuracy_m": 10})
        assert ping.status_code in (200, 202, 503), ping.text
        if ping.status_code == 503:
            assert ping.json()["error"]["code"] == "unavailable"
    finally:
        drill.redis.start()

    second_offer = pending_offer(drill, job_id, second)
    # The push of that offer went nowhere; the page, still connected, learns of it all the same.
    expect(work.locator(f"#offer-{second_offer}")).to_be_visible(timeout=30_000)
    context.close()
    r = api(drill, "POST", f"/offers/{second_offer}/accept", second_headers)
    assert r.status_code == 200, r.text
    wait_until(lambda: resident_page.job_status == "assigned", "the job page shows the worker")
    assert http_status(f"{drill.web_url}/healthz") == 200

    # Offer timers run again (the scheduler queueing them died with Redis): with the sweeper
    # stopped, a new job's first window closes and the timer alone sends the next wave.
    drill.sweeper.stop()
    next_job = book(drill, resident, make, "redis-2")
    pending_offer(drill, next_job, first)
    r = api(drill, "POST", f"/offers/{pending_offer(drill, next_job, third)}/accept",
            third_headers)
    assert r.status_code == 200, r.text
    drill.sweeper.start()
    assert all(p.alive for p in drill.processes)
    assert_settled(drill, [job_id, next_job])


# --- the RQ worker --------------------------------------------------------------------------

def test_rq_worker_killed_while_expiring_offers_loses_no_offer(drill: Stack) -> None:
    """The timers worker is killed -9 in the middle of expiring an offer and sending the next
    wave (held there by a lock on the job's row, which the test holds). Its transaction dies
    with it: the offer is still pending, nothing half-done. The sweeper takes the job on
    (exactly one next wave), and the restarted worker runs the offer timers again: with the
    sweeper stopped, the next window's timer moves the job on to a third worker, who
    accepts. Each text once."""
    make = Factory(drill.app)
    (first, _), (second, _), (third, third_headers) = crew(make, 3)
    _, resident = make.user(Role.RESIDENT)
    drill.sweeper.stop()  # the RQ timer alone works the cascade now
    job_id = book(drill, resident, make, "rq-1", window_s=6)
    offer = pending_offer(drill, job_id, first)
    started = StartedJobRegistry(TIMERS, connection=Redis.from_url(drill.redis_url))

    def timer_waits_on_the_job() -> bool:
        waiting = sql(drill.app, "SELECT pid FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND wait_event_type = 'Lock'")
        return bool(waiting) and bool(started.get_job_ids())

    with psycopg.connect(drill.pg.url("dispatch_drills")) as hold:
        hold.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", [job_id])
        wait_until(timer_waits_on_the_job, "the offer's timer runs and waits for the job's row")
        drill.timers.kill()
        hold.rollback()
    [still] = sql(drill.app, "SELECT status FROM offers WHERE id = :o", o=offer)
    assert still.status == "pending"  # the killed expiry left nothing half-done

    drill.timers.start()
    drill.sweeper.start()  # the net: the killed timer's work is overdue
    second_offer = pending_offer(drill, job_id, second)
    drill.sweeper.stop()  # from here the restarted worker's timers alone
    pending_offer(drill, job_id, third)
    [lapsed] = sql(drill.app, "SELECT status FROM offers WHERE id = :o", o=second_offer)
    assert lapsed.status == "expired"
    r = api(drill, "POST", f"/offers/{pending_offer(drill, job_id, third)}/accept",
            third_headers)
    assert r.status_code == 200, r.text
    waves = sql(drill.app, "SELECT wave, count(*) AS n FROM offers WHERE job_id = :j "
                           "GROUP BY wave ORDER BY wave", j=job_id)
    assert [(w.wave, w.n) for w in waves] == [(1, 1), (2, 1), (3, 1)]  # no wave sent twice
    [expired] = sql(drill.app, "SELECT status FROM offers WHERE id = :o", o=offer)
    assert expired.status == "expired"
    drill.sweeper.start()
    assert_settled(drill, [job_id])


# --- a web process holding sockets ----------------------------------------------------------

def test_web_process_killed_holding_sockets_pages_reconnect_and_catch_up(
        drill: Stack, pages: list[PageClient]) -> None:
    """The web process dies (kill -9) with the workers' and the resident's pages connected
    to it. While it is down the API goes on (an `api` process, WEB_ROLE=api: here this
    process's app) and the first worker declines: the job goes to the next worker, a push
    nobody can deliver. A new web process comes up on the same address; the pages reconnect
    and re-read, so the next worker sees the offer and the resident the accept. The sockets
    the dead process held do not count as open apps afterwards: a worker who then closes the
    app is texted their next offer."""
    make = Factory(drill.app)
    (first, first_headers), (second, second_headers) = crew(make, 2)
    _, resident = make.user(Role.RESIDENT)
    first_page, second_page = PageClient(drill, first_headers), PageClient(drill, second_headers)
    pages.extend([first_page, second_page])
    job_id = book(drill, resident, make, "web-1", window_s=120)
    offer = pending_offer(drill, job_id, first)
    resident_page = PageClient(drill, resident, job_id)
    pages.append(resident_page)
    wait_until(lambda: offer in first_page.offers, "the first worker's page shows the offer")

    drill.web.kill()
    with api_process(drill, 120) as client:  # the next offer outlives the web's restart
        r = client.post(f"/api/v1/offers/{offer}/decline", headers=first_headers)
    assert r.status_code == 200, r.json
    second_offer = pending_offer(drill, job_id, second)
    drill.web.start()
    wait_until(lambda: second_offer in second_page.offers,
               "the second worker's page, reconnected, shows the offer")
    r = api(drill, "POST", f"/offers/{second_offer}/accept", second_headers)
    assert r.status_code == 200, r.text
    wait_until(lambda: resident_page.job_status == "assigned", "the job page shows the worker")

    first_page.close()  # the first worker closes the app
    wait_until(lambda: first_page.sio.connected is False, "the first worker's page is closed")
    with drill.app.app_context():  # its socket on the dead process lapses, unvouched for
        wait_until(lambda: not connected_users([first]), "the first worker has no app open")
    next_job = book(drill, resident, make, "web-2")
    pending_offer(drill, next_job, first)
    texted = sql(drill.app, "SELECT id FROM notifications WHERE user_id = :w AND job_id = :j "
                            "AND event = 'offer'", w=first, j=next_job)
    assert texted, "a worker with no app open was not texted the offer"
    assert_settled(drill, [job_id, next_job])
