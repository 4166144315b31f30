"""What the dispatch domain pushes to live clients, sent only after the commit.

Payloads are built just before the commit (so they show what is committed) and published
through `notifications.realtime`, which any process can use. An offer or a category is
pushed in the shape the JSON API gives it (a phone renders both alike); that shape is the
HTTP layer's, handed in at app creation as a `Presenter`, so services never import it."""

from __future__ import annotations

from typing import Any, Protocol

from flask import Flask, current_app
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from dispatch.db.aftercommit import on_commit, transaction_scratch
from dispatch.db.models import Category, Job, Offer
from dispatch.infra.presence import sockets_of, sockets_of_credential
from dispatch.services.active_jobs import forget_active_job
from notifications.realtime import emitter, job_room, user_room


class Presenter(Protocol):
    """How the API shows what pushes carry, as JSON-ready dicts."""

    def category(self, category: Category) -> dict[str, Any]: ...

    def offer(self, offer: Offer) -> dict[str, Any]: ...


_PRESENTER = "dispatch.presenter"


def use_presenter(app: Flask, presenter: Presenter) -> None:
    app.extensions[_PRESENTER] = presenter


def _presenter() -> Presenter:
    presenter: Presenter = current_app.extensions[_PRESENTER]
    return presenter


def _send(event: str, rooms: list[str]) -> Any:
    """One emit to all the rooms: a client in several of them gets the event once."""
    redis_url = current_app.config["REDIS_URL"]

    def send(payload: dict[str, Any]) -> None:
        emitter(redis_url).emit(event, payload, rooms)

    return send


def job_update_payload(job: Job) -> dict[str, Any]:
    """A job's state as its parties watch it (no address: clients fetch details by API)."""
    worker = None
    if job.worker is not None:
        worker = {"id": job.worker.user_id, "name": job.worker.user.name,
                  "travel_mode": job.worker.travel_mode}
    iso = lambda value: value.isoformat() if value else None  # noqa: E731
    return {
        "id": job.id, "status": job.status, "category": _presenter().category(job.category),
        "urgency": job.urgency, "promised": job.promised,
        "queued": job.queued_behind_job_id is not None,
        "window_start": iso(job.window_start),
        "window_end": iso(job.window_end),
        "arrive_by": iso(job.arrive_by), "estimated_arrival": iso(job.estimated_arrival),
        "assigned_at": iso(job.assigned_at), "arrived_at": iso(job.arrived_at),
        "completed_at": iso(job.completed_at), "worker": worker,
    }


def inserted_here(session: Session, job: Job) -> None:
    """Only for a job inserted in this transaction that nothing but the ORM changes: what
    the session holds is what is committed, so its push needs no read-back."""
    transaction_scratch(session).setdefault("jobs_written_by_orm", set()).add(job.id)


def _refresh_columns(session: Session, job: Job) -> None:
    """The job's row as this transaction sees it (the payload shows what is committed), in
    one read: a full refresh also expired the worker and category it had loaded and read
    them again. A loaded worker that no longer matches worker_id is dropped and read."""
    session.refresh(job, attribute_names=_JOB_COLUMNS)
    state = inspect(job)
    if "worker" not in state.unloaded and (
            job.worker.user_id if job.worker is not None else None) != job.worker_id:
        session.expire(job, ["worker"])


_JOB_COLUMNS = [attr.key for attr in inspect(Job).column_attrs]


def job_changed(session: Session, job: Job) -> None:
    """Tell the job's room, and its requester's and worker's own rooms, the new state (once
    per transaction, however many steps it took)."""
    scratch = transaction_scratch(session)
    seen: set[int] = scratch.setdefault("pushed_jobs", set())
    if job.id in seen:
        return
    seen.add(job.id)

    def prepare() -> dict[str, Any]:
        if job.id not in scratch.get("jobs_written_by_orm", ()):
            _refresh_columns(session, job)
        return job_update_payload(job)

    def send(payload: dict[str, Any]) -> None:
        seen.discard(job.id)
        rooms = [job_room(job.id), user_room(job.resident_id)]
        if payload["worker"] is not None:
            rooms.append(user_room(payload["worker"]["id"]))
        _send("job_update", rooms)(payload)
        if payload["worker"] is not None:
            forget_active_job(payload["worker"]["id"])

    on_commit(session, send, prepare)


def job_taken_from(session: Session, job: Job, worker_id: int) -> None:
    """The job is no longer this worker's (it went back to the cascade): their sockets leave
    the job's room (the next worker's name and live position are not theirs to see), and
    their pages hear of it in their own room."""
    redis_url = current_app.config["REDIS_URL"]

    def send(payload: dict[str, Any]) -> None:
        emitter(redis_url).leave_room(sockets_of(worker_id), job_room(job.id))
        emitter(redis_url).emit("job_update", payload, [user_room(worker_id)])
        forget_active_job(worker_id)  # their pings no longer stream to this job's room

    on_commit(session, send, lambda: job_update_payload(job))


def offer_made(session: Session, offer: Offer) -> None:
    def prepare() -> dict[str, Any]:
        return _presenter().offer(offer)

    on_commit(session, _send("offer", [user_room(offer.worker_id)]), prepare)


def offers_closed(session: Session, worker_offer_ids: list[tuple[int, int]], status: str) -> None:
    """Offers that can no longer be answered disappear from those workers' phones."""
    for worker_id, offer_id in worker_offer_ids:
        on_commit(session, _send("offer_closed", [user_room(worker_id)]),
                  lambda offer_id=offer_id: {"offer_id": offer_id, "status": status})


def send_now(event: str, job_id: int, payload: dict[str, Any]) -> None:
    """Push to a job's room at once: for what is not a database change (a position)."""
    _send(event, [job_room(job_id)])(payload)


def credential_ended(session: Session, credential: str) -> None:
    """A bearer token or login session ended (logout): the sockets opened with it close
    once that is committed, on whichever server holds them. A reconnect with the dead
    credential is refused, and so is a room join by a socket the close missed."""
    redis_url = current_app.config["REDIS_URL"]
    on_commit(session, lambda _: emitter(redis_url).disconnect(
        sockets_of_credential(credential)))


def user_logged_out_everywhere(session: Session, user_id: int) -> None:
    """Every credential of the user ended: every socket of theirs closes."""
    redis_url = current_app.config["REDIS_URL"]
    on_commit(session, lambda _: emitter(redis_url).disconnect(sockets_of(user_id)))
