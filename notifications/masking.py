"""Number masking on our own pool of Twilio numbers (Twilio Proxy is closed to new
customers): each assigned job gets a masked session that pairs its resident and worker on
one pool number, chosen so that neither of them holds that number in any other open
session. Calls and texts are then routed on the pair (caller's real number, pool number),
so nobody ever sees the other's real number.

This module knows jobs only by id and people by id and number; it owns the tables
pool_numbers, masked_sessions, masked_participants, masked_messages, sms_opt_outs and
twilio_requests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

ROLES = ("resident", "worker")


class PoolExhausted(Exception):
    """No pool number is free for both participants: the job goes on without masking."""


@dataclass(frozen=True)
class Participant:
    role: str  # 'resident' or 'worker'
    user_id: int
    number: str  # E.164


@dataclass(frozen=True)
class Route:
    session_id: int
    job_id: int
    caller_role: str
    pool_number: str
    other_number: str


def sync_pool(session: Session, numbers: Iterable[str]) -> int:
    """Make the configured numbers active pool numbers (numbers no longer configured are
    retired, never deleted: closed sessions still point at them)."""
    wanted = sorted(set(numbers))
    for number in wanted:
        session.execute(text(
            "INSERT INTO pool_numbers (e164) VALUES (:n) "
            "ON CONFLICT (e164) DO UPDATE SET active = true"), {"n": number})
    session.execute(text("UPDATE pool_numbers SET active = false WHERE NOT (e164 = ANY(:n))"),
                    {"n": wanted})
    return len(wanted)


# A number is free for a pair when neither of them holds it in a session that still matters:
# one whose job has ended (`close_after` set, its grace period running) gives way. Untouched
# numbers come first, then those held only by ended sessions, least loaded first.
_PICK = text("""
SELECT p.id, p.e164
  FROM pool_numbers p
 WHERE p.active AND p.sms AND p.voice
   AND NOT EXISTS (SELECT 1 FROM masked_participants m
                     JOIN masked_sessions s ON s.id = m.session_id
                    WHERE m.open AND m.pool_number_id = p.id AND m.number = ANY(:numbers)
                      AND s.close_after IS NULL)
 ORDER BY EXISTS (SELECT 1 FROM masked_participants m
                   WHERE m.open AND m.pool_number_id = p.id AND m.number = ANY(:numbers)),
          (SELECT count(*) FROM masked_participants m
            WHERE m.open AND m.pool_number_id = p.id), p.id
 LIMIT 1
""")
# The ended sessions that hold the picked number for one of the pair: closed now, so the
# number passes to the job that needs it.
_GIVE_WAY = text("""
UPDATE masked_sessions s SET closed_at = :now
 WHERE s.closed_at IS NULL AND s.close_after IS NOT NULL
   AND s.id IN (SELECT m.session_id FROM masked_participants m
                 WHERE m.open AND m.pool_number_id = :p AND m.number = ANY(:numbers))
RETURNING s.id
""")


def open_session(session: Session, job_id: int, people: tuple[Participant, Participant],
                 now: datetime, attempts: int = 5) -> tuple[int, str]:
    """Pair the job's two participants on a pool number; returns (session id, pool number).
    A job that has ended never keeps a number from one that is starting: its session, in
    its grace period, gives the number way (a busy worker would otherwise drain the pool).

    Concurrent openings can pick the same number for a shared participant; the unique index
    refuses the second, which then picks again. The caller commits."""
    existing = session.execute(text(
        "SELECT s.id, p.e164 FROM masked_sessions s JOIN pool_numbers p "
        "ON p.id = s.pool_number_id WHERE s.job_id = :j AND s.closed_at IS NULL"),
        {"j": job_id}).first()
    if existing is not None:
        return int(existing.id), str(existing.e164)
    numbers = [p.number for p in people]
    for _ in range(attempts):
        pick = session.execute(_PICK, {"numbers": numbers}).first()
        if pick is None:
            raise PoolExhausted(f"no pool number is free for job {job_id}")
        savepoint = session.begin_nested()
        try:
            _free_numbers(session, list(session.execute(
                _GIVE_WAY, {"p": pick.id, "numbers": numbers, "now": now}).scalars()))
            session_id = session.execute(text(
                "INSERT INTO masked_sessions (job_id, pool_number_id, opened_at) "
                "VALUES (:j, :p, :now) RETURNING id"),
                {"j": job_id, "p": pick.id, "now": now}).scalar_one()
            for person in people:
                session.execute(text(
                    "INSERT INTO masked_participants (session_id, role, user_id, number, "
                    "pool_number_id) VALUES (:s, :r, :u, :n, :p)"),
                    {"s": session_id, "r": person.role, "u": person.user_id,
                     "n": person.number, "p": pick.id})
            savepoint.commit()
            return int(session_id), str(pick.e164)
        except IntegrityError:
            savepoint.rollback()
    raise PoolExhausted(f"pool numbers kept being taken while opening job {job_id}")


def schedule_close(session: Session, job_id: int, at: datetime) -> None:
    """The job ended: its session routes nowhere from `at` on."""
    session.execute(text(
        "UPDATE masked_sessions SET close_after = :at "
        "WHERE job_id = :j AND closed_at IS NULL AND (close_after IS NULL OR close_after > :at)"),
        {"j": job_id, "at": at})


def close_for_job(session: Session, job_id: int, now: datetime) -> None:
    """Close the job's session now: its worker was replaced, and the next worker's accept
    must open a session of their own instead of finding this one."""
    closed = session.execute(text(
        "UPDATE masked_sessions SET closed_at = :now "
        "WHERE job_id = :j AND closed_at IS NULL RETURNING id"), {"j": job_id, "now": now}
    ).scalars().all()
    _free_numbers(session, list(closed))


def close_due(session: Session, now: datetime) -> int:
    """Close sessions whose time has come and free their pool numbers for these people."""
    closed = session.execute(text(
        "UPDATE masked_sessions SET closed_at = :now "
        "WHERE closed_at IS NULL AND close_after <= :now RETURNING id"), {"now": now}
    ).scalars().all()
    _free_numbers(session, list(closed))
    return len(closed)


def _free_numbers(session: Session, closed_session_ids: list[int]) -> None:
    """The participants of closed sessions no longer hold their pool number (the open-pair
    unique index frees it for these people's next job)."""
    if closed_session_ids:
        session.execute(text("UPDATE masked_participants SET open = false "
                             "WHERE session_id = ANY(:ids)"), {"ids": closed_session_ids})


def route(session: Session, caller: str, pool_number: str, now: datetime) -> Route | None:
    """Where a call or text from `caller` to `pool_number` goes, if anywhere."""
    row = session.execute(text("""
SELECT s.id AS session_id, s.job_id, me.role, p.e164 AS pool_number, other.number AS other
  FROM masked_participants me
  JOIN pool_numbers p ON p.id = me.pool_number_id
  JOIN masked_sessions s ON s.id = me.session_id
  JOIN masked_participants other ON other.session_id = s.id AND other.role <> me.role
 WHERE me.open AND me.number = :caller AND p.e164 = :pool
   AND s.closed_at IS NULL AND (s.close_after IS NULL OR s.close_after > :now)
"""), {"caller": caller, "pool": pool_number, "now": now}).first()
    if row is None:
        return None
    return Route(session_id=int(row.session_id), job_id=int(row.job_id), caller_role=row.role,
                 pool_number=row.pool_number, other_number=row.other)


def pool_number_for(session: Session, job_id: int, now: datetime) -> str | None:
    """The number a job's parties call or text to reach each other, while it routes."""
    return session.execute(text(
        "SELECT p.e164 FROM masked_sessions s JOIN pool_numbers p ON p.id = s.pool_number_id "
        "WHERE s.job_id = :j AND s.closed_at IS NULL "
        "AND (s.close_after IS NULL OR s.close_after > :now)"),
        {"j": job_id, "now": now}).scalar_one_or_none()


def log_message(session: Session, found: Route, kind: str, now: datetime,
                twilio_sid: str | None, body: str | None, media_count: int) -> None:
    session.execute(text(
        "INSERT INTO masked_messages (session_id, kind, from_role, at, twilio_sid, body, "
        "media_count) VALUES (:s, :k, :r, :at, :sid, :b, :m)"),
        {"s": found.session_id, "k": kind, "r": found.caller_role, "at": now,
         "sid": twilio_sid, "b": body, "m": media_count})


def first_time(session: Session, sid: str, now: datetime) -> bool:
    """Whether this inbound text or call (its MessageSid or CallSid) is seen for the first
    time; the caller's transaction records it. A concurrent twin waits on the primary key
    until this transaction ends, then sees it (or, if it rolled back, takes its place)."""
    return session.execute(text(
        "INSERT INTO twilio_requests (sid, at) VALUES (:sid, :at) "
        "ON CONFLICT (sid) DO NOTHING RETURNING sid"), {"sid": sid, "at": now}
    ).first() is not None


def opt_out(session: Session, number: str, now: datetime) -> None:
    session.execute(text("INSERT INTO sms_opt_outs (number, at) VALUES (:n, :at) "
                         "ON CONFLICT (number) DO NOTHING"), {"n": number, "at": now})


def opt_in(session: Session, number: str) -> None:
    session.execute(text("DELETE FROM sms_opt_outs WHERE number = :n"), {"n": number})


def opted_out(session: Session, number: str) -> bool:
    return session.execute(text("SELECT 1 FROM sms_opt_outs WHERE number = :n"),
                           {"n": number}).first() is not None
