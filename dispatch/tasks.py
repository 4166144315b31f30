"""Background work on RQ: offer expiry timers. A lost timer only delays the cascade: the
sweeper (`flask sweeper`) finds overdue offers by itself."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from flask import Flask, current_app, has_app_context
from redis import BlockingConnectionPool, Redis
from rq import Callback, Queue, Retry

QUEUE_NAME = "dispatch"
T = TypeVar("T")
# Run the expiry a moment after the window closes, so a last-second accept still wins.
EXPIRY_GRACE = timedelta(milliseconds=500)

_worker_app: Flask | None = None


# Under gevent hundreds of handlers may want Redis at once: they queue for one of these
# connections rather than fail with "Too many connections".
REDIS_POOL_SIZE = 64


def redis_connection() -> Redis:
    app = current_app
    conn = app.extensions.get("dispatch.redis")
    if conn is None:
        pool = BlockingConnectionPool.from_url(app.config["REDIS_URL"],
                                               max_connections=REDIS_POOL_SIZE, timeout=10)
        conn = Redis(connection_pool=pool)
        app.extensions["dispatch.redis"] = conn
    return conn


def queue() -> Queue:
    return Queue(QUEUE_NAME, connection=redis_connection())


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
    queue().enqueue_at(datetime.fromtimestamp(second, UTC), expire_due_offers_task,
                       job_id=f"expire-offers-at-{second}", result_ttl=0,
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


def _app() -> Flask:
    """The app for code running in the RQ worker process (built once per process)."""
    global _worker_app
    if _worker_app is None:
        from dispatch import create_app

        _worker_app = create_app()
    return _worker_app


def _in_app(work: Callable[[], T]) -> T:
    """Run `work` with an app context: the caller's (tests, web) or the worker process's."""
    if has_app_context():
        return work()
    with _app().app_context():
        return work()


def _after_last_failure(job: Any, value: Any, give_up: Callable[[int, str], None]) -> None:
    """RQ calls failure callbacks after every failed attempt; act only after the last retry,
    so the row is marked failed with the final error. (Callbacks must be module-level
    functions: RQ stores them by import path.)"""
    if getattr(job, "retries_left", 0):
        return
    row_id = int(job.args[0])
    _in_app(lambda: give_up(row_id, f"gave up after retries: {value}"))


def expire_due_offers_task() -> int:
    from dispatch.extensions import db
    from dispatch.services.dispatching import expire_due

    return _in_app(lambda: expire_due(db.session))


# Backoff between attempts to send a notification; then it is a visible permanent failure.
NOTIFICATION_RETRY_INTERVALS = [10, 30, 120, 600]


def enqueue_notification(notification_id: int) -> None:
    queue().enqueue(send_notification_task, notification_id,
                    job_id=f"notification-{notification_id}",
                    retry=Retry(max=len(NOTIFICATION_RETRY_INTERVALS),
                                interval=NOTIFICATION_RETRY_INTERVALS),
                    on_failure=Callback(notification_attempt_failed),
                    result_ttl=0, failure_ttl=7 * 24 * 3600)


def send_notification_task(notification_id: int) -> str:
    from dispatch.extensions import db
    from dispatch.services.notify import send_one

    return _in_app(lambda: send_one(db.session, notification_id))


def _give_up_notification(notification_id: int, error: str) -> None:
    from dispatch import clock
    from dispatch.extensions import db
    from notifications import outbox

    outbox.give_up(db.session, notification_id, error, clock.now())


def notification_attempt_failed(job: Any, connection: Any, exc_type: Any, value: Any,
                                tb: Any) -> None:
    _after_last_failure(job, value, _give_up_notification)


def enqueue_batch(batch_id: int) -> None:
    queue().enqueue(process_batch_task, batch_id, job_id=f"batch-{batch_id}",
                    retry=Retry(max=3, interval=[5, 30, 120]), result_ttl=0,
                    on_failure=Callback(batch_attempt_failed),
                    failure_ttl=7 * 24 * 3600, job_timeout=600)


def _give_up_batch(batch_id: int, error: str) -> None:
    from dispatch.extensions import db
    from dispatch.services.batches import mark_failed

    mark_failed(db.session, batch_id, error)


def batch_attempt_failed(job: Any, connection: Any, exc_type: Any, value: Any,
                         tb: Any) -> None:
    _after_last_failure(job, value, _give_up_batch)


def process_batch_task(batch_id: int) -> int:
    from dispatch.extensions import db
    from dispatch.services.batches import process

    return _in_app(lambda: process(db.session, batch_id))


WEBHOOK_RETRY_INTERVALS = [10, 60, 300, 1800]


def enqueue_webhook(delivery_id: int) -> None:
    queue().enqueue(deliver_webhook_task, delivery_id, job_id=f"webhook-{delivery_id}",
                    retry=Retry(max=len(WEBHOOK_RETRY_INTERVALS),
                                interval=WEBHOOK_RETRY_INTERVALS),
                    on_failure=Callback(webhook_attempt_failed), result_ttl=0,
                    failure_ttl=7 * 24 * 3600)


def deliver_webhook_task(delivery_id: int) -> str:
    from dispatch import clock
    from dispatch.extensions import db
    from notifications import org_webhooks

    def work() -> str:
        allow = current_app.config["DISPATCH"].webhook_allow_private
        return org_webhooks.deliver(db.session, delivery_id, clock.now(), allow_private=allow)

    return _in_app(work)


def _give_up_webhook(delivery_id: int, error: str) -> None:
    from dispatch import clock
    from dispatch.extensions import db
    from notifications import org_webhooks

    org_webhooks.give_up(db.session, delivery_id, error, clock.now())


def webhook_attempt_failed(job: Any, connection: Any, exc_type: Any, value: Any,
                           tb: Any) -> None:
    _after_last_failure(job, value, _give_up_webhook)
