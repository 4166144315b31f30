"""Abuse limits on the web edge: password guessing, sign-up, reset-text and booking floods.

Flask-Limiter counts in Redis (every web process shares the counts) and is told the client's
address by Werkzeug's ProxyFix, which trusts `TRUSTED_PROXIES` proxies' X-Forwarded-* headers
and no others (0 by default: a header a client writes itself counts for nothing). Limits are
read from `Settings` at each request (`RATE_LIMIT_*`, Flask-Limiter notation), and all of them
sit in the one table below, next to the endpoint each guards. Keys:
- per address: what anyone can do before logging in (log in, sign up, ask for reset texts);
- per target email: failed logins only, so guessing one account from many addresses slows
  down too, while its owner logging in on many devices never counts;
- per user: what a logged-in caller can flood (bookings text up to 3 workers a wave for two
  hours; positions). One address may carry many users (the load bench, an office's NAT).

A refused request is a 429 with `Retry-After`: the API's error shape, or a page.
If Redis is unreachable, counting goes on in the process's memory (and is logged) rather
than failing the request: a limit must not turn a Redis blip into an outage."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix

from dispatch.domain import messages
from dispatch.http.api.routing import ErrorResponse, registry
from dispatch.http.auth import bearer_token, bearer_user
from dispatch.http.errors import ApiError, error_page
from dispatch.infra.config import Settings


def client_address() -> str:
    """The client's address as ProxyFix left it (the proxy's own address when no proxy is
    trusted, so direct clients cannot choose their key)."""
    return "ip:" + (request.remote_addr or "unknown")


def caller() -> str:
    """The logged-in user (bearer token or login session), else the address: one user's
    limit does not grow with the number of their tokens or addresses."""
    if "rate_limit_caller" not in g:
        user_id = None
        if bearer_token():
            user = bearer_user()
            user_id = user.id if user else None
        elif current_user.is_authenticated:
            user_id = current_user.id
        g.rate_limit_caller = f"user:{user_id}" if user_id else client_address()
    return str(g.rate_limit_caller)


def login_email() -> str:
    """The account a login tries, from the JSON body (API) or the form (page)."""
    if request.is_json:
        try:  # a key function must not raise: Flask-Limiter would take it for Redis down
            body = request.get_json(silent=True)
        except RecursionError:  # nesting deeper than the parser's stack
            body = None
        email = body.get("email") if isinstance(body, dict) else None
    else:
        email = request.form.get("email")
    return "email:" + (email.strip().lower()[:254] if isinstance(email, str) else "")


def _failed(response: Response) -> bool:
    """A refused login (401 from the API, 422 from the page): only these count against
    the account."""
    return response.status_code in (401, 422)


def _phone_code_form() -> bool:
    """The profile page's forms that send or check a phone code (not its other forms)."""
    return request.form.get("form") in ("phone_code", "phone_verify")


def _password_refused(response: Response) -> bool:
    """A refused password change (the profile page's other form, name and phone, is not
    a guess)."""
    sent_password = request.path.startswith("/api/") or request.form.get("form") == "password"
    return response.status_code == 422 and sent_password


@dataclass(frozen=True)
class Guard:
    endpoints: tuple[str, ...]
    setting: str  # the Settings field holding the limit
    key: Callable[[], str]
    # Count only answers this says are failures (None: count every request).
    counts: Callable[[Response], bool] | None = None


GUARDS = (
    Guard(("api.create_token", "web.login"), "rate_limit_login_per_ip", client_address),
    Guard(("api.create_token", "web.login"), "rate_limit_login_per_email", login_email,
          counts=_failed),
    Guard(("api.register", "web.register"), "rate_limit_signup_per_ip", client_address),
    Guard(("api.post_password_reset", "web.forgot_password", "api.post_password_reset_confirm",
           "web.reset_password"), "rate_limit_password_reset_per_ip", client_address),
    Guard(("api.post_password", "web.profile"), "rate_limit_password_change_per_user", caller,
          counts=_password_refused),
    # A texted code has few tries of its own (PHONE_CODE_CHECKS); these bound the rest:
    # guessing across fresh sign-ups from one address, and texting codes to number after
    # number (each costs a text) from one account.
    Guard(("api.confirm_register", "web.register_confirm"), "rate_limit_signup_per_ip",
          client_address),
    Guard(("api.post_phone_code", "api.post_phone_verify"), "rate_limit_phone_code_per_user",
          caller),
    Guard(("web.profile",), "rate_limit_phone_code_per_user", caller,
          counts=lambda _response: _phone_code_form()),
    Guard(("api.create_job",), "rate_limit_booking_per_user", caller),
    Guard(("api.post_location",), "rate_limit_location_per_user", caller),
)


def init_app(app: Flask) -> Limiter:
    """Trust the configured proxies and guard the endpoints in GUARDS (call it after the
    blueprints are registered: the guards wrap their view functions)."""
    settings: Settings = app.config["DISPATCH"]
    if settings.trusted_proxies > 0:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n,  # type: ignore[method-assign]
                                x_host=n, x_port=n)
    limiter = Limiter(client_address, storage_uri=app.config["REDIS_URL"],
                      storage_options={"socket_connect_timeout": 2, "socket_timeout": 2},
                      strategy="moving-window", key_prefix="ratelimit",
                      swallow_errors=True, in_memory_fallback_enabled=True,
                      enabled=settings.rate_limits)
    limiter.init_app(app)
    for guard in GUARDS:
        for endpoint in guard.endpoints:
            view = app.view_functions[endpoint]
            # Shared by the guard's endpoints: the API and the page count as one door.
            app.view_functions[endpoint] = limiter.shared_limit(
                _limit_of(guard.setting), guard.setting, key_func=guard.key, methods=["POST"],
                deduct_when=guard.counts)(view)
    _document_429(app)
    app.register_error_handler(RateLimitExceeded, _too_many(limiter))
    app.extensions["dispatch_limiter"] = limiter
    return limiter


def _document_429(app: Flask) -> None:
    """The OpenAPI document lists 429 for the guarded operations (clients plan for it)."""
    guarded = {(rule.rule, method.lower()) for guard in GUARDS for endpoint in guard.endpoints
               for rule in app.url_map.iter_rules(endpoint) for method in rule.methods or ()}
    for op in registry.operations:
        if (op.path, op.method) in guarded:
            op.responses.setdefault(429, ErrorResponse)


def _limit_of(setting: str) -> Callable[[], str]:
    """Read at each request, so a changed setting applies at once (tests shrink them)."""
    return lambda: str(getattr(current_app.config["DISPATCH"], setting))


def _too_many(limiter: Limiter) -> Callable[[RateLimitExceeded], ResponseReturnValue]:
    def answer(_exc: RateLimitExceeded) -> ResponseReturnValue:
        breached = limiter.current_limit
        reset_at = breached.reset_at if breached else time.time() + 60
        seconds = max(1, math.ceil(reset_at - time.time()))
        headers = {"Retry-After": str(seconds)}
        sentence = messages.say("too_many_requests", {"seconds": seconds})
        if request.path.startswith("/api/"):
            body = ApiError(429, "too_many_requests", sentence,
                            extra={"retry_after_s": seconds}).body()
            return jsonify(body), 429, headers
        return error_page(429, sentence, headers)

    return answer
