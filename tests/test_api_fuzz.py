"""Property-based fuzzing of every API operation from its own OpenAPI document: whatever
the input, the answer is never a 5xx, and every 4xx has the documented error shape."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings

from dispatch.db.models import Role
from tests.helpers import Factory


@pytest.fixture
def callers(make: Factory) -> dict[str, dict[str, str]]:
    """A caller per role, and an online worker so bookings reach the offer path."""
    make.worker()
    return {
        "resident": make.user(Role.RESIDENT)[1],
        "worker": make.worker()[1],
        "admin": make.user(Role.ADMIN)[1],
        "property_manager": make.user(Role.PROPERTY_MANAGER)[1],
    }


SETTINGS = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def test_no_input_makes_the_api_fail(app: Flask, callers: dict[str, dict[str, str]]) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:
        fuzz(operation, callers)


def fuzz(operation: Any, callers: dict[str, dict[str, str]]) -> None:
    raw = operation.definition.raw
    roles = raw.get("x-roles") or ["resident"]
    auth = dict(callers[roles[0]]) if raw.get("security") else {}

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
