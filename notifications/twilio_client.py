"""Building the Twilio REST client, optionally pointed at a local mock of Twilio's API.

In development and tests no real SMS or call must leave the machine, so the official `twilio`
SDK is redirected to Stoplight Prism serving Twilio's own OpenAPI spec (both npm
devDependencies in package.json): Prism validates every request against the spec, which a
hand-written fake would not. This module never imports `dispatch`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

# The checkout's root: the folder holding the `notifications` package.
REPO_ROOT = Path(__file__).resolve().parent.parent

# Twilio's api.twilio.com spec as the npm package @twilio-alpha/mcp ships it (pinned in
# package.json, installed by `make npm`), relative to REPO_ROOT: nothing outside the checkout.
# scripts/services.sh uses the same relative path (tests/test_bare_clone.py checks it).
SPEC_IN_REPO = Path("node_modules/@twilio-alpha/mcp/twilio-oai/spec/json/twilio_api_v2010.json")
# verify.twilio.com (phone verification codes), from the same package.
VERIFY_SPEC_IN_REPO = SPEC_IN_REPO.with_name("twilio_verify_v2.json")


HTTP_TIMEOUT_S = 10.0


def make_client(account_sid: str, auth_token: str, api_base_url: str | None = None,
                http_client: TwilioHttpClient | None = None,
                verify_base_url: str | None = None) -> Client:
    """A Twilio client; with `api_base_url`, the api.twilio.com domain (Messages, Calls,
    IncomingPhoneNumbers: everything under /2010-04-01) goes there instead, and with
    `verify_base_url` the verify.twilio.com domain (phone codes) does.

    Only `api.base_url` is replaced: setting `region`/`edge` would make the SDK splice them into
    the host name and break `http://127.0.0.1:PORT`."""
    # A hung request must not hold the single queue worker (and the offer timers behind it).
    client = Client(account_sid, auth_token,
                    http_client=http_client or TwilioHttpClient(timeout=HTTP_TIMEOUT_S))
    if api_base_url:
        client.api.base_url = api_base_url.rstrip("/")
    if verify_base_url:
        client.verify.base_url = verify_base_url.rstrip("/")
    return client


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the SDK handed it to the HTTP layer (before requests encodes it)."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


class RecordingHttpClient(TwilioHttpClient):
    """A `TwilioHttpClient` that remembers every request, then performs it normally.

    Prism's static responses are the spec's fixed examples and never echo what was sent, so tests
    assert on what the SDK sent (here) and that Prism accepted it (the response)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[RecordedRequest] = []

    def request(self, method: str, url: str, params: dict[str, object] | None = None,
                data: dict[str, object] | None = None, *args: Any, **kwargs: Any) -> Response:
        self.requests.append(RecordedRequest(method.upper(), url, dict(params or {}),
                                             dict(data or {})))
        return super().request(method, url, params, data, *args, **kwargs)


def spec_path(in_repo: Path = SPEC_IN_REPO, env_name: str = "TWILIO_OPENAPI_SPEC") -> Path:
    """Twilio's api.twilio.com (2010-04-01) OpenAPI spec, for Prism (or, given
    VERIFY_SPEC_IN_REPO and its variable, the verify.twilio.com one).

    The environment variable wins when set; otherwise the copy in the checkout's node_modules.
    Raises FileNotFoundError saying what to do, so a missing spec is obvious rather than a
    Prism start-up failure."""
    env = os.environ.get(env_name)
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"{env_name}={env} is not a file")
        return path
    path = REPO_ROOT / in_repo
    if not path.is_file():
        raise FileNotFoundError(
            f"Twilio OpenAPI spec not found at {path}: run `make npm` (npm ci installs "
            f"@twilio-alpha/mcp, which ships it), or set {env_name}")
    return path
