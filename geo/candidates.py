"""Candidate search: one PostGIS statement finds the workers who can reach a point in time.

Contract with the schema (owned by `dispatch`'s migrations):
- `worker_skills(worker_id, category_id, verified, available, location geography, location_at)`
  is the match index: one row per worker and bookable category, with the worker's position and
  availability copied in by a trigger, and a partial GiST index on `(category_id, location)`
  `WHERE available AND verified`.
- `workers(user_id, travel_mode, service_radius_m, reputation, last_assigned_at, availability)`.
- For workers finishing a job (`find_finishing`): `jobs(id, worker_id, category_id, location,
  status, urgency, queued_behind_job_id, arrived_at, estimated_arrival)` with a partial GiST
  index over the places of jobs that have a worker on them, and
  `categories(id, typical_minutes)`.

Plan shape (bench/match.py measures it): the KNN `ORDER BY location <-> point LIMIT pool` runs
alone in a materialized CTE so the planner keeps the index scan; freshness, radius, exclusion
and the ETA deadline are applied outside it. If the pool was full and nobody qualified, the
pool grows. Distances are the geography KNN operator's own (sphere, within 0.5% of the
spheroid), far below the uncertainty of the circuity factor, and half the cost of ST_Distance.

Known approximation: only the `pool` nearest workers are ranked, so a fast driver farther
out than the pool can lose to a slower walker inside it (the pool grows only when nobody in
it can make the deadline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from geo.eta import EtaModel, TravelMode

MATCH_INDEX_NAME = "ix_worker_skills_match"

_POINT = "ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography"

# The ranking over a set of nearby rows `nearest(worker_id, location_at, distance_m)`.
_RANKED = """
scored AS (
    SELECT n.worker_id, n.distance_m, w.travel_mode, w.reputation,
           :startup_s + n.distance_m * :circuity / (CASE w.travel_mode
                WHEN 'walk' THEN :walk_mps WHEN 'bike' THEN :bike_mps ELSE :car_mps END)
               AS eta_s,
           LEAST(EXTRACT(EPOCH FROM
                   (:now - COALESCE(w.last_assigned_at, :now - interval '8 hours'))),
                 28800) AS idle_s
    FROM nearest n
    JOIN workers w ON w.user_id = n.worker_id
    WHERE n.location_at >= :fresh_after
      AND n.distance_m <= w.service_radius_m
      AND NOT (n.worker_id = ANY(CAST(:excluded AS integer[])))
)
SELECT worker_id, distance_m, travel_mode, eta_s,
       eta_s + :reputation_weight * (1 - reputation) * 3600 - :fairness_weight * idle_s AS score,
       min(eta_s) OVER () AS earliest_eta_s,
       (SELECT count(*) FROM nearest) AS pool_rows
FROM scored
ORDER BY (eta_s <= :max_eta_s) DESC, score
LIMIT :limit
"""

CANDIDATE_SQL = text(
    f"""
WITH nearest AS MATERIALIZED (
    SELECT s.worker_id, s.location_at, s.location <-> {_POINT} AS distance_m
    FROM worker_skills s
    WHERE s.category_id = CAST(:category_id AS integer)
      AND s.available AND s.verified
    ORDER BY s.location <-> {_POINT}
    LIMIT :pool
), {_RANKED}"""
)

# The same ranking over a named set of workers (an organization's preferred contractors):
# a small set is read by key, not by walking the KNN index until enough of them turn up.
WITHIN_SQL = text(
    f"""
WITH nearest AS MATERIALIZED (
    SELECT s.worker_id, s.location_at, s.location <-> {_POINT} AS distance_m
    FROM worker_skills s
    WHERE s.worker_id = ANY(CAST(:within AS integer[]))
      AND s.category_id = CAST(:category_id AS integer)
      AND s.available AND s.verified
), {_RANKED}"""
)


@dataclass(frozen=True)
class Candidate:
    worker_id: int
    distance_m: float
    travel_mode: TravelMode
    eta_s: float
    score: float
    # A busy worker finishing this job nearby: the job would wait behind it, and `eta_s`
    # includes the wait. None for a free worker.
    queued_behind_job_id: int | None = None


@dataclass(frozen=True)
class CandidateSearch:
    """Who can make it (best first) and, when nobody can, the earliest anyone could arrive."""

    candidates: list[Candidate]
    earliest_arrival: datetime | None


@dataclass(frozen=True)
class MatchWeights:
    reputation: float = 0.2
    fairness: float = 0.02


@dataclass(frozen=True)
class MatchRequest:
    """Who is needed where, by when, under which ETA model and ranking weights."""

    category_id: int
    lat: float
    lng: float
    now: datetime
    deadline: datetime
    eta: EtaModel
    max_location_age: timedelta
    weights: MatchWeights = field(default_factory=MatchWeights)
    excluded_worker_ids: Sequence[int] = ()
    limit: int = 3

    def params(self, pool: int) -> dict[str, object]:
        """The exact parameters `CANDIDATE_SQL` runs with (shared by search, tests, bench)."""
        return {
            "category_id": self.category_id,
            "lat": self.lat,
            "lng": self.lng,
            "now": self.now,
            "fresh_after": self.now - self.max_location_age,
            "max_eta_s": self.max_eta_s,
            "startup_s": self.eta.startup_s,
            "circuity": self.eta.circuity,
            "walk_mps": self.eta.speed_mps(TravelMode.WALK),
            "bike_mps": self.eta.speed_mps(TravelMode.BIKE),
            "car_mps": self.eta.speed_mps(TravelMode.CAR),
            "reputation_weight": self.weights.reputation,
            "fairness_weight": self.weights.fairness,
            "excluded": list(self.excluded_worker_ids),
            "limit": self.limit,
            "pool": pool,
        }

    @property
    def max_eta_s(self) -> float:
        return (self.deadline - self.now).total_seconds()


def find_candidates(conn: Connection | Session, request: MatchRequest, pool: int = 32,
                    max_pool: int = 4096,
                    within: Sequence[int] | None = None) -> CandidateSearch:
    """Rank the workers who can be at the request's point before its deadline.

    Stale, out-of-radius or excluded workers can fill the KNN pool; when that leaves nobody
    who can make it, the pool grows (x4) so "nobody can come" is never an artefact of the pool.
    """
    while True:
        if within is not None:  # a fixed set: no pool to grow
            rows = conn.execute(WITHIN_SQL, {**request.params(pool), "within": list(within)}).all()
            feasible = [r for r in rows if r.eta_s <= request.max_eta_s]
            break
        rows = conn.execute(CANDIDATE_SQL, request.params(pool)).all()
        feasible = [r for r in rows if r.eta_s <= request.max_eta_s]
        if feasible or pool >= max_pool:
            break
        pool_full = rows[0].pool_rows >= pool if rows else _pool_was_full(conn, request, pool)
        if not pool_full:
            break
        pool *= 4
    candidates = [
        Candidate(
            worker_id=r.worker_id,
            distance_m=float(r.distance_m),
            travel_mode=TravelMode(r.travel_mode),
            eta_s=float(r.eta_s),
            score=float(r.score),
        )
        for r in feasible
    ]
    earliest = None
    if not candidates and rows:  # the minimum over every eligible row, not just those returned
        earliest = request.now + timedelta(seconds=float(rows[0].earliest_eta_s))
    return CandidateSearch(candidates=candidates, earliest_arrival=earliest)


_POOL_COUNT_SQL = text(
    f"""
SELECT count(*) FROM (
    SELECT 1 FROM worker_skills s
    WHERE s.category_id = CAST(:category_id AS integer) AND s.available AND s.verified
    ORDER BY s.location <-> {_POINT}
    LIMIT :pool
) k
"""
)


def _pool_was_full(conn: Connection | Session, request: MatchRequest, pool: int) -> bool:
    """When every pooled row was filtered out the main query returns nothing; ask directly."""
    count = conn.execute(
        _POOL_COUNT_SQL,
        {"category_id": request.category_id, "lat": request.lat, "lng": request.lng,
         "pool": pool},
    ).scalar_one()
    return count >= pool


# Busy workers whose current job is near the point, when they should come free and how long
# the trip from that job's place takes. The job they are on is where they will be; it ends
# at arrival + the category's typical minutes (never sooner than :min_wait_s from now, since
# one running late is still there). A worker holds at most one queued job.
FINISHING_SQL = text(
    f"""
WITH current_jobs AS MATERIALIZED (
    SELECT j.id AS job_id, j.worker_id, j.location <-> {_POINT} AS distance_m,
           GREATEST(:min_wait_s, EXTRACT(EPOCH FROM (
               COALESCE(j.arrived_at, j.estimated_arrival, :now)
               + make_interval(mins => c.typical_minutes) - :now))) AS wait_s
    FROM jobs j
    JOIN categories c ON c.id = j.category_id
    WHERE j.status IN ('assigned', 'en_route', 'arrived', 'in_progress')
      AND j.worker_id IS NOT NULL
      AND (j.status <> 'assigned' OR (j.urgency = 'urgent' AND j.queued_behind_job_id IS NULL))
      AND ST_DWithin(j.location, {_POINT}, :reach_m)
), scored AS (
    SELECT cj.worker_id, cj.job_id, cj.distance_m, w.travel_mode, w.reputation,
           cj.wait_s + :startup_s + cj.distance_m * :circuity / (CASE w.travel_mode
                WHEN 'walk' THEN :walk_mps WHEN 'bike' THEN :bike_mps ELSE :car_mps END)
               AS eta_s
    FROM current_jobs cj
    JOIN workers w ON w.user_id = cj.worker_id
    JOIN worker_skills s ON s.worker_id = cj.worker_id
                        AND s.category_id = CAST(:category_id AS integer) AND s.verified
    WHERE w.availability = 'busy'
      AND cj.distance_m <= w.service_radius_m
      AND NOT (cj.worker_id = ANY(CAST(:excluded AS integer[])))
      AND NOT EXISTS (SELECT 1 FROM jobs q WHERE q.worker_id = cj.worker_id
                                            AND q.queued_behind_job_id IS NOT NULL)
)
SELECT worker_id, job_id, distance_m, travel_mode, eta_s,
       eta_s + :reputation_weight * (1 - reputation) * 3600 AS score
FROM scored
WHERE eta_s <= :latest_eta_s
ORDER BY score
LIMIT :limit
"""
)


def find_finishing(conn: Connection | Session, request: MatchRequest, *, min_wait_s: float,
                   margin_s: float) -> list[Candidate]:
    """Busy workers who can come after the job they are on and still arrive `margin_s`
    before the deadline: when nobody free can come, someone finishing nearby often can.
    Their arrival is an estimate twice over (the job's end and the trip), hence the margin."""
    latest = request.max_eta_s - margin_s
    if latest <= 0:
        return []
    fastest = max(request.eta.speed_mps(m) for m in TravelMode)
    rows = conn.execute(FINISHING_SQL, {
        **request.params(pool=0), "min_wait_s": min_wait_s, "latest_eta_s": latest,
        "reach_m": latest * fastest / request.eta.circuity,
    }).all()
    return [Candidate(worker_id=r.worker_id, distance_m=float(r.distance_m),
                      travel_mode=TravelMode(r.travel_mode), eta_s=float(r.eta_s),
                      score=float(r.score), queued_behind_job_id=r.job_id) for r in rows]


# Whether any worker verified for the service serves the point at all: their last known
# position within their own service radius, whatever their availability or how old the fix.
# Read only when a booking is refused, to tell "nobody is on duty" from "nobody covers this".
SERVES_SQL = text(
    f"""
SELECT EXISTS (
    SELECT 1 FROM worker_skills s
    JOIN workers w ON w.user_id = s.worker_id
    WHERE s.category_id = CAST(:category_id AS integer) AND s.verified
      AND s.location IS NOT NULL
      AND ST_DWithin(s.location, {_POINT}, w.service_radius_m)
)"""
)


def anyone_serves(conn: Connection | Session, category_id: int, lat: float, lng: float) -> bool:
    return bool(conn.execute(SERVES_SQL, {"category_id": category_id, "lat": lat,
                                          "lng": lng}).scalar_one())
