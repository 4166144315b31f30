"""A stand-in for Stripe's API at the stripe SDK's HTTP-client seam: it records every request
the SDK sends (method, URL, form parameters, headers) and answers with Stripe's documented
object shapes, following Stripe's documented test behaviour (the pm_card_* test
PaymentMethods decline as documented; a capture above the hold is refused), so the adapter
is tested against what Stripe says, not against itself."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import stripe

# docs.stripe.com/testing: test PaymentMethods, and the error each one's charge gets.
DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline"),
    "pm_card_visa_chargeDeclined": ("card_declined", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "pm_card_visa_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", None),
}


@dataclass
class Sent:
    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]


class FakeStripe(stripe.HTTPClient):
    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, tuple[str, int]] = {}  # by idempotency key, as Stripe keeps
        self.down = False
        self._ids = itertools.count(1)
        self.clock: Any = time.time  # Stripe's clock: a test moves it with the app's
        self.accounts: dict[str, dict[str, Any]] = {}

    def request(self, method: str, url: str, headers: Mapping[str, str] | None,
                post_data: Any = None, *, _usage: Any = None) -> tuple[str, int, dict[str, str]]:
        parts = urlsplit(url)
        body = post_data.decode() if isinstance(post_data, bytes) else (post_data or "")
        sent = Sent(method.upper(), parts.path, parse_qs(body), dict(headers or {}))
        self.sent.append(sent)
        if self.down:
            return json.dumps({"error": {"type": "api_error",
                                         "message": "An unknown error occurred"}}), 500, {
                "stripe-should-retry": "false"}
        key = sent.headers.get("Idempotency-Key", "")
        if key in self.answers:
            answer, status = self.answers[key]
        else:
            answer, status = self._answer(sent)
            self.answers[key] = (answer, status)
        return answer, status, {"request-id": f"req_{next(self._ids)}"}

    def close(self) -> None:
        pass

    def _answer(self, sent: Sent) -> tuple[str, int]:
        p = {k: v[0] for k, v in sent.params.items()}
        path = sent.path
        if sent.method == "POST" and path == "/v1/payment_intents":
            return self._create_intent(p)
        if sent.method == "POST" and path.endswith("/capture"):
            return self._capture(path.split("/")[3], int(p["amount_to_capture"]))
        if sent.method == "POST" and path.endswith("/increment_authorization"):
            return self._increment(path.split("/")[3], int(p["amount"]))
        if sent.method == "POST" and path.endswith("/cancel"):
            intent = self.intents[path.split("/")[3]]
            intent.update(status="canceled", amount_capturable=0)
            return json.dumps(intent), 200
        if sent.method == "POST" and path == "/v1/refunds":
            charge = self.charges[p["charge"]]
            return json.dumps({"id": f"re_{next(self._ids)}", "object": "refund",
                               "amount": int(p["amount"]), "charge": charge["id"],
                               "currency": charge["currency"],
                               "payment_intent": charge["payment_intent"],
                               "status": "succeeded", "created": int(time.time())}), 200
        if sent.method == "POST" and path == "/v1/customers":
            return json.dumps({"id": f"cus_{next(self._ids)}", "object": "customer",
                               "created": int(self.clock()), "livemode": False}), 200
        if sent.method == "POST" and path == "/v1/accounts":
            return self._create_account(p)
        if sent.method == "POST" and path == "/v1/account_links":
            if p.get("account") not in self.accounts:
                return _error("invalid_request_error", "resource_missing",
                              f"No such account: '{p.get('account')}'", 404, param="account")
            created = int(self.clock())
            return json.dumps({"object": "account_link", "created": created,
                               "expires_at": created + 300,
                               "url": f"https://connect.stripe.com/setup/e/{p['account']}/"
                                      f"t{next(self._ids)}"}), 200
        if sent.method == "POST" and path == "/v1/transfers":
            return json.dumps({"id": f"tr_{next(self._ids)}", "object": "transfer",
                               "amount": int(p["amount"]), "currency": p["currency"],
                               "destination": p["destination"], "reversed": False,
                               "amount_reversed": 0, "created": int(time.time())}), 200
        return _error("invalid_request_error", "resource_missing",
                      f"Unrecognized request URL ({sent.method}: {path})", 404)

    def _create_intent(self, p: dict[str, str]) -> tuple[str, int]:
        intent = {"id": f"pi_{next(self._ids)}", "object": "payment_intent",
                  "amount": int(p["amount"]), "currency": p["currency"],
                  "capture_method": p["capture_method"], "created": int(self.clock()),
                  "payment_method": p["payment_method"], "amount_capturable": 0,
                  "customer": p.get("customer"),
                  "setup_future_usage": p.get("setup_future_usage"),
                  "amount_received": 0, "latest_charge": None, "livemode": False,
                  "payment_method_options": {"card": {
                      "request_incremental_authorization": p.get(
                          "payment_method_options[card][request_incremental_authorization]",
                          "never")}}}
        self.intents[intent["id"]] = intent
        if p["payment_method"] in DECLINES:
            code, decline = DECLINES[p["payment_method"]]
            intent.update(status="requires_payment_method")
            return _error("card_error", code, "Your card was declined.", 402,
                          decline_code=decline, payment_intent=intent)
        intent.update(status="requires_capture", amount_capturable=intent["amount"],
                      latest_charge=f"ch_{next(self._ids)}")
        self.charges[intent["latest_charge"]] = {
            "id": intent["latest_charge"], "currency": intent["currency"],
            "payment_intent": intent["id"]}
        return json.dumps(intent), 200

    def _increment(self, intent_id: str, amount: int) -> tuple[str, int]:
        """docs.stripe.com/payments/incremental-authorization: only a `requires_capture`
        intent created with `request_incremental_authorization: if_available`, to a higher
        total; the intent comes back with the new `amount` and `amount_capturable`."""
        intent = self.intents[intent_id]
        if intent["status"] != "requires_capture":
            return _error("invalid_request_error", "payment_intent_unexpected_state",
                          f"This PaymentIntent's status is {intent['status']}.", 400)
        options = intent.get("payment_method_options", {}).get("card", {})
        if options.get("request_incremental_authorization") != "if_available":
            return _error("invalid_request_error", "payment_intent_incremental_authorization"
                          "_not_supported", "This PaymentIntent does not support incremental "
                          "authorization.", 400)
        if amount <= intent["amount"]:
            return _error("invalid_request_error", "parameter_invalid_integer",
                          "The amount must be greater than the authorized amount.", 400,
                          param="amount")
        intent.update(amount=amount, amount_capturable=amount)
        return json.dumps(intent), 200

    def _create_account(self, p: dict[str, str]) -> tuple[str, int]:
        """docs.stripe.com/api/accounts/object: a new Express account can take no payouts
        until its owner finishes onboarding (`account.updated` then says so)."""
        account = {"id": f"acct_{next(self._ids)}", "object": "account",
                   "type": p.get("type", "express"), "email": p.get("email"),
                   "charges_enabled": False, "payouts_enabled": False,
                   "details_submitted": False, "country": "US",
                   "capabilities": {"transfers": "inactive"},
                   "metadata": {k[len("metadata["):-1]: v for k, v in p.items()
                                if k.startswith("metadata[")},
                   "created": int(self.clock())}
        self.accounts[account["id"]] = account
        return json.dumps(account), 200

    def _capture(self, intent_id: str, amount: int) -> tuple[str, int]:
        intent = self.intents[intent_id]
        if intent["status"] != "requires_capture":
            return _error("invalid_request_error", "payment_intent_unexpected_state",
                          f"This PaymentIntent's status is {intent['status']}.", 400)
        if amount > intent["amount_capturable"]:
            return _error("invalid_request_error", "amount_too_large",
                          "The amount to capture is larger than the capturable amount.", 400,
                          param="amount_to_capture")
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return json.dumps(intent), 200


def _error(kind: str, code: str, message: str, status: int, **more: Any) -> tuple[str, int]:
    error = {"type": kind, "code": code, "message": message,
             **{k: v for k, v in more.items() if v is not None}}
    return json.dumps({"error": error}), status
