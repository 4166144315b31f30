"""Who has the app open, on any web process: each user's open sockets in a Redis sorted set,
kept by the Socket.IO server and read by dispatching (a connected worker gets no SMS) and
pushes.

A socket's score is the moment until which it counts as open. The web process that holds it
vouches for it again every third of `presence_ttl_s` (`refresh_forever`), so a process that
dies without saying goodbye (kill -9, a lost machine) stops counting as anyone's open app
within `presence_ttl_s`, and its workers are texted their offers again, instead of for an
hour. The same refresh puts a process's sockets back after a Redis restart wiped them."""

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

# The sockets this process holds (sid -> user id): what it vouches for.
_held: dict[str, int] = {}


def presence_key(user_id: int) -> str:
    return f"dispatch:presence:{user_id}"


def _ttl() -> float:
    return float(current_app.config["DISPATCH"].presence_ttl_s)


def socket_opened(user_id: int, sid: str) -> None:
    _held[sid] = user_id
    now = time.time()
    pipe = redis_connection().pipeline(transaction=False)
    pipe.zadd(presence_key(user_id), {sid: now + _ttl()})
    pipe.zremrangebyscore(presence_key(user_id), "-inf", now)  # lapsed: their process died
    pipe.expire(presence_key(user_id), int(_ttl()) + 1)
    pipe.execute()


def socket_closed(user_id: int, sid: str) -> None:
    _held.pop(sid, None)
    redis_connection().zrem(presence_key(user_id), sid)


def refresh() -> int:
    """Vouch again for every socket this process holds, in one round trip; returns how many."""
    held = list(_held.items())
    if not held:
        return 0
    until = time.time() + _ttl()
    pipe = redis_connection().pipeline(transaction=False)
    for sid, user_id in held:
        pipe.zadd(presence_key(user_id), {sid: until})
        pipe.expire(presence_key(user_id), int(_ttl()) + 1)
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


def sockets_of(user_id: int) -> list[str]:
    """The user's open sockets, on any server process (empty when Redis is unavailable)."""
    try:
        sids = redis_connection().zrangebyscore(presence_key(user_id), time.time(), "+inf")
    except RedisError:
        log.warning("sockets of user %s unknown (Redis unavailable)", user_id)
        return []
    return sorted(s.decode() if isinstance(s, bytes) else str(s) for s in sids)


def connected_users(user_ids: list[int]) -> set[int]:
    """Who of these has the app open somewhere (any server process), in one round trip.
    Without Redis nobody counts as connected: the SMS goes out and dispatch carries on."""
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
