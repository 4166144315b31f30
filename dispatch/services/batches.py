"""Batch repair requests: a property manager sends many jobs at once (CSV or JSON). Every row
is checked first; good rows go on even when others are refused; the same batch key never
creates anything twice. A background job then opens the jobs and assigns them together
(minimum total travel, preferred contractors first, one job per worker:
`dispatch.planning.assignment`)
before the usual offer cascade takes over for each job."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.aftercommit import on_commit
from dispatch.db.job_rows import lock_job, record_event
from dispatch.db.models import (
    Batch,
    Category,
    Job,
    Offer,
    Organization,
    PreferredContractor,
    Property,
    Unit,
    Urgency,
    User,
)
from dispatch.db.paging import Keyset, Page, PageRequest
from dispatch.domain.commands import text_problem
from dispatch.domain.csvfiles import read_rows
from dispatch.domain.errors import (
    Conflict,
    FieldProblem,
    InvalidInput,
    MalformedInput,
    invalid,
    not_found,
    refusal,
)
from dispatch.domain.messages import say
from dispatch.domain.states import (
    ACTIVE_JOB_STATUSES,
    BATCH_ENDED,
    BATCH_TRANSITIONS,
    Actor,
    Availability,
    BatchStatus,
    JobStatus,
    OfferStatus,
    cancellable_by,
    check_batch_transition,
)
from dispatch.domain.windows import WindowError, parse_window
from dispatch.infra.queues import enqueue_batch
from dispatch.planning.assignment import BatchJob, BatchWorker, solve
from dispatch.planning.chaining import WindowJob, solve_chained
from dispatch.services import escrow
from dispatch.services.context import eta_model, settings
from dispatch.services.credentials import require_verified_phone
from dispatch.services.dispatching import send_wave
from dispatch.services.jobs import call_off, transition
from dispatch.services.places import outside_area_problem
from dispatch.services.portfolio import organization_of
from geo.candidates import Candidate
from geo.eta import TravelMode, haversine_m
from geo.points import wkt_point

log = logging.getLogger(__name__)
CSV_COLUMNS = ("property", "unit", "category", "description", "urgency", "budget_cap")
MAX_ROWS = 1000
UNASSIGNED_S = 30 * 24 * 3600.0
PROGRESS_EVERY = 10


@dataclass(frozen=True)
class Submitted:
    batch: Batch
    created: bool


def _problem(line: int, field: str, problem: str) -> dict[str, Any]:
    return {"line": line, "field": field, "problem": _printable(problem)}


def _printable(text_: str) -> str:
    """Echoed input must be storable: no NULs, no lone surrogates."""
    return text_.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def parse_csv(raw: bytes) -> list[dict[str, Any]]:
    return list(read_rows(raw, CSV_COLUMNS[:4]))


def _row_id(value: object) -> int | None:
    """An id as a JSON row or a CSV cell may spell it: a whole number, or ASCII digits. Not
    `true` (which `int()` reads as 1), not 1.9 (read as 1), not digits of other scripts."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def validate_rows(session: Session, org: Organization, rows: list[dict[str, Any]],
                  first_line: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(accepted rows, resolved to ids, each with its line) and (refusals with line, field,
    problem). Units are named by unit_id, or by property and unit label."""
    units = {(p_name, u.label): u for u, p_name in session.execute(
        select(Unit, Property.name).join(Property).where(Property.org_id == org.id)).all()}
    by_id = {u.id: u for u in units.values()}
    cats = {c.slug: c for c in session.execute(select(Category)).scalars()}
    cats_by_id = {c.id: c for c in cats.values()}
    s, now = settings(), clock.now()
    accepted, rejected = [], []
    for index, row in enumerate(rows):
        line = getattr(row, "line", first_line + index)  # CSV rows know their own line
        if not isinstance(row, dict):
            rejected.append(_problem(line, "row", say("row.not_object")))
            continue
        unit = None
        if row.get("unit_id") not in (None, ""):
            unit_id = _row_id(row["unit_id"])
            unit = by_id.get(unit_id) if unit_id is not None else None
            if unit is None:
                rejected.append(_problem(line, "unit_id", say("unit.unknown")))
                continue
        else:
            key = (str(row.get("property") or "").strip(), str(row.get("unit") or "").strip())
            unit = units.get(key)
            if unit is None:
                rejected.append(_problem(line, "unit", say("unit.unknown_in_property", {
                    "unit": key[1], "property": key[0]})))
                continue
        outside = outside_area_problem(unit.lat, unit.lng)
        if outside is not None:
            rejected.append(_problem(line, "location", outside))
            continue
        raw_cat = str(row.get("category") or "").strip()
        numeric = raw_cat.isascii() and raw_cat.isdigit()
        cat = cats.get(raw_cat) or (cats_by_id.get(int(raw_cat)) if numeric else None)
        if cat is None or not cat.bookable:
            rejected.append(_problem(line, "category", say("category.not_bookable",
                                                           {"value": raw_cat})))
            continue
        description = str(row.get("description") or "").strip()
        if not 3 <= len(description) <= 2000:
            rejected.append(_problem(line, "description", say("description.length")))
            continue
        unreadable = text_problem(description, multi_line=True)  # as a booking's would be
        if unreadable:
            rejected.append(_problem(line, "description", say(unreadable, field="description")))
            continue
        urgency = str(row.get("urgency") or "urgent").strip()
        window = None
        if urgency.lower() != Urgency.URGENT.value:
            try:
                window = parse_window(urgency, now, s.service_timezone,
                                      timedelta(minutes=s.promise_minutes))
            except WindowError as exc:
                rejected.append(_problem(line, "urgency", say("urgency.window",
                                                              {"detail": str(exc)})))
                continue
        cap = str(row.get("budget_cap") or "").strip()
        cap_cents = None
        if cap:
            try:
                cap_cents = round(float(cap) * 100)
            except (ValueError, OverflowError):
                cap_cents = -1
            if not 0 < cap_cents < 10**9:
                rejected.append(_problem(line, "budget_cap", say("budget_cap.invalid")))
                continue
        accepted.append({"line": line, "unit_id": unit.id, "category_id": cat.id,
                         "description": description, "budget_cap_cents": cap_cents,
                         "window_start": window.start.isoformat() if window else None,
                         "window_end": window.end.isoformat() if window else None})
    return accepted, rejected


def submit(session: Session, user: User, batch_key: str | None, rows: list[dict[str, Any]],
           first_line: int, confirm_duplicate: bool = False) -> Submitted:
    """Check every row and queue the batch; the same key returns the batch it made first.
    The same rows under another key (the same file sent from the page and by a script) are
    refused, naming the batch they made, unless the caller confirms they mean it twice."""
    if not batch_key or not batch_key.strip() or len(batch_key) > 200 or "\x00" in batch_key:
        raise invalid("batch_key", "batch_key.invalid", MalformedInput)
    if len(rows) > MAX_ROWS:
        raise invalid("rows", "rows.too_many", MalformedInput, limit=MAX_ROWS)
    require_verified_phone(user)
    org = organization_of(session, user)
    fingerprint = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()
                                 ).hexdigest()
    existing = session.execute(select(Batch).where(Batch.org_id == org.id,
                                                   Batch.batch_key == batch_key)
                               ).scalar_one_or_none()
    if existing is not None:
        if existing.fingerprint != fingerprint:
            raise refusal(InvalidInput, "batch_key_reused", "batch_key", "batch_key.reused")
        return Submitted(existing, False)
    # Submits of one organization take turns here, so two copies sent at once cannot both
    # miss each other (the organization row is the lock; nothing else writes it often).
    session.execute(select(Organization.id).where(Organization.id == org.id)
                    .with_for_update(key_share=True))
    if not confirm_duplicate:
        # A CSV file's rows start on line 2 (after its header); JSON rows are a list.
        _refuse_duplicate(session, org.id, fingerprint, "file" if first_line == 2 else "rows")
    accepted, rejected = validate_rows(session, org, rows, first_line)
    now = clock.now()
    batch = Batch(org_id=org.id, created_by=user.id, batch_key=batch_key,
                  fingerprint=fingerprint, status=BatchStatus.QUEUED.value,
                  rows=accepted, rejected=rejected, total_rows=len(rows), processed_rows=0,
                  created_at=now, enqueued_at=now)
    session.add(batch)
    try:
        session.flush()
    except IntegrityError:  # the same key raced in: answer with the winner
        session.rollback()
        return Submitted(session.execute(select(Batch).where(
            Batch.org_id == org.id, Batch.batch_key == batch_key)).scalar_one(), False)
    batch_id = batch.id
    on_commit(session, lambda _: _enqueue(batch_id))
    session.commit()
    return Submitted(batch, True)


def _refuse_duplicate(session: Session, org_id: int, fingerprint: str, field: str) -> None:
    earlier = session.execute(select(Batch.id).where(
        Batch.org_id == org_id, Batch.fingerprint == fingerprint).order_by(Batch.id)
    ).scalars().first()
    if earlier is None:
        return
    session.rollback()
    what = "this file was" if field == "file" else "these rows were"
    raise Conflict("duplicate_batch", f"{what} already sent as batch {earlier}",
                   [FieldProblem(field, f"already sent as batch {earlier}; send it again "
                                        "only to request every repair a second time")],
                   extra={"duplicate_of": earlier})


def _enqueue(batch_id: int) -> None:
    enqueue_batch(batch_id)


def process(session: Session, batch_id: int) -> int:
    """Open the batch's jobs and assign them together. Safe to run again: a row's job is
    keyed by (batch, line), and only jobs without offers are assigned."""
    batch = session.execute(select(Batch).where(Batch.id == batch_id).with_for_update()
                            ).scalar_one_or_none()
    if batch is None or batch.status == BatchStatus.DONE:
        session.rollback()
        return 0
    check_batch_transition(batch.status, BatchStatus.PROCESSING)
    batch.status = BatchStatus.PROCESSING.value
    session.commit()
    s = settings()
    org = session.get(Organization, batch.org_id)
    assert org is not None
    for done, row in enumerate(batch.rows, start=1):
        _open_job(session, batch, row, s.promise_minutes)
        if done % PROGRESS_EVERY == 0 or done == len(batch.rows):
            session.execute(update(Batch).where(Batch.id == batch.id)
                            .values(processed_rows=done))
            session.commit()
    assigned = _assign(session, batch, org)
    session.execute(update(Batch).where(Batch.id == batch.id).values(
        status=BatchStatus.DONE.value, processed_rows=len(batch.rows), finished_at=clock.now()))
    session.commit()
    return assigned


def _open_job(session: Session, batch: Batch, row: dict[str, Any], promise_minutes: int) -> None:
    key = f"batch:{batch.id}:{row['line']}"
    if session.execute(select(Job.id).where(Job.resident_id == batch.created_by,
                                            Job.idempotency_key == key)).first():
        return
    unit = session.get(Unit, row["unit_id"])
    if unit is None:  # deleted after the batch was accepted: nothing to repair there
        log.warning("batch %s line %s: unit %s is gone", batch.id, row["line"], row["unit_id"])
        return
    now = clock.now()
    # The promise runs from when the manager sent the batch, not from when a worker got to
    # it: a queue delay must show as a late job, never move the deadline silently.
    urgency, arrive_by = Urgency.URGENT, batch.created_at + timedelta(minutes=promise_minutes)
    window_start = window_end = None
    if row.get("window_end"):
        urgency = Urgency.SCHEDULED
        window_start = datetime.fromisoformat(row["window_start"])
        window_end = arrive_by = datetime.fromisoformat(row["window_end"])
    job = Job(resident_id=batch.created_by, category_id=row["category_id"],
              description=row["description"], location=wkt_point(unit.lat, unit.lng),
              address=unit.address, urgency=urgency.value, window_start=window_start,
              window_end=window_end,
              status=JobStatus.REQUESTED.value, wave=0, requested_at=now,
              arrive_by=arrive_by, idempotency_key=key,
              # An urgent row is a request, not yet a promise: the joint plan offers it to
              # one worker, who may decline; the accept makes the promise (as for a resident
              # with thin coverage). A booked window is promised like a resident's.
              promised=urgency is Urgency.SCHEDULED,
              request_fingerprint=key, org_id=batch.org_id, unit_id=unit.id,
              batch_id=batch.id, budget_cap_cents=row.get("budget_cap_cents"))
    held = escrow.hold_for_batch_job(session, job, unit.lat, unit.lng, key, now)
    session.add(job)
    session.flush()
    if held is not None:
        escrow.record_hold(session, job, held, now)
    record_event(session, job, "requested", Actor.RESIDENT, now=now,
                 actor_user_id=batch.created_by, to_status=JobStatus.REQUESTED.value,
                 detail={"batch_id": batch.id, "line": row["line"]})
    transition(session, job, JobStatus.DISPATCHING, Actor.SYSTEM, now=now)


# Who a joint assignment may use: online, fresh, verified for one of the batch's trades, and
# holding no pending offer. Ordered, so ties (workers at the same door) break the same way.
BATCH_WORKERS_SQL = text(f"""
SELECT w.user_id, ST_Y(w.location::geometry) AS lat, ST_X(w.location::geometry) AS lng,
       w.travel_mode, w.service_radius_m, array_agg(s.category_id) AS skills
  FROM workers w JOIN worker_skills s ON s.worker_id = w.user_id
 WHERE w.availability = '{Availability.ONLINE.value}' AND s.verified
   AND w.location_at >= :fresh_after
   AND s.category_id = ANY(:categories)
   AND NOT EXISTS (SELECT 1 FROM offers o WHERE o.worker_id = w.user_id
                    AND o.status = '{OfferStatus.PENDING.value}')
 GROUP BY w.user_id
 ORDER BY w.user_id
""")


def _assign(session: Session, batch: Batch, org: Organization) -> int:
    """Solve the batch jointly and offer each job to its planned worker first: urgent jobs
    as one assignment (one worker each, `dispatch.planning.assignment`), windowed jobs as routes
    that
    may chain several windows per worker (`dispatch.planning.chaining`). A job no plan could place
    starts the usual cascade (which may find nobody: unfilled)."""
    now = clock.now()
    s = settings()
    jobs = list(session.execute(
        select(Job).where(Job.batch_id == batch.id, Job.status == JobStatus.DISPATCHING.value,
                          ~exists().where(Offer.job_id == Job.id))
        .order_by(Job.id).with_for_update()).scalars())
    if not jobs:
        return 0
    preferred = frozenset(session.execute(select(PreferredContractor.worker_id).where(
        PreferredContractor.org_id == org.id)).scalars())
    rows = session.execute(BATCH_WORKERS_SQL, {
        "fresh_after": now - timedelta(seconds=s.location_max_age_s),
        "categories": sorted({j.category_id for j in jobs})}).all()
    workers = [BatchWorker(r.user_id, r.lat, r.lng, r.travel_mode, frozenset(r.skills),
                           float(r.service_radius_m)) for r in rows]
    eta = eta_model(s)
    promise_s = s.promise_minutes * 60.0
    planned: dict[int, tuple[int, float]] = {}  # job id -> (worker id, seconds to arrival)
    urgent = [j for j in jobs if j.urgency == Urgency.URGENT.value]
    scheduled = [j for j in jobs if j.urgency == Urgency.SCHEDULED.value]
    if urgent:
        # Preferred contractors first whenever they can make it (a marketplace worker costs
        # a whole promise more); leaving a job to the cascade costs more than any real pair.
        result = solve([BatchJob(j.id, j.lat, j.lng, j.category_id,
                                 (j.arrive_by - now).total_seconds(), preferred,
                                 org.allow_marketplace) for j in urgent],
                       workers, eta, marketplace_penalty_s=promise_s,
                       unassigned_penalty_s=UNASSIGNED_S)
        for job in urgent:
            worker_id = result.pairs.get(job.id)
            if worker_id is not None and result.eta_s[job.id] <= (job.arrive_by -
                                                                   now).total_seconds():
                planned[job.id] = (worker_id, result.eta_s[job.id])
    if scheduled:
        assert all(j.window_start and j.window_end for j in scheduled)
        plan = solve_chained(
            [WindowJob(j.id, j.lat, j.lng, j.category_id,
                       (j.window_start - now).total_seconds(),  # type: ignore[operator]
                       (j.window_end - now).total_seconds(),  # type: ignore[operator]
                       s.scheduled_service_minutes * 60.0, preferred, org.allow_marketplace)
             for j in scheduled],
            workers, eta, marketplace_penalty_s=round(promise_s),
            unassigned_penalty_s=round(UNASSIGNED_S), time_limit_s=s.chain_solver_seconds)
        for job_id, worker_id in plan.worker_of.items():
            planned[job_id] = (worker_id, float(plan.arrival_s[job_id]))
    by_id = {w.id: w for w in workers}
    placed = 0
    for job in jobs:
        if session.execute(select(exists().where(Offer.job_id == job.id))).scalar():
            continue  # offered meanwhile (a rerun): never a second first wave
        if job.id not in planned:
            send_wave(session, job, now)  # nobody from the joint plan: the usual cascade
            continue
        worker_id, arrival_s = planned[job.id]
        w = by_id[worker_id]
        distance = haversine_m(job.lat, job.lng, w.lat, w.lng)
        # eta_seconds is the planned arrival from now: for a chained window that is the
        # route's time there, not the straight trip.
        send_wave(session, job, now, candidates=[Candidate(
            worker_id=worker_id, distance_m=distance, travel_mode=TravelMode(w.travel_mode),
            eta_s=arrival_s, score=arrival_s)])
        placed += 1
    session.commit()
    return placed


def own_batch(session: Session, user: User, batch_id: int) -> Batch:
    org = organization_of(session, user)
    batch = session.get(Batch, batch_id)
    if batch is None or batch.org_id != org.id:
        raise not_found("batch")
    return batch


def batch_view(session: Session, user: User, batch_id: int,
               page: PageRequest) -> tuple[Batch, Page[Job]]:
    """The batch and a page of its jobs, in row order."""
    batch = own_batch(session, user, batch_id)
    return batch, Keyset((Job.id,)).page(session, select(Job).where(Job.batch_id == batch.id),
                                         page, lambda job: (job.id,))


def open_job_statuses() -> list[JobStatus]:
    """What a bulk cancel calls off: jobs their manager may cancel that no worker has taken
    yet. A worker already on one is called off job by job, on its page, not in bulk."""
    return [s for s in cancellable_by(Actor.RESIDENT) if s not in ACTIVE_JOB_STATUSES]


@dataclass(frozen=True)
class BatchSummary:
    batch: Batch
    jobs_by_status: dict[str, int]
    open_jobs: int  # jobs its manager may still cancel


def history(session: Session, user: User, page: PageRequest) -> Page[BatchSummary]:
    """The organization's batches, newest first, with their jobs counted by status."""
    org = organization_of(session, user)
    batch_page = Keyset((Batch.id,), descending=True).page(
        session, select(Batch).where(Batch.org_id == org.id), page, lambda b: (b.id,))
    found = batch_page.items
    counts: dict[int, dict[str, int]] = {b.id: {} for b in found}
    for batch_id, status, n in session.execute(
            select(Job.batch_id, Job.status, func.count()).where(Job.batch_id.in_(counts))
            .group_by(Job.batch_id, Job.status)).all():
        counts[batch_id][status] = n
    open_statuses = {s.value for s in open_job_statuses()}
    return Page([BatchSummary(b, counts[b.id], sum(n for status, n in counts[b.id].items()
                                                   if status in open_statuses))
                 for b in found], batch_page.next_after)


@dataclass(frozen=True)
class BulkCancel:
    cancelled: list[int]
    kept: int  # jobs a worker has taken, or that ended otherwise


def cancel_open_jobs(session: Session, user: User, batch_id: int,
                     reason: str | None = None) -> BulkCancel:
    """Cancel every open job of the batch (`open_job_statuses`), each along the state
    machine with its own event. Each job is locked and checked again before it moves, so a
    worker accepting (or a second bulk cancel) at the same moment is never overwritten:
    a job that moved on is counted as kept, one already cancelled is left alone."""
    batch = own_batch(session, user, batch_id)
    if BatchStatus(batch.status) not in BATCH_ENDED:
        session.rollback()
        raise Conflict("batch_busy", "this batch's jobs are still being opened; try again in "
                       "a moment", [FieldProblem("batch", "still being opened")])
    may_cancel = open_job_statuses()
    ids = list(session.execute(select(Job.id).where(
        Job.batch_id == batch.id, Job.status.in_([s.value for s in may_cancel]))
        .order_by(Job.id)).scalars())
    session.rollback()  # locks are taken one job at a time, in id order, below
    cancelled: list[int] = []
    detail = {"batch_id": batch.id, "bulk": True, **({"reason": reason} if reason else {})}
    for job_id in ids:
        job = lock_job(session, job_id)
        if JobStatus(job.status) not in may_cancel:
            session.rollback()
            continue
        call_off(session, job, Actor.RESIDENT, user.id, detail, clock.now())
        session.commit()
        cancelled.append(job_id)
    kept = session.execute(select(func.count()).select_from(Job).where(
        Job.batch_id == batch.id, Job.status.not_in(
            [s.value for s in may_cancel] + [JobStatus.CANCELLED.value]))).scalar_one()
    return BulkCancel(cancelled, kept)


def mark_failed(session: Session, batch_id: int, error: str) -> None:
    """Processing failed for good: the batch says so (its opened jobs go to the cascade)."""
    # Only from a status that may fail (BATCH_TRANSITIONS): a done batch stays done.
    may_fail = [s.value for s, moves in BATCH_TRANSITIONS.items() if BatchStatus.FAILED in moves]
    session.execute(update(Batch).where(Batch.id == batch_id, Batch.status.in_(may_fail))
                    .values(status=BatchStatus.FAILED.value, finished_at=clock.now()))
    session.commit()
    log.error("batch %s failed: %s", batch_id, error)


# A batch still queued this long after its last enqueue was lost with Redis; one still
# processing this long after it, with its worker.
REQUEUE_QUEUED_AFTER = timedelta(minutes=2)
REQUEUE_PROCESSING_AFTER = timedelta(minutes=15)


def sweep(session: Session) -> int:
    """Queue again batches nobody is working on (queued while Redis was away, or left
    'processing' by a worker that died); processing is safe to repeat."""
    now = clock.now()
    ids = session.execute(text("""
UPDATE batches SET enqueued_at = :now
 WHERE id IN (SELECT id FROM batches
               WHERE (status = :queued AND enqueued_at < :queued_before)
                  OR (status = :processing AND enqueued_at < :processing_before)
               ORDER BY id LIMIT 50
                 FOR UPDATE SKIP LOCKED)
RETURNING id"""), {"now": now, "queued": BatchStatus.QUEUED.value,
                    "processing": BatchStatus.PROCESSING.value,
                    "queued_before": now - REQUEUE_QUEUED_AFTER,
                    "processing_before": now - REQUEUE_PROCESSING_AFTER}).scalars().all()
    session.commit()  # stamped first: a failed enqueue is retried after the same wait
    for batch_id in ids:
        _enqueue(batch_id)
    return len(ids)
