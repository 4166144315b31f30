"""What a job's resident (or an operator) sees while following it, told as it is: how many
workers are being asked right now (never who), until when the search goes on, and where the
worker was last seen with the arrival that position gives.

The live arrival uses the same ETA model as matching and booking, start-up time included
until the worker sets out, so the estimate does not jump at the first position fix."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.db.models import Job, Offer, Worker
from dispatch.domain.states import COMING_STATUSES, JobStatus, OfferStatus, occupies_worker
from dispatch.services.context import eta_model, settings
from dispatch.services.dispatching import patience_ends
from geo.eta import EtaModel, haversine_m


def live_eta_seconds(model: EtaModel, straight_m: float, travel_mode: str,
                     status: JobStatus | str) -> float | None:
    """Seconds until a worker this far from the job is at the door; None once they are
    there (or the job is over). Until they set out, their start-up time still lies ahead."""
    status = JobStatus(status)
    if status not in COMING_STATUSES:
        return None
    return model.eta_seconds(straight_m, travel_mode, set_out=status is not JobStatus.ASSIGNED)


@dataclass(frozen=True)
class WorkerPosition:
    lat: float
    lng: float
    at: datetime
    eta_at: datetime | None


@dataclass(frozen=True)
class Following:
    """The live facts of one job beyond its row."""

    asking_workers: int
    asking_until: datetime | None
    looking_until: datetime | None
    worker_position: WorkerPosition | None


def following(session: Session, job: Job, now: datetime) -> Following:
    asking, until = 0, None
    looking_until = None
    if JobStatus(job.status) is JobStatus.DISPATCHING:
        # An offer past its time is no longer a question anyone can answer, whether or not
        # the expiry task has marked it yet.
        asking, until = session.execute(
            select(func.count(), func.max(Offer.expires_at))
            .where(Offer.job_id == job.id, Offer.status == OfferStatus.PENDING.value,
                   Offer.expires_at > now)
        ).one()
        looking_until = patience_ends(job, settings())
    return Following(asking_workers=asking, asking_until=until, looking_until=looking_until,
                     worker_position=worker_position(job))


def worker_position(job: Job) -> WorkerPosition | None:
    """The worker's last known fix, only while the job occupies them (a queued job's worker
    is at someone else's door, which is not this resident's business)."""
    worker: Worker | None = job.worker
    if (worker is None or worker.location_at is None or worker.lat is None
            or worker.lng is None
            or not occupies_worker(job.urgency, job.status, job.queued_behind_job_id is not None)):
        return None
    eta_s = live_eta_seconds(eta_model(settings()),
                             haversine_m(worker.lat, worker.lng, job.lat, job.lng),
                             worker.travel_mode, job.status)
    eta_at = None if eta_s is None else worker.location_at + timedelta(seconds=eta_s)
    return WorkerPosition(lat=worker.lat, lng=worker.lng, at=worker.location_at, eta_at=eta_at)
