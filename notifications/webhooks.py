"""Twilio's webhooks for the pool numbers: voice calls and SMS between a masked session's
participants. Every request must carry a valid X-Twilio-Signature for the public URL it was
sent to; anything else is refused with 403 and changes nothing. A signed request seen
before (its MessageSid or CallSid: Twilio's retry, or someone replaying a captured one) is
answered with empty TwiML and changes nothing either: no text is forwarded twice, no call
connected twice.

Built by `make_blueprint` with small callables from the app (a session, the settings, the
clock), so this package needs nothing from `dispatch`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from notifications import masking, outbox

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
# Only the unambiguous keywords: "yes" or "info" are ordinary replies between the parties.
START_WORDS = frozenset({"START", "UNSTOP"})
HELP_WORDS = frozenset({"HELP"})

NOT_CONNECTED_CALL = ("This number only connects a resident and their dispatch worker while "
                      "a job is under way. Goodbye.")
NOT_CONNECTED_SMS = ("This number only connects a resident and their dispatch worker while "
                     "a job is under way, so your message was not passed on.")
HELP_SMS = ("dispatch: this number relays texts between you and the other party of your "
            "job. Reply STOP to stop texts. Support: open the dispatch app.")
RECIPIENT_OPTED_OUT = ("The other party has turned texts off. Please call this number "
                       "instead.")


@dataclass(frozen=True)
class WebhookSettings:
    auth_token: str
    public_base_url: str
    keep_bodies: bool


def public_url(base: str) -> str:
    """The URL Twilio signed: the configured public base, this path, the full query."""
    query = request.query_string.decode()
    return base.rstrip("/") + request.path + (f"?{query}" if query else "")


def make_blueprint(get_session: Callable[[], Session],
                   get_settings: Callable[[], WebhookSettings],
                   now: Callable[[], datetime]) -> Blueprint:
    bp = Blueprint("twilio_webhooks", __name__, url_prefix="/webhooks/twilio")

    def signed(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def check(*args: Any, **kwargs: Any) -> Any:
            settings = get_settings()
            signature = request.headers.get("X-Twilio-Signature", "")
            validator = RequestValidator(settings.auth_token)
            if not settings.auth_token or not signature or not validator.validate(
                    public_url(settings.public_base_url), request.form, signature):
                body = {"error": {"code": "bad_signature",
                                  "message": "X-Twilio-Signature is missing or wrong",
                                  "fields": [{"field": "X-Twilio-Signature",
                                              "problem": "missing or wrong"}]}}
                return jsonify(body), 403
            return view(*args, **kwargs)

        return check

    def twiml(doc: Any) -> Response:
        return Response(str(doc), mimetype="application/xml")

    def once(empty: Callable[[], Any]) -> Callable[[Callable[..., Response]],
                                                   Callable[..., Response]]:
        """Handle each MessageSid/CallSid once: the Sid is recorded in the transaction that
        does the work, and a replay gets `empty()` (TwiML that does nothing)."""

        def wrap(view: Callable[..., Response]) -> Callable[..., Response]:
            @wraps(view)
            def run(*args: Any, **kwargs: Any) -> Response:
                sid = request.form.get("CallSid") or request.form.get("MessageSid")
                session = get_session()
                if sid and not masking.first_time(session, sid[:64], now()):
                    session.rollback()
                    return twiml(empty())
                answer = view(*args, **kwargs)
                session.commit()
                return answer

            return run

        return wrap

    @bp.post("/voice")
    @signed
    @once(VoiceResponse)
    def voice() -> Response:
        """A call to a pool number: connect it to the other party, showing the pool number
        (callerId is what keeps the caller's real number hidden)."""
        session = get_session()
        moment = now()
        found = masking.route(session, request.form.get("From", ""),
                              request.form.get("To", ""), moment)
        response = VoiceResponse()
        if found is None:
            response.say(NOT_CONNECTED_CALL)
            response.hangup()
            return twiml(response)
        response.dial(found.other_number, caller_id=found.pool_number)
        masking.log_message(session, found, "call", moment, request.form.get("CallSid"), None, 0)
        session.commit()
        return twiml(response)

    @bp.post("/sms")
    @signed
    @once(MessagingResponse)
    def sms() -> Response:
        """A text to a pool number: forwarded to the other party from the pool number, with
        its media; STOP/START/HELP are honoured; strangers get a polite reply."""
        session = get_session()
        moment = now()
        sender, pool = request.form.get("From", ""), request.form.get("To", "")
        body = request.form.get("Body", "")
        keyword = body.strip().upper()
        response = MessagingResponse()
        if keyword in STOP_WORDS:
            masking.opt_out(session, sender, moment)
            session.commit()
            return twiml(response)  # the carrier-level confirmation comes from Twilio
        if keyword in START_WORDS:
            masking.opt_in(session, sender)
            session.commit()
            return twiml(response)
        if keyword in HELP_WORDS:
            response.message(HELP_SMS)
            return twiml(response)
        found = masking.route(session, sender, pool, moment)
        if found is None:
            if not masking.opted_out(session, sender):
                response.message(NOT_CONNECTED_SMS)
            return twiml(response)
        if masking.opted_out(session, found.other_number):
            response.message(RECIPIENT_OPTED_OUT)
            return twiml(response)
        media = [request.form[f"MediaUrl{i}"] for i in range(_media_count())
                 if request.form.get(f"MediaUrl{i}")]
        forward = response.message(body, to=found.other_number, from_=found.pool_number)
        for url in media:
            forward.media(url)
        masking.log_message(session, found, "sms", moment, request.form.get("MessageSid"),
                            body if get_settings().keep_bodies else None, len(media))
        session.commit()
        return twiml(response)

    @bp.post("/status")
    @signed
    def status() -> Response:
        """Delivery reports for the texts we send (the outbox's status callback)."""
        session = get_session()
        outbox.record_status(session, request.form.get("MessageSid", ""),
                             request.form.get("MessageStatus", ""),
                             request.form.get("ErrorCode") or None, now())
        return Response(status=204)

    return bp


def _media_count() -> int:
    try:
        return max(0, min(int(request.form.get("NumMedia", "0")), 10))
    except ValueError:
        return 0
