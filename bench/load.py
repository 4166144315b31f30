"""End-to-end load: real HTTP and Socket.IO against the servers as `make run` runs them.

Starts its own web processes (the gunicorn/gevent command line of `scripts/services.sh`) in
the production shape of docker-compose.yml: 2 holding the phones' sockets and 1 serving the
HTTP API (the proxy's routing, done by the generator: sockets to the first, API calls to the
second), the RQ worker (offer expiry timers) and the sweeper, against its own database
`load_bench` and Redis DB 12, on free ports in 8200-8299. N simulated workers (verified,
skilled, online, spread over a metro area) each hold a Socket.IO websocket and send their
position every 5 s. Residents book at a fixed open-loop rate (POST /api/v1/jobs, bearer
token, Idempotency-Key); each booking is timed from just before its POST to the first
`offer` event for that job at any worker's socket. At the same rate, a bare Flask endpoint
in the API process (`/livez`, no database or Redis) gives the floor under the same
background load. The phones
never answer by default; `--answers realistic` has them accept or decline most offers a few
seconds in (`load_gen.Answers`). Texts go through the SDK to `bench/twilio_sink.py`.

    python bench/load.py [--workers 5000] [--rate 20] [--duration 60] [--web-processes 2]
                         [--api-processes 1]   # 0: every process serves sockets and API
    python bench/load.py --quick          # 1,000 workers, 15 s
    python bench/load.py --answers realistic --rate 10

Prints a table and, last, `RESULT bookings_per_s=... p99_booking_to_offer_ms=... ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import math
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

if __package__ in (None, ""):  # run as `python bench/load.py`: make `bench.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import load_gen, load_probe
from dispatch.infra.queues import TIMERS, WORKER_GROUPS
from dispatch.services.tracking import NO_JOB_TTL_S

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DB_NAME = "load_bench"
REDIS_DB = 12
PORTS = range(8200, 8300)
CENTER = (37.7749, -122.4194)  # San Francisco
WORKER_RADIUS_M = 20_000  # workers spread over a 20 km disk: the metro area
BOOKING_RADIUS_M = 12_000  # bookings inside the inner 12 km, so candidates are all around
SKILLS_PER_WORKER = 3
PING_INTERVAL_S = 5.0
TIMELINE_STEP_S = 5.0  # the report's timeline of the measured window
# The last seconds before the first booking, pings only: the same run's floor. This
# machine's speed varies from run to run (the same pings took 0.7 to 1.2 web cores on one
# day), so a run's figures read against its own floor.
FLOOR_WINDOW_S = 4.0
BARE_PATH = "/livez"  # dispatch/__init__.py: no I/O, the Flask/gunicorn floor
MOCK_SID = "AC" + "0" * 32
# The cost probe's own workers and bookings: Sacramento, beyond reach of the metro's workers
# (a car covers about 31 km of straight line within the two-hour promise) and vice versa.
PROBE_CENTER = (38.5816, -121.4944)
PROBE_WORKERS = 50
POOL_NUMBERS = 40


# --- database and Redis ----------------------------------------------------------------------

def database_url() -> str:
    from sqlalchemy.engine import make_url

    from dispatch.infra.config import Settings, _sqlalchemy_url

    base = make_url(_sqlalchemy_url(Settings.from_env().database_url))
    return base.set(database=DB_NAME).render_as_string(hide_password=False)


def plain_url(url: str, database: str | None = None) -> str:
    """The libpq form of a SQLAlchemy URL (for psycopg directly)."""
    from sqlalchemy.engine import make_url

    u = make_url(url).set(drivername="postgresql")
    if database:
        u = u.set(database=database)
    return u.render_as_string(hide_password=False)


def shared_redis_url() -> str:
    """DB 12 of the project's Redis (REDIS_URL)."""
    from dispatch.infra.config import Settings

    base, _, _db = Settings.from_env().redis_url.rpartition("/")
    return f"{base}/{REDIS_DB}"


def start_private_redis(taken: set[int]) -> tuple[Service, str]:
    """A Redis of our own. Socket.IO's message queue is Redis pub/sub on the fixed channel
    `dispatch-socketio`, and pub/sub ignores database numbers: on the shared server every
    other dispatch process (tests, `make run`, other benchmarks) would receive our offers in
    its `user:<id>` rooms, and we theirs."""
    port = free_port(taken)
    RESULTS.mkdir(parents=True, exist_ok=True)
    service = Service("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(RESULTS)],
                      dict(os.environ))
    url = f"redis://127.0.0.1:{port}/{REDIS_DB}"
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return service, url
        except redis.ConnectionError as exc:
            if not service.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {service.log_path}") from exc
            time.sleep(0.1)


def scatter(rng: random.Random, radius_m: float,
            center: tuple[float, float] = CENTER) -> tuple[float, float]:
    """A uniform point in a disk around the centre."""
    r = radius_m * math.sqrt(rng.random())
    theta = rng.random() * 2 * math.pi
    dlat = r * math.cos(theta) / 111_320
    dlng = r * math.sin(theta) / (111_320 * math.cos(math.radians(center[0])))
    return center[0] + dlat, center[1] + dlng


@dataclass
class Population:
    workers: list[tuple[str, float, float]]  # token, lat, lng
    resident_tokens: list[str]
    categories: list[int]
    probe_tokens: list[str] = field(default_factory=list)  # workers around PROBE_CENTER


def prepare_database(url: str, workers: int, residents: int, seed: int) -> Population:
    """Fresh `load_bench`: migrated like `make run` does, then workers who can take jobs
    (verified in 3 of the bookable categories, online, fresh position, walk/bike/car mix)
    and residents, each with a bearer token (only its SHA-256 is stored, as the app does).
    Plus PROBE_WORKERS far away, in the first category only, for the cost probe."""
    import psycopg
    from flask_migrate import upgrade

    from dispatch import create_app

    with psycopg.connect(plain_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
    rng = random.Random(seed)
    now = datetime.now(UTC)
    expires = now + timedelta(days=1)
    modes = ["car"] * 5 + ["bike"] * 3 + ["walk"] * 2
    pop = Population([], [], [])
    with psycopg.connect(plain_url(url)) as conn:
        pop.categories = [r[0] for r in conn.execute(
            "SELECT id FROM categories WHERE bookable ORDER BY id")]
        users = [(f"w{i}@load.test", f"Load worker {i}", f"+1202{i:07d}", "worker")
                 for i in range(workers + PROBE_WORKERS)]
        users += [(f"r{i}@load.test", f"Load resident {i}", f"+1303{i:07d}", "resident")
                  for i in range(residents)]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO users (email, name, phone_e164, role, password_hash) "
                "VALUES (%s, %s, %s, %s, 'x')", users)
        ids = dict(conn.execute("SELECT email, id FROM users").fetchall())
        worker_rows, skill_rows, token_rows = [], [], []
        for i in range(workers):
            uid = ids[f"w{i}@load.test"]
            lat, lng = scatter(rng, WORKER_RADIUS_M)
            token = f"load-worker-{seed}-{i}"
            pop.workers.append((token, lat, lng))
            worker_rows.append((uid, rng.choice(modes), lng, lat, now))
            skill_rows += [(uid, c) for c in rng.sample(pop.categories, SKILLS_PER_WORKER)]
            token_rows.append((uid, hashlib.sha256(token.encode()).hexdigest(), now, expires))
        for i in range(workers, workers + PROBE_WORKERS):
            uid = ids[f"w{i}@load.test"]
            lat, lng = scatter(rng, 3000, PROBE_CENTER)
            token = f"load-probe-{seed}-{i}"
            pop.probe_tokens.append(token)
            worker_rows.append((uid, "car", lng, lat, now))
            skill_rows.append((uid, pop.categories[0]))
            token_rows.append((uid, hashlib.sha256(token.encode()).hexdigest(), now, expires))
        for i in range(residents):
            token = f"load-resident-{seed}-{i}"
            pop.resident_tokens.append(token)
            token_rows.append((ids[f"r{i}@load.test"],
                               hashlib.sha256(token.encode()).hexdigest(), now, expires))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO workers (user_id, travel_mode, service_radius_m, availability, "
                "location, location_accuracy_m, location_at) VALUES (%s, %s, 15000, 'online', "
                "ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, 10, %s)", worker_rows)
            # The BEFORE INSERT trigger copies position and availability into the match rows.
            cur.executemany("INSERT INTO worker_skills (worker_id, category_id, verified, "
                            "verified_at) VALUES (%s, %s, true, now())", skill_rows)
            cur.executemany("INSERT INTO api_tokens (user_id, token_sha256, created_at, "
                            "expires_at) VALUES (%s, %s, %s, %s)", token_rows)
        # The masked-number pool: accepted jobs open a masked session (pairs share numbers
        # as long as neither party already holds one on it).
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO pool_numbers (e164) VALUES (%s)",
                            [(f"+1415{i:07d}",) for i in range(POOL_NUMBERS)])
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
    return pop


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


# --- server processes ----------------------------------------------------------------------

def free_port(taken: set[int]) -> int:
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


class Service:
    """One of our server processes, leading its own session so stopping it stops its
    children too (gunicorn workers), as scripts/services.sh does."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS / f"load-{name}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.process.pid
        self.url: str | None = None  # where it listens, for those that do

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)  # the leader first, as services.sh does
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        # Anything left in its session (a gunicorn worker that outlived its master).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.log.close()


def bin_path(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


BACKGROUND = ["nice", "-n", os.environ.get("BENCH_BACKGROUND_NICE", "0")]


def start_services(db_url: str, rq_url: str, web_processes: int, gunicorn_workers: int,
                   taken: set[int], api_processes: int = 0) -> tuple[list[Service], list[str]]:
    """RQ worker and sweeper, then the web process(es); returns (services, web base URLs),
    the `api_processes` last.

    `web_processes` separate gunicorn masters of one worker each (the design's shape: one
    process per web container, N behind the proxy), or one master with `gunicorn_workers`.
    API processes are the same server; the proxy sends them the HTTP API and no sockets."""
    sink_port = free_port(taken)  # bench/twilio_sink.py: texts are answered at once
    web_ports = [free_port(taken) for _ in range(web_processes + api_processes)]
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": rq_url, "PYTHONUNBUFFERED": "1",
           "TWILIO_ACCOUNT_SID": MOCK_SID, "TWILIO_AUTH_TOKEN": "dev-token",
           "TWILIO_API_BASE_URL": f"http://127.0.0.1:{sink_port}",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_ports[0]}",
           # Bookings are limited per resident (dispatch/http/limits.py): a run with few
           # residents at a high rate would meet that limit, which is not what it measures.
           # The limiter still counts every booking, so its cost is in the figures.
           "RATE_LIMIT_BOOKING_PER_USER": "1000000 per minute",
           # Bookings scatter over a disk that takes in the Bay: measured as served, as before
           # San Francisco's service area existed, so figures stay comparable run to run.
           "SERVICE_AREA_GEOJSON": ""}
    sink = Service("twilio-sink", [sys.executable, "-m", "bench.twilio_sink", str(sink_port)],
                   env)
    sink.url = f"http://127.0.0.1:{sink_port}"
    services = [
        sink,
        # One RQ worker per queue group, as make run and docker-compose.yml run them.
        *(Service(f"rq-{group}", [*BACKGROUND, sys.executable, "-m",
                                  "dispatch.entrypoints.rq_worker", group], env)
          for group in WORKER_GROUPS),
        Service("sweeper", [*BACKGROUND, bin_path("flask"), "--app", "dispatch", "sweeper"], env),
    ]
    urls = []
    ready = [(f"{sink.url}/stats", sink)]  # what must answer 200 before the load starts
    for n, port in enumerate(web_ports):
        web = Service(
            f"web{n + 1}" if n < web_processes else f"web-api{n + 1 - web_processes}",
            [bin_path("gunicorn"), "--bind", f"127.0.0.1:{port}", "--worker-class", "gevent",
             "--worker-connections", "10000", "--workers", str(gunicorn_workers),
             "--access-logfile", "-", "dispatch.entrypoints.wsgi:app"],
            env if n < web_processes else {**env, "WEB_ROLE": "api"})
        services.append(web)
        urls.append(f"http://127.0.0.1:{port}")
        ready.append((f"{urls[-1]}/healthz", web))
    deadline = time.monotonic() + 60
    for probe, service in ready:
        while True:
            if not service.alive():
                raise RuntimeError(f"{service.name} exited; see {service.log_path}")
            try:
                with urllib.request.urlopen(probe, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} did not answer; see {service.log_path}")
            time.sleep(0.3)
    return services, urls


def warm_rq_worker(rq_url: str) -> None:
    """The RQ worker builds the Flask app on its first task (a few CPU-seconds): run one
    expiry timer now (nothing is due yet), so that happens before the measurement."""
    import redis
    from rq import Queue

    queue = Queue(TIMERS, connection=redis.Redis.from_url(rq_url))
    task = queue.enqueue("dispatch.entrypoints.tasks.expire_due_offers_task", result_ttl=60)
    deadline = time.monotonic() + 60
    while task.get_status(refresh=True) not in ("finished", "failed"):
        if time.monotonic() > deadline:
            raise RuntimeError("the RQ worker did not run a task within 60 s")
        time.sleep(0.2)


# --- CPU accounting ------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> dict[int, tuple[int, int, float]]:
    """pid -> (ppid, session, cpu seconds) for every process we may read."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2:].split()
        out[int(entry)] = (int(rest[1]), int(rest[3]), (int(rest[11]) + int(rest[12])) / CLK_TCK)
    return out


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLK_TCK, sum(fields[:8]) / CLK_TCK


@dataclass
class CpuSnapshot:
    at: float
    procs: dict[int, tuple[int, int, float]]
    machine: tuple[float, float]
    pg_backends: set[int]


class CpuMeter:
    """CPU seconds per part of the system over the measured window, from /proc: our
    services (by session), the load generator processes, the PostgreSQL backends serving
    `load_bench`, Redis, and what else ran on the machine (e.g. a test suite)."""

    def __init__(self, services: list[Service], generator_pids: list[int], pg_url: str,
                 redis_pid: int | None) -> None:
        self.services = services
        self.generator_pids = generator_pids
        self.pg_url = pg_url
        self.redis_pid = redis_pid

    def _pg_backends(self) -> set[int]:
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            return {r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid()", (DB_NAME,))}

    def snapshot(self) -> CpuSnapshot:
        backends = self._pg_backends()
        return CpuSnapshot(time.monotonic(), _proc_stats(), _machine_busy(), backends)

    def report(self, a: CpuSnapshot, b: CpuSnapshot) -> list[tuple[str, float]]:
        """(part, cores used on average) over the window between the snapshots."""
        def used(pids: set[int]) -> float:
            return sum(b.procs[p][2] - (a.procs[p][2] if p in a.procs else 0.0)
                       for p in pids if p in b.procs)

        seconds = b.at - a.at
        rows: list[tuple[str, float]] = []
        attributed = 0.0
        for service in self.services:
            pids = {p for p, (_, sid, _) in b.procs.items() if sid == service.pid}
            cpu = used(pids)
            attributed += cpu
            rows.append((f"{service.name} ({len(pids)} process{'es' if len(pids) > 1 else ''})",
                         cpu / seconds))
        gen = used(set(self.generator_pids))
        main = used({os.getpid()})
        pg = used(a.pg_backends | b.pg_backends)
        postmasters = {b.procs[p][0] for p in b.pg_backends if p in b.procs}
        pg_other = used({p for p, (ppid, _, _) in b.procs.items() if ppid in postmasters}
                        - a.pg_backends - b.pg_backends)
        redis_cpu = used({self.redis_pid}) if self.redis_pid else 0.0
        attributed += gen + main + pg + pg_other + redis_cpu
        busy = b.machine[0] - a.machine[0]
        rows += [
            (f"load generator: phones ({len(self.generator_pids)} processes)", gen / seconds),
            ("load generator: bookings + bare (main process)", main / seconds),
            (f"PostgreSQL backends of {DB_NAME}", pg / seconds),
            ("PostgreSQL other (wal, checkpoints, other databases)", pg_other / seconds),
            *([("Redis (shared server, all its clients)", redis_cpu / seconds)]
              if self.redis_pid else []),
            ("everything else on the machine", max(0.0, busy - attributed) / seconds),
            ("machine total (of 2 cores)", busy / seconds),
        ]
        return rows


def redis_server_pid(url: str) -> int | None:
    import redis

    try:
        return int(redis.Redis.from_url(url).info("server")["process_id"])
    except Exception:
        return None


# --- bookings and the bare endpoint ---------------------------------------------------------

@dataclass
class Request:
    kind: str  # "booking" | "bare"
    measured: bool
    url: str
    sent_at: float
    lag_ms: float  # how late it left against the open-loop schedule
    done_at: float = math.nan
    status: int = 0
    job_id: int | None = None
    error: str = ""


@dataclass
class DriveResult:
    requests: list[Request] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)
    cpu: list[tuple[str, float]] = field(default_factory=list)
    cpu_steps: list[list[tuple[str, float]]] = field(default_factory=list)
    floor: list[tuple[str, float]] = field(default_factory=list)  # pings only, before bookings


async def drive(urls: list[str], pop: Population, rate: float, start_at: float,
                warmup_s: float, duration_s: float, meter: CpuMeter, seed: int) -> DriveResult:
    """Open loop: booking k leaves at start + k/rate whatever the earlier ones are doing,
    and a bare GET half a period later. Servers are used in turn (as a balancer would)."""
    rng = random.Random(seed + 1)
    result = DriveResult()
    run_id = f"{seed}-{int(time.time())}"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    total = int((warmup_s + duration_s) * rate)
    measure_from = start_at + warmup_s
    measure_to = measure_from + duration_s
    result.window = (measure_from, measure_to)
    tasks: list[asyncio.Task[None]] = []

    async def booking(k: int, at: float, http: aiohttp.ClientSession) -> None:
        lat, lng = scatter(rng, BOOKING_RADIUS_M)
        body = {"category_id": rng.choice(pop.categories), "lat": lat, "lng": lng,
                "description": f"load bench booking {k}"}
        headers = {"Authorization": f"Bearer {pop.resident_tokens[k % len(pop.resident_tokens)]}",
                   "Idempotency-Key": f"load-{run_id}-{k}"}
        url = urls[k % len(urls)]
        req = Request("booking", at >= measure_from, url, 0.0, 0.0)
        req.sent_at = time.monotonic()
        req.lag_ms = (req.sent_at - at) * 1000
        try:
            async with http.post(url + "/api/v1/jobs", json=body, headers=headers) as r:
                answer = await r.json(content_type=None)
                req.status = r.status
                if r.status in (200, 201):
                    req.job_id = int(answer["id"])
                else:
                    req.error = str(answer.get("error", {}).get("code", r.status))
        except Exception as exc:
            req.error = type(exc).__name__
        req.done_at = time.monotonic()
        result.requests.append(req)

    async def bare(k: int, at: float, http: aiohttp.ClientSession) -> None:
        url = urls[k % len(urls)]
        req = Request("bare", at >= measure_from, url, time.monotonic(), 0.0)
        req.lag_ms = (req.sent_at - at) * 1000
        try:
            async with http.get(url + BARE_PATH) as r:
                await r.read()
                req.status = r.status
        except Exception as exc:
            req.error = type(exc).__name__
        req.done_at = time.monotonic()
        result.requests.append(req)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        snapshots: list[CpuSnapshot] = []

        async def snap_at(at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            snapshots.append(await asyncio.to_thread(meter.snapshot))

        steps = max(1, math.ceil(duration_s / TIMELINE_STEP_S))
        snaps = [asyncio.create_task(snap_at(min(measure_to, measure_from + k * TIMELINE_STEP_S)))
                 for k in range(steps + 1)]
        floor: list[CpuSnapshot] = []

        async def floor_at(at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            floor.append(await asyncio.to_thread(meter.snapshot))

        # Every phone is pinging by then and no booking has left yet: the run's own floor.
        floor_snaps = [asyncio.create_task(floor_at(start_at - FLOOR_WINDOW_S + k * FLOOR_WINDOW_S))
                       for k in range(2)]
        for k in range(total):
            for kind, at in (("booking", start_at + k / rate),
                             ("bare", start_at + (k + 0.5) / rate)):
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                fn = booking if kind == "booking" else bare
                tasks.append(asyncio.create_task(fn(k, at, http)))
        await asyncio.gather(*tasks)
        await asyncio.gather(*snaps, *floor_snaps)
    snapshots.sort(key=lambda snap: snap.at)
    floor.sort(key=lambda snap: snap.at)
    result.floor = meter.report(floor[0], floor[1])
    result.cpu = meter.report(snapshots[0], snapshots[-1])
    result.cpu_steps = [meter.report(a, b) for a, b in itertools.pairwise(snapshots)]
    return result


# --- reporting -----------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def texts_sent(sink_url: str | None) -> int | None:
    """How many texts reached the Twilio sink (through the SDK, from the RQ worker)."""
    import json

    if sink_url is not None:
        with (contextlib.suppress(OSError, ValueError),
              urllib.request.urlopen(f"{sink_url}/stats", timeout=5) as r):
            return int(json.loads(r.read())["messages"])
    return None


def database_counts(url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(plain_url(url)) as conn:
        return {
            "jobs": dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY 1").fetchall()),
            "offers": dict(conn.execute(
                "SELECT status, count(*) FROM offers GROUP BY 1").fetchall()),
            "waves": conn.execute("SELECT coalesce(max(wave), 0) FROM jobs").fetchone()[0],
            "texts": conn.execute("SELECT count(*) FROM notifications").fetchone()[0],
            "fresh_workers": conn.execute(
                "SELECT count(*) FROM workers WHERE location_at > now() - interval '30 s'"
            ).fetchone()[0],
        }


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=5000, help="simulated worker phones")
    parser.add_argument("--residents", type=int, default=200, help="residents booking in turn")
    parser.add_argument("--rate", type=float, default=20.0, help="bookings per second")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds of bookings before measuring")
    # The design's shape (docker-compose.yml): socket processes (`web`, behind a sticky
    # proxy) and API processes (`api`, the same server; the proxy sends them everything but
    # /socket.io/). Two socket processes: one process of one thread cannot use more than one
    # core (see bench/README.md).
    parser.add_argument("--web-processes", type=int, default=2,
                        help="separate gunicorn masters (1 worker each) holding the phones' "
                             "sockets, split evenly")
    parser.add_argument("--api-processes", type=int, default=1,
                        help="web processes that serve only the HTTP API (bookings, answers, "
                             "the bare GET); 0: the --web-processes serve it too")
    parser.add_argument("--gunicorn-workers", type=int, default=1,
                        help="workers per gunicorn master (services.sh uses 1)")
    parser.add_argument("--gen-procs", type=int, default=0,
                        help="phone generator processes (default: one per 5,000 phones)")
    parser.add_argument("--answers", choices=("never", "realistic"), default="never",
                        help="never (the figures so far): no phone answers, so every job is "
                             "offered again each window, a load that grows all run; "
                             "realistic: phones accept half their offers and decline a "
                             "quarter, after ~6 s (assignments, masked numbers, texts)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--shared-redis", action="store_true",
                        help="use DB 12 of REDIS_URL instead of a private redis-server (pub/sub "
                             "then crosses with every other dispatch process on that server)")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 workers, 5 s warm-up, 15 s measured")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.warmup, args.duration = min(args.workers, 1000), 5.0, 15.0
    # One asyncio process drives 5,000 phones at 1,000 pings/s in under one core; a second
    # one would only take CPU from the servers on a 2-core machine (see --gen-procs).
    gen_procs = args.gen_procs or max(1, math.ceil(args.workers / 5000))
    started = time.monotonic()

    db_url = database_url()
    print(f"preparing {DB_NAME}: {args.workers} workers, {args.residents} residents ...",
          flush=True)
    pop = prepare_database(db_url, args.workers, args.residents, args.seed)
    taken: set[int] = set()
    services: list[Service] = []
    gens: list[tuple[multiprocessing.process.BaseProcess, Any]] = []
    try:
        if args.shared_redis:
            rq_url = shared_redis_url()
        else:
            redis_service, rq_url = start_private_redis(taken)
            services.append(redis_service)
        flush_redis(rq_url)
        print(f"  ready in {time.monotonic() - started:.1f} s; starting services (Redis "
              f"{rq_url}) ...", flush=True)
        started_services, all_urls = start_services(db_url, rq_url, args.web_processes,
                                                    args.gunicorn_workers, taken,
                                                    args.api_processes)
        urls = all_urls[:args.web_processes]  # where the phones connect
        api_urls = all_urls[args.web_processes:] or urls  # where residents book
        services += started_services
        web_sessions = {s.pid for s in started_services if s.name.startswith("web")}

        def web_cpu() -> float:
            return sum(c for _, sid, c in _proc_stats().values() if sid in web_sessions)

        print("  probing the cost of single operations on the idle server ...", flush=True)
        costs = asyncio.run(load_probe.probe(
            api_urls[0], pop.probe_tokens, pop.resident_tokens[-1], pop.categories[0],
            PROBE_CENTER, web_cpu, socket_url=urls[0]))
        warm_rq_worker(rq_url)
        phones = [load_gen.Phone(i, token, lat, lng, urls[i % len(urls)],
                                 api_urls[i % len(api_urls)])
                  for i, (token, lat, lng) in enumerate(pop.workers)]
        ctx = multiprocessing.get_context("spawn")
        for g in range(gen_procs):
            mine, theirs = ctx.Pipe()
            conf = load_gen.GenConfig(
                phones[g::gen_procs], args.workers, PING_INTERVAL_S,
                answers=load_gen.Answers() if args.answers == "realistic" else None)
            proc = ctx.Process(target=load_gen.run, args=(conf, theirs), daemon=True)
            proc.start()
            theirs.close()  # so a generator that dies shows as EOFError, not a hang
            gens.append((proc, mine))
        print(f"  connecting {args.workers} phones over {len(urls)} web process(es) from "
              f"{gen_procs} generator process(es) ...", flush=True)
        connected = [pipe.recv() for _, pipe in gens]
        n_connected = sum(c[1]["connected"] for c in connected)
        n_failed = sum(c[1]["failed"] for c in connected)
        connect_s = max(c[1]["seconds"] for c in connected)
        print(f"  {n_connected} connected, {n_failed} failed, in {connect_s:.1f} s", flush=True)

        t0 = time.monotonic() + 1.0
        settle = PING_INTERVAL_S * 2  # every phone has pinged twice before any booking
        start_at = t0 + settle
        stop_at = start_at + args.warmup + args.duration + 3.0  # offers of the last bookings
        for _, pipe in gens:
            pipe.send(("go", t0, stop_at))
        meter = CpuMeter(services, [p.pid for p, _ in gens], plain_url(db_url),
                         redis_server_pid(rq_url) if args.shared_redis else None)
        print(f"  pings flowing; {args.warmup:g} s warm-up, then {args.duration:g} s measured "
              f"at {args.rate:g} bookings/s ...", flush=True)
        drove = asyncio.run(drive(api_urls, pop, args.rate, start_at, args.warmup, args.duration,
                                  meter, args.seed))
        gen_results: list[load_gen.GenResult] = []
        for proc, pipe in gens:
            if not pipe.poll(stop_at - time.monotonic() + 60):
                raise RuntimeError(f"generator {proc.pid} did not report")
            gen_results.append(pipe.recv()[1])
        for proc, _ in gens:
            proc.join(timeout=30)
        dead = [s.name for s in services if not s.alive()]
        counts = database_counts(db_url)
        counts["texts_sent"] = texts_sent(
            next((s.url for s in services if s.name == "twilio-sink"), None))
    finally:
        for proc, _ in gens:
            if proc.is_alive():
                proc.terminate()
        for service in reversed(services):
            service.stop()

    report(args, urls, gen_procs, n_connected, n_failed, connect_s, drove, gen_results,
           counts, dead, costs, time.monotonic() - started)


def print_costs(args: argparse.Namespace, costs: list[load_probe.Cost], pings_per_s: float,
                web_workers: int) -> None:
    """The probe's table, and the web CPU the offered load needs at those costs."""
    print("cost of one operation, one at a time on the idle server (web-process CPU; wall):")
    for c in costs:
        print(f"  {c.name:<44}{c.n:>5}  {c.cpu_ms:>7.2f} ms CPU  {c.wall_ms:>8.1f} ms wall")
    by = {c.name: c.cpu_ms for c in costs}
    cached = NO_JOB_TTL_S > PING_INTERVAL_S
    ping = by["ping: 'no active job' cached"]
    need_pings = pings_per_s * ping / 1000
    need_book = args.rate * by["booking POST -> first offer"] / 1000
    need_bare = args.rate * by["bare GET"] / 1000
    total = need_pings + need_book + need_bare
    print(f"web CPU the offered load needs at these costs: {total:.2f} cores = pings "
          f"{need_pings:.2f} ({pings_per_s:.0f}/s, each {'cached' if cached else 'a lookup'}: "
          f"a worker pings every {PING_INTERVAL_S:g} s, the 'no job' cache lives "
          f"{NO_JOB_TTL_S:g} s) + bookings "
          f"{need_book:.2f} + bare {need_bare:.2f}; {web_workers} web process(es) of one "
          f"thread each can use at most {web_workers} core(s)"
          + ("  => OVERLOADED" if total > 0.8 * min(web_workers, os.cpu_count() or 1) else ""))


def print_timeline(drove: DriveResult, to_offer_at: list[tuple[float, float]],
                   bare: list[Request], gens: list[load_gen.GenResult]) -> None:
    """The measured window in steps: a stall (a collection, a burst of expiries) shows as
    one bad step, queueing for the cores as all of them bad."""
    start, end = drove.window
    steps = max(1, math.ceil((end - start) / TIMELINE_STEP_S))

    def step_of(at: float) -> int | None:
        k = int((at - start) // TIMELINE_STEP_S)
        return k if 0 <= k < steps else None

    offer: list[list[float]] = [[] for _ in range(steps)]
    for at, ms in to_offer_at:
        if (k := step_of(at)) is not None:
            offer[k].append(ms)
    bare_ms: list[list[float]] = [[] for _ in range(steps)]
    for r in bare:
        if (k := step_of(r.sent_at)) is not None:
            bare_ms[k].append((r.done_at - r.sent_at) * 1000 if r.status == 200 else math.inf)
    acks: list[list[float]] = [[] for _ in range(steps)]
    for g in gens:
        for at, ms in zip(g.ack_sent_at, g.ack_ms, strict=True):
            if (k := step_of(at)) is not None:
                acks[k].append(ms)
    print()
    print(f"timeline ({TIMELINE_STEP_S:g} s steps of the measured window; ms)")
    parts = ("web", "rq", "PostgreSQL backends", "load generator: phones", "redis", "machine")
    print(f"{'from s':>7}{'bookings':>9}{'offer p50':>10}{'offer p99':>10}{'bare p99':>9}"
          f"{'acks':>7}{'ack p50':>8}{'ack p99':>9}   cores: web  rq  pg  gen redis all")
    for k in range(steps):
        cores = ""
        if k < len(drove.cpu_steps):
            used = {part: sum(v for name, v in drove.cpu_steps[k] if name.startswith(part))
                    for part in parts}
            cores = " ".join(f"{used[part]:.2f}" for part in parts)
        print(f"{k * TIMELINE_STEP_S:>7.0f}{len(offer[k]):>9}{fmt(pct(offer[k], 50)):>10}"
              f"{fmt(pct(offer[k], 99)):>10}{fmt(pct(bare_ms[k], 99)):>9}{len(acks[k]):>7}"
              f"{fmt(pct(acks[k], 50)):>8}{fmt(pct(acks[k], 99)):>9}   {cores}")


def report(args: argparse.Namespace, urls: list[str], gen_procs: int, n_connected: int,
           n_failed: int, connect_s: float, drove: DriveResult,
           gens: list[load_gen.GenResult], counts: dict[str, Any], dead: list[str],
           costs: list[load_probe.Cost], runtime_s: float) -> None:
    first_offer: dict[int, float] = {}
    for g in gens:
        for job_id, at in g.first_offer_at.items():
            if job_id not in first_offer or at < first_offer[job_id]:
                first_offer[job_id] = at
    measured = [r for r in drove.requests if r.measured]
    bookings = [r for r in measured if r.kind == "booking"]
    bare = [r for r in measured if r.kind == "bare"]
    booked = [r for r in bookings if r.status == 201 and r.job_id is not None]
    no_coverage = [r for r in bookings if r.status == 409]
    failed = [r for r in bookings if r.status not in (201, 409)]
    # A booking that failed, or whose offer never arrived, counts as infinitely late rather
    # than as absent (only an honest "nobody can come", 409, expects no offer).
    to_offer = [(first_offer[r.job_id] - r.sent_at) * 1000
                if r.job_id is not None and r.job_id in first_offer else math.inf
                for r in bookings if r.status != 409]
    to_offer_at = [(r.sent_at, ms) for r, ms in
                   zip([r for r in bookings if r.status != 409], to_offer, strict=True)]
    missing = sum(1 for r in booked if r.job_id not in first_offer)
    post_ms = [(r.done_at - r.sent_at) * 1000 for r in booked]
    bare_ok = [(r.done_at - r.sent_at) * 1000 for r in bare if r.status == 200]
    bare_ms = bare_ok + [math.inf] * (len(bare) - len(bare_ok))
    lag = [r.lag_ms for r in measured]
    window = drove.window[1] - drove.window[0]
    rate = len(booked) / args.duration

    sent = sum(g.pings_sent for g in gens)
    acked = sum(g.pings_acked for g in gens)
    accepted = sum(g.pings_accepted for g in gens)
    reasons: dict[str, int] = {}
    for g in gens:
        for k, v in g.ping_reasons.items():
            reasons[k] = reasons.get(k, 0) + v
    ack_ms = [v for g in gens for v in g.ack_ms]
    send_lag = [v for g in gens for v in g.send_lag_ms]
    ping_seconds = args.warmup + args.duration + 3.0 + PING_INTERVAL_S * 2
    by_url: dict[str, int] = {}
    for g in gens:
        for k, v in g.offers_by_url.items():
            by_url[k] = by_url.get(k, 0) + v

    print()
    print(f"load: {n_connected} worker phones on Socket.IO (websocket), 1 ping / "
          f"{PING_INTERVAL_S:g} s each; {args.rate:g} bookings/s + {args.rate:g} bare GETs/s "
          f"open loop; {len(urls)} web process(es) x {args.gunicorn_workers} gunicorn "
          f"worker(s)"
          f"{f' + {args.api_processes} API-only web process(es)' if args.api_processes else ''}"
          f"; {args.duration:g} s measured after {args.warmup:g} s warm-up")
    print(f"phones: {n_connected} connected ({n_failed} failed) in {connect_s:.1f} s by "
          f"{gen_procs} generator process(es); {sum(g.disconnects for g in gens)} dropped "
          f"under load")
    print()
    print(f"{'measure':<44}{'n':>7}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    accept_ms = [v for g in gens for v in g.accept_ms]
    for name, values in (("booking -> first offer at a phone", to_offer),
                         ("booking POST response (201 only)", post_ms),
                         ("bare Flask GET", bare_ms),
                         ("ping ack (whole run)", ack_ms),
                         ("offer accept POST (whole run; 200 or 409)", accept_ms)):
        finite = [v for v in values if not math.isinf(v)]
        print(f"{name:<44}{len(values):>7}{fmt(pct(values, 50)):>9}{fmt(pct(values, 90)):>9}"
              f"{fmt(pct(values, 99)):>9}{fmt(max(finite) if finite else math.nan):>9}")
    print()
    print(f"bookings measured: {len(bookings)} sent, {len(booked)} booked (201), "
          f"{len(no_coverage)} no coverage (409), {len(failed)} failed "
          f"{sorted({r.error for r in failed}) if failed else ''}; offers never seen: {missing}")
    print(f"achieved: {rate:.1f} bookings/s; bare GETs ok {len(bare_ok)} of {len(bare)}; "
          f"client send lag p99 {fmt(pct(lag, 99))} ms")
    print(f"pings: {sent} sent ({sent / ping_seconds:.0f}/s), {acked} asked for an ack and "
          f"got it ({accepted} of those kept), refused by the server (location_refused): "
          f"{reasons or 'none'}, {sum(g.ping_errors for g in gens)} errors; "
          f"schedule lag p99 {fmt(pct(send_lag, 99))} ms")
    per_server = ", ".join(f"port {u.rsplit(':', 1)[1]}: {n}" for u, n in sorted(by_url.items()))
    print(f"offers seen by phones: {sum(g.offers_received for g in gens)} "
          f"(by the web process the phone is connected to: {per_server})")
    answers: dict[str, int] = {}
    for g in gens:
        for k, v in g.answers.items():
            answers[k] = answers.get(k, 0) + v
    print(f"phones' answers ({args.answers}): "
          f"{', '.join(f'{k} {v}' for k, v in sorted(answers.items())) or 'none'} "
          f"(won = accepted and assigned, lost = 409: taken or closed meanwhile)")
    print(f"database after the run: jobs {counts['jobs']}, offers {counts['offers']}, "
          f"max wave {counts['waves']}, texts queued {counts['texts']} "
          f"(sent to the Twilio sink: {counts['texts_sent']}), "
          f"workers with a position < 30 s old {counts['fresh_workers']}")
    print_timeline(drove, to_offer_at, bare, gens)
    if dead:
        print(f"WARNING: services that died during the run: {', '.join(dead)}")
    print()
    print_costs(args, costs, sent / ping_seconds,
                (len(urls) + args.api_processes) * args.gunicorn_workers)
    print()
    print(f"CPU over the measured {window:.0f} s (cores in use, machine has {os.cpu_count()}):")
    for name, cores in drove.cpu:
        print(f"  {name:<58}{cores:>6.2f}")
    floor_web = sum(v for name, v in drove.floor if name.startswith("web"))
    floor_all = dict(drove.floor).get("machine total (of 2 cores)", math.nan)
    print(f"pings only, the {FLOOR_WINDOW_S:g} s before the first booking: web "
          f"{floor_web:.2f} cores, machine {floor_all:.2f} cores")
    print(f"runtime {runtime_s:.0f} s")
    print(f"RESULT bookings_per_s={rate:.1f} p50_booking_to_offer_ms={fmt(pct(to_offer, 50))} "
          f"p99_booking_to_offer_ms={fmt(pct(to_offer, 99))} "
          f"bare_p50_ms={fmt(pct(bare_ms, 50))} bare_p99_ms={fmt(pct(bare_ms, 99))} "
          f"pings_per_s={sent / ping_seconds:.0f} accept_p99_ms={fmt(pct(accept_ms, 99))} "
          f"answers={args.answers} floor_web_cores={floor_web:.2f} "
          f"web_processes={len(urls)}"
          f"{f' api_processes={args.api_processes}' if args.api_processes else ''}")


if __name__ == "__main__":
    main()
