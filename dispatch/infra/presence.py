"""Who has the app open, on any web process: each user's open sockets in a Redis set, kept by
the Socket.IO server and read by dispatching (a connected worker gets no SMS) and pushes."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from dispatch.infra.redis import redis_connection

log = logging.getLogger(__name__)
# A server that dies cannot say goodbye: its sockets count as connected for at most this long
# (then offers go by SMS again).
PRESENCE_TTL_S = 3600


def presence_key(user_id: int) -> str:
    return f"dispatch:sockets:{user_id}"


def socket_opened(user_id: int, sid: str) -> None:
    pipe = redis_connection().pipeline(transaction=False)
    pipe.sadd(presence_key(user_id), sid)
    pipe.expire(presence_key(user_id), PRESENCE_TTL_S)
    pipe.execute()


def socket_closed(user_id: int, sid: str) -> None:
    redis_connection().srem(presence_key(user_id), sid)


def sockets_of(user_id: int) -> list[str]:
    """The user's open sockets, on any server process (empty when Redis is unavailable)."""
    try:
        sids = redis_connection().smembers(presence_key(user_id))
    except RedisError:
        log.warning("sockets of user %s unknown (Redis unavailable)", user_id)
        return []
    return sorted(s.decode() if isinstance(s, bytes) else str(s) for s in sids)


def connected_users(user_ids: list[int]) -> set[int]:
    """Who of these has the app open somewhere (any server process), in one round trip.
    Without Redis nobody counts as connected: the SMS goes out and dispatch carries on."""
    if not user_ids:
        return set()
    try:
        pipe = redis_connection().pipeline(transaction=False)
        for user_id in user_ids:
            pipe.scard(presence_key(user_id))
        counts = pipe.execute()
    except RedisError:
        log.warning("presence unknown (Redis unavailable); texting users %s", user_ids)
        return set()
    return {user_id for user_id, n in zip(user_ids, counts, strict=True) if n}
