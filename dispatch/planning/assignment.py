"""Batch assignment: give each job in a property manager's batch its own worker, jointly.

Dispatching a batch job by job ("nearest free worker first") lets an early job take the
only worker a later job could have had. Solving the batch as one assignment problem
(min-cost bipartite matching, `scipy.optimize.linear_sum_assignment`) minimises the total
cost instead: travel time, plus penalties that encode the business rules (be on time,
prefer the organisation's contractors, leave a job unassigned only as a last resort).

Pure on purpose (numpy/scipy and `geo.eta` only; no database, no Flask) so the same code
runs in the request path, the tests and the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from geo.eta import EARTH_RADIUS_M, EtaModel, haversine_m

LATE_PENALTY_S = 4 * 3600.0
MARKETPLACE_PENALTY_S = 900.0
UNASSIGNED_PENALTY_S = 24 * 3600.0


@dataclass(frozen=True)
class BatchJob:
    """One repair job: where, what trade, by when (seconds from now), and who may take it."""

    id: int
    lat: float
    lng: float
    category_id: int
    deadline_s: float
    preferred_worker_ids: frozenset[int] = frozenset()
    marketplace_allowed: bool = True


@dataclass(frozen=True)
class BatchWorker:
    """A worker as the batch sees them: position, how they travel, verified skills, radius."""

    id: int
    lat: float
    lng: float
    travel_mode: str
    skills: frozenset[int]
    radius_m: float


@dataclass
class Assignment:
    """The outcome: job id -> worker id, each assigned job's ETA, and what was left over."""

    pairs: dict[int, int] = field(default_factory=dict)
    eta_s: dict[int, float] = field(default_factory=dict)
    total_eta_s: float = 0.0
    on_time: int = 0
    unassigned: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Penalties:
    late_s: float
    marketplace_s: float
    unassigned_s: float


# --------------------------------------------------------------------------- cost model


def pair_cost(
    job: BatchJob,
    worker: BatchWorker,
    eta: EtaModel,
    *,
    late_penalty_s: float = LATE_PENALTY_S,
    marketplace_penalty_s: float = MARKETPLACE_PENALTY_S,
) -> float | None:
    """Cost of sending `worker` to `job`, or None if not allowed.

    Scalar, one pair at a time: the readable statement of the rule, and the independent
    reference the vectorised matrix is tested against.
    """
    if job.category_id not in worker.skills:
        return None
    dist = haversine_m(worker.lat, worker.lng, job.lat, job.lng)
    if dist > worker.radius_m:
        return None
    preferred = worker.id in job.preferred_worker_ids
    if not (preferred or job.marketplace_allowed):
        return None
    seconds = eta.eta_seconds(dist, worker.travel_mode)
    cost = seconds
    if seconds > job.deadline_s:
        cost += late_penalty_s
    if job.preferred_worker_ids and not preferred:
        cost += marketplace_penalty_s
    return cost


def haversine_matrix(lat1: np.ndarray, lng1: np.ndarray,
                      lat2: np.ndarray, lng2: np.ndarray) -> np.ndarray:
    """Pairwise great-circle metres, rows = first set, columns = second (same formula as
    `geo.eta.haversine_m`, so scalar and matrix agree)."""
    p1 = np.radians(lat1)[:, None]
    p2 = np.radians(lat2)[None, :]
    dl = np.radians(lng2)[None, :] - np.radians(lng1)[:, None]
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _check_ids(jobs: Sequence[BatchJob], workers: Sequence[BatchWorker]) -> None:
    """Results are keyed by id, so duplicates would silently overwrite each other."""
    if len({j.id for j in jobs}) != len(jobs):
        raise ValueError("duplicate job ids in batch")
    if len({w.id for w in workers}) != len(workers):
        raise ValueError("duplicate worker ids in batch")


def _matrices(jobs: Sequence[BatchJob], workers: Sequence[BatchWorker], eta: EtaModel,
              pen: _Penalties) -> tuple[np.ndarray, np.ndarray]:
    """(cost, eta) matrices, jobs x workers; infeasible pairs cost +inf.

    Raises if some feasible pair costs at least the unassigned penalty: the solver would
    then prefer stranding a job to sending a worker who can do it.
    """
    n, m = len(jobs), len(workers)
    if n == 0 or m == 0:
        return np.full((n, m), np.inf), np.full((n, m), np.nan)

    jlat = np.fromiter((j.lat for j in jobs), float, n)
    jlng = np.fromiter((j.lng for j in jobs), float, n)
    wlat = np.fromiter((w.lat for w in workers), float, m)
    wlng = np.fromiter((w.lng for w in workers), float, m)
    radius = np.fromiter((w.radius_m for w in workers), float, m)
    speed = {mode: eta.speed_mps(mode) for mode in {w.travel_mode for w in workers}}
    wspeed = np.fromiter((speed[w.travel_mode] for w in workers), float, m)

    dist = haversine_matrix(jlat, jlng, wlat, wlng)
    seconds = eta.startup_s + dist * eta.circuity / wspeed[None, :]

    # Skills: one worker mask per category that occurs in the batch, then one row per job.
    cats = sorted({j.category_id for j in jobs})
    cat_row = {c: i for i, c in enumerate(cats)}
    has_skill = np.zeros((len(cats), m), dtype=bool)
    for k, w in enumerate(workers):
        for c in w.skills:
            i = cat_row.get(c)
            if i is not None:
                has_skill[i, k] = True
    skilled = has_skill[[cat_row[j.category_id] for j in jobs]]

    col = {w.id: k for k, w in enumerate(workers)}
    preferred = np.zeros((n, m), dtype=bool)
    for i, j in enumerate(jobs):
        ks = [col[w] for w in j.preferred_worker_ids if w in col]
        preferred[i, ks] = True
    has_pref = np.fromiter((bool(j.preferred_worker_ids) for j in jobs), bool, n)
    open_market = np.fromiter((j.marketplace_allowed for j in jobs), bool, n)
    deadline = np.fromiter((j.deadline_s for j in jobs), float, n)

    feasible = skilled & (dist <= radius[None, :]) & (preferred | open_market[:, None])
    cost = seconds.copy()
    cost += np.where(seconds > deadline[:, None], pen.late_s, 0.0)
    cost += np.where(has_pref[:, None] & ~preferred, pen.marketplace_s, 0.0)
    cost[~feasible] = np.inf

    if feasible.any() and cost[feasible].max() >= pen.unassigned_s:
        raise ValueError(
            f"unassigned_penalty_s={pen.unassigned_s:g} must exceed every feasible pair cost "
            f"(max {cost[feasible].max():.0f} s)")
    return cost, seconds


def _lsa_with_dummies(cost: np.ndarray, unassigned_s: float) -> np.ndarray:
    """Optimal column per row (-1 = unassigned). One dummy column per job at the unassigned
    cost makes "leave it" an ordinary choice and guarantees a complete matching exists."""
    n, m = cost.shape
    if n == 0:
        return np.empty(0, dtype=int)
    full = np.hstack([cost, np.full((n, n), unassigned_s)])
    rows, cols = linear_sum_assignment(full)
    out = np.full(n, -1, dtype=int)
    real = cols < m
    out[rows[real]] = cols[real]
    return out


def _result(jobs: Sequence[BatchJob], workers: Sequence[BatchWorker], choice: np.ndarray,
            seconds: np.ndarray) -> Assignment:
    res = Assignment()
    for i, job in enumerate(jobs):
        k = int(choice[i])
        if k < 0:
            res.unassigned.append(job.id)
            continue
        s = float(seconds[i, k])
        res.pairs[job.id] = workers[k].id
        res.eta_s[job.id] = s
        res.total_eta_s += s
        res.on_time += s <= job.deadline_s
    return res


# --------------------------------------------------------------------------- solvers


def solve(
    jobs: Sequence[BatchJob],
    workers: Sequence[BatchWorker],
    eta: EtaModel,
    *,
    candidates_per_job: int = 40,
    late_penalty_s: float = LATE_PENALTY_S,
    marketplace_penalty_s: float = MARKETPLACE_PENALTY_S,
    unassigned_penalty_s: float = UNASSIGNED_PENALTY_S,
) -> Assignment:
    """Near-optimal batch assignment, fast: each job keeps only its `candidates_per_job`
    cheapest feasible workers, and the matching runs over the union of those workers.

    A job's optimal worker is almost always among its few cheapest, so pruning shrinks the
    matrix (and the Hungarian step) without moving the optimum in practice;
    `solve_exact` is the unpruned reference.
    """
    if candidates_per_job < 1:
        raise ValueError("candidates_per_job must be >= 1")
    _check_ids(jobs, workers)
    pen = _Penalties(late_penalty_s, marketplace_penalty_s, unassigned_penalty_s)
    cost, seconds = _matrices(jobs, workers, eta, pen)
    n, m = cost.shape
    if n == 0 or m == 0:
        return _result(jobs, workers, np.full(n, -1), seconds)

    k = min(candidates_per_job, m)
    if k < m:
        top = np.argpartition(cost, k - 1, axis=1)[:, :k]
        keep = np.zeros_like(cost, dtype=bool)
        np.put_along_axis(keep, top, True, axis=1)
        keep &= np.isfinite(cost)
    else:
        keep = np.isfinite(cost)
    cols = np.flatnonzero(keep.any(axis=0))
    sub = np.where(keep[:, cols], cost[:, cols], np.inf)

    local = _lsa_with_dummies(sub, unassigned_penalty_s)
    choice = np.full(n, -1, dtype=int)
    choice[local >= 0] = cols[local[local >= 0]]
    return _result(jobs, workers, choice, seconds)


def solve_exact(
    jobs: Sequence[BatchJob],
    workers: Sequence[BatchWorker],
    eta: EtaModel,
    *,
    late_penalty_s: float = LATE_PENALTY_S,
    marketplace_penalty_s: float = MARKETPLACE_PENALTY_S,
    unassigned_penalty_s: float = UNASSIGNED_PENALTY_S,
) -> Assignment:
    """The optimum over the full jobs x workers matrix: the yardstick for `solve`."""
    _check_ids(jobs, workers)
    pen = _Penalties(late_penalty_s, marketplace_penalty_s, unassigned_penalty_s)
    cost, seconds = _matrices(jobs, workers, eta, pen)
    return _result(jobs, workers, _lsa_with_dummies(cost, unassigned_penalty_s), seconds)


def greedy(
    jobs: Sequence[BatchJob],
    workers: Sequence[BatchWorker],
    eta: EtaModel,
    *,
    late_penalty_s: float = LATE_PENALTY_S,
    marketplace_penalty_s: float = MARKETPLACE_PENALTY_S,
    unassigned_penalty_s: float = UNASSIGNED_PENALTY_S,
) -> Assignment:
    """Job by job in list order, each takes its cheapest still-free worker: what one-at-a-time
    "nearest first" dispatch does, kept as the baseline the batch solver must beat."""
    _check_ids(jobs, workers)
    pen = _Penalties(late_penalty_s, marketplace_penalty_s, unassigned_penalty_s)
    cost, seconds = _matrices(jobs, workers, eta, pen)
    n, m = cost.shape
    choice = np.full(n, -1, dtype=int)
    free = np.ones(m, dtype=bool)
    for i in range(n):
        if m == 0:
            break
        row = np.where(free, cost[i], np.inf)
        k = int(np.argmin(row))
        if np.isfinite(row[k]):
            choice[i] = k
            free[k] = False
    return _result(jobs, workers, choice, seconds)


def total_cost(
    assignment: Assignment,
    jobs: Sequence[BatchJob],
    workers: Sequence[BatchWorker],
    eta: EtaModel,
    *,
    late_penalty_s: float = LATE_PENALTY_S,
    marketplace_penalty_s: float = MARKETPLACE_PENALTY_S,
    unassigned_penalty_s: float = UNASSIGNED_PENALTY_S,
) -> float:
    """The objective the solvers minimise, recomputed pair by pair with `pair_cost`.

    Independent of the matrix code, so tests and the benchmark can compare solvers on the
    same scale; raises if the assignment is infeasible or reuses a worker.
    """
    by_id = {w.id: w for w in workers}
    used = list(assignment.pairs.values())
    if len(set(used)) != len(used):
        raise ValueError("a worker is assigned to more than one job")
    total = 0.0
    for job in jobs:
        wid = assignment.pairs.get(job.id)
        if wid is None:
            total += unassigned_penalty_s
            continue
        c = pair_cost(job, by_id[wid], eta, late_penalty_s=late_penalty_s,
                      marketplace_penalty_s=marketplace_penalty_s)
        if c is None:
            raise ValueError(f"job {job.id} assigned to worker {wid}, who may not take it")
        total += c
    if not math.isfinite(total):
        raise ValueError("non-finite objective")
    return total
