"""Who is calling: a bearer token for the JSON API, the login session for pages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from flask import Flask, current_app, g, request, session
from flask_login import current_user, user_logged_in
from flask_wtf.csrf import CSRFError

from dispatch.db import db
from dispatch.db.models import Role, User
from dispatch.domain.errors import Unauthenticated, problem, refusal, wrong_role
from dispatch.http.errors import ApiError
from dispatch.http.extensions import csrf, login_manager
from dispatch.services import push
from dispatch.services.credentials import (
    LOGIN_SESSION_KEY,
    credential_key,
    end_login_session,
    open_login_session,
    password_stamp,
    user_for_login_session,
    user_for_token,
)

# The login session remembers which password it was opened with (see `password_stamp`).
PASSWORD_STAMP = "_password_stamp"


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def bearer_user() -> User | None:
    """The bearer token's user, looked up once per request: the rate limits key on it before
    the view authenticates with it."""
    if "bearer_user" not in g:
        token = bearer_token()
        g.bearer_user = user_for_token(db.session, token) if token else None
    return g.bearer_user  # type: ignore[no-any-return]


def authenticate(roles: Iterable[Role] | None = None) -> User:
    """The caller of an API request, by bearer token or, for pages' own scripts, by session.

    Session-authenticated writes must carry the CSRF token (header `X-CSRFToken`)."""
    user: User | None = None
    if "Authorization" in request.headers:
        user = bearer_user()
        if user is None:
            raise refusal(Unauthenticated, "unauthorized", "Authorization", "token.invalid")
    elif current_user.is_authenticated:
        user = db.session.get(User, current_user.id)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            try:
                csrf.protect()
            except CSRFError as exc:
                found = problem("X-CSRFToken", "csrf.failed")
                raise ApiError(400, "csrf_failed", found.problem, [found]) from exc
    if user is None:
        raise refusal(Unauthenticated, "unauthorized", "Authorization", "login.required")
    allowed = set(roles or ())
    if allowed and Role(user.role) not in allowed:
        raise wrong_role(sorted(r.value for r in allowed), user.role)
    g.user = user
    return user


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    """Only a login session the server still holds counts: logout ends it for every copy
    of the cookie. A session opened with an earlier password is logged out too, and so is
    a cookie that names no server-side session at all (one from before they existed)."""
    key = session.get(LOGIN_SESSION_KEY)
    user = user_for_login_session(db.session, key) if isinstance(key, str) else None
    if user is None or str(user.id) != user_id:
        return None
    stamp = session.get(PASSWORD_STAMP)
    if stamp is not None and stamp != password_stamp(user):
        return None
    return user


def keep_session_after_password_change(user: User) -> None:
    """The page that changed the password stays logged in, on a new login session (the new
    password ended every one, its own included); all others end."""
    session[LOGIN_SESSION_KEY] = open_login_session(db.session, user)
    db.session.commit()
    session[PASSWORD_STAMP] = password_stamp(user)


@user_logged_in.connect
def _open_server_session(_app: Flask, user: User, **_: object) -> None:
    """Every login opens a login session the server can end."""
    keep_session_after_password_change(user)


def end_this_login_session() -> None:
    """Logout on the server: the cookie, and every copy of it, opens nothing from now on,
    and the sockets the page opened with it close."""
    key = session.pop(LOGIN_SESSION_KEY, None)
    if not isinstance(key, str):
        return
    end_login_session(db.session, key)
    push.credential_ended(db.session, credential_key(key))
    db.session.commit()


def token_ttl() -> timedelta:
    return timedelta(days=current_app.config["DISPATCH"].token_ttl_days)
