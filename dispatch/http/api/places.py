"""Address search for the Book page: suggestions while typing, the address under the pin."""

from __future__ import annotations

import math

from flask import request
from pydantic import BaseModel

from dispatch.db.models import User
from dispatch.domain.errors import MalformedInput, invalid
from dispatch.http.api import bp
from dispatch.http.api.routing import registry
from dispatch.services import places

MAX_QUERY = 300


class PlaceOut(BaseModel):
    label: str
    lat: float
    lng: float


class PlacesOut(BaseModel):
    """`available` is false when no address service answers: place the pin by hand."""

    available: bool
    places: list[PlaceOut]


def _shape(lookup: places.Lookup) -> PlacesOut:
    return PlacesOut(available=lookup.available,
                     places=[PlaceOut(label=c.label, lat=c.lat, lng=c.lng)
                             for c in lookup.candidates])


def _coordinate(name: str, limit: float) -> float:
    raw = request.args.get(name)
    if raw is None or not raw.strip():
        raise invalid(name, "location.required", MalformedInput)
    try:
        value = float(raw)
    except ValueError:
        raise invalid(name, "location.invalid", MalformedInput) from None
    if not math.isfinite(value) or abs(value) > limit:
        raise invalid(name, "location.invalid", MalformedInput)
    return value


@registry.route(bp, "/places/search", "GET", summary="Addresses matching `q`, in the service "
                "area, best first", response=PlacesOut, errors=[400])
def search_places(user: User) -> PlacesOut:
    text = (request.args.get("q") or "").strip()
    if not text:
        raise invalid("q", "query.required", MalformedInput)
    if len(text) > MAX_QUERY or "\x00" in text:
        raise invalid("q", "text.too_long", MalformedInput, max_length=MAX_QUERY)
    return _shape(places.search_addresses(text))


@registry.route(bp, "/places/reverse", "GET", summary="The address at `lat`, `lng`, if any",
                response=PlacesOut, errors=[400])
def reverse_place(user: User) -> PlacesOut:
    return _shape(places.address_at(_coordinate("lat", 90), _coordinate("lng", 180)))
