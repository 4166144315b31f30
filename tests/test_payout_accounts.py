"""The worker's payout account (services/payout_accounts.py): with Stripe an Express
connected account made once, an onboarding link, `account.updated` enabling payouts, and
payouts waiting in the balance until then; with the simulator an account enabled at once."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db import db
from dispatch.db.models import Role
from dispatch.infra.payments.base import sign
from dispatch.infra.payments.stripe_provider import StripeProvider
from dispatch.services import payments, payouts
from tests.helpers import Factory, set_settings, sql
from tests.stripe_fake import FakeStripe
from tests.test_payouts import _earn

STRIPE_WEBHOOK_SECRET = "whsec_test_accounts"


def _with_stripe(app: Flask) -> FakeStripe:
    settings = set_settings(app, payment_provider="stripe", stripe_secret_key="sk_test_123",
                            stripe_webhook_secret=STRIPE_WEBHOOK_SECRET)
    fake = FakeStripe()
    app.extensions[payments._KEY] = (settings, StripeProvider(
        "sk_test_123", STRIPE_WEBHOOK_SECRET, http_client=fake))
    return fake


def _worker(app: Flask, make: Factory) -> tuple[int, dict[str, str]]:
    return make.user(Role.WORKER, email=f"payee{time.monotonic_ns()}@example.test")


def test_the_simulator_enables_the_account_at_once(app: Flask, client: FlaskClient,
                                                   make: Factory) -> None:
    worker_id, worker = _worker(app, make)
    before = client.get("/api/v1/worker/earnings", headers=worker).json
    assert (before["payout_account"], before["payouts_enabled"]) == (None, False)
    r = client.post("/api/v1/worker/payout-account", headers=worker)
    assert r.status_code == 200, r.json
    assert r.json == {"payout_account": f"acct_sim_{worker_id}", "payouts_enabled": True,
                      "onboarding_url": None}
    again = client.post("/api/v1/worker/payout-account", headers=worker)
    assert again.json["payout_account"] == f"acct_sim_{worker_id}"
    after = client.get("/api/v1/worker/earnings", headers=worker).json
    assert (after["payout_account"], after["payouts_enabled"]) == (f"acct_sim_{worker_id}",
                                                                   True)


def test_only_workers_have_payout_accounts(make: Factory, client: FlaskClient) -> None:
    _, resident = make.user(Role.RESIDENT)
    assert client.post("/api/v1/worker/payout-account", headers=resident).status_code == 403


def test_stripe_makes_an_express_account_once_and_links_to_its_onboarding(
        app: Flask, client: FlaskClient, make: Factory, settings: Any) -> None:
    fake = _with_stripe(app)
    worker_id, worker = _worker(app, make)
    r = client.post("/api/v1/worker/payout-account", headers=worker)
    assert r.status_code == 200, r.json
    account = r.json["payout_account"]
    assert account.startswith("acct_") and r.json["payouts_enabled"] is False
    assert r.json["onboarding_url"].startswith(f"https://connect.stripe.com/setup/e/{account}/")
    again = client.post("/api/v1/worker/payout-account", headers=worker)
    assert again.json["payout_account"] == account
    creates = [s for s in fake.sent if s.path == "/v1/accounts"]
    assert len(creates) == 1
    assert creates[0].params["type"] == ["express"]
    assert creates[0].params["capabilities[transfers][requested]"] == ["true"]
    assert creates[0].headers["Idempotency-Key"] == f"payout-account:{worker_id}"
    links = [s for s in fake.sent if s.path == "/v1/account_links"]
    assert len(links) == 2 and links[0].params["type"] == ["account_onboarding"]
    assert links[0].params["return_url"][0].endswith("/earnings?payouts=done")

    # Payouts wait until Stripe says the account can take them.
    _earn(app, make, worker_id, 5_000)
    refused = client.post("/api/v1/worker/payouts", json={"amount_cents": 2_000},
                          headers={**worker, "Idempotency-Key": "k1"})
    assert refused.status_code == 409, refused.json
    assert refused.json["error"]["fields"][0]["field"] == "payout_account"
    with app.app_context():
        assert payouts.run_weekly(db.session, payments.provider()) == 0
        db.session.remove()
    assert sql(app, "SELECT count(*) AS n FROM payouts")[0].n == 0

    # account.updated (Stripe's account object) enables them.
    event = {"id": "evt_acct_1", "object": "event", "type": "account.updated",
             "created": int(time.time()), "api_version": "2024-06-20", "livemode": False,
             "data": {"object": {**fake.accounts[account], "payouts_enabled": True,
                                 "charges_enabled": True, "details_submitted": True}}}
    body = json.dumps(event).encode()
    taken = client.post("/webhooks/payments", data=body, headers={
        "Stripe-Signature": sign(STRIPE_WEBHOOK_SECRET, body, int(time.time()))})
    assert taken.status_code == 200, taken.json
    seen = client.get("/api/v1/worker/earnings", headers=worker).json
    assert (seen["payout_account"], seen["payouts_enabled"]) == (account, True)
    paid = client.post("/api/v1/worker/payouts", json={"amount_cents": 2_000},
                       headers={**worker, "Idempotency-Key": "k2"})
    assert paid.status_code == 201, paid.json
    assert paid.json["destination"] == account
    transfer = [s for s in fake.sent if s.path == "/v1/transfers"][-1]
    assert transfer.params["destination"] == [account]
    # Once set up, no onboarding link is needed.
    assert client.post("/api/v1/worker/payout-account",
                       headers=worker).json["onboarding_url"] is None


def test_stripe_being_down_is_a_503_naming_the_account(
        app: Flask, client: FlaskClient, make: Factory, settings: Any) -> None:
    fake = _with_stripe(app)
    fake.down = True
    _, worker = _worker(app, make)
    r = client.post("/api/v1/worker/payout-account", headers=worker)
    assert r.status_code == 503, r.json
    assert r.json["error"]["fields"][0]["field"] == "payout_account"
    assert sql(app, "SELECT count(*) AS n FROM workers WHERE payout_destination IS NOT NULL"
               )[0].n == 0
