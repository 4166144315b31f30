"""The web process's ear on the Redis message queue, and what it says when it was deaf.

Pub/sub keeps nothing: whatever services pushed while this process could not hear Redis
(restarting, failing over, a cut connection) is gone, while its sockets stayed open, so the
pages never reconnect and never catch up by themselves. Once it listens again it tells every
socket it holds to re-read its state (`resync`; the pages do what they do on a reconnect),
and it tries again every second, not with python-socketio's backoff up to a minute of
deafness."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import socketio

RESYNC = "resync"
RETRY_S = 1.0


class ResyncingRedisManager(socketio.RedisManager):  # type: ignore[misc]
    def _redis_listen_with_retries(self) -> Iterator[dict[str, Any]]:
        # python-socketio's own loop (RedisManager._redis_listen_with_retries), plus the resync.
        missed = False
        while True:
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                if missed:
                    missed = False
                    self._get_logger().info("listening to Redis again: asking clients to resync")
                    self.server.emit(RESYNC, {}, namespace="/", ignore_queue=True)
                yield from self.pubsub.listen()
            except Exception as exc:
                self._get_logger().error("Cannot receive from redis (%s); retrying in %s s",
                                         exc, RETRY_S)
                missed = True
                self.server.sleep(RETRY_S)
