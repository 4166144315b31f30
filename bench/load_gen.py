"""One load-generator process of `bench/load.py`: a slice of the simulated worker phones.

Each phone is a python-socketio asyncio client on the websocket transport, authenticated by
bearer token like the app, that sends its position every `interval_s` (phases spread evenly so
the total rate is flat) and notes when each job's first `offer` event reaches it. Phones
ignore offers (see `bench/README.md`, section `load.py`, for why).

Kept free of `dispatch` imports: the parent spawns several of these, and each should cost
only what driving the sockets costs. Talks to the parent over a multiprocessing pipe:

    child -> ("connected", stats)     all its phones connected (or failed)
    parent -> ("go", t0, stop_at)     start pinging at monotonic t0, stop at stop_at
    child -> ("done", results)        after stop_at: offers seen, ping tallies, its own CPU

Times are `time.monotonic()`: CLOCK_MONOTONIC is one clock for every process on the machine,
so the parent can compare its send times with the children's receive times.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import resource
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import socketio

STEP_M = 4.0  # each ping moves the phone a few metres: never a GPS jump, never rate-limited
M_PER_DEG = 111_320.0


@dataclass(frozen=True)
class Phone:
    """One simulated worker: its bearer token, start position and which server it uses."""

    index: int  # global index: spreads the ping phases over all generator processes
    token: str
    lat: float
    lng: float
    url: str


@dataclass
class GenConfig:
    phones: list[Phone]
    total_phones: int
    interval_s: float
    connect_concurrency: int = 50


@dataclass
class GenResult:
    connected: int = 0
    connect_failed: int = 0
    connect_s: float = 0.0
    pings_sent: int = 0
    pings_acked: int = 0
    pings_accepted: int = 0
    ping_reasons: dict[str, int] = field(default_factory=dict)
    ping_errors: int = 0
    ack_ms: list[float] = field(default_factory=list)
    send_lag_ms: list[float] = field(default_factory=list)  # how late pings left vs schedule
    first_offer_at: dict[int, float] = field(default_factory=dict)  # job id -> monotonic
    offers_received: int = 0
    offers_by_url: dict[str, int] = field(default_factory=dict)
    disconnects: int = 0
    cpu_s: float = 0.0
    pid: int = 0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _connect(phone: Phone, http: aiohttp.ClientSession, result: GenResult,
                   gate: asyncio.Semaphore) -> socketio.AsyncClient | None:
    sio = socketio.AsyncClient(reconnection=False, http_session=http)

    def on_offer(data: dict[str, Any]) -> None:
        now = time.monotonic()
        result.offers_received += 1
        result.offers_by_url[phone.url] = result.offers_by_url.get(phone.url, 0) + 1
        job = data.get("job") if isinstance(data, dict) else None
        job_id = job.get("id") if isinstance(job, dict) else None
        if isinstance(job_id, int) and job_id not in result.first_offer_at:
            result.first_offer_at[job_id] = now

    def on_disconnect(*_: Any) -> None:
        result.disconnects += 1

    sio.on("offer", on_offer)
    sio.on("disconnect", on_disconnect)
    async with gate:
        for attempt in range(3):
            try:
                await sio.connect(phone.url, auth={"token": phone.token},
                                  transports=["websocket"], wait_timeout=30)
                result.connected += 1
                return sio
            except Exception:
                await asyncio.sleep(0.5 * (attempt + 1))
    result.connect_failed += 1
    return None


async def _pinger(phone: Phone, sio: socketio.AsyncClient, conf: GenConfig, t0: float,
                  stop_at: float, result: GenResult) -> None:
    rng = random.Random(phone.index)
    lat, lng = phone.lat, phone.lng
    cos_lat = math.cos(math.radians(lat))
    next_at = t0 + conf.interval_s * phone.index / conf.total_phones

    def acked(sent_at: float) -> Any:
        def callback(answer: Any = None) -> None:
            result.pings_acked += 1
            result.ack_ms.append((time.monotonic() - sent_at) * 1000)
            if isinstance(answer, dict) and answer.get("ok"):
                if answer.get("accepted"):
                    result.pings_accepted += 1
                else:
                    reason = str(answer.get("reason"))
                    result.ping_reasons[reason] = result.ping_reasons.get(reason, 0) + 1
            else:
                result.ping_errors += 1
        return callback

    while True:
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        if now >= stop_at:
            return
        result.send_lag_ms.append((now - next_at) * 1000)
        next_at += conf.interval_s
        heading = rng.random() * 2 * math.pi
        lat += STEP_M * math.cos(heading) / M_PER_DEG
        lng += STEP_M * math.sin(heading) / (M_PER_DEG * cos_lat)
        fix = {"lat": lat, "lng": lng, "accuracy_m": 8.0,
               "recorded_at": datetime.now(UTC).isoformat()}
        result.pings_sent += 1
        try:
            await sio.emit("location", fix, callback=acked(now))
        except Exception:
            result.ping_errors += 1
            if not sio.connected:
                return


async def _generate(conf: GenConfig, pipe: Connection) -> None:
    result = GenResult(pid=os.getpid())
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                 cookie_jar=aiohttp.DummyCookieJar())
    gate = asyncio.Semaphore(conf.connect_concurrency)
    started = time.monotonic()
    clients = await asyncio.gather(*(_connect(p, http, result, gate) for p in conf.phones))
    result.connect_s = time.monotonic() - started
    pipe.send(("connected", {"connected": result.connected, "failed": result.connect_failed,
                             "seconds": result.connect_s}))
    message = await asyncio.to_thread(pipe.recv)
    if message[0] != "go":
        raise RuntimeError(f"unexpected message {message!r}")
    _, t0, stop_at = message
    cpu0 = _cpu_s()
    result.disconnects = 0  # count only what happens under load
    await asyncio.gather(*(_pinger(p, s, conf, t0, stop_at, result)
                           for p, s in zip(conf.phones, clients, strict=True) if s is not None))
    result.cpu_s = _cpu_s() - cpu0
    await asyncio.sleep(1.0)  # the last acks and offers
    live = [s for s in clients if s is not None and s.connected]
    pipe.send(("done", result))
    await asyncio.gather(*(s.disconnect() for s in live), return_exceptions=True)
    await http.close()


def run(conf: GenConfig, pipe: Connection) -> None:
    """Process entry point (multiprocessing target)."""
    # Dropped connections are counted; thousands of identical log lines would bury the table.
    for name in ("engineio.client", "socketio.client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    asyncio.run(_generate(conf, pipe))
