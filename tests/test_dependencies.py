"""Dependency pins: the lock files pin exact versions with hashes and never a known-bad release."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK_FILES = ("requirements.lock", "requirements-runtime.lock")
# litellm 1.107.x was a compromised release; no file of the project may resolve to it.
KNOWN_BAD = {"litellm": re.compile(r"^1\.107\.")}
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#\\]+)$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: tuple[str, ...]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str, source: str = "lock file") -> dict[str, Pin]:
    """Parse `name==version --hash=sha256:... ...` requirements, joined across backslashes.

    Raises AssertionError naming the line for anything but an exact pin with its hashes.
    """
    joined = re.sub(r"\\\n", " ", text)
    pins = {}
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split()
        match = PIN.match(requirement)
        assert match, f"{source}: not an exact pin: {line[:120]!r}"
        name = normalize(match.group(1))
        for option in options:
            assert HASH.match(option), f"{source}: {name}: not a sha256 hash: {option!r}"
        assert options, f"{source}: {name}=={match.group(2)} has no --hash"
        assert name not in pins, f"{source}: {name} is pinned twice"
        pins[name] = Pin(match.group(2), tuple(options))
    return pins


def known_bad(pins: dict[str, Pin]) -> list[str]:
    """Return 'name==version' for every pin of a known-bad release."""
    return [
        f"{name}=={pins[name].version}"
        for name, bad in KNOWN_BAD.items()
        if name in pins and bad.match(pins[name].version)
    ]


def lock(lock_file: str) -> dict[str, Pin]:
    return parse_lock((ROOT / lock_file).read_text(encoding="utf-8"), lock_file)


@pytest.mark.parametrize("lock_file", LOCK_FILES)
def test_lock_has_no_known_bad_release(lock_file: str) -> None:
    locked = lock(lock_file)

    for package in KNOWN_BAD:
        assert package in locked, f"{lock_file} does not pin {package}"
    assert known_bad(locked) == []


@pytest.mark.parametrize("lock_file", LOCK_FILES)
def test_lock_names_regeneration(lock_file: str) -> None:
    header = (ROOT / lock_file).read_text(encoding="utf-8").splitlines()[:4]

    assert any("Regenerate with: scripts/lock.sh" in line for line in header)
    assert (ROOT / "scripts" / "lock.sh").is_file()


def test_runtime_lock_within_full_lock() -> None:
    full = lock("requirements.lock")
    runtime = lock("requirements-runtime.lock")

    assert "setuptools" in runtime, "the image builds the package without build isolation"
    assert {name: pin.version for name, pin in runtime.items() if name not in full} == {}
    mismatched = {
        name: (pin.version, full[name].version)
        for name, pin in runtime.items()
        if pin.version != full[name].version
    }
    assert mismatched == {}


def test_pyproject_pins_match_lock() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = [
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["dev"],
        *project["build-system"]["requires"],
    ]
    locked = lock("requirements.lock")

    differing = {}
    for requirement in declared:
        name_part, _, version = requirement.partition("==")
        name = normalize(name_part.split("[")[0])
        if locked[name].version != version:
            differing[name] = (version, locked[name].version)
    assert differing == {}


@pytest.mark.parametrize(
    ("path", "command"),
    [
        ("Makefile", "pip install --quiet --require-hashes -r requirements.lock"),
        ("Dockerfile", "pip install --no-cache-dir --require-hashes -r requirements-runtime.lock"),
    ],
)
def test_installs_require_hashes(path: str, command: str) -> None:
    assert command in (ROOT / path).read_text(encoding="utf-8")


def test_installed_release_not_known_bad() -> None:
    for package, bad in KNOWN_BAD.items():
        installed = metadata.version(package)
        assert not bad.match(installed), f"{package} {installed} is installed"


def test_installed_matches_lock() -> None:
    locked = lock("requirements.lock")

    mismatched = {
        name: (pin.version, metadata.version(name))
        for name, pin in locked.items()
        if metadata.version(name) != pin.version
    }

    assert mismatched == {}


# The checks above must be able to fail: the parser and the known-bad rule on made-up files.

SHA = "--hash=sha256:" + "ab" * 32


@pytest.mark.parametrize("version", ["1.107.0", "1.107.12"])
def test_known_bad_found(version: str) -> None:
    pins = parse_lock(f"litellm=={version} \\\n    {SHA}\nopenai==2.54.0 {SHA}\n")

    assert known_bad(pins) == [f"litellm=={version}"]


def test_good_release_passes() -> None:
    assert known_bad(parse_lock(f"litellm==1.106.12 \\\n    {SHA} \\\n    {SHA}\n")) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("litellm==1.106.12\n", "has no --hash", id="no-hash"),
        pytest.param(f"litellm>=1.106 {SHA}\n", "not an exact pin", id="range"),
        pytest.param("litellm==1.106.12 --hash=md5:00\n", "not a sha256 hash", id="md5"),
        pytest.param(f"litellm==1.106.12 {SHA}\nLiteLLM==1.106.12 {SHA}\n", "twice", id="twice"),
    ],
)
def test_parser_rejects(text: str, problem: str) -> None:
    with pytest.raises(AssertionError, match=problem):
        parse_lock(text)
