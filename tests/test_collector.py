"""The web process's collector settings (dispatch.collector), checked in a fresh interpreter
so this test run's own collector is left alone."""

from __future__ import annotations

import json
import subprocess
import sys

from dispatch.collector import YOUNG_THRESHOLD


def test_settle_freezes_what_is_loaded_and_collects_the_young_less_often() -> None:
    script = ("import gc, json; from dispatch import collector; "
              "before = gc.get_threshold(); collector.settle(); "
              "print(json.dumps([gc.get_freeze_count(), before, gc.get_threshold()]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    frozen, before, after = json.loads(out)
    assert frozen > 1000  # the interpreter's and the imported modules' objects
    assert after == [YOUNG_THRESHOLD, before[1], before[2]]
