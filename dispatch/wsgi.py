"""Web entry point: the app plus its Socket.IO server.

    gunicorn --worker-class gevent --workers 1 dispatch.wsgi:app

gevent (patched by gunicorn's gevent worker before the app loads) keeps thousands of
websockets on one process; run more processes behind a sticky load balancer, all sharing
Redis as the Socket.IO message queue. SOCKETIO_ASYNC_MODE=threading serves without gevent."""

import os

from dispatch import create_app
from dispatch.sockets import init_realtime

app = create_app()
init_realtime(app, os.environ.get("SOCKETIO_ASYNC_MODE", "gevent"))
