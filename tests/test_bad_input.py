"""Hostile input sent on purpose to every operation of the app's own OpenAPI document: huge
bodies, deep nesting, NaN and Infinity, coordinates off the globe, ids beyond int64, control
characters and lone surrogates in every text field, wrong content types. Each answer is a
success or a 4xx that names the field; never a 5xx; and what a refused request touched is as
it was before."""

from __future__ import annotations

import copy
import http.client
import json
import select
import socket
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from dispatch.db import db
from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, book, count, job_body, sql
from tests.live import LiveServer

INT64_MAX = 2**63 - 1
# Tables whose rows a refused request must leave as they were.
WATCHED = ["users", "workers", "worker_skills", "jobs", "offers", "organizations",
           "properties", "units", "batches", "contractor_invitations",
           "preferred_contractors"]
# Text no field may hold (refused naming the field), and text any field may (the answer may
# still refuse the request for something else).
BAD_TEXTS = ["before\x00after", "ring\x07ring", "tab\x1bescape", "abc\u202egnp.exe",
             "\ud800", "c1\x85control"]
FINE_TEXTS = ["Leaking pipe \U0001f6b0\U0001f4a7 again", "x" * 10_000,
              "\u05e9\u05dc\u05d5\u05dd"]
NUMBERS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
COORDINATES = {"lat": [91, -91, -1e308, 1e308], "lng": [181, -181, -1e308]}
BIG_IDS = [INT64_MAX + 1, 10**30, -(INT64_MAX + 2)]
# Query parameters the views read, for a document that does not declare them yet.
QUERY_PARAMS = {
    ("get", "/api/v1/offers"): ["status"], ("get", "/api/v1/jobs"): ["status"],
    ("get", "/api/v1/units"): ["property_id"], ("get", "/api/v1/reports/sla"): ["month"],
    ("get", "/api/v1/places/reverse"): ["lat", "lng"], ("get", "/api/v1/places/search"): ["q"],
    ("post", "/api/v1/batches"): ["batch_key", "confirm_duplicate"],
}
QUERY_VALUES = [quote(v) for v in [*(t for t in BAD_TEXTS if t != "\ud800"), "NaN", "inf",
                                   "-1e308", "91", "181", str(INT64_MAX + 1), str(10**30),
                                   "\u0663", "x" * 10_000]]
QUERY_VALUES.append("%ED%A0%80")  # a surrogate, UTF-8 encoded: not UTF-8
WRONG_TYPES: list[dict[str, Any]] = [
    {"data": '{"a": 1}', "content_type": "text/plain"},
    {"data": {"a": "1"}},  # a form
    {"data": b'{"a": 1}'},  # no content type at all
    {"data": {"file": (b'{"a": 1}', "a.json")}, "content_type": "multipart/form-data"},
]


class World:
    """Real rows for every path id an operation may name, and a caller per role."""

    def __init__(self, app: Flask, client: FlaskClient, make: Factory) -> None:
        self.app = app
        self.leak = make.category("leak-repair")
        self.worker_id, worker = make.worker(email="fixer@example.test")
        self.callers: dict[str, dict[str, str]] = {
            "resident": make.user(Role.RESIDENT)[1],
            "worker": worker,
            "admin": make.user(Role.ADMIN)[1],
            "property_manager": make.user(Role.PROPERTY_MANAGER)[1],
        }
        pm = self.callers["property_manager"]
        ok(client.post("/api/v1/org", json={"name": "Acme Homes"}, headers=pm))
        self.property_id = ok(client.post("/api/v1/properties", json={"name": "Elm Court"},
                                          headers=pm))["id"]
        self.unit_id = ok(client.post("/api/v1/units", headers=pm, json={
            "property_id": self.property_id, "label": "1A", "address": "1 Elm Court",
            "lat": CENTER[0], "lng": CENTER[1]}))["id"]
        self.invitation_id = ok(client.post("/api/v1/org/invitations", headers=pm,
                                            json={"contact": "fixer@example.test"}))["id"]
        self.job_id = ok(book(client, self.callers["resident"], job_body(self.leak)))["id"]
        offers = ok(client.get("/api/v1/offers", headers=worker))["offers"]
        self.offer_id = offers[0]["id"]
        self.batch_id = ok(client.post("/api/v1/batches", headers=pm, json={
            "batch_key": "b1", "rows": [{"unit_id": self.unit_id, "category": "leak-repair",
                                         "description": "Dripping tap"}]}))["id"]
        self.alert_id = sql(app, "INSERT INTO operator_alerts (kind, job_id, detail, created_at) "
                                 "VALUES ('masking_unavailable', :j, '{}', now()) RETURNING id",
                            j=self.job_id)[0].id
        self.approval_id = sql(app, "INSERT INTO approval_requests (job_id, org_id, "
                                    "amount_cents, requested_at) SELECT :j, id, 100, now() "
                                    "FROM organizations RETURNING id", j=self.job_id)[0].id
        self.path_ids = {"job_id": self.job_id, "offer_id": self.offer_id,
                         "worker_id": self.worker_id, "batch_id": self.batch_id,
                         "invitation_id": self.invitation_id, "alert_id": self.alert_id,
                         "property_id": self.property_id, "unit_id": self.unit_id,
                         "approval_id": self.approval_id, "position": 1}
        # Plausible values by field name, so that one bad field is the only bad one.
        self.values: dict[str, Any] = {
            "category_id": self.leak, "property_id": self.property_id,
            "unit_id": self.unit_id, "category_ids": [self.leak], "lat": CENTER[0],
            "lng": CENTER[1], "email": "new@example.test", "contact": "+14155550199",
            "phone": "+14155550123", "tenant_phone": "+14155550124",
            "password": "correct horse battery", "current_password": "correct horse battery",
            "new_password": "another good passphrase", "webhook_url": "https://example.test/h",
            "description": "Water under the sink", "date": str(date.today() + timedelta(2)),
            "start": "09:00", "end": "12:00", "status": "en_route", "batch_key": "b2",
        }

    def snapshot(self) -> str:
        """Every watched row, as one digest."""
        parts = " || ".join(
            f"coalesce((SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {name} t),"
            " '')" for name in WATCHED)
        with self.app.app_context():
            digest = db.session.execute(text(f"SELECT {parts}")).scalar_one()
            db.session.remove()
        return str(digest)


def ok(response: Any) -> Any:
    assert response.status_code < 300, response.get_data(as_text=True)
    return response.json


@pytest.fixture
def world(app: Flask, client: FlaskClient, make: Factory) -> Iterator[World]:
    """The abuse limits off: hundreds of hostile requests from one address are what they
    exist to stop (tests/test_web_edge.py tests them); here each answer must be about its
    input."""
    limiter = app.extensions["dispatch_limiter"]
    limiter.enabled = False
    try:
        yield World(app, client, make)
    finally:
        limiter.enabled = True


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    return client.get("/api/v1/openapi.json").json


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every operation; deletions last, so that the rows they remove served the others."""
    found = [(path, method, entry) for path, methods in document["paths"].items()
             for method, entry in methods.items()]
    yield from sorted(found, key=lambda op: op[1] == "delete")


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its `$ref` followed and a nullable `anyOf` reduced to the non-null."""
    while True:
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in schema:
            schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
        else:
            return schema


def body_schema(entry: dict[str, Any], document: dict[str, Any]) -> dict[str, Any] | None:
    content = entry.get("requestBody", {}).get("content", {}).get("application/json")
    return resolve(content["schema"], document) if content else None


def sample(schema: dict[str, Any], document: dict[str, Any], name: str,
           values: dict[str, Any]) -> Any:
    """A plausible value: the required fields of an object, one element of a list."""
    if name in values:
        return copy.deepcopy(values[name])
    schema = resolve(schema, document)
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {key: sample(sub, document, key, values)
                for key, sub in schema.get("properties", {}).items()
                if key in schema.get("required", [])}
    if kind == "array":
        return [sample(schema.get("items", {}), document, name, values)]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return max(1.0, schema.get("minimum", 1.0))
    if kind == "boolean":
        return False
    return "Plain words"


def leaves(schema: dict[str, Any], document: dict[str, Any],
           path: tuple[str | int, ...] = ()
           ) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """(path, schema) of every number, integer and text field, nested ones too."""
    schema = resolve(schema, document)
    kind = schema.get("type")
    if kind == "object":
        for key, sub in schema.get("properties", {}).items():
            yield from leaves(sub, document, (*path, key))
    elif kind == "array":
        yield from leaves(schema.get("items", {}), document, (*path, 0))
    elif kind in ("integer", "number") or (kind == "string" and "enum" not in schema):
        yield path, schema


def with_value(schema: dict[str, Any], document: dict[str, Any], values: dict[str, Any],
               path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A plausible body with the field at `path` set to `value` (its parents made up)."""
    body = sample(schema, document, "", values)
    holder: Any = body
    part_schema = schema
    for step in path[:-1]:
        part_schema = resolve(part_schema, document)
        if isinstance(step, int):
            part_schema = part_schema["items"]
            if not holder:
                holder.append(sample(part_schema, document, "", values))
            holder = holder[0]
        else:
            part_schema = part_schema["properties"][step]
            if not isinstance(holder.get(step), dict | list):
                holder[step] = sample(part_schema, document, str(step), values)
                if isinstance(holder[step], list) and not holder[step]:
                    holder[step].append({})
            holder = holder[step]
    holder[path[-1]] = value
    return body


def field_name(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path)


class Prober:
    """Sends each hostile request and checks its answer and what it left stored."""

    def __init__(self, client: FlaskClient, world: World) -> None:
        self.client, self.world = client, world
        self.before = world.snapshot()
        self.failures: list[str] = []
        self.sent = 0

    def send(self, method: str, url: str, headers: dict[str, str], names: str | None,
             **kwargs: Any) -> None:
        """`names`: the field the refusal must name (None: any field will do)."""
        self.sent += 1
        response = self.client.open(url, method=method.upper(), headers=headers, **kwargs)
        what = f"{method.upper()} {url} {str(kwargs)[:160]} -> {response.status_code}"
        status = response.status_code
        if status < 300:
            if names is not None:
                self.failures.append(f"{what}: taken, but {names} should have been refused")
            self.before = self.world.snapshot()
            return
        body = response.get_json(silent=True)
        if status >= 500 or not isinstance(body, dict) or "error" not in body:
            self.failures.append(f"{what}: {response.get_data(as_text=True)[:300]}")
            return
        fields = [f.get("field") for f in body["error"].get("fields", [])]
        if (status in (400, 413, 415, 422) and not fields) or (
                names is not None and names not in fields):
            self.failures.append(f"{what}: names {fields}, not {names}")
        after = self.world.snapshot()
        if after != self.before:
            self.failures.append(f"{what}: a refused request changed stored rows")
            self.before = after


def test_every_operation_survives_hostile_input(app: Flask, client: FlaskClient, world: World,
                                                make: Factory,
                                                document: dict[str, Any]) -> None:
    prober = Prober(client, world)
    for path, method, entry in operations(document):
        roles = entry.get("x-roles") or ["resident"]
        headers = dict(world.callers[roles[0]])
        if (path, method) in {("/api/v1/auth/token", "delete"), ("/api/v1/me/password", "post")}:
            headers = make.user()[1]  # it logs its caller out (a new password ends every token)
            prober.before = world.snapshot()
        if any(p["name"] == "Idempotency-Key" for p in entry.get("parameters", [])):
            headers["Idempotency-Key"] = "hostile-1"
        url = path
        for name, value in world.path_ids.items():
            url = url.replace("{" + name + "}", str(value))
        schema = body_schema(entry, document)
        json_headers = {**headers, "Content-Type": "application/json"}

        reads_json = "body" if schema is not None else None  # others may ignore a body
        deep = "[" * 10_000 + "]" * 10_000
        prober.send(method, url, json_headers, reads_json, data=deep)
        prober.send(method, url, json_headers, reads_json,
                    data='{"a":' * 10_000 + "1" + "}" * 10_000)

        for name in world.path_ids:
            if "{" + name + "}" in path:
                for big in BIG_IDS:
                    bad_url = path.replace("{" + name + "}", str(big))
                    for other, value in world.path_ids.items():
                        bad_url = bad_url.replace("{" + other + "}", str(value))
                    # "-1" is no id at all: an unknown path, found by no route
                    prober.send(method, bad_url, json_headers, name if big > 0 else None,
                                data="{}")

        declared = [p["name"] for p in entry.get("parameters", []) if p["in"] == "query"]
        for name in dict.fromkeys(declared + QUERY_PARAMS.get((method, path), [])):
            for value in QUERY_VALUES:
                prober.send(method, f"{url}?{name}={value}", headers, None)

        if schema is None:
            continue
        accepted = set(entry.get("requestBody", {}).get("content", {}))
        for kwargs in WRONG_TYPES:
            # a type the operation documents (CSV uploads take text/plain) is read, not
            # refused for its type: the refusal then names what is wrong inside it
            documented = kwargs.get("content_type") in accepted
            prober.send(method, url, headers, None if documented else "Content-Type", **kwargs)
        for field_path, leaf in leaves(schema, document):
            name = field_name(field_path)
            if leaf["type"] in ("number", "integer"):
                refused = [*NUMBERS.values(), *COORDINATES.get(str(field_path[-1]), [])]
                refused += BIG_IDS if leaf["type"] == "integer" else []
                if "minimum" in leaf or "maximum" in leaf:
                    refused += [-1e308, 1e308]
                allowed: list[Any] = []
            else:
                refused = [*BAD_TEXTS]
                allowed = [t for t in FINE_TEXTS if len(t) <= leaf.get("maxLength", len(t))]
                refused += [t for t in FINE_TEXTS if t not in allowed]
            for value in refused + allowed:
                body = with_value(schema, document, world.values, field_path, value)
                prober.send(method, url, json_headers, name if value in refused else None,
                            data=json.dumps(body))

    assert prober.sent > 500
    assert not prober.failures, "\n".join(prober.failures)
    assert client.get("/healthz").status_code == 200


def upload_until_answered(server: LiveServer, method: str, path: str, headers: dict[str, str],
                          total: int, chunked: bool) -> tuple[int, dict[str, Any], int]:
    """Stream `total` bytes as the body, stopping as soon as the server answers: (status,
    JSON body, bytes sent by then)."""
    host, port = server.url.removeprefix("http://").split(":")
    head = [f"{method.upper()} {path} HTTP/1.1", f"Host: {host}:{port}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    piece = b"[" * 65536
    frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                break
            assert writable, "the server neither answered nor read"
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read()), sent


def test_a_streamed_50_mb_body_is_refused_early_everywhere(
        live_server: LiveServer, world: World, document: dict[str, Any]) -> None:
    """A client sending 50 MB gets a 413 naming the body long before it has sent it all,
    on every operation, announced or streamed (chunked, no length); CSV uploads have the
    larger cap."""
    total = 50 * 1024 * 1024
    before = world.snapshot()
    for path, method, entry in operations(document):
        roles = entry.get("x-roles") or ["resident"]
        url = path
        for name, value in world.path_ids.items():
            url = url.replace("{" + name + "}", str(value))
        kinds = [("application/json", False), ("application/json", True)]
        if path.endswith(("/batches", "/units/import")) and method == "post":
            kinds += [("text/csv", False), ("text/csv", True)]
        for content_type, chunked in kinds:
            headers = {**world.callers[roles[0]], "Content-Type": content_type}
            status, body, sent = upload_until_answered(live_server, method, url, headers,
                                                       total, chunked)
            assert status == 413, (method, url, content_type, chunked, status, body)
            assert body["error"]["fields"][0]["field"] == "body"
            assert sent < total // 2, (method, url, content_type, chunked, sent)
    assert requests.get(live_server.url + "/healthz", timeout=10).status_code == 200
    assert world.snapshot() == before


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/api/v1/jobs", {"GET", "POST"}),
    ("GET", "/api/v1/units/7", {"PUT", "DELETE"}),
    ("PUT", "/login", {"GET", "POST"}),
])
def test_405_says_which_methods_are_allowed(client: FlaskClient, method: str, path: str,
                                            allowed: set[str]) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_an_id_beyond_its_column_is_not_found_by_name_whatever_the_method(
        client: FlaskClient, world: World, method: str) -> None:
    """Werkzeug's bounded int converter made this a 405 (another method's route matched)."""
    for big in (0, 2**31, INT64_MAX + 1, 10**30):
        response = client.open(f"/api/v1/units/{big}", method=method, json={},
                               headers=world.callers["property_manager"])
        assert response.status_code == 404, (big, response.json)
        assert response.json["error"]["fields"][0]["field"] == "unit_id"


def test_error_bodies_stay_small_whatever_the_input(client: FlaskClient, world: World,
                                                     document: dict[str, Any]) -> None:
    """A 750 KiB bad request was answered with 6 MB: a problem, naming the key, for each of
    its 60,000 unknown keys. Refusals echo little of the input, and never all of it."""
    size = 750 * 1024
    bodies = [
        {f"k{i}": 1 for i in range(size // 10)},  # many unknown fields
        {"x" * size: 1},  # one unknown field with a long name
        {f"{'y' * 500}{i}": "z" * 500 for i in range(size // 1000)},
    ]
    checked = 0
    for path, method, entry in operations(document):
        if body_schema(entry, document) is None:
            continue
        bodies.append(bodies.pop(0))  # each operation gets one kind in turn (time)
        roles = entry.get("x-roles") or ["resident"]
        url = path
        for name, value in world.path_ids.items():
            url = url.replace("{" + name + "}", str(value))
        for body in bodies[:1]:
            data = json.dumps(body)
            assert len(data) >= size
            response = client.open(url, method=method.upper(), data=data,
                                   headers={**world.callers[roles[0]],
                                            "Content-Type": "application/json",
                                            "Idempotency-Key": "small-errors"})
            assert 400 <= response.status_code < 500, (method, url, response.status_code)
            assert len(response.data) < 4096, (method, url, len(response.data))
            assert response.json["error"]["fields"]
            checked += 1
    assert checked >= 20


def test_csv_uploads_have_a_larger_cap_than_json(client: FlaskClient, world: World) -> None:
    """A 2 MB unit file is read (and judged by its rows); 2 MB of JSON is refused unread, and
    past its own cap so is a CSV file."""
    pm = world.callers["property_manager"]
    notes = "n" * 100_000  # long cells, few rows: read quickly, refused row by row
    rows = "".join(f"Elm Court,{n},{n} Elm Court,{CENTER[0]},{CENTER[1]},{notes}\n"
                   for n in range(21))
    csv_body = "property,label,address,lat,lng,access_notes\n" + rows
    assert len(csv_body) > 2 * 1024 * 1024 - 1000
    read = client.post("/api/v1/units/import", data=csv_body, content_type="text/csv",
                       headers=pm)
    assert read.status_code == 200, read.json
    assert read.json["rejected"][0]["field"] == "access_notes"
    as_json = client.post("/api/v1/batches", data=json.dumps({"rows": [csv_body]}),
                          content_type="application/json", headers=pm)
    assert as_json.status_code == 413
    assert as_json.json["error"]["fields"][0]["field"] == "body"
    too_big = client.post("/api/v1/batches?batch_key=k", data=csv_body * 6,
                          content_type="text/csv", headers=pm)
    assert too_big.status_code == 413
    assert too_big.json["error"]["fields"][0]["field"] == "body"


def test_refused_rows_quote_little_of_what_they_refuse(client: FlaskClient,
                                                        world: World) -> None:
    """A row problem that quotes the value ("no bookable service called '...'") quoted all
    of it: 100 KB per row, stored with the batch and sent back."""
    pm = world.callers["property_manager"]
    rows = [{"unit_id": world.unit_id, "category": "c" * 100_000, "description": "Tap"}] * 8
    response = client.post("/api/v1/batches", json={"batch_key": "long", "rows": rows},
                           headers=pm)
    assert response.status_code in (200, 202), response.json
    problems = response.json["rejected"]
    assert len(problems) == 8 and all(len(p["problem"]) < 300 for p in problems)
    units = ("property,label,address,lat,lng\n" +
             f"{'p' * 100_000},1A,1 Elm Court,{CENTER[0]},{CENTER[1]}\n")
    response = client.post("/api/v1/units/import", data=units, content_type="text/csv",
                           headers=pm)
    assert response.status_code == 200, response.json
    assert len(response.data) < 4096


def test_csv_cells_with_control_characters_are_refused_by_line_and_column(
        client: FlaskClient, world: World) -> None:
    """The CSV endpoints hold text the same rules refuse in JSON: each hostile cell is a
    refused row naming its column, never a stored one, never a 5xx."""
    pm = world.callers["property_manager"]
    jobs_before = count(world.app, "jobs")
    cells = [t for t in BAD_TEXTS if t != "\ud800"]  # a file is bytes: no lone surrogates
    for column in ("label", "address", "access_notes", "tenant_name"):
        for cell in cells:
            values = {"property": "Elm Court", "label": "9Z", "address": "9 Elm Court",
                      "access_notes": "", "tenant_name": "", column: cell}
            line = ",".join(f'"{values[c]}"' for c in ("property", "label", "address"))
            line += f",{CENTER[0]},{CENTER[1]},\"{values['access_notes']}\","
            line += f"\"{values['tenant_name']}\""
            response = client.post(
                "/api/v1/units/import", content_type="text/csv", headers=pm,
                data="property,label,address,lat,lng,access_notes,tenant_name\n" + line)
            if "\x00" in cell:  # a NUL byte makes it no text file at all: refused whole
                assert response.status_code == 400, (column, response.json)
                assert response.json["error"]["line"] == 2, response.json
                continue
            assert response.status_code == 200, (column, cell, response.json)
            assert [r["field"] for r in response.json["rejected"]] == [column], (column, cell)
    for cell in cells:
        response = client.post(
            "/api/v1/batches?batch_key=k-" + str(BAD_TEXTS.index(cell)), headers=pm,
            content_type="text/csv", data="property,unit,category,description\n"
                                          f'Elm Court,1A,leak-repair,"Tap {cell} drips"\n')
        if "\x00" in cell:
            assert response.status_code == 400, response.json
            assert response.json["error"]["fields"][0]["field"] == "file", response.json
            continue
        assert response.status_code in (200, 202), (cell, response.json)
        assert [r["field"] for r in response.json["rejected"]] == ["description"], cell
    units = client.get("/api/v1/units", headers=pm).json["units"]
    assert [u["label"] for u in units] == ["1A"]
    assert count(world.app, "jobs") == jobs_before
