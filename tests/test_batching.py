"""Batch assignment (dispatch.planning.assignment): optimality against brute force, the business
rules
(skills, radius, preferred contractors, marketplace), and that joint solving beats greedy.

Pure: no database rows are used (the repo's autouse fixtures still need the DB env)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from dispatch.planning.assignment import (
    Assignment,
    BatchJob,
    BatchWorker,
    greedy,
    pair_cost,
    solve,
    solve_exact,
    total_cost,
)
from geo.eta import EARTH_RADIUS_M, EtaModel, TravelMode, haversine_m

BASE = (37.7749, -122.4194)
M_PER_DEG_LAT = EARTH_RADIUS_M * math.pi / 180
# 1 m/s for every mode, no circuity, no start-up: ETA seconds == straight-line metres.
UNIT = EtaModel(speeds_kmh={m: 3.6 for m in TravelMode}, circuity=1.0, startup_s=0.0)


def north(metres: float) -> tuple[float, float]:
    """A point `metres` due north of BASE (haversine along a meridian is exact)."""
    return BASE[0] + metres / M_PER_DEG_LAT, BASE[1]


def job(id: int, metres: float = 0.0, *, cat: int = 1, deadline: float = 7200.0,
        preferred: set[int] | None = None, market: bool = True) -> BatchJob:
    lat, lng = north(metres)
    return BatchJob(id, lat, lng, cat, deadline, frozenset(preferred or ()), market)


def worker(id: int, metres: float, *, skills: set[int] | None = None, radius: float = 50_000.0,
           mode: str = "car") -> BatchWorker:
    lat, lng = north(metres)
    return BatchWorker(id, lat, lng, mode, frozenset(skills or {1}), radius)


def brute_force(jobs: list[BatchJob], workers: list[BatchWorker], eta: EtaModel) -> float:
    """Minimum objective over every injective job -> worker-or-nobody map."""
    costs = [[pair_cost(j, w, eta) for w in workers] for j in jobs]
    best = math.inf
    for choice in itertools.product(range(-1, len(workers)), repeat=len(jobs)):
        used = [k for k in choice if k >= 0]
        if len(used) != len(set(used)):
            continue
        total = 0.0
        for i, k in enumerate(choice):
            c = 24 * 3600.0 if k < 0 else costs[i][k]
            if c is None:
                break
            total += c
        else:
            best = min(best, total)
    return best


def random_case(rng: random.Random, n_jobs: int, n_workers: int
                ) -> tuple[list[BatchJob], list[BatchWorker]]:
    """Tight instances: few categories, radii comparable to distances, deadlines that bite."""
    def point() -> tuple[float, float]:
        return (BASE[0] + rng.uniform(-0.04, 0.04), BASE[1] + rng.uniform(-0.05, 0.05))

    workers = []
    for k in range(n_workers):
        lat, lng = point()
        workers.append(BatchWorker(100 + k, lat, lng, rng.choice(["walk", "bike", "car"]),
                                   frozenset(rng.sample([1, 2, 3], rng.randint(1, 2))),
                                   rng.uniform(1_500, 8_000)))
    ids = [w.id for w in workers]
    jobs = []
    for i in range(n_jobs):
        lat, lng = point()
        pref = frozenset()
        if rng.random() < 0.5:
            pref = frozenset(rng.sample(ids, rng.randint(0, min(2, len(ids)))))
        jobs.append(BatchJob(i, lat, lng, rng.choice([1, 2, 3]), rng.uniform(600, 4_000),
                             pref, rng.random() < 0.7 or not pref))
    return jobs, workers


def assert_valid(a: Assignment, jobs: list[BatchJob], workers: list[BatchWorker],
                 eta: EtaModel) -> float:
    """Feasible, one job per worker, fields consistent; returns the objective."""
    assert set(a.pairs) | set(a.unassigned) == {j.id for j in jobs}
    assert not set(a.pairs) & set(a.unassigned)
    assert len(set(a.pairs.values())) == len(a.pairs)
    by_job = {j.id: j for j in jobs}
    by_worker = {w.id: w for w in workers}
    for jid, wid in a.pairs.items():
        j, w = by_job[jid], by_worker[wid]
        d = haversine_m(j.lat, j.lng, w.lat, w.lng)
        assert j.category_id in w.skills
        assert d <= w.radius_m
        assert j.marketplace_allowed or wid in j.preferred_worker_ids
        assert a.eta_s[jid] == pytest.approx(eta.eta_seconds(d, w.travel_mode))
    assert a.total_eta_s == pytest.approx(sum(a.eta_s.values()))
    assert a.on_time == sum(a.eta_s[jid] <= by_job[jid].deadline_s for jid in a.pairs)
    return total_cost(a, jobs, workers, eta)


@pytest.mark.parametrize("seed", range(50))
def test_optimal_against_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    jobs, workers = random_case(rng, rng.randint(1, 5), rng.randint(1, 6))
    eta = EtaModel()
    best = brute_force(jobs, workers, eta)
    assert assert_valid(solve_exact(jobs, workers, eta), jobs, workers, eta) == pytest.approx(best)
    assert assert_valid(solve(jobs, workers, eta), jobs, workers, eta) == pytest.approx(best)
    assert assert_valid(greedy(jobs, workers, eta), jobs, workers, eta) >= best - 1e-6


def test_brute_force_cases_are_not_trivial() -> None:
    """Guard on the generator: the cases above must exercise unassigned, late and market."""
    eta = EtaModel()
    seen = {"unassigned": 0, "late": 0, "assigned": 0}
    for seed in range(50):
        rng = random.Random(seed)
        jobs, workers = random_case(rng, rng.randint(1, 5), rng.randint(1, 6))
        a = solve_exact(jobs, workers, eta)
        seen["unassigned"] += len(a.unassigned)
        seen["assigned"] += len(a.pairs)
        seen["late"] += len(a.pairs) - a.on_time
    assert all(v > 0 for v in seen.values()), seen


def test_skills_and_radius_respected() -> None:
    jobs = [job(1, cat=7)]
    near_wrong_skill = worker(10, 100, skills={8})
    near_out_of_radius = worker(11, 200, skills={7}, radius=150)
    far_ok = worker(12, 5_000, skills={7}, radius=6_000)
    a = solve(jobs, [near_wrong_skill, near_out_of_radius, far_ok], UNIT)
    assert a.pairs == {1: 12}
    assert a.eta_s[1] == pytest.approx(5_000)
    # Nobody qualified: the job stays unassigned instead of going to an unqualified worker.
    for fn in (solve, solve_exact, greedy):
        assert fn(jobs, [near_wrong_skill, near_out_of_radius], UNIT).unassigned == [1]


def test_radius_boundary_is_inclusive() -> None:
    assert solve([job(1)], [worker(10, 1_000, radius=1_000.001)], UNIT).pairs == {1: 10}
    assert solve([job(1)], [worker(10, 1_000, radius=999.999)], UNIT).pairs == {}


def test_preferred_contractor_wins_within_marketplace_penalty() -> None:
    """Preferred costs its ETA; a marketplace worker costs ETA + 900 s. With ETA == metres:
    a preferred worker 800 m further still wins (cost 1800 < 1000 + 900)."""
    jobs = [job(1, preferred={10})]
    pref, market = worker(10, 1_800), worker(20, 1_000)
    assert pair_cost(jobs[0], pref, UNIT) == pytest.approx(1_800)
    assert pair_cost(jobs[0], market, UNIT) == pytest.approx(1_900)
    for fn in (solve, solve_exact, greedy):
        assert fn(jobs, [pref, market], UNIT).pairs == {1: 10}


def test_preferred_contractor_loses_when_much_slower() -> None:
    """1000 m further is beyond the 900 s penalty: the marketplace worker (1000 + 900 = 1900)
    beats the preferred one (2000)."""
    jobs = [job(1, preferred={10})]
    pref, market = worker(10, 2_000), worker(20, 1_000)
    for fn in (solve, solve_exact, greedy):
        assert fn(jobs, [pref, market], UNIT).pairs == {1: 20}
    # The threshold moves with the parameter.
    assert solve(jobs, [pref, market], UNIT, marketplace_penalty_s=1_100).pairs == {1: 10}


def test_no_penalty_without_preferred_contractors() -> None:
    """A job whose org lists no contractors pays no marketplace penalty."""
    assert pair_cost(job(1), worker(20, 1_000), UNIT) == pytest.approx(1_000)


def test_marketplace_disallowed_only_preferred() -> None:
    jobs = [job(1, preferred={10}, market=False)]
    pref, market = worker(10, 30_000), worker(20, 10)
    for fn in (solve, solve_exact, greedy):
        assert fn(jobs, [pref, market], UNIT).pairs == {1: 10}
        # The preferred worker is unavailable: unassigned rather than an outsider.
        assert fn(jobs, [market], UNIT).unassigned == [1]


def test_one_job_per_worker() -> None:
    jobs = [job(i, 10 * i) for i in range(1, 5)]
    only = [worker(10, 0), worker(11, 5_000)]
    for fn in (solve, solve_exact, greedy):
        a = fn(jobs, only, UNIT)
        assert len(a.pairs) == 2 and len(set(a.pairs.values())) == 2
        assert len(a.unassigned) == 2


def test_late_penalty_buys_on_time() -> None:
    """Job 1 (tight deadline) can only be on time with worker A, who stands at job 2.
    Minimising raw ETA would send A to job 2 and B (late) to job 1; the 4 h late penalty
    sends A to job 1."""
    jobs = [job(1, 0, deadline=1_500), job(2, 1_000, deadline=7_200)]
    a_w, b_w = worker(10, 1_000), worker(11, -1_600)
    # Raw ETA: A->1 + B->2 = 1000 + 2600 = 3600; A->2 + B->1 = 0 + 1600 = 1600 (job 1 late).
    for fn in (solve, solve_exact):
        res = fn(jobs, [a_w, b_w], UNIT)
        assert res.pairs == {1: 10, 2: 11}
        assert res.on_time == 2
        assert res.total_eta_s == pytest.approx(3_600)
    without = solve(jobs, [a_w, b_w], UNIT, late_penalty_s=0.0)
    assert without.pairs == {1: 11, 2: 10} and without.on_time == 1


def test_greedy_can_strand_a_job() -> None:
    """Job 1 comes first and takes X, the only worker job 2 can reach; Y could have done
    job 1. Batch solving assigns both."""
    jobs = [job(1, 0), job(2, 3_000)]
    x = worker(10, 1_000, radius=5_000)
    y = worker(11, -1_500, radius=2_000)  # reaches job 1 (1500 m) but not job 2 (4500 m)
    g = greedy(jobs, [x, y], UNIT)
    assert g.pairs == {1: 10} and g.unassigned == [2]
    for fn in (solve, solve_exact):
        s = fn(jobs, [x, y], UNIT)
        assert s.pairs == {1: 11, 2: 10}
        assert total_cost(s, jobs, [x, y], UNIT) < total_cost(g, jobs, [x, y], UNIT)


@pytest.mark.parametrize("seed", range(5))
def test_pruned_solve_matches_exact(seed: int) -> None:
    rng = random.Random(1_000 + seed)
    workers = [BatchWorker(k, BASE[0] + rng.gauss(0, 0.03), BASE[1] + rng.gauss(0, 0.04),
                           rng.choice(["walk", "bike", "car"]),
                           frozenset(rng.sample(range(5), 2)), rng.uniform(3_000, 10_000))
               for k in range(200)]
    pref = frozenset(rng.sample(range(200), 20))
    jobs = [BatchJob(i, BASE[0] + rng.gauss(0, 0.02), BASE[1] + rng.gauss(0, 0.03),
                     rng.randrange(5), 7_200.0, pref if i % 3 == 0 else frozenset(), i % 6 != 0)
            for i in range(30)]
    eta = EtaModel()
    exact = assert_valid(solve_exact(jobs, workers, eta), jobs, workers, eta)
    ours = assert_valid(solve(jobs, workers, eta), jobs, workers, eta)
    assert exact <= ours <= exact * 1.01
    assert assert_valid(greedy(jobs, workers, eta), jobs, workers, eta) >= exact - 1e-6


def test_few_candidates_still_feasible() -> None:
    rng = random.Random(7)
    jobs, workers = random_case(rng, 5, 6)
    eta = EtaModel()
    for k in (1, 2, 100):
        assert_valid(solve(jobs, workers, eta, candidates_per_job=k), jobs, workers, eta)


def test_empty_inputs() -> None:
    for fn in (solve, solve_exact, greedy):
        assert fn([], [worker(10, 0)], UNIT) == Assignment()
        a = fn([job(1)], [], UNIT)
        assert a.pairs == {} and a.unassigned == [1] and a.total_eta_s == 0.0


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="duplicate job"):
        solve([job(1), job(1)], [worker(10, 0)], UNIT)
    with pytest.raises(ValueError, match="duplicate worker"):
        solve([job(1)], [worker(10, 0), worker(10, 5)], UNIT)
    # A feasible pair costing more than leaving the job would silently strand it.
    with pytest.raises(ValueError, match="unassigned_penalty_s"):
        solve([job(1)], [worker(10, 2_000)], UNIT, unassigned_penalty_s=1_000)
    with pytest.raises(ValueError, match="more than one job"):
        total_cost(Assignment(pairs={1: 10, 2: 10}), [job(1), job(2)], [worker(10, 0)], UNIT)
