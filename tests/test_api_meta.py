"""The OpenAPI document, health check, and the error shape for unknown routes."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from dispatch import create_app
from dispatch.db import db
from dispatch.http.api.routing import registry


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
    # Query parameters and CSV uploads are described, so clients and fuzzers see them.
    jobs = doc["paths"]["/api/v1/jobs"]["get"]
    assert {p["name"]: p["in"] for p in jobs["parameters"]} == {
        "limit": "query", "cursor": "query", "status": "query"}
    limit = next(p for p in jobs["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
    batches = doc["paths"]["/api/v1/batches"]["post"]
    assert set(batches["requestBody"]["content"]) == {"application/json", "text/csv",
                                                      "text/plain"}
    assert {p["name"] for p in batches["parameters"]} == {"batch_key", "confirm_duplicate"}
    units = doc["paths"]["/api/v1/units/import"]["post"]["requestBody"]["content"]
    assert units["text/csv"]["schema"]["type"] == "string"
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


def test_a_saturated_server_answers_503_with_retry_after_not_500(app: Flask) -> None:
    """When every database connection stays busy for the pool's timeout (seen under the
    load bench), the request is told to come back later rather than getting a 500."""
    busy = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                       "REDIS_URL": app.config["REDIS_URL"], "TESTING": True,
                       "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0,
                                                     "pool_timeout": 0.2}})
    with busy.app_context():
        held = db.engine.connect()  # the pool's only connection
        try:
            r = busy.test_client().get("/api/v1/me", headers={"Authorization": "Bearer x"})
        finally:
            held.close()
        assert r.status_code == 503, r.json
        assert r.headers["Retry-After"] == "5"
        assert r.json["error"]["code"] == "overloaded"
        # With the connection back the same request is answered normally (401: no such token).
        assert busy.test_client().get(
            "/api/v1/me", headers={"Authorization": "Bearer x"}).status_code == 401
        db.engine.dispose()
