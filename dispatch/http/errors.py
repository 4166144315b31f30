"""The one place a refusal becomes an HTTP answer: the status of each kind of domain error,
and the same error shape for what only HTTP can refuse (a bad media type, a missing token).
The API answers JSON; a page answers a page with the site's layout, a plain sentence and a
way back (`templates/error.html`), never the framework's bare "Not Found"."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from dispatch.domain.errors import (
    RETRY_AFTER_S,
    UNEXPECTED,
    Conflict,
    DomainError,
    FieldProblem,
    Forbidden,
    InvalidInput,
    MalformedInput,
    NotFound,
    Overloaded,
    PaymentRequired,
    Unauthenticated,
    overloaded,
    problem,
    unavailable,
)
from dispatch.domain.messages import BACK_LINKS, page_error
from dispatch.infra.outages import is_outage

STATUS: dict[type[DomainError], int] = {
    InvalidInput: 422,
    MalformedInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PaymentRequired: 402,
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


# Where "back" is for each role: the page its home redirects to.
_HOMES = {"worker": "web.work", "property_manager": "web.manage", "resident": "web.book",
          "admin": "web.manage"}


def error_page(status: int, sentence: str | None = None,
               headers: dict[str, str] | None = None) -> Response:
    """An error as a page with the site's layout: a heading, a sentence and a way back."""
    heading, default = page_error(status)
    try:
        role = current_user.role if current_user.is_authenticated else ""
        html = render_template("error.html", status=status, heading=heading,
                               sentence=sentence or default,
                               back_url=url_for(_HOMES.get(role, "web.index")),
                               back=BACK_LINKS.get(role, BACK_LINKS[""]), anonymous=not role)
    except Exception:  # the layout itself failed (e.g. the database is down): plain words
        html = (f"<!doctype html><title>{heading}</title><h1>{heading}</h1><p>{default}</p>"
                '<p><a href="/">Go to the home page</a></p>')
    return Response(html, status, headers or {}, mimetype="text/html")


def _megabytes(size: int | None) -> str:
    return f"{(size or 0) / (1024 * 1024):g} MB"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _refused(exc: DomainError):  # type: ignore[no-untyped-def]
        status = status_of(exc)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, Overloaded) else {}
        if not _wants_json():
            return error_page(status, exc.message, headers)
        return jsonify(exc.body()), status, headers

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):  # type: ignore[no-untyped-def]
        status = exc.code or 500
        if isinstance(exc, CSRFError):
            found = problem("csrf_token", "csrf.failed")
            if not _wants_json():
                return error_page(status, found.problem)
            return jsonify(ApiError(status, "csrf_failed", found.problem, [found]).body()), status
        # The exception's own headers (a 405's `Allow`), under our body's content type.
        kept = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        if not _wants_json():
            return error_page(status, headers=kept)
        if isinstance(exc, RequestEntityTooLarge):
            found = problem("body", "body.too_large", limit=_megabytes(request.max_content_length))
            return jsonify(ApiError(status, "too_large", found.problem, [found]).body()), \
                status, {**kept, "Connection": "close"}
        code = (exc.name or "error").lower().replace(" ", "_")
        err = ApiError(status, code, exc.description or exc.name or "error")
        return jsonify(err.body()), status, kept

    @app.errorhandler(PoolTimeout)
    def _overloaded(exc: PoolTimeout):  # type: ignore[no-untyped-def]
        app.logger.warning("overloaded on %s %s: %s", request.method, request.path, exc)
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        if not _wants_json():
            return error_page(503, headers=headers)
        return jsonify(overloaded().body()), 503, headers

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        if is_outage(exc):  # PostgreSQL or Redis restarting: come back in a few seconds
            app.logger.warning("unavailable on %s %s: %s", request.method, request.path, exc)
            return _refused(unavailable())
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        if not _wants_json():
            return error_page(500)
        err = ApiError(500, "internal_error", UNEXPECTED)
        return jsonify(err.body()), 500
