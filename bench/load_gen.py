"""One load-generator process of `bench/load.py`: a slice of the simulated worker phones.

Each phone holds one websocket, authenticated by bearer token like the app, sends its position
every `interval_s` (phases spread evenly so the total rate is flat; like the worker's page, one
ping in CONFIRM_EVERY_S asks for an acknowledgement, refusals arrive as `location_refused`
events) and notes when each job's
first `offer` event reaches it. With an `Answers` model the phones answer offers as the
city simulation's workers do: after a few seconds each offer is accepted, declined or left
to expire (POST /api/v1/offers/<id>/accept or /decline, the worker's bearer token); without
one they never answer (the worst case: every job is offered again every window).

The phones speak Engine.IO v4 / Socket.IO v5 themselves over aiohttp websockets instead of
running python-socketio's `AsyncClient`: the generator shares a 2-core machine with the server
it measures, and the client's machinery (a task per received message, a send queue and write
loop, a timeout per receive, a packet object per frame) cost 0.3-0.7 ms of CPU per ping (at
1,000 and 200 pings/s), taken from the server; this costs less than half of that. The server
still sees exactly the bytes a python-socketio client sends: the same handshake URL and
headers (aiohttp underneath both), the same compact-JSON packets in the same websocket frames,
the same ack ids, answers to its heartbeat and goodbye.

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
import contextlib
import json
import math
import os
import random
import resource
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import aiohttp

STEP_M = 4.0  # each ping moves the phone a few metres: never a GPS jump, never rate-limited
M_PER_DEG = 111_320.0
CONFIRM_EVERY_S = 30.0  # static/js/work.js CONFIRM_EVERY_MS: how often a ping asks for an ack
CONNECT_TIMEOUT_S = 30.0  # as `AsyncClient.connect(wait_timeout=30)` did
WATCH_EVERY_S = 1.0

_TEXT = aiohttp.WSMsgType.TEXT
_BINARY = aiohttp.WSMsgType.BINARY
_monotonic = time.monotonic
_to_json = json.JSONEncoder(separators=(",", ":")).encode  # python-socketio's compact form
_from_json = json.JSONDecoder().decode
# python-engineio's websocket options: only the close timeout differs from aiohttp's defaults
# (so permessage-deflate is offered, and the server compresses and inflates as it would).
_WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_close=5.0)
_ANSWER_TIMEOUT = aiohttp.ClientTimeout(total=30)
_ANSWERS: Answers | None = None  # this process's answer model (GenConfig.answers)


@dataclass(frozen=True)
class Phone:
    """One simulated worker: its bearer token, start position and which servers it uses."""

    index: int  # global index: spreads the ping phases over all generator processes
    token: str
    lat: float
    lng: float
    url: str  # its socket's web process
    api_url: str = ""  # where its HTTP API calls go (answers), as the proxy routes /api/


@dataclass(frozen=True)
class Answers:
    """How a phone answers an offer: accept, decline or ignore (the rest), after a delay
    drawn lognormal around `median_s` (capped inside the offer's window)."""

    accept: float = 0.5
    decline: float = 0.25
    median_s: float = 6.0
    sigma: float = 0.5
    max_s: float = 25.0

    def draw(self, rng: random.Random) -> tuple[str | None, float]:
        u = rng.random()
        choice = ("accept" if u < self.accept else
                  "decline" if u < self.accept + self.decline else None)
        return choice, min(self.max_s, rng.lognormvariate(math.log(self.median_s), self.sigma))


@dataclass
class GenConfig:
    phones: list[Phone]
    total_phones: int
    interval_s: float
    connect_concurrency: int = 50
    answers: Answers | None = None


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
    ack_sent_at: list[float] = field(default_factory=list)  # monotonic, beside ack_ms
    send_lag_ms: list[float] = field(default_factory=list)  # how late pings left vs schedule
    first_offer_at: dict[int, float] = field(default_factory=dict)  # job id -> monotonic
    offers_received: int = 0
    offers_by_url: dict[str, int] = field(default_factory=dict)
    disconnects: int = 0
    # Answers: outcome -> count ("won", "lost" = 409 to an accept, "declined", "error"), and
    # each accept's POST-to-response time with when it left.
    answers: dict[str, int] = field(default_factory=dict)
    accept_ms: list[float] = field(default_factory=list)
    accept_sent_at: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    pid: int = 0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Link:
    """One phone's Socket.IO connection (default namespace, websocket transport).

    Plain state plus one reader task: incoming frames are handled inline as they arrive, and
    a ping is one preformatted string written straight to the socket, so a message costs the
    websocket framing and little more."""

    __slots__ = ("answering", "confirmed_at", "connected", "http", "last_rx", "next_id",
                 "pending", "phone", "reader", "result", "rng", "silent_s", "url", "ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, phone: Phone, result: GenResult,
                 silent_s: float, http: aiohttp.ClientSession) -> None:
        self.ws = ws
        self.phone = phone
        self.url = phone.url
        self.http = http
        self.rng = random.Random(phone.index * 7919 + 1)
        self.answering: dict[int, asyncio.Task[None]] = {}  # offer id -> its pending tap
        self.result = result
        self.pending: dict[int, float] = {}  # ack id -> when the ping left
        self.next_id = 1  # python-socketio numbers acks from 1 per namespace
        self.confirmed_at = -math.inf  # when a ping last asked for an acknowledgement
        self.connected = True
        self.last_rx = _monotonic()
        self.silent_s = silent_s  # pingInterval + pingTimeout: the server is gone after this
        self.reader: asyncio.Task[None] | None = None

    def drop(self) -> None:
        """The connection is lost: counted once, and its unanswered pings are forgotten (as
        python-socketio forgets their callbacks)."""
        if self.connected:
            self.connected = False
            self.result.disconnects += 1
            self.pending.clear()

    async def read(self) -> None:
        """Everything the server sends, handled in this task as it arrives (python-engineio
        starts a task per message): acks, offers, heartbeats, and the end of the connection."""
        ws = self.ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not _TEXT:
                    if msg.type is _BINARY:  # attachments: not used by this app
                        continue
                    break  # closed, closing or error
                data: str = msg.data
                now = _monotonic()
                self.last_rx = now
                kind = data[:2]
                try:
                    if kind == "43":
                        self._ack(data, now)
                    elif kind == "42":
                        await self._event(data, now)
                    elif kind[:1] == "2":  # engine.io heartbeat: the server drops the silent
                        await ws.send_str("3" + data[1:])
                    elif kind == "41":  # the server ended the namespace; python-socketio
                        self.drop()  # then closes the engine.io session too
                        await ws.send_str("1")
                        break
                    elif kind[:1] == "1":  # engine.io CLOSE
                        break
                except (ValueError, LookupError, TypeError, AttributeError):
                    continue  # a malformed packet: python-socketio's handler task fails alone
        except Exception:
            pass  # a broken connection is counted below, as a drop
        finally:
            self.drop()
            with contextlib.suppress(Exception):
                await ws.close()

    def _ack(self, data: str, now: float) -> None:
        """`43<id>[answer]`: the server's answer to one ping."""
        bracket = data.find("[", 2)
        sent_at = self.pending.pop(int(data[2:bracket]), None)
        if sent_at is None:
            return  # unknown id: python-socketio ignores it too
        args = _from_json(data[bracket:])
        answer = args[0] if args else None
        result = self.result
        result.pings_acked += 1
        result.ack_ms.append((now - sent_at) * 1000)
        result.ack_sent_at.append(sent_at)
        if isinstance(answer, dict) and answer.get("ok") and answer.get("accepted"):
            result.pings_accepted += 1
        # A refusal also comes as `location_refused`, counted there.

    def _refused(self, answer: Any) -> None:
        """`location_refused`: a fix the server did not keep (acknowledged or not)."""
        result = self.result
        self.confirmed_at = -math.inf  # the page confirms the next one
        if isinstance(answer, dict) and answer.get("ok"):
            reason = str(answer.get("reason"))
            result.ping_reasons[reason] = result.ping_reasons.get(reason, 0) + 1
        else:
            result.ping_errors += 1

    async def _event(self, data: str, now: float) -> None:
        """`42[name, ...]` or `42<id>[name, ...]`: only offers are decoded; other events
        (job updates) are skipped unparsed, which no handler would have noticed."""
        bracket = data.find("[", 2)
        if data.startswith('["offer"', bracket):
            args = _from_json(data[bracket:])
            self._offer(args[1] if len(args) > 1 else None, now)
            answers = _ANSWERS
            if answers is not None and len(args) > 1 and isinstance(args[1], dict):
                self._answer_later(answers, args[1].get("id"))
        elif data.startswith('["location_refused"', bracket):
            args = _from_json(data[bracket:])
            self._refused(args[1] if len(args) > 1 else None)
        elif self.answering and data.startswith('["offer_closed"', bracket):
            # The app drops an offer that closed (taken, withdrawn, expired): no tap on it.
            args = _from_json(data[bracket:])
            closed = args[1].get("offer_id") if len(args) > 1 and isinstance(args[1], dict) \
                else None
            task = self.answering.pop(closed, None)
            if task is not None:
                task.cancel()
        if bracket > 2:  # the server asked for an ack: a handler returning None sends `[]`
            await self.ws.send_str(f"43{data[2:bracket]}[]")

    def _offer(self, data: Any, now: float) -> None:
        result = self.result
        result.offers_received += 1
        result.offers_by_url[self.url] = result.offers_by_url.get(self.url, 0) + 1
        job = data.get("job") if isinstance(data, dict) else None
        job_id = job.get("id") if isinstance(job, dict) else None
        if isinstance(job_id, int) and job_id not in result.first_offer_at:
            result.first_offer_at[job_id] = now

    def _answer_later(self, answers: Answers, offer_id: Any) -> None:
        choice, delay = answers.draw(self.rng)
        if choice is None or not isinstance(offer_id, int):
            return  # this one is left to expire
        task = asyncio.create_task(self._answer(choice, offer_id, delay))
        self.answering[offer_id] = task
        task.add_done_callback(lambda _: self.answering.pop(offer_id, None))

    async def _answer(self, choice: str, offer_id: int, delay: float) -> None:
        """The worker's tap on the phone: the app's own HTTP call, as the worker page
        makes it."""
        await asyncio.sleep(delay)
        self.answering.pop(offer_id, None)  # tapped: a closing offer no longer cancels it
        result = self.result
        sent_at = _monotonic()
        try:
            async with self.http.post(f"{self.phone.api_url or self.url}/api/v1/offers/"
                                      f"{offer_id}/{choice}",
                                      headers={"Authorization": f"Bearer {self.phone.token}"},
                                      timeout=_ANSWER_TIMEOUT) as r:
                await r.read()
                status = r.status
        except Exception:
            status = 0
        if choice == "accept" and status in (200, 409):
            result.accept_ms.append((_monotonic() - sent_at) * 1000)
            result.accept_sent_at.append(sent_at)
        outcome = ("error" if status not in (200, 409) else
                   "declined" if choice == "decline" and status == 200 else
                   "won" if status == 200 else "lost")
        result.answers[outcome] = result.answers.get(outcome, 0) + 1

    async def close(self) -> None:
        """Leave as `AsyncClient.disconnect()` does: Socket.IO DISCONNECT, then engine.io
        CLOSE, then the websocket close. Our own goodbye is not a drop."""
        self.connected = False
        with contextlib.suppress(Exception):
            await self.ws.send_str("41")
            await self.ws.send_str("1")
        await self.ws.close()
        if self.reader is not None:
            await self.reader


async def _handshake(phone: Phone, http: aiohttp.ClientSession, result: GenResult) -> _Link:
    """Engine.IO OPEN, then Socket.IO CONNECT with the token, exactly as python-socketio's
    client does it on the websocket transport (same URL, query order and timestamp)."""
    parts = urlsplit(phone.url)
    scheme = "wss" if parts.scheme in ("https", "wss") else "ws"
    query = f"{parts.query}&" if parts.query else ""
    url = (f"{scheme}://{parts.netloc}/socket.io/?{query}transport=websocket&EIO=4"
           f"&t={time.time()}")
    ws = await http.ws_connect(url, timeout=_WS_TIMEOUT, headers={})
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            msg = await ws.receive()
            if msg.type is not _TEXT or msg.data[:1] != "0":
                raise ConnectionError("no engine.io OPEN packet")
            opened = _from_json(msg.data[1:])
            silent_s = (int(opened["pingInterval"]) + int(opened["pingTimeout"])) / 1000.0
            await ws.send_str("40" + _to_json({"token": phone.token}))
            while True:
                msg = await ws.receive()
                if msg.type is not _TEXT:
                    raise ConnectionError(f"closed during connect ({msg.type!r})")
                data: str = msg.data
                if data[:2] == "40":
                    break
                if data[:2] == "44":
                    raise ConnectionError(f"connection refused: {data[2:]}")
                if data[:1] == "2":
                    await ws.send_str("3" + data[1:])
    except BaseException:
        with contextlib.suppress(Exception):
            await ws.send_str("1")  # python-socketio's disconnect() after a failed connect
        with contextlib.suppress(Exception):
            await ws.close()
        raise
    link = _Link(ws, phone, result, silent_s, http)
    link.reader = asyncio.create_task(link.read())
    return link


async def _connect(phone: Phone, http: aiohttp.ClientSession, result: GenResult,
                   gate: asyncio.Semaphore) -> _Link | None:
    async with gate:
        for attempt in range(3):
            try:
                link = await _handshake(phone, http, result)
                result.connected += 1
                return link
            except Exception:
                await asyncio.sleep(0.5 * (attempt + 1))
    result.connect_failed += 1
    return None


async def _watch(links: list[_Link]) -> None:
    """python-socketio gives up on a server silent for pingInterval + pingTimeout (a timeout
    on every receive); one sweep a second over all phones does the same for less."""
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        now = _monotonic()
        for link in links:
            if link.connected and now - link.last_rx > link.silent_s:
                link.drop()
                if link.reader is not None:
                    link.reader.cancel()


async def _pinger(phone: Phone, link: _Link, conf: GenConfig, t0: float, stop_at: float,
                  result: GenResult) -> None:
    rng = random.Random(phone.index)
    lat, lng = phone.lat, phone.lng
    cos_lat = math.cos(math.radians(lat))
    interval_s = conf.interval_s
    next_at = t0 + interval_s * phone.index / conf.total_phones
    # Phones of a real city connected at different times, so their asks for an ack are
    # spread over the period, not all on the first ping of the run.
    link.confirmed_at = next_at - link.rng.uniform(0, CONFIRM_EVERY_S)
    send_lag_ms = result.send_lag_ms
    pending = link.pending
    ws = link.ws
    while True:
        delay = next_at - _monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = _monotonic()
        if now >= stop_at:
            return
        send_lag_ms.append((now - next_at) * 1000)
        next_at += interval_s
        heading = rng.random() * 2 * math.pi
        lat += STEP_M * math.cos(heading) / M_PER_DEG
        lng += STEP_M * math.sin(heading) / (M_PER_DEG * cos_lat)
        result.pings_sent += 1
        if not link.connected:  # python-socketio's emit raises on a dropped connection
            result.ping_errors += 1
            return
        # Like static/js/work.js: an acknowledgement asked for every CONFIRM_EVERY_S (and
        # after a refusal); the other pings go out without one.
        ack_id = 0
        head = "42"
        if now - link.confirmed_at >= CONFIRM_EVERY_S:
            link.confirmed_at = now
            ack_id = link.next_id
            link.next_id = ack_id + 1
            pending[ack_id] = now
            head = f"42{ack_id}"
        # The compact JSON python-socketio would encode (floats by repr, keys in this order).
        stamp = datetime.now(UTC).isoformat()
        try:
            await ws.send_str(f'{head}["location",{{"lat":{lat!r},"lng":{lng!r},'
                              f'"accuracy_m":8.0,"recorded_at":"{stamp}"}}]')
        except Exception:
            pending.pop(ack_id, None)
            result.ping_errors += 1
            link.drop()
            return


async def _generate(conf: GenConfig, pipe: Connection) -> None:
    result = GenResult(pid=os.getpid())
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                 cookie_jar=aiohttp.DummyCookieJar())
    gate = asyncio.Semaphore(conf.connect_concurrency)
    started = time.monotonic()
    links = await asyncio.gather(*(_connect(p, http, result, gate) for p in conf.phones))
    live = [link for link in links if link is not None]
    watcher = asyncio.create_task(_watch(live))
    result.connect_s = time.monotonic() - started
    pipe.send(("connected", {"connected": result.connected, "failed": result.connect_failed,
                             "seconds": result.connect_s}))
    message = await asyncio.to_thread(pipe.recv)
    if message[0] != "go":
        raise RuntimeError(f"unexpected message {message!r}")
    _, t0, stop_at = message
    cpu0 = _cpu_s()
    result.disconnects = 0  # count only what happens under load
    await asyncio.gather(*(_pinger(p, link, conf, t0, stop_at, result)
                           for p, link in zip(conf.phones, links, strict=True)
                           if link is not None))
    result.cpu_s = _cpu_s() - cpu0
    await asyncio.sleep(1.0)  # the last acks and offers
    still = [link for link in live if link.connected]
    pipe.send(("done", result))
    watcher.cancel()
    await asyncio.gather(*(link.close() for link in still), return_exceptions=True)
    await http.close()


def run(conf: GenConfig, pipe: Connection) -> None:
    """Process entry point (multiprocessing target)."""
    global _ANSWERS
    _ANSWERS = conf.answers
    if os.environ.get("LOAD_GEN_UVLOOP", "1") == "1":
        import uvloop  # the generator's own CPU is taken from the server it measures

        uvloop.run(_generate(conf, pipe))
    else:
        asyncio.run(_generate(conf, pipe))
