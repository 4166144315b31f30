"""Money through the payment provider: which provider this app uses, and what the product
does with the provider's webhook events (it records them, once; a payout's answer
updates the payout and, when it failed, returns its money: `payouts`).

Services reach the provider only through `base.PaymentProvider`: the simulator or Stripe."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dispatch.db import clock, db
from dispatch.db.models import PaymentEvent
from dispatch.infra.payments import provider_for, simulated_for
from dispatch.infra.payments.base import PaymentProvider, ProviderEvent
from dispatch.infra.payments.simulated import TEST_CARDS, SimulatedProvider
from dispatch.services import payout_accounts, payouts

_KEY = "dispatch.payment_provider"


def provider() -> PaymentProvider:
    """The app's provider, made once per settings (tests swap settings, and get a new one)."""
    settings = current_app.config["DISPATCH"]
    made: tuple[Any, PaymentProvider] | None = current_app.extensions.get(_KEY)
    if made is None or made[0] is not settings:
        made = (settings, provider_for(settings, lambda: db.engine, clock.now))
        current_app.extensions[_KEY] = made
    return made[1]


def simulator() -> SimulatedProvider:
    """The simulated processor, for its own RQ jobs (queued only when it is the provider)."""
    found = provider()
    if isinstance(found, SimulatedProvider):
        return found
    return simulated_for(current_app.config["DISPATCH"], lambda: db.engine, clock.now)


def test_cards() -> list[tuple[str, str | None]]:
    """The simulator's test PaymentMethods (Stripe's documented tokens) and the decline
    each one gets (None: it succeeds), for the Book page's "Test card" choice: the page
    offers exactly what the simulator knows."""
    return [(token, decline) for token, decline in TEST_CARDS.items()
            if token.startswith("pm_")]


def provider_event(session: Session, event: ProviderEvent) -> bool:
    """Take in one verified provider event, once: True when it is new. A replay, or a
    duplicate arriving after later events, finds its id taken and changes nothing (the
    unique id decides, so two deliveries racing each other record it once)."""
    taken = session.execute(
        insert(PaymentEvent)
        .values(id=event.id, type=event.type, object_id=event.object_id,
                data=dict(event.data), received_at=clock.now())
        .on_conflict_do_nothing(index_elements=[PaymentEvent.id])
        .returning(PaymentEvent.id)).first()
    if taken is None:
        return False
    payouts.provider_payout_event(session, event)  # a payout's answer moves money back
    payout_accounts.provider_account_event(session, event)  # payouts enabled, or not
    return True
