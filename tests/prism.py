"""Stoplight Prism serving Twilio's OpenAPI spec, for tests that drive the real `twilio` SDK.

Prism is started as `node_modules/.bin/prism` itself (not through npx), so the process we hold
is the node process and stopping it leaves nothing behind. Static mode only: responses are the
spec's fixed examples (dynamic mode returns junk `next_page_uri`s; `--errors` turns Twilio's own
IncomingPhoneNumbers example into a 500)."""

from __future__ import annotations

from pathlib import Path

from notifications.twilio_client import spec_path
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
