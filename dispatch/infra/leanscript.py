"""A Lua script run on Redis connections of its own, for the one Redis call every location
ping makes.

redis-py's pool does real work per command: a readiness probe of the socket (a poll, which
under gevent means a new watcher), observability counters and an argument-deprecation check.
bench/load.py measured that at a sixth of a web process's CPU with 5,000 phones pinging,
more than the command itself. This keeps idle connections in a list instead, and keeps them
safe the other way round: a connection is reused only after its reply was read in full; any
error or interruption (a greenlet killed mid-call) disconnects it, so no stale reply can
reach the next caller, which is what the probe guards against."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any

from redis import ConnectionPool
from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError


class LeanScript:
    """`script(keys, args)` runs EVALSHA (loading the script when Redis lost it) and returns
    the raw reply, like redis-py's registered scripts. One instance per process."""

    def __init__(self, url: str, source: str, max_connections: int = 64) -> None:
        template = ConnectionPool.from_url(url)
        self._connection_class = template.connection_class
        self._connection_kwargs = template.connection_kwargs
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()
        self._idle: list[AbstractConnection] = []
        # Under gevent (patched threading) callers queue here rather than open connections
        # without bound.
        self._slots = threading.BoundedSemaphore(max_connections)
        self._pid = os.getpid()

    def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        if os.getpid() != self._pid:  # forked: the parent's sockets are not ours
            self._idle, self._pid = [], os.getpid()
        with self._slots:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else self._connection_class(
                **self._connection_kwargs)
            try:
                reply = self._run(conn, keys, args)
            except (RedisConnectionError, RedisTimeoutError):
                conn.disconnect()
                if not reused:
                    raise
                # An idle connection may have died with a Redis restart: one fresh try.
                conn = self._connection_class(**self._connection_kwargs)
                try:
                    reply = self._run(conn, keys, args)
                except BaseException:
                    conn.disconnect()
                    raise
            except BaseException:
                conn.disconnect()
                raise
            self._idle.append(conn)
            return reply

    def _run(self, conn: AbstractConnection, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            conn.send_command("EVALSHA", self._sha, len(keys), *keys, *args)
            return conn.read_response()
        except NoScriptError:
            conn.send_command("SCRIPT", "LOAD", self._source)
            conn.read_response()
            conn.send_command("EVALSHA", self._sha, len(keys), *keys, *args)
            return conn.read_response()
