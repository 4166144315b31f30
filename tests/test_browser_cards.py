"""The card on the Book page, in Chromium: with the simulated provider a choice of Stripe's
test cards (a declining one shows the decline by the field and books nothing); with Stripe
configured, Stripe Elements from js.stripe.com (served here by a fake Stripe.js through
Playwright's network routing: a test double at the network boundary, as tests/stripe_fake.py
is for the SDK), only the pm_... id sent with the booking, and the CSP allowing Stripe's
hosts only then."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Route, expect

from dispatch.db.models import Role
from dispatch.services import payments
from tests.conftest import ARTIFACTS
from tests.helpers import CENTER, Factory, count, set_settings
from tests.live import LiveServer
from tests.test_browser import browser, login, new_context, page_errors  # noqa: F401

# A Stripe.js stand-in with the calls the page makes (docs.stripe.com/js): Stripe(key),
# elements().create("card").mount(el) / .on(), createPaymentMethod({type, card}). Its card
# field is a div, as Stripe's is an iframe: no input of ours ever holds a card number.
FAKE_STRIPE_JS = """
window.Stripe = function (key) {
  window.__stripeKey = key;
  return {
    elements: function () {
      return {create: function (type) {
        return {
          mount: function (el) {
            var box = typeof el === "string" ? document.querySelector(el) : el;
            var frame = document.createElement("div");
            frame.className = "fake-stripe-card";
            frame.textContent = "4242 4242 4242 4242  12/34  123";
            box.appendChild(frame);
          },
          on: function () {}
        };
      }};
    },
    createPaymentMethod: function (options) {
      window.__createdWith = options.type;
      return Promise.resolve({paymentMethod: {id: "pm_card_visa", object: "payment_method",
                                              type: "card"}});
    }
  };
};
"""


def test_a_declining_test_card_shows_the_decline_and_books_nothing(
        browser: Browser, live_server: LiveServer, make: Factory) -> None:  # noqa: F811
    make.worker(skills=("leak-repair",))
    make.user(Role.RESIDENT, email="cardholder@example.test")
    ctx = new_context(browser, live_server, at=CENTER)
    page = ctx.new_page()
    errors = page_errors(page)
    try:
        login(page, "cardholder@example.test")
        page.goto("/book")
        expect(page.locator("#test-card")).to_be_visible()
        options = page.locator("#test-card option")
        # The choice is the simulator's own list of test tokens.
        assert options.evaluate_all("os => os.map(o => o.value)") == [
            token for token, _ in payments.test_cards()]
        assert page.locator("#book-form input[autocomplete^=cc], "
                            "#book-form input[name*=card]").count() == 0
        page.select_option("#category", label="Leak repair")
        page.fill("#description", "Water under the sink")
        page.click("#locate")
        expect(page.locator("#where")).to_contain_text("Pin at")
        page.select_option("#test-card", "pm_card_chargeDeclinedInsufficientFunds")
        with page.expect_response("**/api/v1/jobs") as answer:
            page.click("#submit")
        assert answer.value.status == 402
        expect(page.locator("#payment-error")).to_contain_text("insufficient funds")
        expect(page.locator("#payment-error")).to_contain_text("Nothing was booked")
        assert count(make.app, "jobs") == 0 and count(make.app, "job_payments") == 0
        # Another card is another try, and books.
        page.select_option("#test-card", "pm_card_visa")
        page.click("#submit")
        expect(page).to_have_url(f"{live_server.url}/jobs/1", timeout=15_000)
        assert count(make.app, "jobs") == 1
        # The browser logs the 402 answer itself; nothing else went wrong.
        assert [e for e in errors if "status of 402" not in e] == []
    finally:
        ctx.close()


@pytest.fixture
def stripe_server(app: Flask) -> Iterator[LiveServer]:
    """The app configured for Stripe (test keys; its API out of reach: this test is about
    what leaves the browser, not Stripe's answer)."""
    server = LiveServer(app.config["SQLALCHEMY_DATABASE_URI"], app.config["REDIS_URL"],
                        ARTIFACTS / "logs", env={
                            "PAYMENT_PROVIDER": "stripe", "STRIPE_SECRET_KEY": "sk_test_x",
                            "STRIPE_WEBHOOK_SECRET": "whsec_x",
                            "STRIPE_PUBLISHABLE_KEY": "pk_test_dispatch",
                            "STRIPE_API_BASE": "http://127.0.0.1:9"})
    yield server
    server.stop()


def test_with_stripe_only_the_payment_method_id_leaves_the_page(
        browser: Browser, stripe_server: LiveServer, make: Factory) -> None:  # noqa: F811
    make.worker(skills=("leak-repair",))
    make.user(Role.RESIDENT, email="stripe-payer@example.test")
    ctx = new_context(browser, stripe_server, at=CENTER)
    fetched: list[str] = []

    def fake_stripe_js(route: Route) -> None:
        fetched.append(route.request.url)
        route.fulfill(status=200, content_type="application/javascript",
                      body=FAKE_STRIPE_JS)

    ctx.route("https://js.stripe.com/v3/", fake_stripe_js)
    page = ctx.new_page()
    try:
        login(page, "stripe-payer@example.test")
        response = page.goto("/book")
        assert response is not None
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "https://js.stripe.com" in csp
        assert "frame-src https://js.stripe.com" in csp
        assert "https://api.stripe.com" in csp
        assert set(fetched) == {"https://js.stripe.com/v3/"}  # (once per page load)
        expect(page.locator("#card-element .fake-stripe-card")).to_be_visible()
        assert page.evaluate("window.__stripeKey") == "pk_test_dispatch"
        assert page.locator("#test-card").count() == 0
        assert page.locator("#book-form input").evaluate_all(
            "is => is.filter(i => /card|cc-|cvc|exp/i.test(i.name + i.id + "
            "(i.autocomplete || ''))).length") == 0
        page.select_option("#category", label="Leak repair")
        page.fill("#description", "Water under the sink")
        page.click("#locate")
        expect(page.locator("#where")).to_contain_text("Pin at")
        with page.expect_request(lambda r: r.url.endswith("/api/v1/jobs")
                                 and r.method == "POST") as sent:
            page.click("#submit")
        body: dict[str, Any] = json.loads(sent.value.post_data or "{}")
        assert body["payment_method"] == "pm_card_visa"
        assert page.evaluate("window.__createdWith") == "card"
        assert set(body) <= {"category_id", "description", "lat", "lng", "address",
                             "pin_confirmed", "window", "payment_method"}
        assert "4242" not in json.dumps(body)
    finally:
        ctx.close()


def test_the_csp_names_stripe_only_when_stripe_is_configured(
        app: Flask, client: FlaskClient, settings: Any) -> None:
    plain = client.get("/healthz").headers["Content-Security-Policy"]
    assert "stripe" not in plain
    set_settings(app, payment_provider="stripe", stripe_secret_key="sk_test_x",
                 stripe_webhook_secret="whsec_x", stripe_publishable_key="pk_test_x")
    configured = client.get("/healthz").headers["Content-Security-Policy"]
    assert "script-src 'self' https://js.stripe.com" in configured
    assert "frame-src https://js.stripe.com" in configured
    assert "connect-src 'self'" in configured and "https://api.stripe.com" in configured


def test_a_worker_sets_up_payouts_on_the_earnings_page(
        browser: Browser, live_server: LiveServer, make: Factory) -> None:  # noqa: F811
    worker_id, _ = make.user(Role.WORKER, email="payee@example.test")
    ctx = new_context(browser, live_server, phone=True)
    page = ctx.new_page()
    errors = page_errors(page)
    try:
        login(page, "payee@example.test")
        page.goto("/earnings")
        expect(page.locator("#payout-account-needed")).to_be_visible()
        expect(page.locator("#payout-account-needed")).to_contain_text("Set up payouts")
        page.click("#payout-account-setup")
        # The simulated provider's account can take payouts at once: no onboarding.
        expect(page.locator("#payout-account-ready")).to_be_visible()
        expect(page.locator("#payout-account-id")).to_have_text(f"acct_sim_{worker_id}")
        expect(page.locator("#payout-account-needed")).to_be_hidden()
        assert errors == []
    finally:
        ctx.close()
