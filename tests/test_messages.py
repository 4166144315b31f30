"""Refusals in words meant for people: each field problem is a sentence from the message
catalogue (dispatch/domain/messages.py), with its stable message id as `kind`; no pydantic
phrase, endpoint path or role code reaches the text."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from dispatch.domain import messages
from dispatch.domain.errors import IllegalTransition
from tests.helpers import Factory, book, job_body

# What a developer writes and a person should never read.
INTERNAL = re.compile(r"String should|Input should|Value error|/api/|POST |GET |"
                      r"\b[a-z]+_[a-z_]+\b|\bneeds (worker|resident|admin)\b|Error\b")


def assert_for_people(error: dict) -> None:
    texts = [error["message"], *(f["problem"] for f in error["fields"])]
    for text in texts:
        assert not INTERNAL.search(text), text
        assert text[:1].isupper() and text.rstrip().endswith((".", "!", "?")), text


def test_every_message_formats_and_says_nothing_internal() -> None:
    samples = {"min_length": 3, "max_length": 10, "limit": 5, "seconds": "30", "columns": "unit",
               "status": "arrived", "path": "Home repair", "value": "x", "unit": "2B",
               "property": "Elm", "name": "Elm", "category_id": 7, "property_id": 3,
               "unit_id": 4, "worker_id": 5, "needed": "workers", "actual": "a resident",
               "current": "assigned", "target": "closed", "Thing": "A job",
               "line": 3, "found": 7, "expected": "USD"}
    for message_id in messages.MESSAGES:
        text = messages.say(message_id, samples, field="description")
        assert "%(" not in text and not INTERNAL.search(text), (message_id, text)
    for field in messages.FIELD_LABELS:
        assert "_" not in messages.label(field)
    for reason in ("out_of_order", "implausible_jump", "rate_limited"):
        assert "_" not in messages.location_refusal(reason)


def test_a_short_description_is_refused_in_a_sentence(client: FlaskClient,
                                                     make: Factory) -> None:
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    r = book(client, resident, job_body(make.category("leak-repair"), description="ab"))
    assert r.status_code == 422
    [problem] = r.json["error"]["fields"]
    assert problem == {"field": "description", "kind": "description.too_short",
                       "problem": "Describe the problem in at least 3 characters."}
    assert r.json["error"]["message"] == "Describe the problem in at least 3 characters."
    assert_for_people(r.json["error"])


def test_a_booking_without_a_place_asks_for_a_pin_once(client: FlaskClient,
                                                      make: Factory) -> None:
    _, resident = make.user(Role.RESIDENT)
    body = job_body(make.category("leak-repair"))
    del body["lat"], body["lng"]
    r = book(client, resident, body)
    assert r.status_code == 422
    assert {f["problem"] for f in r.json["error"]["fields"]} == {"Pick a place on the map."}
    assert r.json["error"]["message"] == "Pick a place on the map."
    out_of_range = book(client, resident, {**job_body(make.category("leak-repair")),
                                           "lat": 123})
    assert out_of_range.json["error"]["fields"][0]["problem"] == "Pick a place on the map."


def test_a_manager_without_an_organization_is_told_to_create_it(client: FlaskClient,
                                                               make: Factory) -> None:
    _, manager = make.user(Role.PROPERTY_MANAGER)
    r = client.get("/api/v1/properties", headers=manager)
    assert r.status_code == 409
    [problem] = r.json["error"]["fields"]
    assert problem["problem"] == "You have no organization yet: create it first."
    assert problem["kind"] == "organization.missing"
    assert_for_people(r.json["error"])


def test_the_wrong_role_is_told_in_words(client: FlaskClient, make: Factory) -> None:
    _, admin = make.user(Role.ADMIN)
    r = client.post("/api/v1/worker/location", json={"lat": 37.77, "lng": -122.42},
                    headers=admin)
    assert r.status_code == 403
    assert r.json["error"]["fields"][0]["problem"] == (
        "This is for workers. You are logged in as an operator.")
    assert_for_people(r.json["error"])


@pytest.mark.parametrize(("body", "field"), [
    ({"lat": 37.77, "lng": -122.42, "speed_mps": -1}, "speed_mps"),
    ({"lat": 37.77, "lng": -122.42, "recorded_at": "yesterday"}, "recorded_at"),
    ({"lat": 37.77, "lng": -122.42, "colour": "red"}, "colour"),
    ({"lat": "north", "lng": -122.42}, "lat"),
])
def test_pydantic_problems_become_sentences(client: FlaskClient, make: Factory,
                                            body: dict, field: str) -> None:
    _, worker = make.worker()
    r = client.post("/api/v1/worker/location", json=body, headers=worker)
    assert r.status_code == 422
    assert r.json["error"]["fields"][0]["field"] == field
    assert r.json["error"]["fields"][0]["kind"] in messages.MESSAGES
    assert_for_people(r.json["error"])


def test_a_dropped_position_says_why_in_words(client: FlaskClient, make: Factory) -> None:
    _, worker = make.worker()
    now = datetime.now(UTC)
    fix = {"lat": 37.77, "lng": -122.42, "recorded_at": now.isoformat()}
    assert client.post("/api/v1/worker/location", json=fix, headers=worker).json["accepted"]
    older = {**fix, "recorded_at": (now - timedelta(seconds=5)).isoformat()}
    r = client.post("/api/v1/worker/location", json=older, headers=worker)
    assert (r.json["accepted"], r.json["reason"]) == (False, "out_of_order")
    assert r.json["message"] == messages.location_refusal("out_of_order")
    assert "_" not in r.json["message"]


def test_csv_refusals_are_sentences(app: Flask, client: FlaskClient, make: Factory) -> None:
    _, manager = make.user(Role.PROPERTY_MANAGER)
    assert client.post("/api/v1/org", json={"name": "Elm Homes"}, headers=manager).status_code \
        == 201
    headers = {**manager, "Content-Type": "text/csv"}
    r = client.post("/api/v1/units/import", data=b"property,label\nElm,1A\n", headers=headers)
    assert r.status_code == 400
    assert r.json["error"]["fields"][0]["kind"] == "file.missing_columns"
    assert r.json["error"]["fields"][0]["problem"].startswith("The file's first line needs")
    latin1 = client.post("/api/v1/units/import", data="propriété".encode("latin-1"),
                         headers=headers)
    assert latin1.json["error"]["fields"][0]["problem"] == (
        "Line 1 is not UTF-8 text: save the file as UTF-8 text (CSV UTF-8) and upload it again.")


def test_every_message_id_the_code_names_is_in_the_catalogue() -> None:
    """`invalid()` keeps text it does not know as it is: a mistyped id would reach people."""
    position = {"invalid": 1, "problem": 1, "refusal": 3, "say": 0}
    root = Path(__file__).resolve().parent.parent / "dispatch"
    named = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in position and len(node.args) > position[node.func.id]):
                continue
            arg = node.args[position[node.func.id]]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                named.append((path.name, arg.value))
    assert len(named) > 40
    assert [(file, m) for file, m in named if m not in messages.MESSAGES] == []


def test_an_illegal_move_is_told_in_words() -> None:
    error = IllegalTransition("job", "completed", "en_route", "worker")
    assert error.message == "A job that is completed cannot become en route."
    assert error.body()["error"]["fields"][0]["kind"] == "transition.illegal"
