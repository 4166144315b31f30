"""The ETA model: road distance is the straight line times a circuity factor, at a travel speed.

Kept deliberately simple and pure so the same numbers come out of SQL (matching), Python
(live tracking) and the simulation; a routing engine can replace `road_distance_m` later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

EARTH_RADIUS_M = 6_371_008.8


class TravelMode(StrEnum):
    WALK = "walk"
    BIKE = "bike"
    CAR = "car"


DEFAULT_SPEEDS_KMH: dict[TravelMode, float] = {
    TravelMode.WALK: 4.7,
    TravelMode.BIKE: 15.0,
    TravelMode.CAR: 28.0,
}


@dataclass(frozen=True)
class EtaModel:
    """Speeds per travel mode, the city's circuity factor and a fixed start-up time."""

    speeds_kmh: dict[TravelMode, float] = field(default_factory=lambda: dict(DEFAULT_SPEEDS_KMH))
    circuity: float = 1.3
    startup_s: float = 300.0

    def speed_mps(self, mode: TravelMode | str) -> float:
        return self.speeds_kmh[TravelMode(mode)] / 3.6

    def road_distance_m(self, straight_m: float) -> float:
        return straight_m * self.circuity

    def eta_seconds(self, straight_m: float, mode: TravelMode | str, *,
                    set_out: bool = False) -> float:
        """Seconds from now until a worker this far away, travelling this way, is at the door.
        The start-up time counts until they have set out: booking, accept and the first
        position fixes then promise the same arrival."""
        startup = 0.0 if set_out else self.startup_s
        return startup + self.road_distance_m(straight_m) / self.speed_mps(mode)

    @classmethod
    def from_setting(cls, speeds: str | None, circuity: float, startup_s: float) -> EtaModel:
        """Build from the `walk=4.7,bike=15,car=28` form used in environment variables."""
        parsed = dict(DEFAULT_SPEEDS_KMH)
        for part in (speeds or "").split(","):
            if not part.strip():
                continue
            name, _, value = part.partition("=")
            parsed[TravelMode(name.strip())] = float(value)
        return cls(speeds_kmh=parsed, circuity=circuity, startup_s=startup_s)


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance; close to PostGIS geography distance (sphere vs spheroid, <0.5%)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))
