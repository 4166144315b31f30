"""What goes on which RQ queue, and when. Queues are split by purpose so that work of one kind
never waits behind another: a 1-second offer timer must not queue behind a 10-minute batch,
nor behind an SMS waiting on Twilio. `make run`, docker-compose.yml and the load bench give
`TIMERS` a worker of its own, `TEXTS` and `WEBHOOKS` another, `BATCHES` a third.

Jobs name their task by import path (`dispatch.entrypoints.tasks.*`), so enqueueing never
imports the worker's entry points: services reach the queues through this module only."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

from flask import current_app
from rq import Callback, Queue, Retry
from rq.job import Job

from dispatch.infra.redis import redis_connection

TIMERS = "dispatch-timers"
TEXTS = "dispatch-texts"
WEBHOOKS = "dispatch-webhooks"
BATCHES = "dispatch-batches"
ALL_QUEUES = (TIMERS, TEXTS, WEBHOOKS, BATCHES)
# Which queues each RQ worker process serves (`rq worker` takes them in this order).
WORKER_GROUPS = {"timers": (TIMERS,), "messages": (TEXTS, WEBHOOKS), "batches": (BATCHES,)}

TASKS = "dispatch.entrypoints.tasks"
# Run the expiry a moment after the window closes, so a last-second accept still wins.
EXPIRY_GRACE = timedelta(milliseconds=500)
# Backoff between attempts to send a notification; then it is a visible permanent failure.
NOTIFICATION_RETRY_INTERVALS = [10, 30, 120, 600]
WEBHOOK_RETRY_INTERVALS = [10, 60, 300, 1800]
BATCH_RETRY_INTERVALS = [5, 30, 120]
BATCH_TIMEOUT_S = 600
FAILED_KEPT_S = 7 * 24 * 3600


def queue(name: str) -> Queue:
    return Queue(name, connection=redis_connection())


def expiry_second(expires_at: datetime) -> int:
    """The whole second (epoch) whose timer expires an offer: the first one at or after the
    window closes plus the grace. RQ's scheduler works in whole seconds anyway."""
    return math.ceil((expires_at + EXPIRY_GRACE).timestamp())


def schedule_offer_expiry(expires_at: datetime) -> None:
    """One RQ timer per second, however many offer windows close in it: at 20 bookings a
    second, a timer per wave cost the RQ worker more in bookkeeping than the expiries did.
    The first wave of a second queues it (a marker key claims the second); a timer lost
    anyway (the enqueue failed after the claim, Redis was wiped) is the sweeper's to catch."""
    second = expiry_second(expires_at)
    known = _claimed_seconds()
    if second in known:  # this process saw the second claimed: skip the round trip
        return
    redis = redis_connection()
    claimed = redis.set(f"dispatch:expiry-timer:{second}", 1, nx=True,
                        ex=max(0, int(second - time.time())) + 60)
    _remember(known, second)
    if not claimed:
        return
    queue(TIMERS).enqueue_at(datetime.fromtimestamp(second, UTC),
                             f"{TASKS}.expire_due_offers_task",
                             job_id=f"expire-offers-at-{second}", result_ttl=0,
                             failure_ttl=24 * 3600)


def schedule_auto_release(job_id: int, due: datetime) -> None:
    """A completed job's escrow released to the worker at `due` unless the payer confirmed
    first (the task checks; the sweeper is the backstop for a lost timer)."""
    queue(TIMERS).enqueue_at(due, f"{TASKS}.auto_release_task", job_id,
                             job_id=f"auto-release-{job_id}", result_ttl=0,
                             failure_ttl=24 * 3600)


def schedule_milestone_release(milestone_id: int, due: datetime) -> None:
    """A done stage of a job paid in stages released at `due` unless the payer confirmed it
    first (the task checks; the sweeper is the backstop)."""
    queue(TIMERS).enqueue_at(due, f"{TASKS}.milestone_release_task", milestone_id,
                             job_id=f"milestone-release-{milestone_id}", result_ttl=0,
                             failure_ttl=24 * 3600)


def schedule_reauthorization(job_id: int, n: int, due: datetime) -> None:
    """The job's hold placed again (its n-th time) at `due`, before the card network lets
    it lapse (the task checks it is still due; the sweeper is the backstop)."""
    queue(TIMERS).enqueue_at(due, f"{TASKS}.reauthorize_task", job_id,
                             job_id=f"reauthorize-{job_id}-{n}", result_ttl=0,
                             failure_ttl=24 * 3600)


def _claimed_seconds() -> dict[int, None]:
    """Seconds whose timer this process knows to be claimed (by itself or another): at 20
    bookings a second, nine in ten of a process's bookings then send no claim at all."""
    found: dict[int, None] | None = current_app.extensions.get("dispatch.expiry_seconds")
    if found is None:
        found = current_app.extensions["dispatch.expiry_seconds"] = {}
    return found


def _remember(known: dict[int, None], second: int) -> None:
    known[second] = None
    if len(known) > 512:  # seconds long past: their timers have run
        for old in sorted(known)[:256]:
            del known[old]


def _row_job_id(name: str, row_id: int) -> str:
    return f"{name}-{row_id}"


def _enqueue_row(queue_name: str, task: str, row_id: int, name: str, intervals: list[int],
                 **options: object) -> None:
    """A task on one outgoing row, retried with backoff; after the last failure its callback
    marks the row failed (the `on_failure` callback, named by import path)."""
    queue(queue_name).enqueue(f"{TASKS}.{task}", row_id, job_id=_row_job_id(name, row_id),
                              retry=Retry(max=len(intervals), interval=intervals),
                              result_ttl=0, failure_ttl=FAILED_KEPT_S, **options)


def enqueue_notification(notification_id: int) -> None:
    _enqueue_row(TEXTS, "send_notification_task", notification_id, "notification",
                 NOTIFICATION_RETRY_INTERVALS,
                 on_failure=Callback(f"{TASKS}.notification_attempt_failed"))


# Twilio Verify retried while its code is still worth sending (PHONE_CODE_TTL_MINUTES: 10).
PHONE_CODE_RETRY_INTERVALS = [5, 30, 120]


def enqueue_phone_code(phone: str, sent_at: datetime) -> None:
    """Have Twilio Verify text the code recorded for `phone` at `sent_at` (one job per code:
    a request answered in the same time whether or not it sends one)."""
    queue(TEXTS).enqueue(f"{TASKS}.send_phone_code_task", phone, sent_at.isoformat(),
                         job_id=f"phone-code-{phone.lstrip('+')}-{int(sent_at.timestamp() * 1e6)}",
                         retry=Retry(max=len(PHONE_CODE_RETRY_INTERVALS),
                                     interval=PHONE_CODE_RETRY_INTERVALS),
                         result_ttl=0, failure_ttl=FAILED_KEPT_S)
def notifications_not_queued(notification_ids: list[int]) -> list[int]:
    """Those of these texts that no RQ job holds: a Redis restart lost their job (Redis keeps
    no disk copy), or handing them over after the commit failed while Redis was down. While
    queued, running or waiting for a retry, a text's job exists; it is removed only once
    the text is sent. One round trip, however many."""
    if not notification_ids:
        return []
    pipe = redis_connection().pipeline(transaction=False)
    for notification_id in notification_ids:
        pipe.exists(Job.key_for(_row_job_id("notification", notification_id)))
    held = pipe.execute()
    return [n for n, found in zip(notification_ids, held, strict=True) if not found]


def enqueue_batch(batch_id: int) -> None:
    _enqueue_row(BATCHES, "process_batch_task", batch_id, "batch", BATCH_RETRY_INTERVALS,
                 on_failure=Callback(f"{TASKS}.batch_attempt_failed"),
                 job_timeout=BATCH_TIMEOUT_S)


def enqueue_webhook(delivery_id: int) -> None:
    _enqueue_row(WEBHOOKS, "deliver_webhook_task", delivery_id, "webhook",
                 WEBHOOK_RETRY_INTERVALS,
                 on_failure=Callback(f"{TASKS}.webhook_attempt_failed"))


# The simulated card processor's follow-ups (dispatch.infra.payments.simulated): a signed
# webhook per operation, and the later answer to a payout in transit.
SIMULATED_PAYMENT_RETRY_INTERVALS = [1, 5, 30, 120, 600]
SIMULATED_PAYMENT_TIMEOUT_S = 60


def enqueue_simulated_payment_event(event: dict[str, object]) -> None:
    _enqueue_simulated("deliver_simulated_payment_event_task", event,
                       f"sim-payment-event-{event['id']}")


def enqueue_simulated_payout_settlement(payout_id: str) -> None:
    _enqueue_simulated("settle_simulated_payout_task", payout_id, f"sim-payout-{payout_id}")


def _enqueue_simulated(task: str, arg: object, job_id: str) -> None:
    queue(WEBHOOKS).enqueue(f"{TASKS}.{task}", arg, job_id=job_id,
                            job_timeout=SIMULATED_PAYMENT_TIMEOUT_S,
                            retry=Retry(max=len(SIMULATED_PAYMENT_RETRY_INTERVALS),
                                        interval=SIMULATED_PAYMENT_RETRY_INTERVALS),
                            result_ttl=0, failure_ttl=FAILED_KEPT_S)


def schedule_weekly_payouts(at: datetime, week: str) -> None:
    """The weekly payout run's timer (dispatch.services.payouts): one job per week, by id, so
    scheduling it again changes nothing that matters."""
    queue(TIMERS).enqueue_at(at, f"{TASKS}.weekly_payouts_task", job_id=f"weekly-payouts-{week}",
                             result_ttl=0, failure_ttl=FAILED_KEPT_S, job_timeout=BATCH_TIMEOUT_S)
