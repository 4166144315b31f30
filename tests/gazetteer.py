"""The demo gazetteer (`python -m geo.gazetteer`) as a real HTTP server on a free port: the
Nominatim-compatible address search that tests reach through `geo.geocoding`."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.live import ChildServer

LOG_DIR = Path(__file__).resolve().parent.parent / "test-artifacts" / "logs"


class GazetteerServer(ChildServer):
    def __init__(self, log_dir: Path = LOG_DIR, timeout: float = 30.0) -> None:
        super().__init__("gazetteer", [sys.executable, "-m", "geo.gazetteer", "--port", "{port}"],
                         log_dir, timeout, ready_path="/status")
