"""The one place a refusal becomes an HTTP answer: the status of each kind of domain error,
and the same error shape for what only HTTP can refuse (a bad media type, a missing token)."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from dispatch.domain.errors import (
    RETRY_AFTER_S,
    Conflict,
    DomainError,
    FieldProblem,
    Forbidden,
    InvalidInput,
    MalformedInput,
    NotFound,
    Overloaded,
    Unauthenticated,
    overloaded,
)

STATUS: dict[type[DomainError], int] = {
    InvalidInput: 422,
    MalformedInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Overloaded: 503,
}


class ApiError(DomainError):
    """A refusal only HTTP knows of (unsupported media type, a body that is not JSON), with
    its status."""

    def __init__(self, status: int, code: str, message: str,
                 fields: list[FieldProblem] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, fields, extra)
        self.status = status


def status_of(exc: DomainError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _refused(exc: DomainError):  # type: ignore[no-untyped-def]
        status = status_of(exc)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, Overloaded) else {}
        return jsonify(exc.body()), status, headers

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
