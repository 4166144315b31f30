"""Matching and the offer cascade: waves of offers to the best candidates, first accept wins,
unanswered offers expire and the next wave goes out, and when nobody is left the job is
`unfilled`. Every step locks the job row first (then offer, then worker), so concurrent
accepts, declines, expiries and sweeps serialize per job and never deadlock."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from dispatch.db import clock
from dispatch.db.aftercommit import on_commit
from dispatch.db.job_rows import (
    commit_keeping_loaded,
    lock_job,
    occupying_job,
    offers_moving,
    record_event,
    workers_moving,
)
from dispatch.db.models import (
    Batch,
    Category,
    Job,
    JobEvent,
    Offer,
    Organization,
    PreferredContractor,
    Urgency,
    User,
    Worker,
    WorkerSkill,
)
from dispatch.db.paging import Keyset, Page, PageRequest
from dispatch.domain.errors import Conflict, FieldProblem, not_found
from dispatch.domain.states import (
    BATCH_ENDED,
    Actor,
    Availability,
    JobStatus,
    OfferStatus,
    check_offer_transition,
)
from dispatch.infra.config import Settings
from dispatch.infra.presence import connected_users
from dispatch.infra.queues import schedule_offer_expiry
from dispatch.planning.assignment import BatchWorker
from dispatch.planning.chaining import WindowJob, fits_one_day
from dispatch.services import contact, notify, push
from dispatch.services.context import eta_model, settings
from dispatch.services.jobs import transition, withdraw_pending_offers
from geo.candidates import (
    Candidate,
    CandidateSearch,
    MatchRequest,
    MatchWeights,
    find_candidates,
    find_finishing,
)
from geo.eta import haversine_m
from notifications import masking

log = logging.getLogger(__name__)

# A worker past their job's typical time is still assumed to need this long to finish.
QUEUE_MIN_WAIT_S = 300.0






def search_candidates(
    session: Session, *, category_id: int, lat: float, lng: float, now: datetime,
    deadline: datetime, excluded_worker_ids: list[int], limit: int, org_id: int | None = None,
) -> CandidateSearch:
    """An organization's job goes to its preferred contractors first; to the open
    marketplace only when none of them can make it and the organization allows it."""
    s = settings()
    request = MatchRequest(
        category_id=category_id, lat=lat, lng=lng, now=now, deadline=deadline,
        eta=eta_model(s), max_location_age=timedelta(seconds=s.location_max_age_s),
        weights=MatchWeights(reputation=s.reputation_weight, fairness=s.fairness_weight),
        excluded_worker_ids=excluded_worker_ids, limit=limit,
    )
    if org_id is not None:
        preferred = session.execute(
            select(PreferredContractor.worker_id).where(PreferredContractor.org_id == org_id)
        ).scalars().all()
        found = find_candidates(session, request, within=list(preferred)) if preferred else None
        if found is not None and found.candidates:
            return found
        org = session.get(Organization, org_id)
        if org is not None and not org.allow_marketplace:
            return found or CandidateSearch(candidates=[], earliest_arrival=None)
    found = find_candidates(session, request, pool=s.knn_pool)
    if s.queue_behind_busy and len(found.candidates) < limit:
        # Free workers first; the wave is filled with workers finishing a job nearby.
        request = replace(request, limit=limit - len(found.candidates), excluded_worker_ids=[
            *excluded_worker_ids, *(c.worker_id for c in found.candidates)])
        finishing = find_finishing(session, request, min_wait_s=QUEUE_MIN_WAIT_S,
                                   margin_s=s.queue_margin_minutes * 60.0)
        if finishing:
            return CandidateSearch(candidates=[*found.candidates, *finishing],
                                   earliest_arrival=found.earliest_arrival)
    return found


def patience_ends(job: Job, s: Settings) -> datetime:
    """Looking stops when even a worker next door (start-up time only) could no longer
    arrive by the deadline; for urgent help, sooner, at the patience limit. A booked window
    keeps looking until then: booked for tomorrow, it must not give up tonight because
    nobody was free in the first two hours."""
    too_late = job.arrive_by - timedelta(seconds=s.startup_s)
    if job.urgency == Urgency.SCHEDULED.value:
        return too_late
    return min(job.requested_at + timedelta(minutes=s.dispatch_patience_minutes), too_late)


def _keep_looking(job: Job, now: datetime, s: Settings) -> bool:
    return now < patience_ends(job, s)


def offer_window_s(s: Settings, job: Job) -> int:
    """How long a worker has to answer: seconds for urgent help, minutes for a window."""
    if job.urgency == Urgency.SCHEDULED.value:
        return s.scheduled_offer_window_s
    return s.offer_window_s


def already_offered(session: Session, job_id: int, now: datetime) -> list[int]:
    """Workers not to ask for this job now: those being asked, those who said no, and
    those who held it and lost it. A worker whose offer lapsed without their no (expired
    while their phone slept, withdrawn when they took other work or went offline) is asked
    again once `reask_after_s` has passed, if the job is still looking: otherwise a
    preferred contractor 50 m away, online again, would never hear of it."""
    lapsed = (Offer.status.in_([OfferStatus.EXPIRED.value, OfferStatus.WITHDRAWN.value])
              & (func.coalesce(Offer.responded_at, Offer.expires_at)
                 <= now - timedelta(seconds=settings().reask_after_s)))
    held = exists().where(JobEvent.job_id == Offer.job_id, JobEvent.kind == "status",
                          JobEvent.to_status == JobStatus.ASSIGNED.value,
                          JobEvent.actor_user_id == Offer.worker_id)
    return list(session.execute(
        select(Offer.worker_id).where(Offer.job_id == job_id, ~lapsed | held).distinct()
    ).scalars())


def send_wave(session: Session, job: Job, now: datetime,
              candidates: list[Candidate] | None = None) -> list[Offer]:
    """Offer the (locked, dispatching) job to the next best candidates, or give up honestly.

    Returns the new offers; if none could be made and none is pending, the job is unfilled."""
    s = settings()
    if candidates is None:
        candidates = search_candidates(
            session, category_id=job.category_id, lat=job.lat, lng=job.lng, now=now,
            deadline=job.arrive_by,
            excluded_worker_ids=already_offered(session, job.id, now),
            limit=s.offer_wave_size, org_id=job.org_id,
        ).candidates
    if candidates and job.urgency == Urgency.URGENT.value:
        missed = windows_missed(
            session, job, {c.worker_id: now + timedelta(seconds=c.eta_s) for c in candidates},
            now)
        candidates = [c for c in candidates if c.worker_id not in missed]
    if not candidates:
        still_pending = session.execute(
            select(exists().where(Offer.job_id == job.id,
                                  Offer.status == OfferStatus.PENDING.value))
        ).scalar()
        if still_pending:
            return []
        if _keep_looking(job, now, s):
            # Everyone in reach was asked; workers come free and come online all the time,
            # so the sweeper asks again while the promise can still be kept.
            if not session.execute(select(exists().where(
                    JobEvent.job_id == job.id, JobEvent.kind == "waiting_for_workers"))).scalar():
                record_event(session, job, "waiting_for_workers", Actor.SYSTEM, now=now,
                             detail={"waves": job.wave,
                                     "until": patience_ends(job, s).isoformat()})
            return []
        transition(session, job, JobStatus.UNFILLED, Actor.SYSTEM, now=now,
                   detail={"reason": "no worker could accept in time", "waves": job.wave})
        return []
    job.wave += 1
    expires_at = now + timedelta(seconds=offer_window_s(s, job))
    offers = [
        Offer(job_id=job.id, worker_id=c.worker_id, wave=job.wave, rank=rank,
              status=OfferStatus.PENDING.value, distance_m=c.distance_m, eta_seconds=c.eta_s,
              score=c.score, created_at=now, expires_at=expires_at,
              queued_behind_job_id=c.queued_behind_job_id)
        for rank, c in enumerate(candidates, start=1)
    ]
    session.add_all(offers)
    session.flush()
    connected = connected_users([offer.worker_id for offer in offers])
    for offer in offers:
        push.offer_made(session, offer)
        notify.offer_made(session, offer, worker_connected=offer.worker_id in connected)
    record_event(session, job, "offers_sent", Actor.SYSTEM, now=now, detail={
        "wave": job.wave, "offer_ids": [o.id for o in offers],
        "worker_ids": [o.worker_id for o in offers], "expires_at": expires_at.isoformat(),
    })
    on_commit(session, lambda _: _schedule_expiry(expires_at))
    return offers


def _schedule_expiry(expires_at: datetime) -> None:

    schedule_offer_expiry(expires_at)


def lock_offer(session: Session, offer_id: int, worker: User) -> Offer:
    """The caller's own offer with its job locked first; a stranger's offer is 'not found'."""
    job_id = session.execute(
        select(Offer.job_id).where(Offer.id == offer_id, Offer.worker_id == worker.id)
    ).scalar_one_or_none()
    if job_id is None:
        raise not_found("offer")
    job = lock_job(session, job_id)
    offer = session.execute(
        select(Offer).where(Offer.id == offer_id).with_for_update()
    ).scalar_one()
    set_committed_value(offer, "job", job)  # the row just locked: no second read of it
    return offer


def _refuse(offer: Offer, reason: str, message: str) -> Conflict:
    """An accept or decline that came too late or from a worker who cannot take the job."""
    return Conflict(reason, message, [FieldProblem("offer", message)],
                    {"offer_status": offer.status})


def accept_offer(session: Session, offer_id: int, worker: User) -> tuple[Offer, Job]:
    """First accept wins. Under the job lock the offer must still be pending and unexpired,
    the job still dispatching, and the worker still verified for the service. For an urgent
    job the worker must be online and the worker row is taken with a conditional UPDATE
    (online -> busy), so one worker can never win two urgent jobs, and the partial unique
    index on occupying jobs backs that up in the database. A scheduled window is only a
    commitment: the worker stays free until they set out for it.
    Repeating a winning accept (a retry after a lost response) answers the same success."""
    offer = lock_offer(session, offer_id, worker)
    now = clock.now()  # read after the lock: a wait for it must not stretch the window
    job = offer.job
    worker_id = worker.id  # the commit below expires the user
    if offer.status == OfferStatus.ACCEPTED.value and job.worker_id == worker.id:
        return offer, job
    if offer.status != OfferStatus.PENDING.value:
        raise _refuse(offer, f"offer_{offer.status}", f"this offer is already {offer.status}")
    if offer.expires_at <= now:
        raise _refuse(offer, "offer_expired", "the accept window has closed")
    if job.status != JobStatus.DISPATCHING.value:
        raise _refuse(offer, "job_unavailable", f"the job is {job.status}")
    qualified = session.execute(
        select(exists().where(WorkerSkill.worker_id == worker.id,
                              WorkerSkill.category_id == job.category_id,
                              WorkerSkill.verified))
    ).scalar()
    if not qualified:
        raise _refuse(offer, "not_qualified", "you are no longer verified for this service")
    scheduled = job.urgency == Urgency.SCHEDULED.value
    if not scheduled:
        _check_keeps_windows(session, offer, job, worker.id, now)
    try:
        behind = None
        if not scheduled:  # a scheduled job takes the worker only when they set out
            behind = _take_worker(session, offer, worker.id, now)
        else:
            _check_windows_fit(session, offer, job, worker.id, now)
        check_offer_transition(offer.status, OfferStatus.ACCEPTED)
        offer.status = OfferStatus.ACCEPTED.value
        offer.responded_at = now
        job.worker_id = worker.id
        job.queued_behind_job_id = behind
        if behind is None:  # when the job they are on ends is an estimate: no promise on it
            job.promised = True  # someone is coming, with an ETA inside arrive_by
        job.estimated_arrival = _expected_arrival(session, job, offer, worker_id, behind, now)
        detail = {"offer_id": offer.id, "worker_id": worker.id,
                  "eta_seconds": round(offer.eta_seconds)}
        if behind is not None:
            detail["queued_behind_job_id"] = behind
        transition(session, job, JobStatus.ASSIGNED, Actor.SYSTEM, now=now,
                   actor_user_id=worker.id, detail=detail)
        withdrawn = withdraw_pending_offers(session, job, now, except_offer_id=offer.id)
        if withdrawn:
            record_event(session, job, "offers_withdrawn", Actor.SYSTEM, now=now,
                         detail={"count": withdrawn, "reason": "accepted by another worker"})
        session.flush()  # a double booking fails here, not inside the masking's savepoint
        if not scheduled or job.window_start <= now + timedelta(
                minutes=settings().masking_open_before_minutes):
            contact.open_masked_session(session, job, now)  # a later window's: the sweeper, nearer
        commit_keeping_loaded(session)  # the answer shows what was written, no reads back
    except IntegrityError as exc:  # the active-job unique index stopped a double booking
        session.rollback()
        raise Conflict("worker_unavailable", "you already hold an active job",
                       [FieldProblem("offer", "you already hold an active job")]) from exc
    try:
        if not scheduled:  # they are leaving now: their other urgent offers go on
            withdraw_elsewhere(session, worker_id, urgent_only=True)
    except Exception:  # the accept stands; the other offers will simply expire
        session.rollback()
        log.exception("could not withdraw worker %s's other offers", worker_id)
    return offer, job




def _expected_arrival(session: Session, job: Job, offer: Offer, worker_id: int,
                      behind: int | None, now: datetime) -> datetime:
    """Urgent: the trip from now. Queued behind a job: the offer's estimate (that job's end,
    then the trip from it). An offer made to them busy but taken once free: the trip alone,
    from that job's place. A window: the planned arrival the offer carried
    (offer.created_at + eta), never before the window opens."""
    offered = offer.created_at + timedelta(seconds=offer.eta_seconds)
    if job.window_start is not None:
        return max(job.window_start, offered)
    if behind is not None:
        return offered
    if offer.queued_behind_job_id is not None:
        return now + timedelta(seconds=eta_model(settings()).eta_seconds(
            offer.distance_m, _travel_mode(session, worker_id)))
    return now + timedelta(seconds=offer.eta_seconds)


def _travel_mode(session: Session, worker_id: int) -> str:
    return session.execute(select(Worker.travel_mode).where(
        Worker.user_id == worker_id)).scalar_one()


def _take_worker(session: Session, offer: Offer, worker_id: int, now: datetime) -> int | None:
    """online -> busy in one conditional UPDATE: a worker never wins two urgent jobs at once.
    A busy worker may still take one job queued behind the one they are on (the offer went
    to them as finishing the job they are still on); returns the id of the job it waits
    behind.

    The worker row is locked before their current job is read, as `release_or_start_queued`
    does, so an accept racing the end of that job sees either the worker free or the job
    still on."""
    took_worker = session.execute(
        workers_moving(Availability.BUSY, Worker.user_id == worker_id,
                       current=Availability.ONLINE, last_assigned_at=now)
        .returning(Worker.user_id)
    ).scalar_one_or_none()
    if took_worker is not None:
        return None
    current = session.execute(
        select(Worker.availability).where(Worker.user_id == worker_id).with_for_update()
    ).scalar_one()
    if current == Availability.ONLINE.value:  # their job ended while we waited for the lock
        return _take_worker(session, offer, worker_id, now)
    if current == Availability.BUSY.value and offer.queued_behind_job_id is not None:
        # Only an offer made to them as finishing that very job queues: an offer from when
        # they were free (or from before a later job) counted no wait in its ETA.
        on_now = session.execute(
            select(Job.id).where(Job.worker_id == worker_id, occupying_job())
        ).scalar_one_or_none()
        has_queued = session.execute(select(exists().where(
            Job.worker_id == worker_id, Job.queued_behind_job_id.is_not(None)))).scalar()
        if on_now == offer.queued_behind_job_id and not has_queued:
            session.execute(update(Worker).where(Worker.user_id == worker_id)
                            .values(last_assigned_at=now))
            return on_now
        message = ("you already have a next job queued" if has_queued
                   else "you already hold an active job")
        raise _refuse(offer, "worker_unavailable", message)
    message = ("you already hold an active job" if current == Availability.BUSY.value
               else "go online to accept offers")
    raise _refuse(offer, "worker_unavailable", message)


def _check_windows_fit(session: Session, offer: Offer, job: Job, worker_id: int,
                       now: datetime) -> None:
    """A worker may hold several booked windows, but only ones they can keep together.
    The worker row is locked (after the job and offer: the documented order) before their
    windows are read, so two accepts of different windows take turns and the second sees
    the first: checked apart, each would fit, and together they might not."""
    s = settings()
    w = session.execute(select(Worker).where(Worker.user_id == worker_id)
                        .with_for_update()).scalar_one()
    held = list(session.execute(
        select(Job).where(Job.worker_id == worker_id, Job.urgency == Urgency.SCHEDULED.value,
                          Job.status == JobStatus.ASSIGNED.value, Job.arrive_by > now)
    ).scalars())
    if not held:
        return
    here = (w.lat, w.lng) if w.lat is not None and w.lng is not None else (job.lat, job.lng)
    me = BatchWorker(worker_id, here[0], here[1], w.travel_mode, frozenset(), 0.0)

    def window(j: Job) -> WindowJob:
        assert j.window_start is not None and j.window_end is not None
        return WindowJob(j.id, j.lat, j.lng, j.category_id,
                         (j.window_start - now).total_seconds(),
                         (j.window_end - now).total_seconds(),
                         s.scheduled_service_minutes * 60.0)

    if not fits_one_day(me, [window(j) for j in [*held, job]], eta_model(s)):
        raise _refuse(offer, "window_clash", "this window clashes with the booked windows "
                                             "you already hold")


def windows_missed(session: Session, job: Job, arrivals: dict[int, datetime],
                   now: datetime) -> set[int]:
    """The workers (of `arrivals`: worker -> when they would reach this urgent job) who,
    taking it, would miss a booked window they hold: there, its typical time on site, then
    the trip to the window, later than the window's end. Their window's resident would
    wait for nobody, so they are not asked, and cannot accept."""
    held = session.execute(
        select(Job.worker_id, Job.lat, Job.lng, Job.arrive_by, Worker.travel_mode)
        .join(Worker, Worker.user_id == Job.worker_id)
        .where(Job.worker_id.in_(list(arrivals)), Job.urgency == Urgency.SCHEDULED.value,
               Job.status == JobStatus.ASSIGNED.value, Job.arrive_by > now)).all()
    if not held:
        return set()
    on_site = timedelta(minutes=session.execute(select(Category.typical_minutes).where(
        Category.id == job.category_id)).scalar_one())
    model = eta_model(settings())
    return {h.worker_id for h in held
            if arrivals[h.worker_id] + on_site + timedelta(seconds=model.eta_seconds(
                haversine_m(job.lat, job.lng, h.lat, h.lng), h.travel_mode)) > h.arrive_by}


def _check_keeps_windows(session: Session, offer: Offer, job: Job, worker_id: int,
                         now: datetime) -> None:
    """An offer made before the worker took a window (or before the catalogue's typical
    time on site grew) may no longer fit: the accept asks again (`windows_missed`)."""
    arrival = max(now, offer.created_at + timedelta(seconds=offer.eta_seconds))
    if windows_missed(session, job, {worker_id: arrival}, now):
        raise _refuse(offer, "window_clash", "taking this job now would make you miss a "
                                             "window you booked")


def withdraw_elsewhere(session: Session, worker_id: int,
                       reason: str = "the worker took another job",
                       urgent_only: bool = False) -> int:
    """A worker who just took a job (or went offline) no longer holds other offers: withdraw
    each and move that job's cascade on. One transaction per job (job lock first), after the
    accept committed, so two accepts never wait on each other's offers. If this is cut
    short, those offers simply expire. `urgent_only`: offers of scheduled windows stay
    (someone leaving for an urgent job now can still take tomorrow's window)."""
    stmt = select(Offer.job_id).where(Offer.worker_id == worker_id,
                                      Offer.status == OfferStatus.PENDING.value)
    if urgent_only:
        stmt = stmt.join(Job, Job.id == Offer.job_id).where(
            Job.urgency == Urgency.URGENT.value)
    job_ids = session.execute(stmt).scalars().all()
    if not job_ids:  # the common case: nothing to withdraw, and nothing loaded to expire
        return 0
    session.rollback()
    for job_id in job_ids:
        job = lock_job(session, job_id)
        now = clock.now()
        withdrawn = session.execute(
            offers_moving(OfferStatus.PENDING, OfferStatus.WITHDRAWN,
                          Offer.job_id == job_id, Offer.worker_id == worker_id,
                          responded_at=now)
            .returning(Offer.id)
        ).scalars().all()
        push.offers_closed(session, [(worker_id, o) for o in withdrawn],
                           OfferStatus.WITHDRAWN.value)
        if withdrawn:
            record_event(session, job, "offers_withdrawn", Actor.SYSTEM, now=now,
                         detail={"offer_ids": list(withdrawn), "reason": reason})
            _continue_dispatch(session, job, now, top_up=True)
        session.commit()
    return len(job_ids)


def decline_offer(session: Session, offer_id: int, worker: User) -> Offer:
    """A decline frees the worker at once and sends its replacement at once: the next best
    candidate gets an offer now (the wave keeps its width), not when the rest of the wave
    expires. Under the job lock, so concurrent declines each see the others' replacements
    and nobody is asked twice."""
    offer = lock_offer(session, offer_id, worker)
    now = clock.now()
    if offer.status != OfferStatus.PENDING.value:
        raise _refuse(offer, f"offer_{offer.status}", f"this offer is already {offer.status}")
    check_offer_transition(offer.status, OfferStatus.DECLINED)
    offer.status = OfferStatus.DECLINED.value
    offer.responded_at = now
    record_event(session, offer.job, "offer_declined", Actor.WORKER, now=now,
                 actor_user_id=worker.id, detail={"offer_id": offer.id})
    session.flush()
    _continue_dispatch(session, offer.job, now, top_up=True)
    session.commit()
    return offer


def _continue_dispatch(session: Session, job: Job, now: datetime, top_up: bool = False) -> None:
    """If the (locked) job is dispatching with no pending offer left, send the next wave.
    `top_up`: an offer was just answered no (declined, or withdrawn from a worker who left):
    replace it at once, so as many workers are asked at a time as a wave holds."""
    if job.status != JobStatus.DISPATCHING.value:
        return
    pending = session.execute(select(func.count()).where(
        Offer.job_id == job.id, Offer.status == OfferStatus.PENDING.value)).scalar_one()
    if pending == 0:
        send_wave(session, job, now)  # reads who not to ask itself
        return
    missing = settings().offer_wave_size - pending
    if top_up and missing > 0:
        replacements = search_candidates(
            session, category_id=job.category_id, lat=job.lat, lng=job.lng, now=now,
            deadline=job.arrive_by, excluded_worker_ids=already_offered(session, job.id, now),
            limit=missing, org_id=job.org_id).candidates
        if replacements:
            send_wave(session, job, now, candidates=replacements)


def expire_offers(session: Session, job_id: int) -> int:
    """Expire the job's pending offers whose window has closed and move the cascade on.

    Safe to run any number of times, from the scheduled RQ job or the sweeper."""
    job = session.execute(
        select(Job).where(Job.id == job_id).with_for_update()
    ).scalar_one_or_none()
    if job is None:
        session.rollback()
        return 0
    now = clock.now()
    expired = session.execute(
        offers_moving(OfferStatus.PENDING, OfferStatus.EXPIRED,
                      Offer.job_id == job_id, Offer.expires_at <= now, responded_at=now)
        .returning(Offer.worker_id, Offer.id)
    ).all()
    if expired:
        # No push: every offer carries its expires_at and the phone closes it then by itself
        # (static/js/work.js). With phones leaving offers unanswered, these pushes were over a
        # third of all the messages the web processes passed on (bench/load.py).
        record_event(session, job, "offers_expired", Actor.SYSTEM, now=now,
                     detail={"offer_ids": [o for _, o in expired]})
    _continue_dispatch(session, job, now)
    session.commit()
    return len(expired)


def _overdue(now: datetime) -> Select[tuple[int]]:
    return select(Offer.job_id).where(Offer.status == OfferStatus.PENDING.value,
                                      Offer.expires_at <= now)


def _move_on(session: Session, job_ids: list[int]) -> None:
    """Each job in its own transaction: one that fails does not hold up the others."""
    for job_id in job_ids:
        try:
            expire_offers(session, job_id)
        except Exception:
            session.rollback()
            log.exception("could not move job %s on", job_id)


def expire_due(session: Session) -> int:
    """What a second's expiry timer does: every job with an offer window closed by now
    moves on (a job's next wave, or its end). Returns how many jobs it touched."""
    job_ids = sorted(set(session.execute(_overdue(clock.now())).scalars()))
    session.rollback()
    _move_on(session, job_ids)
    return len(job_ids)


def release_late_queued(session: Session) -> int:
    """Send a queued job back to the cascade while someone else can still come: when the
    estimate that queued it (its worker's current job ends at the category's typical time,
    at least QUEUE_MIN_WAIT_S from now, then the trip) no longer reaches it
    `queue_release_minutes` before its deadline, because that job ran long or the worker
    never said it was done. A booked window whose worker is still on another job waits
    behind that job the same way (an urgent job that ran into the window). Each job in its
    own transaction; returns how many went back."""
    s = settings()
    now = clock.now()
    current = aliased(Job)

    def waiting_behind(current_job: ColumnElement[bool],
                       waiting: ColumnElement[bool]) -> Select[Any]:
        return (select(Job.id, Job.worker_id, current.id.label("behind"),
                       Job.lat.label("lat"), Job.lng.label("lng"), Job.arrive_by,
                       current.lat.label("from_lat"), current.lng.label("from_lng"),
                       Worker.travel_mode, Category.typical_minutes,
                       func.coalesce(current.arrived_at,
                                     current.estimated_arrival).label("started"))
                .join(current, current_job)
                .join(Category, Category.id == current.category_id)
                .join(Worker, Worker.user_id == Job.worker_id)
                .where(waiting))

    rows = session.execute(union_all(
        waiting_behind(current.id == Job.queued_behind_job_id,
                       Job.queued_behind_job_id.is_not(None)),
        waiting_behind(and_(current.worker_id == Job.worker_id, current.id != Job.id,
                            occupying_job(current)),
                       and_(Job.status == JobStatus.ASSIGNED.value,
                            Job.urgency == Urgency.SCHEDULED.value)),
    )).all()
    session.rollback()
    model = eta_model(s)
    keep = timedelta(minutes=s.queue_release_minutes)
    late: list[tuple[int, int, int]] = []
    for r in rows:
        ends = max(now + timedelta(seconds=QUEUE_MIN_WAIT_S),
                   (r.started or now) + timedelta(minutes=r.typical_minutes))
        trip = timedelta(seconds=model.eta_seconds(
            haversine_m(r.from_lat, r.from_lng, r.lat, r.lng), r.travel_mode))
        if ends + trip > r.arrive_by - keep:
            late.append((r.id, r.worker_id, r.behind))
    released = 0
    for job_id, worker_id, behind in late:
        try:
            released += _release_queued(session, job_id, worker_id, behind)
        except Exception:
            session.rollback()
            log.exception("could not release queued job %s", job_id)
    return released


def _release_queued(session: Session, job_id: int, worker_id: int, behind: int) -> bool:
    """Released only while it is still queued behind the job judged late, for the worker
    judged, and only when someone else can be asked: otherwise the late worker is still
    the best hope, and the job stays theirs.

    Only the queued job is locked: the end of the job it waits behind (which locks that
    job, the worker, then this one) either started it first, and this finds it no longer
    queued, or waits here and then finds nothing queued behind it."""
    job = lock_job(session, job_id)
    waits_behind = job.queued_behind_job_id == behind or (
        job.urgency == Urgency.SCHEDULED.value and session.execute(select(exists().where(
            Job.id == behind, Job.worker_id == worker_id, occupying_job()))).scalar())
    if (job.worker_id, job.status) != (worker_id, JobStatus.ASSIGNED.value) or not waits_behind:
        session.rollback()
        return False
    now = clock.now()
    s = settings()
    others = search_candidates(
        session, category_id=job.category_id, lat=job.lat, lng=job.lng, now=now,
        deadline=job.arrive_by, excluded_worker_ids=already_offered(session, job.id, now),
        limit=s.offer_wave_size, org_id=job.org_id).candidates
    if not others:
        session.rollback()
        return False
    notify.job_released(session, job, worker_id)
    redispatch(session, job, Actor.SYSTEM, now, resident_event="reassigning", candidates=others,
               detail={"reason": "the worker is still on the job before this one",
                       "worker_id": worker_id, "queued_behind_job_id": behind})
    session.commit()
    return True


def redispatch(session: Session, job: Job, actor: Actor, now: datetime, *, resident_event: str,
               detail: dict[str, object], candidates: list[Candidate] | None = None) -> None:
    """Take the (locked) job back from its worker before they arrive and offer it again,
    in the caller's transaction: the worker is freed (or starts the job queued behind this
    one), their accepted offer is withdrawn, their masked number closed and their pages
    leave the job; the resident hears why (`resident_event`) and the next wave goes out,
    never to this worker again (`already_offered` counts whoever held the job)."""
    worker_id = job.worker_id
    assert worker_id is not None
    transition(session, job, JobStatus.DISPATCHING, actor, now=now, actor_user_id=(
        worker_id if actor is Actor.WORKER else None), detail=detail)
    notify.worker_replaced(session, job, resident_event)  # names the worker: before the reset
    masking.close_for_job(session, job.id, now)
    check_offer_transition(OfferStatus.ACCEPTED, OfferStatus.WITHDRAWN)
    session.execute(offers_moving(OfferStatus.ACCEPTED, OfferStatus.WITHDRAWN,
                                  Offer.job_id == job.id))
    job.worker_id = None
    job.assigned_at = None
    job.estimated_arrival = None
    push.job_taken_from(session, job, worker_id)
    send_wave(session, job, now, candidates=candidates)


def sweep(session: Session) -> int:
    """The safety net under the scheduled expiries: finds every dispatching job with an
    overdue offer or with no pending offer at all, and moves each on in its own transaction.
    Queued jobs whose worker can no longer come in time go back to the cascade first.
    Returns how many jobs it touched."""
    released = release_late_queued(session)
    now = clock.now()
    overdue = _overdue(now)
    stalled = select(Job.id).where(
        Job.status == JobStatus.DISPATCHING.value,
        ~exists().where(Offer.job_id == Job.id, Offer.status == OfferStatus.PENDING.value),
        # A batch's jobs wait for the batch's joint assignment, not for the cascade.
        (Job.batch_id.is_(None)) | exists().where(Batch.id == Job.batch_id,
                                                  Batch.status.in_([s.value for s in BATCH_ENDED])),
    )
    job_ids = sorted(set(session.execute(overdue).scalars()) |
                     set(session.execute(stalled).scalars()))
    session.rollback()
    _move_on(session, job_ids)
    return released + len(job_ids)


def offers_for(session: Session, worker: User, status: str | None,
               page: PageRequest) -> Page[Offer]:
    """The worker's offers, newest first; 'pending' means still answerable (window not yet
    closed)."""
    stmt = select(Offer).where(Offer.worker_id == worker.id)
    if status:
        stmt = stmt.where(Offer.status == status)
    if status == OfferStatus.PENDING.value:
        stmt = stmt.where(Offer.expires_at > clock.now())
    return Keyset((Offer.id,), descending=True).page(session, stmt, page,
                                                     lambda offer: (offer.id,))
