"""Security headers on every answer: what a browser may load and run on our pages (CSP),
that no other site may frame them, no content-type sniffing, no full URLs (reset links carry
tokens) in Referer to other sites, and HSTS when the request came over TLS.

Scripts and styles come from this origin only. The two inline scripts of the layout (its
configuration) carry the request's nonce; templates have no inline styles (app.css has
classes for them); scripts may still set element styles (Leaflet does), which CSP allows.
Images may also come from the map's tile server (MAP_TILE_URL). With PAYMENT_PROVIDER=stripe
the Book page loads Stripe.js from Stripe's own host (Stripe requires it), which runs the
card field in its iframe and talks to its API: js.stripe.com may then serve scripts and
frames, api.stripe.com be connected to; never otherwise."""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, request

from dispatch.infra.config import Settings

HSTS = "max-age=31536000"
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def csp_nonce() -> str:
    """This request's nonce for inline scripts (templates call it as `csp_nonce()`)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return str(g.csp_nonce)


def tile_source(tile_url: str) -> str:
    """The tile server's origin as a CSP source (`{s}` subdomains become a wildcard)."""
    parts = urlsplit(tile_url.replace("{s}", "*"))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


STRIPE_JS = "https://js.stripe.com"
STRIPE_API = "https://api.stripe.com"


def content_security_policy(settings: Settings, nonce: str | None, host: str) -> str:
    stripe = settings.payment_provider == "stripe"
    scripts = "'self'" + (f" 'nonce-{nonce}'" if nonce else "") + (
        f" {STRIPE_JS}" if stripe else "")
    images = " ".join(filter(None, ["'self'", "data:", tile_source(settings.tile_url)]))
    # 'self' covers same-host websockets in current browsers; older ones need them named
    # (the Host header is the client's: anything but a host[:port] is left out).
    sockets = f"ws://{host} wss://{host}" if _HOST.fullmatch(host) else ""
    return "; ".join([
        "default-src 'self'",
        f"script-src {scripts}",
        "style-src 'self'",
        f"img-src {images}",
        " ".join(filter(None, ["connect-src 'self'", sockets, STRIPE_API if stripe else ""])),
        *([f"frame-src {STRIPE_JS}"] if stripe else []),
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def secure_headers(response: Response) -> Response:
    headers = response.headers
    settings: Settings = current_app.config["DISPATCH"]
    headers.setdefault("Content-Security-Policy",
                       content_security_policy(settings, g.get("csp_nonce"), request.host))
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.is_secure:  # over TLS, as the trusted proxy says (TRUSTED_PROXIES)
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(secure_headers)
