"""Registration, tokens and the caller's own account."""

from __future__ import annotations

from flask import Response

from dispatch.db import db
from dispatch.db.models import User
from dispatch.domain.commands import RegisterIn
from dispatch.http.api import bp
from dispatch.http.api.routing import registry
from dispatch.http.api.schemas import LoginIn, TokenOut, UserOut
from dispatch.http.api.shapes import token_out, user_out
from dispatch.http.auth import bearer_token, token_ttl
from dispatch.services import accounts
from dispatch.services.credentials import issue_token, revoke_token


@registry.route(bp, "/auth/register", "POST", summary="Create an account and get a token",
                body=RegisterIn, response=TokenOut, status=201, roles=None, errors=[409])
def register(body: RegisterIn) -> tuple[TokenOut, int]:
    user = accounts.register(db.session, body)
    token, expires_at = issue_token(db.session, user, token_ttl())
    db.session.commit()
    return token_out(token, user, expires_at), 201


@registry.route(bp, "/auth/token", "POST", summary="Log in: exchange email and password for a "
                "bearer token", body=LoginIn, response=TokenOut, status=201, roles=None,
                errors=[401])
def create_token(body: LoginIn) -> tuple[TokenOut, int]:
    user = accounts.login(db.session, body.email, body.password)
    token, expires_at = issue_token(db.session, user, token_ttl())
    db.session.commit()
    return token_out(token, user, expires_at), 201


@registry.route(bp, "/auth/token", "DELETE", summary="Revoke the bearer token of this request",
                response=None, status=204)
def delete_token(user: User) -> Response:
    token = bearer_token()
    if token:
        revoke_token(db.session, token)
        db.session.commit()
    return Response(status=204)


@registry.route(bp, "/me", "GET", summary="The caller's account", response=UserOut)
def me(user: User) -> UserOut:
    return user_out(user)
