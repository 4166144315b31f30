"""The web process's collector settings (dispatch.entrypoints.collector), checked in a fresh
interpreter
so this test run's own collector is left alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dispatch.entrypoints.collector import YOUNG_THRESHOLD


def test_settle_freezes_what_is_loaded_and_collects_the_young_less_often() -> None:
    script = ("import gc, json; from dispatch.entrypoints import collector; "
              "before = gc.get_threshold(); collector.settle(); "
              "print(json.dumps([gc.get_freeze_count(), before, gc.get_threshold()]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    frozen, before, after = json.loads(out)
    assert frozen > 1000  # the interpreter's and the imported modules' objects
    assert after == [YOUNG_THRESHOLD, before[1], before[2]]


def test_a_long_collection_is_logged_and_a_short_one_is_not(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dispatch.entrypoints import collector

    ticks = iter([10.0, 10.0 + collector.SLOW_PAUSE_S / 2, 20.0, 20.0 + collector.SLOW_PAUSE_S])
    monkeypatch.setattr(collector.time, "perf_counter", lambda: next(ticks))
    with caplog.at_level("WARNING", logger=collector.__name__):
        collector._watch("start", {"generation": 0})
        collector._watch("stop", {"generation": 0, "collected": 3})
        collector._watch("start", {"generation": 2})
        collector._watch("stop", {"generation": 2, "collected": 41})
    [record] = caplog.records
    assert "generation 2" in record.getMessage() and "41 collected" in record.getMessage()
