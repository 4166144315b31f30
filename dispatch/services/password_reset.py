"""Password reset by a texted link. The link is signed (itsdangerous, with the app's secret),
expires, and names the password it replaces (`password_stamp`), so it dies the moment it is
used or the password changes any other way. Asking never tells whether an account exists,
and an account gets only a few links an hour, so nobody can flood a phone with texts."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.models import Notification, User
from dispatch.domain.errors import invalid
from dispatch.services import notify
from dispatch.services.context import settings
from dispatch.services.credentials import password_stamp, set_password

log = logging.getLogger(__name__)
RESET_EVENT = "password_reset"
LINK_PATH = "/reset-password/"
DEAD_LINK = "reset_link.dead"  # a message id (dispatch.domain.messages)


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(settings().secret_key, salt="password-reset")


def reset_token(user: User, expires_at: datetime) -> str:
    return _serializer().dumps({"user": user.id, "stamp": password_stamp(user),
                                "until": int(expires_at.timestamp())})


def request_reset(session: Session, email: str) -> None:
    """Text a reset link to the account's phone, if there is such an account and it has not
    had its hourly share of links. The caller answers the same whatever happens here."""
    user = session.execute(
        select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
    if user is None:
        return
    s = settings()
    now = clock.now()
    sent_lately = session.execute(
        select(func.count()).select_from(Notification).where(
            Notification.user_id == user.id, Notification.event == RESET_EVENT,
            Notification.created_at > now - timedelta(hours=1))).scalar_one()
    if sent_lately >= s.password_resets_per_hour:
        log.info("password reset for user %s refused: %s links in the last hour",
                 user.id, sent_lately)
        return
    expires_at = now + timedelta(minutes=s.password_reset_ttl_minutes)
    link = s.public_base_url.rstrip("/") + LINK_PATH + reset_token(user, expires_at)
    notify.password_reset_link(session, user, link, s.password_reset_ttl_minutes, expires_at)
    session.commit()


def user_for_token(session: Session, token: str) -> User:
    """The account a live link is for; a forged, expired or used link is refused."""
    try:
        claims = _serializer().loads(token)
        user_id, stamp, until = int(claims["user"]), str(claims["stamp"]), int(claims["until"])
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise invalid("token", DEAD_LINK) from exc
    user = session.get(User, user_id)
    if user is None or password_stamp(user) != stamp or clock.now().timestamp() >= until:
        raise invalid("token", DEAD_LINK)
    return user


def reset_password(session: Session, token: str, new_password: str) -> User:
    """Set the new password: the link, every other login session and every token end."""
    user = user_for_token(session, token)
    set_password(session, user, new_password)
    session.commit()
    return user
