"""Building the Twilio REST client, optionally pointed at a local mock of Twilio's API.

In development and tests no real SMS or call must leave the machine, so the official `twilio`
SDK is redirected to Stoplight Prism serving Twilio's own OpenAPI spec (see
shared/TOOLCHAIN.md): Prism validates every request against the spec, which a hand-written
fake would not. This module never imports `dispatch`."""

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

# The project's read-only `shared/` sits beside the checkout (CI clones the repo next to a
# copy of it), so it is looked for in the repo root's parent, then further up.
_SPEC_IN_SHARED = Path("shared") / "twilio-oai" / "twilio_api_v2010.json"


HTTP_TIMEOUT_S = 10.0


def make_client(account_sid: str, auth_token: str, api_base_url: str | None = None,
                http_client: TwilioHttpClient | None = None) -> Client:
    """A Twilio client; with `api_base_url`, the api.twilio.com domain (Messages, Calls,
    IncomingPhoneNumbers: everything under /2010-04-01) goes there instead.

    Only `api.base_url` is replaced: setting `region`/`edge` would make the SDK splice them into
    the host name and break `http://127.0.0.1:PORT`."""
    # A hung request must not hold the single queue worker (and the offer timers behind it).
    client = Client(account_sid, auth_token,
                    http_client=http_client or TwilioHttpClient(timeout=HTTP_TIMEOUT_S))
    if api_base_url:
        client.api.base_url = api_base_url.rstrip("/")
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


def spec_path() -> Path:
    """Twilio's api.twilio.com (2010-04-01) OpenAPI spec, for Prism.

    `TWILIO_OPENAPI_SPEC` wins when set; otherwise `shared/twilio-oai/...` beside the checkout
    (in the repo root's parent, or an ancestor of it). Raises FileNotFoundError naming what
    was tried, so a missing `shared/` is obvious rather than a Prism start-up failure."""
    env = os.environ.get("TWILIO_OPENAPI_SPEC")
    if env:
        return Path(env)
    tried = [parent / _SPEC_IN_SHARED for parent in REPO_ROOT.resolve().parents]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "Twilio OpenAPI spec not found (set TWILIO_OPENAPI_SPEC); tried: "
        + ", ".join(str(p) for p in tried))
