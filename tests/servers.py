"""Servers a test owns and may kill: its own PostgreSQL cluster, its own Redis, and the app's
processes (web, RQ workers, sweeper), each started in its own session so that a kill -9 takes
its children with it. The fault drills (tests/test_fault_drills.py) stop and restart them
while jobs are live; nothing here is shared with the rest of the suite."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from tests.live import ROOT, free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
# Generous: two cores shared by a whole team; waits end as soon as the condition holds.
DEADLINE_S = 60.0
T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, timeout: float = DEADLINE_S,
               every: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy (returned); fail after `timeout`
    naming `what`. Exceptions count as "not yet" (a server being restarted refuses)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # not ready yet
            last = exc
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f} s: {what}" + (f" (last: {last!r})"
                                                                    if last else ""))


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresCluster:
    """A throwaway PostgreSQL cluster (PostGIS is in the server's extensions) on a free port,
    stopped and started on that same port, so the app's URL stays valid across a restart."""

    def __init__(self, log_dir: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dispatch-drill-pg-"))
        self.data = self.dir / "data"
        # The server writes its log where it may (the checkout may be closed to its user);
        # `destroy` keeps a copy with the other logs.
        self.log = self.dir / "postgres.log"
        self.kept_log = log_dir / f"drill-postgres-{os.getpid()}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U",
                                     "postgres", "--auth=trust", "-E", "UTF8",
                                     "--locale=C.UTF-8", "--no-sync"]),
                       check=True, cwd="/", capture_output=True)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # fsync off: a drill's data is thrown away, and the machine's disk is shared.
        options = f"-p {self.port} -k '' -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                                     str(self.log), "-o", options, "-w", "-t", "60", "start"]),
                       check=True, cwd="/", stdout=subprocess.DEVNULL)
        wait_until(lambda: psycopg.connect(self.url(), connect_timeout=2).close() or True,
                   "PostgreSQL accepts connections")

    def stop(self) -> None:
        """A fast shutdown: open sessions are ended, as in a crash or a failover."""
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m",
                                     "fast", "-w", "-t", "60", "stop"]),
                       check=True, cwd="/", stdout=subprocess.DEVNULL)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        if self.log.exists():
            shutil.copyfile(self.log, self.kept_log)
        shutil.rmtree(self.dir, ignore_errors=True)


class Process:
    """One of the app's processes (or a server), leading its own session: `kill()` sends
    SIGKILL to the whole group (gunicorn's worker, RQ's work horse), as a crash would, and
    `start()` runs the same command again."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path,
                 ready: Callable[[], Any] | None = None) -> None:
        self.name, self.command, self.env, self.ready = name, command, env, ready
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"drill-{name}-{os.getpid()}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log_path.open("a") as log:
            log.write(f"\n===== starting {self.name} =====\n")
            log.flush()
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env,
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        if self.ready is not None:
            wait_until(self._ready, f"{self.name} is ready (see {self.log_path})")

    def _ready(self) -> Any:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}; "
                                 f"see {self.log_path}")
        assert self.ready is not None
        return self.ready()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9 of the process and everything it started."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The status `url` answers with (any status: the server listens)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def redis_server(port: int, log_dir: Path) -> Process:
    """A Redis of the test's own, without persistence: a restart loses everything, as the
    design allows ("Redis holds only what can be rebuilt")."""
    import redis

    def ready() -> bool:
        return bool(redis.Redis(port=port, socket_timeout=2).ping())

    return Process("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"], dict(os.environ),
                   log_dir, ready)


def app_process(name: str, args: list[str], env: dict[str, str], log_dir: Path,
                ready: Callable[[], Any] | None = None) -> Process:
    """A process of the app, started the way scripts/services.sh starts it."""
    return Process(name, [str(Path(sys.executable).with_name(args[0])), *args[1:]], env,
                   log_dir, ready)


def web_process(port: int, env: dict[str, str], log_dir: Path) -> Process:
    """gunicorn with the gevent worker, as `make run` serves; ready once /livez answers
    (which needs neither PostgreSQL nor Redis: it is restarted during their outages too)."""
    return app_process("web", ["gunicorn", "--bind", f"127.0.0.1:{port}", "--worker-class",
                               "gevent", "--workers", "1", "--worker-connections", "1000",
                               "dispatch.entrypoints.wsgi:app"], env, log_dir,
                       lambda: http_status(f"http://127.0.0.1:{port}/livez") == 200)
