"""The spending limit of one evaluation run, checked before every paid call.

Each call is reserved before it starts at an estimated cost: the mean cost of the finished
calls with the same key (a model name, or the judge). A reservation is refused once the money
spent plus the estimates of the calls in flight plus this estimate would exceed the limit, and
from then on every reservation is refused, so the run stops scheduling calls.

A key with no finished call has no estimate yet. Its first call is a probe, counted as 0, and
only one probe is in flight at a time, so with accurate estimates the spend exceeds the limit
by at most the cost of one probe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Reservation:
    """The estimated cost set aside for one call. A probe has no estimate and reserves 0."""

    key: str
    estimate_usd: float
    probe: bool


class Budget:
    """Money spent by a run, the estimates of calls in flight, and the limit they must respect."""

    def __init__(self, limit_usd: float, spent_usd: float = 0.0) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.exhausted = False
        self._reserved_usd = 0.0
        self._probe_in_flight = False
        self._totals: dict[str, tuple[float, int]] = {}

    def learn(self, key: str, costs: Iterable[float]) -> None:
        """Add costs of calls made before this budget existed to the estimate of `key`."""
        for cost in costs:
            self._add_cost(key, cost)

    def estimate(self, key: str) -> float | None:
        """Return the mean cost of the finished calls of `key`, or None before the first."""
        total, count = self._totals.get(key, (0.0, 0))
        return total / count if count else None

    def must_wait(self, key: str) -> bool:
        """Whether a call of `key` must wait, because it would be a second probe in flight."""
        return self.estimate(key) is None and self._probe_in_flight

    def reserve(self, key: str) -> Reservation | None:
        """Set aside the estimated cost of one call of `key`.

        Returns None, and marks the budget exhausted, when the call would exceed the limit.
        Call `must_wait` first: this method does not check that only one probe is in flight.
        """
        if self.exhausted:
            return None
        estimate = self.estimate(key)
        probe = estimate is None
        amount = 0.0 if estimate is None else estimate
        if self.spent_usd + self._reserved_usd + amount > self.limit_usd:
            self.exhausted = True
            return None

        self._reserved_usd += amount
        if probe:
            self._probe_in_flight = True
        return Reservation(key, amount, probe)

    def settle(self, reservation: Reservation, cost_usd: float) -> None:
        """Replace a reservation with the real cost of its call, which may be 0 for a failure."""
        self._reserved_usd = max(0.0, self._reserved_usd - reservation.estimate_usd)
        if reservation.probe:
            self._probe_in_flight = False
        self.spent_usd += cost_usd
        self._add_cost(reservation.key, cost_usd)

    def _add_cost(self, key: str, cost: float) -> None:
        total, count = self._totals.get(key, (0.0, 0))
        self._totals[key] = (total + cost, count + 1)
