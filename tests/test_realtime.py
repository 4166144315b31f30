"""Live tracking over Socket.IO on real server processes (gunicorn + gevent), Redis as the
message queue: rooms, who may join them, pushes after commit, pings, two processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import socketio
from flask import Flask
from redis import Redis
from sqlalchemy import text

from dispatch.db import db
from dispatch.db.aftercommit import on_commit
from dispatch.db.models import Role
from dispatch.domain.messages import location_refusal
from dispatch.services.tracking import fix_key
from notifications import realtime
from tests.helpers import CENTER, Factory, job_body, offset, sql
from tests.live import LiveServer, SocketClient


def token(headers: dict[str, str]) -> str:
    return headers["Authorization"].split()[1]


@pytest.fixture
def clients() -> Iterator[list[SocketClient]]:
    opened: list[SocketClient] = []
    yield opened
    for c in opened:
        c.close()


def connect(server: LiveServer, headers: dict[str, str],
            opened: list[SocketClient]) -> SocketClient:
    client = SocketClient(server, token(headers))
    opened.append(client)
    return client


def book_live(server: LiveServer, headers: dict[str, str], body: dict[str, Any],
              key: str) -> Any:
    r = requests.post(f"{server.url}/api/v1/jobs", json=body,
                      headers={**headers, "Idempotency-Key": key}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


MARKER = "marker"


def mark(app: Flask, room: str) -> None:
    """Send MARKER to a room through the message queue, behind everything already in it."""
    realtime.emitter(app.config["REDIS_URL"]).emit(MARKER, {}, room)


def test_connection_needs_a_valid_token(live_server: LiveServer) -> None:
    for auth in (None, {"token": "not-a-token"}):
        client = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect(live_server.url, auth=auth, transports=["websocket"],
                           wait_timeout=5)


def test_an_open_app_counts_as_present_until_it_disconnects(
    app: Flask, live_server: LiveServer, make: Factory
) -> None:
    """Presence decides whether an offer also goes by SMS: it must end with the socket."""
    from dispatch.infra.presence import connected_users

    worker_id, worker = make.worker()
    client = SocketClient(live_server, token(worker))
    with app.app_context():
        assert connected_users([worker_id]) == {worker_id}
        client.close()
        deadline = time.monotonic() + 5
        while connected_users([worker_id]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert connected_users([worker_id]) == set()


def test_offer_reaches_the_worker_and_job_updates_reach_the_resident(
    live_server: LiveServer, make: Factory, clients: list[SocketClient]
) -> None:
    worker_id, worker = make.worker()
    _, resident = make.user(Role.RESIDENT)
    worker_sock = connect(live_server, worker, clients)
    resident_sock = connect(live_server, resident, clients)
    job = book_live(live_server, resident, job_body(make.category("leak-repair")), "rt-1")
    offer = worker_sock.wait_for("offer", lambda o: o["job"]["id"] == job["id"])
    assert "address" not in offer["job"]
    assert resident_sock.call("watch_job", {"job_id": job["id"]})["ok"] is True
    r = requests.post(f"{live_server.url}/api/v1/offers/{offer['id']}/accept", headers=worker,
                      timeout=10)
    assert r.status_code == 200
    update = resident_sock.wait_for("job_update", lambda j: j["status"] == "assigned")
    assert update["id"] == job["id"] and update["worker"]["id"] == worker_id
    assert "address" not in update


def test_a_stranger_cannot_join_another_job_room(
    live_server: LiveServer, make: Factory, clients: list[SocketClient]
) -> None:
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    stranger_id, stranger = make.user(Role.RESIDENT)
    other_worker_id, other_worker = make.worker(skills=("dog-walking",))
    _, operator = make.user(Role.ADMIN)
    job = book_live(live_server, resident, job_body(make.category("leak-repair")), "rt-2")
    for headers in (stranger, other_worker):
        sock = connect(live_server, headers, clients)
        answer = sock.call("watch_job", {"job_id": job["id"]})
        assert answer["ok"] is False and answer["error"]["code"] == "not_found"
    bad = clients[-1].call("watch_job", {"job_id": "1; DROP"})
    assert bad["ok"] is False and bad["error"]["fields"][0]["field"] == "job_id"
    strangers = list(zip(clients, (stranger_id, other_worker_id), strict=True))
    # The positive control: an operator may watch any job and, being in neither the
    # resident's nor the strangers' rooms, hears the cancel only through the job's room.
    watcher = connect(live_server, operator, clients)
    assert watcher.call("watch_job", {"job_id": job["id"]})["ok"] is True
    requests.post(f"{live_server.url}/api/v1/jobs/{job['id']}/cancel", json={},
                  headers=resident, timeout=10)
    assert watcher.wait_for("job_update")["status"] == "cancelled"
    for sock, user_id in strangers:  # a marker queued after the cancel's update
        mark(make.app, realtime.user_room(user_id))
        assert sock.received_before("job_update", MARKER) == []


def test_pings_stream_to_the_job_room_only_while_the_job_is_active(
    app: Flask, live_server: LiveServer, make: Factory, clients: list[SocketClient]
) -> None:
    redis = Redis.from_url(app.config["REDIS_URL"])
    start = offset(*CENTER, north_m=1020)
    worker_id, worker = make.worker(lat=start[0], lng=start[1])
    _, resident = make.user(Role.RESIDENT)
    stranger_id, stranger = make.user(Role.RESIDENT)
    worker_sock = connect(live_server, worker, clients)
    resident_sock = connect(live_server, resident, clients)
    stranger_sock = connect(live_server, stranger, clients)
    job = book_live(live_server, resident, job_body(make.category("leak-repair")), "rt-3")
    assert resident_sock.call("watch_job", {"job_id": job["id"]})["ok"]
    offer = worker_sock.wait_for("offer")

    def ping(north_m: float) -> Any:
        lat, lng = offset(*CENTER, north_m=north_m)
        return worker_sock.call("location", {
            "lat": lat, "lng": lng, "accuracy_m": 8, "heading": 180, "speed_mps": 9,
            "recorded_at": datetime.now(UTC).isoformat()})

    assert ping(1010) == {"ok": True, "accepted": True, "reason": None}
    # A stream would have left before the acknowledgement: a marker queued after it to
    # the same room shows the resident hears the room, and hears it after that moment.
    mark(app, realtime.job_room(job["id"]))
    assert resident_sock.received_before("worker_location", MARKER) == []  # not assigned yet
    requests.post(f"{live_server.url}/api/v1/offers/{offer['id']}/accept", headers=worker,
                  timeout=10)
    assert worker_sock.call("watch_job", {"job_id": job["id"]})["ok"]
    redis.hdel(fix_key(worker_id), "recv")  # lift the one-fix-a-second limit for the test
    assert ping(1000)["accepted"] is True
    moved = resident_sock.wait_for("worker_location")
    assert moved["job_id"] == job["id"] and 950 < moved["distance_m"] < 1050
    # 1000 m x 1.3 circuity at 28 km/h is about 167 s, and the worker has not set out yet:
    # the 300 s start-up is still ahead, as it was in the estimate the accept gave.
    assert 450 < moved["eta_seconds"] < 485
    mark(app, realtime.user_room(stranger_id))  # queued after the position the room heard
    assert stranger_sock.received_before("worker_location", MARKER) == []
    jump = ping(9000)  # 8 km in well under a minute: a GPS jump, dropped
    assert (jump["accepted"], jump["reason"]) == (False, "implausible_jump")
    rate_limited = ping(990)
    assert (rate_limited["accepted"], rate_limited["reason"]) == (False, "rate_limited")
    invalid = worker_sock.call("location", {"lat": 123, "lng": 0})
    assert invalid["ok"] is False and invalid["error"]["fields"][0]["field"] == "lat"
    refused = resident_sock.call("location", {"lat": CENTER[0], "lng": CENTER[1]})
    assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
    expected = offset(*CENTER, north_m=1000)[0]

    def stored_lat() -> float:
        return sql(app, "SELECT ST_Y(location::geometry) AS lat FROM workers "
                        "WHERE user_id = :w", w=worker_id)[0].lat

    deadline = time.monotonic() + 5  # written by the server's background flush
    while abs(stored_lat() - expected) > 1e-9 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert abs(stored_lat() - expected) < 1e-9


def test_pings_without_acknowledgement_are_kept_and_refusals_are_told_by_event(
    app: Flask, live_server: LiveServer, make: Factory, clients: list[SocketClient]
) -> None:
    """Phones ask for an acknowledgement only now and then: an unacknowledged fix is still
    stored, and one that is not kept (or not valid) comes back as `location_refused`."""
    redis = Redis.from_url(app.config["REDIS_URL"])
    worker_id, worker = make.worker()
    _, resident = make.user(Role.RESIDENT)
    worker_sock = connect(live_server, worker, clients)
    resident_sock = connect(live_server, resident, clients)
    lat, lng = offset(*CENTER, north_m=500)

    def fix(lat: float, lng: float, at: datetime | None = None) -> dict[str, Any]:
        return {"lat": lat, "lng": lng, "accuracy_m": 8,
                "recorded_at": (at or datetime.now(UTC)).isoformat()}

    earlier = datetime.now(UTC)
    worker_sock.sio.emit("location", fix(lat, lng))  # no callback: no acknowledgement asked
    # The server handles a socket's events in order: a refusal of the fix above would come
    # before the refusal of this invalid one, which proves the refusals reach this socket.
    worker_sock.sio.emit("location", {"lat": 123, "lng": 0})
    assert worker_sock.received_before("location_refused", "location_refused",
                                       refuses_lat) == []
    deadline = time.monotonic() + 5  # kept in Redis at once, in PostgreSQL by the flush
    while time.monotonic() < deadline and not sql(
            app, "SELECT 1 FROM workers WHERE user_id = :w AND "
                 "abs(ST_Y(location::geometry) - :lat) < 1e-9", w=worker_id, lat=lat):
        time.sleep(0.1)
    assert float(redis.hget(fix_key(worker_id), "lat")) == lat
    assert sql(app, "SELECT ST_Y(location::geometry) AS lat FROM workers WHERE user_id = :w",
               w=worker_id)[0].lat == pytest.approx(lat, abs=1e-9)

    worker_sock.sio.emit("location", fix(lat + 0.0001, lng, at=earlier))  # arrived late
    refused = worker_sock.wait_for("location_refused")
    assert refused == {"ok": True, "accepted": False, "reason": "out_of_order",
                       "message": location_refusal("out_of_order")}
    worker_sock.sio.emit("location", {"lat": 123, "lng": 0})
    invalid = worker_sock.wait_for("location_refused")
    assert invalid["ok"] is False and invalid["error"]["fields"][0]["field"] == "lat"
    resident_sock.sio.emit("location", fix(lat, lng))
    wrong_role = resident_sock.wait_for("location_refused")["error"]
    assert wrong_role["code"] == "forbidden"
    assert wrong_role["fields"][0]["problem"] == (
        "This is for workers. You are logged in as a resident.")
    # A kept fix that asked for its acknowledgement gets that and nothing else.
    redis.hdel(fix_key(worker_id), "recv")
    assert worker_sock.call("location", fix(lat, lng + 0.0001))["accepted"] is True
    worker_sock.sio.emit("location", {"lat": 123, "lng": 0})  # refused after it, as above
    assert worker_sock.received_before("location_refused", "location_refused",
                                       refuses_lat) == []


def refuses_lat(answer: dict[str, Any]) -> bool:
    """The refusal of a fix whose latitude is invalid (and of nothing else)."""
    fields = answer.get("error", {}).get("fields", [])
    return answer["ok"] is False and [f["field"] for f in fields] == ["lat"]


def test_event_caused_on_one_process_reaches_a_client_on_another(
    live_server: LiveServer, second_server: LiveServer, make: Factory,
    clients: list[SocketClient]
) -> None:
    _, worker = make.worker()
    _, resident = make.user(Role.RESIDENT)
    worker_sock = connect(second_server, worker, clients)  # listening on process B
    job = book_live(live_server, resident, job_body(make.category("leak-repair")), "rt-4")
    offer = worker_sock.wait_for("offer", lambda o: o["job"]["id"] == job["id"])
    assert offer["status"] == "pending"


def test_pushes_are_sent_after_commit_and_never_after_rollback(app: Flask) -> None:
    sent: list[str] = []
    with app.app_context():
        on_commit(db.session, lambda _: sent.append("rolled back"))
        db.session.rollback()
        on_commit(db.session, lambda payload: sent.append(payload), lambda: "committed")
        assert sent == []  # nothing before the commit
        db.session.commit()
    assert sent == ["committed"]


def read_until(listener: Any, last: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """What a subscriber gets before the first message for which `last(message)` holds."""
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = listener.get_message(timeout=0.5)
        if message is not None:
            if last(message):
                return got
            got.append(message)
    raise AssertionError(f"the awaited message did not come within {timeout} s: {got}")


def listen(url: str) -> Any:
    """A subscriber to the Socket.IO channel, subscribed once this returns: Redis answers a
    PING after the SUBSCRIBE sent before it, so nothing published from now on passes it by."""
    listener = Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(realtime.channel(url))
    listener.ping()
    read_until(listener, lambda m: m["type"] == "pong")
    return listener


def before_marker(url: str, listener: Any) -> list[dict[str, Any]]:
    """Every message published on the channel before this call, to the last one: a marker
    published now arrives after them all, so there is no time window to guess."""
    marker = json.dumps({"marker": time.monotonic_ns()}).encode()
    Redis.from_url(url).publish(realtime.channel(url), marker)
    return [json.loads(m["data"])
            for m in read_until(listener, lambda m: m["data"] == marker)]


def test_batched_pushes_are_held_to_the_end_of_the_block_and_leave_in_order(app: Flask) -> None:
    """A commit's pushes leave in one Redis round trip: none before the block ends, all of
    them, in order, after it."""
    url = app.config["REDIS_URL"]
    listener = listen(url)
    try:
        with realtime.batched():
            for n in range(3):
                realtime.emitter(url).emit("tick", {"n": n}, realtime.job_room(1))
            with realtime.batched():  # an inner batch leaves with the outer one
                realtime.emitter(url).emit("tick", {"n": 3}, realtime.job_room(1))
            assert [m for m in before_marker(url, listener) if m.get("event") == "tick"] == []
        received = []
        deadline = time.monotonic() + 5
        while len(received) < 4 and time.monotonic() < deadline:
            message = listener.get_message(timeout=0.5)
            if message is not None:
                received.append(json.loads(message["data"]))
        assert [m["data"][0]["n"] for m in received] == [0, 1, 2, 3]
        assert {m["event"] for m in received} == {"tick"}
        assert {m["room"] for m in received} == {"job:1"}
    finally:
        listener.close()


def test_a_savepoint_release_is_not_the_commit_the_pushes_wait_for(app: Flask) -> None:
    """SQLAlchemy fires its commit events when a SAVEPOINT is released too (the accept opens
    the masked session under one): the transaction's pushes and texts must still wait for
    the real commit, and never go when a rollback undoes the savepoint's parent."""
    sent: list[str] = []
    with app.app_context():
        on_commit(db.session, lambda payload: sent.append(payload), lambda: "committed")
        with db.session.begin_nested():
            db.session.execute(text("SELECT 1"))
        assert sent == []
        db.session.commit()
        assert sent == ["committed"]
        on_commit(db.session, lambda payload: sent.append(payload), lambda: "rolled back")
        with db.session.begin_nested():
            db.session.execute(text("SELECT 1"))
        db.session.rollback()
    assert sent == ["committed"]


def test_an_expired_offer_is_not_pushed_but_the_next_wave_is(
    app: Flask, make: Factory, manual_clock, settings
) -> None:
    """The phone closes an offer at its expires_at by itself; the expiry pushes only what is
    new: the next wave's offer."""
    from dispatch.entrypoints.tasks import expire_due_offers_task
    from tests.helpers import book, set_settings

    set_settings(app, offer_wave_size=1)
    first_id, _ = make.worker(lat=offset(*CENTER, north_m=400)[0])
    second_id, _ = make.worker(lat=offset(*CENTER, north_m=800)[0])
    _, resident = make.user(Role.RESIDENT)
    job_id = book(app.test_client(), resident, job_body(make.category("leak-repair"))).json["id"]
    url = app.config["REDIS_URL"]
    listener = listen(url)
    try:
        manual_clock.advance(seconds=31)
        with app.app_context():
            assert expire_due_offers_task() == 1
        # Everything the expiry pushed, the next wave's offer being the positive control.
        received = before_marker(url, listener)
    finally:
        listener.close()
    offers = [m for m in received if m["event"] == "offer"]
    assert [(m["room"], m["data"][0]["job"]["id"]) for m in offers] == [
        ([realtime.user_room(second_id)], job_id)]
    assert [m for m in received if m["event"] == "offer_closed"] == []
    assert sql(app, "SELECT status FROM offers WHERE job_id = :j AND worker_id = :w",
               j=job_id, w=first_id)[0].status == "expired"


def test_only_socketio_requests_see_gunicorns_socket() -> None:
    """python-engineio defines a class per request that carries gunicorn's socket: cyclic
    garbage the collector frees in long pauses. Other requests go on without that socket."""
    from dispatch.realtime.server import _gunicorn_socket_for_socketio_only

    seen: list[bool] = []

    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append("gunicorn.socket" in environ)
        return [b""]

    app = _gunicorn_socket_for_socketio_only(inner, "/socket.io/")
    for path in ("/api/v1/jobs", "/socket.io/", "/healthz", "/socket.iox"):
        app({"PATH_INFO": path, "gunicorn.socket": object()}, None)
    assert seen == [False, True, False, False]


def test_an_api_process_serves_the_api_and_pushes_to_sockets_held_elsewhere(
    app: Flask, live_server: LiveServer, make: Factory, clients: list[SocketClient]
) -> None:
    """WEB_ROLE=api (docker-compose.yml `api`): no Socket.IO server in that process; a
    booking there still reaches the worker's socket on a full web process."""
    from tests.conftest import ARTIFACTS

    api = LiveServer(app.config["SQLALCHEMY_DATABASE_URI"], app.config["REDIS_URL"],
                     ARTIFACTS / "logs", env={"WEB_ROLE": "api"})
    try:
        _, worker = make.worker()
        _, resident = make.user(Role.RESIDENT)
        worker_sock = connect(live_server, worker, clients)
        job = book_live(api, resident, job_body(make.category("leak-repair")), "rt-api")
        offer = worker_sock.wait_for("offer", lambda o: o["job"]["id"] == job["id"])
        assert offer["status"] == "pending"
        refused = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            refused.connect(api.url, auth={"token": token(worker)}, transports=["websocket"],
                            wait_timeout=5)
    finally:
        api.stop()


def test_socketio_events_match_a_rule_instead_of_raising_not_found() -> None:
    """Flask-SocketIO builds a request context per connect and event from the socket's
    first request; without a rule for the Socket.IO path, matching it raised NotFound each
    time (an exception holding its frames: cyclic garbage the collector pauses to free)."""
    from flask import request

    from dispatch.realtime.server import route_socketio_path

    bare = Flask("bare")
    with bare.test_request_context("/socket.io/", query_string={"EIO": "4"}):
        assert request.routing_exception is not None
    route_socketio_path(bare, "/socket.io/")
    with bare.test_request_context("/socket.io/", query_string={"EIO": "4"}):
        assert request.routing_exception is None
