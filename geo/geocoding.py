"""Addresses to points and back, behind a seam: the product talks to a `Geocoder`, and the one
provider here speaks Nominatim's HTTP API (`/search`, `/reverse`, `format=jsonv2`), so the same
code serves a self-hosted Nominatim, a commercial Nominatim-compatible service, or the local
demo gazetteer (`geo.gazetteer`) that `make run` and the tests start.

A geocoder is a convenience, never a gate: when the provider is down or slow it raises
`GeocoderUnavailable` within its timeout, and callers go on with the pin alone."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Candidate:
    """A place the provider knows: the text to show, and where it is."""

    label: str
    lat: float
    lng: float


@dataclass(frozen=True)
class BoundingBox:
    """west, south, east, north in degrees: Nominatim's `viewbox` order is x1,y1,x2,y2."""

    west: float
    south: float
    east: float
    north: float

    def viewbox(self) -> str:
        return f"{self.west!r},{self.south!r},{self.east!r},{self.north!r}"


class GeocoderUnavailable(Exception):
    """The provider could not answer (down, slow, or answering nonsense)."""


class Geocoder(Protocol):
    def search(self, text: str, limit: int = 5) -> list[Candidate]:
        """Places matching `text`, best first; empty when nothing matches."""
        ...

    def reverse(self, lat: float, lng: float) -> Candidate | None:
        """The address at a point; None where the provider knows none."""
        ...


class NominatimGeocoder:
    """Nominatim's HTTP API. `area` biases and bounds searches to the place served (a
    typed '1 Market St' must not resolve to another city's Market Street)."""

    def __init__(self, base_url: str, *, user_agent: str, timeout_s: float = 3.0,
                 area: BoundingBox | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self.area = area

    def search(self, text: str, limit: int = 5) -> list[Candidate]:
        params: dict[str, str | int] = {"format": "jsonv2", "q": text, "limit": limit}
        if self.area is not None:
            params.update(viewbox=self.area.viewbox(), bounded=1)
        answer = self._get("/search", params)
        if not isinstance(answer, list):
            raise GeocoderUnavailable("search answered something other than a list")
        return [_candidate(item) for item in answer]

    def reverse(self, lat: float, lng: float) -> Candidate | None:
        answer = self._get("/reverse", {"format": "jsonv2", "lat": repr(lat), "lon": repr(lng)})
        if not isinstance(answer, dict):
            raise GeocoderUnavailable("reverse answered something other than an object")
        if "error" in answer:  # Nominatim's way of saying "nothing here"
            return None
        return _candidate(answer)

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers={"User-Agent": self.user_agent,
                                                       "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read(1_000_000))
        except urllib.error.HTTPError as exc:
            raise GeocoderUnavailable(f"{path} answered HTTP {exc.code}") from exc
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
            raise GeocoderUnavailable(f"{path} did not answer: {exc}") from exc
        except ValueError as exc:  # not JSON
            raise GeocoderUnavailable(f"{path} answered something other than JSON") from exc


def _candidate(item: Any) -> Candidate:
    try:
        return Candidate(str(item["display_name"]), float(item["lat"]), float(item["lon"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise GeocoderUnavailable(f"a result lacks display_name/lat/lon: {item!r:.200}") from exc
