"""Sockets live no longer than the credential they connected with: a logout or a revoked
token closes them (on whichever server process holds them), a room join asks again whether
the credential holds, and presence lasts only while the socket shows signs of life."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
import socketio
from flask import Flask
from redis import Redis

from dispatch.db.models import Role
from dispatch.infra import presence
from tests.conftest import ARTIFACTS
from tests.helpers import FACTORY_PASSWORD, Factory, book, csrf_in, job_body, sql
from tests.live import LiveServer, SocketClient
from tests.test_realtime import clients, token  # noqa: F401  (a fixture, and a helper)


def page_session(server: LiveServer, email: str) -> requests.Session:
    """A browser's login through the login page of a live server."""
    browser = requests.Session()
    page = browser.get(f"{server.url}/login", timeout=10)
    done = browser.post(f"{server.url}/login", allow_redirects=False, timeout=10, data={
        "email": email, "password": FACTORY_PASSWORD, "csrf_token": csrf_in(page.text)})
    assert done.status_code == 302, done.text
    return browser


def cookie_header(browser: requests.Session) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in browser.cookies)}


def test_revoking_a_token_closes_its_sockets_on_every_process(
    live_server: LiveServer, second_server: LiveServer, make: Factory,
    clients: list[SocketClient]  # noqa: F811
) -> None:
    _, worker = make.worker()
    _, bystander = make.worker()
    here = SocketClient(live_server, token(worker))
    elsewhere = SocketClient(second_server, token(worker))  # another process holds this one
    other = SocketClient(live_server, token(bystander))
    clients.extend([here, elsewhere, other])
    r = requests.delete(f"{live_server.url}/api/v1/auth/token", headers=worker, timeout=10)
    assert r.status_code == 204
    here.wait_for("disconnect")
    elsewhere.wait_for("disconnect")
    assert other.sio.connected and other.call("watch_job", {"job_id": 1})["ok"] is False
    assert other.sio.connected  # a stranger's socket is untouched (and answers)
    with pytest.raises(socketio.exceptions.ConnectionError):
        SocketClient(live_server, token(worker))


def test_logout_closes_the_page_sockets_opened_with_that_session(
    live_server: LiveServer, make: Factory,
    clients: list[SocketClient]  # noqa: F811
) -> None:
    make.user(Role.RESIDENT, email="rosa@example.com")
    browser = page_session(live_server, "rosa@example.com")
    laptop = page_session(live_server, "rosa@example.com")  # another login, stays open
    page_socket = SocketClient(live_server, headers=cookie_header(browser))
    laptop_socket = SocketClient(live_server, headers=cookie_header(laptop))
    clients.extend([page_socket, laptop_socket])
    captured = cookie_header(browser)
    profile = browser.get(f"{live_server.url}/profile", timeout=10)
    out = browser.post(f"{live_server.url}/logout", allow_redirects=False, timeout=10,
                       data={"csrf_token": csrf_in(profile.text)})
    assert out.status_code == 302
    page_socket.wait_for("disconnect")
    assert laptop_socket.sio.connected
    assert laptop_socket.call("watch_job", {"job_id": 1})["error"]["code"] == "not_found"
    with pytest.raises(socketio.exceptions.ConnectionError):
        SocketClient(live_server, headers=captured)  # the copied cookie opens nothing


def test_a_new_password_closes_every_socket_of_the_account(
    live_server: LiveServer, make: Factory,
    clients: list[SocketClient]  # noqa: F811
) -> None:
    """A new password ends every token and login session (a thief's among them): the
    sockets opened with them close too."""
    make.user(Role.RESIDENT, email="rosa@example.com")
    browser = page_session(live_server, "rosa@example.com")
    page_socket = SocketClient(live_server, headers=cookie_header(browser))
    clients.append(page_socket)
    login = requests.post(f"{live_server.url}/api/v1/auth/token", timeout=10, json={
        "email": "rosa@example.com", "password": FACTORY_PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    changed = requests.post(f"{live_server.url}/api/v1/me/password", headers=headers,
                            timeout=10, json={"current_password": FACTORY_PASSWORD,
                                              "new_password": "a brand new long secret"})
    assert changed.status_code == 204, changed.text
    page_socket.wait_for("disconnect")
    with pytest.raises(socketio.exceptions.ConnectionError):
        SocketClient(live_server, headers=cookie_header(browser))


def test_a_revoked_token_can_no_longer_join_a_job_room(
    app: Flask, live_server: LiveServer, make: Factory,
    clients: list[SocketClient]  # noqa: F811
) -> None:
    """Even if the close never reached the socket (the message queue lost it), a room join
    with a dead credential is refused."""
    make.worker()
    resident_id, resident = make.user(Role.RESIDENT)
    job_id = book(app.test_client(), resident, job_body(make.category("leak-repair"))).json["id"]
    sock = SocketClient(live_server, token(resident))
    clients.append(sock)
    assert sock.call("watch_job", {"job_id": job_id})["ok"] is True  # the control
    sql(app, "UPDATE api_tokens SET revoked_at = now() WHERE user_id = :u", u=resident_id)
    answer = sock.call("watch_job", {"job_id": job_id})
    assert answer["ok"] is False and answer["error"]["code"] == "unauthorized"


@pytest.fixture(scope="module")
def eager_server(app: Flask) -> Iterator[LiveServer]:
    """A server whose sockets renew their presence on every event (not every 30 s), so a
    test can see a renewal without waiting."""
    server = LiveServer(app.config["SQLALCHEMY_DATABASE_URI"], app.config["REDIS_URL"],
                        ARTIFACTS / "logs", env={"PRESENCE_REFRESH_SECONDS": "0"})
    yield server
    server.stop()


def test_presence_lapses_without_signs_of_life_and_activity_renews_it(
    app: Flask, eager_server: LiveServer, make: Factory,
    clients: list[SocketClient]  # noqa: F811
) -> None:
    """A server that dies cannot say goodbye: its sockets must stop counting soon (offers
    then go by SMS), not an hour after they connected; a socket in use keeps counting."""
    worker_id, worker = make.worker()
    redis = Redis.from_url(app.config["REDIS_URL"])
    sock = SocketClient(eager_server, token(worker))
    clients.append(sock)
    with app.app_context():
        assert presence.connected_users([worker_id]) == {worker_id}
        (sid,) = presence.sockets_of(worker_id)
        lapsed = time.time() - 1  # as if silent, and its process gone: nobody vouched
        redis.zadd(presence.presence_key(worker_id), {sid: lapsed})
        assert presence.connected_users([worker_id]) == set()
        assert presence.sockets_of(worker_id) == [sid]  # still known, to be closed or moved
    assert sock.call("watch_job", {"job_id": 1})["ok"] is False  # any event is a sign of life
    with app.app_context():
        assert presence.connected_users([worker_id]) == {worker_id}


def test_a_credentials_sockets_are_found_again_after_redis_forgot_them(app: Flask) -> None:
    """Redis keeps nothing on disk: after a restart, the process that holds a socket files it
    under its credential again, so a logout that follows still finds and closes it."""
    redis = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        presence.socket_opened(7, "sid-kept", "digest-of-a-token")
        try:
            redis.delete(presence.credential_key("digest-of-a-token"),
                         presence.presence_key(7))  # as after a restart
            assert presence.sockets_of_credential("digest-of-a-token") == []
            presence.refresh()
            assert presence.sockets_of_credential("digest-of-a-token") == ["sid-kept"]
            assert presence.connected_users([7]) == {7}
        finally:
            presence.socket_closed(7, "sid-kept", "digest-of-a-token")
