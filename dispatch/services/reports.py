"""The SLA report owners ask property managers for: per property and month, how many jobs,
how many arrived within the promise, how fast someone accepted and arrived."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from dispatch.db.models import User
from dispatch.domain.csvfiles import spreadsheet_safe
from dispatch.domain.errors import MalformedInput, invalid
from dispatch.domain.states import (
    COMING_STATUSES,
    FINAL_JOB_STATUSES,
    JobStatus,
    OfferStatus,
    PaymentStatus,
    sql_in,
)
from dispatch.services.portfolio import organization_of

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

# Statuses of a job someone is still meant to reach (nobody has arrived yet).
_NOT_YET_THERE = frozenset({JobStatus.REQUESTED, JobStatus.DISPATCHING}) | COMING_STATUSES
# A request not sent to anyone this long after it was made was dropped on the way.
NEVER_SENT_MINUTES = 5

# A job's outcome for the rate: on time (arrived by its promise), late (arrived after it,
# or not arrived with the promise passed, or unfilled), or not yet due (still open, promise
# ahead). A job called off before its promise passed is none of these: nobody was late.
_ENDED_UNSERVED = sql_in((JobStatus.UNFILLED,))
_CALLED_OFF = sql_in((JobStatus.CANCELLED,))
_LATE = f"""(j.arrived_at > j.arrive_by
             OR (j.arrived_at IS NULL AND (j.status IN {_ENDED_UNSERVED}
                 OR (j.arrive_by <= :now AND j.status NOT IN {_CALLED_OFF})))
             OR (j.arrived_at IS NULL AND j.status IN {_CALLED_OFF}
                 AND j.ended_at > j.arrive_by))"""
_OPEN = f"""(j.arrived_at IS NULL AND j.arrive_by > :now
             AND j.status NOT IN {sql_in(FINAL_JOB_STATUSES)})"""

_SLA_SQL = text(f"""
SELECT p.id AS property_id, p.name AS property,
       to_char(j.requested_at AT TIME ZONE :tz, 'YYYY-MM') AS month,
       count(*) AS jobs,
       count(j.arrived_at) AS arrived,
       count(*) FILTER (WHERE j.arrived_at <= j.arrive_by) AS on_time,
       count(*) FILTER (WHERE {_LATE}) AS late,
       count(*) FILTER (WHERE {_OPEN}) AS open,
       count(*) FILTER (WHERE j.status IN {_ENDED_UNSERVED}) AS unfilled,
       count(*) FILTER (WHERE j.status IN {_CALLED_OFF}) AS cancelled,
       sum(j.budget_cap_cents) FILTER (WHERE j.status NOT IN {_CALLED_OFF})
           AS budget_caps_cents,
       sum(COALESCE(CASE WHEN jp.status <> '{PaymentStatus.HELD.value}'
                         THEN jp.captured_cents END, ms.captured_cents)) AS cost_cents,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY EXTRACT(EPOCH FROM j.assigned_at - j.requested_at)) / 60 AS median_accept_min,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY EXTRACT(EPOCH FROM j.arrived_at - j.requested_at))
           FILTER (WHERE j.urgency = 'urgent') / 60 AS median_arrival_min
  FROM jobs j
  JOIN units u ON u.id = j.unit_id
  JOIN properties p ON p.id = u.property_id
  LEFT JOIN job_payments jp ON jp.job_id = j.id
  LEFT JOIN (SELECT job_id, sum(captured_cents) AS captured_cents FROM job_milestones
              WHERE released_at IS NOT NULL OR cancelled_at IS NOT NULL
              GROUP BY job_id) ms ON ms.job_id = j.id
 WHERE j.org_id = :org AND j.requested_at >= :start AND j.requested_at < :end
 GROUP BY p.id, p.name, month
 ORDER BY month, p.name
""")

# Jobs nobody will move on by themselves: looking with nobody asked, or still not arrived
# with the promise passed. Each with why, for the manager to chase.
_STUCK_SQL = text(f"""
SELECT * FROM (
    SELECT j.id, j.status, j.urgency, j.arrive_by, j.window_start, j.window_end,
           p.name AS property, u.label AS unit, c.name AS category,
           j.arrive_by <= :now AS overdue,
           j.status = '{JobStatus.REQUESTED.value}'
               AND j.requested_at <= :now - make_interval(mins => :never_sent_min)
               AS never_sent,
           j.status = '{JobStatus.DISPATCHING.value}' AND NOT EXISTS (
               SELECT 1 FROM offers o WHERE o.job_id = j.id
                  AND o.status = '{OfferStatus.PENDING.value}' AND o.expires_at > :now)
               AS nobody_asked
      FROM jobs j
      JOIN units u ON u.id = j.unit_id
      JOIN properties p ON p.id = u.property_id
      JOIN categories c ON c.id = j.category_id
     WHERE j.org_id = :org AND j.requested_at >= :start AND j.requested_at < :end
       AND j.arrived_at IS NULL AND j.status IN {sql_in(_NOT_YET_THERE)}
) AS open_jobs
 WHERE overdue OR never_sent OR nobody_asked
 ORDER BY arrive_by, id
""")



def month_range(month: str | None, now: datetime, tz: str) -> tuple[datetime, datetime]:
    """The month's bounds in the service area's time zone (an evening job on the 31st
    belongs to that month, not the next)."""
    zone = ZoneInfo(tz)
    if month is None:
        month = now.astimezone(zone).strftime("%Y-%m")
    found = MONTH.match(month)
    if found is None:
        raise invalid("month", "month.format", MalformedInput)
    year, mon = int(found.group(1)), int(found.group(2))
    if not 2000 <= year <= 2999:
        raise invalid("month", "month.range", MalformedInput)
    start = datetime(year, mon, 1, tzinfo=zone)
    end = datetime(year + (mon == 12), 1 if mon == 12 else mon + 1, 1, tzinfo=zone)
    return start, end


@dataclass(frozen=True)
class SlaRow:
    """One property's month (percentages and minutes rounded to one decimal)."""

    property_id: int
    property: str
    month: str
    jobs: int
    arrived: int
    on_time: int
    late: int
    open: int
    unfilled: int
    cancelled: int
    on_time_pct: float | None
    median_accept_min: float | None
    median_arrival_min: float | None
    budget_caps_total: float | None
    # What the row's jobs cost the organization: the sum captured from it (charges and
    # cancellation fees) for jobs whose hold has ended, and for jobs paid in stages what
    # their ended stages captured; None while every hold is still open (nothing charged
    # yet, the amount not known).
    cost_total: float | None = None


def sla(session: Session, user: User, start: datetime, end: datetime, tz: str,
        now: datetime) -> list[SlaRow]:
    """On time = arrived by the promised time (an urgent job's promise, a booked window's
    end). The share is on time over due: due means arrived, or the promise passed without
    an arrival (those are late, and so are unfilled jobs). Jobs still open with their
    promise ahead are counted as open, not left out and not counted for or against; a job
    called off before its promise is in `cancelled` only. Median arrival is over urgent
    jobs only: for a window booked days ahead the wait says nothing about response."""
    org = organization_of(session, user)
    rows = session.execute(_SLA_SQL, {"org": org.id, "start": start, "end": end, "tz": tz,
                                      "now": now}).all()
    return [SlaRow(
        property_id=r.property_id, property=r.property, month=r.month, jobs=r.jobs,
        arrived=r.arrived, on_time=r.on_time, late=r.late, open=r.open, unfilled=r.unfilled,
        cancelled=r.cancelled,
        on_time_pct=(round(100 * r.on_time / (r.on_time + r.late), 1)
                     if r.on_time + r.late else None),
        budget_caps_total=(None if r.budget_caps_cents is None
                           else round(r.budget_caps_cents / 100, 2)),
        cost_total=None if r.cost_cents is None else round(r.cost_cents / 100, 2),
        median_accept_min=_round(r.median_accept_min),
        median_arrival_min=_round(r.median_arrival_min)) for r in rows]


@dataclass(frozen=True)
class StuckJob:
    """An open job of the month that needs a person: why, in words for the manager."""

    job_id: int
    property: str
    unit: str
    category: str
    status: str
    urgency: str
    arrive_by: datetime
    window_start: datetime | None
    window_end: datetime | None
    reason: str


def stuck(session: Session, user: User, start: datetime, end: datetime,
          now: datetime) -> list[StuckJob]:
    """Jobs the report's counts alone would hide: past their promise with nobody there yet,
    looking for a worker with nobody being asked, or never sent to anyone."""
    org = organization_of(session, user)
    rows = session.execute(_STUCK_SQL, {"org": org.id, "start": start, "end": end,
                                        "now": now, "never_sent_min": NEVER_SENT_MINUTES})
    return [StuckJob(job_id=r.id, property=r.property, unit=r.unit, category=r.category,
                     status=r.status, urgency=r.urgency, arrive_by=r.arrive_by,
                     window_start=r.window_start, window_end=r.window_end,
                     reason=_why_stuck(r.overdue, r.never_sent, r.nobody_asked))
            for r in rows]


def _why_stuck(overdue: bool, never_sent: bool, nobody_asked: bool) -> str:
    parts = []
    if overdue:
        parts.append("past its promised time and nobody has arrived")
    if never_sent:
        parts.append("never sent to any worker")
    if nobody_asked:
        parts.append("no worker is being asked right now")
    return "; ".join(parts).capitalize()


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def to_csv(rows: list[SlaRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["month", "property", "jobs", "arrived", "on_time", "on_time_pct",
                     "unfilled", "cancelled", "median_accept_min", "median_arrival_min",
                     "budget_caps_total", "late", "open", "cost_total"])
    for r in rows:
        writer.writerow(spreadsheet_safe([
            r.month, r.property, r.jobs, r.arrived, r.on_time, r.on_time_pct, r.unfilled,
            r.cancelled, r.median_accept_min, r.median_arrival_min, r.budget_caps_total,
            r.late, r.open, r.cost_total]))
    return out.getvalue()
