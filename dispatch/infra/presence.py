"""Who has the app open, on any web process: each user's open sockets in a Redis sorted set,
kept by the Socket.IO server and read by dispatching (a connected worker gets no SMS) and
pushes.

A socket's score is the moment until which it counts as open (`presence_ttl_s` ahead), not
an hour after connecting. Two things renew it: the socket's own signs of life (its events, a
worker's location pings; `socket_active`), and the web process that holds it, which vouches
again every third of `presence_ttl_s` for the sockets it still has (`refresh_forever`). So a
process that dies without saying goodbye (kill -9, a lost machine) stops counting as anyone's
open app within `presence_ttl_s`, and its workers are texted their offers again; and the same
refresh puts a process's sockets back after a Redis restart wiped them.

Each socket is also filed under the credential it connected with (a bearer token's or login
session's digest), so ending that credential can close it on whichever process holds it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError

from dispatch.infra.redis import redis_connection

log = logging.getLogger(__name__)

# Sockets are still listed (to be taken out of rooms, or closed when their credential ends)
# this long after they lapsed; their server's own disconnect normally removes them long
# before.
FORGET_AFTER_S = 24 * 3600

# The sockets this process holds (sid -> user id and credential): what it vouches for.
_held: dict[str, tuple[int, str | None]] = {}


def presence_key(user_id: int) -> str:
    """A sorted set: socket id -> the time until which it counts as open."""
    return f"dispatch:presence:{user_id}"


def credential_key(credential: str) -> str:
    return f"dispatch:credential-sockets:{credential}"


def _ttl() -> float:
    return float(current_app.config["DISPATCH"].presence_ttl_s)


def socket_opened(user_id: int, sid: str, credential: str | None = None) -> None:
    _held[sid] = (user_id, credential)
    now = time.time()
    pipe = redis_connection().pipeline(transaction=False)
    pipe.zadd(presence_key(user_id), {sid: now + _ttl()})
    pipe.zremrangebyscore(presence_key(user_id), "-inf", now - FORGET_AFTER_S)
    pipe.expire(presence_key(user_id), FORGET_AFTER_S)
    if credential:
        pipe.sadd(credential_key(credential), sid)
        pipe.expire(credential_key(credential), FORGET_AFTER_S)
    pipe.execute()


def socket_active(user_id: int, sid: str) -> None:
    """A sign of life: the socket counts as open for another `presence_ttl_s` (and is listed
    again if Redis lost it)."""
    try:
        pipe = redis_connection().pipeline(transaction=False)
        pipe.zadd(presence_key(user_id), {sid: time.time() + _ttl()})
        pipe.expire(presence_key(user_id), FORGET_AFTER_S)
        pipe.execute()
    except RedisError:
        log.warning("presence of user %s not refreshed (Redis unavailable)", user_id)


def socket_closed(user_id: int, sid: str, credential: str | None = None) -> None:
    _held.pop(sid, None)
    pipe = redis_connection().pipeline(transaction=False)
    pipe.zrem(presence_key(user_id), sid)
    if credential:
        pipe.srem(credential_key(credential), sid)
    pipe.execute()


def refresh() -> int:
    """Vouch again for every socket this process holds, in one round trip; returns how many.
    The credential's list is written again too: after a Redis restart (or a day) ending the
    credential must still find its sockets."""
    held = list(_held.items())
    if not held:
        return 0
    until = time.time() + _ttl()
    pipe = redis_connection().pipeline(transaction=False)
    for sid, (user_id, credential) in held:
        pipe.zadd(presence_key(user_id), {sid: until})
        pipe.expire(presence_key(user_id), FORGET_AFTER_S)
        if credential:
            pipe.sadd(credential_key(credential), sid)
            pipe.expire(credential_key(credential), FORGET_AFTER_S)
    pipe.execute()
    return len(held)


def refresh_forever(app: Flask, sleep: Callable[[float], Any]) -> None:
    """The web process's background task (a greenlet under gevent)."""
    while True:
        with app.app_context():
            pause = _ttl() / 3
        sleep(pause)
        try:
            with app.app_context():
                refresh()
        except RedisError as exc:  # Redis away: its sockets lapse; the next round restores
            log.warning("presence refresh failed: %s", exc)


def open_for_good(redis: Redis, user_id: int, sid: str) -> None:
    """A socket that never lapses, for a simulated phone (closed by deleting the key)."""
    redis.zadd(presence_key(user_id), {sid: "+inf"})


def _decoded(sids: object) -> list[str]:
    return sorted(s.decode() if isinstance(s, bytes) else str(s)
                  for s in sids)  # type: ignore[attr-defined]


def sockets_of(user_id: int) -> list[str]:
    """The user's sockets, on any server process, lapsed ones included (empty when Redis is
    unavailable)."""
    try:
        return _decoded(redis_connection().zrange(presence_key(user_id), 0, -1))
    except RedisError:
        log.warning("sockets of user %s unknown (Redis unavailable)", user_id)
        return []


def sockets_of_credential(credential: str) -> list[str]:
    """The sockets opened with this credential, on any server process."""
    try:
        return _decoded(redis_connection().smembers(credential_key(credential)))
    except RedisError:
        log.warning("sockets of a credential unknown (Redis unavailable)")
        return []


def connected_users(user_ids: list[int]) -> set[int]:
    """Who of these has the app open and alive somewhere (any server process), in one round
    trip. Without Redis nobody counts as connected: the SMS goes out and dispatch carries on."""
    if not user_ids:
        return set()
    now = time.time()
    try:
        pipe = redis_connection().pipeline(transaction=False)
        for user_id in user_ids:
            pipe.zcount(presence_key(user_id), now, "+inf")
        counts = pipe.execute()
    except RedisError:
        log.warning("presence unknown (Redis unavailable); texting users %s", user_ids)
        return set()
    return {user_id for user_id, n in zip(user_ids, counts, strict=True) if n}
