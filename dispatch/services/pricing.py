"""Prices: what a job will likely cost the requester, and what its worker would earn.

An estimate is a range. From the category's price list (the defaults): call-out + the
category's typical time on site (which the catalogue learns, `catalog.learn_typical_minutes`)
x its hourly rate range, + the urgent surcharge for an urgent job. Once an area has enough
history for the category (`HISTORY_MIN_JOBS` completed jobs with a final amount within
`HISTORY_WINDOW`), the range is their 25th to 75th percentile instead, and says how many jobs
it rests on.

The area is a geohash cell of `AREA_GEOHASH_CHARS` characters, computed by PostGIS
(`ST_GeoHash`): 5 characters is a cell about 4.9 km tall and 3.9 km wide in San Francisco.
Chosen over a metric grid because a geohash is a plain text key that PostgreSQL indexes as
an expression (`ix_jobs_priced_area`), that needs no projection, and that analysts and other
tools read the same way; and cells of a few km hold enough jobs in 90 days for a percentile
while prices within them are alike. A place near a cell's edge is priced from its own cell
only: a known, accepted coarseness.

Urgent jobs' final amounts carry the surcharge. The history is read with the category's
surcharge taken off urgent jobs' amounts, so urgent and scheduled jobs of an area pool into
one range, and the surcharge is added back for an urgent estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.models import Category, Job, Urgency
from dispatch.domain.states import DONE_STATUSES, sql_in
from dispatch.services.catalog import bookable_category
from dispatch.services.context import settings

HISTORY_MIN_JOBS = 20
HISTORY_WINDOW = timedelta(days=90)
AREA_GEOHASH_CHARS = 5
# Estimates are rounded to whole major units ($95, not $94.67): a range is a guide.
ROUND_TO_CENTS = 100

Basis = Literal["default", "history"]


@dataclass(frozen=True)
class Estimate:
    low_cents: int
    high_cents: int
    currency: str
    call_out_cents: int
    surcharge_cents: int  # included in the range; 0 for a scheduled job
    basis: Basis  # 'history': percentiles of the area's completed jobs; 'default': price list
    jobs_counted: int  # the completed jobs the history range rests on (0 for defaults)


_HISTORY_SQL = text(f"""
SELECT count(*) AS n,
       percentile_cont(0.25) WITHIN GROUP (ORDER BY amount) AS p25,
       percentile_cont(0.75) WITHIN GROUP (ORDER BY amount) AS p75
  FROM (SELECT j.final_amount_cents
               - CASE WHEN j.urgency = 'urgent' THEN :surcharge ELSE 0 END AS amount
          FROM jobs j
         WHERE j.category_id = :category_id
           AND j.final_amount_cents IS NOT NULL
           AND ST_GeoHash(CAST(j.location AS geometry), {AREA_GEOHASH_CHARS})
               = ST_GeoHash(ST_SetSRID(ST_MakePoint(:lng, :lat), 4326), {AREA_GEOHASH_CHARS})
           AND j.completed_at >= :since
           AND j.status IN {sql_in(DONE_STATUSES)}) priced
""")


def _rounded(cents: float) -> int:
    """To whole major units, halves up (Python's round() would take $242.50 to $242)."""
    return max(0, math.floor(cents / ROUND_TO_CENTS + 0.5) * ROUND_TO_CENTS)


def surcharge_for(category: Category, urgency: str) -> int:
    return category.urgent_surcharge_cents if urgency == Urgency.URGENT.value else 0


def default_range(category: Category, urgency: str) -> tuple[int, int]:
    """The price list's range: call-out + typical hours on site x hourly rates (+ surcharge)."""
    hours = category.typical_minutes / 60
    extra = category.call_out_cents + surcharge_for(category, urgency)
    return (_rounded(extra + hours * category.hourly_low_cents),
            _rounded(extra + hours * category.hourly_high_cents))


def history_range(session: Session, category: Category, urgency: str, lat: float,
                  lng: float, now: datetime) -> tuple[int, int, int]:
    """(p25, p75, jobs counted) of the area's completed jobs of the category over the last
    `HISTORY_WINDOW`; the percentiles are 0 when no job counts."""
    row = session.execute(_HISTORY_SQL, {
        "category_id": category.id, "surcharge": category.urgent_surcharge_cents,
        "lat": lat, "lng": lng, "since": now - HISTORY_WINDOW}).one()
    if not row.n:
        return 0, 0, 0
    surcharge = surcharge_for(category, urgency)
    return _rounded(row.p25 + surcharge), _rounded(row.p75 + surcharge), int(row.n)


def estimate(session: Session, category_id: int, urgency: str, lat: float | None,
             lng: float | None, now: datetime | None = None) -> Estimate:
    """The range to show before booking. Without a place there is no area: the defaults."""
    category = bookable_category(session, category_id)
    surcharge = surcharge_for(category, urgency)
    currency = settings().currency
    if lat is not None and lng is not None:
        low, high, counted = history_range(session, category, urgency, lat, lng,
                                           now or clock.now())
        if counted >= HISTORY_MIN_JOBS:
            return Estimate(low, high, currency, category.call_out_cents, surcharge,
                            "history", counted)
    low, high = default_range(category, urgency)
    return Estimate(low, high, currency, category.call_out_cents, surcharge, "default", 0)


def less_fee(cents: int, category: Category) -> int:
    """What is left of an amount once the platform's fee is taken (the fee rounds up, so the
    worker is never shown more than they get)."""
    fee = -(-cents * category.platform_fee_percent // 100)
    return cents - fee


def worker_earnings(priced: Estimate | tuple[int, int], category: Category) -> tuple[int, int]:
    """The worker's share of an estimate (or of a (low, high) range kept on a job)."""
    low, high = ((priced.low_cents, priced.high_cents) if isinstance(priced, Estimate)
                 else priced)
    return less_fee(low, category), less_fee(high, category)


def job_earnings(job: Job) -> tuple[int, int]:
    """What the worker offered `job` would earn: its estimate fixed at booking less the fee;
    a job booked without one (a manager's batch row) goes by the category's price list."""
    if job.estimate_low_cents is not None and job.estimate_high_cents is not None:
        return worker_earnings((job.estimate_low_cents, job.estimate_high_cents), job.category)
    return worker_earnings(default_range(job.category, job.urgency), job.category)
