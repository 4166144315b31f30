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

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from redis import Redis
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dispatch import clock, push
from dispatch.api.schemas import LocationIn
from dispatch.errors import invalid
from dispatch.models import Job, Worker
from dispatch.services.dispatching import eta_model
from dispatch.services.jobs import occupying_job
from dispatch.states import JobStatus
from dispatch.tasks import redis_connection
from geo.eta import haversine_m

# A fix from the device's future beyond this is a wrong clock, not a position.
MAX_CLOCK_SKEW = timedelta(seconds=60)
# Faster than any car in a city, with room for GPS noise: beyond it the fix is a jump.
MAX_PLAUSIBLE_SPEED_MPS = 70.0
# GPS noise over a short hop can look fast; below this distance no jump is judged.
JUMP_TOLERANCE_M = 150.0
FLUSH_INTERVAL_S = 0.2
DIRTY_KEY = "dispatch:fix:dirty"
# How long the answer "this worker has no active job" is trusted. Every status change
# deletes the cached answer after its commit (push.job_changed -> forget_active_job), so the
# TTL only bounds a lost invalidation; it must outlast the idle ping interval (5 s), or every
# idle worker's ping reads PostgreSQL (bench/load.py measured that: 7-9 ms against 2 ms).
NO_JOB_TTL_S = 60
ACTIVE_JOB_TTL_S = 30


def fix_key(worker_id: int) -> str:
    return f"dispatch:fix:{worker_id}"


def active_job_key(worker_id: int) -> str:
    return f"dispatch:active-job:{worker_id}"


def active_job_version_key(worker_id: int) -> str:
    return f"dispatch:active-job-version:{worker_id}"


# KEYS: fix hash, dirty set, active-job cache, active-job version. ARGV: worker id, fix time
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
redis.call('SADD', KEYS[2], ARGV[1])
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

# Forget a flushed fix as dirty only if no newer fix arrived meanwhile.
# KEYS: dirty set, then one fix hash per worker. ARGV: worker ids, then the flushed times.
_FORGET_FLUSHED = """
local n = #KEYS - 1
for i = 1, n do
  if redis.call('HGET', KEYS[i + 1], 'at') == ARGV[n + i] then
    redis.call('SREM', KEYS[1], ARGV[i])
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
        raise invalid("recorded_at", "must include a timezone offset")
    if at > now + MAX_CLOCK_SKEW:
        raise invalid("recorded_at", "is in the future")
    settings = current_app.config["DISPATCH"]
    max_age = timedelta(seconds=settings.location_max_age_s)
    if at < now - max_age:
        raise invalid("recorded_at", f"is older than {max_age.total_seconds():g} s; "
                                     "send the current position")
    redis = redis_connection()
    reason, cached_job, version = _script(redis, _CHECK_AND_STORE)(
        keys=[fix_key(worker_id), DIRTY_KEY, active_job_key(worker_id),
              active_job_version_key(worker_id)],
        args=[worker_id, _micros(at), repr(fix.lat), repr(fix.lng), _opt(fix.accuracy_m),
              _opt(fix.heading), _opt(fix.speed_mps), _micros(now),
              settings.ping_min_interval_ms * 1000, MAX_PLAUSIBLE_SPEED_MPS, JUMP_TOLERANCE_M])
    if reason:
        return PingResult(False, reason.decode())
    if cached_job:
        job = _decode_job(cached_job)
    else:
        job = _load_active_job(session, redis, worker_id, version)
    if job is not None:
        _stream(job, fix, at, now)
    return PingResult(True, None)


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
        cache(keys=keys, args=[version, "-", NO_JOB_TTL_S])
        return None
    cache(keys=keys, args=[version, f"{row.id}|{row.lat!r}|{row.lng!r}|{row.status}|"
                                    f"{row.travel_mode}", ACTIVE_JOB_TTL_S])
    return {"id": row.id, "lat": row.lat, "lng": row.lng, "status": row.status,
            "travel_mode": row.travel_mode}


def forget_active_job(worker_id: int) -> None:
    """Called after a job's status change commits: the next ping reads the truth again, and
    a ping that read the database before the change cannot cache what it read."""
    pipe = redis_connection().pipeline(transaction=True)
    pipe.incr(active_job_version_key(worker_id))
    pipe.delete(active_job_key(worker_id))
    pipe.execute()


def _stream(job: dict[str, Any], fix: LocationIn, at: datetime, now: datetime) -> None:
    """Positions are shared only while a job is active, and only with that job's room."""
    model = eta_model(current_app.config["DISPATCH"])
    straight = haversine_m(fix.lat, fix.lng, job["lat"], job["lng"])
    eta_s = 0.0
    if JobStatus(job["status"]) in (JobStatus.ASSIGNED, JobStatus.EN_ROUTE):
        eta_s = model.road_distance_m(straight) / model.speed_mps(job["travel_mode"])
    push.send_now("worker_location", job["id"], {
        "job_id": job["id"], "lat": fix.lat, "lng": fix.lng, "accuracy_m": fix.accuracy_m,
        "heading": fix.heading, "speed_mps": fix.speed_mps, "at": at.isoformat(),
        "distance_m": round(straight, 1), "eta_seconds": round(eta_s),
        "eta_at": (now + timedelta(seconds=eta_s)).isoformat(),
    })


_FLUSH_SQL = text("""
UPDATE workers w
   SET location = ST_SetSRID(ST_MakePoint(v.lng, v.lat), 4326)::geography,
       location_at = v.at, location_accuracy_m = v.acc, location_heading = v.hdg,
       location_speed_mps = v.spd, location_received_at = v.recv
  FROM jsonb_to_recordset(CAST(:fixes AS jsonb))
       AS v(id int, lat float8, lng float8, at timestamptz, acc float8, hdg float8,
            spd float8, recv timestamptz)
 WHERE w.user_id = v.id AND (w.location_at IS NULL OR w.location_at < v.at)
""")


def flush_fixes(session: Session, worker_ids: list[int] | None = None,
                batch: int = 5000) -> int:
    """Write the newest kept fix of dirty workers (a batch of them, or exactly `worker_ids`)
    to PostgreSQL in one statement, then forget them as dirty unless a newer fix arrived
    meanwhile. A failure anywhere leaves them dirty for the next flush. Several flushers may
    overlap: the write never replaces a newer fix, so writing twice is harmless."""
    import json

    redis = redis_connection()
    if worker_ids is None:
        ids = sorted(int(m) for m in redis.srandmember(DIRTY_KEY, batch) or [])
    else:
        ids = sorted(worker_ids)
    if not ids:
        return 0
    pipe = redis.pipeline(transaction=False)
    for worker_id in ids:
        pipe.hmget(fix_key(worker_id), "at", "lat", "lng", "acc", "hdg", "spd", "recv")
    fixes, flushed = [], []
    for worker_id, values in zip(ids, pipe.execute(), strict=True):
        at, lat, lng, acc, hdg, spd, recv = values
        if at is None:
            continue
        flushed.append((worker_id, at))
        fixes.append({
            "id": worker_id, "lat": float(lat), "lng": float(lng),
            "at": _from_micros(at).isoformat(), "recv": _from_micros(recv).isoformat(),
            "acc": float(acc) if acc else None, "hdg": float(hdg) if hdg else None,
            "spd": float(spd) if spd else None,
        })
    if fixes:
        try:
            session.execute(_FLUSH_SQL, {"fixes": json.dumps(fixes)})
            session.commit()
        except Exception:
            session.rollback()
            raise
    if flushed:
        _script(redis, _FORGET_FLUSHED)(
            keys=[DIRTY_KEY, *(fix_key(w) for w, _ in flushed)],
            args=[*(w for w, _ in flushed), *(at for _, at in flushed)])
    return len(fixes)


def flush_forever(app: Any, sleep: Any) -> None:
    """The web process's background writer (a greenlet under gevent)."""
    from dispatch.extensions import db

    pause = FLUSH_INTERVAL_S
    while True:
        sleep(pause)
        try:
            with app.app_context():
                flush_fixes(db.session)
                db.session.remove()
            pause = FLUSH_INTERVAL_S
        except Exception:  # database or Redis away: the fixes stay dirty; back off
            app.logger.exception("flushing positions failed; retrying in %s s", 5)
            pause = 5.0
