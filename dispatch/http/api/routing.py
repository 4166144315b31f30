"""Declares API operations once: the same declaration registers the Flask route, parses and
validates the body with its pydantic schema, checks the caller's role, and feeds the OpenAPI
document, so the document cannot drift from the code."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import models_json_schema

from dispatch.db.models import Role
from dispatch.domain.errors import NotFound, from_validation_error, invalid, problem, refusal
from dispatch.http.auth import authenticate
from dispatch.http.errors import ApiError


class ErrorDetail(BaseModel):
    field: str
    problem: str = Field(description="a sentence for people, naming the thing in their words")
    kind: str | None = Field(None, description="the problem's stable message id, e.g. "
                                               "'description.too_short', for programs and "
                                               "translations")


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[ErrorDetail]
    line: int | None = Field(None, description="a refused CSV file: the line of the problem "
                                               "(the header is line 1)")


class ErrorResponse(BaseModel):
    error: ErrorBody


@dataclass(frozen=True)
class HeaderParam:
    name: str
    required: bool
    description: str


def op_status(op: Operation) -> int:
    """The operation's success status: its lowest 2xx response."""
    return min(code for code in op.responses if 200 <= code < 300)


@dataclass
class Operation:
    path: str
    method: str
    summary: str
    body: type[BaseModel] | None
    responses: dict[int, type[BaseModel] | None]
    roles: tuple[Role, ...] | None
    headers: tuple[HeaderParam, ...]
    tag: str
    description: str = ""
    path_params: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    query: type[BaseModel] | None = None
    # Request bodies the view reads itself, by media type: a model, or a JSON schema
    # (e.g. a CSV upload: `{"type": "string"}`).
    bodies: dict[str, type[BaseModel] | dict[str, Any]] = field(default_factory=dict)
    # Other media types the success response may be in (a CSV download), besides JSON.
    produces: tuple[str, ...] = ()

    def request_models(self) -> list[type[BaseModel]]:
        found = [self.body] if self.body else []
        return found + [m for m in self.bodies.values() if isinstance(m, type)]


def csv_upload(example: str) -> dict[str, type[BaseModel] | dict[str, Any]]:
    """`bodies=` of an upload that takes a CSV file as text/csv (or text/plain, as some
    clients label a .csv)."""
    schema = {"type": "string", "description": "a CSV file, UTF-8, header line first",
              "examples": [example]}
    return {"text/csv": schema, "text/plain": schema}

_CONVERTER = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")
# Path ids, bounded like the columns they address (int4 users/categories, int8 jobs/offers).
ID4 = "id(min=1, max=2147483647)"
ID8 = "id(min=1, max=9223372036854775807)"


class ApiRegistry:
    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def route(
        self,
        bp: Blueprint,
        rule: str,
        method: str,
        *,
        summary: str,
        response: type[BaseModel] | None,
        status: int = 200,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        bodies: dict[str, type[BaseModel] | dict[str, Any]] | None = None,
        roles: Iterable[Role] | None = (),
        errors: Iterable[int] = (),
        headers: Iterable[HeaderParam] = (),
        extra_responses: dict[int, type[BaseModel]] | None = None,
        produces: Iterable[str] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """`roles=None` means no login needed; `()` means any logged-in user. `query` declares
        the query parameters (the view gets them as `query`; any other is refused);
        `bodies` documents request bodies the view reads itself (CSV uploads); `produces`
        the other media types of the success response (a CSV download)."""
        roles_t = None if roles is None else tuple(roles)

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            responses: dict[int, type[BaseModel] | None] = {status: response}
            responses.update(extra_responses or {})
            codes = set(errors) | {422}  # any operation refuses unknown query parameters
            if roles_t is not None:
                codes |= {401} | ({403} if roles_t else set())
            for code in codes:
                responses.setdefault(code, ErrorResponse)
            op = Operation(
                path=(bp.url_prefix or "") + _CONVERTER.sub(r"{\3}", rule),
                method=method.lower(),
                summary=summary,
                body=body,
                responses=responses,
                roles=roles_t,
                headers=tuple(headers),
                tag=bp.name,
                description=(fn.__doc__ or "").strip(),
                path_params=[(m.group(3), _bounds(m.group(2))) for m in _CONVERTER.finditer(rule)],
                query=query,
                bodies=dict(bodies or {}),
                produces=tuple(produces),
            )
            self.operations.append(op)

            @wraps(fn)
            def view(**path_args: Any) -> Any:
                kwargs: dict[str, Any] = dict(path_args)
                if roles_t is not None:
                    kwargs["user"] = authenticate(roles_t)
                parsed_query = parse_query(query)
                if parsed_query is not None:
                    kwargs["query"] = parsed_query
                _check_path_ids(op, path_args)
                if body is not None:
                    kwargs["body"] = parse_body(body)
                result = fn(**kwargs)
                if isinstance(result, Response):
                    return result
                code = status
                if isinstance(result, tuple):
                    result, code = result
                if result is None:
                    return Response(status=code)
                return jsonify(result.model_dump(mode="json")), code

            bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[method])
            return view

        return decorate

    def openapi(self, title: str, version: str) -> dict[str, Any]:
        models: set[type[BaseModel]] = {ErrorResponse}
        inputs: set[type[BaseModel]] = set()
        for op in self.operations:
            inputs.update(op.request_models())
            models.update(m for m in op.responses.values() if m)
        models |= inputs
        ordered = sorted(models, key=lambda m: m.__name__)
        refs, defs = models_json_schema(
            [(m, "validation" if m in inputs else "serialization") for m in ordered],
            ref_template="#/components/schemas/{model}",
        )
        schemas = defs.get("$defs", {})

        def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
            return refs[(model, mode)]

        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            entry: dict[str, Any] = {
                "summary": op.summary,
                "tags": [op.tag],
                "operationId": f"{op.method}_{op.path}".replace("/", "_").replace("{", "")
                .replace("}", "").strip("_"),
                "responses": {},
            }
            if op.description:
                entry["description"] = op.description
            params = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "integer", **bounds}}
                      for name, bounds in op.path_params]
            params += [{"name": h.name, "in": "header", "required": h.required,
                        "description": h.description, "schema": {"type": "string"}}
                       for h in op.headers]
            params += query_parameters(op.query) if op.query else []
            if params:
                entry["parameters"] = params
            if op.roles is not None:
                entry["security"] = [{"bearer": []}, {"session": []}]
                if op.roles:
                    entry["x-roles"] = [r.value for r in op.roles]
            else:
                entry["security"] = []
            content: dict[str, Any] = {}
            if op.body:
                content["application/json"] = {"schema": ref(op.body, "validation")}
            for media_type, model in op.bodies.items():
                content[media_type] = {"schema": ref(model, "validation")
                                       if isinstance(model, type) else model}
            if content:
                entry["requestBody"] = {"required": True, "content": content}
            for code, model in sorted(op.responses.items()):
                resp: dict[str, Any] = {"description": _REASONS.get(code, "response")}
                if model:
                    resp["content"] = {"application/json": {
                        "schema": ref(model, "serialization")}}
                if code == op_status(op):
                    for media_type in op.produces:
                        resp.setdefault("content", {})[media_type] = {
                            "schema": {"type": "string"}}
                entry["responses"][str(code)] = resp
            paths.setdefault(op.path, {})[op.method] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "session": {"type": "apiKey", "in": "cookie", "name": "session"},
                },
            },
        }


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The model's fields as OpenAPI `in: query` parameters (each with its own schema inline:
    parameters cannot be null, so an optional field's `null` branch is left out)."""
    schema = model.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _inline(prop, defs)
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            prop.update(branches[0])
        elif branches:
            prop["anyOf"] = branches
        prop.pop("title", None)
        description = prop.pop("description", None)
        if "default" in prop and prop["default"] is None:
            del prop["default"]  # "not given", which a query parameter says by absence
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                 "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """`schema` with every `$ref` to the model's own definitions replaced by the definition."""
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _inline(value, defs) for key, value in schema.items() if key != "$ref"}
    if "$ref" in schema:
        out = {**_inline(defs[schema["$ref"].rpartition("/")[2]], defs), **out}
    return out


def _bounds(args: str | None) -> dict[str, int]:
    """`min=1, max=9` from a converter's arguments, as JSON-schema bounds."""
    names = {"min": "minimum", "max": "maximum"}
    out: dict[str, int] = {}
    for part in (args or "").split(","):
        key, _, value = part.strip().partition("=")
        if key in names:
            out[names[key]] = int(value)
    return out


def _check_path_ids(op: Operation, path_args: dict[str, Any]) -> None:
    """An id outside its column's range names nothing: a 404 that names the id."""
    for name, bounds in op.path_params:
        value = path_args.get(name)
        if isinstance(value, int) and not (bounds.get("minimum", value) <= value
                                           <= bounds.get("maximum", value)):
            raise refusal(NotFound, "not_found", name, "not_found",
                          what=name.removesuffix("_id").replace("_", " "))


_REASONS = {200: "OK", 201: "Created", 204: "No content", 400: "Bad request",
            401: "Not logged in", 403: "Not allowed for this role", 404: "Not found",
            409: "Conflict with the current state", 422: "Invalid input"}


def parse_query(model: type[BaseModel] | None) -> BaseModel | None:
    """The query string as `model`: each parameter once, none unknown (an operation without
    a model takes none), or a 422 naming the first thing wrong."""
    data: dict[str, str] = {}
    for name, values in request.args.lists():
        if model is None:
            raise invalid(name, "unknown_field")
        if len(values) > 1:
            raise invalid(name, "query.repeated")
        data[name] = values[0]
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from exc


def parse_body(model: type[BaseModel]) -> BaseModel:
    """The JSON body as `model`, or a 4xx naming the first thing wrong with it."""
    if not request.is_json:
        found = problem("Content-Type", "body.not_json")
        raise ApiError(415, "unsupported_media_type", found.problem, [found])
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # nesting deeper than the parser's stack
        data = None
    if not isinstance(data, dict):
        found = problem("body", "body.not_object")
        raise ApiError(400, "bad_json", found.problem, [found])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from exc


registry = ApiRegistry()
