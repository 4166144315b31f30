"""Address search for the Book page: suggestions while typing, the address under the pin."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from dispatch.db.models import User
from dispatch.http.api import bp
from dispatch.http.api.query import ASCII_FLOAT, QueryParams
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


class SearchQuery(QueryParams):
    q: Annotated[str, Field(min_length=1, max_length=MAX_QUERY,
                            description="part of an address, as typed")]


class ReverseQuery(QueryParams):
    lat: Annotated[float, Field(ge=-90, le=90, description="WGS84 latitude"), ASCII_FLOAT]
    lng: Annotated[float, Field(ge=-180, le=180, description="WGS84 longitude"), ASCII_FLOAT]


@registry.route(bp, "/places/search", "GET", summary="Addresses matching `q`, in the service "
                "area, best first", response=PlacesOut, query=SearchQuery)
def search_places(user: User, query: SearchQuery) -> PlacesOut:
    return _shape(places.search_addresses(query.q))


@registry.route(bp, "/places/reverse", "GET", summary="The address at `lat`, `lng`, if any",
                response=PlacesOut, query=ReverseQuery)
def reverse_place(user: User, query: ReverseQuery) -> PlacesOut:
    return _shape(places.address_at(query.lat, query.lng))
