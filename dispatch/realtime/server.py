"""The Socket.IO server: who may connect, which rooms they may join, and location pings.

Handlers only parse, call a service and shape the answer (an acknowledgement dict); every
state change is pushed by the services after commit (see `dispatch.services.push`), through
Redis, so it reaches clients on any server process."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, current_app, request, session
from flask_login import current_user
from flask_socketio import ConnectionRefusedError, SocketIO, join_room, leave_room
from pydantic import ValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from dispatch.db import db
from dispatch.db.models import Role, User
from dispatch.domain.commands import LocationIn
from dispatch.domain.errors import (
    UNEXPECTED,
    DomainError,
    NotFound,
    Unauthenticated,
    from_validation_error,
    invalid,
    overloaded,
    refusal,
    unavailable,
    wrong_role,
)
from dispatch.domain.messages import location_refusal
from dispatch.infra import presence
from dispatch.infra.outages import is_outage
from dispatch.realtime.resync import ResyncingRedisManager
from dispatch.services import jobs, tracking
from dispatch.services.credentials import (
    LOGIN_SESSION_KEY,
    credential_key,
    login_digest_live,
    token_digest_live,
    user_for_token,
)
from dispatch.services.push import job_update_payload
from notifications.realtime import channel, job_room, user_room

log = logging.getLogger(__name__)
socketio = SocketIO()
INT8_MAX = 2**63 - 1
_USER_KEY = "socket_user_id"
_ROLE_KEY = "socket_user_role"  # kept with the connection: pings need no user lookup
# The credential the socket connected with (a bearer token's or login session's digest, and
# which of the two): ending it closes the socket, and room joins ask whether it still holds.
_CREDENTIAL_KEY = "socket_credential"
_KIND_KEY = "socket_credential_kind"
_SEEN_KEY = "socket_seen"  # when presence last heard from it (monotonic seconds)
_CHECKED_KEY = "socket_credential_checked"  # when a ping last asked if its credential holds
# Ending a credential closes its sockets at once (through the message queue); pings also ask
# now and then, as a backstop for a close that was lost (Redis restarted in between).
PING_CREDENTIAL_CHECK_S = 300.0


def init_realtime(app: Flask, async_mode: str) -> None:
    """Make this process a Socket.IO server that also delivers what others publish."""
    # async_handlers=False: a client's events run in its own connection's greenlet, in order,
    # instead of one new greenlet per event (the spawn and switch were a tenth of a ping).
    url = app.config["REDIS_URL"]
    socketio.init_app(app, message_queue=url, async_mode=async_mode, async_handlers=False,
                      client_manager=ResyncingRedisManager(url, channel=channel(url)))
    # Pings are most of the traffic (every online worker, every few seconds): their handler
    # sits on the python-socketio server itself, under an app context only. Flask-SocketIO's
    # wrapper would build a Flask request (headers, cookie session, URL match) per ping, which
    # cost as much as the ping's own work (bench/load.py).
    socketio.server.on("location", _location_handler(app), namespace="/")
    socketio.start_background_task(tracking.flush_forever, app, socketio.sleep)
    socketio.start_background_task(presence.refresh_forever, app, socketio.sleep)
    path = app.wsgi_app.engineio_path  # type: ignore[attr-defined]  # what engine.io matches
    app.wsgi_app = _gunicorn_socket_for_socketio_only(  # type: ignore[method-assign]
        app.wsgi_app, path)
    route_socketio_path(app, path)


def route_socketio_path(app: Flask, path: str) -> None:
    """Give Socket.IO's path a (never served) Flask rule. Flask-SocketIO runs each connect,
    disconnect and event handler in a request context built from the socket's first request,
    and matching that path against the app's rules raised NotFound every time: an exception
    whose traceback holds its frames, some 70 objects of cyclic garbage per event, which the
    collector then freed in pauses of the whole process (bench/load.py). engine.io answers
    this path before Flask sees it."""

    def socketio_path() -> Any:
        raise NotFound("not_found", "Socket.IO is served by the web processes")

    app.add_url_rule(path, endpoint="socketio_path", view_func=socketio_path)


def _gunicorn_socket_for_socketio_only(wsgi_app: Any, socketio_path: str) -> Any:
    """python-engineio's WSGI middleware defines a class on every request that carries
    gunicorn's socket (to hand it on eventlet-style). Classes are cyclic garbage: at 40 API
    requests a second the collector freed some 40,000 such objects at once, a 60 ms pause of
    the whole process (bench/load.py). Only Socket.IO's own requests use that socket."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("PATH_INFO", "").startswith(socketio_path):
            environ.pop("gunicorn.socket", None)
        return wsgi_app(environ, start_response)

    return app


def _error(exc: DomainError) -> dict[str, Any]:
    return {"ok": False, **exc.body()}


def _connection(sid: str) -> dict[str, Any]:
    """Who this socket belongs to, kept in python-socketio's session at connect (where the
    ping handler, which has no Flask request, reads it too)."""
    return socketio.server.get_session(sid)  # type: ignore[no-any-return]


def _alive(sid: str, connection: dict[str, Any]) -> None:
    """Any event is a sign of life: presence hears of it at most every few seconds."""
    now = time.monotonic()
    if now - connection.get(_SEEN_KEY, 0.0) >= current_app.config["DISPATCH"].presence_refresh_s:
        connection[_SEEN_KEY] = now
        presence.socket_active(connection[_USER_KEY], sid)


def _credential_holds(connection: dict[str, Any]) -> bool:
    digest, kind = connection.get(_CREDENTIAL_KEY), connection.get(_KIND_KEY)
    if not isinstance(digest, str):
        return False
    if kind == "token":
        return token_digest_live(db.session, digest)
    return login_digest_live(db.session, digest)


def _caller() -> User:
    """The socket's user, while the credential it connected with still holds: a logout or
    a revoked token whose close has not reached this socket yet joins nothing."""
    sid = request.sid  # type: ignore[attr-defined]
    connection = _connection(sid)
    user_id = connection.get(_USER_KEY)
    user = db.session.get(User, user_id) if user_id else None
    if user is None or not _credential_holds(connection):
        if user_id:  # nothing more reaches it (closing it here would swallow this answer)
            leave_room(user_room(user_id))
        raise refusal(Unauthenticated, "unauthorized", "Authorization", "login.required")
    _alive(sid, connection)
    return user


@socketio.on("connect")
def on_connect(auth: dict[str, Any] | None = None) -> None:
    """Authenticate by bearer token (`auth={"token": ...}`) or the page's login session;
    everyone joins their own room, where offers and their jobs' updates arrive. A database
    or Redis out of reach refuses the connection ("unavailable", which the pages retry):
    accepted half-made, the socket would sit in no room and hear nothing, for good."""
    try:
        _connect(auth)
    except ConnectionRefusedError:
        raise
    except Exception as exc:
        db.session.rollback()
        if isinstance(exc, PoolTimeout) or is_outage(exc):
            log.warning("socket connect refused: unavailable: %s", exc)
            raise ConnectionRefusedError("unavailable") from exc
        raise


def _connect(auth: dict[str, Any] | None) -> None:
    token = auth.get("token") if isinstance(auth, dict) else None
    user: User | None = None
    credential, kind = None, "token"
    if isinstance(token, str) and token:
        user = user_for_token(db.session, token)
        credential = credential_key(token)
    elif current_user.is_authenticated:
        user = db.session.get(User, current_user.id)
        key = session.get(LOGIN_SESSION_KEY)
        credential, kind = (credential_key(key) if isinstance(key, str) else None), "login"
    if user is None or credential is None:
        raise ConnectionRefusedError("log in or pass auth={'token': <bearer token>}")
    sid = request.sid  # type: ignore[attr-defined]
    socketio.server.save_session(sid, {_USER_KEY: user.id, _ROLE_KEY: user.role,
                                       _CREDENTIAL_KEY: credential, _KIND_KEY: kind,
                                       _SEEN_KEY: time.monotonic()})
    join_room(user_room(user.id))
    presence.socket_opened(user.id, sid, credential)
    if user.role == Role.WORKER.value:
        # Connecting costs a database read anyway; reading the active job now spares the
        # first ping its own (5,000 phones reconnecting after a deploy would queue behind it).
        tracking.remember_active_job(db.session, user.id)


@socketio.on("disconnect")
def on_disconnect(*_: Any) -> None:
    connection = _connection(request.sid)  # type: ignore[attr-defined]
    user_id = connection.get(_USER_KEY)
    if user_id:
        presence.socket_closed(user_id, request.sid,  # type: ignore[attr-defined]
                               connection.get(_CREDENTIAL_KEY))


@socketio.on("watch_job")
def on_watch_job(data: Any) -> dict[str, Any]:
    """Join a job's room: only its resident, its assigned worker, or an operator."""
    try:
        user = _caller()
        job_id = data.get("job_id") if isinstance(data, dict) else None
        if (not isinstance(job_id, int) or isinstance(job_id, bool)
                or not 1 <= job_id <= INT8_MAX):
            raise invalid("job_id", "job_id.invalid")
        job = jobs.visible_job(db.session, user, job_id)
        join_room(job_room(job.id))
        return {"ok": True, "job": job_update_payload(job)}
    except DomainError as exc:
        return _error(exc)


# Sent to the pinging socket whenever a fix is not kept (the acknowledgement's body). Phones
# emit most pings without asking for an acknowledgement, so this is how they hear of a refusal.
LOCATION_REFUSED = "location_refused"


def _location_handler(app: Flask) -> Any:
    def on_location(sid: str, data: Any = None) -> dict[str, Any]:
        """A worker's position ping; the same checks as `POST /api/v1/worker/location`.

        The answer is the acknowledgement, sent only when the phone asked for one: an ack per
        ping was a fifth of the socket work of 5,000 phones (bench/load.py), so the phone asks
        now and then, and a refusal is always told by a `location_refused` event."""
        with app.app_context():
            answer = _locate(sid, data)
            if not (answer["ok"] and answer["accepted"]):
                # This process holds the socket: no trip through the message queue.
                socketio.server.emit(LOCATION_REFUSED, answer, to=sid, ignore_queue=True)
            return answer

    return on_location


def _locate(sid: str, data: Any) -> dict[str, Any]:
    try:
        caller = _connection(sid)
        role = caller.get(_ROLE_KEY)
        if _USER_KEY in caller:
            _alive(sid, caller)
            now = time.monotonic()
            if now - caller.setdefault(_CHECKED_KEY, now) >= PING_CREDENTIAL_CHECK_S:
                caller[_CHECKED_KEY] = now
                if not _credential_holds(caller):
                    socketio.server.disconnect(sid)
                    raise refusal(Unauthenticated, "unauthorized", "Authorization",
                                  "login.required")
        if role != Role.WORKER.value:
            raise wrong_role([Role.WORKER.value], role)
        fix = LocationIn.model_validate(data if isinstance(data, dict) else {})
        # Stored by the background flush; the hot path touches Redis, not PostgreSQL.
        result = tracking.record_fix(db.session, caller[_USER_KEY], fix)
        answer: dict[str, Any] = {"ok": True, "accepted": result.accepted,
                                  "reason": result.reason}
        if result.reason:  # the reason in words, for the phone to show
            answer["message"] = location_refusal(result.reason)
        return answer
    except ValidationError as exc:
        return _error(from_validation_error(exc))
    except DomainError as exc:
        db.session.rollback()
        return _error(exc)
    except Exception as exc:  # what Flask-SocketIO's error handler does for the rest
        return on_unexpected(exc)


@socketio.on_error_default
def on_unexpected(exc: Exception) -> dict[str, Any]:
    db.session.rollback()
    if isinstance(exc, PoolTimeout):
        log.warning("socket handler: overloaded: %s", exc)
        return _error(overloaded())
    if is_outage(exc):
        log.warning("socket handler: unavailable: %s", exc)
        return _error(unavailable())
    log.exception("socket handler failed")
    return _error(DomainError("internal_error", UNEXPECTED))
