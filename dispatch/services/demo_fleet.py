"""The demo fleet: the seeded demo workers, played by the machine while no person plays them,
so the demo city stays alive after `make run` (positions fresh, offers answered, jobs done).

Who is played: demo workers (users of DEMO_DOMAIN only, checked in SQL and again here) who
are online or busy, have no socket open (`dispatch.infra.presence`: nobody has the Work page
or the app open as them), and whose latest position fix is either the fleet's own or older
than `demo_fleet_hands_off_s` (a phone or the Work page sent it: a person is at the wheel;
the fleet takes over again once that person has been quiet that long). Accepting, declining
or moving a job through the API without sending positions is not noticed.

What they do goes through the same services a phone's requests reach: `tracking.record_fix`
(then `flush_fixes`) for positions, `dispatching.accept_offer` / `decline_offer` for offers,
`jobs.worker_update_status` for en route, arrived, in progress, completed. How they behave
(keenness by distance, answer delays, rush-hour traffic) is `dispatch.planning.behaviour`,
the city simulation's people. Every decision is drawn from the ids involved, so the fleet
keeps no state of its own beyond the time of its last fix per worker (in Redis): a restarted
fleet carries on where the database says things are.

One tick is three reads (workers, their pending offers, their active jobs), Redis pipelines,
one fix per played worker, one write of the fixes, and a service call per decision due
(and, for each worker once in five to ten minutes, tracking's look-up of their active job,
which it then caches)."""

from __future__ import annotations

import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.models import Category, Job, Offer, User, Worker
from dispatch.domain.commands import LocationIn
from dispatch.domain.errors import DomainError
from dispatch.domain.states import (
    ACTIVE_JOB_STATUSES,
    UNDER_WAY_STATUSES,
    Availability,
    JobStatus,
    OfferStatus,
)
from dispatch.infra.config import Settings
from dispatch.infra.presence import connected_users
from dispatch.infra.redis import redis_connection
from dispatch.planning.behaviour import (
    DURATION_SIGMA,
    STARTUP_SIGMA,
    answer_delay_s,
    traffic_factor,
    willingness,
)
from dispatch.services import dispatching, jobs, tracking
from dispatch.services.context import eta_model, settings
from geo.eta import EARTH_RADIUS_M, haversine_m

log = logging.getLogger(__name__)

DEMO_DOMAIN = "demo.dispatch.test"
DEMO_CENTER = (37.7749, -122.4194)  # San Francisco
# Kept for people: the README's walk-through logs in as this worker. The fleet keeps them at
# City Hall with a fresh position and never answers their offers or moves their jobs; when
# nobody plays them, their offers lapse and the cascade asks others.
KEPT_FOR_PEOPLE = {f"worker1@{DEMO_DOMAIN}": (37.7793, -122.41925)}
# Worker id -> µs time of the last fix the fleet sent for them: a newer fix is a person's.
SENT_KEY = "dispatch:demo-fleet:sent"
ARRIVE_WITHIN_M = 25.0
# After a pause (fleet restarted), travel resumes from where it was rather than teleporting.
MAX_STEP_GAP_S = 30.0
# Idle workers stroll about, and drift back when they have strayed from the demo city.
WANDER_MPS = 0.6
WANDER_RADIUS_M = 6_000.0
# From the door to the work: ringing, greeting, a look at the problem.
SETTLE_S = 60.0
# Answers never land in the last seconds of the accept window (and never take over 20 s).
ANSWER_MIN_S, ANSWER_MAX_S, ANSWER_MARGIN_S = 2.0, 20.0, 3.0


@dataclass(frozen=True)
class FleetWorker:
    id: int
    email: str
    travel_mode: str
    availability: str
    lat: float | None
    lng: float | None
    location_at: datetime | None


@dataclass(frozen=True)
class ActiveJob:
    id: int
    worker_id: int
    status: str
    urgency: str
    lat: float
    lng: float
    assigned_at: datetime | None
    arrived_at: datetime | None
    window_start: datetime | None
    queued: bool
    typical_minutes: int


@dataclass
class TickReport:
    """What one tick did, for the log and the tests."""

    played: list[int] = field(default_factory=list)
    left_alone: list[int] = field(default_factory=list)
    fixes: int = 0
    accepted: list[int] = field(default_factory=list)
    declined: list[int] = field(default_factory=list)
    moves: list[tuple[int, str]] = field(default_factory=list)
    failures: int = 0


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def traits(worker_id: int) -> tuple[float, float]:
    """A demo worker's own keenness and median answer delay, the same on every start
    (the simulation's distributions: Beta(8, 2.5), 4 to 16 s)."""
    rng = random.Random(f"demo-worker:{worker_id}")
    return rng.betavariate(8, 2.5), rng.uniform(4, 16)


def tick(session: Session) -> TickReport:
    """Play every demo worker nobody else plays, once. A failure with one worker is logged
    and leaves the others to go on."""
    s = settings()
    now = clock.now()
    report = TickReport()
    workers = _demo_workers(session)
    redis = redis_connection()
    played = _unplayed(redis, workers, now, s, report)
    kept = [w for w in played if w.email in KEPT_FOR_PEOPLE]
    played = [w for w in played if w.email not in KEPT_FOR_PEOPLE]
    ids = [w.id for w in played]
    if not ids and not kept:
        return report
    offers = session.execute(
        select(Offer.id, Offer.job_id, Offer.worker_id, Offer.created_at, Offer.expires_at,
               Offer.eta_seconds)
        .where(Offer.worker_id.in_(ids), Offer.status == OfferStatus.PENDING.value)
        .order_by(Offer.id)).all() if ids else []
    held = _held_for_people(session, offers, ids)
    offers = [o for o in offers if o.job_id not in held]
    current = _current_jobs(session, ids + [w.id for w in kept])
    session.rollback()  # no snapshot held while the services work
    users: dict[int, User] = {}

    def user(worker_id: int) -> User:
        if worker_id not in users:
            found = session.get(User, worker_id)
            assert found is not None and found.email.endswith(f"@{DEMO_DOMAIN}")
            users[worker_id] = found
        return users[worker_id]

    taken: set[int] = set()  # jobs a played worker accepted this tick: their offers are gone
    for offer in offers:
        if offer.job_id not in taken:
            _guarded(session, report,
                     lambda o=offer: _answer(session, o, user, now, s, report, taken))
    fixes = _positions(redis, ids + [w.id for w in kept])
    moved: list[int] = []
    # Workers kept for people only wait at their spot; their jobs are a person's to move.
    for worker in [w for w in kept if w.id not in current] + played:
        _guarded(session, report, lambda w=worker: _play(
            session, w, current.get(w.id), fixes.get(w.id), user, now, s, report, moved))
    if moved:
        _guarded(session, report, lambda: tracking.flush_fixes(session, moved))
    return report


def _held_for_people(session: Session, offers: Sequence[Any], played_ids: list[int]) -> set[int]:
    """Jobs also offered to a worker a person plays right now (their Work page or app is
    open): the fleet lets the person answer first, so a walk-through is never raced."""
    job_ids = sorted({o.job_id for o in offers})
    if not job_ids:
        return set()
    rows = session.execute(
        select(Offer.job_id, Offer.worker_id)
        .where(Offer.job_id.in_(job_ids), Offer.status == OfferStatus.PENDING.value,
               Offer.worker_id.not_in(played_ids))).all()
    people = connected_users(sorted({r.worker_id for r in rows}))
    return {r.job_id for r in rows if r.worker_id in people}


def _guarded(session: Session, report: TickReport, step: Callable[[], Any]) -> None:
    try:
        step()
    except DomainError as exc:  # a race with the cascade or a person: next tick decides again
        session.rollback()
        log.info("demo fleet: %s", exc.message)
    except Exception:
        session.rollback()
        report.failures += 1
        log.exception("demo fleet: a step failed; carrying on")


def _demo_workers(session: Session) -> list[FleetWorker]:
    rows = session.execute(
        select(Worker.user_id, User.email, Worker.travel_mode, Worker.availability, Worker.lat,
               Worker.lng, Worker.location_at)
        .join(User, User.id == Worker.user_id)
        .where(User.email.like(f"%@{DEMO_DOMAIN}"))
        .order_by(Worker.user_id)).all()
    return [FleetWorker(*row) for row in rows if row.email.endswith(f"@{DEMO_DOMAIN}")]


def _unplayed(redis: Any, workers: Sequence[FleetWorker], now: datetime, s: Settings,
              report: TickReport) -> list[FleetWorker]:
    """The workers the fleet may play now (see the module's docstring for the rule)."""
    candidates = [w for w in workers if w.availability != Availability.OFFLINE.value]
    ids = [w.id for w in candidates]
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for worker_id in ids:
        pipe.hget(tracking.fix_key(worker_id), "at")
    pipe.hgetall(SENT_KEY)
    *fix_ats, sent_raw = pipe.execute()
    sent = {int(k): int(v) for k, v in sent_raw.items()}
    with_socket = connected_users(ids)
    recent = _micros(now - _seconds(s.demo_fleet_hands_off_s))
    played = []
    for worker, raw_at in zip(candidates, fix_ats, strict=True):
        fix_at = int(raw_at) if raw_at else None
        someone_else = (fix_at is not None and fix_at > recent
                        and fix_at > sent.get(worker.id, 0))
        if worker.id in with_socket or someone_else:
            report.left_alone.append(worker.id)
        else:
            played.append(worker)
            report.played.append(worker.id)
    return played


def _current_jobs(session: Session, ids: list[int]) -> dict[int, ActiveJob]:
    """Each worker's job that matters now: the one under way, else the urgent one they
    accepted, else the next booked window (queued jobs wait for the one before them)."""
    rows = session.execute(
        select(Job.id, Job.worker_id, Job.status, Job.urgency, Job.lat, Job.lng,
               Job.assigned_at, Job.arrived_at, Job.window_start,
               Job.queued_behind_job_id.is_not(None), Category.typical_minutes)
        .join(Category, Category.id == Job.category_id)
        .where(Job.worker_id.in_(ids),
               Job.status.in_([status.value for status in ACTIVE_JOB_STATUSES]))).all()
    by_worker: dict[int, list[ActiveJob]] = defaultdict(list)
    for row in rows:
        by_worker[row[1]].append(ActiveJob(*row))

    def rank(job: ActiveJob) -> tuple[int, datetime | None, int]:
        under_way = JobStatus(job.status) in UNDER_WAY_STATUSES
        return (0 if under_way else 1 if job.window_start is None else 2,
                job.window_start, job.id)

    return {worker_id: min(found, key=rank) for worker_id, found in by_worker.items()
            if not min(found, key=rank).queued}


def _answer(session: Session, offer: Any, user: Callable[[int], User], now: datetime,
            s: Settings, report: TickReport, taken: set[int]) -> None:
    """Answer when this worker would: after their delay, keen by the job's distance."""
    keen, median_s = traits(offer.worker_id)
    rng = random.Random(f"demo-offer:{offer.id}")
    takes = rng.random() < willingness(keen, offer.eta_seconds)
    delay = min(ANSWER_MAX_S, max(ANSWER_MIN_S, answer_delay_s(median_s, rng.gauss(0, 1))))
    window_s = (offer.expires_at - offer.created_at).total_seconds()
    delay = min(delay / s.demo_fleet_speed, max(window_s - ANSWER_MARGIN_S, 0.0))
    if now < offer.created_at + _seconds(delay):
        return
    if takes:
        dispatching.accept_offer(session, offer.id, user(offer.worker_id))
        report.accepted.append(offer.id)
        taken.add(offer.job_id)
    else:
        dispatching.decline_offer(session, offer.id, user(offer.worker_id))
        report.declined.append(offer.id)


def _positions(redis: Any, ids: list[int]) -> dict[int, tuple[float, float, datetime]]:
    """The last fix tracking kept for each worker (newer than the database's, if unflushed)."""
    pipe = redis.pipeline(transaction=False)
    for worker_id in ids:
        pipe.hmget(tracking.fix_key(worker_id), "at", "lat", "lng")
    found = {}
    for worker_id, (at, lat, lng) in zip(ids, pipe.execute(), strict=True):
        if at is not None:
            found[worker_id] = (float(lat), float(lng),
                                datetime.fromtimestamp(int(at) / 1_000_000, UTC))
    return found


def _play(session: Session, worker: FleetWorker, job: ActiveJob | None,
          fix: tuple[float, float, datetime] | None, user: Callable[[int], User],
          now: datetime, s: Settings, report: TickReport, moved: list[int]) -> None:
    """One worker's move: a step (towards the job, or a stroll), a fix, and the status
    change that is due."""
    here = _where(worker, fix) or KEPT_FOR_PEOPLE.get(worker.email)
    if here is None:
        return  # never had a position: nothing to refresh (seed-demo gives every one one)
    last_at = fix[2] if fix is not None else (worker.location_at or now)
    gap = min(max((now - last_at).total_seconds(), 0.0), MAX_STEP_GAP_S)
    status = JobStatus(job.status) if job is not None else None
    arrived = False
    if job is not None and status is JobStatus.EN_ROUTE:
        there = (job.lat, job.lng)
        rate = (eta_model(s).speed_mps(worker.travel_mode) / s.circuity
                * traffic_factor(worker.travel_mode, _local_seconds(now, s)))
        step = _step_limit(gap, rate * s.demo_fleet_speed * gap)
        remaining = haversine_m(*here, *there)
        arrived = remaining - step <= ARRIVE_WITHIN_M
        target = there if arrived else _towards(here, there, step / remaining)
    elif job is not None and status in (JobStatus.ARRIVED, JobStatus.IN_PROGRESS):
        target = (job.lat, job.lng)
    elif job is not None and job.window_start is None:
        target = here  # about to set out
    else:
        stroll = _step_limit(gap, WANDER_MPS * s.demo_fleet_speed * gap)
        spot = KEPT_FOR_PEOPLE.get(worker.email)
        target = (_wander(worker.id, here, stroll, now) if spot is None
                  else _back_to(here, spot, stroll))
    if _send_fix(session, worker.id, target, now):
        report.fixes += 1
        moved.append(worker.id)
    elif arrived:
        return  # the door fix was not kept (too soon after the last): arrive next tick
    if job is None:
        return
    due = _due_move(job, status, arrived, here, worker, now, s)
    if due is not None:
        jobs.worker_update_status(session, user(worker.id), job.id, due)
        report.moves.append((job.id, due.value))


def _where(worker: FleetWorker,
           fix: tuple[float, float, datetime] | None) -> tuple[float, float] | None:
    if fix is not None and (worker.location_at is None or fix[2] >= worker.location_at):
        return fix[0], fix[1]
    if worker.lat is None or worker.lng is None:
        return None
    return worker.lat, worker.lng


def _due_move(job: ActiveJob, status: JobStatus | None, arrived: bool,
              here: tuple[float, float], worker: FleetWorker, now: datetime,
              s: Settings) -> JobStatus | None:
    rng = random.Random(f"demo-job:{job.id}:{worker.id}")
    startup_s = s.startup_s * math.exp(STARTUP_SIGMA * rng.gauss(0, 1))
    on_site_s = job.typical_minutes * 60 * math.exp(DURATION_SIGMA * rng.gauss(0, 1))
    speed = s.demo_fleet_speed
    if status is JobStatus.ASSIGNED:
        if job.window_start is not None:  # a booked window: leave in time for it
            trip_s = eta_model(s).eta_seconds(haversine_m(*here, job.lat, job.lng),
                                              worker.travel_mode)
            leave_at = job.window_start - _seconds(trip_s / speed)
        else:
            leave_at = (job.assigned_at or now) + _seconds(startup_s / speed)
        return JobStatus.EN_ROUTE if now >= leave_at else None
    if status is JobStatus.EN_ROUTE:
        return JobStatus.ARRIVED if arrived else None
    arrived_at = job.arrived_at or now
    if status is JobStatus.ARRIVED and now >= arrived_at + _seconds(SETTLE_S / speed):
        return JobStatus.IN_PROGRESS
    if status is JobStatus.IN_PROGRESS and now >= arrived_at + _seconds(on_site_s / speed):
        return JobStatus.COMPLETED
    return None


def _send_fix(session: Session, worker_id: int, at: tuple[float, float],
              now: datetime) -> bool:
    """A phone's fix through the phone's path; remembered as the fleet's own when kept."""
    result = tracking.record_fix(session, worker_id, LocationIn(
        lat=at[0], lng=at[1], accuracy_m=10.0, recorded_at=now))
    if result.accepted:
        redis_connection().hset(SENT_KEY, str(worker_id), str(_micros(now)))
    return result.accepted


def _step_limit(gap_s: float, wanted_m: float) -> float:
    """A step tracking will keep: never so far so fast that it reads as a GPS jump, however
    fast the fleet is told to play."""
    return min(wanted_m, 0.9 * max(tracking.JUMP_TOLERANCE_M,
                                   tracking.MAX_PLAUSIBLE_SPEED_MPS * gap_s))


def _back_to(here: tuple[float, float], spot: tuple[float, float],
             step_m: float) -> tuple[float, float]:
    """A worker kept for people waits at their spot with a fresh position, walking back to
    it if a person left them elsewhere, so the walk-through can book next to them."""
    away = haversine_m(*here, *spot)
    return spot if away <= step_m else _towards(here, spot, step_m / away)


def _towards(here: tuple[float, float], there: tuple[float, float],
             share: float) -> tuple[float, float]:
    share = min(max(share, 0.0), 1.0)
    return (here[0] + (there[0] - here[0]) * share, here[1] + (there[1] - here[1]) * share)


def _wander(worker_id: int, here: tuple[float, float], step_m: float,
            now: datetime) -> tuple[float, float]:
    """A stroll in a random direction; back towards the centre once too far out."""
    if step_m <= 0:
        return here
    away = haversine_m(*here, *DEMO_CENTER)
    if away > WANDER_RADIUS_M:
        return _towards(here, DEMO_CENTER, step_m / away)
    bearing = random.Random(f"{worker_id}:{_micros(now)}").uniform(0, 2 * math.pi)
    dlat = math.degrees(step_m * math.cos(bearing) / EARTH_RADIUS_M)
    dlng = math.degrees(step_m * math.sin(bearing)
                        / (EARTH_RADIUS_M * math.cos(math.radians(here[0]))))
    return here[0] + dlat, here[1] + dlng


def _local_seconds(now: datetime, s: Settings) -> float:
    local = now.astimezone(ZoneInfo(s.service_timezone))
    return local.hour * 3600 + local.minute * 60 + local.second
