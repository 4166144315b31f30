"""The discrete-event loop: one simulated day against the real services, real PostGIS and
real Redis, with `dispatch.db.clock` set to the simulated time.

Events sit in a heap by simulated time; the loop sets the clock to each event's time and
runs it. Every product decision is the services' own (`booking.book_urgent`,
`dispatching.send_wave` / `accept_offer` / `decline_offer` / `expire_offers`,
`jobs.worker_update_status`, `accounts.set_availability`, `tracking.record_fix` /
`flush_fixes`, `batches.submit` / `process`, `contact.sweep`); the simulation only plays the
people (who answers which offer, when, how fast they travel) and the RQ worker (it calls
`expire_offers` when each offer window closes, 0.5 s after, like the scheduled task).

To know which offers the services made (a decline or an expiry may send the next wave by
itself), the loop reads new rows of `offers` after each call, and keeps a mirror of the
pending ones; a worker answers only offers that their phone would still show.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from flask import current_app
from redis import Redis
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.job_rows import record_event
from dispatch.db.models import Job, Role, Urgency, User
from dispatch.domain.commands import JobIn, LocationIn
from dispatch.domain.errors import DomainError
from dispatch.domain.states import Actor, Availability, JobStatus
from dispatch.infra.presence import open_for_good, presence_key
from dispatch.planning.assignment import BatchJob, BatchWorker, solve
from dispatch.planning.behaviour import traffic_factor
from dispatch.services import (
    accounts,
    batches,
    booking,
    confirmation,
    contact,
    escrow,
    ledger,
    tracking,
)
from dispatch.services.dispatching import (
    accept_offer,
    decline_offer,
    eta_model,
    expire_offers,
    search_candidates,
    send_wave,
    settings,
)
from dispatch.services.dispatching import sweep as dispatch_sweep
from dispatch.services.jobs import transition, worker_update_status
from geo.candidates import Candidate, MatchRequest, MatchWeights, find_candidates
from geo.eta import TravelMode, haversine_m
from geo.points import wkt_point

from .city import City, Request, SimWorker, pair_draws, willingness

EXPIRY_GRACE_S = 0.5  # like dispatch.infra.queues.EXPIRY_GRACE: a last-second accept still wins
TICK_S = 60.0  # housekeeping period (end-of-run check; see on_tick)
FRESH_EVERY_TICKS = 4  # idle phones' positions written every 4 minutes (max age is 10)
MASKING_EVERY_TICKS = 5  # masked sessions closed (pool numbers freed) within 5 minutes
DRAIN_S = 3 * 3600.0  # after the last request, run until every job is settled (at most this)
NEAREST_POOL = 1024  # the broadcast reaches everyone eligible, not just a KNN pool of 32
# Money: this share of payers confirm the work themselves, 5 to 60 minutes after completion
# (the same requests in every policy); the other jobs' holds go to the worker by the
# automatic release (the RQ timer's `confirmation.auto_release` at its due time).
CONFIRM_SHARE = 0.6


class Policy(StrEnum):
    NEAREST = "nearest"
    CASCADE = "cascade"
    BATCHED = "batched"


@dataclass
class Record:
    """One request's fate, as the simulation saw it (the database has the rest)."""

    req: Request
    job_id: int | None = None
    refused: bool = False
    booked_t: float | None = None
    promise_t: float | None = None  # estimated_arrival when booked
    promised: bool | None = None  # told "someone by arrive_by" at booking (jobs.promised)
    accepted_t: float | None = None
    eta_t: float | None = None  # estimated_arrival as set by the accept
    arrived_t: float | None = None
    completed_t: float | None = None
    worker_id: int | None = None
    startup_s: float | None = None
    travel_s: float | None = None
    candidates: int | None = None  # who could come, as booking saw it (a search's worth)


@dataclass
class WorkerState:
    """A worker as the simulation plays them: where they are, what they hold, and the
    intervals the report turns into utilization."""

    spec: SimWorker
    user: User
    status: str = "offline"  # offline | idle | busy
    pos: tuple[float, float] = (0.0, 0.0)
    record: Record | None = None
    trip: tuple[float, float, tuple[float, float], tuple[float, float]] | None = None
    off_after_job: bool = False
    online_since: float | None = None
    online: list[tuple[float, float]] = field(default_factory=list)
    busy_since: float | None = None
    busy: list[tuple[float, float]] = field(default_factory=list)
    work_s: float = 0.0  # on site (in progress), the earnings proxy
    jobs: int = 0
    pending: set[int] = field(default_factory=set)
    next_record: Record | None = None  # a job queued behind the one they are on


@dataclass
class PendingOffer:
    """An offer the worker's phone still shows (the mirror of a pending `offers` row)."""

    job_id: int
    worker_id: int
    expires_t: float
    eta_s: float
    created_t: float


@dataclass
class Outcome:
    """What a policy's run produced: per-request records, per-worker states, counters."""

    policy: Policy
    records: list[Record]
    workers: list[WorkerState]
    db_jobs: dict[int, dict[str, Any]]
    counters: Counter[str]
    wall_s: float
    cpu_s: float  # this process only (the database's share comes on top)
    stop_t: float
    errors: list[str]
    money: dict[str, float] = field(default_factory=dict)  # see Simulation.money_figures


class Simulation:
    """One policy over the city's day. Single-threaded: the services' locking is exercised
    for correctness of each step, not for concurrency (the tests do that)."""

    def __init__(self, session: Session, redis: Redis, city: City, policy: Policy,
                 slugs: dict[str, int], manager_id: int, unit_ids: list[int],
                 ping_s: float, batch_window_s: float) -> None:
        self.session = session
        self.redis = redis
        self.city = city
        self.policy = policy
        self.slugs = slugs
        # The services read only a caller's id and role: a transient User (never added to
        # the session) saves a load per call and cannot be written by accident.
        # Their phones were proven (`sim.db.seed` stamps them): batches and shifts need it.
        self.manager = User(id=manager_id, role="property_manager",
                            phone_verified_at=city.day_start)
        self.unit_ids = unit_ids
        self.ping_s = ping_s
        self.batch_window_s = batch_window_s
        self.settings = settings()
        self.eta = eta_model(self.settings)
        self.day0 = city.day_start.astimezone(UTC)
        self.t = city.start_s
        self.heap: list[tuple[float, int, str, Any]] = []
        self.seq = itertools.count()
        self.workers = {w.id: WorkerState(w, User(id=w.id, role="worker",
                                                  phone_verified_at=city.day_start),
                                          pos=w.home)
                        for w in city.workers}
        self.records: list[Record] = []
        self.by_job: dict[int, Record] = {}
        self.offers: dict[int, PendingOffer] = {}
        self.job_offers: dict[int, set[int]] = {}
        self.expiry_scheduled: set[tuple[int, float]] = set()
        self.last_offer_id = 0
        self.moving: set[int] = set()
        self.held: list[Record] = []  # batched policy: jobs waiting for the window to close
        self.counters: Counter[str] = Counter()
        self.errors: list[str] = []
        self.ticks = 0
        self.handlers: dict[str, Callable[[Any], None]] = {
            "request": self.on_request, "response": self.on_response,
            "expiry": self.on_expiry, "en_route": self.on_en_route, "arrive": self.on_arrive,
            "complete": self.on_complete, "shift_start": self.on_shift_start,
            "shift_end": self.on_shift_end, "tick": self.on_tick, "ping": self.on_ping,
            "window": self.on_window, "batch_submit": self.on_batch_submit,
            "batch_process": self.on_batch_process, "confirm": self.on_confirm,
            "release": self.on_release,
        }

    # ------------------------------------------------------------------ clock and events

    def now(self) -> datetime:
        return self.day0 + timedelta(seconds=self.t)

    def sim_t(self, moment: datetime) -> float:
        return (moment - self.day0).total_seconds()

    def at(self, t: float, kind: str, data: Any = None) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, data))

    def run(self) -> Outcome:
        previous = clock.set_source(self.now)
        config = current_app.config["DISPATCH"]
        if self.policy is Policy.NEAREST:  # a broadcast reaches free workers only
            current_app.config["DISPATCH"] = replace(config, queue_behind_busy=False)
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            self.schedule_day()
            stop = self.city.end_s + DRAIN_S
            while self.heap:
                t, _, kind, data = heapq.heappop(self.heap)
                if t > stop or kind == "stop":
                    break
                self.t = t
                self.handlers[kind](data)
            self.close_intervals()
            stop_t = self.t
            self.release_the_rest()
            money = self.money_figures()
            self.t = stop_t
            db_jobs = self.read_jobs()
            for job in db_jobs.values():  # should be none: a stuck job is a finding
                if job["status"] in ("requested", "dispatching", "assigned", "en_route"):
                    self.counters[f"unsettled_at_stop_{job['status']}"] += 1
        finally:
            clock.set_source(previous)
            current_app.config["DISPATCH"] = config
        return Outcome(self.policy, self.records, list(self.workers.values()), db_jobs,
                       self.counters, time.perf_counter() - started,
                       time.process_time() - cpu_started, self.t, self.errors, money)

    def schedule_day(self) -> None:
        start = self.city.start_s
        for w in self.city.workers:
            for a, b in w.shifts:
                if b <= start:
                    continue
                self.at(max(a, start), "shift_start", (w.id, b))
        for req in self.city.requests:
            self.at(req.t_s, "request", req)
        for batch in self.city.batches:
            self.at(batch[0].t_s, "batch_submit", batch)
        self.at(start + TICK_S, "tick")
        self.at(start + self.ping_s, "ping")
        if self.policy is Policy.BATCHED:
            self.at(start + self.batch_window_s, "window")

    # ------------------------------------------------------------------ offers mirror

    def sync_offers(self) -> None:
        """Pick up the offers the services just made and schedule each worker's answer and
        each window's expiry."""
        rows = self.session.execute(text(
            "SELECT id, job_id, worker_id, expires_at, eta_seconds, created_at, status "
            "FROM offers WHERE id > :last ORDER BY id"), {"last": self.last_offer_id}).all()
        self.session.rollback()
        for r in rows:
            self.last_offer_id = r.id
            if r.status != "pending":
                continue
            expires_t = self.sim_t(r.expires_at)
            offer = PendingOffer(r.job_id, r.worker_id, expires_t, float(r.eta_seconds),
                                 self.sim_t(r.created_at))
            self.offers[r.id] = offer
            self.job_offers.setdefault(r.job_id, set()).add(r.id)
            worker = self.workers[r.worker_id]
            worker.pending.add(r.id)
            self.counters["offers"] += 1
            record = self.by_job.get(r.job_id)
            if record is not None:
                self.schedule_answer(r.id, offer, worker, record)
            if (r.job_id, expires_t) not in self.expiry_scheduled:
                self.expiry_scheduled.add((r.job_id, expires_t))
                self.at(expires_t + EXPIRY_GRACE_S, "expiry", r.job_id)

    def schedule_answer(self, offer_id: int, offer: PendingOffer, worker: WorkerState,
                        record: Record) -> None:
        draw = pair_draws(self.city.seed, worker.spec.id, record.req.idx,
                          worker.spec.delay_median_s)
        if draw.u_accept < willingness(worker.spec, offer.eta_s):
            self.at(offer.created_t + draw.delay_s, "response", (offer_id, True))
        elif draw.u_ignore >= worker.spec.ignore_share:
            self.at(offer.created_t + draw.delay_s, "response", (offer_id, False))
        else:
            self.counters["offers_ignored"] += 1

    def close_offer(self, offer_id: int) -> None:
        offer = self.offers.pop(offer_id, None)
        if offer is None:
            return
        self.job_offers.get(offer.job_id, set()).discard(offer_id)
        self.workers[offer.worker_id].pending.discard(offer_id)

    def close_job_offers(self, job_id: int, due_only: bool = False) -> None:
        for offer_id in list(self.job_offers.get(job_id, ())):
            if not due_only or self.offers[offer_id].expires_t <= self.t:
                self.close_offer(offer_id)

    def close_worker_offers(self, worker: WorkerState) -> None:
        for offer_id in list(worker.pending):
            self.close_offer(offer_id)

    # ------------------------------------------------------------------ booking, per policy

    def on_request(self, req: Request) -> None:
        record = Record(req)
        self.records.append(record)
        self.counters["requests"] += 1
        resident = User(id=len(self.city.workers) + 1 + req.idx, role="resident")
        if self.policy is Policy.CASCADE:
            try:
                job, _ = booking.book_urgent(self.session, resident, JobIn(
                    category_id=self.slugs[req.slug], description=f"sim request {req.idx}",
                    lat=req.lat, lng=req.lng), f"sim-{req.idx}")
            except DomainError as exc:
                if exc.code != "no_coverage":
                    raise
                record.refused = True
                self.counters["refused"] += 1
                return
            self.booked(record, job)
        else:
            job = self.open_job(record, resident)
            if job is None:
                return
            if self.policy is Policy.NEAREST:
                self.broadcast(job, req)
            else:
                self.held.append(record)
                self.session.commit()
        self.sync_offers()

    def booked(self, record: Record, job: Job) -> None:
        record.job_id = job.id
        record.booked_t = self.t
        assert job.estimated_arrival is not None
        record.promise_t = self.sim_t(job.estimated_arrival)
        record.promised = bool(job.promised)
        self.by_job[job.id] = record

    def open_job(self, record: Record, resident: User) -> Job | None:
        """`booking.book_urgent` up to its first wave (same validation of coverage, same
        honest refusal, same promise rule), so the policy decides who is offered the job."""
        req = record.req
        s = self.settings
        now = clock.now()
        arrive_by = now + timedelta(minutes=s.promise_minutes)
        category_id = self.slugs[req.slug]
        found = search_candidates(
            self.session, category_id=category_id, lat=req.lat, lng=req.lng, now=now,
            deadline=arrive_by, excluded_worker_ids=[],
            limit=max(s.offer_wave_size, s.promise_min_candidates))
        if not found.candidates:
            self.session.rollback()
            record.refused = True
            self.counters["refused"] += 1
            return None
        data = JobIn(category_id=category_id, description=f"sim request {req.idx}",
                     lat=req.lat, lng=req.lng)
        job = Job(resident_id=resident.id, category_id=category_id,
                  description=data.description, location=wkt_point(req.lat, req.lng),
                  urgency=Urgency.URGENT.value, status=JobStatus.REQUESTED.value, wave=0,
                  requested_at=now, arrive_by=arrive_by,
                  promised=sum(c.queued_behind_job_id is None for c in found.candidates)
                  >= s.promise_min_candidates,
                  estimated_arrival=now + timedelta(
                      seconds=min(c.eta_s for c in found.candidates)),
                  idempotency_key=f"sim-{req.idx}",
                  request_fingerprint=booking.fingerprint(data))
        self.session.add(job)
        self.session.flush()
        record_event(self.session, job, "requested", Actor.RESIDENT, now=now,
                     actor_user_id=resident.id, to_status=JobStatus.REQUESTED.value,
                     detail={"best_eta_seconds": round(found.candidates[0].eta_s),
                             "arrive_by": arrive_by.isoformat(), "promised": job.promised,
                             "candidates": len(found.candidates),
                             "policy": self.policy.value})
        transition(self.session, job, JobStatus.DISPATCHING, Actor.SYSTEM, now=now)
        self.booked(record, job)
        record.candidates = len(found.candidates)
        return job

    def broadcast(self, job: Job, req: Request) -> None:
        """Fleetbase-style: one wave to every eligible worker (skill, verified, online,
        fresh, inside their radius, able to arrive in time), nearest first; first accept
        wins. The same eligibility as ours, so only the offering differs."""
        now = clock.now()
        found = find_candidates(self.session, MatchRequest(
            category_id=job.category_id, lat=req.lat, lng=req.lng, now=now,
            deadline=job.arrive_by, eta=self.eta,
            max_location_age=timedelta(seconds=self.settings.location_max_age_s),
            weights=MatchWeights(self.settings.reputation_weight,
                                 self.settings.fairness_weight),
            limit=NEAREST_POOL), pool=NEAREST_POOL)
        everyone = sorted(found.candidates, key=lambda c: c.distance_m)
        send_wave(self.session, job, now, candidates=everyone)
        self.session.commit()

    def on_window(self, _: Any) -> None:
        """Batched policy: the requests of the last window solved as one assignment."""
        if self.held:
            held, self.held = self.held, []
            self.assign_together(held)
            self.sync_offers()
        if self.t < self.city.end_s + self.batch_window_s:
            self.at(self.t + self.batch_window_s, "window")

    def assign_together(self, held: list[Record]) -> None:
        now = clock.now()
        jobs = list(self.session.execute(
            select(Job).where(Job.id.in_([r.job_id for r in held]),
                              Job.status == JobStatus.DISPATCHING.value)
            .order_by(Job.id).with_for_update()).scalars())
        if not jobs:
            self.session.rollback()
            return
        rows = self.session.execute(batches.BATCH_WORKERS_SQL, {
            "fresh_after": now - timedelta(seconds=self.settings.location_max_age_s),
            "categories": sorted({j.category_id for j in jobs})}).all()
        pool = [BatchWorker(r.user_id, r.lat, r.lng, r.travel_mode, frozenset(r.skills),
                            float(r.service_radius_m)) for r in rows]
        deadline = {j.id: (j.arrive_by - now).total_seconds() for j in jobs}
        result = solve([BatchJob(j.id, j.lat, j.lng, j.category_id, deadline[j.id])
                        for j in jobs], pool, self.eta)
        by_id = {w.id: w for w in pool}
        for job in jobs:
            worker_id = result.pairs.get(job.id)
            if worker_id is None or result.eta_s[job.id] > deadline[job.id]:
                self.counters["batched_to_cascade"] += 1
                send_wave(self.session, job, now)
                continue
            w = by_id[worker_id]
            send_wave(self.session, job, now, candidates=[Candidate(
                worker_id=worker_id, distance_m=haversine_m(job.lat, job.lng, w.lat, w.lng),
                travel_mode=TravelMode(w.travel_mode), eta_s=result.eta_s[job.id],
                score=result.eta_s[job.id])])
        self.session.commit()
        self.counters["batch_windows"] += 1

    # ------------------------------------------------------------------ property manager

    def on_batch_submit(self, batch: list[Request]) -> None:
        rows = [{"unit_id": self.unit_ids[r.unit_index or 0], "category": r.slug,
                 "description": f"sim batch repair {r.idx}", "urgency": "urgent"}
                for r in batch]
        try:
            submitted = batches.submit(self.session, self.manager,
                                       f"sim-{batch[0].batch}", rows, first_line=1)
        except Exception as exc:  # the batches service under change must not sink the day
            self.session.rollback()
            self.errors.append(f"batch {batch[0].batch} submit failed: {exc!r}")
            return
        # The RQ worker picks the batch up a few seconds later.
        self.at(self.t + 5.0, "batch_process", (submitted.batch.id, batch))

    def on_batch_process(self, data: tuple[int, list[Request]]) -> None:
        batch_id, batch = data
        records = [Record(r) for r in batch]
        self.records.extend(records)
        self.counters["batch_rows"] += len(records)
        try:
            batches.process(self.session, batch_id)
        except Exception as exc:
            self.session.rollback()
            self.errors.append(f"batch {batch_id} processing failed: {exc!r}")
            return
        rows = self.session.execute(text(
            "SELECT id, idempotency_key, requested_at, estimated_arrival, arrive_by, promised "
            "FROM jobs WHERE batch_id = :b"), {"b": batch_id}).all()
        self.session.rollback()
        for r in rows:
            line = int(r.idempotency_key.rsplit(":", 1)[1])
            record = records[line - 1]
            record.job_id = r.id
            record.booked_t = self.sim_t(r.requested_at)
            # A batch job has no ETA at booking; its promise is the deadline.
            record.promise_t = self.sim_t(r.estimated_arrival or r.arrive_by)
            record.promised = bool(r.promised)
            self.by_job[r.id] = record
        self.sync_offers()

    # ------------------------------------------------------------------ workers' answers

    def on_response(self, data: tuple[int, bool]) -> None:
        offer_id, accept = data
        offer = self.offers.get(offer_id)
        if offer is None:  # withdrawn, expired or taken meanwhile: the phone no longer shows it
            self.counters["answers_too_late"] += 1
            return
        worker = self.workers[offer.worker_id]
        self.close_offer(offer_id)
        try:
            if accept:
                _, job = accept_offer(self.session, offer_id, worker.user)
            else:
                decline_offer(self.session, offer_id, worker.user)
        except DomainError as exc:  # the mirror and the database disagreed: the report says so
            self.session.rollback()
            self.counters[f"{'accept' if accept else 'decline'}_refused_{exc.code}"] += 1
            self.sync_offers()
            return
        if not accept:
            self.counters["declines"] += 1
            self.sync_offers()
            return
        record = self.by_job[offer.job_id]
        record.accepted_t = self.t
        record.worker_id = worker.spec.id
        assert job.estimated_arrival is not None
        record.eta_t = self.sim_t(job.estimated_arrival)
        self.counters["accepts"] += 1
        self.close_job_offers(offer.job_id)
        self.close_worker_offers(worker)  # withdraw_elsewhere did the same in the database
        if job.queued_behind_job_id is not None:  # they set out when the job they are on ends
            assert worker.record is not None and worker.next_record is None
            self.counters["queued_accepts"] += 1
            worker.next_record = record
        else:
            self.start_trip(worker, record)
        self.sync_offers()

    def on_expiry(self, job_id: int) -> None:
        record = self.by_job.get(job_id)
        if record is not None and record.accepted_t is not None:
            # Taken before the window closed: the timer would find nothing to do.
            self.counters["expiries_after_accept"] += 1
            return
        expire_offers(self.session, job_id)
        self.close_job_offers(job_id, due_only=True)
        self.sync_offers()

    # ------------------------------------------------------------------ trips and jobs

    def start_trip(self, worker: WorkerState, record: Record) -> None:
        """Set off after a start-up time, then travel the circuity-adjusted straight line at
        the mode's speed; both vary trip by trip around the ETA model (see `city`)."""
        spec = worker.spec
        draw = pair_draws(self.city.seed, spec.id, record.req.idx, spec.delay_median_s)
        startup = self.eta.startup_s * draw.startup_factor
        depart = self.t + startup
        dest = (record.req.lat, record.req.lng)
        straight = haversine_m(worker.pos[0], worker.pos[1], dest[0], dest[1])
        speed = (self.eta.speed_mps(spec.travel_mode) * draw.speed_factor
                 * traffic_factor(spec.travel_mode, depart))
        travel = straight * self.eta.circuity * draw.circuity_factor / speed
        record.startup_s, record.travel_s = startup, travel
        worker.status, worker.record = "busy", record
        worker.busy_since = self.t
        worker.trip = (depart, depart + travel, worker.pos, dest)
        self.at(depart, "en_route", spec.id)
        self.at(depart + travel, "arrive", spec.id)

    def on_en_route(self, worker_id: int) -> None:
        worker = self.workers[worker_id]
        assert worker.record is not None and worker.record.job_id is not None
        worker_update_status(self.session, worker.user, worker.record.job_id,
                             JobStatus.EN_ROUTE)
        self.moving.add(worker_id)

    def position(self, worker: WorkerState) -> tuple[float, float]:
        assert worker.trip is not None
        depart, arrive, (lat0, lng0), (lat1, lng1) = worker.trip
        f = min(1.0, max(0.0, (self.t - depart) / max(arrive - depart, 1e-6)))
        return lat0 + (lat1 - lat0) * f, lng0 + (lng1 - lng0) * f

    def ping(self, worker: WorkerState, pos: tuple[float, float]) -> None:
        """A phone's fix through the real tracking path (checks in Redis, stream to the job's
        room); `flush_fixes` writes it to PostgreSQL, where matching reads it."""
        result = tracking.record_fix(self.session, worker.spec.id, LocationIn(
            lat=pos[0], lng=pos[1], accuracy_m=10.0, recorded_at=self.now()))
        self.counters["pings"] += 1
        if not result.accepted:
            self.counters[f"ping_dropped_{result.reason}"] += 1
        worker.pos = pos

    def on_ping(self, _: Any) -> None:
        for worker_id in sorted(self.moving):
            worker = self.workers[worker_id]
            self.ping(worker, self.position(worker))
        if self.moving:
            tracking.flush_fixes(self.session)
        self.at(self.t + self.ping_s, "ping")

    def on_arrive(self, worker_id: int) -> None:
        worker = self.workers[worker_id]
        record = worker.record
        assert record is not None and record.job_id is not None and worker.trip is not None
        self.moving.discard(worker_id)
        self.ping(worker, worker.trip[3])
        tracking.flush_fixes(self.session, [worker_id])
        record.arrived_t = self.t
        worker_update_status(self.session, worker.user, record.job_id, JobStatus.ARRIVED)
        worker_update_status(self.session, worker.user, record.job_id, JobStatus.IN_PROGRESS)
        self.at(self.t + record.req.duration_s, "complete", worker_id)

    def on_complete(self, worker_id: int) -> None:
        worker = self.workers[worker_id]
        record = worker.record
        assert record is not None and record.job_id is not None and record.arrived_t is not None
        worker_update_status(self.session, worker.user, record.job_id, JobStatus.COMPLETED)
        record.completed_t = self.t
        self.after_completion(record)
        worker.work_s += self.t - record.arrived_t
        worker.jobs += 1
        assert worker.busy_since is not None
        worker.busy.append((worker.busy_since, self.t))
        worker.busy_since, worker.record, worker.trip = None, None, None
        worker.status = "idle"
        if worker.next_record is not None:  # the services started the queued job already
            record, worker.next_record = worker.next_record, None
            self.start_trip(worker, record)
        elif worker.off_after_job:
            self.go_offline(worker)
        else:  # the phone keeps reporting: fresh again for matching at once
            self.refresh_positions([worker_id])

    # ------------------------------------------------------------------ money

    def after_completion(self, record: Record) -> None:
        """The payer confirms (CONFIRM_SHARE of requests, the same ones in every policy), or
        nobody does and the automatic release is due."""
        assert record.job_id is not None
        job = self.session.get(Job, record.job_id)
        assert job is not None and job.completed_at is not None
        due = self.sim_t(escrow.release_due_at(job))
        self.session.rollback()
        draw = int.from_bytes(hashlib.blake2b(
            f"{self.city.seed}:confirm:{record.req.idx}:{record.req.batch}".encode(),
            digest_size=8).digest(), "big") / 2**64
        if draw < CONFIRM_SHARE:
            self.at(self.t + 300 + 3300 * draw / CONFIRM_SHARE, "confirm", record.job_id)
        else:
            self.at(due, "release", record.job_id)

    def on_confirm(self, job_id: int) -> None:
        payer_id, role = self.session.execute(text(
            "SELECT j.resident_id, u.role FROM jobs j JOIN users u ON u.id = j.resident_id "
            "WHERE j.id = :j"), {"j": job_id}).one()
        self.session.rollback()
        try:
            confirmation.confirm(self.session, User(id=payer_id, role=Role(role).value), job_id)
            self.counters["confirmed"] += 1
        except DomainError as exc:  # disputed or the like: the report says so
            self.session.rollback()
            self.counters[f"confirm_refused_{exc.code}"] += 1

    def on_release(self, job_id: int) -> None:
        if confirmation.auto_release(self.session, job_id, self.now()):
            self.counters["auto_released"] += 1

    def release_the_rest(self) -> None:
        """After the last event, time runs on past every release: the sweeper's backstop
        ends each hold still waiting (as it would in the hours after the day)."""
        s = self.settings
        self.t += 3600 * max(s.auto_release_hours, s.auto_release_urgent_hours) + 1
        self.counters["released_after_the_day"] += confirmation.sweep(self.session, self.now())

    def money_figures(self) -> dict[str, float]:
        """What the day's money did, from the books: holds placed, captured (to workers and
        the platform), given back, where the holds ended, and whether the ledger checks."""
        pay = self.session.execute(text("""
SELECT count(*) AS holds, coalesce(sum(held_cents), 0) AS held,
       coalesce(sum(captured_cents), 0) AS captured,
       coalesce(sum(refunded_cents), 0) AS refunded,
       count(*) FILTER (WHERE status = 'held') AS still_held,
       count(*) FILTER (WHERE status = 'held' AND EXISTS (
           SELECT 1 FROM jobs j WHERE j.id = job_id
              AND j.status IN ('arrived', 'in_progress'))) AS held_working,
       count(*) FILTER (WHERE status = 'released') AS released,
       count(*) FILTER (WHERE status = 'voided') AS voided
  FROM job_payments""")).one()
        books = dict(self.session.execute(text("""
SELECT a.kind, coalesce(sum(e.amount_cents), 0) FROM ledger_accounts a
  JOIN ledger_entries e ON e.account_id = a.id GROUP BY a.kind""")).all())
        earners = self.session.execute(text("""
SELECT count(*), coalesce(max(b), 0) FROM (
  SELECT sum(e.amount_cents) AS b FROM ledger_accounts a
    JOIN ledger_entries e ON e.account_id = a.id
   WHERE a.kind = 'worker_balance' GROUP BY a.id) x WHERE b > 0""")).one()
        problems = ledger.check(self.session)
        self.session.rollback()
        return {"holds": pay.holds, "held_cents": pay.held, "captured_cents": pay.captured,
                "refunded_cents": pay.refunded, "still_held": pay.still_held,
                "held_working": pay.held_working,
                "released": pay.released, "voided": pay.voided,
                "fees_cents": books.get("platform_fees", 0),
                "worker_balances_cents": books.get("worker_balance", 0),
                "workers_paid": earners[0], "max_worker_balance_cents": earners[1],
                "escrow_left_cents": books.get("escrow", 0),
                "ledger_problems": len(problems)}

    # ------------------------------------------------------------------ shifts

    def on_shift_start(self, data: tuple[int, float]) -> None:
        worker_id, end = data
        worker = self.workers[worker_id]
        if worker.status != "offline":
            return
        worker.pos = worker.spec.home
        self.session.execute(text(
            "UPDATE workers SET location = ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)"
            "::geography, location_at = :now, location_received_at = :now, "
            "location_accuracy_m = 10 WHERE user_id = :id"),
            {"lat": worker.pos[0], "lng": worker.pos[1], "now": self.now(), "id": worker_id})
        self.session.commit()
        accounts.set_availability(self.session, worker.user, Availability.ONLINE)
        # The app is open for the whole shift: offers arrive by socket, not SMS.
        open_for_good(self.redis, worker_id, "sim")
        worker.status, worker.off_after_job = "idle", False
        worker.online_since = self.t
        self.at(end, "shift_end", worker_id)

    def on_shift_end(self, worker_id: int) -> None:
        worker = self.workers[worker_id]
        if worker.status == "busy":
            worker.off_after_job = True
        elif worker.status == "idle":
            self.go_offline(worker)

    def go_offline(self, worker: WorkerState) -> None:
        accounts.set_availability(self.session, worker.user, Availability.OFFLINE)
        self.redis.delete(presence_key(worker.spec.id))
        self.close_worker_offers(worker)
        worker.status = "offline"
        if worker.online_since is not None:
            worker.online.append((worker.online_since, self.t))
            worker.online_since = None
        self.sync_offers()

    # ------------------------------------------------------------------ housekeeping

    def on_tick(self, _: Any) -> None:
        """Once a simulated minute: the sweeper's dispatch pass, and after the last request,
        stop once every job is settled. Every few minutes: the sweeper's masked-session pass
        (frees pool numbers), and the idle phones' positions (one batched write standing for
        their 1/s pings)."""
        self.ticks += 1
        # The sweeper's dispatch pass (every 5 s in make run; once a simulated minute here):
        # jobs waiting for workers are offered again to whoever came free meanwhile.
        dispatch_sweep(self.session)
        self.drop_released_queued()
        self.sync_offers()
        if self.ticks % MASKING_EVERY_TICKS == 0:
            contact.sweep(self.session)
        if self.ticks % FRESH_EVERY_TICKS == 0:
            self.refresh_positions([w.spec.id for w in self.workers.values()
                                    if w.status == "idle"])
        if self.t >= self.city.end_s and not self.held:
            unsettled = self.session.execute(text(
                "SELECT count(*) FROM jobs WHERE status IN "
                "('requested', 'dispatching', 'assigned', 'en_route')")).scalar_one()
            self.session.rollback()
            if unsettled == 0:
                self.at(self.t, "stop")
                return
        self.at(self.t + TICK_S, "tick")

    def drop_released_queued(self) -> None:
        """A queued job the sweep sent back to the cascade (the job before it ran long) is no
        longer the worker's: they do not set out for it, and it waits for a new accept."""
        waiting = {w.next_record.job_id: w for w in self.workers.values()
                   if w.next_record is not None}
        if not waiting:
            return
        released = self.session.execute(text(
            "SELECT id FROM jobs WHERE id = ANY(:ids) AND worker_id IS NULL"),
            {"ids": list(waiting)}).scalars().all()
        self.session.rollback()
        for job_id in released:
            worker = waiting[job_id]
            record = worker.next_record
            assert record is not None
            worker.next_record = None
            record.accepted_t = record.eta_t = record.worker_id = None
            self.counters["queued_released"] += 1

    def refresh_positions(self, worker_ids: list[int]) -> None:
        """Idle phones keep reporting the same place: one batched write stands for their
        pings (what `flush_fixes` would write), so they stay fresh for matching."""
        if not worker_ids:
            return
        self.session.execute(text(
            "UPDATE workers SET location_at = :now, location_received_at = :now "
            "WHERE user_id = ANY(:ids) AND availability = 'online'"),
            {"now": self.now(), "ids": worker_ids})
        self.session.commit()

    def close_intervals(self) -> None:
        for w in self.workers.values():
            if w.online_since is not None:
                w.online.append((w.online_since, self.t))
                w.online_since = None
            if w.busy_since is not None:
                w.busy.append((w.busy_since, self.t))
                w.busy_since = None

    def read_jobs(self) -> dict[int, dict[str, Any]]:
        rows = self.session.execute(text(
            "SELECT id, status, requested_at, assigned_at, arrived_at, completed_at, "
            "estimated_arrival, arrive_by, worker_id, wave, batch_id, promised, "
            "EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.id AND e.kind = "
            "'worker_free') AS was_queued, "
            "(SELECT count(*) FROM offers o WHERE o.job_id = j.id) AS offers, "
            "(SELECT count(*) FROM offers o WHERE o.job_id = j.id AND o.wave = 1) "
            "AS first_wave, (SELECT (e.detail ->> 'candidates')::int FROM job_events e "
            "WHERE e.job_id = j.id AND e.kind = 'requested' LIMIT 1) AS booked_candidates "
            "FROM jobs j")).mappings().all()
        self.session.rollback()
        out = {}
        for r in rows:
            record = self.by_job.get(int(r["id"]))
            if record is not None and record.candidates is None:  # booked by book_urgent
                record.candidates = int(r["booked_candidates"] or r["first_wave"])
            d = dict(r)
            for key in ("requested_at", "assigned_at", "arrived_at", "completed_at",
                        "estimated_arrival", "arrive_by"):
                if d[key] is not None:
                    d[key] = self.sim_t(d[key])
            out[int(r["id"])] = d
        return out




