"""A card processor in PostgreSQL, for `make run` and the tests: it answers like one (holds
that expire after 7 days, captures up to the hold, declines on Stripe's documented test
cards, refunds, payouts that fail later, idempotency keys) and, like one, tells us what
happened afterwards by signed webhooks POSTed to our own endpoint by an RQ worker.

Its records (`sim_payment_objects`, `sim_payment_requests`) stand for the processor's side
of the wire: each operation runs in its own transaction on its own connection, committed
whatever becomes of the caller's, exactly as a remote processor's would be."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import requests
from sqlalchemy import Connection, Engine, text

from dispatch.infra import queues
from dispatch.infra.outages import is_outage
from dispatch.infra.payments.base import (
    AUTHORIZATION_CANCELED,
    AUTHORIZATION_DECLINED,
    AUTHORIZATION_LIFETIME,
    AUTHORIZATION_SUCCEEDED,
    CAPTURE_SUCCEEDED,
    PAYOUT_FAILED,
    PAYOUT_PAID,
    REFUND_SUCCEEDED,
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
    sign,
    verify,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Payments-Signature"
WEBHOOK_PATH = "/webhooks/payments"
DELIVERY_TIMEOUT_S = 10.0

# Stripe's documented test cards (docs.stripe.com/testing), as numbers and as the
# PaymentMethod tokens Stripe accepts for them: None succeeds, else the decline code.
TEST_CARDS: dict[str, str | None] = {
    "4242424242424242": None, "pm_card_visa": None,
    "5555555555554444": None, "pm_card_mastercard": None,
    "4000000000000002": "card_declined", "pm_card_chargeDeclined": "card_declined",
    "pm_card_visa_chargeDeclined": "card_declined",
    "4000000000009995": "insufficient_funds",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "4000000000000069": "expired_card", "pm_card_chargeDeclinedExpiredCard": "expired_card",
    "4000000000000127": "incorrect_cvc", "pm_card_chargeDeclinedIncorrectCvc": "incorrect_cvc",
    "4000000000000119": "processing_error",
    "pm_card_chargeDeclinedProcessingError": "processing_error",
}
# A payout to this destination is accepted (in transit) and fails afterwards, as a payout
# to a closed bank account does.
FAILING_DESTINATION = "fail"

_Event = dict[str, Any]


class SimulatedProvider:
    """The `PaymentProvider` of `PAYMENT_PROVIDER=simulated` (the default)."""

    def __init__(self, engine: Callable[[], Engine], now: Callable[[], datetime],
                 webhook_secret: str, webhook_url: str) -> None:
        self._engine, self._now = engine, now
        self._secret, self._webhook_url = webhook_secret, webhook_url

    # ------------------------------------------------------------------ operations

    def authorize(self, amount_cents: int, currency: str, payment_method: str,
                  idempotency_key: str, *, customer: str | None = None,
                  reusable: bool = False) -> Authorization:
        """A test token is reusable as it is: `customer` and `reusable` change nothing."""
        check_amount(amount_cents)
        currency = currency.upper()

        def run(conn: Connection, now: datetime) -> tuple[dict[str, Any], list[_Event]]:
            if payment_method not in TEST_CARDS:
                raise PaymentRejected("no_such_payment_method",
                                      f"no such payment method: {payment_method[:40]!r}")
            decline = TEST_CARDS[payment_method]
            expires_at = None if decline else now + AUTHORIZATION_LIFETIME
            found = _insert(conn, "auth", kind="authorization",
                            status="declined" if decline else "authorized",
                            amount_cents=amount_cents, currency=currency,
                            party=payment_method, decline_code=decline, created_at=now,
                            expires_at=expires_at)
            answer = _authorization(found)
            kind = AUTHORIZATION_DECLINED if decline else AUTHORIZATION_SUCCEEDED
            return answer, [_event(kind, answer, now)]

        return _as_authorization(self._once(idempotency_key, ("authorize", amount_cents,
                                                              currency, payment_method), run))

    def capture(self, authorization_id: str, amount_cents: int,
                idempotency_key: str) -> Capture:
        check_amount(amount_cents)

        def run(conn: Connection, now: datetime) -> tuple[dict[str, Any], list[_Event]]:
            held = _locked(conn, authorization_id, "authorization")
            if held["status"] in ("declined", "canceled"):
                raise PaymentRejected(f"authorization_{held['status']}",
                                      f"{authorization_id} is {held['status']}")
            if held["expires_at"] <= now:
                raise PaymentRejected("authorization_expired",
                                      f"{authorization_id} expired at {held['expires_at']}")
            _check_left(held, amount_cents)
            conn.execute(text("UPDATE sim_payment_objects SET settled_cents = settled_cents + :a,"
                              " status = 'captured' WHERE id = :id"),
                         {"a": amount_cents, "id": authorization_id})
            found = _insert(conn, "ch", kind="capture", status="succeeded",
                            amount_cents=amount_cents, currency=held["currency"],
                            parent_id=authorization_id, created_at=now)
            answer = _capture(found)
            return answer, [_event(CAPTURE_SUCCEEDED, answer, now)]

        return Capture(**self._once(idempotency_key, ("capture", authorization_id,
                                                      amount_cents), run))

    def increment(self, authorization_id: str, new_amount_cents: int,
                  idempotency_key: str) -> Authorization:
        """The hold grows to the new total, as a card network's incremental authorization
        does; a card whose charges decline declines the increment too, the hold unchanged."""
        check_amount(new_amount_cents)

        def run(conn: Connection, now: datetime) -> tuple[dict[str, Any], list[_Event]]:
            held = _locked(conn, authorization_id, "authorization")
            if held["status"] != "authorized":
                raise PaymentRejected(f"authorization_{held['status']}",
                                      f"{authorization_id} is {held['status']}")
            if held["expires_at"] <= now:
                raise PaymentRejected("authorization_expired",
                                      f"{authorization_id} expired at {held['expires_at']}")
            if new_amount_cents < held["amount_cents"]:
                raise PaymentRejected("amount_too_small",
                                      f"{authorization_id} already holds {held['amount_cents']}")
            decline = TEST_CARDS.get(held["party"] or "")
            if decline:
                answer = {**_authorization(held), "status": "declined", "decline_code": decline}
                return answer, [_event(AUTHORIZATION_DECLINED, answer, now)]
            row = conn.execute(text("UPDATE sim_payment_objects SET amount_cents = :a "
                                    "WHERE id = :id RETURNING *"),
                               {"a": new_amount_cents, "id": authorization_id}).mappings().one()
            answer = _authorization(row)
            return answer, [_event(AUTHORIZATION_SUCCEEDED, answer, now)]

        return _as_authorization(self._once(idempotency_key, ("increment", authorization_id,
                                                              new_amount_cents), run))

    def cancel(self, authorization_id: str, idempotency_key: str) -> None:
        def run(conn: Connection, now: datetime) -> tuple[dict[str, Any], list[_Event]]:
            held = _locked(conn, authorization_id, "authorization")
            if held["status"] == "captured":
                raise PaymentRejected("authorization_captured",
                                      f"{authorization_id} is captured: refund it instead")
            if held["status"] != "authorized":  # declined or already void: nothing is held
                return {}, []
            conn.execute(text("UPDATE sim_payment_objects SET status = 'canceled' "
                              "WHERE id = :id"), {"id": authorization_id})
            return {}, [_event(AUTHORIZATION_CANCELED, {"id": authorization_id}, now)]

        self._once(idempotency_key, ("cancel", authorization_id), run)

    def refund(self, capture_id: str, amount_cents: int, idempotency_key: str) -> Refund:
        check_amount(amount_cents)

        def run(conn: Connection, now: datetime) -> tuple[dict[str, Any], list[_Event]]:
            captured = _locked(conn, capture_id, "capture")
            _check_left(captured, amount_cents)
            conn.execute(text("UPDATE sim_payment_objects SET settled_cents = settled_cents + :a"
                              " WHERE id = :id"), {"a": amount_cents, "id": capture_id})
            found = _insert(conn, "re", kind="refund", status="succeeded",
                            amount_cents=amount_cents, currency=captured["currency"],
                            parent_id=capture_id, created_at=now)
            answer = _refund(found)
            return answer, [_event(REFUND_SUCCEEDED, answer, now)]

        return Refund(**self._once(idempotency_key, ("refund", capture_id, amount_cents), run))

    def payout(self, destination: str, amount_cents: int, currency: str,
               idempotency_key: str) -> Payout:
        """Accepted in transit; an RQ job settles it a moment later (paid, or failed for
        FAILING_DESTINATION) and the webhook tells us which, as a bank's answer would."""
        check_amount(amount_cents)
        currency = currency.upper()
        settle: list[str] = []

        def run(conn: Connection, now: datetime) -> tuple[dict[str, Any], list[_Event]]:
            found = _insert(conn, "po", kind="payout", status="in_transit",
                            amount_cents=amount_cents, currency=currency, party=destination,
                            created_at=now)
            settle.append(found["id"])
            return _payout(found), []

        answer = Payout(**self._once(idempotency_key, ("payout", destination, amount_cents,
                                                       currency), run))
        for payout_id in settle:
            _after_commit(queues.enqueue_simulated_payout_settlement, payout_id)
        return answer

    def create_payout_account(self, worker_id: int, email: str | None,
                              idempotency_key: str) -> PayoutAccount:
        """The simulator pays any "acct_..." destination: the worker's account is enabled
        at once, with nothing to fill in."""
        return PayoutAccount(id=f"acct_sim_{worker_id}", payouts_enabled=True)

    def payout_account_link(self, account_id: str, refresh_url: str,
                            return_url: str) -> str | None:
        return None

    def settle_payout(self, payout_id: str) -> str:
        """The bank's answer to a payout in transit (the RQ job the payout queued): once."""
        now = self._now()
        with self._engine().begin() as conn:
            row = conn.execute(text(
                "UPDATE sim_payment_objects SET status = CASE WHEN party = :failing "
                "THEN 'failed' ELSE 'paid' END WHERE id = :id AND kind = 'payout' "
                "AND status = 'in_transit' RETURNING *"),
                {"failing": FAILING_DESTINATION, "id": payout_id}).mappings().first()
        if row is None:
            return "already_settled"
        answer = _payout(row)
        _after_commit(queues.enqueue_simulated_payment_event,
                      _event(PAYOUT_PAID if row["status"] == "paid" else PAYOUT_FAILED,
                             answer, now))
        return str(row["status"])

    # ------------------------------------------------------------------ webhooks

    def deliver(self, event: _Event) -> int:
        """POST one event, signed now, to our webhook endpoint (the RQ job's work). A
        refusal or no answer raises PaymentError, and RQ tries again later."""
        body = json.dumps(event, separators=(",", ":")).encode()
        signature = sign(self._secret, body, int(self._now().timestamp()))
        try:
            response = requests.post(self._webhook_url, data=body, timeout=DELIVERY_TIMEOUT_S,
                                     allow_redirects=False,
                                     headers={"Content-Type": "application/json",
                                              SIGNATURE_HEADER: signature})
        except requests.RequestException as exc:
            raise PaymentError(f"webhook {event['id']} not delivered: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise PaymentError(f"webhook {event['id']} refused: {response.status_code}")
        return response.status_code

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        verify(self._secret, body, _header(headers, SIGNATURE_HEADER),
               self._now().timestamp())
        try:
            event = json.loads(body)
            return ProviderEvent(id=str(event["id"]), type=str(event["type"]),
                                 object_id=str(event["data"]["object"]["id"]),
                                 data=dict(event["data"]["object"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BadSignature("a signed body that is not an event") from exc

    # ------------------------------------------------------------------ idempotency

    def _once(self, key: str, request: tuple[Any, ...],
              run: Callable[[Connection, datetime], tuple[dict[str, Any], list[_Event]]]
              ) -> dict[str, Any]:
        """Run `run` once per idempotency key: the first request claims the key (a
        concurrent one waits on it), later ones get the stored answer, or refusal. The
        events of the first run are queued only after its commit."""
        if not key:
            raise ValueError("an idempotency key is required")
        fingerprint = hashlib.sha256(json.dumps(request, default=str).encode()).hexdigest()
        try:
            response, events = self._claim(key, fingerprint, run)
        except Exception as exc:
            if is_outage(exc):  # the processor is out of reach: the caller retries
                raise PaymentError(f"the simulated processor is unreachable: {exc}") from exc
            raise
        for event in events:
            _after_commit(queues.enqueue_simulated_payment_event, event)
        return _answer(response)

    def _claim(self, key: str, fingerprint: str,
               run: Callable[[Connection, datetime], tuple[dict[str, Any], list[_Event]]]
               ) -> tuple[dict[str, Any] | None, list[_Event]]:
        """The stored answer to `key`, or `run`'s, stored (and its events, to send)."""
        now = self._now()
        events: list[_Event] = []
        with self._engine().begin() as conn:
            claimed = conn.execute(text(
                "INSERT INTO sim_payment_requests (idempotency_key, fingerprint, created_at) "
                "VALUES (:k, :f, :now) ON CONFLICT DO NOTHING RETURNING idempotency_key"),
                {"k": key, "f": fingerprint, "now": now}).first()
            if claimed is None:
                known = conn.execute(text(
                    "SELECT fingerprint, response FROM sim_payment_requests "
                    "WHERE idempotency_key = :k"), {"k": key}).one()
                if known.fingerprint != fingerprint:
                    raise PaymentRejected("idempotency_key_reused",
                                          f"key {key!r} was used for another request")
                return known.response, []
            try:
                with conn.begin_nested():
                    response, events = run(conn, now)
            except PaymentRejected as exc:
                response = {"error": exc.code, "message": str(exc)}
            conn.execute(text("UPDATE sim_payment_requests SET response = :r "
                              "WHERE idempotency_key = :k"),
                         {"r": json.dumps(response, default=str), "k": key})
        return response, events


def _after_commit(enqueue: Callable[[Any], None], arg: Any) -> None:
    """The processor's own transaction has committed: hand the follow-up to RQ. A lost
    follow-up is only a webhook the simulator did not send: logged, never raised."""
    try:
        enqueue(arg)
    except Exception:
        log.exception("simulated payments: could not queue %r", arg)


def _answer(response: dict[str, Any] | None) -> dict[str, Any]:
    if response is None:
        raise PaymentError("the request with this key has no answer")
    if "error" in response:
        raise PaymentRejected(response["error"], response.get("message", ""))
    return dict(response)


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def _insert(conn: Connection, prefix: str, **values: Any) -> dict[str, Any]:
    values["id"] = f"{prefix}_sim_{secrets.token_hex(12)}"
    columns = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    row = conn.execute(text(f"INSERT INTO sim_payment_objects ({columns}) VALUES ({marks}) "
                            "RETURNING *"), values).mappings().one()
    return dict(row)


def _locked(conn: Connection, object_id: str, kind: str) -> dict[str, Any]:
    row = conn.execute(text("SELECT * FROM sim_payment_objects WHERE id = :id AND kind = :k "
                            "FOR UPDATE"), {"id": object_id, "k": kind}).mappings().first()
    if row is None:
        raise PaymentRejected("no_such_object", f"no such {kind}: {object_id[:60]!r}")
    return dict(row)


def _check_left(row: Mapping[str, Any], amount_cents: int) -> None:
    """A capture draws at most what is left of its hold, a refund what is left of its
    capture."""
    left = row["amount_cents"] - row["settled_cents"]
    if amount_cents > left:
        raise PaymentRejected("amount_too_large",
                              f"{amount_cents} is more than the {left} left of {row['id']}")


def _event(kind: str, obj: dict[str, Any], now: datetime) -> _Event:
    return {"id": f"evt_sim_{secrets.token_hex(12)}", "type": kind,
            "created": int(now.timestamp()), "data": {"object": obj}}


def _authorization(row: Mapping[str, Any]) -> dict[str, Any]:
    expires = row["expires_at"]
    return {"id": row["id"], "status": row["status"], "amount_cents": row["amount_cents"],
            "currency": row["currency"], "decline_code": row["decline_code"],
            "expires_at": expires.isoformat() if expires else None,
            "payment_method": row["party"]}


def _as_authorization(answer: dict[str, Any]) -> Authorization:
    expires = answer["expires_at"]
    return Authorization(**{**answer, "expires_at": datetime.fromisoformat(expires)
                            if expires else None})


def _capture(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "authorization_id": row["parent_id"],
            "amount_cents": row["amount_cents"], "currency": row["currency"]}


def _refund(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "capture_id": row["parent_id"],
            "amount_cents": row["amount_cents"], "currency": row["currency"]}


def _payout(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "destination": row["party"], "amount_cents": row["amount_cents"],
            "currency": row["currency"], "status": row["status"]}
