"""Python's cyclic garbage collector, tuned for a web process that holds thousands of
websockets.

A collection stops the whole process (every greenlet) while it walks its generation. With
2,500 phones on a process, a full collection walked about 350,000 objects and CPython ran one
whenever a quarter more objects had survived into the old generation: bench/load.py saw
pauses of 0.2-0.8 s several times a minute, the whole tail of the booking-to-offer latency.

Two changes, at start-up:
- What is loaded by then (modules, the app) lives as long as the process: `gc.freeze()` takes
  it out of every later collection (about 200,000 objects).
- The youngest generation is collected every YOUNG_THRESHOLD allocations instead of 700: a
  ping's or a booking's objects are freed by reference counting long before, so far fewer
  of them survive into the old generation and full collections become rare."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from typing import Any

YOUNG_THRESHOLD = 50_000
# A collection that stops the process longer than this is logged: it is latency every
# connected phone and every request in flight just paid.
SLOW_PAUSE_S = 0.05
log = logging.getLogger(__name__)
_started_at: float | None = None  # collections never nest: one start is open at a time


def _watch(phase: str, info: dict[str, Any]) -> None:
    global _started_at
    if phase == "start":
        _started_at = time.perf_counter()
        return
    if _started_at is None:
        return
    paused = time.perf_counter() - _started_at
    _started_at = None
    if paused >= SLOW_PAUSE_S:
        # At interpreter exit (greenlets being finalized) logging itself may fail.
        with contextlib.suppress(Exception):
            log.warning("gc: generation %d collection paused the process %.0f ms "
                        "(%d collected)", info.get("generation", -1), paused * 1000,
                        info.get("collected", 0))


def settle() -> None:
    """Call once the app is loaded, before serving."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    if _watch not in gc.callbacks:
        gc.callbacks.append(_watch)
