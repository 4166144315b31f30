"""A small Nominatim-compatible server over a demo gazetteer file, for machines without the
internet: `make run` starts it (unless GEOCODER_URL is set) and the tests talk to it through
the real provider class, `geo.geocoding.NominatimGeocoder`.

It answers the two calls the product makes, in Nominatim's `jsonv2` shape:
  /search?format=jsonv2&q=TEXT&limit=N[&viewbox=W,S,E,N&bounded=1]
  /reverse?format=jsonv2&lat=LAT&lon=LON
A typed address matches a place when the place's name or street address is all in it
('2100 Mission St #1A, San Francisco' finds 2100 Mission Street), or when what was typed so
far starts the place's words ('city ha' finds City Hall, for suggestions while typing).

    python -m geo.gazetteer --port 8070 [--host 127.0.0.1] [--data geo/data/sf_gazetteer.json]
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from geo.eta import haversine_m

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "sf_gazetteer.json"
# Nominatim's reverse answers the nearest object; a demo file this sparse must not name a
# house a kilometre away, so beyond this it answers "Unable to geocode" as Nominatim does at sea.
REVERSE_RADIUS_M = 150.0
ABBREVIATIONS = {"st": "street", "ave": "avenue", "av": "avenue", "blvd": "boulevard",
                 "dr": "drive", "pl": "place", "rd": "road", "ln": "lane", "ct": "court",
                 "cir": "circle", "hwy": "highway", "sf": "san francisco", "n": "north",
                 "s": "south", "e": "east", "w": "west"}


def words(text: str) -> list[str]:
    """Lower-case words without accents or punctuation, abbreviations spelled out."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    out: list[str] = []
    for word in re.findall(r"[a-z0-9]+", plain.replace("'", "")):
        out.extend(ABBREVIATIONS.get(word, word).split())
    return out


@dataclass(frozen=True)
class Place:
    place_id: int
    display_name: str
    lat: float
    lon: float
    category: str
    type: str
    keys: tuple[tuple[str, ...], ...]  # the name, the street address: each must be all there
    all_words: frozenset[str]
    address: dict[str, str]

    def jsonv2(self, rank: int = 0) -> dict[str, Any]:
        return {"place_id": self.place_id, "licence": "demo data, not OpenStreetMap",
                "osm_type": "node", "osm_id": self.place_id, "lat": f"{self.lat:.7f}",
                "lon": f"{self.lon:.7f}", "category": self.category, "type": self.type,
                "place_rank": 30, "importance": round(1.0 - rank / 100, 3),
                "addresstype": self.type, "name": self.address.get("name", ""),
                "display_name": self.display_name, "address": self.address,
                "boundingbox": [f"{self.lat - 0.0005:.7f}", f"{self.lat + 0.0005:.7f}",
                                f"{self.lon - 0.0005:.7f}", f"{self.lon + 0.0005:.7f}"]}


class Gazetteer:
    def __init__(self, document: dict[str, Any]) -> None:
        city, state = document.get("city", ""), document.get("state", "")
        country = document.get("country", "")
        self.places: list[Place] = []
        for n, item in enumerate(document["places"], start=1):
            name, street = item.get("name", ""), item.get("street", "")
            parts = [name, street, item.get("district", ""), city, state, item.get("postcode", ""),
                     country]
            display = ", ".join(p for p in parts if p)
            address = {k: v for k, v in (("name", name), ("road", street),
                                         ("suburb", item.get("district", "")), ("city", city),
                                         ("state", state), ("postcode", item.get("postcode", "")),
                                         ("country", country)) if v}
            keys = tuple(tuple(words(k)) for k in (name, street) if k)
            self.places.append(Place(n, display, float(item["lat"]), float(item["lon"]),
                                     item.get("category", "place"), item.get("type", "yes"),
                                     keys, frozenset(words(display)), address))

    @classmethod
    def from_file(cls, path: Path | str) -> Gazetteer:
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def search(self, text: str, limit: int = 10,
               box: tuple[float, float, float, float] | None = None) -> list[Place]:
        typed = words(text)
        if not typed:
            return []
        typed_set = set(typed)
        scored: list[tuple[int, int, Place]] = []
        for place in self.places:
            if box is not None and not _in_box(place, box):
                continue
            # A whole name or street address inside what was typed: the best kind of match,
            # and the longer the key, the better.
            whole = max((len(k) for k in place.keys if set(k) <= typed_set), default=0)
            if whole:
                scored.append((0, -whole, place))
            elif _starts_words(typed, place.all_words):
                scored.append((1, 0, place))
        scored.sort(key=lambda s: (s[0], s[1], s[2].place_id))
        return [s[2] for s in scored[:limit]]

    def reverse(self, lat: float, lon: float) -> Place | None:
        nearest = min(self.places, key=lambda p: haversine_m(lat, lon, p.lat, p.lon),
                      default=None)
        if nearest is None or haversine_m(lat, lon, nearest.lat, nearest.lon) > REVERSE_RADIUS_M:
            return None
        return nearest


def _starts_words(typed: list[str], known: frozenset[str]) -> bool:
    """Every typed word is a known word, the last one possibly unfinished."""
    *done, last = typed
    return all(w in known for w in done) and any(k.startswith(last) for k in known)


def _in_box(place: Place, box: tuple[float, float, float, float]) -> bool:
    x1, y1, x2, y2 = box
    return min(x1, x2) <= place.lon <= max(x1, x2) and min(y1, y2) <= place.lat <= max(y1, y2)


def make_handler(gazetteer: Gazetteer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "dispatch-gazetteer/1"

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if url.path == "/search":
                    self._answer(200, self._search(query))
                elif url.path == "/reverse":
                    self._answer(200, self._reverse(query))
                elif url.path in ("/", "/status"):
                    self._answer(200, {"status": 0, "message": "OK"})
                else:
                    self._answer(404, {"error": f"no such endpoint: {url.path}"})
            except (KeyError, ValueError) as exc:
                self._answer(400, {"error": {"code": 400, "message": f"bad parameter: {exc}"}})

        def _search(self, query: dict[str, str]) -> list[dict[str, Any]]:
            limit = max(1, min(int(query.get("limit", "10")), 50))
            box = None
            if query.get("viewbox") and query.get("bounded") == "1":
                x1, y1, x2, y2 = (float(v) for v in query["viewbox"].split(","))
                box = (x1, y1, x2, y2)
            found = gazetteer.search(query.get("q", ""), limit, box)
            return [p.jsonv2(rank) for rank, p in enumerate(found)]

        def _reverse(self, query: dict[str, str]) -> dict[str, Any]:
            place = gazetteer.reverse(float(query["lat"]), float(query["lon"]))
            return place.jsonv2() if place else {"error": "Unable to geocode"}

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            print(f"{self.address_string()} {format % args}", flush=True)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port),
                                 make_handler(Gazetteer.from_file(args.data)))
    print(f"gazetteer listening on http://{args.host}:{args.port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
