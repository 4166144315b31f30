"""Ingest benchmark: N simulated worker phones (python-socketio clients) ping one web
process while watchers sit in job rooms and time each ping from its `recorded_at` to its
arrival in the room. Two phases: back-to-back (each phone sends its next fix as soon as the
last is acknowledged: the message rate the server sustains) and a fixed rate per phone (the
delivery latency below saturation). The same load runs against a bare Flask-SocketIO echo
server of the same async mode in the same run.

Every worker holds an active (en route) job, so every accepted ping is persisted and
streamed; afterwards the database must hold each worker's last accepted fix.

    python bench/ingest.py [--workers 200] [--watchers 50] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import socketio
from sqlalchemy.engine import make_url

from dispatch.infra.config import Settings, _sqlalchemy_url

ROOT = Path(__file__).resolve().parent.parent
CENTER = (37.7749, -122.4194)
STEP_M = 3.0  # each ping moves the worker 3 m north: plausible at any rate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url() -> str:
    base = make_url(_sqlalchemy_url(Settings.from_env().database_url))
    return base.set(database=f"{base.database}_ingest").render_as_string(hide_password=False)


def redis_url() -> str:
    base, _, _db = Settings.from_env().redis_url.rpartition("/")
    return f"{base}/13"


def prepare_database(url: str, workers: int) -> tuple[list[str], list[str], list[int]]:
    """Fresh database with `workers` workers, each en route to a job of its own resident.
    Returns worker tokens, resident tokens and job ids (same order)."""
    u = make_url(url)
    admin = u.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{u.database}"')
    from flask_migrate import upgrade

    from dispatch import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
    plain = u.set(drivername="postgresql").render_as_string(hide_password=False)
    worker_tokens = [f"bench-worker-{i}" for i in range(workers)]
    resident_tokens = [f"bench-resident-{i}" for i in range(workers)]
    now = datetime.now(UTC)
    with psycopg.connect(plain) as conn:
        cat = conn.execute("SELECT id FROM categories WHERE slug = 'leak-repair'").fetchone()[0]
        for i in range(workers):
            w = conn.execute(
                "INSERT INTO users (email, name, phone_e164, role, password_hash) VALUES "
                "(%s, %s, %s, 'worker', 'x') RETURNING id",
                (f"w{i}@bench.test", f"W{i}", f"+1202{i:07d}")).fetchone()[0]
            r = conn.execute(
                "INSERT INTO users (email, name, phone_e164, role, password_hash) VALUES "
                "(%s, %s, %s, 'resident', 'x') RETURNING id",
                (f"r{i}@bench.test", f"R{i}", f"+1303{i:07d}")).fetchone()[0]
            lat = CENTER[0] + (i % 50) * 0.002
            lng = CENTER[1] + (i // 50) * 0.002
            conn.execute(
                "INSERT INTO workers (user_id, travel_mode, availability, location, location_at) "
                "VALUES (%s, 'car', 'busy', ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, "
                "%s)", (w, lng, lat, now - timedelta(seconds=30)))
            conn.execute("INSERT INTO worker_skills (worker_id, category_id, verified) "
                         "VALUES (%s, %s, true)", (w, cat))
            conn.execute(
                "INSERT INTO jobs (resident_id, category_id, description, location, status, "
                "worker_id, requested_at, arrive_by, idempotency_key, request_fingerprint) "
                "VALUES (%s, %s, 'bench', ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, "
                "'en_route', %s, %s, %s, %s, 'x') RETURNING id",
                (r, cat, lng, lat + 0.01, w, now, now + timedelta(hours=2), f"k{i}"))
            for user_id, token in ((w, worker_tokens[i]), (r, resident_tokens[i])):
                conn.execute(
                    "INSERT INTO api_tokens (user_id, token_sha256, created_at, expires_at) "
                    "VALUES (%s, %s, %s, %s)",
                    (user_id, hashlib.sha256(token.encode()).hexdigest(), now,
                     now + timedelta(days=1)))
        jobs = [row[0] for row in conn.execute("SELECT id FROM jobs ORDER BY id")]
        conn.commit()
    return worker_tokens, resident_tokens, jobs


class Server:
    def __init__(self, app_path: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.process = subprocess.Popen(
            [str(gunicorn), "--bind", f"127.0.0.1:{self.port}", "--worker-class", "gevent",
             "--workers", "1", "--worker-connections", "10000", app_path],
            cwd=ROOT, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        import urllib.request

        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{app_path} did not start; see {log}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)
        self.log.close()


@dataclass
class Tally:
    sent: int = 0
    accepted: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    last_accepted: dict[int, str] = field(default_factory=dict)


async def run_load(url: str, worker_tokens: list[str | None], watcher_tokens: list[str | None],
                   jobs: list[int], seconds: float,
                   rate: float | None = None) -> tuple[Tally, float]:
    """Back-to-back pings (each phone waits only for its ack) when `rate` is None, else
    `rate` pings a second per phone."""
    tally = Tally()
    watchers = []
    for i, token in enumerate(watcher_tokens):
        sio = socketio.AsyncClient(reconnection=False)

        async def on_location(data: dict, tally: Tally = tally) -> None:
            sent_at = datetime.fromisoformat(data["at"])
            tally.latencies_ms.append((datetime.now(UTC) - sent_at).total_seconds() * 1000)

        sio.on("worker_location", on_location)
        await sio.connect(url, auth={"token": token} if token else None,
                          transports=["websocket"])
        answer = await sio.call("watch_job", {"job_id": jobs[i]})
        assert answer.get("ok"), answer
        watchers.append(sio)
    phones = []
    for token in worker_tokens:
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(url, auth={"token": token} if token else None,
                          transports=["websocket"])
        phones.append(sio)
    stop_at = time.monotonic() + seconds

    async def phone(i: int, sio: socketio.AsyncClient) -> None:
        lat0 = CENTER[0] + (i % 50) * 0.002
        lng = CENTER[1] + (i // 50) * 0.002
        n = 0
        next_at = time.monotonic() + (i % 100) / 100 / (rate or 1)  # spread the phones out
        while time.monotonic() < stop_at:
            if rate:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1 / rate
            n += 1
            at = datetime.now(UTC).isoformat()
            fix = {"lat": lat0 + n * STEP_M / 111_320, "lng": lng, "accuracy_m": 5,
                   "recorded_at": at}
            if worker_tokens[i] is None:  # the bare server routes by the job in the payload
                fix = {**fix, "job_id": jobs[i], "at": at}
            tally.sent += 1
            try:
                answer = await sio.call("location", fix, timeout=10)
            except Exception:
                tally.errors += 1
                continue
            if answer.get("ok") and answer.get("accepted"):
                tally.accepted += 1
                tally.last_accepted[i] = at
            elif not answer.get("ok"):
                tally.errors += 1

    started = time.monotonic()
    await asyncio.gather(*(phone(i, s) for i, s in enumerate(phones)))
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.5)  # let the last deliveries arrive
    for sio in phones + watchers:
        await sio.disconnect()
    return tally, elapsed


def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rate", type=float, default=2.0,
                        help="pings per second per phone in the latency phase")
    args = parser.parse_args()
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)

    db_url = database_url()
    print(f"preparing {args.workers} workers en route ...", flush=True)
    worker_tokens, resident_tokens, jobs = prepare_database(db_url, args.workers)
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url(), "PING_MIN_INTERVAL_MS": "0"}

    phones, watchers = list(worker_tokens), list(resident_tokens[: args.watchers])
    ours = Server("dispatch.entrypoints.wsgi:app", env, results / "ingest-dispatch.log")
    try:
        tally, elapsed = asyncio.run(run_load(ours.url, phones, watchers, jobs, args.seconds))
        steady, _ = asyncio.run(run_load(ours.url, phones, watchers, jobs, args.seconds,
                                         rate=args.rate))
    finally:
        ours.stop()
    plain = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as conn:
        stored = dict(conn.execute(
            "SELECT u.email, w.location_at FROM workers w JOIN users u ON u.id = w.user_id"))
    lost = sum(1 for i, at in steady.last_accepted.items()
               if stored.get(f"w{i}@bench.test") != datetime.fromisoformat(at))

    bare = Server("bench.echo_server:app", {"REDIS_URL": redis_url()},
                  results / "ingest-echo.log")
    nobody = [None] * args.workers
    try:
        bare_tally, bare_elapsed = asyncio.run(run_load(
            bare.url, nobody, nobody[: args.watchers], jobs, args.seconds))
        bare_steady, _ = asyncio.run(run_load(bare.url, nobody, nobody[: args.watchers], jobs,
                                              args.seconds, rate=args.rate))
    finally:
        bare.stop()

    rate = tally.accepted / elapsed
    bare_rate = bare_tally.accepted / bare_elapsed
    print()
    print(f"{args.workers} phones, {args.watchers} watchers in job rooms, one gevent process "
          f"per server, {args.seconds:g} s per phase")
    print(f"{'server':<34}{'max msgs/s':>11}{'at ' + format(args.rate, 'g') + '/s per phone':>18}"
          f"{'p50 ms':>8}{'p99 ms':>8}{'errors':>8}")
    for name, t, r, st in (("dispatch (check, store, stream)", tally, rate, steady),
                           ("bare Flask-SocketIO echo", bare_tally, bare_rate, bare_steady)):
        print(f"{name:<34}{r:>11.0f}{len(st.latencies_ms):>14} deliv"
              f"{statistics.median(st.latencies_ms or [math.nan]):>8.1f}"
              f"{pct(st.latencies_ms, 99):>8.1f}{t.errors + st.errors:>8}")
    print(f"(back-to-back phase, p99 delivery at saturation: dispatch "
          f"{pct(tally.latencies_ms, 99):.0f} ms, bare {pct(bare_tally.latencies_ms, 99):.0f} ms)")
    print(f"workers whose stored position is not their last accepted fix: {lost} "
          f"of {len(steady.last_accepted)}")
    print(f"RESULT pings_per_s={rate:.0f} bare_msgs_per_s={bare_rate:.0f} "
          f"ratio={rate / bare_rate:.2f} p99_delivery_ms={pct(steady.latencies_ms, 99):.1f}")


if __name__ == "__main__":
    main()
