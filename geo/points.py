"""Points as the database stores them: WGS84 (SRID 4326) geography."""

from __future__ import annotations

from geoalchemy2.elements import WKTElement


def wkt_point(lat: float, lng: float) -> WKTElement:
    """A point for a geography column; note WKT order is longitude first."""
    return WKTElement(f"POINT({lng!r} {lat!r})", srid=4326)
