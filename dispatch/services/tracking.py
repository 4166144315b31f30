"""Worker positions: every fix passes the same checks whether it came over the socket or
HTTP, becomes the worker's latest position (which matching reads), and, while the worker
holds an active job, streams to that job's room with a fresh ETA.

Dropped, with a reason, rather than stored: fixes older than the last accepted one (pings
arrive out of order), fixes that would need an impossible speed from it (GPS jumps), and
fixes sent faster than the per-worker rate limit.

Hot path without the database: the checks and the last accepted fix live in Redis (one
atomic script per ping, shared by every web process), the worker's active job is cached
there, and accepted fixes are written to PostgreSQL in batches (`flush_fixes`, every
FLUSH_INTERVAL by each web process and by the sweeper; at once for HTTP pings). A batch
writes each worker's newest fix and never overwrites a newer one. Redis holds nothing that
cannot be rebuilt: losing it loses at most the last unflushed fix of each worker."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from redis import Redis
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.job_rows import occupying_job
from dispatch.db.models import Job, JobEvent, Worker
from dispatch.domain.commands import LocationIn
from dispatch.domain.errors import invalid
from dispatch.infra.leanscript import LeanScript
from dispatch.infra.redis import redis_connection
from dispatch.services import push
from dispatch.services.active_jobs import (
    active_job_key,
    active_job_version_key,
    forget_active_jobs,
)
from dispatch.services.context import eta_model
from dispatch.services.following import live_eta_seconds
from geo.eta import haversine_m

# A fix from the device's future beyond this is a wrong clock, not a position.
MAX_CLOCK_SKEW = timedelta(seconds=60)
# Faster than any car in a city, with room for GPS noise: beyond it the fix is a jump.
MAX_PLAUSIBLE_SPEED_MPS = 70.0
# GPS noise over a short hop can look fast; below this distance no jump is judged.
JUMP_TOLERANCE_M = 150.0
FLUSH_INTERVAL_S = 0.2
# Worker id -> their newest unwritten fix, "at|lat|lng|acc|hdg|spd|recv" (times in µs), so a
# flush reads every pending fix in one command and PostgreSQL parses them.
PENDING_KEY = "dispatch:fix:pending"
# How long the answer "this worker has no active job" is trusted. Every status change
# deletes the cached answer after its commit (push.job_changed -> forget_active_job), and the
# sweeper deletes it again from the event log (`sweep`), so an invalidation lost with a
# crashed process lasts one sweep, not this TTL. The TTL is long because each expiry is a
# PostgreSQL read on the hot path: with 60 s, 5,000 idle phones made 83 reads a second, in
# bursts that left pings waiting seconds for a pooled connection (bench/load.py). Each answer
# lives between half and all of it, so expiries do not come in waves.
NO_JOB_TTL_S = 600
ACTIVE_JOB_TTL_S = 30
# Status changes younger than this are left to the next sweep: their transactions may not
# have committed yet (the event's time is taken before the commit).
SWEEP_LAG = timedelta(seconds=10)
SWEPT_UNTIL_KEY = "dispatch:active-job:swept-until"


def fix_key(worker_id: int) -> str:
    return f"dispatch:fix:{worker_id}"






# KEYS: fix hash, pending hash, active-job cache, active-job version. ARGV: worker id, fix time
# (µs), lat, lng, accuracy, heading, speed, server time (µs), min interval (µs), max speed,
# jump tolerance. Returns {reason or "", cached active job or false, cache version}.
_CHECK_AND_STORE = """
local last = redis.call('HMGET', KEYS[1], 'at', 'lat', 'lng', 'recv')
local at, lat, lng = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = tonumber(ARGV[8])
local job = redis.call('GET', KEYS[3])
local version = redis.call('GET', KEYS[4]) or '0'
if last[1] then
  local last_at = tonumber(last[1])
  if at <= last_at then return {'out_of_order', job, version} end
  local p1, p2 = math.rad(tonumber(last[2])), math.rad(lat)
  local dp, dl = p2 - p1, math.rad(lng - tonumber(last[3]))
  local a = math.sin(dp / 2) ^ 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ^ 2
  local hop = 2 * 6371008.8 * math.asin(math.sqrt(a))
  local seconds = math.max((at - last_at) / 1e6, 0.001)
  if hop > tonumber(ARGV[11]) and hop / seconds > tonumber(ARGV[10]) then
    return {'implausible_jump', job, version}
  end
  if last[4] and now - tonumber(last[4]) < tonumber(ARGV[9]) then
    return {'rate_limited', job, version}
  end
end
redis.call('HSET', KEYS[1], 'at', ARGV[2], 'lat', ARGV[3], 'lng', ARGV[4], 'acc', ARGV[5],
           'hdg', ARGV[6], 'spd', ARGV[7], 'recv', ARGV[8])
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('HSET', KEYS[2], ARGV[1], table.concat({ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
                                                  ARGV[7], ARGV[8]}, '|'))
return {'', job, version}
"""

# Cache what the database said only if no status change happened since the version was read
# (a change bumps the version after its commit), so a slow reader cannot cache a stale job.
# KEYS: cache, version. ARGV: version read, value, ttl.
_CACHE_IF_CURRENT = """
if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
"""

# Forget a written fix as pending only if no newer fix arrived meanwhile.
# KEYS: pending hash. ARGV: worker ids, then the fixes written for them.
_FORGET_FLUSHED = """
local n = #ARGV / 2
for i = 1, n do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[n + i] then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
"""


@dataclass(frozen=True)
class PingResult:
    accepted: bool
    reason: str | None


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_micros(value: str | bytes) -> datetime:
    return datetime.fromtimestamp(int(value) / 1_000_000, UTC)


def _opt(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def record_fix(session: Session, worker_id: int, fix: LocationIn) -> PingResult:
    """Check and keep one fix. Clearly wrong input (bad clock, ancient fix) raises a 422;
    fixes that are merely superseded or implausible are dropped with a reason."""
    now = clock.now()
    at: datetime = fix.recorded_at or now
    if at.tzinfo is None:
        raise invalid("recorded_at", "time.needs_zone")
    if at > now + MAX_CLOCK_SKEW:
        raise invalid("recorded_at", "time.future")
    settings = current_app.config["DISPATCH"]
    max_age = timedelta(seconds=settings.location_max_age_s)
    if at < now - max_age:
        raise invalid("recorded_at", "time.too_old", seconds=f"{max_age.total_seconds():g}")
    reason, cached_job, version = _check_and_store()(
        [fix_key(worker_id), PENDING_KEY, active_job_key(worker_id),
         active_job_version_key(worker_id)],
        [worker_id, _micros(at), repr(fix.lat), repr(fix.lng), _opt(fix.accuracy_m),
         _opt(fix.heading), _opt(fix.speed_mps), _micros(now),
         settings.ping_min_interval_ms * 1000, MAX_PLAUSIBLE_SPEED_MPS, JUMP_TOLERANCE_M])
    if reason:
        return PingResult(False, reason.decode())
    if cached_job:
        job = _decode_job(cached_job)
    else:
        job = _load_active_job(session, redis_connection(), worker_id, version)
    if job is not None:
        _stream(job, fix, at, now)
    return PingResult(True, None)


def _check_and_store() -> LeanScript:
    """The ping's script on connections of its own (see `dispatch.infra.leanscript`)."""
    script = current_app.extensions.get("dispatch.check_and_store")
    if script is None:
        script = LeanScript(current_app.config["REDIS_URL"], _CHECK_AND_STORE)
        current_app.extensions["dispatch.check_and_store"] = script
    return script


def _script(redis: Redis, source: str) -> Any:
    scripts = current_app.extensions.setdefault("dispatch.redis_scripts", {})
    if source not in scripts:
        scripts[source] = redis.register_script(source)
    return scripts[source]


def _decode_job(raw: bytes) -> dict[str, Any] | None:
    if raw == b"-":
        return None
    job_id, lat, lng, status, mode = raw.decode().split("|")
    return {"id": int(job_id), "lat": float(lat), "lng": float(lng), "status": status,
            "travel_mode": mode}


def _load_active_job(session: Session, redis: Redis, worker_id: int,
                     version: bytes) -> dict[str, Any] | None:
    row = session.execute(
        select(Job.id, Job.lat, Job.lng, Job.status, Worker.travel_mode)
        .join(Worker, Worker.user_id == Job.worker_id)
        .where(Job.worker_id == worker_id, occupying_job())
    ).first()
    session.rollback()
    cache = _script(redis, _CACHE_IF_CURRENT)
    keys = [active_job_key(worker_id), active_job_version_key(worker_id)]
    if row is None:
        cache(keys=keys, args=[version, "-", random.randint(NO_JOB_TTL_S // 2, NO_JOB_TTL_S)])
        return None
    cache(keys=keys, args=[version, f"{row.id}|{row.lat!r}|{row.lng!r}|{row.status}|"
                                    f"{row.travel_mode}", ACTIVE_JOB_TTL_S])
    return {"id": row.id, "lat": row.lat, "lng": row.lng, "status": row.status,
            "travel_mode": row.travel_mode}


def remember_active_job(session: Session, worker_id: int) -> None:
    """Cache the worker's active job (or that there is none) ahead of their pings."""
    redis = redis_connection()
    version = redis.get(active_job_version_key(worker_id)) or b"0"
    _load_active_job(session, redis, worker_id, version)






def sweep(session: Session) -> int:
    """Forget the cached active job of every worker whose job changed status since the last
    sweep (up to SWEEP_LAG ago): the after-commit invalidation is lost when a process dies
    between its commit and Redis, and this one is read from the committed event log."""
    redis = redis_connection()
    until = clock.now() - SWEEP_LAG
    raw = redis.get(SWEPT_UNTIL_KEY)
    since = _from_micros(raw) if raw else until - timedelta(seconds=NO_JOB_TTL_S)
    if until <= since:
        return 0
    worker_ids = list(session.execute(
        select(Job.worker_id).distinct().join(JobEvent, JobEvent.job_id == Job.id)
        .where(JobEvent.kind == "status", JobEvent.at > since, JobEvent.at <= until,
               Job.worker_id.is_not(None))
    ).scalars())
    session.rollback()
    if worker_ids:
        forget_active_jobs(worker_ids)
    redis.set(SWEPT_UNTIL_KEY, _micros(until))
    return len(worker_ids)


def _stream(job: dict[str, Any], fix: LocationIn, at: datetime, now: datetime) -> None:
    """Positions are shared only while a job is active, and only with that job's room."""
    model = eta_model(current_app.config["DISPATCH"])
    straight = haversine_m(fix.lat, fix.lng, job["lat"], job["lng"])
    eta_s = live_eta_seconds(model, straight, job["travel_mode"], job["status"]) or 0.0
    push.send_now("worker_location", job["id"], {
        "job_id": job["id"], "lat": fix.lat, "lng": fix.lng, "accuracy_m": fix.accuracy_m,
        "heading": fix.heading, "speed_mps": fix.speed_mps, "at": at.isoformat(),
        "distance_m": round(straight, 1), "eta_seconds": round(eta_s),
        "eta_at": (now + timedelta(seconds=eta_s)).isoformat(),
    })


# Parsing the pending fixes is PostgreSQL's job: one array of ids, one of raw fixes.
# A batch flush never waits for a worker row another transaction holds: an accept takes the
# row (online -> busy) for its whole transaction, and a flush that waited for it held every
# row it had locked so far, so every other accept touching any of them queued behind it
# (bench/load.py with phones answering: 41 accepts waiting at once). Rows held elsewhere are
# skipped and stay pending for the next flush; the statement returns them. Never waiting also
# means two overlapping flushes cannot deadlock. (A flush of one named worker, the HTTP
# ping's, holds no other row, so it waits: its fix is stored before the answer.) The lock is
# the one the UPDATE takes anyway (NO KEY UPDATE): a new offer's foreign key holds a KEY SHARE
# lock on its worker's row, which must not make the flush skip that worker.
_FLUSH_SQL = """
WITH v AS (
    SELECT u.id,
           timestamptz 'epoch' + f[1]::bigint * interval '1 microsecond' AS at,
           f[2]::float8 AS lat, f[3]::float8 AS lng, NULLIF(f[4], '')::float8 AS acc,
           NULLIF(f[5], '')::float8 AS hdg, NULLIF(f[6], '')::float8 AS spd,
           timestamptz 'epoch' + f[7]::bigint * interval '1 microsecond' AS recv
      FROM unnest(CAST(:ids AS int[]), CAST(:fixes AS text[])) AS u(id, raw),
           LATERAL string_to_array(u.raw, '|') AS f
), stale AS (  -- rows this fix would move forward (as of the statement's snapshot)
    SELECT w.user_id FROM workers w JOIN v ON v.id = w.user_id
     WHERE w.location_at IS NULL OR w.location_at < v.at
), locked AS (
    SELECT w.user_id FROM workers w JOIN stale ON stale.user_id = w.user_id
       FOR NO KEY UPDATE OF w {wait}
), written AS (
    UPDATE workers w
       SET location = ST_SetSRID(ST_MakePoint(v.lng, v.lat), 4326)::geography,
           location_at = v.at, location_accuracy_m = v.acc, location_heading = v.hdg,
           location_speed_mps = v.spd, location_received_at = v.recv
      FROM v, locked
     WHERE w.user_id = v.id AND locked.user_id = w.user_id
       AND (w.location_at IS NULL OR w.location_at < v.at)
)
SELECT user_id FROM stale WHERE user_id NOT IN (SELECT user_id FROM locked)
"""
_FLUSH_BATCH = text(_FLUSH_SQL.format(wait="SKIP LOCKED"))
_FLUSH_NAMED = text(_FLUSH_SQL.format(wait=""))
_FIX_FIELDS = ("at", "lat", "lng", "acc", "hdg", "spd", "recv")


def flush_fixes(session: Session, worker_ids: list[int] | None = None,
                batch: int = 5000) -> int:
    """Write the newest kept fix of pending workers (a batch of them, or exactly
    `worker_ids`) to PostgreSQL in one statement, then forget them as pending unless a newer
    fix arrived meanwhile. A failure anywhere leaves them pending for the next flush, and so
    does a batch's worker whose row another transaction holds. Several flushers may overlap:
    the write never replaces a newer fix, so writing twice is harmless. Returns how many
    fixes it wrote or found already written."""
    redis = redis_connection()
    if worker_ids is None:
        found = redis.hrandfield(PENDING_KEY, batch, withvalues=True) or []
        pending = [(int(found[i]), found[i + 1]) for i in range(0, len(found), 2)]
    else:
        # The worker's own last fix, pending or not: another flusher may be mid-write.
        pipe = redis.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.hmget(fix_key(worker_id), *_FIX_FIELDS)
        pending = [(worker_id, b"|".join(v or b"" for v in values))
                   for worker_id, values in zip(worker_ids, pipe.execute(), strict=True)
                   if values[0] is not None]
    if not pending:
        return 0
    pending.sort()
    ids = [worker_id for worker_id, _ in pending]
    fixes = [raw.decode() for _, raw in pending]
    try:
        statement = _FLUSH_BATCH if worker_ids is None else _FLUSH_NAMED
        busy = set(session.execute(statement, {"ids": ids, "fixes": fixes}).scalars())
        session.commit()
    except Exception:
        session.rollback()
        raise
    if busy:  # held by another transaction: still pending, for the next flush
        kept = [(i, f) for i, f in zip(ids, fixes, strict=True) if i not in busy]
        ids, fixes = [i for i, _ in kept], [f for _, f in kept]
    _script(redis, _FORGET_FLUSHED)(keys=[PENDING_KEY], args=[*ids, *fixes])
    return len(ids)


def flush_forever(app: Any, sleep: Any) -> None:
    """The web process's background writer (a greenlet under gevent)."""
    from dispatch.db import db

    pause = FLUSH_INTERVAL_S
    while True:
        sleep(pause)
        try:
            with app.app_context():
                flush_fixes(db.session)
                db.session.remove()
            pause = FLUSH_INTERVAL_S
        except Exception:  # database or Redis away: the fixes stay pending; back off
            app.logger.exception("flushing positions failed; retrying in %s s", 5)
            pause = 5.0
