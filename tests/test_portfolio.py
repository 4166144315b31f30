"""Property managers' portfolios: organization, properties, units (CSV import with row
errors), preferred contractors first, and booking for a unit."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from dispatch.services import portfolio
from tests.helpers import CENTER, Factory, book, count, offset, set_settings, sql

CSV_HEADER = "property,label,address,lat,lng,access_notes,tenant_name,tenant_phone\n"


def manager_with_property(client: FlaskClient, make: Factory,
                          allow_marketplace: bool = True) -> tuple[dict[str, str], int]:
    _, pm = make.user(Role.PROPERTY_MANAGER)
    assert client.post("/api/v1/org", json={"name": "Bay Homes",
                                            "allow_marketplace": allow_marketplace},
                       headers=pm).status_code == 201
    prop = client.post("/api/v1/properties", json={"name": "Elm Court", "address": "1 Elm St"},
                       headers=pm)
    assert prop.status_code == 201
    return pm, prop.json["id"]


def import_csv(client: FlaskClient, pm: dict[str, str], text: str) -> Any:
    return client.post("/api/v1/units/import", data=text.encode(), content_type="text/csv",
                       headers=pm)


def test_csv_import_keeps_good_rows_and_names_each_bad_one(app: Flask, client: FlaskClient,
                                                           make: Factory) -> None:
    pm, _ = manager_with_property(client, make)
    text = CSV_HEADER + (
        "Elm Court,1A,1 Elm St Apt 1A,37.7749,-122.4194,Key in lockbox 1234,Ann,+14155550111\n"
        "Elm Court,1B,1 Elm St Apt 1B,97.1,-122.4194,,,\n"
        "Oak Plaza,2A,2 Oak St,37.77,-122.41,,,\n"
        "Elm Court,1C,1 Elm St Apt 1C,37.7750,-122.4190,,Bo,12\n"
        "Elm Court,,1 Elm St,37.7750,-122.4190,,,\n"
        "Elm Court,1D,1 Elm St Apt 1D,37.7751,-122.4191,,,\n"
    )
    r = import_csv(client, pm, text)
    assert r.status_code == 200, r.json
    assert [u["label"] for u in r.json["accepted"]] == ["1A", "1D"]
    assert [(p["line"], p["field"]) for p in r.json["rejected"]] == [
        (3, "lat"), (4, "property"), (5, "tenant_phone"), (6, "label")]
    assert count(app, "units") == 2
    again = import_csv(client, pm, text)  # the same file again creates nothing new
    assert len(again.json["accepted"]) == 2 and count(app, "units") == 2
    units = client.get("/api/v1/units", headers=pm).json["units"]
    assert units[0]["tenant_phone"] == "+14155550111" and units[0]["access_notes"]
    bad = client.post("/api/v1/units/import", data=b"label,lat\n", content_type="text/csv",
                      headers=pm)
    assert bad.status_code == 400 and bad.json["error"]["fields"][0]["field"] == "file"


def test_a_unit_file_over_the_row_limit_is_refused_whole(app: Flask, client: FlaskClient,
                                                         make: Factory) -> None:
    """Half a file stored and answered 200 leaves the manager guessing what is in: refuse
    it whole, naming the limit, as batches do."""
    pm, _ = manager_with_property(client, make)
    limit = portfolio.MAX_IMPORT_ROWS
    rows = "".join(f"Elm Court,U{i},1 Elm St,37.7749,-122.4194,,,\n" for i in range(limit + 1))
    r = import_csv(client, pm, CSV_HEADER + rows)
    assert r.status_code == 400, r.json
    [problem] = r.json["error"]["fields"]
    assert problem["field"] == "file" and str(limit) in problem["problem"]
    assert count(app, "units") == 0
    fits = import_csv(client, pm, CSV_HEADER + rows.split("\n", 1)[1])  # exactly the limit
    assert fits.status_code == 200 and len(fits.json["accepted"]) == limit


def test_csv_reimport_without_the_tenant_columns_keeps_the_tenants(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    pm, _ = manager_with_property(client, make)
    full = CSV_HEADER + ("Elm Court,1A,1 Elm St Apt 1A,37.7749,-122.4194,Lockbox 12,Ann,"
                         "+14155550111\n")
    assert import_csv(client, pm, full).status_code == 200
    addresses_only = ("property,label,address,lat,lng\n"
                      "Elm Court,1A,1 Elm Street Apt 1A,37.7749,-122.4194\n")
    r = import_csv(client, pm, addresses_only)
    assert r.status_code == 200 and len(r.json["accepted"]) == 1, r.json
    [unit] = client.get("/api/v1/units", headers=pm).json["units"]
    assert unit["address"] == "1 Elm Street Apt 1A"
    assert (unit["access_notes"], unit["tenant_name"], unit["tenant_phone"]) == (
        "Lockbox 12", "Ann", "+14155550111")
    # A column that is there but blank clears what it names (the tenant moved out).
    moved_out = ("property,label,address,lat,lng,tenant_name,tenant_phone\n"
                 "Elm Court,1A,1 Elm Street Apt 1A,37.7749,-122.4194,,\n")
    assert import_csv(client, pm, moved_out).status_code == 200
    [unit] = client.get("/api/v1/units", headers=pm).json["units"]
    assert (unit["access_notes"], unit["tenant_name"], unit["tenant_phone"]) == (
        "Lockbox 12", None, None)


def test_portfolios_are_private_to_their_organization(app: Flask, client: FlaskClient,
                                                      make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    other, _ = manager_with_property(client, make)
    unit = client.post("/api/v1/units", json={
        "property_id": prop_id, "label": "3C", "address": "1 Elm St Apt 3C",
        "lat": CENTER[0], "lng": CENTER[1], "tenant_name": "Cy"}, headers=pm)
    assert unit.status_code == 201
    assert client.get("/api/v1/units", headers=other).json["units"] == []
    stolen = client.post("/api/v1/units", json={
        "property_id": prop_id, "label": "9Z", "address": "x st", "lat": 1, "lng": 1},
        headers=other)
    assert stolen.status_code == 404 and stolen.json["error"]["fields"][0]["field"] == (
        "property_id")
    assert client.delete(f"/api/v1/units/{unit.json['id']}", headers=other).status_code == 404
    _, resident = make.user(Role.RESIDENT)
    assert client.get("/api/v1/units", headers=resident).status_code == 403


def test_jobs_go_to_preferred_contractors_first_then_the_marketplace(
    app: Flask, client: FlaskClient, make: Factory, settings: Any
) -> None:
    set_settings(app, offer_wave_size=1)
    pm, prop_id = manager_with_property(client, make)
    unit_id = client.post("/api/v1/units", json={
        "property_id": prop_id, "label": "1A", "address": "1 Elm St Apt 1A",
        "lat": CENTER[0], "lng": CENTER[1]}, headers=pm).json["id"]
    nearby, _ = make.worker()  # right next door, but not the organization's contractor
    far = offset(*CENTER, north_m=5000)
    preferred, worker = make.worker(lat=far[0], lng=far[1], email="pat@example.test")
    invitation = client.post("/api/v1/org/invitations", json={"contact": "pat@example.test"},
                             headers=pm).json
    assert client.post(f"/api/v1/invitations/{invitation['id']}/accept",
                       headers=worker).status_code == 200
    body = {"category_id": make.category("leak-repair"), "description": "Leak in 1A",
            "unit_id": unit_id}
    job = book(client, pm, body).json
    assert job["address"] == "1 Elm St Apt 1A"
    [first] = sql(app, "SELECT worker_id FROM offers WHERE job_id = :j", j=job["id"])
    assert first.worker_id == preferred
    # The preferred contractor lets the offer lapse: the open marketplace gets the next wave.
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j", j=job["id"])[0].id
    sql(app, "UPDATE offers SET expires_at = now() - interval '1 second' WHERE id = :o",
        o=offer_id)
    with app.app_context():
        from dispatch.db import db
        from dispatch.services.dispatching import expire_offers

        expire_offers(db.session, job["id"])
    waves = sql(app, "SELECT worker_id FROM offers WHERE job_id = :j ORDER BY id", j=job["id"])
    assert [w.worker_id for w in waves] == [preferred, nearby]


def test_no_marketplace_means_preferred_contractors_only(app: Flask, client: FlaskClient,
                                                         make: Factory, settings: Any) -> None:
    pm, prop_id = manager_with_property(client, make, allow_marketplace=False)
    unit_id = client.post("/api/v1/units", json={
        "property_id": prop_id, "label": "1A", "address": "1 Elm St Apt 1A",
        "lat": CENTER[0], "lng": CENTER[1]}, headers=pm).json["id"]
    make.worker()  # available, but the organization does not use the marketplace
    body = {"category_id": make.category("leak-repair"), "description": "Leak",
            "unit_id": unit_id}
    r = book(client, pm, body)
    assert r.status_code == 409 and r.json["error"]["code"] == "no_coverage"
    assert count(app, "jobs") == 0


def test_booking_for_a_unit_is_for_its_own_managers(app: Flask, client: FlaskClient,
                                                    make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    unit_id = client.post("/api/v1/units", json={
        "property_id": prop_id, "label": "1A", "address": "1 Elm St", "lat": CENTER[0],
        "lng": CENTER[1]}, headers=pm).json["id"]
    make.worker()
    other, _ = manager_with_property(client, make)
    _, resident = make.user(Role.RESIDENT)
    body = {"category_id": make.category("leak-repair"), "description": "Leak",
            "unit_id": unit_id}
    assert book(client, other, body).status_code == 404
    assert book(client, resident, body).status_code == 403
    nowhere = book(client, resident, {"category_id": make.category("leak-repair"),
                                      "description": "Leak"})
    assert nowhere.status_code == 422 and nowhere.json["error"]["fields"][0]["field"] == "lat"
