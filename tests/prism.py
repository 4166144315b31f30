"""Stoplight Prism serving Twilio's OpenAPI spec, for tests that drive the real `twilio` SDK.

Prism is started as `node_modules/.bin/prism` itself (not through npx), so the process we hold
is the node process and stopping it leaves nothing behind. Static mode only: responses are the
spec's fixed examples (dynamic mode returns junk `next_page_uri`s; `--errors` turns Twilio's own
IncomingPhoneNumbers example into a 500)."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from notifications.twilio_client import spec_path
from tests.live import free_port

ROOT = Path(__file__).resolve().parent.parent
PRISM = ROOT / "node_modules" / ".bin" / "prism"
LOG_DIR = ROOT / "test-artifacts" / "logs"


class PrismServer:
    """`prism mock SPEC` on a free port of 127.0.0.1; ready once `GET /` answers at all."""

    def __init__(self, spec: Path | None = None, log_dir: Path = LOG_DIR,
                 timeout: float = 60.0) -> None:
        if not PRISM.exists():
            raise RuntimeError(f"{PRISM} is missing: run `make npm` (npm ci installs Prism)")
        self.spec = spec or spec_path()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"prism-{self.port}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(PRISM), "mock", str(self.spec), "-p", str(self.port), "-h", "127.0.0.1"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        # Loading the 1.8 MB spec takes a few seconds; `/` is no operation, so 404 means ready.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prism exited with {self.process.returncode}; "
                                   f"see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"prism did not answer within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
