"""The simulated city: where people live, who works when and how, and what residents ask for.

Everything here is pure and seeded, so the three policies see exactly the same day: the same
requests at the same times and places, the same workers on the same shifts, and, through
`pair_draws`, the same decision by the same worker about the same request (common random
numbers: a difference between policies is the policy's, not the dice's).

The city is a 40 km square around San Francisco with named neighbourhoods of different density
(demand is concentrated where people live densely; workers live more in the cheaper ones).
Simplifications, said once: water is not excluded (a point may fall in the bay), and travel is
the straight line times a circuity factor, so crossing the bay costs what crossing land does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from dispatch.planning.behaviour import (
    DAY_S,
    DURATION_SIGMA,
    STARTUP_SIGMA,
    answer_delay_s,
)
from dispatch.planning.behaviour import willingness as keenness
from geo.eta import EARTH_RADIUS_M

CENTER = (37.7749, -122.4194)
HALF_SIDE_M = 20_000.0


@dataclass(frozen=True)
class Hood:
    """A neighbourhood: a Gaussian blob of homes; demand and worker homes weigh differently."""

    name: str
    x_m: float  # east of CENTER
    y_m: float  # north of CENTER
    sigma_m: float
    demand: float
    supply: float


HOODS: tuple[Hood, ...] = (
    Hood("Downtown/SoMa", 1_500, 1_000, 1_200, 0.20, 0.06),
    Hood("Mission", 0, -2_500, 1_200, 0.13, 0.10),
    Hood("Richmond/Sunset", -7_000, -500, 2_200, 0.14, 0.12),
    Hood("Daly City/South SF", -2_500, -11_000, 2_500, 0.08, 0.17),
    Hood("Oakland", 12_500, 1_500, 2_200, 0.14, 0.20),
    Hood("Berkeley", 11_000, 9_500, 1_800, 0.10, 0.12),
    Hood("Alameda", 14_000, -3_000, 1_500, 0.05, 0.08),
    Hood("Marin", -3_500, 12_500, 2_500, 0.04, 0.05),
)
# Shares of requests and of worker homes spread uniformly over the square (the outskirts).
BACKGROUND_DEMAND = 0.12
BACKGROUND_SUPPLY = 0.10

# Requests per hour of the local day, relative (morning and evening peaks, quiet nights).
DAILY_PROFILE: tuple[float, ...] = (
    0.25, 0.15, 0.10, 0.10, 0.12, 0.25, 0.60, 1.30, 1.70, 1.40, 1.10, 1.00,
    1.00, 1.00, 1.00, 1.10, 1.30, 1.70, 1.90, 1.60, 1.20, 0.90, 0.60, 0.40,
)

# Urgent request mix: leaf slug -> (share of requests in %, median job duration in minutes).
DEMAND: dict[str, tuple[float, float]] = {
    "leak-repair": (14, 60), "drain-unclogging": (8, 45), "water-heater": (4, 90),
    "power-outage": (6, 60), "outlets-switches": (4, 40),
    "lockout": (14, 20), "lock-change": (3, 40),
    "fridge-freezer": (3, 60), "washer-dryer": (3, 60),
    "heating-repair": (5, 75), "ac-repair": (1, 60),
    "broken-window": (3, 60),
    "dog-walking": (12, 45), "pet-sitting": (5, 120), "vet-transport": (4, 75),
    "water-damage-cleanup": (5, 150), "move-out-cleaning": (2, 180),
    "heavy-lifting": (4, 90),
}


@dataclass(frozen=True)
class Trade:
    """What a worker does: the leaves they are verified for, how common the trade is, and
    how people in it get around."""

    slugs: tuple[str, ...]
    share: float
    modes: dict[str, float]


TRADES: dict[str, Trade] = {
    "plumber": Trade(("leak-repair", "drain-unclogging", "water-heater"), 0.24,
                     {"car": 0.8, "bike": 0.2}),
    "electrician": Trade(("power-outage", "outlets-switches"), 0.09, {"car": 0.85, "bike": 0.15}),
    "locksmith": Trade(("lockout", "lock-change"), 0.10, {"car": 0.6, "bike": 0.4}),
    "appliance": Trade(("fridge-freezer", "washer-dryer"), 0.06, {"car": 1.0}),
    "hvac": Trade(("heating-repair", "ac-repair"), 0.06, {"car": 1.0}),
    "glazier": Trade(("broken-window",), 0.03, {"car": 1.0}),
    "pet": Trade(("dog-walking", "pet-sitting", "vet-transport"), 0.22,
                 {"walk": 0.45, "bike": 0.35, "car": 0.2}),
    "cleaner": Trade(("water-damage-cleanup", "move-out-cleaning"), 0.13,
                     {"car": 0.6, "bike": 0.3, "walk": 0.1}),
    "mover": Trade(("heavy-lifting",), 0.07, {"car": 1.0}),
}
SECOND_TRADE_SHARE = 0.4
# Service radius by travel mode (metres, uniform between the bounds).
RADIUS_M: dict[str, tuple[float, float]] = {
    "walk": (2_500, 4_000), "bike": (6_000, 10_000), "car": (12_000, 25_000)}

# Shifts: workers start when there is work (start hour -> share; starts jitter by +-30 min) and
# stay 4 to 10 hours (length -> share), so supply follows the daily profile only roughly.
SHIFT_STARTS: dict[int, float] = {
    5: 0.03, 6: 0.08, 7: 0.12, 8: 0.10, 9: 0.07, 10: 0.06, 11: 0.07, 12: 0.06, 13: 0.05,
    14: 0.07, 15: 0.09, 16: 0.08, 17: 0.05, 18: 0.03, 20: 0.02, 22: 0.02}
SHIFT_HOURS: dict[float, float] = {4: 0.25, 6: 0.25, 8: 0.40, 10: 0.10}

# Property-manager batches: (local hour, rows). Repairs only.
BATCHES: tuple[tuple[float, int], ...] = ((10.0, 25), (15.0, 15))
BATCH_SLUGS = ("leak-repair", "drain-unclogging", "power-outage", "outlets-switches",
               "fridge-freezer", "washer-dryer", "heating-repair", "broken-window", "lock-change")
ORG_PROPERTIES: tuple[tuple[str, str, int], ...] = (
    ("Mission Lofts", "Mission", 16), ("SoMa Towers", "Downtown/SoMa", 16),
    ("Lake Merritt Flats", "Oakland", 16))
PREFERRED_CONTRACTORS = 30
PREFERRED_TRADES = ("plumber", "electrician", "locksmith", "appliance", "hvac", "glazier")

# Real trips differ from the ETA model: start-up (STARTUP_SIGMA), circuity and speed vary
# trip by trip (medians equal the model's), and cars are slower in rush hours
# (`dispatch.planning.behaviour`, which the demo fleet shares).
CIRCUITY_SIGMA = 0.12
SPEED_SIGMA = 0.08


@dataclass(frozen=True)
class SimWorker:
    """A worker's fixed traits for the day: the same in every policy."""

    id: int  # the users.id the database gets
    home: tuple[float, float]
    trades: tuple[str, ...]
    slugs: tuple[str, ...]
    travel_mode: str
    radius_m: int
    shifts: tuple[tuple[float, float], ...]  # [start, end) seconds from the sim day's midnight
    accept_p: float  # willingness to take a near job
    ignore_share: float  # of the offers not taken, the share left unanswered (not declined)
    delay_median_s: float


@dataclass(frozen=True)
class Request:
    """A resident's urgent request (or, with `batch` set, a property manager's batch row)."""

    idx: int
    t_s: float  # seconds from the sim day's midnight (local)
    lat: float
    lng: float
    slug: str
    duration_s: float
    hood: str
    batch: int | None = None
    unit_index: int | None = None


@dataclass(frozen=True)
class Unit:
    """A unit of the simulated property manager's portfolio (batch rows name them)."""

    property_name: str
    label: str
    lat: float
    lng: float


@dataclass
class City:
    """The seeded day every policy replays."""

    seed: int
    day_start: datetime  # local midnight of the simulated day, timezone-aware
    start_s: float
    end_s: float  # requests arrive in [start_s, end_s)
    workers: list[SimWorker]
    requests: list[Request]
    units: list[Unit]
    preferred: list[int]
    batches: list[list[Request]] = field(default_factory=list)


def to_latlng(x_m: float, y_m: float) -> tuple[float, float]:
    """Metres east/north of CENTER to degrees (equirectangular; fine over 20 km)."""
    lat = CENTER[0] + math.degrees(y_m / EARTH_RADIUS_M)
    lng = CENTER[1] + math.degrees(x_m / (EARTH_RADIUS_M * math.cos(math.radians(CENTER[0]))))
    return lat, lng


def _place(rng: np.random.Generator, weights: list[float], background: float,
           ) -> tuple[float, float, str]:
    """A point: in a neighbourhood (by weight) or, with `background` probability, anywhere."""
    if rng.random() < background:
        x, y = rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, 2)
        name = "outskirts"
    else:
        hood = HOODS[int(rng.choice(len(HOODS), p=weights))]
        x = hood.x_m + rng.normal(0, hood.sigma_m)
        y = hood.y_m + rng.normal(0, hood.sigma_m)
        name = hood.name
    x = float(np.clip(x, -HALF_SIDE_M, HALF_SIDE_M))
    y = float(np.clip(y, -HALF_SIDE_M, HALF_SIDE_M))
    lat, lng = to_latlng(x, y)
    return lat, lng, name


def _normalised(values: list[float]) -> list[float]:
    total = sum(values)
    return [v / total for v in values]


def _shift_pieces(start_h: float, length_h: float, horizon_s: float,
                  ) -> tuple[tuple[float, float], ...]:
    """The shift as it repeats every day, clipped to [0, horizon): a shift that crosses
    midnight shows up as yesterday's tail at the start and tonight's start at the end."""
    pieces = []
    for day in (-1, 0, 1):
        a = day * DAY_S + start_h * 3600
        b = a + length_h * 3600
        a, b = max(a, 0.0), min(b, horizon_s)
        if b > a:
            pieces.append((a, b))
    return tuple(pieces)


def build_city(seed: int, n_workers: int, requests_per_day: float, start_h: float,
               hours: float, horizon_s: float, day_start: datetime,
               available_slugs: set[str], batches: bool = True) -> City:
    """The whole day, from the seed alone (and the categories the database really has).
    Workers, requests and the property manager's portfolio draw from separate streams, so
    changing the number of workers leaves the demand exactly as it was."""
    rng = np.random.default_rng([seed, 1])
    supply_w = _normalised([h.supply for h in HOODS])
    demand_w = _normalised([h.demand for h in HOODS])

    trade_names = [t for t, spec in TRADES.items() if any(s in available_slugs
                                                           for s in spec.slugs)]
    trade_p = _normalised([TRADES[t].share for t in trade_names])
    starts, start_p = list(SHIFT_STARTS), _normalised(list(SHIFT_STARTS.values()))
    len_h, len_p = list(SHIFT_HOURS), _normalised(list(SHIFT_HOURS.values()))
    workers: list[SimWorker] = []
    for i in range(n_workers):
        lat, lng, _ = _place(rng, supply_w, BACKGROUND_SUPPLY)
        primary = trade_names[int(rng.choice(len(trade_names), p=trade_p))]
        trades = [primary]
        if rng.random() < SECOND_TRADE_SHARE:
            other = [t for t in trade_names if t != primary]
            trades.append(other[int(rng.integers(len(other)))])
        modes = TRADES[primary].modes
        mode = str(rng.choice(list(modes), p=_normalised(list(modes.values()))))
        slugs = sorted({s for t in trades for s in TRADES[t].slugs if s in available_slugs
                        and not (s == "vet-transport" and mode == "walk")})
        lo, hi = RADIUS_M[mode]
        s_start = starts[int(rng.choice(len(starts), p=start_p))] + rng.uniform(-0.5, 0.5)
        s_len = len_h[int(rng.choice(len(len_h), p=len_p))]
        workers.append(SimWorker(
            id=i + 1, home=(lat, lng), trades=tuple(trades), slugs=tuple(slugs),
            travel_mode=mode, radius_m=int(rng.uniform(lo, hi)),
            shifts=_shift_pieces(s_start, s_len, horizon_s),
            accept_p=float(rng.beta(8, 2.5)), ignore_share=float(rng.beta(2, 4)),
            delay_median_s=float(rng.uniform(4, 16))))

    rng = np.random.default_rng([seed, 2])
    slugs = [s for s in DEMAND if s in available_slugs]
    slug_p = _normalised([DEMAND[s][0] for s in slugs])
    mean_profile = sum(DAILY_PROFILE) / len(DAILY_PROFILE)
    start_s, end_s = start_h * 3600, (start_h + hours) * 3600
    requests: list[Request] = []
    hour_start = math.floor(start_s / 3600) * 3600
    t0 = hour_start
    while t0 < end_s:
        rate = requests_per_day / 24 * DAILY_PROFILE[int(t0 // 3600) % 24] / mean_profile
        times = sorted(rng.uniform(t0, t0 + 3600, rng.poisson(rate)))
        for t in times:
            lat, lng, hood = _place(rng, demand_w, BACKGROUND_DEMAND)
            slug = slugs[int(rng.choice(len(slugs), p=slug_p))]
            duration = 60 * DEMAND[slug][1] * float(rng.lognormal(0, DURATION_SIGMA))
            if start_s <= t < end_s:
                requests.append(Request(len(requests), float(t), lat, lng, slug, duration, hood))
        t0 += 3600

    rng = np.random.default_rng([seed, 3])
    units: list[Unit] = []
    hood_by_name = {h.name: h for h in HOODS}
    for prop_name, hood_name, count in ORG_PROPERTIES:
        hood = hood_by_name[hood_name]
        x = hood.x_m + rng.normal(0, hood.sigma_m / 2)
        y = hood.y_m + rng.normal(0, hood.sigma_m / 2)
        lat, lng = to_latlng(x, y)
        for k in range(count):
            units.append(Unit(prop_name, f"{k // 4 + 1}{'ABCD'[k % 4]}", lat, lng))
    eligible = [w.id for w in workers if w.trades[0] in PREFERRED_TRADES]
    preferred = sorted(int(x) for x in rng.choice(eligible, min(PREFERRED_CONTRACTORS,
                                                                len(eligible)), replace=False))
    city = City(seed=seed, day_start=day_start, start_s=start_s, end_s=end_s, workers=workers,
                requests=requests, units=units, preferred=preferred)
    if batches:
        batch_slugs = [s for s in BATCH_SLUGS if s in available_slugs]
        idx = 1_000_000  # batch rows get their own index range for the pair draws
        for b, (hour, rows) in enumerate(BATCHES):
            t = hour * 3600
            picks = rng.choice(len(units), rows, replace=False)
            if not start_s <= t < end_s:
                continue
            batch = []
            for k in picks:
                slug = batch_slugs[int(rng.integers(len(batch_slugs)))]
                duration = 60 * DEMAND[slug][1] * float(rng.lognormal(0, DURATION_SIGMA))
                u = units[int(k)]
                batch.append(Request(idx, t, u.lat, u.lng, slug, duration, u.property_name,
                                     batch=b, unit_index=int(k)))
                idx += 1
            city.batches.append(batch)
    return city


@dataclass(frozen=True)
class PairDraw:
    """What one worker does about one request, whichever policy asks, and how their trip to
    it would go: the same numbers in every policy."""

    u_accept: float  # accept if below the worker's (ETA-dependent) willingness
    u_ignore: float  # if not accepting: leave it unanswered if below the ignore share
    delay_s: float
    startup_factor: float
    circuity_factor: float
    speed_factor: float


def pair_draws(seed: int, worker_id: int, request_idx: int, delay_median_s: float) -> PairDraw:
    rng = random.Random(f"{seed}:{worker_id}:{request_idx}")
    return PairDraw(
        u_accept=rng.random(), u_ignore=rng.random(),
        delay_s=answer_delay_s(delay_median_s, rng.gauss(0, 1)),
        startup_factor=math.exp(rng.gauss(0, STARTUP_SIGMA)),
        circuity_factor=math.exp(rng.gauss(0, CIRCUITY_SIGMA)),
        speed_factor=math.exp(rng.gauss(0, SPEED_SIGMA)))


def willingness(worker: SimWorker, eta_s: float) -> float:
    """Workers take near jobs more readily (`dispatch.planning.behaviour.willingness`)."""
    return keenness(worker.accept_p, eta_s)


def local_midnight(tz: str, date: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(date).replace(tzinfo=ZoneInfo(tz))
