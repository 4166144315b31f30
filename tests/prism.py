"""Stoplight Prism serving Twilio's OpenAPI spec, for tests that drive the real `twilio` SDK.

Prism is started as `node_modules/.bin/prism` itself (not through npx), so the process we hold
is the node process and stopping it leaves nothing behind. Static mode only: responses are the
spec's fixed examples (dynamic mode returns junk `next_page_uri`s; `--errors` turns Twilio's own
IncomingPhoneNumbers example into a 500)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twilio.http.response import Response

from notifications.twilio_client import (
    VERIFY_SPEC_IN_REPO,
    RecordedRequest,
    RecordingHttpClient,
    spec_path,
)
from tests.live import ChildServer

ROOT = Path(__file__).resolve().parent.parent
PRISM = ROOT / "node_modules" / ".bin" / "prism"
LOG_DIR = ROOT / "test-artifacts" / "logs"


class PrismServer(ChildServer):
    """`prism mock SPEC` on a free port of 127.0.0.1; ready once `GET /` answers at all
    (loading the 1.8 MB spec takes a few seconds; `/` is no operation, so 404 means ready)."""

    def __init__(self, spec: Path | None = None, log_dir: Path = LOG_DIR,
                 timeout: float = 60.0) -> None:
        if not PRISM.exists():
            raise RuntimeError(f"{PRISM} is missing: run `make npm` (npm ci installs Prism)")
        self.spec = spec or spec_path()
        super().__init__("prism", [str(PRISM), "mock", str(self.spec), "-p", "{port}",
                                   "-h", "127.0.0.1"], log_dir, timeout)


def verify_spec_path() -> Path:
    """Twilio's verify.twilio.com (v2) spec, from the same npm package as the API's."""
    return spec_path(VERIFY_SPEC_IN_REPO, "TWILIO_VERIFY_OPENAPI_SPEC")


class VerifyingHttpClient(RecordingHttpClient):
    """Records what the SDK sends, and lets a test make the next code checks wrong.

    Prism's static example for a VerificationCheck is always "approved". With `wrong_codes`
    set, checks ask Prism for a generated answer instead (`Prefer: dynamic=true`), whose
    `status` is never "approved": what Twilio answers a wrong code with, through the same
    SDK, spec and response parsing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wrong_codes = False

    def request(self, method: str, url: str, params: dict[str, object] | None = None,
                data: dict[str, object] | None = None, *args: Any, **kwargs: Any) -> Response:
        if self.wrong_codes and url.endswith("/VerificationCheck"):
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Prefer": "dynamic=true"}
        return super().request(method, url, params, data, *args, **kwargs)

    def codes_sent(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.url.endswith("/Verifications")]

    def checks(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.url.endswith("/VerificationCheck")]
