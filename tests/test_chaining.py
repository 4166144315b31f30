"""Chained assignment of scheduled jobs (OR-Tools routing), checked against brute force."""

from __future__ import annotations

import itertools
import random

import pytest

from dispatch.planning.assignment import BatchWorker
from dispatch.planning.chaining import WindowJob, allowed, penalty_s, solve_chained, travel_s
from geo.eta import EtaModel

ETA = EtaModel()
UNASSIGNED = 10 * 24 * 3600
MARKET = 900


def _route_cost(worker: BatchWorker, order: tuple[WindowJob, ...]) -> int | None:
    """Travel (+ outsider penalties) of one worker doing `order`, earliest arrival at each
    stop, waiting for windows to open; None if some window is missed."""
    t, lat, lng, cost = 0, worker.lat, worker.lng, 0
    for job in order:
        leg = travel_s(ETA, lat, lng, job.lat, job.lng, worker.travel_mode)
        t = max(t + leg, int(job.window_start_s))
        if t > job.window_end_s:
            return None
        cost += leg + penalty_s(job, worker, MARKET)
        t += round(job.service_s)
        lat, lng = job.lat, job.lng
    return cost


def brute_force(jobs: list[WindowJob], workers: list[BatchWorker]) -> int:
    """Every way to give each job to a worker (or nobody) and order each worker's jobs."""
    best = None
    for choice in itertools.product(range(-1, len(workers)), repeat=len(jobs)):
        if any(k >= 0 and not allowed(jobs[i], workers[k]) for i, k in enumerate(choice)):
            continue
        total = UNASSIGNED * sum(1 for k in choice if k < 0)
        for k, worker in enumerate(workers):
            mine = [jobs[i] for i, c in enumerate(choice) if c == k]
            costs = [c for order in itertools.permutations(mine)
                     if (c := _route_cost(worker, order)) is not None]
            if not costs:
                total = None
                break
            total += min(costs)
        if total is not None and (best is None or total < best):
            best = total
    assert best is not None
    return best


def _instance(seed: int, n_jobs: int, n_workers: int) -> tuple[list[WindowJob],
                                                                list[BatchWorker]]:
    rng = random.Random(seed)
    jobs = []
    for i in range(n_jobs):
        start = rng.choice([3600, 5400, 7200, 10800])
        jobs.append(WindowJob(
            id=100 + i, lat=37.75 + rng.uniform(-0.04, 0.04),
            lng=-122.43 + rng.uniform(-0.04, 0.04), category_id=rng.choice([1, 2]),
            window_start_s=start, window_end_s=start + rng.choice([1800, 3600, 7200]),
            service_s=rng.choice([1800, 2700, 3600]),
            preferred_worker_ids=frozenset({1}) if seed % 2 else frozenset()))
    workers = [BatchWorker(id=1 + k, lat=37.75 + rng.uniform(-0.05, 0.05),
                           lng=-122.43 + rng.uniform(-0.05, 0.05),
                           travel_mode=rng.choice(["bike", "car"]),
                           skills=frozenset(rng.sample([1, 2], rng.choice([1, 2]))),
                           radius_m=15000) for k in range(n_workers)]
    return jobs, workers


@pytest.mark.parametrize("seed", range(8))
def test_chained_plan_is_optimal_on_small_cases(seed: int) -> None:
    jobs, workers = _instance(seed, n_jobs=5, n_workers=2)
    plan = solve_chained(jobs, workers, ETA, marketplace_penalty_s=MARKET,
                         unassigned_penalty_s=UNASSIGNED, time_limit_s=1.0)
    assert plan.objective_s == brute_force(jobs, workers)
    # The plan is what it claims: every stop inside its window, skills respected, legs and
    # service times fit between consecutive stops.
    by_id = {j.id: j for j in jobs}
    for worker_id, stops in plan.routes.items():
        worker = next(w for w in workers if w.id == worker_id)
        t, lat, lng = 0, worker.lat, worker.lng
        for job_id, arrival in stops:
            job = by_id[job_id]
            assert allowed(job, worker)
            assert job.window_start_s <= arrival <= job.window_end_s
            assert arrival >= t + travel_s(ETA, lat, lng, job.lat, job.lng, worker.travel_mode)
            t, lat, lng = arrival + round(job.service_s), job.lat, job.lng


def test_one_worker_chains_three_windows_in_a_day() -> None:
    """Three morning, noon and afternoon jobs a few blocks apart and one plumber: one route
    serves all three, in window order."""
    worker = BatchWorker(id=1, lat=37.76, lng=-122.42, travel_mode="car",
                         skills=frozenset({1}), radius_m=20000)
    jobs = [WindowJob(id=10 + i, lat=37.761 + 0.002 * i, lng=-122.421, category_id=1,
                      window_start_s=start, window_end_s=start + 3600, service_s=3000)
            for i, start in enumerate([14400, 3600, 9000])]
    plan = solve_chained(jobs, [worker], ETA)
    assert plan.unassigned == []
    assert [job_id for job_id, _ in plan.routes[1]] == [11, 12, 10]


def test_windows_that_cannot_both_be_met_go_to_two_workers_or_the_cascade() -> None:
    """Two jobs in the same one-hour window, each taking two hours: one worker cannot do
    both; with a second worker both are served, without one the other is left out."""
    jobs = [WindowJob(id=10 + i, lat=37.76, lng=-122.42 + 0.01 * i, category_id=1,
                      window_start_s=3600, window_end_s=7200, service_s=7200)
            for i in range(2)]
    near = BatchWorker(id=1, lat=37.76, lng=-122.42, travel_mode="car", skills=frozenset({1}),
                       radius_m=20000)
    plumber_only = solve_chained(jobs, [near], ETA)
    assert len(plumber_only.unassigned) == 1
    second = BatchWorker(id=2, lat=37.77, lng=-122.41, travel_mode="car",
                         skills=frozenset({1}), radius_m=20000)
    both = solve_chained(jobs, [near, second], ETA)
    assert both.unassigned == [] and set(both.worker_of.values()) == {1, 2}


def test_skills_radius_and_preferred_contractors_are_respected() -> None:
    job = WindowJob(id=10, lat=37.76, lng=-122.42, category_id=2, window_start_s=3600,
                    window_end_s=7200, service_s=1800, preferred_worker_ids=frozenset({3}),
                    marketplace_allowed=False)
    wrong_skill = BatchWorker(id=1, lat=37.76, lng=-122.42, travel_mode="car",
                              skills=frozenset({1}), radius_m=20000)
    outsider = BatchWorker(id=2, lat=37.76, lng=-122.42, travel_mode="car",
                           skills=frozenset({2}), radius_m=20000)
    far_preferred = BatchWorker(id=3, lat=37.95, lng=-122.42, travel_mode="car",
                                skills=frozenset({2}), radius_m=5000)
    assert solve_chained([job], [wrong_skill, outsider, far_preferred], ETA).unassigned == [10]
    near_preferred = BatchWorker(id=3, lat=37.80, lng=-122.42, travel_mode="car",
                                 skills=frozenset({2}), radius_m=20000)
    plan = solve_chained([job], [wrong_skill, outsider, near_preferred], ETA)
    assert plan.worker_of == {10: 3}
