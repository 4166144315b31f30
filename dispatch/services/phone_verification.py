"""Proving phones with a texted code (Twilio Verify), and sign-up that tells nothing.

A sign-up is only a request until the phone it names answers the code texted to it: then the
account is created, phone proven. Whether the email or phone already has an account, the
caller is answered alike and nothing is created; the owner is texted a notice instead. So
nobody learns who has an account by signing up, and nobody can hold a number they do not
have. An account's phone must be proven before its first booking, first shift online and
first batch (`credentials.require_verified_phone`); changing it un-proves it."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from twilio.rest import Client

from dispatch.db import clock
from dispatch.db.models import PhoneVerification, User
from dispatch.domain.commands import RegisterIn
from dispatch.domain.errors import Overloaded, invalid, refusal
from dispatch.services import notify
from dispatch.services.accounts import create_account
from dispatch.services.context import settings
from dispatch.services.credentials import hash_password
from notifications.verify import VerifyUnavailable, code_approved, send_code

log = logging.getLogger(__name__)
WRONG_CODE = "phone_code.wrong"  # message ids (dispatch.domain.messages)


def request_signup(session: Session, data: RegisterIn) -> None:
    """Text a code to the sign-up's phone, or, when the email or phone already has an account,
    text its owner a notice and send no code. The caller answers the same either way; the
    password is hashed either way, so the answer takes as long."""
    password_hash = hash_password(data.password)
    owners = session.execute(select(User).where(
        or_(User.email == data.email, User.phone_e164 == data.phone))).scalars().all()
    if owners:
        for owner in owners:
            notify.signup_attempted(session, owner)
        session.commit()
        log.info("sign-up for an existing account: owner(s) %s told", [o.id for o in owners])
        return
    signup = {"email": data.email, "name": data.name, "role": data.role,
              "locale": data.locale, "password_hash": password_hash}
    _send(session, data.phone, data.locale, signup=signup)


def finish_signup(session: Session, phone: str, code: str) -> User:
    """The account a pending sign-up asked for, once its phone answered the code: created
    with the phone proven. A wrong, used or expired code (or no sign-up) is 422 on `code`."""
    pending = _checked(session, phone, code, signup=True)
    signup: dict[str, Any] = dict(pending.signup or {})
    session.delete(pending)
    return create_account(session, email=signup["email"], name=signup["name"], phone=phone,
                          role=signup["role"], locale=signup["locale"],
                          password_hash=signup["password_hash"])


def send_account_code(session: Session, user: User) -> None:
    """Text a code to the account's own phone (a proven phone needs none)."""
    if user.phone_verified_at is not None:
        raise invalid("phone", "phone.already_verified")
    _send(session, user.phone_e164, user.locale, user_id=user.id)


def verify_account_phone(session: Session, user: User, code: str) -> User:
    """The account's phone is proven by the code texted to it."""
    pending = _checked(session, user.phone_e164, code, signup=False, user_id=user.id)
    session.delete(pending)
    user.phone_verified_at = clock.now()
    session.commit()
    return user


def _send(session: Session, phone: str, locale: str, *, signup: dict[str, Any] | None = None,
          user_id: int | None = None) -> None:
    """Record what the code will do, then have Twilio text it: a new code for a number
    replaces the last one, and its tries start again. Asked again within
    `phone_code_resend_s`, the code already texted stands (same tries, same life) and nothing
    is sent, so repeated sign-ups cannot flood a phone."""
    s = settings()
    now = clock.now()
    last = session.execute(select(PhoneVerification).where(
        PhoneVerification.phone_e164 == phone).with_for_update()).scalar_one_or_none()
    if last is not None and now - last.sent_at < timedelta(seconds=s.phone_code_resend_s):
        last.user_id, last.signup = user_id, signup
        session.commit()
        log.info("a code was texted to this number moments ago: not sending another")
        return
    values = {"user_id": user_id, "signup": signup, "sent_at": now, "checks": 0}
    session.execute(insert(PhoneVerification).values(phone_e164=phone, **values)
                    .on_conflict_do_update(index_elements=["phone_e164"], set_=values))
    session.commit()
    try:
        send_code(_twilio(), s.twilio_verify_service_sid, phone, locale)
    except VerifyUnavailable as exc:
        log.warning("Twilio Verify could not text a code: %s", exc)
        # Nothing was texted: the next try must send, not wait out the resend interval.
        session.execute(delete(PhoneVerification).where(
            PhoneVerification.phone_e164 == phone, PhoneVerification.sent_at == now))
        session.commit()
        raise _unavailable() from exc


def _checked(session: Session, phone: str, code: str, *, signup: bool,
             user_id: int | None = None) -> PhoneVerification:
    """The pending code's row, locked, once Twilio says `code` is the one it texted. Each
    try counts; past the allowance, or past the code's life, the code is dead."""
    s = settings()
    pending = session.execute(select(PhoneVerification).where(
        PhoneVerification.phone_e164 == phone).with_for_update()).scalar_one_or_none()
    if (pending is None or (pending.signup is not None) != signup
            or (user_id is not None and pending.user_id != user_id)
            or pending.checks >= s.phone_code_checks
            or clock.now() - pending.sent_at > timedelta(minutes=s.phone_code_ttl_minutes)):
        session.rollback()
        raise invalid("code", WRONG_CODE)
    pending.checks += 1
    session.commit()  # the try counts even if Twilio is down or the code is wrong
    try:
        approved = code_approved(_twilio(), s.twilio_verify_service_sid, phone, code)
    except VerifyUnavailable as exc:
        log.warning("Twilio Verify could not check a code: %s", exc)
        raise _unavailable() from exc
    if not approved:
        raise invalid("code", WRONG_CODE)
    locked = session.execute(select(PhoneVerification).where(
        PhoneVerification.phone_e164 == phone).with_for_update()).scalar_one_or_none()
    if locked is None:  # a concurrent try with the same code got there first
        raise invalid("code", WRONG_CODE)
    return locked


def _unavailable() -> Overloaded:
    return refusal(Overloaded, "sms_unavailable", "phone", "phone.code_unavailable")


def _twilio() -> Client:
    return notify.twilio()
