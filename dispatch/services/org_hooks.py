"""Tell an organization's property-management system about its jobs' state changes and the
money moved for them (an outgoing, signed webhook per change), written with the change, sent
after the commit.

Events: `job.status_changed`, and for the organization's payments (services/escrow.py, one
place each): `payment.held` (the hold placed at booking), `payment.captured` (the charge
taken when the hold ended, with the part given back), `payment.refunded` (the part of a
hold given back after a charge), `payment.voided` (the whole hold given back, nothing
charged), `payment.expired` (the provider let the hold lapse; nothing charged)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.aftercommit import on_commit
from dispatch.db.models import Job, Organization
from dispatch.infra.queues import enqueue_webhook
from notifications import org_webhooks


def job_status_changed(session: Session, job: Job, previous: str, status: str,
                       now: datetime) -> None:
    if job.org_id is None:
        return
    org = session.get(Organization, job.org_id)
    if org is None or not org.webhook_url:
        return
    delivery_id = org_webhooks.enqueue(
        session, org_id=org.id, job_id=job.id, event="job.status_changed",
        key=f"job:{job.id}:{previous}:{status}:{now.isoformat()}",
        payload={"event": "job.status_changed", "job_id": job.id, "unit_id": job.unit_id,
                 "batch_id": job.batch_id, "from": previous, "to": status,
                 "at": now.isoformat()},
        now=now)
    if delivery_id is not None:
        on_commit(session, lambda _: _hand_to_queue(delivery_id))


# What `money_event` may send: the names receivers subscribe to, said once.
PAYMENT_EVENTS = ("payment.held", "payment.captured", "payment.refunded", "payment.voided",
                  "payment.expired")


def money_event(session: Session, job: Job, event: str, payload: dict[str, Any], key: str,
                now: datetime) -> None:
    """A money movement of an organization's job, told to its webhook in the transaction
    that moves the money: written now, sent after the commit, at most once per `key` (a
    retry of the movement finds the delivery already written). Jobs of residents, and
    organizations without a webhook, send nothing."""
    if job.org_id is None:
        return
    org = session.get(Organization, job.org_id)
    if org is None or not org.webhook_url:
        return
    delivery_id = org_webhooks.enqueue(
        session, org_id=org.id, job_id=job.id, event=event, key=key,
        payload={"event": event, "job_id": job.id, "unit_id": job.unit_id,
                 "batch_id": job.batch_id, **payload, "at": now.isoformat()},
        now=now)
    if delivery_id is not None:
        on_commit(session, lambda _: _hand_to_queue(delivery_id))


def _hand_to_queue(delivery_id: int) -> None:
    enqueue_webhook(delivery_id)


def sweep(session: Session) -> int:
    ids = org_webhooks.stranded(session, clock.now())
    for delivery_id in ids:
        _hand_to_queue(delivery_id)
    return len(ids)
