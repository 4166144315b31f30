"""Compare the virtualenv with pyproject.toml and the lock file; run by scripts/provision.sh
with the venv's interpreter after it installs the lock.

    python scripts/venvcheck.py unmet
        Prints each requirement of dispatch[dev], followed through every installed distribution
        and the extras asked of it, that no installed distribution satisfies; exits 1 if any.
        After `pip install -r requirements/dev.lock`, that means the lock is older than
        pyproject.toml: `make lock`. (`pip check` alone ignores extras, so misses dev.)
    python scripts/venvcheck.py extraneous LOCK
        Prints the installed distributions that LOCK does not name (left from an older lock),
        other than the installers and dispatch itself.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

KEEP = {"pip", "setuptools", "wheel", "dispatch"}
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")


def unmet(name: str, extras: frozenset[str], seen: set[tuple[str, frozenset[str]]]
          ) -> Iterator[str]:
    if (name, extras) in seen:
        return
    seen.add((name, extras))
    for line in metadata.distribution(name).requires or []:
        req = Requirement(line)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            continue
        wanted = str(req).split(";")[0].strip()
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            yield f"{name} needs {wanted}: not installed"
            continue
        if not req.specifier.contains(have, prereleases=True):
            yield f"{name} needs {wanted}: {have} is installed"
            continue
        yield from unmet(canonicalize_name(req.name), frozenset(req.extras), seen)


def extraneous(lock: Path) -> list[str]:
    pinned = {canonicalize_name(m.group(1))
              for m in map(PINNED.match, lock.read_text().splitlines()) if m}
    installed = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()}
    return sorted(installed - pinned - KEEP)


def main(argv: list[str]) -> int:
    if argv[:1] == ["unmet"]:
        problems = list(unmet("dispatch", frozenset({"dev"}), set()))
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    if argv[:1] == ["extraneous"] and len(argv) == 2:
        for name in extraneous(Path(argv[1])):
            print(name)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
