"""The worker's earnings and payouts."""

from __future__ import annotations

from dataclasses import asdict

from flask import request

from dispatch.db import db
from dispatch.db.models import Payout, Role, User
from dispatch.http.api import bp
from dispatch.http.api.routing import HeaderParam, registry
from dispatch.http.api.schemas import (
    EarningsOut,
    EarningsTotalsOut,
    PayoutAccountOut,
    PayoutIn,
    PayoutOut,
)
from dispatch.services import payments, payout_accounts, payouts
from dispatch.services.context import settings

WORKER = (Role.WORKER,)
IDEMPOTENCY = HeaderParam("Idempotency-Key", False,
                          "a unique string per payout; repeating it returns the same payout")


def payout_out(payout: Payout) -> PayoutOut:
    return PayoutOut(id=payout.id, kind=payout.kind, status=payout.status,
                     amount_cents=payout.amount_cents, fee_cents=payout.fee_cents,
                     sent_cents=payout.amount_cents - payout.fee_cents,
                     currency=payout.currency, destination=payout.destination,
                     requested_at=payout.requested_at, updated_at=payout.updated_at)


@registry.route(bp, "/worker/payouts", "POST", summary="Pay out part of the balance now",
                body=PayoutIn, response=PayoutOut, status=201, roles=WORKER, errors=[409],
                headers=[IDEMPOTENCY], extra_responses={200: PayoutOut})
def post_payout(user: User, body: PayoutIn) -> tuple[PayoutOut, int]:
    """`amount_cents` leaves the balance at once and the instant-payout fee is taken from it
    (the rest goes to the bank). Below the minimum, or not a whole positive amount: 422
    naming `amount_cents`; more than the balance: 409 naming it. A repeated Idempotency-Key
    answers 200 with the first payout. A failed payout comes back to the balance."""
    payout, created = payouts.request_instant(db.session, payments.provider(), user.id,
                                              body.amount_cents,
                                              request.headers.get("Idempotency-Key"))
    return payout_out(payout), 201 if created else 200


@registry.route(bp, "/worker/earnings", "GET", summary="Today's and this week's earnings, "
                "the balance and the latest payouts", response=EarningsOut, roles=WORKER)
def get_earnings(user: User) -> EarningsOut:
    """Day and week in the service time zone (`time_zone`), from the ledger: jobs paid, what
    their escrow released (gross), the platform's fee and what reached the balance (net)."""
    found = payouts.earnings(db.session, user.id)
    account = payout_accounts.state(db.session, user.id)
    return EarningsOut(payout_account=account.account,
                       payouts_enabled=account.payouts_enabled,
                       currency=found.currency, time_zone=found.time_zone,
                       today=EarningsTotalsOut(**asdict(found.today)),
                       week=EarningsTotalsOut(**asdict(found.week)),
                       balance_cents=found.balance_cents,
                       instant_min_cents=found.instant_min_cents,
                       instant_fee_cents=found.instant_fee_cents,
                       payouts=[payout_out(p) for p in found.payouts])


@registry.route(bp, "/worker/payout-account", "POST", summary="Set up the account payouts "
                "go to", response=PayoutAccountOut, roles=WORKER, errors=[503])
def post_payout_account(user: User) -> PayoutAccountOut:
    """Creates the worker's connected account the first time (later calls find it) and,
    while the provider still needs details from them, returns a fresh onboarding link to
    open (Stripe's hosted onboarding, which comes back to /earnings). With the simulated
    provider the account can receive payouts at once and no link is needed."""
    back = settings().public_base_url.rstrip("/") + "/earnings"
    found = payout_accounts.set_up(db.session, payments.provider(), user,
                                   return_url=back + "?payouts=done",
                                   refresh_url=back + "?payouts=again")
    assert found.account is not None
    return PayoutAccountOut(payout_account=found.account,
                            payouts_enabled=found.payouts_enabled,
                            onboarding_url=found.onboarding_url)
