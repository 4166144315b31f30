"""Why the domain refuses something, in one error shape for every client:
`{"error": {"code", "message", "fields": [{"field", "problem"}]}}`.

The kind of refusal is the class; what a transport makes of it (an HTTP status, a Socket.IO
acknowledgement) is decided by that transport alone (`dispatch.http.errors`). Every refusal
names the field and the problem, so a client can show it next to the input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldProblem:
    field: str
    problem: str


class DomainError(Exception):
    """A refusal: `code` is stable for programs, `message` is for people."""

    def __init__(self, code: str, message: str, fields: list[FieldProblem] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = list(fields or [])
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "fields": [{"field": f.field, "problem": f.problem} for f in self.fields],
        }
        error.update(self.extra)
        return {"error": error}


class InvalidInput(DomainError):
    """Well-formed input the rules refuse (a value out of range, a reused key)."""


class MalformedInput(DomainError):
    """Input that cannot be read at all (bad encoding, a missing CSV column, a bad query)."""


class Unauthenticated(DomainError):
    """Nobody, or nobody known, is asking."""


class Forbidden(DomainError):
    """Someone known asks for what their role does not allow."""


class NotFound(DomainError):
    """What was named does not exist, or not for this caller."""


class Conflict(DomainError):
    """The request is fine but the state of things refuses it (a taken offer, a busy worker)."""


class Overloaded(DomainError):
    """Every database connection stayed busy for the pool's whole timeout: the service is
    saturated, which is not the request's fault. The client is told to come back."""


# How long a client should wait before trying again when the server is saturated.
RETRY_AFTER_S = 5


def overloaded() -> Overloaded:
    return Overloaded("overloaded", "the service is busy; try again in a few seconds",
                      extra={"retry_after_s": RETRY_AFTER_S})


class IllegalTransition(Conflict):
    """A move the state machine does not allow, or not for this actor."""


    def __init__(self, entity: str, current: str, target: str, actor: str | None = None):
        self.entity, self.current, self.target, self.actor = entity, current, target, actor
        who = f" by {actor}" if actor else ""
        message = f"{entity} cannot go from {current} to {target}{who}"
        super().__init__("illegal_transition", message, [FieldProblem("status", message)],
                         {"current_status": current, "requested_status": target})


def invalid(field_name: str, problem: str,
            kind: type[DomainError] = InvalidInput) -> DomainError:
    """A single-field refusal: the common case."""
    return kind("validation_failed", f"{field_name}: {problem}",
                [FieldProblem(field_name, problem)])


def not_found(what: str) -> NotFound:
    return NotFound("not_found", f"{what} not found")


def from_validation_error(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """pydantic's report on a command, as field problems."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        problems.append(FieldProblem(prefix + loc, _problem_text(err)))
    message = "; ".join(f"{p.field}: {p.problem}" for p in problems)
    return InvalidInput("validation_failed", message, problems)


def _problem_text(err: Any) -> str:
    msg: str = err["msg"]
    return msg.removeprefix("Value error, ")
