"""Registration, tokens and the caller's own account."""

from __future__ import annotations

from flask import Response

from dispatch.db import db
from dispatch.db.models import User
from dispatch.domain.commands import (
    AccountIn,
    PasswordChangeIn,
    PasswordResetIn,
    PasswordResetRequestIn,
    PhoneCodeIn,
    RegisterIn,
    SignupConfirmIn,
)
from dispatch.http.api import bp
from dispatch.http.api.routing import registry
from dispatch.http.api.schemas import (
    CodeSentOut,
    LoginIn,
    ResetRequestedOut,
    SignupRequestedOut,
    TokenOut,
    UserOut,
)
from dispatch.http.api.shapes import token_out, user_out
from dispatch.http.auth import bearer_token, token_ttl
from dispatch.services import accounts, password_reset, phone_verification, push
from dispatch.services.credentials import credential_key, issue_token, revoke_token

SIGNUP_CODE_SENT = ("Check your phone: we texted a code to the number you gave. Enter it to "
                    "finish signing up. If this email or number already has an account, its "
                    "owner was told instead.")
CODE_SENT = "We texted a code to your phone. Enter it to confirm the number."


@registry.route(bp, "/auth/register", "POST", summary="Sign up: text a code to the phone "
                "given (the account is created when the code comes back)", body=RegisterIn,
                response=SignupRequestedOut, status=202, roles=None)
def register(body: RegisterIn) -> tuple[SignupRequestedOut, int]:
    """Answers the same whether or not the email or phone has an account (its owner is
    texted a notice instead, and nothing is created), so nobody learns who has one."""
    ticket = phone_verification.request_signup(db.session, body)
    return SignupRequestedOut(message=SIGNUP_CODE_SENT, ticket=ticket), 202


@registry.route(bp, "/auth/register/confirm", "POST", summary="Finish signing up with the "
                "texted code: creates the account and gets a token", body=SignupConfirmIn,
                response=TokenOut, status=201, roles=None, errors=[409, 503])
def confirm_register(body: SignupConfirmIn) -> tuple[TokenOut, int]:
    """A wrong, expired or used code (or ticket) is 422 naming `code`; a few tries per code.
    A later sign-up with the same phone replaces this one: its ticket no longer works."""
    user = phone_verification.finish_signup(db.session, body.ticket, body.code)
    token, expires_at = issue_token(db.session, user, token_ttl())
    db.session.commit()
    return token_out(token, user, expires_at), 201


@registry.route(bp, "/me/phone/code", "POST", summary="Text a code to the caller's phone",
                response=CodeSentOut, status=202, errors=[422])
def post_phone_code(user: User) -> tuple[CodeSentOut, int]:
    """Booking, going online and sending a batch need a confirmed phone (403
    `phone_unverified` until then); changing the phone un-confirms it."""
    phone_verification.send_account_code(db.session, user)
    return CodeSentOut(message=CODE_SENT), 202


@registry.route(bp, "/me/phone/verify", "POST", summary="Confirm the caller's phone with the "
                "texted code", body=PhoneCodeIn, response=UserOut, errors=[503])
def post_phone_verify(user: User, body: PhoneCodeIn) -> UserOut:
    return user_out(phone_verification.verify_account_phone(db.session, user, body.code))


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
        push.credential_ended(db.session, credential_key(token))  # its sockets close
        db.session.commit()
    return Response(status=204)


@registry.route(bp, "/me", "GET", summary="The caller's account", response=UserOut)
def me(user: User) -> UserOut:
    return user_out(user)


@registry.route(bp, "/me", "PATCH", summary="Change the caller's name, phone or language",
                body=AccountIn, response=UserOut, errors=[409])
def patch_me(user: User, body: AccountIn) -> UserOut:
    return user_out(accounts.update_account(db.session, user, body))


@registry.route(bp, "/me/password", "POST", summary="Change the caller's password",
                body=PasswordChangeIn, response=None, status=204)
def post_password(user: User, body: PasswordChangeIn) -> Response:
    """Needs the current password. Every bearer token of the account is revoked (this one
    too) and other login sessions end: log in again for a new token."""
    accounts.change_password(db.session, user, body)
    return Response(status=204)


RESET_REQUESTED = ("If an account uses that email, a link to set a new password has been "
                   "texted to its phone.")


@registry.route(bp, "/auth/password-reset", "POST", summary="Text a password-reset link to "
                "the account's phone", body=PasswordResetRequestIn, response=ResetRequestedOut,
                status=202, roles=None)
def post_password_reset(body: PasswordResetRequestIn) -> tuple[ResetRequestedOut, int]:
    """Answers the same whether or not the account exists. A few links an hour per account
    (`PASSWORD_RESETS_PER_HOUR`); each works once, for `PASSWORD_RESET_TTL_MINUTES`."""
    password_reset.request_reset(db.session, body.email)
    return ResetRequestedOut(message=RESET_REQUESTED), 202


@registry.route(bp, "/auth/password-reset/confirm", "POST", summary="Set a new password with "
                "the texted link's token", body=PasswordResetIn, response=None, status=204,
                roles=None)
def post_password_reset_confirm(body: PasswordResetIn) -> Response:
    """A forged, expired or already used token is 422 naming `token`. Every login session
    and bearer token of the account ends."""
    password_reset.reset_password(db.session, body.token, body.new_password)
    return Response(status=204)
