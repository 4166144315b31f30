"""Every list pages by cursor: walking all pages returns each item exactly once, also when
items are added between pages, and a cursor that was not given out is refused by name."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, book, job_body, sql
from tests.test_batches import add_unit, run_queue
from tests.test_portfolio import manager_with_property


def walk(client: FlaskClient, path: str, key: str, headers: dict[str, str],
         limit: int = 3, between: Any = None, **filters: str) -> list[Any]:
    """Every item of the list at `path`, page by page (`between` runs after the first)."""
    seen: list[Any] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": str(limit), **filters, **({"cursor": cursor} if cursor else {})}
        r = client.get(path, query_string=query, headers=headers)
        assert r.status_code == 200, r.json
        assert len(r.json[key]) <= limit
        seen += r.json[key]
        pages += 1
        cursor = r.json["next_cursor"]
        if pages == 1 and between is not None:
            between()
        if cursor is None:
            return seen
        assert pages < 100


def test_jobs_page_by_cursor_each_once_while_new_ones_arrive(app: Flask, client: FlaskClient,
                                                           make: Factory) -> None:
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    cat = make.category("leak-repair")
    booked = [book(client, resident, job_body(cat)).json["id"] for _ in range(8)]
    late: list[int] = []
    jobs = walk(client, "/api/v1/jobs", "jobs", resident, between=lambda: late.append(
        book(client, resident, job_body(cat)).json["id"]))
    ids = [j["id"] for j in jobs]
    assert ids == sorted(booked, reverse=True)  # newest first, each once, none skipped
    assert late[0] not in ids  # newer than the first page: it heads the next listing
    first = client.get("/api/v1/jobs", headers=resident).json
    assert first["jobs"][0]["id"] == late[0] and first["next_cursor"] is None
    assert len(client.get("/api/v1/jobs?limit=200", headers=resident).json["jobs"]) == 9
    history = client.get(f"/api/v1/jobs/{booked[0]}/events?limit=200", headers=resident).json
    walked = walk(client, f"/api/v1/jobs/{booked[0]}/events", "events", resident, limit=1)
    assert walked == history["events"] and history["next_cursor"] is None


def test_portfolio_lists_page_in_their_own_order(app: Flask, client: FlaskClient,
                                                 make: Factory) -> None:
    pm, elm = manager_with_property(client, make)
    names = ["Oak Row", "Ash Yard", "Elm Court 2", "Birch Hall", "Pine Point"]
    props = [client.post("/api/v1/properties", json={"name": n}, headers=pm).json["id"]
             for n in names]
    listed = walk(client, "/api/v1/properties", "properties", pm, limit=2)
    assert [p["name"] for p in listed] == sorted([*names, "Elm Court"])
    units = []
    for prop_id in (elm, props[0], props[1]):
        for label in ("2B", "1A", "3C"):
            units.append(client.post("/api/v1/units", json={
                "property_id": prop_id, "label": label, "address": f"{label} street",
                "lat": CENTER[0], "lng": CENTER[1]}, headers=pm).json["id"])
    walked = walk(client, "/api/v1/units", "units", pm, limit=4)
    assert sorted(u["id"] for u in walked) == sorted(units)
    assert len({u["id"] for u in walked}) == len(units)
    assert [u["label"] for u in walked[:3]] == ["1A", "2B", "3C"]  # Ash Yard first
    only_elm = walk(client, "/api/v1/units", "units", pm, limit=2, property_id=str(elm))
    assert {u["property_id"] for u in only_elm} == {elm} and len(only_elm) == 3
    for n in range(5):
        assert client.post("/api/v1/org/invitations", json={"contact": f"w{n}@example.test"},
                           headers=pm).status_code == 201
    invites = walk(client, "/api/v1/org/invitations", "invitations", pm, limit=2)
    assert [i["contact"] for i in invites] == [f"w{n}@example.test" for n in range(4, -1, -1)]


def test_operator_lists_page_too(app: Flask, client: FlaskClient, make: Factory) -> None:
    _, admin = make.user(Role.ADMIN)
    for n in range(7):
        sql(app, "INSERT INTO operator_alerts (kind, detail, created_at) "
                 "VALUES ('test', CAST(:d AS jsonb), now())", d=f'{{"n": {n}}}')
    alerts = walk(client, "/api/v1/admin/alerts", "alerts", admin)
    assert [a["detail"]["n"] for a in alerts] == list(range(6, -1, -1))
    assert walk(client, "/api/v1/admin/notifications", "notifications", admin) == []


def test_a_cursor_not_given_out_is_refused_by_name(app: Flask, client: FlaskClient,
                                                  make: Factory) -> None:
    pm, _ = manager_with_property(client, make)
    for name in ("A", "B", "C"):
        client.post("/api/v1/properties", json={"name": name}, headers=pm)
    cursor = client.get("/api/v1/properties?limit=1", headers=pm).json["next_cursor"]
    assert cursor
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    for bad in ("garbage", tampered, "", "x" * 1001):
        r = client.get("/api/v1/properties", query_string={"cursor": bad}, headers=pm)
        assert r.status_code == 422, (bad, r.json)
        assert [f["field"] for f in r.json["error"]["fields"]] == ["cursor"]
    # A cursor belongs to the list that gave it out.
    moved = client.get("/api/v1/units", query_string={"cursor": cursor}, headers=pm)
    assert moved.status_code == 422 and moved.json["error"]["fields"][0]["field"] == "cursor"


def test_query_parameters_are_declared_and_strict(app: Flask, client: FlaskClient,
                                                  make: Factory) -> None:
    _, resident = make.user(Role.RESIDENT)
    for query, field in [("limit=0", "limit"), ("limit=201", "limit"), ("limit=abc", "limit"),
                         ("limit=%D9%A3", "limit"), ("limit=true", "limit"),
                         ("limit=1.5", "limit"), ("status=lost", "status"),
                         ("colour=red", "colour"), ("limit=2&limit=3", "limit")]:
        r = client.get(f"/api/v1/jobs?{query}", headers=resident)
        assert r.status_code == 422, (query, r.json)
        assert [f["field"] for f in r.json["error"]["fields"]] == [field], query
    # An operation without query parameters takes none.
    r = client.get("/api/v1/me?debug=1", headers=resident)
    assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == "debug"


def test_batches_and_their_jobs_page(app: Flask, client: FlaskClient, make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "1A")
    made = []
    for key in ("b1", "b2", "b3", "b4"):
        rows = [{"unit_id": unit, "category": "leak-repair", "description": f"leak {n} {key}"}
                for n in range(7 if key == "b1" else 1)]
        r = client.post("/api/v1/batches", json={"batch_key": key, "rows": rows}, headers=pm)
        assert r.status_code == 202, r.json
        made.append(r.json["id"])
    run_queue(app)
    listed = walk(client, "/api/v1/batches", "batches", pm)
    assert [b["id"] for b in listed] == made[::-1]
    jobs = walk(client, f"/api/v1/batches/{made[0]}", "jobs", pm)
    assert len(jobs) == 7 and len({j["id"] for j in jobs}) == 7
    assert [j["id"] for j in jobs] == sorted(j["id"] for j in jobs)
