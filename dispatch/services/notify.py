"""Which event texts whom: the dispatch side of the notification outbox. Rows are written in
the transaction of the change (a rolled-back change sends nothing) and handed to RQ only
after the commit; each (event, job, recipient) is sent at most once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy.orm import Session
from twilio.rest import Client

from dispatch.db import clock
from dispatch.db.aftercommit import on_commit
from dispatch.db.models import Job, Offer, Organization, User
from dispatch.infra.queues import enqueue_notification, notifications_not_queued
from notifications import outbox
from notifications.messages import render
from notifications.twilio_client import make_client

# Job status -> (notification event, who hears about it).
STATUS_EVENTS: dict[str, tuple[str, str]] = {
    "assigned": ("accepted", "resident"),
    "en_route": ("en_route", "resident"),
    "arrived": ("arrived", "resident"),
    "completed": ("completed", "resident"),
    "unfilled": ("unfilled", "resident"),
}
# What the tenant of a manager's unit hears: who is coming and when; an unfilled job is
# the manager's to handle, not the tenant's.
TENANT_EVENTS = frozenset({"accepted", "en_route", "arrived", "completed", "reassigning",
                           "replacing", "worker_free"})


def twilio() -> Client:
    app = current_app
    client = app.extensions.get("dispatch.twilio")
    if client is None:
        s = app.config["DISPATCH"]
        client = make_client(s.twilio_account_sid, s.twilio_auth_token,
                             s.twilio_api_base_url or None,
                             verify_base_url=s.twilio_verify_base_url or None)
        app.extensions["dispatch.twilio"] = client
    return client


def _local(moment: datetime | None) -> str:
    """A time as people in the service area read it, with its zone (texts have no UI)."""
    if moment is None:
        return ""
    zone = ZoneInfo(current_app.config["DISPATCH"].service_timezone)
    return moment.astimezone(zone).strftime("%H:%M %Z")


def _fields(job: Job, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "category": job.category.name,
        "arrive_by": _local(job.arrive_by),
        "worker": job.worker.user.name if job.worker is not None else "",
        "eta": _local(job.estimated_arrival),
    }
    fields.update(extra)
    return fields


def _queue(session: Session, user: User, job: Job, event: str, fields: dict[str, Any],
           key: str, expires_at: datetime | None = None) -> None:
    _queue_to(session, job, event, fields, key, user_id=user.id, to_number=user.phone_e164,
              locale=user.locale, expires_at=expires_at)


def _queue_to(session: Session, job: Job, event: str, fields: dict[str, Any], key: str, *,
              user_id: int | None, to_number: str, locale: str,
              expires_at: datetime | None = None) -> None:
    """One outbox row, handed to RQ after the commit (a user, or a tenant's number)."""
    notification_id = outbox.enqueue(
        session, key=key, user_id=user_id, job_id=job.id, event=event, to_number=to_number,
        locale=locale, body=render(event, locale, fields), now=clock.now(),
        expires_at=expires_at)
    if notification_id is not None:
        on_commit(session, lambda _: _hand_to_queue(notification_id))


def _hand_to_queue(notification_id: int) -> None:
    enqueue_notification(notification_id)


def job_status_changed(session: Session, job: Job, status: str, previous: str) -> None:
    """Text the party that needs to know (in the same transaction as the change)."""
    if status == "cancelled":
        if job.worker_id is not None and previous in ("assigned", "en_route", "arrived"):
            _to_worker(session, job, job.worker_id, "cancelled")
        return
    if status == "dispatching":  # a new search: the caller says why (`worker_replaced`)
        return
    found = STATUS_EVENTS.get(status)
    if found is None:
        return
    _to_resident(session, job, found[0])


def worker_free(session: Session, job: Job) -> None:
    """The job queued behind another one starts: its resident hears the worker is coming
    now, with the trip's ETA instead of the earlier estimate."""
    _to_resident(session, job, "worker_free")


def worker_replaced(session: Session, job: Job, event: str) -> None:
    """The job went back to the cascade before its worker arrived: the resident (and a
    unit's tenant) hear why and that someone else is being found."""
    _to_resident(session, job, event)


def worker_no_show(session: Session, job: Job, worker_id: int) -> None:
    """A worker taken off a job they never came to hears it, app open or not."""
    _to_worker(session, job, worker_id, "no_show")


def job_released(session: Session, job: Job, worker_id: int) -> None:
    """The worker whose queued job went to someone else hears it, app open or not."""
    _to_worker(session, job, worker_id, "released")


def card_declined(session: Session, job: Job) -> None:
    """The payer's card declined the job's hold when it was placed again
    (services/reauthorization.py): they hear it, and that they should book again."""
    _to_resident(session, job, "card_declined")


def hold_lapsed(session: Session, job: Job) -> None:
    """A completed job closed because its hold lapsed before its final amount was agreed
    (confirmation.sweep): the payer and the worker hear that nothing was charged."""
    _to_resident(session, job, "hold_lapsed")
    if job.worker_id is not None:
        _to_worker(session, job, job.worker_id, "hold_lapsed")


def _to_worker(session: Session, job: Job, worker_id: int, event: str) -> None:
    """A worker hears what became of a job of theirs (once per job and worker)."""
    worker = session.get(User, worker_id)
    if worker is not None:
        _queue(session, worker, job, event, _fields(job), f"{event}:{job.id}:{worker.id}")


def _to_resident(session: Session, job: Job, event: str) -> None:
    """The requester hears it, and a manager's unit's tenant hears what concerns them. The
    key names the worker: after a reassignment, the next worker's news is news too."""
    who = f":{job.worker_id}" if job.worker_id is not None else ""
    resident = session.get(User, job.resident_id)
    if resident is not None:
        _queue(session, resident, job, event, _fields(job),
               f"{event}:{job.id}:{resident.id}{who}")
    if event in TENANT_EVENTS and job.unit is not None and job.unit.tenant_phone:
        _queue_tenant(session, job, job.unit.tenant_phone, event, who)


def _queue_tenant(session: Session, job: Job, phone: str, event: str, who: str) -> None:
    """The tenant is not a user: the text goes to the unit's number (STOP still holds,
    opt-outs are by number), in the service area's default language. A manager typed that
    number, so the first text any organization sends to it says who sends and how to stop:
    it is queued just before (the outbox key makes it once per organization and number)."""
    assert job.unit is not None
    org = session.get(Organization, job.unit.property.org_id)
    if org is not None:
        _queue_to(session, job, "tenant_intro",
                  {"organization": org.name, "unit": f"{job.unit.property.name} "
                   f"{job.unit.label}"}, f"tenant_intro:{org.id}:{phone}",
                  user_id=None, to_number=phone, locale="en")
    _queue_to(session, job, event, _fields(job), f"{event}:{job.id}:tenant{who}",
              user_id=None, to_number=phone, locale="en")


def offer_made(session: Session, offer: Offer, worker_connected: bool) -> None:
    """An offer reaches the phone over the socket; a worker without the app open gets it by
    SMS too."""
    if worker_connected:
        return
    worker = session.get(User, offer.worker_id)
    if worker is None:
        return
    window = round((offer.expires_at - offer.created_at).total_seconds())
    fields = _fields(offer.job, distance_km=f"{offer.distance_m / 1000:.1f}", window_s=window)
    _queue(session, worker, offer.job, "offer", fields, f"offer:{offer.id}",
           expires_at=offer.expires_at)


def password_reset_link(session: Session, user: User, link: str, minutes: int,
                        expires_at: datetime) -> None:
    """The reset link goes only to the account's own phone, in its language; a link that
    could not be sent before it expires is not sent at all."""
    notification_id = outbox.enqueue(
        session, key=f"password_reset:{user.id}:{link.rsplit('/', 1)[-1][-43:]}",
        user_id=user.id, job_id=None, event="password_reset", to_number=user.phone_e164,
        locale=user.locale,
        body=render("password_reset", user.locale, {"link": link, "minutes": minutes}),
        now=clock.now(), expires_at=expires_at)
    if notification_id is not None:
        on_commit(session, lambda _: _hand_to_queue(notification_id))


def signup_attempted(session: Session, owner: User) -> None:
    """Someone signed up with this account's email or phone: its owner hears it (at most
    once an hour, so sign-ups cannot flood a phone), and the sign-up learns nothing."""
    now = clock.now()
    notification_id = outbox.enqueue(
        session, key=f"signup_attempted:{owner.id}:{now:%Y%m%d%H}", user_id=owner.id,
        job_id=None, event="signup_attempted", to_number=owner.phone_e164, locale=owner.locale,
        body=render("signup_attempted", owner.locale, {}), now=now)
    if notification_id is not None:
        on_commit(session, lambda _: _hand_to_queue(notification_id))


def send_one(session: Session, notification_id: int) -> str:
    s = current_app.config["DISPATCH"]
    callback = s.public_base_url.rstrip("/") + "/webhooks/twilio/status"
    return outbox.send(session, twilio(), notification_id, from_number=s.twilio_messaging_from,
                       status_callback=callback, now=clock.now())


# A text waiting this long with no RQ job was lost by Redis (after-commit hand-over takes
# milliseconds); younger ones may be between their commit and their hand-over.
LOST_AFTER = timedelta(seconds=5)


def sweep(session: Session) -> int:
    """Hand stranded messages to the queue again (see `outbox.stranded`), and at once those
    whose queue entry Redis lost (a restart): waiting for them to look stranded took two
    minutes, and an offer's text is worthless by then."""
    now = clock.now()
    ids = outbox.stranded(session, now)
    waiting = outbox.waiting(session, now - LOST_AFTER)
    ids = sorted(set(ids) | set(notifications_not_queued(waiting)))
    for notification_id in ids:
        _hand_to_queue(notification_id)
    return len(ids)
