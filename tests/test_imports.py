"""Every module imports on its own, as an RQ work horse or the sweeper imports it: the suite
itself imports the whole app first, which hides an import cycle that only bites in another
process (one broke batch processing under `make run`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: before each import, forget every module of ours (third-party
# ones stay loaded, so this takes seconds, not an interpreter per module).
_PROBE = """
import importlib, pathlib, sys
ours = ("dispatch", "geo", "notifications")
names = []
for package in ours:
    for path in sorted(pathlib.Path(package).rglob("*.py")):
        parts = path.with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
failed = 0
for name in names:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ours]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed += 1
        print(f"FAILED {name}: {type(exc).__name__}: {exc}")
print(f"imported {len(names) - failed} of {len(names)}")
"""


def test_every_module_imports_alone() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [line for line in lines if line.startswith("FAILED")] == []
    imported, _, total = lines[-1].removeprefix("imported ").partition(" of ")
    assert imported == total and int(total) > 40
