"""The explained routing decision of one policy, and its plain-JSON form for storage."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policies.settings import Mode, PolicySettings


@dataclass(frozen=True)
class CandidateRow:
    """One candidate's line in a decision's table.

    Quality is the mean judge score and its confidence interval, NaN when no case was scored.
    ``ineligible_reasons`` lists each failed requirement, such as "p95 latency 5200 ms > 4000 ms",
    and is empty for an eligible candidate.
    """

    model: str
    cost_per_request_usd: float
    quality_mean: float
    quality_low: float
    quality_high: float
    latency_p95_ms: float | None
    error_rate: float
    cases: int
    unscored_cases: int
    on_frontier: bool
    ineligible_reasons: tuple[str, ...]

    @property
    def eligible(self) -> bool:
        """Whether the candidate meets every floor and ceiling of the policy."""
        return not self.ineligible_reasons

    def to_dict(self) -> dict[str, Any]:
        """Return the row as plain JSON values, with None for a NaN quality."""
        return {
            "model": self.model,
            "cost_per_request_usd": self.cost_per_request_usd,
            "quality_mean": _nan_to_none(self.quality_mean),
            "quality_low": _nan_to_none(self.quality_low),
            "quality_high": _nan_to_none(self.quality_high),
            "latency_p95_ms": self.latency_p95_ms,
            "error_rate": self.error_rate,
            "cases": self.cases,
            "unscored_cases": self.unscored_cases,
            "on_frontier": self.on_frontier,
            "eligible": self.eligible,
            "ineligible_reasons": list(self.ineligible_reasons),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CandidateRow:
        """Rebuild a row from ``to_dict`` output. ``eligible`` is recomputed, not read.

        Raises ValueError if a key is missing or has the wrong type.
        """
        latency = _read(data, "latency_p95_ms", (int, float, type(None)))
        reasons = _read(data, "ineligible_reasons", list)
        return cls(
            model=_read(data, "model", str),
            cost_per_request_usd=float(_read(data, "cost_per_request_usd", (int, float))),
            quality_mean=_none_to_nan(_read(data, "quality_mean", (int, float, type(None)))),
            quality_low=_none_to_nan(_read(data, "quality_low", (int, float, type(None)))),
            quality_high=_none_to_nan(_read(data, "quality_high", (int, float, type(None)))),
            latency_p95_ms=None if latency is None else float(latency),
            error_rate=float(_read(data, "error_rate", (int, float))),
            cases=_read(data, "cases", int),
            unscored_cases=_read(data, "unscored_cases", int),
            on_frontier=_read(data, "on_frontier", bool),
            ineligible_reasons=tuple(str(reason) for reason in reasons),
        )


@dataclass(frozen=True)
class Decision:
    """The model a policy routes to at one moment, why, and every candidate's measurements.

    ``previous_model`` is the model the route pointed to before, None for a policy's first
    decision. ``cheapest_eligible_model`` is the cheapest candidate that met every floor, which
    differs from ``chosen_model`` when the current model is kept or the model is pinned.
    ``reason`` is one plain-English sentence. ``settings`` are the ones the decision used.
    """

    chosen_model: str
    previous_model: str | None
    reference_model: str
    cheapest_eligible_model: str | None
    reason: str
    candidates: tuple[CandidateRow, ...]
    settings: PolicySettings

    @property
    def mode(self) -> Mode:
        """The policy's mode when the decision was made."""
        return self.settings.mode

    @property
    def apply(self) -> bool:
        """Whether the route table should take the decision; False in recommend mode."""
        return self.settings.mode is not Mode.RECOMMEND

    @property
    def changes_route(self) -> bool:
        """Whether the chosen model differs from the previous one, applied or not."""
        return self.chosen_model != self.previous_model

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as plain JSON values, including the derived properties."""
        return {
            "chosen_model": self.chosen_model,
            "previous_model": self.previous_model,
            "reference_model": self.reference_model,
            "cheapest_eligible_model": self.cheapest_eligible_model,
            "mode": self.mode.value,
            "apply": self.apply,
            "changes_route": self.changes_route,
            "reason": self.reason,
            "candidates": [row.to_dict() for row in self.candidates],
            "settings": self.settings.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a decision from ``to_dict`` output.

        ``mode``, ``apply`` and ``changes_route`` are recomputed from the other keys, not read.
        Raises ValueError if a key is missing, has the wrong type, or the settings are invalid.
        """
        rows = _read(data, "candidates", list)
        for row in rows:
            if not isinstance(row, dict):
                raise ValueError(f"Invalid decision data: candidate row {row!r} is not an object.")
        return cls(
            chosen_model=_read(data, "chosen_model", str),
            previous_model=_read(data, "previous_model", (str, type(None))),
            reference_model=_read(data, "reference_model", str),
            cheapest_eligible_model=_read(data, "cheapest_eligible_model", (str, type(None))),
            reason=_read(data, "reason", str),
            candidates=tuple(CandidateRow.from_dict(row) for row in rows),
            settings=PolicySettings.from_mapping(_read(data, "settings", dict)),
        )


def _read(data: Mapping[str, Any], key: str, expected: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise ValueError(f"Invalid decision data: missing key {key!r}.")
    value = data[key]
    is_bool = isinstance(value, bool)
    wants_bool = expected is bool or (isinstance(expected, tuple) and bool in expected)
    if not isinstance(value, expected) or (is_bool and not wants_bool):
        raise ValueError(
            f"Invalid decision data: {key!r} is {value!r}, expected {_type_names(expected)}."
        )
    return value


def _type_names(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("null" if kind is type(None) else kind.__name__ for kind in types)


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
