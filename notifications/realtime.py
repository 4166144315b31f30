"""Realtime pushes: any process (web, RQ worker, sweeper, a script) publishes through Redis
and every Socket.IO server process delivers to its own connected clients.

Room names are the contract with the Socket.IO server: `job:<id>` for a job's parties,
`user:<id>` for one person (a worker's offers)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


# Messages held back by `batched()`: (manager, message) in publish order.
_held: ContextVar[list[tuple[_Manager, dict[str, Any]]] | None] = ContextVar(
    "dispatch_realtime_held", default=None)


class _Manager(socketio.RedisManager):
    """python-socketio's Redis manager, whose publishes `batched()` can hold back."""

    def _publish(self, data: dict[str, Any]) -> Any:
        held = _held.get()
        if held is None:
            return super()._publish(data)
        held.append((self, data))
        return None

    def publish_all(self, messages: list[dict[str, Any]]) -> None:
        """One round trip for many messages; one by one (with the manager's own retry)
        when the pipeline fails."""
        try:
            if not self.connected:
                self._redis_connect()
            pipe = self.redis.pipeline(transaction=False)
            for data in messages:
                pipe.publish(self.channel, self.json.dumps(data))
            pipe.execute()
        except Exception:
            log.warning("pipelined publish failed; publishing one by one", exc_info=True)
            for data in messages:
                super()._publish(data)


@contextmanager
def batched() -> Iterator[None]:
    """Publish every emit made inside in one Redis round trip per server at the end. A
    booking's pushes (the job's update, three offers) then cost one round trip, not four,
    and each round trip of a web request waits its turn in the event loop."""
    if _held.get() is not None:  # already inside a batch: the outer one publishes
        yield
        return
    held: list[tuple[_Manager, dict[str, Any]]] = []
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        by_manager: dict[int, tuple[_Manager, list[dict[str, Any]]]] = {}
        for manager, data in held:
            by_manager.setdefault(id(manager), (manager, []))[1].append(data)
        for manager, messages in by_manager.values():
            manager.publish_all(messages)


class Emitter:
    """Write-only handle on the Socket.IO message queue."""

    def __init__(self, redis_url: str) -> None:
        self._manager = _Manager(redis_url, channel=channel(redis_url), write_only=True)

    def emit(self, event: str, data: dict[str, Any], rooms: str | list[str]) -> None:
        """A list of rooms reaches each client once, even if it sits in several."""
        self._manager.emit(event, data, namespace="/", room=rooms)

    def disconnect(self, sids: list[str]) -> None:
        """Close these sockets, on whichever server process holds them. (A write-only
        manager has no server of its own to close them in, so it only publishes the
        request python-socketio's servers act on.)"""
        for sid in sids:
            self._manager._publish({"method": "disconnect", "sid": sid, "namespace": "/",
                                    "host_id": self._manager.host_id})

    def leave_room(self, sids: list[str], room: str) -> None:
        """Take these sockets out of a room, on whichever server process holds them."""
        for sid in sids:
            self._manager.leave_room(sid, "/", room)


_emitters: dict[str, Emitter] = {}


def emitter(redis_url: str) -> Emitter:
    """One emitter per Redis URL per process."""
    found = _emitters.get(redis_url)
    if found is None:
        found = _emitters[redis_url] = Emitter(redis_url)
    return found
