"""The demo fleet process: `python -m dispatch.entrypoints.demo_fleet [--once]`.

Plays the seeded demo workers (`dispatch.services.demo_fleet`) every DEMO_FLEET_TICK_SECONDS
so a `make run` city stays alive. It is for demos only: it refuses to start unless
DEMO_FLEET=1 is set (scripts/services.sh sets it; docker-compose.yml has no such service),
and it touches no user outside the demo e-mail domain. A failed tick is logged and the next
one runs; every wait it has is bounded (database statements and locks, Redis calls)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from flask import Flask

from dispatch import create_app
from dispatch.db import db
from dispatch.infra.config import Settings
from dispatch.services import demo_fleet

log = logging.getLogger("dispatch.demo_fleet")

STATEMENT_TIMEOUT_MS = 10_000
LOCK_TIMEOUT_MS = 5_000
REDIS_TIMEOUT_S = 10


def bounded_overrides(database_url: str, redis_url: str,
                      engine_options: dict[str, Any]) -> dict[str, Any]:
    """Connections that give up instead of waiting for ever."""
    options = {
        **engine_options, "pool_size": 2, "max_overflow": 2, "pool_timeout": 10,
        "connect_args": {"connect_timeout": 10, "options": (
            f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
            " -c idle_in_transaction_session_timeout=60000")},
    }
    separator = "&" if "?" in redis_url else "?"
    redis = (f"{redis_url}{separator}socket_timeout={REDIS_TIMEOUT_S}"
             f"&socket_connect_timeout={REDIS_TIMEOUT_S}")
    return {"SQLALCHEMY_DATABASE_URI": database_url, "SQLALCHEMY_ENGINE_OPTIONS": options,
            "REDIS_URL": redis}


def run(app: Flask, *, once: bool = False) -> None:
    settings = app.config["DISPATCH"]
    pause = settings.demo_fleet_tick_s
    while True:
        started = time.monotonic()
        with app.app_context():
            try:
                report = demo_fleet.tick(db.session)
                if report.accepted or report.declined or report.moves or report.failures:
                    log.info("played %d (left %d alone): accepted %s, declined %s, moves %s,"
                             " %d failed", len(report.played), len(report.left_alone),
                             report.accepted, report.declined, report.moves, report.failures)
            except Exception:  # database or Redis away: try again next tick
                db.session.rollback()
                log.exception("demo fleet tick failed; next one in %s s", pause)
            finally:
                db.session.remove()
        if once:
            return
        time.sleep(max(0.0, pause - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Play the demo workers (demo mode only).")
    parser.add_argument("--once", action="store_true", help="one tick, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("dispatch").setLevel(logging.INFO)
    settings = Settings.from_env()
    if not settings.demo_fleet:
        print("demo fleet: refusing to start; it plays the demo accounts and is for demos"
              " only: set DEMO_FLEET=1 to run it", file=sys.stderr)
        return 2
    if settings.demo_fleet_speed <= 0 or settings.demo_fleet_tick_s <= 0:
        print("demo fleet: DEMO_FLEET_SPEED and DEMO_FLEET_TICK_SECONDS must be positive",
              file=sys.stderr)
        return 2
    flask_config = settings.to_flask()
    app = create_app(bounded_overrides(flask_config["SQLALCHEMY_DATABASE_URI"],
                                       settings.redis_url,
                                       flask_config["SQLALCHEMY_ENGINE_OPTIONS"]))
    log.info("demo fleet: playing %s workers every %s s at speed x%s", demo_fleet.DEMO_DOMAIN,
             settings.demo_fleet_tick_s, settings.demo_fleet_speed)
    run(app, once=args.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
