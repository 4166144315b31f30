"""Where the service is offered: a GeoJSON (Multi)Polygon, and a pure point-in-polygon test.

Pure Python rather than PostGIS because the check must run before anything touches the
database (a refused pin stores nothing) and on units that are not saved yet; a city outline
of a few hundred vertices costs microseconds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geo.geocoding import BoundingBox

Ring = list[tuple[float, float]]  # (lng, lat) pairs, GeoJSON order


@dataclass(frozen=True)
class ServiceArea:
    name: str
    polygons: list[list[Ring]]  # each: outer ring, then holes

    @classmethod
    def from_geojson(cls, document: dict[str, Any], name: str = "") -> ServiceArea:
        polygons: list[list[Ring]] = []
        for geometry in _geometries(document):
            if geometry.get("type") == "Polygon":
                polygons.append(_rings(geometry["coordinates"]))
            elif geometry.get("type") == "MultiPolygon":
                polygons.extend(_rings(p) for p in geometry["coordinates"])
        if not polygons:
            raise ValueError("the service area holds no Polygon or MultiPolygon")
        if not name:
            name = str(document.get("properties", {}).get("name") or
                       next((f.get("properties", {}).get("name") for f in
                             document.get("features", []) if f.get("properties")), "") or "")
        return cls(name, polygons)

    @classmethod
    def from_file(cls, path: Path | str) -> ServiceArea:
        with open(path, encoding="utf-8") as f:
            return cls.from_geojson(json.load(f))

    def contains(self, lat: float, lng: float) -> bool:
        return any(_inside(lng, lat, polygon[0])
                   and not any(_inside(lng, lat, hole) for hole in polygon[1:])
                   for polygon in self.polygons)

    def bounds(self) -> BoundingBox:
        points = [p for polygon in self.polygons for p in polygon[0]]
        return BoundingBox(min(p[0] for p in points), min(p[1] for p in points),
                           max(p[0] for p in points), max(p[1] for p in points))


def _geometries(document: dict[str, Any]) -> list[dict[str, Any]]:
    kind = document.get("type")
    if kind == "FeatureCollection":
        return [g for f in document.get("features", []) for g in _geometries(f)]
    if kind == "Feature":
        return _geometries(document.get("geometry") or {})
    if kind == "GeometryCollection":
        return [g for part in document.get("geometries", []) for g in _geometries(part)]
    return [document]


def _rings(coordinates: list[list[list[float]]]) -> list[Ring]:
    return [[(float(p[0]), float(p[1])) for p in ring] for ring in coordinates]


def _inside(x: float, y: float, ring: Ring) -> bool:
    """Even-odd ray casting; a closing vertex equal to the first one is harmless."""
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside
