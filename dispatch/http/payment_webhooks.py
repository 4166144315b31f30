"""The payment provider's webhooks: `POST /webhooks/payments`. The provider signs each
request (the simulator with PAYMENTS_WEBHOOK_SECRET, Stripe with STRIPE_WEBHOOK_SECRET), so
there is no CSRF token; anything unsigned, wrongly signed or older than five minutes is
refused with 400 and changes nothing. An event seen before is answered 200 and ignored:
providers deliver at least once, and in no promised order."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from dispatch.db import db
from dispatch.domain.errors import MalformedInput, invalid
from dispatch.infra.payments.base import BadSignature
from dispatch.services import payments


def blueprint() -> Blueprint:
    bp = Blueprint("payment_webhooks", __name__)

    @bp.post("/webhooks/payments")
    def payment_event() -> ResponseReturnValue:
        try:
            event = payments.provider().parse_webhook(request.get_data(), request.headers)
        except BadSignature:
            # Answered as JSON whatever the caller accepts: a provider is a program.
            return jsonify(invalid("signature", "signature.bad", kind=MalformedInput).body()), 400
        new = payments.provider_event(db.session, event)
        db.session.commit()
        return jsonify(id=event.id, duplicate=not new)

    return bp
