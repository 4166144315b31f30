"""The payment provider seam (see `base`): `provider_for(settings, ...)` picks the simulated
card processor (the default) or the Stripe Connect adapter from PAYMENT_PROVIDER."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from dispatch.infra.config import PAYMENT_PROVIDERS, Settings
from dispatch.infra.payments.base import PaymentProvider
from dispatch.infra.payments.simulated import WEBHOOK_PATH, SimulatedProvider
from dispatch.infra.payments.stripe_provider import StripeProvider


def provider_for(settings: Settings, engine: Callable[[], Engine],
                 now: Callable[[], datetime]) -> PaymentProvider:
    """The configured provider. `engine` and `now` are the simulator's database and clock
    (the app's), unused by Stripe. Stripe without its keys refuses to start."""
    if settings.payment_provider == "stripe":
        return StripeProvider(settings.stripe_secret_key, settings.stripe_webhook_secret,
                              settings.stripe_api_base)
    if settings.payment_provider == "simulated":
        return simulated_for(settings, engine, now)
    raise ValueError(f"PAYMENT_PROVIDER={settings.payment_provider}: choose one of "
                     f"{', '.join(PAYMENT_PROVIDERS)}")


def simulated_for(settings: Settings, engine: Callable[[], Engine],
                  now: Callable[[], datetime]) -> SimulatedProvider:
    """The simulator, which POSTs its webhooks to this app's own public address."""
    return SimulatedProvider(engine, now, settings.payments_webhook_secret,
                             settings.public_base_url.rstrip("/") + WEBHOOK_PATH)
