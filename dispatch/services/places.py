"""Where a job may be and what its address says: the service area, and the typed address
checked against the pin through the geocoder seam (`geo.geocoding`).

A pin outside the area is refused before anything is stored: nobody can be sent there. An
address that the geocoder places far from the pin, or cannot find, is asked about rather than
booked silently, because a worker sent to the pin would knock at the wrong door; the resident
may answer "the pin is right" (`pin_confirmed`). A geocoder that is down or slow never stops
a booking: the pin is used and the address is kept for the worker to read."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache

from dispatch.domain.errors import FieldProblem, InvalidInput
from dispatch.services.context import settings
from geo.eta import haversine_m
from geo.geocoding import Candidate, Geocoder, GeocoderUnavailable, NominatimGeocoder
from geo.service_area import ServiceArea

log = logging.getLogger(__name__)
SUGGESTIONS = 5
# After a failure the geocoder is left alone this long (per process): a booking checks the
# address inside its transaction, and a provider that times out on every call would hold a
# database connection for the whole timeout of every booking.
GEOCODER_PAUSE_S = 30.0
_paused_until: dict[str, float] = {}


@lru_cache(maxsize=4)
def _load_area(path: str) -> ServiceArea:
    return ServiceArea.from_file(path)


def service_area() -> ServiceArea | None:
    """The configured area, or None when the service is offered everywhere."""
    path = settings().service_area_geojson
    return _load_area(path) if path else None


def geocoder() -> Geocoder | None:
    """The configured provider; None when there is none, or while it is paused after a
    failure (see `_failed`)."""
    s = settings()
    if not s.geocoder_url or _paused_until.get(s.geocoder_url, 0.0) > time.monotonic():
        return None
    area = service_area()
    return NominatimGeocoder(s.geocoder_url, user_agent=s.geocoder_user_agent,
                             timeout_s=s.geocoder_timeout_s,
                             area=area.bounds() if area else None)


def outside_area_problem(lat: float, lng: float) -> str | None:
    """The sentence that refuses a place outside the area, or None when it is served."""
    area = service_area()
    if area is None or area.contains(lat, lng):
        return None
    where = area.name or "the area we cover"
    return f"We do not serve this place yet: it is outside {where}, where our workers are."


def check_in_service_area(lat: float, lng: float, field_name: str = "location") -> None:
    problem = outside_area_problem(lat, lng)
    if problem is not None:
        raise InvalidInput("outside_service_area", problem, [FieldProblem(field_name, problem)])


def check_job_place(lat: float, lng: float, address: str | None, pin_confirmed: bool) -> None:
    """Booking's one call: the pin must be served, and the typed address must agree with
    it unless the resident has confirmed the pin."""
    check_in_service_area(lat, lng)
    if address and not pin_confirmed:
        _check_address_agrees(lat, lng, address)


def _check_address_agrees(lat: float, lng: float, address: str) -> None:
    provider = geocoder()
    if provider is None:
        return
    try:
        found = provider.search(address, limit=1)
    except GeocoderUnavailable as exc:
        _failed("address not checked", exc)
        return
    if not found:
        raise _ask_about_address(
            "We could not find this address on the map. Check it, or, if the pin is on the "
            "right place, confirm that the pin is right.", None)
    best = found[0]
    distance = haversine_m(lat, lng, best.lat, best.lng)
    if distance > settings().geocode_max_mismatch_m:
        raise _ask_about_address(
            f"This address is about {_distance_text(distance)} from the pin. Move the pin to "
            f"the address, or, if the pin is on the right place, confirm that the pin is right.",
            best)


def _failed(what: str, exc: GeocoderUnavailable) -> None:
    url = settings().geocoder_url
    _paused_until[url] = time.monotonic() + GEOCODER_PAUSE_S
    log.warning("%s: the geocoder at %s failed (%s); it is left alone for %.0f s", what, url,
                exc, GEOCODER_PAUSE_S)


def _ask_about_address(sentence: str, found: Candidate | None) -> InvalidInput:
    extra: dict[str, object] = {"confirm_with": "pin_confirmed"}
    if found is not None:
        extra["address_found"] = {"label": found.label, "lat": found.lat, "lng": found.lng}
    return InvalidInput("address_unconfirmed", sentence, [FieldProblem("address", sentence)],
                        extra)


def _distance_text(metres: float) -> str:
    if metres < 1000:
        return f"{round(metres, -1):.0f} m"
    return f"{metres / 1000:.1f} km"


@dataclass
class Lookup:
    """What the page's address box shows: `available` false when the geocoder is missing or
    down (the page says to use the pin)."""

    available: bool
    candidates: list[Candidate] = field(default_factory=list)


def search_addresses(text: str) -> Lookup:
    provider = geocoder()
    if provider is None:
        return Lookup(False)
    try:
        found = provider.search(text, limit=SUGGESTIONS)
    except GeocoderUnavailable as exc:
        _failed("address search unavailable", exc)
        return Lookup(False)
    return Lookup(True, [c for c in found if outside_area_problem(c.lat, c.lng) is None])


def address_at(lat: float, lng: float) -> Lookup:
    provider = geocoder()
    if provider is None:
        return Lookup(False)
    try:
        found = provider.reverse(lat, lng)
    except GeocoderUnavailable as exc:
        _failed("reverse lookup unavailable", exc)
        return Lookup(False)
    return Lookup(True, [found] if found else [])
