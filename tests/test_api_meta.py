"""The OpenAPI document, health check, and the error shape for unknown routes."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from dispatch.api.routing import registry


def test_openapi_document_is_valid_and_generated_from_the_code(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").json
    validate(doc)
    book = doc["paths"]["/api/v1/jobs"]["post"]
    assert {p["name"] for p in book["parameters"]} == {"Idempotency-Key"}
    assert set(book["responses"]) >= {"200", "201", "400", "401", "403", "409", "422"}
    job_in = doc["components"]["schemas"]["JobIn"]
    lat = next(o for o in job_in["properties"]["lat"]["anyOf"] if o.get("type") == "number")
    assert lat["maximum"] == 90
    assert job_in["additionalProperties"] is False
    accept = doc["paths"]["/api/v1/offers/{offer_id}/accept"]["post"]
    assert accept["x-roles"] == ["worker"]
    assert accept["parameters"][0] == {
        "name": "offer_id", "in": "path", "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}
    # Every declared operation is in the document, and nothing else.
    declared = {(op.path, op.method) for op in registry.operations}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert declared == documented


def test_every_api_route_is_declared(app: Flask) -> None:
    """No route slips past the registry (and so past validation and the document)."""
    documented = {op.path for op in registry.operations} | {"/api/v1/openapi.json"}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", rule.rule)
            assert path in documented, rule.rule


def test_health_checks_database_and_redis(client: FlaskClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json == {"status": "ok"}


def test_unknown_routes_and_methods_get_json_errors(client: FlaskClient) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    r = client.delete("/api/v1/jobs")
    assert r.status_code == 405 and r.json["error"]["code"] == "method_not_allowed"


def test_hostile_bodies_get_4xx(client: FlaskClient) -> None:
    deep = client.post("/api/v1/auth/token", data="[" * 200_000 + "]" * 200_000,
                       content_type="application/json")
    assert deep.status_code == 400 and deep.json["error"]["fields"][0]["field"] == "body"
    huge = client.post("/api/v1/auth/token", data="x" * (2 * 1024 * 1024),
                       content_type="application/json")
    assert huge.status_code == 413 and huge.json["error"]["code"]
