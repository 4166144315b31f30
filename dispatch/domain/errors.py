"""Why the domain refuses something, in one error shape for every client:
`{"error": {"code", "message", "fields": [{"field", "problem"}]}}`.

The kind of refusal is the class; what a transport makes of it (an HTTP status, a Socket.IO
acknowledgement) is decided by that transport alone (`dispatch.http.errors`). Every refusal
names the field and the problem, so a client can show it next to the input. The problem is a
sentence for people from the message catalogue (`dispatch.domain.messages`), and its stable
message id travels with it as `kind`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from dispatch.domain import messages


@dataclass(frozen=True)
class FieldProblem:
    field: str
    problem: str
    kind: str = ""  # the catalogue's message id, for programs and translators


def problem(field_name: str, message_id: str, **params: Any) -> FieldProblem:
    """A field problem said in the catalogue's words."""
    return FieldProblem(field_name, messages.say(message_id, params, field_name), message_id)


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
        """The refusal as sent, small whatever was sent: a body with 60,000 unknown keys
        once came back as 6 MB of field problems, each naming its key."""
        error: dict[str, Any] = {
            "code": self.code,
            "message": messages.clipped(self.message, MAX_MESSAGE_CHARS),
            "fields": [_field_body(f) for f in self.fields[:MAX_FIELDS]],
        }
        error.update(self.extra)
        return {"error": error}


# How much of a refusal is sent back (the first problems are enough to fix the input, and
# the field names come from the input itself).
MAX_FIELDS = 8
MAX_FIELD_CHARS = 80
MAX_PROBLEM_CHARS = 240
MAX_MESSAGE_CHARS = 480


def _field_body(found: FieldProblem) -> dict[str, str]:
    body = {"field": messages.clipped(found.field, MAX_FIELD_CHARS),
            "problem": messages.clipped(found.problem, MAX_PROBLEM_CHARS)}
    if found.kind:
        body["kind"] = found.kind
    return body


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


class PaymentRequired(DomainError):
    """The payer's card was refused: nothing was stored or held."""


class Overloaded(DomainError):
    """Every database connection stayed busy for the pool's whole timeout: the service is
    saturated, which is not the request's fault. The client is told to come back."""


Refusal = TypeVar("Refusal", bound=DomainError)

# How long a client should wait before trying again when the server is saturated.
RETRY_AFTER_S = 5


def overloaded() -> Overloaded:
    return Overloaded("overloaded", messages.say("overloaded"),
                      extra={"retry_after_s": RETRY_AFTER_S})


class Unavailable(Overloaded):
    """PostgreSQL or Redis cannot be reached (restarting, failing over): like saturation, not
    the request's fault, and over in seconds; the client is told to come back."""


def unavailable() -> Unavailable:
    return Unavailable("unavailable", messages.say("unavailable"),
                       extra={"retry_after_s": RETRY_AFTER_S})


class IllegalTransition(Conflict):
    """A move the state machine does not allow, or not for this actor."""


    def __init__(self, entity: str, current: str, target: str, actor: str | None = None):
        self.entity, self.current, self.target, self.actor = entity, current, target, actor
        thing = messages.ENTITIES.get(entity, "this")
        found = problem("status", "transition.illegal", Thing=messages.capitalized(thing),
                        current=current.replace("_", " "), target=target.replace("_", " "))
        super().__init__("illegal_transition", found.problem, [found],
                         {"current_status": current, "requested_status": target})


def refusal(kind: type[Refusal], code: str, field_name: str, message_id: str,
            **params: Any) -> Refusal:
    """A refusal of one field, said in the catalogue's words."""
    found = problem(field_name, message_id, **params)
    return kind(code, found.problem, [found])


def invalid(field_name: str, message_id: str,
            kind: type[DomainError] = InvalidInput, **params: Any) -> DomainError:
    """A single-field refusal of input: the common case. `message_id` names a sentence in
    the catalogue; text that is not one (older callers) is kept, after the field's label."""
    if messages.is_known(message_id):
        return refusal(kind, "validation_failed", field_name, message_id, **params)
    text = f"{messages.capitalized(messages.label(field_name))}: {message_id}."
    return kind("validation_failed", text, [FieldProblem(field_name, text)])


def wrong_role(needed: list[str], actual: str | None, page: bool = False) -> Forbidden:
    """Someone asks for what is meant for another role: said in people's words ("This page is
    for workers. You are logged in as a resident.")."""
    whom = messages.roles_text(needed)
    if actual is None:
        found = problem("role", "role.needed_anonymous", needed=whom)
    else:
        found = problem("role", "role.page_needed" if page else "role.needed", needed=whom,
                        actual=messages.ROLE_ONE.get(actual, "someone else"))
    return Forbidden("forbidden", found.problem, [found], {"needed_roles": needed})


# What an unexpected failure tells the caller (the details go to the log only).
UNEXPECTED = messages.say("unexpected")


def not_found(what: str) -> NotFound:
    return NotFound("not_found", messages.say("not_found", {"what": what}))


def from_validation_error(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """pydantic's report on a command, as field problems."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False)[:MAX_FIELDS]:
        loc = prefix + (".".join(str(p) for p in err["loc"]) or "body")
        message_id, params = messages.for_pydantic(err["type"], loc, err.get("ctx"))
        problems.append(problem(loc, message_id, **params))
    return InvalidInput("validation_failed", sentences(problems), problems)


def sentences(problems: list[FieldProblem]) -> str:
    """The problems as one text, each sentence once (lat and lng both say "pick a place")."""
    return " ".join(dict.fromkeys(p.problem for p in problems))
