"""The Stripe Connect adapter: the payment seam on the official `stripe` SDK.

A hold is a manual-capture PaymentIntent confirmed at once with the payer's PaymentMethod
(only ever a Stripe token: with Stripe configured the page collects the card with Stripe
Elements, so no card number reaches us); a capture captures it (up to the hold); a cancel
voids it; a refund refunds the capture's charge; a worker's payout is a Transfer to their
connected account (acct_...). Every call sends our idempotency key as Stripe's, so a retry
is answered with the first answer. Incoming webhooks are checked by
`stripe.Webhook.construct_event` and their types said in the seam's words."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import stripe

from dispatch.infra.payments.base import (
    AUTHORIZATION_CANCELED,
    AUTHORIZATION_DECLINED,
    AUTHORIZATION_LIFETIME,
    AUTHORIZATION_SUCCEEDED,
    CAPTURE_SUCCEEDED,
    PAYOUT_ACCOUNT_UPDATED,
    PAYOUT_FAILED,
    PAYOUT_PAID,
    REFUND_SUCCEEDED,
    WEBHOOK_TOLERANCE_S,
    Authorization,
    BadSignature,
    Capture,
    PaymentError,
    PaymentRejected,
    Payout,
    PayoutAccount,
    ProviderEvent,
    Refund,
    check_amount,
)

SIGNATURE_HEADER = "Stripe-Signature"
NETWORK_RETRIES = 2  # the SDK retries a lost connection itself, with the same key

EVENT_TYPES = {
    "payment_intent.amount_capturable_updated": AUTHORIZATION_SUCCEEDED,
    "payment_intent.payment_failed": AUTHORIZATION_DECLINED,
    "payment_intent.canceled": AUTHORIZATION_CANCELED,
    "charge.captured": CAPTURE_SUCCEEDED,
    "refund.created": REFUND_SUCCEEDED,
    "transfer.created": PAYOUT_PAID,
    "transfer.reversed": PAYOUT_FAILED,
    "account.updated": PAYOUT_ACCOUNT_UPDATED,
}


class StripeProvider:
    """The `PaymentProvider` of `PAYMENT_PROVIDER=stripe`."""

    def __init__(self, secret_key: str, webhook_secret: str, api_base: str = "",
                 http_client: stripe.HTTPClient | None = None) -> None:
        if not secret_key or not webhook_secret:
            raise ValueError("the Stripe provider needs STRIPE_SECRET_KEY and "
                             "STRIPE_WEBHOOK_SECRET")
        self._client = stripe.StripeClient(
            secret_key, http_client=http_client, max_network_retries=NETWORK_RETRIES,
            base_addresses={"api": api_base} if api_base else None)
        self._webhook_secret = webhook_secret

    def authorize(self, amount_cents: int, currency: str, payment_method: str,
                  idempotency_key: str, *, customer: str | None = None,
                  reusable: bool = False) -> Authorization:
        """`reusable`: the PaymentMethod is attached to a new Customer by the confirmation
        itself (setup_future_usage="off_session"), so it can be held again without the
        payer; `customer`: that later hold, confirmed off-session (a card that then asks
        for authentication is a decline, `authentication_required`)."""
        check_amount(amount_cents)
        params: dict[str, Any] = {
            "amount": amount_cents, "currency": currency.lower(),
            "payment_method": payment_method, "payment_method_types": ["card"],
            "capture_method": "manual", "confirm": True,
            # A final amount above the hold grows it (`increment`) where the card network
            # allows; elsewhere the increment is declined.
            "payment_method_options": {
                "card": {"request_incremental_authorization": "if_available"}}}
        try:
            if customer:
                params.update(customer=customer, off_session=True)
            elif reusable:
                customer = self._client.v1.customers.create(
                    params={}, options=_key(f"{idempotency_key}:customer")).id
                params.update(customer=customer, setup_future_usage="off_session")
            intent = self._client.v1.payment_intents.create(
                params=params, options=_key(idempotency_key))
        except stripe.CardError as exc:
            error = exc.error
            declined = getattr(error, "payment_intent", None) if error else None
            return Authorization(id=declined["id"] if declined else "", status="declined",
                                 amount_cents=amount_cents, currency=currency.upper(),
                                 expires_at=None, decline_code=_decline_code(exc),
                                 payment_method=payment_method, customer=customer)
        except stripe.StripeError as exc:
            raise _failure(exc) from exc
        if intent.status != "requires_capture":
            raise PaymentRejected(f"unexpected_status_{intent.status}",
                                  f"{intent.id} is {intent.status}, not held")
        return Authorization(id=intent.id, status="authorized", amount_cents=intent.amount,
                             currency=intent.currency.upper(),
                             expires_at=datetime.fromtimestamp(intent.created, UTC)
                             + AUTHORIZATION_LIFETIME, payment_method=payment_method,
                             customer=customer)

    def capture(self, authorization_id: str, amount_cents: int,
                idempotency_key: str) -> Capture:
        check_amount(amount_cents)
        try:
            intent = self._client.v1.payment_intents.capture(
                authorization_id, params={"amount_to_capture": amount_cents},
                options=_key(idempotency_key))
        except stripe.StripeError as exc:
            raise _failure(exc) from exc
        return Capture(id=_id(intent.latest_charge), authorization_id=intent.id,
                       amount_cents=intent.amount_received, currency=intent.currency.upper())

    def increment(self, authorization_id: str, new_amount_cents: int,
                  idempotency_key: str) -> Authorization:
        """`increment_authorization` to the new total: a decline (card_declined) leaves the
        PaymentIntent capturable for what it held, so it is an answer, not a failure."""
        check_amount(new_amount_cents)
        try:
            intent = self._client.v1.payment_intents.increment_authorization(
                authorization_id, params={"amount": new_amount_cents},
                options=_key(idempotency_key))
        except stripe.CardError as exc:
            return Authorization(id=authorization_id, status="declined",
                                 amount_cents=new_amount_cents, currency="",
                                 expires_at=None, decline_code=_decline_code(exc))
        except stripe.StripeError as exc:
            raise _failure(exc) from exc
        return Authorization(id=intent.id, status="authorized", amount_cents=intent.amount,
                             currency=intent.currency.upper(),
                             expires_at=datetime.fromtimestamp(intent.created, UTC)
                             + AUTHORIZATION_LIFETIME)

    def cancel(self, authorization_id: str, idempotency_key: str) -> None:
        try:
            self._client.v1.payment_intents.cancel(authorization_id,
                                                   options=_key(idempotency_key))
        except stripe.StripeError as exc:
            raise _failure(exc) from exc

    def refund(self, capture_id: str, amount_cents: int, idempotency_key: str) -> Refund:
        check_amount(amount_cents)
        try:
            refund = self._client.v1.refunds.create(
                params={"charge": capture_id, "amount": amount_cents},
                options=_key(idempotency_key))
        except stripe.StripeError as exc:
            raise _failure(exc) from exc
        return Refund(id=refund.id, capture_id=_id(refund.charge), amount_cents=refund.amount,
                      currency=refund.currency.upper())

    def payout(self, destination: str, amount_cents: int, currency: str,
               idempotency_key: str) -> Payout:
        """A Transfer to the worker's connected account: it lands in their Stripe balance
        at once (their bank payout is Stripe's schedule); a reversed one has failed."""
        check_amount(amount_cents)
        try:
            transfer = self._client.v1.transfers.create(
                params={"amount": amount_cents, "currency": currency.lower(),
                        "destination": destination},
                options=_key(idempotency_key))
        except stripe.StripeError as exc:
            raise _failure(exc) from exc
        return Payout(id=transfer.id, destination=_id(transfer.destination),
                      amount_cents=transfer.amount, currency=transfer.currency.upper(),
                      status="failed" if transfer.reversed else "paid")

    def create_payout_account(self, worker_id: int, email: str | None,
                              idempotency_key: str) -> PayoutAccount:
        """An Express connected account able to receive transfers; Stripe collects the
        worker's identity and bank details in its hosted onboarding (`payout_account_link`)
        and says when payouts are enabled (`account.updated`)."""
        params: dict[str, Any] = {"type": "express",
                                  "capabilities": {"transfers": {"requested": True}},
                                  "metadata": {"worker_id": str(worker_id)}}
        if email:
            params["email"] = email
        try:
            account = self._client.v1.accounts.create(params=params,
                                                      options=_key(idempotency_key))
        except stripe.StripeError as exc:
            raise _failure(exc) from exc
        return PayoutAccount(id=account.id, payouts_enabled=bool(account.payouts_enabled))

    def payout_account_link(self, account_id: str, refresh_url: str,
                            return_url: str) -> str | None:
        """A single-use onboarding link (it expires within minutes: made on each visit)."""
        try:
            link = self._client.v1.account_links.create(params={
                "account": account_id, "refresh_url": refresh_url, "return_url": return_url,
                "type": "account_onboarding"})
        except stripe.StripeError as exc:
            raise _failure(exc) from exc
        return str(link.url)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"),
                         "")
        try:
            event = stripe.Webhook.construct_event(body.decode("utf-8"), signature,
                                                   self._webhook_secret,
                                                   tolerance=WEBHOOK_TOLERANCE_S)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise BadSignature(str(exc)) from exc
        obj = event.data.object.to_dict()
        return ProviderEvent(id=event.id, type=EVENT_TYPES.get(event.type, event.type),
                             object_id=str(obj.get("id", "")), data=obj)


def _key(idempotency_key: str) -> dict[str, Any]:
    if not idempotency_key:
        raise ValueError("an idempotency key is required")
    return {"idempotency_key": idempotency_key}


def _id(value: Any) -> str:
    """An id Stripe may send expanded (an object) or not (its id)."""
    return str(value if isinstance(value, str) else value["id"])


def _decline_code(exc: stripe.CardError) -> str:
    """Stripe's `decline_code` when it says more than "generic_decline", else its code
    (card_declined, expired_card, incorrect_cvc, ...)."""
    detail = getattr(exc.error, "decline_code", None) if exc.error else None
    if detail and detail != "generic_decline":
        return str(detail)
    return str(exc.code or "card_declined")


def _failure(exc: stripe.StripeError) -> Exception:
    """Stripe's refusal in the seam's words: its outages are retried, its refusals not."""
    if isinstance(exc, stripe.IdempotencyError):
        return PaymentRejected("idempotency_key_reused", str(exc.user_message or exc))
    if isinstance(exc, (stripe.InvalidRequestError, stripe.CardError)):
        return PaymentRejected(str(exc.code or "invalid_request"), str(exc.user_message or exc))
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        return PaymentRejected("not_permitted", str(exc.user_message or exc))
    return PaymentError(str(exc.user_message or exc))  # connection, rate limit, Stripe's 5xx
