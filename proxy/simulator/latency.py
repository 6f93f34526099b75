"""How long a simulated model takes: time to first token, then a steady token rate.

A model's `LatencyProfile` has `ttft_ms` (time to first token), `tokens_per_second` and
`jitter`, the largest share by which one request's delays may differ from the profile (0.1:
up to 10% faster or slower). Each request draws one jitter factor from the model's own
`random.Random`, seeded from the simulator's seed and the model name, so a sequence of requests
gets the same delays in every run.

A `Timing` is the plan of one reply: `ttft` seconds until the first token, then `per_token`
seconds for each further token. A plain reply is sent after ``ttft + tokens * per_token``. A
streamed one sends its first chunk after `ttft`, then each further chunk of a few tokens when its
tokens are due. Every delay is divided by the simulator's `speed` factor.

Replayed rows may carry recorded times, used as recorded, without jitter (`recorded_timing`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from proxy.simulator.errors import SimulatorFileError, show

DEFAULT_JITTER = 0.1
MAX_JITTER = 0.9


@dataclass(frozen=True)
class LatencyProfile:
    """A model's latency: time to first token, token rate and jitter."""

    ttft_ms: float
    tokens_per_second: float
    jitter: float = DEFAULT_JITTER


# Used for replayed models without recorded times and without a --profile entry.
DEFAULT_PROFILE = LatencyProfile(ttft_ms=500.0, tokens_per_second=60.0)


@dataclass(frozen=True)
class Timing:
    """The delays of one reply, in seconds, before the speed factor."""

    ttft: float
    per_token: float

    def total(self, tokens: int) -> float:
        """Seconds until a plain (non-streamed) reply of `tokens` tokens is sent."""
        return self.ttft + tokens * self.per_token

    def scaled(self, speed: float) -> Timing:
        """Return the same plan run `speed` times faster."""
        return Timing(self.ttft / speed, self.per_token / speed)


def profile_timing(profile: LatencyProfile, rng: random.Random) -> Timing:
    """Return one request's timing from a profile, with a jitter factor drawn from `rng`."""
    factor = 1.0 + rng.uniform(-profile.jitter, profile.jitter) if profile.jitter else 1.0
    return Timing(
        ttft=profile.ttft_ms / 1000.0 * factor,
        per_token=factor / profile.tokens_per_second,
    )


def recorded_timing(
    profile: LatencyProfile,
    rng: random.Random,
    tokens: int,
    ttft_ms: float | None,
    latency_ms: float | None,
) -> Timing:
    """Return the timing of a replayed reply of `tokens` tokens.

    - `ttft_ms` and `latency_ms`: the first token after `ttft_ms`, the reply complete after
      `latency_ms`.
    - `latency_ms` only: the profile's time to first token (at most `latency_ms`), the reply
      complete after `latency_ms`.
    - `ttft_ms` only: the first token after `ttft_ms`, then the profile's token rate.
    - neither: the profile, with jitter.
    """
    if ttft_ms is None and latency_ms is None:
        return profile_timing(profile, rng)
    if latency_ms is None:
        assert ttft_ms is not None
        return Timing(ttft_ms / 1000.0, 1.0 / profile.tokens_per_second)
    first = profile.ttft_ms if ttft_ms is None else ttft_ms
    first = min(first, latency_ms)
    return Timing(first / 1000.0, (latency_ms - first) / 1000.0 / max(tokens, 1))


def model_rng(seed: int, model: str) -> random.Random:
    """The jitter generator of one model: the same sequence in every run for a seed."""
    return random.Random(f"{seed}/{model}")


def parse_profile(raw: object, where: str, problems: list[str]) -> LatencyProfile | None:
    """Validate a mapping with `ttft_ms`, `tokens_per_second` and optional `jitter`.

    Appends one sentence per problem to `problems` (prefixed with `where`) and returns None
    when there was any.
    """
    if not isinstance(raw, dict):
        problems.append(
            f"{where}: expected a mapping with ttft_ms and tokens_per_second, got {show(raw)}"
        )
        return None
    before = len(problems)
    ttft = number_field(raw, "ttft_ms", where, problems, minimum=0.0)
    rate = number_field(raw, "tokens_per_second", where, problems, minimum=0.0, strict=True)
    jitter = number_field(
        raw, "jitter", where, problems, minimum=0.0, maximum=MAX_JITTER, default=DEFAULT_JITTER
    )
    if len(problems) > before or ttft is None or rate is None or jitter is None:
        return None
    return LatencyProfile(ttft_ms=ttft, tokens_per_second=rate, jitter=jitter)


_MISSING: Any = object()


def number_field(
    raw: dict[str, Any],
    key: str,
    where: str,
    problems: list[str],
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
    default: float | None = _MISSING,
) -> float | None:
    """Read a number at `where.key`; record a problem and return None when it is bad.

    With `strict`, the number must be greater than `minimum`, not equal to it. Without a
    `default`, the key is required.
    """
    if key not in raw:
        if default is _MISSING:
            problems.append(f"{where}.{key}: missing")
            return None
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        problems.append(f"{where}.{key}: expected a number, got {show(value)}")
        return None
    low_ok = minimum is None or (value > minimum if strict else value >= minimum)
    high_ok = maximum is None or value <= maximum
    if not (low_ok and high_ok):
        if maximum is None:
            bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
        else:
            bound = f"between {minimum:g} and {maximum:g}"
        problems.append(f"{where}.{key}: must be {bound}, got {show(value)}")
        return None
    return float(value)


PROFILE_KEYS = frozenset({"ttft_ms", "tokens_per_second", "jitter"})


def load_profiles(path: Path) -> dict[str, LatencyProfile]:
    """Read a `--profile` YAML file: ``model: {ttft_ms, tokens_per_second, jitter?}``.

    Raises `SimulatorFileError` naming the file, the key path and the value of each problem.
    """
    raw = read_yaml(path)
    if not isinstance(raw, dict) or not raw:
        raise SimulatorFileError(
            [f"{path}: expected a mapping of model names to latency profiles, got {show(raw)}"]
        )
    problems: list[str] = []
    profiles: dict[str, LatencyProfile] = {}
    for model, entry in raw.items():
        where = f"{path}: {model}"
        if not isinstance(model, str) or not model:
            problems.append(f"{path}: model names must be non-empty strings, got {show(model)}")
            continue
        if isinstance(entry, dict):
            for key in sorted(set(entry) - PROFILE_KEYS, key=str):
                problems.append(
                    f"{where}.{key}: unknown key; expected {', '.join(sorted(PROFILE_KEYS))}"
                )
        profile = parse_profile(entry, where, problems)
        if profile is not None:
            profiles[model] = profile
    if problems:
        raise SimulatorFileError(problems)
    return profiles


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, raising `SimulatorFileError` for an unreadable or invalid one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SimulatorFileError([f"{path}: cannot read the file: {exc}"]) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SimulatorFileError([f"{where}: invalid YAML: {problem}"]) from exc
