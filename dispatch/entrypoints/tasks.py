"""What the RQ workers run (`dispatch.infra.queues` puts it on the queues). A lost offer timer
only delays the cascade: the sweeper finds overdue offers by itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from flask import Flask, current_app, has_app_context

from dispatch.db import clock, db
from dispatch.services import (
    batches,
    confirmation,
    dispatching,
    milestones,
    notify,
    payments,
    payouts,
    phone_verification,
    reauthorization,
)
from notifications import org_webhooks, outbox

T = TypeVar("T")
_worker_app: Flask | None = None


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
    return _in_app(lambda: dispatching.expire_due(db.session))


def auto_release_task(job_id: int) -> bool:
    return _in_app(lambda: confirmation.auto_release(db.session, job_id, clock.now()))


def milestone_release_task(milestone_id: int) -> bool:
    return _in_app(lambda: milestones.auto_release(db.session, milestone_id, clock.now()))


def reauthorize_task(job_id: int) -> str:
    return _in_app(lambda: reauthorization.reauthorize(db.session, job_id, clock.now()))


def send_notification_task(notification_id: int) -> str:
    return _in_app(lambda: notify.send_one(db.session, notification_id))


def _give_up_notification(notification_id: int, error: str) -> None:
    outbox.give_up(db.session, notification_id, error, clock.now())


def notification_attempt_failed(job: Any, connection: Any, exc_type: Any, value: Any,
                                tb: Any) -> None:
    _after_last_failure(job, value, _give_up_notification)


def send_phone_code_task(phone: str, sent_at: str) -> bool:
    return _in_app(lambda: phone_verification.text_code(
        db.session, phone, datetime.fromisoformat(sent_at)))


def _give_up_batch(batch_id: int, error: str) -> None:
    batches.mark_failed(db.session, batch_id, error)


def batch_attempt_failed(job: Any, connection: Any, exc_type: Any, value: Any,
                         tb: Any) -> None:
    _after_last_failure(job, value, _give_up_batch)


def process_batch_task(batch_id: int) -> int:
    return _in_app(lambda: batches.process(db.session, batch_id))


def deliver_webhook_task(delivery_id: int) -> str:
    def work() -> str:
        allow = current_app.config["DISPATCH"].webhook_allow_private
        return org_webhooks.deliver(db.session, delivery_id, clock.now(), allow_private=allow)

    return _in_app(work)


def _give_up_webhook(delivery_id: int, error: str) -> None:
    org_webhooks.give_up(db.session, delivery_id, error, clock.now())


def webhook_attempt_failed(job: Any, connection: Any, exc_type: Any, value: Any,
                           tb: Any) -> None:
    _after_last_failure(job, value, _give_up_webhook)


def deliver_simulated_payment_event_task(event: dict[str, Any]) -> int:
    """The simulated card processor POSTs one signed webhook (retried by RQ until taken)."""
    return _in_app(lambda: payments.simulator().deliver(event))


def settle_simulated_payout_task(payout_id: str) -> str:
    """The simulated bank answers a payout in transit: paid, or failed (then a webhook)."""
    return _in_app(lambda: payments.simulator().settle_payout(payout_id))


def weekly_payouts_task() -> int:
    """The weekly payout run (it schedules the next one); the sweeper makes up a lost one."""
    return _in_app(lambda: payouts.run_weekly(db.session, payments.provider()))
