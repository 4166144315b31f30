"""Configuration, read only from environment variables, with safe development defaults."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The source tree: templates, static files, node_modules and migrations are read from it
# (the app runs from a checkout or the Docker image's copy of one, not from a wheel).
ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


DEVELOPMENT = "development"
MIN_SECRET_KEY_LENGTH = 32
# The fallback every checkout once shared: public, so never accepted outside development.
_PUBLIC_DEV_KEY = "dev-only-not-secret"


def _secret_key(environment: str) -> str:
    """SECRET_KEY signs login sessions and password-reset links: whoever knows it can be
    anyone. Outside development (DISPATCH_ENV, which the Docker image sets to production)
    there is no fallback: start-up fails with what to do. In development (the default, as
    make run, make test and the benches run from a checkout) the key is a random one kept
    in the checkout's .local/ (every process of the checkout signs alike), never a value
    written in the source."""
    key = os.environ.get("SECRET_KEY", "")
    if environment != DEVELOPMENT:
        if not key or key == _PUBLIC_DEV_KEY or len(key) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"SECRET_KEY must be set to a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters when DISPATCH_ENV={environment} "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'); "
                f"only DISPATCH_ENV={DEVELOPMENT} runs without one")
        return key
    return key or development_key(ROOT / ".local" / "secret_key")


def development_key(path: Path) -> str:
    """This checkout's own random key, made once; processes starting together agree (the
    file appears whole or not at all). Without a writable checkout: a key for this process."""
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = path.with_name(f"{path.name}.{os.getpid()}")
            fresh.write_text(secrets.token_urlsafe(48))
            fresh.chmod(0o600)
            try:
                os.link(fresh, path)  # fails if another process made it first: theirs wins
            except FileExistsError:
                pass
            finally:
                fresh.unlink()
        return path.read_text().strip()
    except OSError:
        return secrets.token_urlsafe(48)


def _existing_file(name: str, default: str) -> str:
    """A path that must be there when given: found missing at start-up, not as a 500 later."""
    path = _env(name, default)
    if path and not Path(path).is_file():
        raise ValueError(f"{name}={path}: no such file")
    return path


@dataclass
class Settings:
    """Every knob of the product; `to_flask()` turns it into Flask config keys."""

    database_url: str
    redis_url: str
    secret_key: str
    promise_minutes: int
    offer_window_s: int
    offer_wave_size: int
    location_max_age_s: int
    travel_speeds_kmh: str
    circuity: float
    startup_s: float
    reputation_weight: float
    fairness_weight: float
    knn_pool: int
    sweep_interval_s: float
    token_ttl_days: int
    ping_min_interval_ms: int
    tile_url: str
    twilio_auth_token: str
    twilio_account_sid: str
    twilio_api_base_url: str
    twilio_messaging_from: str
    public_base_url: str
    keep_masked_message_bodies: bool
    masking_close_after_minutes: int
    twilio_pool_numbers: str
    service_timezone: str
    webhook_allow_private: bool
    tile_attribution: str
    # A scheduled job's planned time on site, for chaining windows (no per-trade figure yet).
    scheduled_service_minutes: int = 60
    chain_solver_seconds: float = 2.0
    # A booked window is not a race: a worker gets longer to weigh tomorrow's job.
    scheduled_offer_window_s: int = 300
    # Promise an arrival at booking only if this many workers could make it; with fewer, the
    # job is still offered, and the promise comes with the first accept.
    promise_min_candidates: int = 3
    # When everyone in reach has been asked, keep looking (workers come free, come online)
    # this long after the request, and never past the point where nobody could make the
    # deadline any more, before calling the job unfilled. The default is the whole promise.
    dispatch_patience_minutes: int = 120
    # When fewer free workers than a wave can come, offer the job to workers finishing a job
    # nearby too: it waits behind that job. Their arrival must fit this many minutes before
    # the deadline (the job's end is the category's typical time, an estimate).
    queue_behind_busy: bool = True
    queue_margin_minutes: int = 30
    # A queued job goes back to the cascade when its worker, still on the job before it,
    # could no longer reach it this many minutes before the deadline (dispatching.sweep).
    queue_release_minutes: int = 10
    # A booked window's masked number opens this long before the window starts (or when the
    # worker sets out), not at an accept days ahead: pool numbers are few.
    masking_open_before_minutes: int = 120
    # The demo fleet (`python -m dispatch.entrypoints.demo_fleet`) plays the demo workers;
    # it refuses to start unless DEMO_FLEET=1 (make run sets it; production never does).
    demo_fleet: bool = False
    demo_fleet_speed: float = 1.0  # travel x it, answer delays and time on site / it
    demo_fleet_tick_s: float = 2.0
    # A demo worker whose phone sent its own fix this recently is a person's: hands off.
    demo_fleet_hands_off_s: int = 300
    # A worker's position older than this is shown as "last seen", and no live ETA is
    # counted down from it (the phone pings as it moves, so a minute or two of quiet is a
    # red light, longer is a closed page).
    position_stale_s: int = 120
    # A socket counts as an open app this long after its web process last vouched for it
    # (every third of it): a killed process's sockets stop counting within this, and their
    # workers are texted their offers again.
    presence_ttl_s: float = 90.0
    # Address search (a Nominatim-compatible service; empty: none, the pin alone is used),
    # how far the typed address may lie from the pin before the booking is asked about,
    # and the polygon outside which nothing is booked (empty: everywhere).
    geocoder_url: str = ""
    geocoder_timeout_s: float = 3.0
    geocoder_user_agent: str = "dispatch/1 (local services; set GEOCODER_USER_AGENT)"
    geocode_max_mismatch_m: float = 300.0
    service_area_geojson: str = str(ROOT / "geo" / "data" / "sf_service_area.geojson")
    # A worker may set out for a booked window from its start less their trip there (from
    # where their phone last was) less this margin: early enough for traffic, not so early
    # that the tenant is texted "on the way" hours ahead (jobs.set_out_from).
    set_out_margin_minutes: int = 30
    # A worker whose offer for a job lapsed without their no (expired unanswered, withdrawn
    # when they took other work or went offline) is asked again after this long, while the
    # job is still looking (dispatching.already_offered). Declines are final.
    reask_after_s: int = 300
    # A worker on the way whose phone has gone quiet (no fix for `location_max_age_s`) and
    # who is this long past the arrival they were expected at is a no-show: the job goes
    # back to the cascade (hand_back.sweep_no_shows).
    no_show_grace_minutes: int = 15
    # A texted password-reset link works once, for this long; an account gets at most this
    # many links an hour (more requests are answered alike and send nothing).
    password_reset_ttl_minutes: int = 30
    password_resets_per_hour: int = 3
    # The largest request body read, by kind (dispatch.http.bodies): a JSON command or a
    # form is small; a CSV upload of 5,000 units is a few megabytes.
    max_json_bytes: int = 1024 * 1024
    max_file_bytes: int = 10 * 1024 * 1024
    # How often a live socket's activity renews its presence mark (see infra.presence).
    presence_refresh_s: float = 30.0
    # Abuse limits (dispatch/http/limits.py), in Flask-Limiter's notation ("10 per minute",
    # several joined by ";"): far above what a person does, and what the tests, the load
    # bench and the demo fleet do. The proxies in front whose X-Forwarded-* headers are
    # trusted (1 behind docker-compose.yml's nginx; 0: none, the peer is the client).
    rate_limits: bool = True
    trusted_proxies: int = 0
    rate_limit_login_per_ip: str = "30 per minute;300 per hour"
    rate_limit_login_per_email: str = "10 per 5 minutes;50 per day"  # failed logins only
    rate_limit_signup_per_ip: str = "20 per hour"
    rate_limit_password_reset_per_ip: str = "10 per hour"
    rate_limit_password_change_per_user: str = "10 per hour"  # wrong current passwords only
    rate_limit_booking_per_user: str = "30 per minute;300 per hour"
    rate_limit_location_per_user: str = "120 per minute"
    rate_limit_phone_code_per_user: str = "10 per hour"  # codes asked for and tried
    # Twilio Verify proves phones (dispatch.services.phone_verification). Empty base URL is
    # Twilio itself; make run points it at a local mock (Prism on Twilio's Verify spec).
    twilio_verify_service_sid: str = "VA" + "0" * 32
    twilio_verify_base_url: str = ""
    # A texted code answers for this long, and to this many tries (Twilio's own are 10 / 5).
    phone_code_ttl_minutes: int = 10
    phone_code_checks: int = 5
    # Asked again sooner than this, a number is not texted another code.
    phone_code_resend_s: int = 30
    # The ISO 4217 currency of every amount (all kept in its minor units, "cents").
    currency: str = "USD"
    # Weekly payouts run on this weekday (0 = Monday) at this hour, service time zone; an
    # instant payout takes at least the minimum out of the balance, and the fee from it.
    payout_weekday: int = 0
    payout_hour: int = 9
    instant_payout_min_cents: int = 1000
    instant_payout_fee_cents: int = 50
    # The payment provider (dispatch.infra.payments): "simulated" (a card processor kept in
    # PostgreSQL, for make run and the tests) or "stripe" (needs STRIPE_SECRET_KEY and
    # STRIPE_WEBHOOK_SECRET; STRIPE_API_BASE empty is Stripe itself). The simulator signs its
    # webhooks with PAYMENTS_WEBHOOK_SECRET (unset: one derived from SECRET_KEY, which every
    # process of a deployment shares, so the RQ worker signs as the web process verifies).
    payment_provider: str = "simulated"
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = ""
    payments_webhook_secret: str = ""
    # Escrow (services/escrow.py): a completed job's hold goes to the worker this long after
    # completion unless the payer confirms (or disputes) first; urgent jobs sooner. A
    # cancellation once the worker has set out costs CANCEL_FEE_CENTS (unset: the
    # category's call-out fee), paid to the worker less the platform fee.
    auto_release_hours: float = 24.0
    auto_release_urgent_hours: float = 2.0
    cancel_fee_cents: int | None = None
    # A resident's final amount may exceed the hold by this percentage and still be charged
    # on confirmation (the authorization grows); above it the payer approves it explicitly.
    final_tolerance_percent: int = 10
    # A hold lapsing within this many hours, for a job still open, is placed again on the
    # payer's kept payment method (services/reauthorization.py). Stripe.js's publishable
    # key (pk_...): public, sent to the Book page; the secret key never leaves the server.
    reauthorize_before_hours: float = 24.0
    stripe_publishable_key: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=_env(
                "DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:55432/dispatch"
            ),
            redis_url=_env("REDIS_URL", "redis://127.0.0.1:56379/0"),
            secret_key=_secret_key(_env("DISPATCH_ENV", DEVELOPMENT)),
            promise_minutes=_int("PROMISE_MINUTES", 120),
            offer_window_s=_int("OFFER_WINDOW_SECONDS", 30),
            offer_wave_size=_int("OFFER_WAVE_SIZE", 3),
            location_max_age_s=_int("LOCATION_MAX_AGE_SECONDS", 600),
            travel_speeds_kmh=_env("TRAVEL_SPEEDS_KMH", "walk=4.7,bike=15,car=28"),
            circuity=_float("CIRCUITY_FACTOR", 1.3),
            startup_s=_float("ETA_STARTUP_SECONDS", 300),
            reputation_weight=_float("MATCH_REPUTATION_WEIGHT", 0.2),
            fairness_weight=_float("MATCH_FAIRNESS_WEIGHT", 0.02),
            knn_pool=_int("MATCH_KNN_POOL", 32),
            sweep_interval_s=_float("SWEEP_INTERVAL_SECONDS", 5),
            token_ttl_days=_int("API_TOKEN_TTL_DAYS", 30),
            # Phones send one fix a second; the slack absorbs network jitter.
            ping_min_interval_ms=_int("PING_MIN_INTERVAL_MS", 800),
            # No default: without the token every webhook is refused (nothing can be forged
            # with a well-known key); make run sets one for its local Twilio mock.
            twilio_auth_token=_env("TWILIO_AUTH_TOKEN", ""),
            twilio_account_sid=_env("TWILIO_ACCOUNT_SID", "AC" + "0" * 32),
            # Empty means Twilio itself; make run points it at the local mock (Prism).
            twilio_api_base_url=_env("TWILIO_API_BASE_URL", ""),
            twilio_messaging_from=_env("TWILIO_MESSAGING_FROM", "+15005550006"),
            public_base_url=_env("PUBLIC_BASE_URL", "http://127.0.0.1:8000"),
            keep_masked_message_bodies=_env("KEEP_MASKED_MESSAGE_BODIES", "0") in ("1", "true"),
            masking_close_after_minutes=_int("MASKING_CLOSE_AFTER_MINUTES", 30),
            twilio_pool_numbers=_env("TWILIO_POOL_NUMBERS", ""),
            service_timezone=_env("SERVICE_TIMEZONE", "America/Los_Angeles"),
            # Only for local development and tests: lets webhooks go to private addresses.
            webhook_allow_private=_env("WEBHOOK_ALLOW_PRIVATE", "0") in ("1", "true"),
            tile_url=_env("MAP_TILE_URL", "https://tile.openstreetmap.org/{z}/{x}/{y}.png"),
            tile_attribution=_env("MAP_TILE_ATTRIBUTION", "&copy; OpenStreetMap contributors"),
            scheduled_service_minutes=_int("SCHEDULED_SERVICE_MINUTES", 60),
            chain_solver_seconds=_float("CHAIN_SOLVER_SECONDS", 2.0),
            scheduled_offer_window_s=_int("SCHEDULED_OFFER_WINDOW_SECONDS", 300),
            promise_min_candidates=_int("PROMISE_MIN_CANDIDATES", 3),
            dispatch_patience_minutes=_int("DISPATCH_PATIENCE_MINUTES", 120),
            queue_behind_busy=_env("QUEUE_BEHIND_BUSY", "1") in ("1", "true"),
            queue_margin_minutes=_int("QUEUE_MARGIN_MINUTES", 30),
            queue_release_minutes=_int("QUEUE_RELEASE_MINUTES", 10),
            masking_open_before_minutes=_int("MASKING_OPEN_BEFORE_MINUTES", 120),
            demo_fleet=_env("DEMO_FLEET", "0") in ("1", "true"),
            demo_fleet_speed=_float("DEMO_FLEET_SPEED", 1.0),
            demo_fleet_tick_s=_float("DEMO_FLEET_TICK_SECONDS", 2.0),
            demo_fleet_hands_off_s=_int("DEMO_FLEET_HANDS_OFF_SECONDS", 300),
            position_stale_s=_int("POSITION_STALE_SECONDS", 120),
            presence_ttl_s=_float("PRESENCE_TTL_SECONDS", 90.0),
            geocoder_url=_env("GEOCODER_URL", ""),
            geocoder_timeout_s=_float("GEOCODER_TIMEOUT_SECONDS", 3.0),
            geocoder_user_agent=_env("GEOCODER_USER_AGENT", cls.geocoder_user_agent),
            geocode_max_mismatch_m=_float("GEOCODE_MAX_MISMATCH_M", 300.0),
            service_area_geojson=_existing_file("SERVICE_AREA_GEOJSON", cls.service_area_geojson),
            set_out_margin_minutes=_int("SET_OUT_MARGIN_MINUTES", 30),
            reask_after_s=_int("REASK_AFTER_SECONDS", 300),
            no_show_grace_minutes=_int("NO_SHOW_GRACE_MINUTES", 15),
            password_reset_ttl_minutes=_int("PASSWORD_RESET_TTL_MINUTES", 30),
            password_resets_per_hour=_int("PASSWORD_RESETS_PER_HOUR", 3),
            max_json_bytes=_int("MAX_JSON_BYTES", cls.max_json_bytes),
            max_file_bytes=_int("MAX_FILE_BYTES", cls.max_file_bytes),
            presence_refresh_s=_float("PRESENCE_REFRESH_SECONDS", 30.0),
            rate_limits=_env("RATE_LIMITS", "1") in ("1", "true"),
            trusted_proxies=_int("TRUSTED_PROXIES", 0),
            **{name: _env(name.upper(), getattr(cls, name)) for name in _RATE_LIMITS},
            twilio_verify_service_sid=_env("TWILIO_VERIFY_SERVICE_SID",
                                           cls.twilio_verify_service_sid),
            twilio_verify_base_url=_env("TWILIO_VERIFY_BASE_URL", ""),
            phone_code_ttl_minutes=_int("PHONE_CODE_TTL_MINUTES", cls.phone_code_ttl_minutes),
            phone_code_checks=_int("PHONE_CODE_CHECKS", cls.phone_code_checks),
            phone_code_resend_s=_int("PHONE_CODE_RESEND_SECONDS", cls.phone_code_resend_s),
            currency=_env("CURRENCY", cls.currency).upper(),
            payout_weekday=_int("PAYOUT_WEEKDAY", cls.payout_weekday),
            payout_hour=_int("PAYOUT_HOUR", cls.payout_hour),
            instant_payout_min_cents=_int("INSTANT_PAYOUT_MIN_CENTS",
                                          cls.instant_payout_min_cents),
            instant_payout_fee_cents=_int("INSTANT_PAYOUT_FEE_CENTS",
                                          cls.instant_payout_fee_cents),
            **_payment_settings(),
            auto_release_hours=float(_env("AUTO_RELEASE_HOURS", "24")),
            auto_release_urgent_hours=float(_env("AUTO_RELEASE_URGENT_HOURS", "2")),
            cancel_fee_cents=(int(_env("CANCEL_FEE_CENTS", "")) if _env("CANCEL_FEE_CENTS", "")
                              else None),
            final_tolerance_percent=_int("FINAL_TOLERANCE_PERCENT",
                                         cls.final_tolerance_percent),
            reauthorize_before_hours=_float("REAUTHORIZE_BEFORE_HOURS",
                                            cls.reauthorize_before_hours),
            stripe_publishable_key=_env("STRIPE_PUBLISHABLE_KEY", ""),
        )

    def __post_init__(self) -> None:
        # A hold lives 7 days (168 h): placed again 0 h or a week or more before it lapses
        # would be never, or at once and on every sweep.
        if not 0 < self.reauthorize_before_hours < 168:
            raise ValueError(
                f"REAUTHORIZE_BEFORE_HOURS={self.reauthorize_before_hours}: must be more "
                "than 0 and less than 168 (a hold lapses 7 days after it is placed)")
        if not self.payments_webhook_secret:
            self.payments_webhook_secret = hmac.new(
                self.secret_key.encode(), b"payments-webhook-secret", hashlib.sha256).hexdigest()

    @property
    def behind_tls(self) -> bool:
        """Served over https (PUBLIC_BASE_URL, the address people and Twilio use): cookies
        are then Secure and browsers are told to keep to https (HSTS)."""
        return self.public_base_url.startswith("https://")

    def to_flask(self) -> dict[str, Any]:
        return {
            "SQLALCHEMY_DATABASE_URI": _sqlalchemy_url(self.database_url),
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 10,
                                          "max_overflow": 30},
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": self.secret_key,
            # The global cap; each kind of body has its own below it (dispatch.http.bodies).
            "MAX_CONTENT_LENGTH": max(self.max_json_bytes, self.max_file_bytes),
            # Cookies: never read by scripts, not sent on other sites' requests (Lax keeps a
            # followed link logged in) and, when the site is served over TLS, only over TLS.
            "SESSION_COOKIE_HTTPONLY": True,
            "REMEMBER_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "REMEMBER_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_SECURE": self.behind_tls,
            "REMEMBER_COOKIE_SECURE": self.behind_tls,
            "PREFERRED_URL_SCHEME": "https" if self.behind_tls else "http",
            # The CSRF token is bound to the login session; a worker's page stays open all
            # shift, so the token must not expire after an hour underneath it.
            "WTF_CSRF_TIME_LIMIT": None,
            "DISPATCH": self,
        }


PAYMENT_PROVIDERS = ("simulated", "stripe")


def _payment_settings() -> dict[str, str]:
    """The provider, checked at start-up: Stripe without its keys would fail on the first
    booking (or take every webhook for forged), so it does not start at all."""
    provider = _env("PAYMENT_PROVIDER", "simulated")
    if provider not in PAYMENT_PROVIDERS:
        raise ValueError(f"PAYMENT_PROVIDER={provider}: choose one of "
                         f"{', '.join(PAYMENT_PROVIDERS)}")
    found = {"payment_provider": provider,
             "stripe_secret_key": _env("STRIPE_SECRET_KEY", ""),
             "stripe_webhook_secret": _env("STRIPE_WEBHOOK_SECRET", ""),
             "stripe_api_base": _env("STRIPE_API_BASE", ""),
             "payments_webhook_secret": _env("PAYMENTS_WEBHOOK_SECRET", "")}
    if provider == "stripe":
        for name in ("stripe_secret_key", "stripe_webhook_secret"):
            if not found[name]:
                raise ValueError(f"PAYMENT_PROVIDER=stripe needs {name.upper()} "
                                 "(from the Stripe dashboard)")
    return found


_RATE_LIMITS = ("rate_limit_login_per_ip", "rate_limit_login_per_email",
                "rate_limit_signup_per_ip", "rate_limit_password_reset_per_ip",
                "rate_limit_password_change_per_user", "rate_limit_booking_per_user",
                "rate_limit_location_per_user", "rate_limit_phone_code_per_user")


def _sqlalchemy_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (as most tools write them) and use psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
