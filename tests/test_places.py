"""Where a job may be: the geocoder seam against the demo gazetteer over HTTP, the service
area (a pin in the Pacific stores nothing), and a typed address that disagrees with the pin
asked about, then booked once the resident says the pin is right."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from dispatch.infra.config import Settings
from geo.geocoding import GeocoderUnavailable, NominatimGeocoder
from geo.service_area import ServiceArea
from tests.gazetteer import GazetteerServer
from tests.helpers import CENTER, Factory, book, count, job_body, set_settings, sql
from tests.live import free_port
from tests.test_portfolio import import_csv, manager_with_property

AREA = ServiceArea.from_file("geo/data/sf_service_area.geojson")
PACIFIC = (37.7600, -122.5900)  # about 7 km west of Ocean Beach
BAY = (37.8000, -122.3700)      # between the Embarcadero and Treasure Island
CITY_HALL = (37.7793, -122.41925)
MISSION_LOFTS = (37.76325, -122.41945)
STORED = ("jobs", "job_events", "offers", "notifications")


def provider(url: str, timeout_s: float = 3.0) -> NominatimGeocoder:
    return NominatimGeocoder(url, user_agent="dispatch-tests/1", timeout_s=timeout_s,
                             area=AREA.bounds())


def stored(app: Flask) -> dict[str, int]:
    return {table: count(app, table) for table in STORED}


# --- the provider against the local gazetteer, and against providers that fail ---------------

def test_provider_finds_addresses_and_reverses_pins_through_the_gazetteer(
        gazetteer: GazetteerServer) -> None:
    geocoder = provider(gazetteer.url)
    found = geocoder.search("2100 Mission St #1A, San Francisco")
    assert found and found[0].label.startswith("Mission Lofts, 2100 Mission Street")
    assert (found[0].lat, found[0].lng) == pytest.approx(MISSION_LOFTS, abs=1e-6)
    typing = geocoder.search("city ha")  # suggestions while typing
    assert typing[0].label.startswith("San Francisco City Hall")
    assert geocoder.search("99 Nowhere Road") == []
    at_city_hall = geocoder.reverse(CITY_HALL[0] + 0.0003, CITY_HALL[1])  # 33 m north
    assert at_city_hall is not None and at_city_hall.label.startswith("San Francisco City Hall")
    assert geocoder.reverse(*PACIFIC) is None


class _Recorder(BaseHTTPRequestHandler):
    """A provider that records what it is sent and answers what the test sets."""

    answer: tuple[int, bytes] = (200, b"[]")
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("User-Agent", "")))
        status, body = type(self).answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Recorder", (_Recorder,), {"seen": [], "answer": (200, b"[]")})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_provider_sends_nominatims_parameters_and_user_agent(
        recorder: tuple[str, type[_Recorder]]) -> None:
    url, handler = recorder
    assert provider(url).search("1 Market St") == []
    path, agent = handler.seen[-1]
    assert path.startswith("/search?") and "format=jsonv2" in path and "q=1+Market+St" in path
    assert "viewbox=-122.5" in path and "bounded=1" in path and "limit=5" in path
    assert agent == "dispatch-tests/1"
    handler.answer = (200, b'{"error": "Unable to geocode"}')
    assert provider(url).reverse(37.7, -122.4) is None
    assert handler.seen[-1][0].startswith("/reverse?format=jsonv2&lat=37.7&lon=-122.4")


@pytest.mark.parametrize("answer", [(500, b"oops"), (200, b"<html>busy</html>"),
                                    (200, b'[{"lat": "x"}]')])
def test_provider_failing_answers_are_unavailable(recorder: tuple[str, type[_Recorder]],
                                                  answer: tuple[int, bytes]) -> None:
    url, handler = recorder
    handler.answer = answer
    with pytest.raises(GeocoderUnavailable):
        provider(url).search("1 Market St")


def test_provider_that_is_down_or_silent_is_unavailable_within_its_timeout() -> None:
    with pytest.raises(GeocoderUnavailable):  # nobody listens
        provider(f"http://127.0.0.1:{free_port()}").search("1 Market St")
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(GeocoderUnavailable):
            provider(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5).reverse(
                *CITY_HALL)
        assert time.monotonic() - started < 5


# --- the service area --------------------------------------------------------------------------

def test_the_area_is_san_franciscos_land() -> None:
    assert AREA.contains(*CENTER) and AREA.contains(*CITY_HALL)
    assert AREA.contains(37.7785, -122.5138)  # the Cliff House, at the ocean's edge
    assert not AREA.contains(*PACIFIC) and not AREA.contains(*BAY)
    assert not AREA.contains(37.8270, -122.4230)  # Alcatraz, in the Bay


def test_a_service_area_file_that_is_missing_stops_the_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_AREA_GEOJSON", "geo/data/no-such-area.geojson")
    with pytest.raises(ValueError, match="SERVICE_AREA_GEOJSON"):
        Settings.from_env()
    monkeypatch.setenv("SERVICE_AREA_GEOJSON", "")  # empty: served everywhere
    assert Settings.from_env().service_area_geojson == ""


@pytest.mark.parametrize("pin", [PACIFIC, BAY], ids=["pacific", "bay"])
def test_a_pin_outside_the_area_is_refused_before_anything_is_stored(
        app: Flask, client: FlaskClient, make: Factory, pin: tuple[float, float]) -> None:
    make.worker(lat=pin[0], lng=pin[1])  # someone could even get there: still not served
    _, resident = make.user()
    before = stored(app)
    r = book(client, resident, job_body(make.category("leak-repair"), *pin))
    assert r.status_code == 422, r.json
    error = r.json["error"]
    assert error["code"] == "outside_service_area"
    assert error["message"].startswith("We do not serve this place yet")
    assert "San Francisco" in error["message"]
    assert [f["field"] for f in error["fields"]] == ["location"]
    assert stored(app) == before == dict.fromkeys(STORED, 0)


def test_units_outside_the_area_are_refused_by_the_api_and_by_line_in_csv(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    r = client.post("/api/v1/units", json={"property_id": prop_id, "label": "Sea",
                                           "address": "1 Ocean", "lat": PACIFIC[0],
                                           "lng": PACIFIC[1]}, headers=pm)
    assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == "location"
    assert r.json["error"]["message"].startswith("We do not serve this place yet")
    assert count(app, "units") == 0
    text = ("property,label,address,lat,lng\n"
            f"Elm Court,1A,1 Elm St Apt 1A,{CENTER[0]},{CENTER[1]}\n"
            f"Elm Court,1B,Pier 99,{BAY[0]},{BAY[1]}\n")
    imported = import_csv(client, pm, text)
    assert imported.status_code == 200, imported.json
    assert [u["label"] for u in imported.json["accepted"]] == ["1A"]
    assert [(p["line"], p["field"]) for p in imported.json["rejected"]] == [(3, "location")]
    assert count(app, "units") == 1


def test_batch_rows_for_a_unit_outside_the_area_are_refused_by_line(
        app: Flask, client: FlaskClient, make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    make.worker()
    # A unit stored before the area was drawn (or before it shrank) lies at sea.
    sql(app, "INSERT INTO units (property_id, label, address, location) VALUES "
             "(:p, 'Old', 'Pier 99', ST_GeogFromText(:wkt))",
        p=prop_id, wkt=f"SRID=4326;POINT({BAY[1]} {BAY[0]})")
    client.post("/api/v1/units", json={"property_id": prop_id, "label": "1A",
                                       "address": "1 Elm St", "lat": CENTER[0],
                                       "lng": CENTER[1]}, headers=pm)
    csv = ("property,unit,category,description,urgency,budget_cap\n"
           "Elm Court,1A,leak-repair,Leak under sink,urgent,\n"
           "Elm Court,Old,leak-repair,Leak at the pier,urgent,\n")
    post = client.post("/api/v1/batches?batch_key=k", data=csv.encode(),
                       content_type="text/csv", headers=pm)
    assert post.status_code == 202, post.json
    assert post.json["accepted_rows"] == 1
    rejected = post.json["rejected"]
    assert [(r["line"], r["field"]) for r in rejected] == [(3, "location")]
    assert rejected[0]["problem"].startswith("We do not serve this place yet")


# --- the typed address against the pin --------------------------------------------------------

@pytest.fixture
def geocoded(app: Flask, settings: Any, gazetteer: GazetteerServer) -> GazetteerServer:
    set_settings(app, geocoder_url=gazetteer.url)
    return gazetteer


def test_an_address_far_from_the_pin_is_asked_about_then_booked_when_the_pin_is_confirmed(
        app: Flask, client: FlaskClient, make: Factory, geocoded: GazetteerServer) -> None:
    make.worker(lat=MISSION_LOFTS[0], lng=MISSION_LOFTS[1])
    _, resident = make.user()
    body = job_body(make.category("leak-repair"), *MISSION_LOFTS, address="1 Market St, Apt 2")
    asked = book(client, resident, body, key="one-booking")
    assert asked.status_code == 422, asked.json
    error = asked.json["error"]
    assert error["code"] == "address_unconfirmed"
    assert [f["field"] for f in error["fields"]] == ["address"]
    assert "km from the pin" in error["message"] and "pin is right" in error["message"]
    assert error["confirm_with"] == "pin_confirmed"
    assert error["address_found"]["label"].startswith("1 Market Street")
    assert stored(app) == dict.fromkeys(STORED, 0)

    confirmed = book(client, resident, {**body, "pin_confirmed": True}, key="one-booking")
    assert confirmed.status_code == 201, confirmed.json
    job = confirmed.json
    assert job["address"] == "1 Market St, Apt 2"
    assert (job["lat"], job["lng"]) == pytest.approx(MISSION_LOFTS)
    assert count(app, "jobs") == 1


def test_an_address_that_agrees_with_the_pin_is_booked_and_an_unknown_one_is_asked_about(
        app: Flask, client: FlaskClient, make: Factory, geocoded: GazetteerServer) -> None:
    make.worker(lat=MISSION_LOFTS[0], lng=MISSION_LOFTS[1])
    _, resident = make.user()
    leak = make.category("leak-repair")
    unknown = book(client, resident, job_body(leak, *MISSION_LOFTS, address="99 Nowhere Road"))
    assert unknown.status_code == 422
    assert unknown.json["error"]["fields"][0]["field"] == "address"
    assert unknown.json["error"]["message"].startswith("We could not find this address")
    assert "address_found" not in unknown.json["error"]
    agrees = book(client, resident, job_body(leak, MISSION_LOFTS[0] + 0.0004, MISSION_LOFTS[1],
                                             address="2100 Mission St, #2B"))  # 45 m off
    assert agrees.status_code == 201, agrees.json
    assert agrees.json["address"] == "2100 Mission St, #2B"


def test_a_geocoder_that_is_down_leaves_the_booking_to_the_pin(
        app: Flask, client: FlaskClient, make: Factory, settings: Any) -> None:
    set_settings(app, geocoder_url=f"http://127.0.0.1:{free_port()}", geocoder_timeout_s=1.0)
    make.worker()
    _, resident = make.user()
    r = book(client, resident, job_body(make.category("leak-repair"), address="Somewhere 5"))
    assert r.status_code == 201, r.json
    assert r.json["address"] == "Somewhere 5"  # kept for the worker to read
    search = client.get("/api/v1/places/search?q=city+hall", headers=resident)
    assert search.status_code == 200 and search.json == {"available": False, "places": []}


def test_a_failing_geocoder_is_left_alone_for_a_while_not_asked_at_every_booking(
        app: Flask, client: FlaskClient, make: Factory, settings: Any,
        recorder: tuple[str, type[_Recorder]]) -> None:
    url, handler = recorder
    handler.answer = (503, b"overloaded")
    set_settings(app, geocoder_url=url)
    make.worker()
    _, resident = make.user()
    leak = make.category("leak-repair")
    for n in range(2):
        r = book(client, resident, job_body(leak, address=f"{n} Somewhere St"))
        assert r.status_code == 201, r.json
    search = client.get("/api/v1/places/search?q=city+hall", headers=resident)
    assert search.json["available"] is False
    assert len(handler.seen) == 1  # only the first booking waited on it


def test_address_search_and_reverse_for_the_book_page(
        client: FlaskClient, make: Factory, geocoded: GazetteerServer) -> None:
    _, resident = make.user(Role.RESIDENT)
    found = client.get("/api/v1/places/search?q=city+ha", headers=resident)
    assert found.status_code == 200 and found.json["available"] is True
    assert found.json["places"][0]["label"].startswith("San Francisco City Hall")
    at = client.get(f"/api/v1/places/reverse?lat={MISSION_LOFTS[0]}&lng={MISSION_LOFTS[1]}",
                    headers=resident)
    assert at.json["places"][0]["label"].startswith("Mission Lofts, 2100 Mission Street")
    sea = client.get(f"/api/v1/places/reverse?lat={PACIFIC[0]}&lng={PACIFIC[1]}",
                     headers=resident)
    assert sea.json == {"available": True, "places": []}
    for query, field in (("/places/search", "q"), ("/places/search?q=" + "x" * 301, "q"),
                         ("/places/reverse?lat=91&lng=0", "lat"),
                         ("/places/reverse?lat=1&lng=east", "lng")):
        bad = client.get("/api/v1" + query, headers=resident)
        assert bad.status_code == 422, query
        assert bad.json["error"]["fields"][0]["field"] == field
    assert client.get("/api/v1/places/search?q=city").status_code == 401
