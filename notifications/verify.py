"""Phone codes through Twilio Verify: Twilio makes, texts and checks the code, so no code is
ever stored or logged here. This module never imports `dispatch`."""

from __future__ import annotations

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

APPROVED = "approved"


class VerifyUnavailable(Exception):
    """Twilio Verify could not be reached or refused the request: nothing was proven."""


def send_code(client: Client, service_sid: str, to: str, locale: str) -> None:
    """Text a fresh code to `to` (E.164); an earlier code for the number stops working."""
    try:
        client.verify.v2.services(service_sid).verifications.create(
            to=to, channel="sms", locale=locale)
    except (TwilioException, OSError) as exc:
        raise VerifyUnavailable(str(exc)) from exc


def code_approved(client: Client, service_sid: str, to: str, code: str) -> bool:
    """Whether `code` is the one Twilio texted to `to`. Anything but "approved" (a wrong
    code is "pending"; Twilio answers 404 when the number has no live code) is no."""
    try:
        check = client.verify.v2.services(service_sid).verification_checks.create(
            to=to, code=code)
    except TwilioRestException as exc:
        if exc.status == 404:
            return False
        raise VerifyUnavailable(str(exc)) from exc
    except (TwilioException, OSError) as exc:
        raise VerifyUnavailable(str(exc)) from exc
    return check.status == APPROVED
