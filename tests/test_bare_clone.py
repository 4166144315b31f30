"""The product works from a bare clone: nothing in the tracked tree reads a folder beside or
above the checkout (Twilio's spec used to come from a folder next to it).

Fast and without servers: no database, no Prism. `make bare-clone-check` is the slow proof
(a real clone in an empty temporary folder, then `make test` and `make run` there)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from notifications import twilio_client
from notifications.twilio_client import REPO_ROOT, SPEC_IN_REPO, VERIFY_SPEC_IN_REPO, spec_path

THIS_FILE = Path(__file__).resolve()

# Ways the tree has reached, or could reach, outside the checkout. Each is a regular expression
# over a tracked file's text.
OUTSIDE_REFERENCES = {
    "the checkout's parent in shell": re.compile(r"""dirname "?\$\{?ROOT\b"""),
    "the checkout's parents in Python": re.compile(r"\bREPO_ROOT(\.resolve\(\))?\.parents?\b"),
}
# What a checkout holds that is not the product's (installed, generated or local state).
NOT_TRACKED = {".git", ".venv", "node_modules", ".local", "test-artifacts", "__pycache__",
               ".pytest_cache", ".ruff_cache", ".import_linter_cache", ".hypothesis"}


def beside_the_checkout() -> dict[str, re.Pattern[str]]:
    """A pattern for each folder that lies next to the checkout on this machine (a developer's
    or CI's material, another checkout): the tree may name none of them. Names the checkout
    itself holds at its top are left out, as a mention of those is the tree's own."""
    root = REPO_ROOT.resolve()
    own = {p.name for p in root.iterdir()}
    return {f"../{p.name}": re.compile(rf"(\.\./|(?<![\w.-])){re.escape(p.name)}/")
            for p in root.parent.iterdir()
            if p.is_dir() and p.resolve() != root and p.name not in own}


def tracked_files() -> list[Path]:
    """`git ls-files`; in a copy of the tree without its history (an unpacked archive, say),
    every file but installed and local state."""
    if shutil.which("git") is not None and (REPO_ROOT / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True,
                             capture_output=True).stdout
        return [REPO_ROOT / name for name in out.decode().split("\0") if name]
    return [p for p in REPO_ROOT.rglob("*")
            if not NOT_TRACKED & set(p.relative_to(REPO_ROOT).parts)]


def test_spec_path_resolves_inside_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_OPENAPI_SPEC", raising=False)
    path = spec_path()
    assert path.resolve().is_relative_to(REPO_ROOT.resolve())
    assert path == REPO_ROOT / SPEC_IN_REPO
    spec = json.loads(path.read_text())
    assert spec["openapi"].startswith("3.")
    assert "/2010-04-01/Accounts/{AccountSid}/Messages.json" in spec["paths"]


def test_spec_path_missing_says_run_make_npm(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    # A checkout without node_modules (and with a spec lying beside it, which must not count).
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    beside = tmp_path / "material" / "twilio-oai" / "twilio_api_v2010.json"
    beside.parent.mkdir(parents=True)
    beside.write_text("{}")
    monkeypatch.delenv("TWILIO_OPENAPI_SPEC", raising=False)
    monkeypatch.setattr(twilio_client, "REPO_ROOT", checkout)
    with pytest.raises(FileNotFoundError, match="make npm"):
        spec_path()


def test_spec_path_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    monkeypatch.setenv("TWILIO_OPENAPI_SPEC", str(spec))
    assert spec_path() == spec
    monkeypatch.setenv("TWILIO_OPENAPI_SPEC", str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match="TWILIO_OPENAPI_SPEC"):
        spec_path()


def test_services_sh_uses_the_same_spec_path() -> None:
    script = (REPO_ROOT / "scripts" / "services.sh").read_text()
    line = f'TWILIO_SPEC="${{TWILIO_OPENAPI_SPEC:-$ROOT/{SPEC_IN_REPO.as_posix()}}}"'
    assert line in script.splitlines(), f"scripts/services.sh should say: {line}"
    verify = (f'VERIFY_SPEC="${{TWILIO_VERIFY_OPENAPI_SPEC:-$ROOT/'
              f'{VERIFY_SPEC_IN_REPO.as_posix()}}}"')
    assert verify in script.splitlines(), f"scripts/services.sh should say: {verify}"
    assert (REPO_ROOT / VERIFY_SPEC_IN_REPO).is_file()


def test_no_tracked_file_reaches_outside_the_checkout() -> None:
    hits = []
    patterns = {**OUTSIDE_REFERENCES, **beside_the_checkout()}
    for path in tracked_files():
        if path == THIS_FILE or path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for what, pattern in patterns.items():
                if pattern.search(line):
                    hits.append(f"{path.relative_to(REPO_ROOT)}:{number}: {what}: "
                                f"{line.strip()[:100]}")
    assert not hits, "tracked files reach outside the checkout:\n" + "\n".join(hits)


def test_no_tracked_symlink_points_outside_the_checkout() -> None:
    root = REPO_ROOT.resolve()
    outside = [str(p.relative_to(REPO_ROOT)) for p in tracked_files()
               if p.is_symlink() and not p.resolve().is_relative_to(root)]
    assert not outside
