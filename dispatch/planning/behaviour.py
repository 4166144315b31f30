"""How people on the supply side behave: how keen a worker is on a job at some distance, how
long they take to answer an offer, and how rush hours slow cars down.

Shared by the city simulation (`bench/sim`), which measures policies against these people,
and the demo fleet (`dispatch.services.demo_fleet`), which plays them in `make run`, so the
demo city behaves like the simulated one. Pure: plain numbers in, plain numbers out; the
caller brings its own random draws, so the simulation keeps its common random numbers."""

from __future__ import annotations

import math

from geo.eta import TravelMode

DAY_S = 86_400.0
# Cars are slower than the ETA model in rush hours (local time).
RUSH_HOURS: tuple[tuple[float, float], ...] = ((7.0, 9.5), (16.5, 19.0))
RUSH_CAR_SPEED_FACTOR = 0.8
# Answer delays spread lognormally around a worker's own median.
DELAY_SIGMA = 0.6
# Real trips differ from the ETA model trip by trip (medians equal the model's).
STARTUP_SIGMA = 0.35
# Time on site spreads lognormally around the trade's median.
DURATION_SIGMA = 0.4


def willingness(accept_p: float, eta_s: float) -> float:
    """Workers take near jobs more readily: half as keen on a job 90 minutes away."""
    return accept_p * (1 - 0.5 * min(1.0, eta_s / 5_400))


def answer_delay_s(median_s: float, z: float) -> float:
    """Seconds a worker takes to answer an offer, for a standard normal draw `z`."""
    return median_s * math.exp(DELAY_SIGMA * z)


def traffic_factor(mode: str, local_s: float) -> float:
    """Speed multiplier for this travel mode at this many seconds after local midnight."""
    hour = (local_s % DAY_S) / 3600
    if mode == TravelMode.CAR.value and any(a <= hour < b for a, b in RUSH_HOURS):
        return RUSH_CAR_SPEED_FACTOR
    return 1.0
