"""Chained assignment for scheduled jobs: several booked windows per worker in a day.

Urgent jobs take one worker each (`dispatch.planning.assignment`). Jobs booked for a window
("tomorrow 09:00-12:00") can be chained: a plumber can fix unit 4B at 9:10, then 7A at
10:20, if the windows and the travel between them allow. That is a vehicle routing problem
with time windows; OR-Tools' routing solver handles it (the guide's pick for the chained
version), with the same business rules as the urgent solver encoded as costs and limits:

- cost: travel seconds (our ETA model, worker's travel mode) plus a penalty for each job
  given to an outsider when the organisation has preferred contractors;
- hard limits: skills (and verification, by who is passed in), the worker's service radius
  measured from where they are now, the organisation's marketplace setting, arrival inside
  each job's window (waiting for a window to open is allowed);
- leaving a job out costs `unassigned_penalty_s`, more than any real route, so a job is
  left to the offer cascade only when no worker can fit it.

Pure (OR-Tools and `geo.eta` only), like `dispatch.planning.assignment`, so tests can check it
against
a brute-force reference.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from dispatch.planning.assignment import BatchWorker, haversine_matrix
from geo.eta import EtaModel, haversine_m

MARKETPLACE_PENALTY_S = 900
UNASSIGNED_PENALTY_S = 30 * 24 * 3600


@dataclass(frozen=True)
class WindowJob:
    """A scheduled job: where, what trade, its arrival window in seconds from now (the start
    may be negative for a window already open), how long the work takes, who may take it."""

    id: int
    lat: float
    lng: float
    category_id: int
    window_start_s: float
    window_end_s: float
    service_s: float
    preferred_worker_ids: frozenset[int] = frozenset()
    marketplace_allowed: bool = True


@dataclass
class ChainPlan:
    """Each worker's stops in order, with planned arrival seconds; what was left out."""

    routes: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    worker_of: dict[int, int] = field(default_factory=dict)
    arrival_s: dict[int, int] = field(default_factory=dict)
    travel_s: int = 0
    penalties_s: int = 0
    unassigned: list[int] = field(default_factory=list)

    @property
    def objective_s(self) -> int:
        return self.travel_s + self.penalties_s


def travel_s(eta: EtaModel, from_lat: float, from_lng: float, to_lat: float, to_lng: float,
             mode: str) -> int:
    """Whole seconds of one leg: the routing solver works in integers."""
    return round(eta.eta_seconds(haversine_m(from_lat, from_lng, to_lat, to_lng), mode))


def allowed(job: WindowJob, worker: BatchWorker) -> bool:
    """Skills, radius from where the worker is now, and the organisation's marketplace rule."""
    if job.category_id not in worker.skills:
        return False
    if haversine_m(worker.lat, worker.lng, job.lat, job.lng) > worker.radius_m:
        return False
    return worker.id in job.preferred_worker_ids or job.marketplace_allowed


def penalty_s(job: WindowJob, worker: BatchWorker, marketplace_penalty_s: int) -> int:
    outsider = bool(job.preferred_worker_ids) and worker.id not in job.preferred_worker_ids
    return marketplace_penalty_s if outsider else 0


def solve_chained(
    jobs: Sequence[WindowJob],
    workers: Sequence[BatchWorker],
    eta: EtaModel,
    *,
    marketplace_penalty_s: int = MARKETPLACE_PENALTY_S,
    unassigned_penalty_s: int = UNASSIGNED_PENALTY_S,
    candidates_per_job: int = 20,
    time_limit_s: float = 2.0,
) -> ChainPlan:
    """Routes that serve every job in its window at the least travel (plus penalties).

    Each job keeps its `candidates_per_job` nearest allowed workers (the others would only
    add vehicles the solver has to rule out); routes start where each worker is now, at
    time 0, and end wherever the last job is."""
    if len({j.id for j in jobs}) != len(jobs) or len({w.id for w in workers}) != len(workers):
        raise ValueError("duplicate ids")
    plan = ChainPlan()
    usable: dict[int, list[int]] = {}
    keep: set[int] = set()
    for i, job in enumerate(jobs):
        ok = [k for k, w in enumerate(workers) if allowed(job, w)]
        ok.sort(key=lambda k: haversine_m(workers[k].lat, workers[k].lng, job.lat, job.lng))
        usable[i] = ok[:candidates_per_job]
        keep.update(usable[i])
    fleet = [workers[k] for k in sorted(keep)]
    if not fleet or not jobs:
        plan.unassigned = [j.id for j in jobs]
        plan.penalties_s = unassigned_penalty_s * len(jobs)
        return plan
    vehicle_of = {w.id: v for v, w in enumerate(fleet)}

    n_v, n_j = len(fleet), len(jobs)
    end = n_v + n_j  # one shared end node: routes stop at their last job, at no cost
    starts, ends = list(range(n_v)), [end] * n_v
    manager = pywrapcp.RoutingIndexManager(n_v + n_j + 1, n_v, starts, ends)
    routing = pywrapcp.RoutingModel(manager)

    # Leg seconds between all places (worker starts, jobs, the free end), per travel mode:
    # integer matrices the callbacks only index into.
    lats = np.array([w.lat for w in fleet] + [j.lat for j in jobs] + [0.0])
    lngs = np.array([w.lng for w in fleet] + [j.lng for j in jobs] + [0.0])
    metres = haversine_matrix(lats, lngs, lats, lngs)
    service = np.array([0] * n_v + [round(j.service_s) for j in jobs] + [0], dtype=np.int64)
    legs: dict[str, np.ndarray] = {}
    for mode in {w.travel_mode for w in fleet}:
        seconds = np.rint(eta.startup_s + metres * eta.circuity / eta.speed_mps(mode))
        seconds[:, :n_v] = 0  # nobody travels to a start
        seconds[:, end] = 0  # nor to the end: a route stops at its last job
        legs[mode] = seconds.astype(np.int64)

    keep_alive: list[Callable[[int, int], int]] = []  # OR-Tools holds no reference

    def register(matrix: np.ndarray) -> int:
        table = matrix.tolist()

        def evaluate(i: int, j: int) -> int:
            return table[manager.IndexToNode(i)][manager.IndexToNode(j)]
        keep_alive.append(evaluate)
        return routing.RegisterTransitCallback(evaluate)

    transit_cb: dict[str, int] = {}
    cost_cb: dict[tuple[str, frozenset[int]], int] = {}
    vehicle_transits: list[int] = []
    for v, w in enumerate(fleet):
        mode = w.travel_mode
        if mode not in transit_cb:  # time: the work at the stop, then the way to the next
            transit_cb[mode] = register(legs[mode] + service[:, None])
        vehicle_transits.append(transit_cb[mode])
        outsider_for = frozenset(n_v + k for k, job in enumerate(jobs)
                                 if penalty_s(job, w, marketplace_penalty_s))
        key = (mode, outsider_for)
        if key not in cost_cb:  # cost: the way, plus the outsider penalty on arrival
            extra = np.zeros(len(lats), dtype=np.int64)
            extra[list(outsider_for)] = marketplace_penalty_s
            cost_cb[key] = register(legs[mode] + extra[None, :])
        routing.SetArcCostEvaluatorOfVehicle(cost_cb[key], v)

    def leg(from_node: int, to_node: int, mode: str) -> int:
        return int(legs[mode][from_node, to_node])

    horizon = int(max(j.window_end_s for j in jobs) + int(service.max()) + 1)
    routing.AddDimensionWithVehicleTransits(vehicle_transits, horizon, horizon, True, "time")
    time = routing.GetDimensionOrDie("time")
    for i, job in enumerate(jobs):
        index = manager.NodeToIndex(n_v + i)
        lo, hi = max(0, math.ceil(job.window_start_s)), math.floor(job.window_end_s)
        vehicles = [vehicle_of[workers[k].id] for k in usable[i]]
        if hi < lo or not vehicles:
            routing.AddDisjunction([index], 0)  # cannot be served: the cascade tries
            routing.VehicleVar(index).SetValues([-1])
            continue
        time.CumulVar(index).SetRange(lo, hi)
        routing.VehicleVar(index).SetValues([-1, *vehicles])  # -1: left out
        routing.AddDisjunction([index], unassigned_penalty_s)

    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = (
        routing_enums_pb2.FirstSolutionStrategy.PARALLEL_CHEAPEST_INSERTION)
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH)
    params.time_limit.FromMilliseconds(max(1, round(time_limit_s * 1000)))
    solution = routing.SolveWithParameters(params)
    if solution is None:  # no feasible plan at all: everything to the cascade
        plan.unassigned = [j.id for j in jobs]
        plan.penalties_s = unassigned_penalty_s * len(jobs)
        return plan

    for v, w in enumerate(fleet):
        # The order is the solver's; the times are the earliest schedule of that order
        # (leave at once, wait only for a window to open), which is what the worker is told.
        clock_s, here, stops = 0, v, []
        index = solution.Value(routing.NextVar(routing.Start(v)))
        while not routing.IsEnd(index):
            node = manager.IndexToNode(index)
            job = jobs[node - n_v]
            arrival = max(clock_s + leg(here, node, w.travel_mode), math.ceil(job.window_start_s))
            if arrival > job.window_end_s:  # never expected: the dimension forbids it
                index = solution.Value(routing.NextVar(index))
                continue
            stops.append((job.id, arrival))
            plan.worker_of[job.id] = w.id
            plan.arrival_s[job.id] = arrival
            plan.travel_s += leg(here, node, w.travel_mode)
            plan.penalties_s += penalty_s(job, w, marketplace_penalty_s)
            clock_s, here = arrival + int(service[node]), node
            index = solution.Value(routing.NextVar(index))
        if stops:
            plan.routes[w.id] = stops
    plan.unassigned = [j.id for j in jobs if j.id not in plan.worker_of]
    plan.penalties_s += unassigned_penalty_s * len(plan.unassigned)
    return plan


def fits_one_day(worker: BatchWorker, jobs: Sequence[WindowJob], eta: EtaModel) -> bool:
    """Whether one worker, starting now from where they are, can reach every job inside its
    window (waiting for a window to open is fine). The accept-time guard for windows handed
    out one by one by the cascade: a worker must not hold two bookings they cannot both
    keep. Exact for a handful of bookings (every order), earliest window first beyond."""
    def feasible(order: Sequence[WindowJob]) -> bool:
        clock_s, lat, lng = 0, worker.lat, worker.lng
        for job in order:
            arrival = max(clock_s + travel_s(eta, lat, lng, job.lat, job.lng,
                                             worker.travel_mode), math.ceil(job.window_start_s))
            if arrival > job.window_end_s:
                return False
            clock_s, lat, lng = arrival + round(job.service_s), job.lat, job.lng
        return True

    if len(jobs) <= 6:
        return any(feasible(order) for order in itertools.permutations(jobs))
    return feasible(sorted(jobs, key=lambda j: (j.window_start_s, j.window_end_s)))
