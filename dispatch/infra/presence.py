"""Who has the app open, on any web process: each user's open sockets in Redis, kept by the
Socket.IO server and read by dispatching (a connected worker gets no SMS) and pushes.

A socket counts as present while it shows signs of life (its connect, its events, a
worker's location pings, at least every 45 s while online), not for a fixed hour after
connecting: a server that dies cannot say goodbye, and its sockets must stop counting soon,
so offers go by SMS again. Each socket is also filed under the credential it connected with
(a bearer token's or login session's digest), so ending that credential can close it."""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from dispatch.infra.redis import redis_connection

log = logging.getLogger(__name__)
# No sign of life for this long and a socket no longer counts as connected.
PRESENCE_TTL_S = 120
# A live socket renews its mark at most every `presence_refresh_s` (settings; 30 s), well
# inside the TTL: pings come every few seconds, and each renewal is a Redis round trip.
# Sockets are still listed (to be taken out of rooms, or closed) this long after their last
# sign of life; their server's own disconnect normally removes them long before.
FORGET_AFTER_S = 24 * 3600


def presence_key(user_id: int) -> str:
    """A sorted set: socket id -> time of its last sign of life."""
    return f"dispatch:sockets:{user_id}"


def credential_key(credential: str) -> str:
    return f"dispatch:credential-sockets:{credential}"


def socket_opened(user_id: int, sid: str, credential: str | None = None) -> None:
    now = time.time()
    pipe = redis_connection().pipeline(transaction=False)
    pipe.zadd(presence_key(user_id), {sid: now})
    pipe.zremrangebyscore(presence_key(user_id), "-inf", now - FORGET_AFTER_S)
    pipe.expire(presence_key(user_id), FORGET_AFTER_S)
    if credential:
        pipe.sadd(credential_key(credential), sid)
        pipe.expire(credential_key(credential), FORGET_AFTER_S)
    pipe.execute()


def socket_active(user_id: int, sid: str) -> None:
    """A sign of life: the socket counts as connected for another `PRESENCE_TTL_S` (and is
    listed again if Redis lost it: a restart, or a socket open longer than a day)."""
    try:
        pipe = redis_connection().pipeline(transaction=False)
        pipe.zadd(presence_key(user_id), {sid: time.time()})
        pipe.expire(presence_key(user_id), FORGET_AFTER_S)
        pipe.execute()
    except RedisError:
        log.warning("presence of user %s not refreshed (Redis unavailable)", user_id)


def socket_closed(user_id: int, sid: str, credential: str | None = None) -> None:
    pipe = redis_connection().pipeline(transaction=False)
    pipe.zrem(presence_key(user_id), sid)
    if credential:
        pipe.srem(credential_key(credential), sid)
    pipe.execute()


def _decoded(sids: object) -> list[str]:
    return sorted(s.decode() if isinstance(s, bytes) else str(s)
                  for s in sids)  # type: ignore[attr-defined]


def sockets_of(user_id: int) -> list[str]:
    """The user's open sockets, on any server process, quiet ones included (empty when Redis
    is unavailable)."""
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
    since = time.time() - PRESENCE_TTL_S
    try:
        pipe = redis_connection().pipeline(transaction=False)
        for user_id in user_ids:
            pipe.zcount(presence_key(user_id), since, "+inf")
        counts = pipe.execute()
    except RedisError:
        log.warning("presence unknown (Redis unavailable); texting users %s", user_ids)
        return set()
    return {user_id for user_id, n in zip(user_ids, counts, strict=True) if n}
