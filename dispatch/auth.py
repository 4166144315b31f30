"""Who is calling: bearer tokens for the JSON API, the login session for pages.

Passwords use Werkzeug's scrypt (a memory-hard KDF); tokens are random 256-bit strings of
which only a SHA-256 is stored, so a database leak does not leak working tokens."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from flask import current_app, g, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from dispatch import clock
from dispatch.errors import ApiError, FieldProblem
from dispatch.extensions import csrf, db, login_manager
from dispatch.models import ApiToken, Role, User

PASSWORD_METHOD = "scrypt"


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=PASSWORD_METHOD)


def verify_password(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user: User, ttl: timedelta) -> tuple[str, datetime]:
    """A new bearer token and when it expires."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    session.add(ApiToken(user_id=user.id, token_sha256=_digest(token), created_at=now,
                         expires_at=now + ttl))
    return token, now + ttl


def revoke_token(session: Session, token: str) -> None:
    session.execute(
        update(ApiToken).where(ApiToken.token_sha256 == _digest(token)).values(
            revoked_at=clock.now())
    )


def user_for_token(session: Session, token: str) -> User | None:
    """The token's user in one round trip: every API request and socket connect pays it."""
    row = session.execute(
        select(ApiToken.revoked_at, ApiToken.expires_at, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_sha256 == _digest(token))
    ).one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= clock.now():
        return None
    return row.User


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(roles: Iterable[Role] | None = None) -> User:
    """The caller of an API request, by bearer token or, for pages' own scripts, by session.

    Session-authenticated writes must carry the CSRF token (header `X-CSRFToken`)."""
    user: User | None = None
    if "Authorization" in request.headers:
        token = bearer_token()
        user = user_for_token(db.session, token) if token else None
        if user is None:
            raise ApiError(401, "unauthorized", "bearer token is missing, expired or revoked",
                           [FieldProblem("Authorization", "invalid bearer token")])
    elif current_user.is_authenticated:
        user = db.session.get(User, current_user.id)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            try:
                csrf.protect()
            except CSRFError as exc:
                raise ApiError(400, "csrf_failed", exc.description,
                               [FieldProblem("X-CSRFToken", exc.description)]) from exc
    if user is None:
        raise ApiError(401, "unauthorized", "log in or send 'Authorization: Bearer <token>'",
                       [FieldProblem("Authorization", "required")])
    allowed = set(roles or ())
    if allowed and Role(user.role) not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise ApiError(403, "forbidden", f"this needs the role {names}",
                       [FieldProblem("role", f"is {user.role}, needs {names}")])
    g.user = user
    return user


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


def token_ttl() -> timedelta:
    return timedelta(days=current_app.config["DISPATCH"].token_ttl_days)
