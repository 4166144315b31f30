"""Web entry point: the app plus its Socket.IO server.

    gunicorn --worker-class gevent --workers 1 dispatch.entrypoints.wsgi:app

gevent (patched by gunicorn's gevent worker before the app loads) keeps thousands of
websockets on one process; run more processes behind a sticky load balancer, all sharing
Redis as the Socket.IO message queue. SOCKETIO_ASYNC_MODE=threading serves without gevent."""

import os

from dispatch import create_app
from dispatch.entrypoints import collector
from dispatch.realtime.server import init_realtime

ASYNC_MODE = os.environ.get("SOCKETIO_ASYNC_MODE", "gevent")
if ASYNC_MODE == "gevent":
    import gevent

    # gevent records the spawning stack of every greenlet (for debugging); each websocket
    # runs three, so those stacks were a third of a web process's objects (bench/load.py).
    gevent.config.track_greenlet_tree = False

# What this process serves behind the proxy (docker-compose.yml): "all" (the default: the
# HTTP API, pages and Socket.IO), or "api" (everything but Socket.IO). An API process runs no
# Socket.IO server: it pushes through the Redis queue like the RQ worker, and spares itself
# decoding every message on the queue and a position writer of its own (bench/load.py).
WEB_ROLE = os.environ.get("WEB_ROLE", "all")
if WEB_ROLE not in ("all", "api"):
    raise SystemExit(f"WEB_ROLE must be 'all' or 'api', not {WEB_ROLE!r}")

app = create_app()
if WEB_ROLE == "all":
    init_realtime(app, ASYNC_MODE)
# What is loaded now (modules, the app) lives as long as the process: out of the collector's
# sight from the start, and fewer collections (see dispatch.entrypoints.collector).
collector.settle()
