"""Proving phones with a texted code (Twilio Verify), and sign-up that tells nothing.

A sign-up is only a request until the phone it names answers the code texted to it: then the
account is created, phone proven. Whether the email or phone already has an account, the
caller is answered alike and nothing is created; the owner is texted a notice instead. So
nobody learns who has an account by signing up, and nobody can hold a number they do not
have. An account's phone must be proven before its first booking, first shift online and
first batch (`credentials.require_verified_phone`); changing it un-proves it."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from twilio.rest import Client

from dispatch.db import clock
from dispatch.db.aftercommit import on_commit
from dispatch.db.models import PhoneVerification, User
from dispatch.domain.commands import RegisterIn
from dispatch.domain.errors import Overloaded, invalid, refusal
from dispatch.infra.queues import enqueue_phone_code
from dispatch.services import notify
from dispatch.services.accounts import create_account
from dispatch.services.context import settings
from dispatch.services.credentials import hash_password
from notifications.verify import VerifyUnavailable, code_approved, send_code

log = logging.getLogger(__name__)
WRONG_CODE = "phone_code.wrong"  # message ids (dispatch.domain.messages)
TICKET = "ticket_sha256"  # in a pending sign-up: the digest of the ticket its form got


def request_signup(session: Session, data: RegisterIn) -> str:
    """Text a code to the sign-up's phone, or, when the email or phone already has an account,
    text its owner a notice and send no code. The caller answers the same either way: the
    password is hashed and one message is queued either way, so the answer takes as long,
    and either way it gets a ticket (one that leads nowhere for an existing account).

    The ticket, with the code, finishes the sign-up: the code proves the phone, the ticket
    that the one who answers is the one who filled in the form. Without it, someone who knows
    a number could sign up with it just before its owner does and have the owner's code
    create *their* account on the owner's phone."""
    ticket = secrets.token_urlsafe(32)
    password_hash = hash_password(data.password)
    owners = session.execute(select(User).where(
        or_(User.email == data.email, User.phone_e164 == data.phone))).scalars().all()
    if owners:
        for owner in owners:
            notify.signup_attempted(session, owner)
        session.commit()
        log.info("sign-up for an existing account: owner(s) %s told", [o.id for o in owners])
        return ticket
    signup = {"email": data.email, "name": data.name, "role": data.role,
              "locale": data.locale, "password_hash": password_hash,
              TICKET: _digest(ticket)}
    _send(session, data.phone, signup=signup)
    return ticket


def finish_signup(session: Session, ticket: str, code: str) -> User:
    """The account a pending sign-up asked for, once its phone answered the code: created
    with the phone proven. A wrong, used or expired code or ticket (a later sign-up for the
    same number replaces the earlier one's) is 422 on `code`."""
    pending = _checked(session, PhoneVerification.signup[TICKET].astext == _digest(ticket),
                       code)
    signup: dict[str, Any] = dict(pending.signup or {})
    session.delete(pending)
    return create_account(session, email=signup["email"], name=signup["name"],
                          phone=pending.phone_e164, role=signup["role"],
                          locale=signup["locale"], password_hash=signup["password_hash"])


def send_account_code(session: Session, user: User) -> None:
    """Text a code to the account's own phone (a proven phone needs none)."""
    if user.phone_verified_at is not None:
        raise invalid("phone", "phone.already_verified")
    _send(session, user.phone_e164, user_id=user.id)


def verify_account_phone(session: Session, user: User, code: str) -> User:
    """The account's phone is proven by the code texted to it."""
    pending = _checked(session, (PhoneVerification.phone_e164 == user.phone_e164)
                       & (PhoneVerification.user_id == user.id), code)
    proven = pending.phone_e164
    session.delete(pending)
    # Only the number the code went to is proven: if the account changed its phone while
    # Twilio was checking, the code proves nothing about the new one.
    done = session.execute(update(User).where(User.id == user.id, User.phone_e164 == proven)
                           .values(phone_verified_at=clock.now()))
    if not done.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        raise invalid("code", WRONG_CODE)
    session.commit()
    session.refresh(user)
    return user


def _send(session: Session, phone: str, *, signup: dict[str, Any] | None = None,
          user_id: int | None = None) -> None:
    """Record what the code will do, and queue the text (`text_code`): the request then
    takes as long whether it sends a code or not, and Twilio being slow or down costs it
    nothing (the queue retries). A new code for a number replaces the last one, and its tries
    start again. Asked again within `phone_code_resend_s`, the code already texted stands
    (same tries, same life) and nothing is sent, so repeated sign-ups cannot flood a phone."""
    s = settings()
    now = clock.now()
    last = session.execute(select(PhoneVerification).where(
        PhoneVerification.phone_e164 == phone).with_for_update()).scalar_one_or_none()
    if last is not None and now - last.sent_at < timedelta(seconds=s.phone_code_resend_s):
        last.user_id, last.signup = user_id, signup
        session.commit()
        log.info("a code was texted to this number moments ago: not sending another")
        return
    # Twilio texts the same code again while it lives, so its tries carry over to a new
    # request made within its life: asking again must not buy more guesses at one code.
    alive = last is not None and now - last.sent_at < timedelta(minutes=s.phone_code_ttl_minutes)
    values = {"user_id": user_id, "signup": signup, "sent_at": now,
              "checks": last.checks if last is not None and alive else 0}
    session.execute(insert(PhoneVerification).values(phone_e164=phone, **values)
                    .on_conflict_do_update(index_elements=["phone_e164"], set_=values))
    on_commit(session, lambda _: enqueue_phone_code(phone, now))
    session.commit()


def text_code(session: Session, phone: str, sent_at: datetime) -> bool:
    """Have Twilio Verify text the code recorded at `sent_at` (run by the queue); False when
    that code is gone (answered, replaced, forgotten). Twilio unreachable raises, for a retry."""
    pending = session.get(PhoneVerification, phone)
    if pending is None or pending.sent_at != sent_at:
        return False
    if pending.signup is not None:
        locale = str(pending.signup["locale"])
    else:
        owner = session.get(User, pending.user_id)
        locale = owner.locale if owner is not None else "en"
    session.rollback()  # hold no transaction open across the call to Twilio
    send_code(_twilio(), settings().twilio_verify_service_sid, phone, locale)
    return True


def _checked(session: Session, which: ColumnElement[bool], code: str) -> PhoneVerification:
    """The pending code's row (`which`), locked, once Twilio says `code` is the one it texted
    to its number. Each try counts; past the allowance, or past the code's life, the code is
    dead."""
    s = settings()
    pending = session.execute(select(PhoneVerification).where(which).with_for_update()
                              ).scalar_one_or_none()
    if (pending is None or pending.checks >= s.phone_code_checks
            or clock.now() - pending.sent_at > timedelta(minutes=s.phone_code_ttl_minutes)):
        session.rollback()
        raise invalid("code", WRONG_CODE)
    pending.checks += 1
    phone = pending.phone_e164
    session.commit()  # the try counts even if Twilio is down or the code is wrong
    try:
        approved = code_approved(_twilio(), s.twilio_verify_service_sid, phone, code)
    except VerifyUnavailable as exc:
        log.warning("Twilio Verify could not check a code: %s", exc)
        raise _unavailable() from exc
    if not approved:
        raise invalid("code", WRONG_CODE)
    locked = session.execute(select(PhoneVerification).where(which).with_for_update()
                             ).scalar_one_or_none()
    if locked is None:  # a concurrent try got there first, or a new sign-up replaced it
        raise invalid("code", WRONG_CODE)
    return locked


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def _unavailable() -> Overloaded:
    return refusal(Overloaded, "sms_unavailable", "phone", "phone.code_unavailable")


def _twilio() -> Client:
    return notify.twilio()


def sweep(session: Session) -> int:
    """Forget codes past their life: a sign-up nobody finished holds an email and a password
    hash, which must not stay for ever."""
    s = settings()
    gone = session.execute(delete(PhoneVerification).where(
        PhoneVerification.sent_at < clock.now() - timedelta(minutes=s.phone_code_ttl_minutes)))
    session.commit()
    return int(gone.rowcount or 0)
