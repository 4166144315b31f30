"""The cost probe of `bench/load.py`: what one operation costs the web process, one at a time
on an otherwise idle server, before the load starts.

Under load the question is whether the offered work fits in the CPU there is; these figures
(web-process CPU per bare GET, per Socket.IO connect, per ping on each of its paths, per
booking) turn the load into cores needed, and their wall times are the unloaded latencies.
The probe uses its own workers and bookings far from the metro (see PROBE_CENTER in
`bench/load.py`), so nothing it does reaches the simulated phones, and cancels its jobs so
their offer cascades do not run into the measured window.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import socketio


@dataclass
class Cost:
    name: str
    n: int
    cpu_ms: float  # web-process CPU per operation, the idle background subtracted
    wall_ms: float  # median wall time of one operation


async def probe(url: str, probe_tokens: list[str], resident_token: str, category_id: int,
                center: tuple[float, float], web_cpu: Callable[[], float],
                bookings: int = 20, socket_url: str | None = None) -> list[Cost]:
    """Sequential operations against `url` (its sockets against `socket_url`, a process
    serving Socket.IO, when `url` is an API process); returns their costs in the order run
    (the jobs it booked are cancelled at the end)."""
    rng = random.Random(7)
    costs: list[Cost] = []
    started = time.monotonic()
    cpu0 = web_cpu()
    await asyncio.sleep(3.0)
    background = (web_cpu() - cpu0) / (time.monotonic() - started)  # heartbeats, flushes

    async def measure(name: str, n: int, op: Callable[[int], Awaitable[float | None]]) -> None:
        walls = []
        cpu, t0 = web_cpu(), time.monotonic()
        for i in range(n):
            t = time.monotonic()
            end = await op(i)
            walls.append(((end or time.monotonic()) - t) * 1000)
        spent = web_cpu() - cpu - background * (time.monotonic() - t0)
        costs.append(Cost(name, n, max(0.0, spent) / n * 1000, statistics.median(walls)))

    offers: dict[int, float] = {}
    offered: dict[int, list[tuple[int, int]]] = {}  # job id -> (offer id, client index)
    clients: list[socketio.AsyncClient] = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:

        async def bare(_: int) -> None:
            async with http.get(url + "/_bench/bare") as r:
                await r.read()

        async def connect(i: int) -> None:
            sio = socketio.AsyncClient(reconnection=False, http_session=http)

            def on_offer(data: dict[str, Any]) -> None:
                job_id = data.get("job", {}).get("id") if isinstance(data, dict) else None
                if isinstance(job_id, int):
                    offers.setdefault(job_id, time.monotonic())
                    offered.setdefault(job_id, []).append((int(data["id"]), i))

            sio.on("offer", on_offer)
            await sio.connect(socket_url or url, auth={"token": probe_tokens[i]},
                              transports=["websocket"],
                              wait_timeout=30)
            clients.append(sio)

        step = [0]

        async def ping(i: int) -> None:
            step[0] += 1
            fix = {"lat": center[0] + i * 1e-4, "lng": center[1] + step[0] * 1e-6,
                   "accuracy_m": 8.0, "recorded_at": datetime.now(UTC).isoformat()}
            answer = await clients[i].call("location", fix, timeout=30)
            if not (answer.get("ok") and answer.get("accepted")):
                raise RuntimeError(f"probe ping refused: {answer}")

        job_ids: list[int] = []

        async def book(k: int) -> float | None:
            body = {"category_id": category_id, "description": f"probe booking {k}",
                    "lat": center[0] + rng.uniform(-0.01, 0.01),
                    "lng": center[1] + rng.uniform(-0.01, 0.01)}
            headers = {"Authorization": f"Bearer {resident_token}",
                       "Idempotency-Key": f"probe-{time.time_ns()}-{k}"}
            async with http.post(url + "/api/v1/jobs", json=body, headers=headers) as r:
                answer = await r.json(content_type=None)
                if r.status != 201:
                    raise RuntimeError(f"probe booking refused: {r.status} {answer}")
            job_id = int(answer["id"])
            job_ids.append(job_id)
            deadline = time.monotonic() + 10
            while job_id not in offers and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            return offers.get(job_id)  # the wall time ends at the offer, not the response

        winners: set[int] = set()

        async def accept(k: int) -> None:
            """The first offer of booking k whose worker holds no job yet: it wins."""
            job_id = job_ids[5 + k]  # after the warm-up bookings
            free = [(o, i) for o, i in offered.get(job_id, []) if i not in winners]
            if not free:
                raise RuntimeError(f"probe job {job_id}: no offer to a worker without a job")
            offer_id, i = free[0]
            winners.add(i)
            async with http.post(f"{url}/api/v1/offers/{offer_id}/accept",
                                 headers={"Authorization": f"Bearer {probe_tokens[i]}"}) as r:
                answer = await r.json(content_type=None)
                if r.status != 200:
                    raise RuntimeError(f"probe accept refused: {r.status} {answer}")

        n = len(probe_tokens)
        await measure("bare GET", 200, bare)
        await measure("Socket.IO connect (token auth)", n, connect)
        await measure("ping: first fix of the worker", n, ping)
        await asyncio.sleep(1.0)  # past the 800 ms per-worker rate limit
        await measure("ping: 'no active job' cached", n, ping)
        for k in range(5):  # warm the pool's backends (PostGIS loads on first use)
            await book(-1 - k)
        await measure("booking POST -> first offer", bookings, book)
        await asyncio.sleep(0.5)  # every offer of the last booking has arrived
        # Accepting: the assignment, the worker's other offers withdrawn (and those jobs'
        # next waves), the masked number, the resident's text queued.
        await measure("offer accept (wins the job)", min(bookings, n // 3), accept)
        for job_id in job_ids:  # no offer cascades from the probe during the measurement
            async with http.post(f"{url}/api/v1/jobs/{job_id}/cancel", json={"reason": "probe"},
                                 headers={"Authorization": f"Bearer {resident_token}"}) as r:
                await r.read()
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
    return costs
