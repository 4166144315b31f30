"""dispatch: urgent local help from a vetted worker nearby, within two hours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, jsonify
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app from environment settings, with `overrides` for tests and tools."""
    from dispatch import (
        aftercommit,  # noqa: F401  (registers the session hooks)
        api,
        cli,
        clock,
        web,
    )
    from dispatch.config import Settings
    from dispatch.errors import register_error_handlers
    from dispatch.extensions import csrf, db, login_manager, migrate
    from notifications.webhooks import make_blueprint

    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
    settings = Settings.from_env()
    app.config.update(settings.to_flask())
    app.config.update(overrides or {})

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    login_manager.init_app(app)
    login_manager.login_view = "web.login"
    csrf.init_app(app)
    api_bp = api.blueprint()
    csrf.exempt(api_bp)  # the API checks CSRF itself, only for cookie-authenticated writes

    app.register_blueprint(api_bp)
    app.register_blueprint(web.bp)
    webhooks = make_blueprint(lambda: db.session, _webhook_settings(app), clock.now)
    csrf.exempt(webhooks)  # Twilio signs its requests instead
    app.register_blueprint(webhooks)
    cli.register(app)
    register_error_handlers(app)

    @app.get("/livez")
    def livez():  # type: ignore[no-untyped-def]
        """Liveness only, no database or Redis: also the bare endpoint bench/load.py
        measures next to the real work (/healthz checks both)."""
        return jsonify(status="ok")

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        from dispatch.tasks import redis_connection

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
