"""The bare baseline for bench/ingest.py: Flask-SocketIO in the same async mode (gevent under
gunicorn) with the same Redis message queue, whose `location` handler only re-emits the ping
to a room and acknowledges it: no auth, no validation, no database.

    gunicorn --worker-class gevent --workers 1 bench.echo_server:app
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask_socketio import SocketIO, join_room

app = Flask(__name__)
socketio = SocketIO(app, message_queue=os.environ["REDIS_URL"], channel="bench-echo",
                    async_mode="gevent")


@socketio.on("watch_job")
def watch(data: dict[str, Any]) -> dict[str, Any]:
    join_room(f"job:{data['job_id']}")
    return {"ok": True}


@socketio.on("location")
def location(data: dict[str, Any]) -> dict[str, Any]:
    socketio.emit("worker_location", data, to=f"job:{data['job_id']}")
    return {"ok": True, "accepted": True, "reason": None}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
