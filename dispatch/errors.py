"""One error shape for the whole JSON API: `{"error": {"code", "message", "fields": [...]}}`.

Every refusal names the field and the problem, so a client can show it next to the input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from dispatch.states import IllegalTransition


@dataclass(frozen=True)
class FieldProblem:
    field: str
    problem: str


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    fields: list[FieldProblem] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "fields": [{"field": f.field, "problem": f.problem} for f in self.fields],
        }
        error.update(self.extra)
        return {"error": error}


def invalid(field_name: str, problem: str, status: int = 422) -> ApiError:
    """A single-field validation error: the common case."""
    return ApiError(status, "validation_failed", f"{field_name}: {problem}",
                    [FieldProblem(field_name, problem)])


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def from_validation_error(exc: ValidationError, prefix: str = "") -> ApiError:
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        problems.append(FieldProblem(prefix + loc, _problem_text(err)))
    message = "; ".join(f"{p.field}: {p.problem}" for p in problems)
    return ApiError(422, "validation_failed", message, problems)


def _problem_text(err: Any) -> str:
    msg: str = err["msg"]
    return msg.removeprefix("Value error, ")


# How long a client should wait before trying again when the server is saturated.
RETRY_AFTER_S = 5


def overloaded() -> ApiError:
    """Every database connection of this process stayed busy for the pool's whole timeout:
    the server is saturated, which is not the request's fault and not a bug in it. The
    client is told to come back (503 + Retry-After) instead of getting a 500."""
    return ApiError(503, "overloaded", "the service is busy; try again in a few seconds",
                    extra={"retry_after_s": RETRY_AFTER_S})


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):  # type: ignore[no-untyped-def]
        return jsonify(exc.body()), exc.status

    @app.errorhandler(IllegalTransition)
    def _illegal(exc: IllegalTransition):  # type: ignore[no-untyped-def]
        err = ApiError(409, "illegal_transition", str(exc),
                       [FieldProblem("status", str(exc))],
                       {"current_status": exc.current, "requested_status": exc.target})
        return jsonify(err.body()), 409

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):  # type: ignore[no-untyped-def]
        if not _wants_json():
            return exc
        code = (exc.name or "error").lower().replace(" ", "_")
        err = ApiError(exc.code or 500, code, exc.description or exc.name or "error")
        return jsonify(err.body()), exc.code

    @app.errorhandler(PoolTimeout)
    def _overloaded(exc: PoolTimeout):  # type: ignore[no-untyped-def]
        app.logger.warning("overloaded on %s %s: %s", request.method, request.path, exc)
        return jsonify(overloaded().body()), 503, {"Retry-After": str(RETRY_AFTER_S)}

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        err = ApiError(500, "internal_error", "unexpected server error; it has been logged")
        return jsonify(err.body()), 500
