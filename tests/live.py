"""Real server processes for tests that need the Socket.IO server: gunicorn with the gevent
worker, exactly as `make run` serves, against the test database and Redis."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import socketio

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChildServer:
    """A helper process serving HTTP on a free port of 127.0.0.1 (`{port}` in its command),
    ready once `ready_path` answers at all: any status, even 404, means it listens."""

    def __init__(self, name: str, command: list[str], log_dir: Path, timeout: float,
                 ready_path: str = "/") -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [part.replace("{port}", str(self.port)) for part in command], cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(timeout, ready_path)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float, ready_path: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; "
                                   f"see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s; "
                           f"see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


class LiveServer:
    def __init__(self, database_url: str, redis_url: str, log_dir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"web-{self.port}.log"
        environment = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                       "PYTHONUNBUFFERED": "1", "TWILIO_API_BASE_URL": "http://127.0.0.1:9",
                       "TWILIO_VERIFY_BASE_URL": "http://127.0.0.1:9",
                       "TWILIO_AUTH_TOKEN": "test-auth-token", **(env or {})}
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(gunicorn), "--bind", f"127.0.0.1:{self.port}", "--worker-class", "gevent",
             "--workers", "1", "--worker-connections", "2000", "dispatch.entrypoints.wsgi:app"],
            cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not become ready; see {self.log_path}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


class SocketClient:
    """A python-socketio client that records every event it receives."""

    def __init__(self, server: LiveServer, token: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", lambda event, data: self.events.put((event, data)))
        # The server closing the socket (a logout, a revoked token) is an event here too.
        self.sio.on("disconnect", lambda *_: self.events.put(("disconnect", None)))
        self.sio.connect(server.url, auth={"token": token} if token else None,
                         headers=headers or {}, transports=["websocket"], wait_timeout=10)

    def call(self, event: str, data: Any) -> Any:
        return self.sio.call(event, data, timeout=10)

    def wait_for(self, event: str, match: Any = None, timeout: float = 10.0) -> Any:
        """The first `event` whose payload satisfies `match` (a predicate), within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event!r} within {timeout} s")
            try:
                name, data = self.events.get(timeout=remaining)
            except queue.Empty as exc:
                raise AssertionError(f"no {event!r} within {timeout} s") from exc
            if name == event and (match is None or match(data)):
                return data

    def received_before(self, event: str, marker: str, match: Any = None,
                        timeout: float = 10.0) -> list[Any]:
        """Every `event` that arrives before the first `marker` event whose payload satisfies
        `match`. To prove an absence, have the server send the marker after whatever must
        not arrive, along a way that keeps their order (the message queue, or this socket's
        own events, which the server handles one after another): the marker's arrival then
        shows that this socket hears the server and that the window covered it."""
        got, deadline = [], time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                name, data = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            if name == marker and (match is None or match(data)):
                return got
            if name == event:
                got.append(data)
        raise AssertionError(f"no {marker!r} within {timeout} s (received {event!r}: {got})")

    def close(self) -> None:
        self.sio.disconnect()
