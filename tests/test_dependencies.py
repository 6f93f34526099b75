"""Dependency pins: the lock files pin exact versions and never a known-bad release."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK_FILES = ("requirements.lock", "requirements-runtime.lock")
# litellm 1.107.x was a compromised release; no file of the project may resolve to it.
KNOWN_BAD = {"litellm": re.compile(r"^1\.107\.")}
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)")


def pins(lock_file: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / lock_file).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{lock_file}: not an exact pin: {line!r}"
        found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


@pytest.mark.parametrize("lock_file", LOCK_FILES)
def test_lock_has_no_known_bad_release(lock_file: str) -> None:
    locked = pins(lock_file)

    for package, bad in KNOWN_BAD.items():
        assert package in locked, f"{lock_file} does not pin {package}"
        assert not bad.match(locked[package]), f"{lock_file} pins {package}=={locked[package]}"


def test_installed_release_not_known_bad() -> None:
    for package, bad in KNOWN_BAD.items():
        installed = metadata.version(package)
        assert not bad.match(installed), f"{package} {installed} is installed"


def test_installed_matches_lock() -> None:
    locked = pins("requirements.lock")

    mismatched = {
        name: (version, metadata.version(name))
        for name, version in locked.items()
        if metadata.version(name) != version
    }

    assert mismatched == {}, mismatched
