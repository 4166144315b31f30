"""The notification outbox: every message the product sends is first a row, written in the
same transaction as the change that causes it (so a rolled-back job sends nothing), keyed
so that each event reaches each recipient at most once, then sent by an RQ job that may
run any number of times, retried with backoff, and tracked by Twilio's status callbacks.

Knows people by id and number, jobs by id; never imports `dispatch`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from notifications.states import WAITING, sql_list
from notifications.states import NotificationStatus as N
from notifications.stranded import requeue_stranded

# Twilio answers these for a message that can never go out (invalid or unsubscribed
# number, not a mobile number...): retrying would not help.
# (401/403 are left to retry: they usually mean credentials being rotated or mistyped.)
PERMANENT_HTTP = frozenset({400, 404, 422})
# Status-callback states we keep (Twilio also reports queued/sending/sent on the way).
CALLBACK_STATES = {s.value: s for s in (N.DELIVERED, N.UNDELIVERED, N.FAILED, N.SENT)}


@dataclass(frozen=True)
class Outgoing:
    id: int
    to_number: str
    body: str


def enqueue(session: Session, *, key: str, user_id: int | None, job_id: int | None, event: str,
            to_number: str, locale: str, body: str, now: datetime,
            expires_at: datetime | None = None) -> int | None:
    """Add a message to the outbox; None if this key was already queued (at most once).
    A message with `expires_at` is skipped rather than sent late (an offer text after the
    offer ended would only mislead)."""
    return session.execute(text("""
INSERT INTO notifications (idempotency_key, user_id, job_id, event, to_number, locale, body,
                           expires_at, created_at, updated_at)
VALUES (:key, :user_id, :job_id, :event, :to, :locale, :body, :expires_at, :now, :now)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id"""), {"key": key, "user_id": user_id, "job_id": job_id, "event": event,
                    "to": to_number, "locale": locale, "body": body, "expires_at": expires_at,
                    "now": now}).scalar_one_or_none()


def claim(session: Session, notification_id: int, now: datetime) -> Outgoing | None:
    """Take the message for one send attempt; None if it is sent, given up, or being sent
    by another run right now (the row update is the lock: two runs never both send)."""
    skipped = session.execute(text(f"""
UPDATE notifications SET status = '{N.SKIPPED}', updated_at = :now,
       last_error = CASE WHEN expires_at <= :now THEN 'expired before it could be sent'
                         ELSE 'the recipient has opted out of texts' END
 WHERE id = :id AND status IN {sql_list(WAITING)}
   AND (expires_at <= :now OR to_number IN (SELECT number FROM sms_opt_outs))
RETURNING id"""), {"id": notification_id, "now": now}).first()
    if skipped is not None:
        session.commit()
        return None
    row = session.execute(text(f"""
UPDATE notifications SET status = '{N.SENDING}', attempts = attempts + 1, updated_at = :now
 WHERE id = :id AND status IN {sql_list(WAITING)}
RETURNING id, to_number, body"""), {"id": notification_id, "now": now}).first()
    session.commit()
    return Outgoing(row.id, row.to_number, row.body) if row else None


def send(session: Session, client: Client, notification_id: int, *, from_number: str,
         status_callback: str | None, now: datetime) -> str:
    """One attempt. Returns the new status; raises for a failure worth retrying, so the
    queue's retry with backoff takes over."""
    message = claim(session, notification_id, now)
    if message is None:
        return "already_done"
    try:
        sent = client.messages.create(to=message.to_number, from_=from_number,
                                      body=message.body, status_callback=status_callback)
    except TwilioRestException as exc:
        permanent = exc.status in PERMANENT_HTTP
        _set(session, message.id, N.FAILED if permanent else N.RETRYING,
             f"Twilio {exc.status} {exc.code}: {exc.msg}", now)
        if permanent:
            return N.FAILED
        raise
    except Exception as exc:  # network trouble: retry
        _set(session, message.id, N.RETRYING, f"{type(exc).__name__}: {exc}", now)
        raise
    session.execute(text(
        f"UPDATE notifications SET status = '{N.SENT}', twilio_sid = :sid, last_error = NULL, "
        "updated_at = :now WHERE id = :id"), {"sid": sent.sid, "now": now, "id": message.id})
    session.commit()
    return N.SENT


def stranded(session: Session, now: datetime) -> list[int]:
    """Messages nobody is working on (see `requeue_stranded`). A message Twilio took just
    before its sender died goes twice: the only duplicate possible."""
    # Past the longest backoff (10 min) a 'retrying' message has lost its retry.
    return requeue_stranded(session, "notifications", now, timedelta(minutes=15))


def waiting(session: Session, before: datetime, limit: int = 500) -> list[int]:
    """Messages waiting for a send (queued, or for a retry) since before `before`."""
    ids = session.execute(text(f"""
SELECT id FROM notifications
 WHERE status IN {sql_list(WAITING)} AND updated_at < :before
 ORDER BY id LIMIT :limit"""), {"before": before, "limit": limit}).scalars().all()
    session.commit()
    return list(ids)


def give_up(session: Session, notification_id: int, error: str, now: datetime) -> None:
    """Retries are exhausted: a permanent, visible failure."""
    _set(session, notification_id, N.FAILED, error, now, only_unfinished=True)


def record_status(session: Session, twilio_sid: str, status: str, error_code: str | None,
                  now: datetime) -> bool:
    """A Twilio status callback; returns whether it matched a message of ours."""
    state = CALLBACK_STATES.get(status)
    if state is None:
        return False
    # Callbacks can arrive out of order: a late 'sent' must not undo 'delivered'.
    found = session.execute(text(
        "UPDATE notifications SET status = :s, updated_at = :now, "
        "last_error = COALESCE(:err, last_error) WHERE twilio_sid = :sid "
        f"AND (:s <> '{N.SENT}' OR status IN {sql_list((N.SENDING, N.SENT))}) RETURNING id"),
        {"s": state, "now": now, "err": f"Twilio error {error_code}" if error_code else None,
         "sid": twilio_sid}).first()
    session.commit()
    return found is not None


def _set(session: Session, notification_id: int, status: str, error: str, now: datetime,
         only_unfinished: bool = False) -> None:
    guard = (f" AND status NOT IN {sql_list((N.SENT, N.DELIVERED, N.UNDELIVERED))}"
             if only_unfinished else "")
    session.execute(text(
        "UPDATE notifications SET status = :s, last_error = :e, updated_at = :now "
        f"WHERE id = :id{guard}"), {"s": status, "e": error[:1000], "now": now,
                                     "id": notification_id})
    session.commit()
