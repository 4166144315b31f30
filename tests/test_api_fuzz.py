"""Property-based fuzzing of every API operation from its own OpenAPI document, as every
role the operation is for, with every body it documents (JSON, and CSV uploads): whatever
the input, the answer is never a 5xx, and every 4xx has the documented error shape."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings

from dispatch.db.models import Role
from tests.helpers import Factory


@pytest.fixture
def callers(make: Factory, client: FlaskClient) -> dict[str, dict[str, str]]:
    """A caller per role, an online worker so bookings reach the offer path, and a manager
    with an organization and a property so uploads reach their rows."""
    make.worker()
    manager = make.user(Role.PROPERTY_MANAGER)[1]
    assert client.post("/api/v1/org", json={"name": "Fuzz Homes"},
                       headers=manager).status_code == 201
    assert client.post("/api/v1/properties", json={"name": "Elm Court"},
                       headers=manager).status_code == 201
    return {
        "resident": make.user(Role.RESIDENT)[1],
        "worker": make.worker()[1],
        "admin": make.user(Role.ADMIN)[1],
        "property_manager": manager,
    }


SETTINGS = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def test_no_input_makes_the_api_fail(app: Flask, callers: dict[str, dict[str, str]]) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    uploads = {op.path for op in operations
               if "text/csv" in op.definition.raw.get("requestBody", {}).get("content", {})}
    assert uploads == {"/api/v1/batches", "/api/v1/units/import"}

    for operation in operations:
        fuzz(operation, callers)


def fuzz(operation: Any, callers: dict[str, dict[str, str]]) -> None:
    raw = operation.definition.raw
    if not raw.get("security"):
        fuzz_as(operation, {})
        return
    for role in raw.get("x-roles") or list(callers):
        fuzz_as(operation, callers[role])


def fuzz_as(operation: Any, auth: dict[str, str]) -> None:
    @SETTINGS
    @given(case=operation.as_strategy())
    def call(case: Any) -> None:
        response = case.call(headers={**auth, **(case.headers or {})})
        assert response.status_code < 500, (case.method, case.path, case.body, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
            assert isinstance(error["fields"], list)

    call()
