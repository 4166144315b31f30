"""Credentials: passwords and bearer tokens.

Passwords use Werkzeug's scrypt (a memory-hard KDF); tokens are random 256-bit strings of
which only a SHA-256 is stored, so a database leak does not leak working tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from dispatch.db import clock
from dispatch.db.models import ApiToken, User
from dispatch.domain.errors import Forbidden, refusal

PASSWORD_METHOD = "scrypt"


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=PASSWORD_METHOD)


def verify_password(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


def password_stamp(user: User) -> str:
    """Changes whenever the password does (each hash has its own salt): login sessions and
    reset links carry it, so a new password ends them."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def set_password(session: Session, user: User, password: str) -> None:
    """A new password ends every bearer token of the account (a stolen one dies with the
    old password); the caller's login session is renewed by the HTTP layer."""
    user.password_hash = hash_password(password)
    session.execute(
        update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=clock.now()))


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


def require_verified_phone(user: User) -> None:
    """Texts go to the account's phone from its first booking, shift or batch on: its owner
    must have answered a code sent to it first (dispatch.services.phone_verification)."""
    if user.phone_verified_at is None:
        raise refusal(Forbidden, "phone_unverified", "phone", "phone.unverified")
