"""dispatch: urgent local help from a vetted worker nearby, within two hours.

`create_app` is the composition root: the one place that wires the layers together (HTTP,
services, persistence, and the pushes services reach through small interfaces)."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from sqlalchemy import text


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app from environment settings, with `overrides` for tests and tools."""
    from flask_migrate import Migrate

    import dispatch.db.aftercommit  # noqa: F401  (registers the session hooks)
    from dispatch.db import clock, db
    from dispatch.entrypoints import cli
    from dispatch.http import api, headers, limits, pages, payment_webhooks
    from dispatch.http.api.shapes import ApiPresenter
    from dispatch.http.bodies import register_body_caps
    from dispatch.http.converters import AsciiIntegerConverter, IdConverter
    from dispatch.http.errors import register_error_handlers
    from dispatch.http.extensions import csrf, login_manager
    from dispatch.infra.config import ROOT, Settings
    from dispatch.infra.redis import redis_connection
    from dispatch.services import push
    from notifications.webhooks import make_blueprint

    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
    settings = Settings.from_env()
    app.config.update(settings.to_flask())
    app.config.update(overrides or {})
    app.url_map.converters["int"] = AsciiIntegerConverter  # before any route is added
    app.url_map.converters["id"] = IdConverter

    db.init_app(app)
    Migrate(app, db, directory=str(ROOT / "migrations"))
    login_manager.init_app(app)
    login_manager.login_view = "web.login"
    csrf.init_app(app)
    push.use_presenter(app, ApiPresenter())
    api_bp = api.blueprint()
    csrf.exempt(api_bp)  # the API checks CSRF itself, only for cookie-authenticated writes

    app.register_blueprint(api_bp)
    app.register_blueprint(pages.blueprint())
    webhooks = make_blueprint(lambda: db.session, _webhook_settings(app), clock.now)
    csrf.exempt(webhooks)  # Twilio signs its requests instead
    app.register_blueprint(webhooks)
    payment_hooks = payment_webhooks.blueprint()
    csrf.exempt(payment_hooks)  # the payment provider signs its requests instead
    app.register_blueprint(payment_hooks)
    cli.register(app)
    register_error_handlers(app)
    register_body_caps(app)
    limits.init_app(app)  # after the blueprints: it guards their views
    headers.init_app(app)

    @app.get("/livez")
    def livez():  # type: ignore[no-untyped-def]
        """Liveness only, no database or Redis: also the bare endpoint bench/load.py
        measures next to the real work (/healthz checks both)."""
        return jsonify(status="ok")

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        db.session.execute(text("SELECT 1"))
        redis_connection().ping()
        return jsonify(status="ok")

    return app


def _webhook_settings(app: Flask) -> Any:
    from notifications.webhooks import WebhookSettings

    def settings() -> WebhookSettings:
        s = app.config["DISPATCH"]
        return WebhookSettings(auth_token=s.twilio_auth_token,
                               public_base_url=s.public_base_url,
                               keep_bodies=s.keep_masked_message_bodies)

    return settings
