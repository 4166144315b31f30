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
from dispatch.domain.errors import MalformedInput, invalid
from dispatch.services.portfolio import organization_of

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

_SLA_SQL = text("""
SELECT p.id AS property_id, p.name AS property,
       to_char(j.requested_at AT TIME ZONE :tz, 'YYYY-MM') AS month,
       count(*) AS jobs,
       count(j.arrived_at) AS arrived,
       count(*) FILTER (WHERE j.arrived_at <= j.arrive_by) AS on_time,
       count(*) FILTER (WHERE j.arrived_at IS NOT NULL OR j.arrive_by <= :now
                        OR j.status IN ('unfilled', 'cancelled')) AS decided,
       count(*) FILTER (WHERE j.status = 'unfilled') AS unfilled,
       count(*) FILTER (WHERE j.status = 'cancelled') AS cancelled,
       sum(j.budget_cap_cents) FILTER (WHERE j.status <> 'cancelled') AS budget_caps_cents,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY EXTRACT(EPOCH FROM j.assigned_at - j.requested_at)) / 60 AS median_accept_min,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY EXTRACT(EPOCH FROM j.arrived_at - j.requested_at))
           FILTER (WHERE j.urgency = 'urgent') / 60 AS median_arrival_min
  FROM jobs j
  JOIN units u ON u.id = j.unit_id
  JOIN properties p ON p.id = u.property_id
 WHERE j.org_id = :org AND j.requested_at >= :start AND j.requested_at < :end
 GROUP BY p.id, p.name, month
 ORDER BY month, p.name
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
    unfilled: int
    cancelled: int
    on_time_pct: float | None
    median_accept_min: float | None
    median_arrival_min: float | None
    budget_caps_total: float | None


def sla(session: Session, user: User, start: datetime, end: datetime, tz: str,
        now: datetime) -> list[SlaRow]:
    """On time = arrived by the promised time (an urgent job's promise, a booked window's
    end). Median arrival is over urgent jobs only: for a window booked days ahead the wait
    says nothing about response. The share is over jobs whose outcome is
    known (arrived, promise passed, unfilled or cancelled): a job still on its way does not
    count against it yet, an unserved one does."""
    org = organization_of(session, user)
    rows = session.execute(_SLA_SQL, {"org": org.id, "start": start, "end": end, "tz": tz,
                                      "now": now}).all()
    return [SlaRow(
        property_id=r.property_id, property=r.property, month=r.month, jobs=r.jobs,
        arrived=r.arrived, on_time=r.on_time, unfilled=r.unfilled, cancelled=r.cancelled,
        on_time_pct=round(100 * r.on_time / r.decided, 1) if r.decided else None,
        budget_caps_total=(None if r.budget_caps_cents is None
                           else round(r.budget_caps_cents / 100, 2)),
        median_accept_min=_round(r.median_accept_min),
        median_arrival_min=_round(r.median_arrival_min)) for r in rows]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def to_csv(rows: list[SlaRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["month", "property", "jobs", "arrived", "on_time", "on_time_pct",
                     "unfilled", "cancelled", "median_accept_min", "median_arrival_min",
                     "budget_caps_total"])
    for r in rows:
        writer.writerow([r.month, r.property, r.jobs, r.arrived, r.on_time, r.on_time_pct,
                         r.unfilled, r.cancelled, r.median_accept_min, r.median_arrival_min,
                         r.budget_caps_total])
    return out.getvalue()
