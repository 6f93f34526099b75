"""The run's budget (estimates, probes, refusal) and the backoff on rate-limited calls."""

from __future__ import annotations

import random
from typing import Any

import pytest

from evaluator.budget import Budget, Reservation
from evaluator.calls import CallResult
from evaluator.rate_limit import MAX_BACKOFF_SECONDS, RateLimitRetry

# ---------------------------------------------------------------------------
# Budget
# ---------------------------------------------------------------------------


def test_first_call_is_probe() -> None:
    budget = Budget(1.0)
    reservation = budget.reserve("a")

    assert reservation is not None
    assert reservation.probe
    assert reservation.estimate_usd == 0.0
    assert budget.estimate("a") is None


def test_one_probe_in_flight() -> None:
    budget = Budget(1.0)
    probe = budget.reserve("a")
    assert probe is not None

    assert budget.must_wait("a")
    assert budget.must_wait("b")
    budget.settle(probe, 0.1)
    assert not budget.must_wait("a")
    assert not budget.must_wait("b")


def test_known_keys_never_wait() -> None:
    budget = Budget(1.0)
    budget.learn("a", [0.1])
    probe = budget.reserve("b")
    assert probe is not None

    assert not budget.must_wait("a")
    assert budget.must_wait("b")


def test_estimate_is_mean_cost() -> None:
    budget = Budget(10.0)
    budget.learn("a", [0.1, 0.3])

    assert budget.estimate("a") == pytest.approx(0.2)
    reservation = budget.reserve("a")
    assert reservation is not None
    assert reservation.estimate_usd == pytest.approx(0.2)
    assert not reservation.probe


def test_reservations_count_against_limit() -> None:
    budget = Budget(0.5)
    budget.learn("a", [0.2])

    first = budget.reserve("a")
    second = budget.reserve("a")
    third = budget.reserve("a")

    assert first is not None and second is not None
    assert third is None
    assert budget.exhausted


def test_exhausted_budget_refuses_everything() -> None:
    budget = Budget(0.3)
    budget.learn("a", [0.2])
    budget.learn("b", [0.01])
    first = budget.reserve("a")
    assert first is not None
    assert budget.reserve("a") is None

    budget.settle(first, 0.0)
    assert budget.reserve("b") is None


def test_settle_adds_spend_and_releases() -> None:
    budget = Budget(1.0, spent_usd=0.25)
    budget.learn("a", [0.5])
    reservation = budget.reserve("a")
    assert reservation is not None

    budget.settle(reservation, 0.4)

    assert budget.spent_usd == pytest.approx(0.65)
    assert budget.estimate("a") == pytest.approx(0.45)
    assert budget.reserve("a") is None


def test_spend_stays_within_one_probe() -> None:
    """Simulated run: concurrency 4, calls of 0.3 USD, a 1 USD limit."""
    budget = Budget(1.0)
    in_flight: list[Reservation] = []
    for _ in range(20):
        while len(in_flight) < 4 and not budget.must_wait("a"):
            reservation = budget.reserve("a")
            if reservation is None:
                break
            in_flight.append(reservation)
        if not in_flight:
            break
        budget.settle(in_flight.pop(0), 0.3)

    assert budget.exhausted
    assert budget.spent_usd <= 1.0 + 0.3


# ---------------------------------------------------------------------------
# Backoff on HTTP 429
# ---------------------------------------------------------------------------


class StatusCaller:
    """Returns call results with the queued HTTP statuses, then successes."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.calls = 0

    async def __call__(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> CallResult:
        self.calls += 1
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            return CallResult(model=model, output="ok")
        return CallResult(model=model, output=None, error=f"HTTP {status}", status=status)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


async def test_rate_limited_call_retried_with_backoff() -> None:
    caller, sleeps = StatusCaller(429, 429, 429), Sleeps()
    retrying = RateLimitRetry(caller, retries=3, backoff_seconds=1.0, sleep=sleeps)

    result = await retrying("m", [], {})

    assert result.output == "ok"
    assert caller.calls == 4
    assert len(sleeps.delays) == 3
    for retry, delay in enumerate(sleeps.delays):
        assert 0.5 * 2**retry <= delay <= 2**retry


async def test_rate_limit_gives_up_after_retries() -> None:
    caller, sleeps = StatusCaller(*[429] * 10), Sleeps()
    result = await RateLimitRetry(caller, retries=2, sleep=sleeps)("m", [], {})

    assert result.status == 429
    assert result.error == "HTTP 429"
    assert caller.calls == 3


async def test_other_errors_not_retried() -> None:
    caller, sleeps = StatusCaller(500), Sleeps()
    result = await RateLimitRetry(caller, sleep=sleeps)("m", [], {})

    assert result.status == 500
    assert caller.calls == 1
    assert sleeps.delays == []


async def test_backoff_is_capped() -> None:
    caller, sleeps = StatusCaller(*[429] * 12), Sleeps()
    retrying = RateLimitRetry(
        caller, retries=10, backoff_seconds=5.0, sleep=sleeps, rng=random.Random(1)
    )
    await retrying("m", [], {})

    assert max(sleeps.delays) <= MAX_BACKOFF_SECONDS
