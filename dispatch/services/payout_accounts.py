"""A worker's payout account: where their payouts go (`workers.payout_destination`) and
whether the provider lets it receive them (`workers.payouts_enabled`).

With Stripe it is an Express connected account, created once per worker; Stripe's hosted
onboarding collects their identity and bank details (we only hand them the link) and its
`account.updated` webhook says when payouts are enabled. Until then payouts wait in the
balance (`payouts.destination_of` answers None). With the simulator the account is enabled
at once: nothing to fill in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dispatch.db.models import User, Worker
from dispatch.domain.errors import DomainError, Unavailable, not_found, problem
from dispatch.infra.payments.base import (
    PAYOUT_ACCOUNT_UPDATED,
    PaymentError,
    PaymentProvider,
    PaymentRejected,
    ProviderEvent,
)


@dataclass(frozen=True)
class PayoutAccountState:
    account: str | None  # the provider's id (acct_...), None before set-up
    payouts_enabled: bool
    onboarding_url: str | None = None  # where to finish setting it up, when there is more


def state(session: Session, worker_id: int) -> PayoutAccountState:
    row = session.execute(select(Worker.payout_destination, Worker.payouts_enabled)
                          .where(Worker.user_id == worker_id)).one_or_none()
    if row is None:
        raise not_found("worker")
    return PayoutAccountState(row.payout_destination, bool(row.payouts_enabled))


def set_up(session: Session, provider: PaymentProvider, worker: User, return_url: str,
           refresh_url: str) -> PayoutAccountState:
    """Create the worker's account once (their row locked; the provider call is keyed by
    the worker, so two clicks at once, or a retry after a crash, make one account), then,
    when the provider wants more from them, a fresh onboarding link (Stripe's expire within
    minutes, so each visit gets its own)."""
    locked = session.execute(select(Worker).where(Worker.user_id == worker.id)
                             .with_for_update()).scalar_one_or_none()
    if locked is None:
        raise not_found("worker")
    try:
        if locked.payout_destination is None:
            made = provider.create_payout_account(worker.id, worker.email,
                                                  f"payout-account:{worker.id}")
            locked.payout_destination = made.id
            locked.payouts_enabled = made.payouts_enabled
        account, enabled = locked.payout_destination, locked.payouts_enabled
        session.commit()
        link = (None if enabled
                else provider.payout_account_link(account, refresh_url, return_url))
    except (PaymentError, PaymentRejected) as exc:
        session.rollback()
        raise _unavailable() from exc
    return PayoutAccountState(account, enabled, link)


def _unavailable() -> DomainError:
    """The provider could not make the account or its link now: try again (a refusal is
    a misconfigured platform account, which the worker cannot fix either)."""
    found = problem("payout_account", "payment.unavailable")
    return Unavailable("payment_unavailable", found.problem, [found], {"retry_after_s": 5})


def provider_account_event(session: Session, event: ProviderEvent) -> None:
    """`account.updated`: record whether the account can receive payouts now (the event is
    the account object; events come in any order, but each says the whole current state)."""
    if event.type != PAYOUT_ACCOUNT_UPDATED:
        return
    data: Mapping[str, Any] = event.data
    session.execute(text("UPDATE workers SET payouts_enabled = :e "
                         "WHERE payout_destination = :a"),
                    {"e": bool(data.get("payouts_enabled")), "a": event.object_id})
