"""The app's Redis connection: one blocking pool per process."""

from __future__ import annotations

from flask import current_app
from redis import BlockingConnectionPool, Redis

# Under gevent hundreds of handlers may want Redis at once: they queue for one of these
# connections rather than fail with "Too many connections".
REDIS_POOL_SIZE = 64


def redis_connection() -> Redis:
    app = current_app
    conn = app.extensions.get("dispatch.redis")
    if conn is None:
        pool = BlockingConnectionPool.from_url(app.config["REDIS_URL"],
                                               max_connections=REDIS_POOL_SIZE, timeout=10)
        conn = Redis(connection_pool=pool)
        app.extensions["dispatch.redis"] = conn
    return conn
