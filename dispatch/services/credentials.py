"""Credentials: passwords, bearer tokens and page login sessions.

Passwords use Werkzeug's scrypt (a memory-hard KDF); tokens and login-session keys are
random 256-bit strings of which only a SHA-256 is stored, so a database leak does not leak
working credentials. Both can be ended on the server at any time."""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from dispatch.db import clock
from dispatch.db.models import ApiToken, LoginSession, User
from dispatch.domain.errors import Forbidden, refusal
from dispatch.infra.redis import redis_connection
from dispatch.services import push

PASSWORD_METHOD = "scrypt"
# Where the login session's key sits in the (signed) Flask session cookie: the pages and the
# Socket.IO server both read it there.
LOGIN_SESSION_KEY = "_login_session"


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=PASSWORD_METHOD)


def verify_password(user: User | None, password: str) -> bool:
    """Whether `password` is the user's. Without a user (no account has that email) a
    hash of the same cost is checked all the same, and False is answered: a login then
    takes as long for an unknown email as for a known one, so timing tells nobody which
    emails have accounts."""
    if user is None:
        check_password_hash(_stand_in_hash(), password)
        return False
    return check_password_hash(user.password_hash, password)


@functools.cache
def _stand_in_hash() -> str:
    """A hash of a random password nobody knows, made with the method and cost of real ones
    (once per process: a hash costs as much as a check)."""
    return hash_password(secrets.token_urlsafe(32))


def password_stamp(user: User) -> str:
    """Changes whenever the password does (each hash has its own salt): login sessions and
    reset links carry it, so a new password ends them."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def set_password(session: Session, user: User, password: str) -> None:
    """A new password ends every bearer token and login session of the account (a stolen
    one dies with the old password), and closes their sockets; the HTTP layer gives the
    page that changed it a new login session."""
    user.password_hash = hash_password(password)
    end_every_session(session, user.id)


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


def credential_key(token: str) -> str:
    """What a socket keeps of the credential it connected with: the stored digest, enough to
    ask later whether it still holds, never the credential itself."""
    return _digest(token)


def token_digest_live(session: Session, digest: str) -> bool:
    """Whether the bearer token with this digest is still neither revoked nor expired."""
    row = session.execute(select(ApiToken.revoked_at, ApiToken.expires_at)
                          .where(ApiToken.token_sha256 == digest)).one_or_none()
    return row is not None and row.revoked_at is None and row.expires_at > clock.now()


def open_login_session(session: Session, user: User) -> str:
    """A new page login: the key goes into the (signed) cookie, its digest into the table.
    The caller commits."""
    key = secrets.token_urlsafe(32)
    session.add(LoginSession(user_id=user.id, key_sha256=_digest(key), created_at=clock.now()))
    return key


def user_for_login_session(session: Session, key: str) -> User | None:
    """The user of a live login session in one round trip: every page request pays it."""
    return session.execute(
        select(User).join(LoginSession, LoginSession.user_id == User.id)
        .where(LoginSession.key_sha256 == _digest(key), LoginSession.revoked_at.is_(None))
    ).scalar_one_or_none()


def login_digest_live(session: Session, digest: str) -> bool:
    return session.execute(
        select(LoginSession.id).where(LoginSession.key_sha256 == digest,
                                      LoginSession.revoked_at.is_(None))).first() is not None


def end_login_session(session: Session, key: str) -> None:
    """Logout: the cookie's key opens nothing from now on, wherever a copy of it is."""
    session.execute(update(LoginSession).where(LoginSession.key_sha256 == _digest(key),
                                               LoginSession.revoked_at.is_(None))
                    .values(revoked_at=clock.now()))


def end_every_session(session: Session, user_id: int) -> None:
    """Log out everywhere: every login session and every bearer token of the account, and
    (after the commit) every socket opened with them."""
    now = clock.now()
    session.execute(update(LoginSession).where(LoginSession.user_id == user_id,
                                               LoginSession.revoked_at.is_(None))
                    .values(revoked_at=now))
    session.execute(update(ApiToken).where(ApiToken.user_id == user_id,
                                           ApiToken.revoked_at.is_(None))
                    .values(revoked_at=now))
    push.user_logged_out_everywhere(session, user_id)
def require_verified_phone(user: User) -> None:
    """Texts go to the account's phone from its first booking, shift or batch on: its owner
    must have answered a code sent to it first (dispatch.services.phone_verification)."""
    if user.phone_verified_at is None:
        raise refusal(Forbidden, "phone_unverified", "phone", "phone.unverified")


_PRUNED_KEY = "dispatch:login-sessions-pruned"
PRUNE_EVERY_S = 3600


def sweep(session: Session) -> int:
    """Forget ended login sessions, hourly (one sweeper does it: a Redis claim). An ended
    session's row opens nothing (`user_for_login_session` and `login_digest_live` ask for a
    live one), so it can go at once; without this, every logout left a row for ever."""
    redis = redis_connection()
    if not redis.set(_PRUNED_KEY, 1, nx=True, ex=PRUNE_EVERY_S):
        return 0
    gone = session.execute(delete(LoginSession).where(LoginSession.revoked_at.is_not(None)))
    session.commit()
    return int(gone.rowcount or 0)  # type: ignore[attr-defined]
