"""Realtime pushes: any process (web, RQ worker, sweeper, a script) publishes through Redis
and every Socket.IO server process delivers to its own connected clients.

Room names are the contract with the Socket.IO server: `job:<id>` for a job's parties,
`user:<id>` for one person (a worker's offers)."""

from __future__ import annotations

import logging
from typing import Any

import socketio

CHANNEL = "dispatch-socketio"
log = logging.getLogger(__name__)


def channel(redis_url: str) -> str:
    """The pub/sub channel for this Redis URL. Pub/sub ignores database numbers, so
    processes using different databases on one Redis server (a dev server, the tests, a
    benchmark) would otherwise hear each other's pushes: the channel names the database."""
    database = redis_url.rsplit("/", 1)[-1].split("?")[0]
    return f"{CHANNEL}:{database if database.isdigit() else '0'}"


def job_room(job_id: int) -> str:
    return f"job:{job_id}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


class Emitter:
    """Write-only handle on the Socket.IO message queue."""

    def __init__(self, redis_url: str) -> None:
        self._manager = socketio.RedisManager(redis_url, channel=channel(redis_url),
                                              write_only=True)

    def emit(self, event: str, data: dict[str, Any], rooms: str | list[str]) -> None:
        """A list of rooms reaches each client once, even if it sits in several."""
        self._manager.emit(event, data, namespace="/", room=rooms)


_emitters: dict[str, Emitter] = {}


def emitter(redis_url: str) -> Emitter:
    """One emitter per Redis URL per process."""
    found = _emitters.get(redis_url)
    if found is None:
        found = _emitters[redis_url] = Emitter(redis_url)
    return found
