"""Numbers are numbers: a JSON `true` or a numeric string is not a latitude or an id, and a
path id is spelled in ASCII digits only."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, book, job_body
from tests.test_portfolio import manager_with_property


def unit_body(prop_id: int, **changes: object) -> dict[str, object]:
    return {"property_id": prop_id, "label": "3C", "address": "1 Elm St Apt 3C",
            "lat": CENTER[0], "lng": CENTER[1], **changes}


def test_booleans_and_numeric_strings_are_not_numbers(app: Flask, client: FlaskClient,
                                                      make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    for field, value in [("lat", True), ("lng", False), ("lat", "37.77"),
                         ("property_id", True), ("property_id", str(prop_id))]:
        r = client.post("/api/v1/units", json=unit_body(prop_id, **{field: value}), headers=pm)
        assert r.status_code == 422, (field, value, r.json)
        assert [f["field"] for f in r.json["error"]["fields"]] == [field]
    assert client.get("/api/v1/units", headers=pm).json["units"] == []


def test_what_clients_legitimately_send_still_passes(app: Flask, client: FlaskClient,
                                                     make: Factory) -> None:
    """Whole numbers where floats are meant, ISO dates, enum values and booleans stay good."""
    pm, _ = manager_with_property(client, make)
    _, worker = make.worker()
    ping = client.post("/api/v1/worker/location", json={
        "lat": CENTER[0], "lng": CENTER[1], "accuracy_m": 12, "heading": 90}, headers=worker)
    assert ping.status_code == 200 and ping.json["accepted"] is True, ping.json
    _, resident = make.user(Role.RESIDENT)
    booked = book(client, resident, job_body(make.category("leak-repair")))
    assert booked.status_code == 201, booked.json
    patched = client.patch("/api/v1/org", json={"allow_marketplace": False}, headers=pm)
    assert patched.status_code == 200 and patched.json["allow_marketplace"] is False
    assert client.patch("/api/v1/org", json={"allow_marketplace": 0},
                        headers=pm).status_code == 422


def test_path_ids_take_ascii_digits_only(app: Flask, client: FlaskClient,
                                         make: Factory) -> None:
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    assert client.get(f"/api/v1/jobs/{job_id}", headers=resident).status_code == 200
    foreign = {
        "arabic-indic": "".join(chr(0x0660 + int(d)) for d in str(job_id)),
        "full-width": "".join(chr(0xFF10 + int(d)) for d in str(job_id)),
        "devanagari": "".join(chr(0x0966 + int(d)) for d in str(job_id)),
    }
    for script, spelled in foreign.items():
        r = client.get(f"/api/v1/jobs/{spelled}", headers=resident)
        assert r.status_code == 404, (script, r.status_code)
        assert r.json["error"]["code"] == "not_found"
        page = client.get(f"/jobs/{spelled}", headers=resident)
        assert page.status_code == 404, (script, page.status_code)
    # The bounds still hold for ASCII ids.
    assert client.get("/api/v1/jobs/0", headers=resident).status_code == 404
    assert client.get(f"/api/v1/jobs/{2**63}", headers=resident).status_code == 404


def test_batch_rows_name_units_by_whole_ids_only(app: Flask, client: FlaskClient,
                                                 make: Factory) -> None:
    """JSON batch rows are checked one by one (a bad row is refused by line, not the
    batch): `true` or 1.9 must not address unit 1."""
    pm, prop_id = manager_with_property(client, make)
    unit = client.post("/api/v1/units", json=unit_body(prop_id), headers=pm).json["id"]
    rows = [{"unit_id": spelled, "category": "leak-repair", "description": "a leak here"}
            for spelled in (True, unit + 0.9, chr(0x0661), unit, str(unit))]
    r = client.post("/api/v1/batches", json={"batch_key": "ids", "rows": rows}, headers=pm)
    assert r.status_code == 202, r.json
    assert [(p["line"], p["field"]) for p in r.json["rejected"]] == [
        (1, "unit_id"), (2, "unit_id"), (3, "unit_id")]
    assert r.json["accepted_rows"] == 2
