"""Floor and ceiling checks of one candidate, with the sentences that explain each failure.

Two tests use the same floors with different evidence standards:

- ``entry_failures`` decides whether a candidate is eligible to be chosen. Its quality
  interval's lower bound must reach every quality floor, it needs a measured latency when a
  latency ceiling is set, and it needs at least ``min_cases`` judged cases.
- ``retention_failures`` decides whether the current model must be replaced. Only confident
  failures count: the quality interval's upper bound is below a floor, or a measured latency
  or error rate exceeds its ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from policies.candidates import CandidateMetrics
from policies.formatting import format_pair, format_score
from policies.settings import PolicySettings
from policies.stats import QualityEstimate


class Floor(StrEnum):
    """A requirement a candidate must meet, named by its policy setting (ceilings included)."""

    MIN_QUALITY = "min_quality"
    MIN_QUALITY_RATIO = "min_quality_ratio"
    MAX_LATENCY_P95_MS = "max_latency_p95_ms"
    MAX_ERROR_RATE = "max_error_rate"
    MIN_CASES = "min_cases"


@dataclass(frozen=True)
class FloorFailure:
    """One requirement a candidate failed, with a short phrase such as "12 judged cases < 30"."""

    floor: Floor
    message: str


@dataclass(frozen=True)
class QualityFloor:
    """A minimum mean judge score, and the text that explains where its value comes from.

    ``value`` is NaN for a ratio floor whose reference model has no scored case.
    """

    floor: Floor
    value: float
    basis: str


def quality_floors(
    settings: PolicySettings, reference_model: str, reference_quality: QualityEstimate
) -> tuple[QualityFloor, ...]:
    """Return the quality floors the settings turn on, resolving the ratio floor's value.

    NOTE: the ratio floor uses the reference model's mean from the same run, so judge noise in
    that mean moves the floor from run to run. Its interval is not taken into account.
    """
    floors = []
    if settings.min_quality is not None:
        floors.append(QualityFloor(Floor.MIN_QUALITY, settings.min_quality, ""))

    ratio = settings.min_quality_ratio
    if ratio is not None:
        share = f"{ratio * 100:g}% of {reference_model}'s mean"
        if reference_quality.cases == 0:
            basis = f" ({share}, but {reference_model} has no scored case)"
        else:
            basis = f" ({share} {format_score(reference_quality.mean)})"
        value = ratio * reference_quality.mean
        floors.append(QualityFloor(Floor.MIN_QUALITY_RATIO, value, basis))

    return tuple(floors)


def entry_failures(
    candidate: CandidateMetrics,
    quality: QualityEstimate,
    settings: PolicySettings,
    floors: Sequence[QualityFloor],
) -> list[FloorFailure]:
    """List every requirement that keeps the candidate from being eligible, in settings order."""
    failures = []
    if floors and quality.cases == 0:
        failures.append(FloorFailure(floors[0].floor, "no quality score"))
    elif quality.cases > 0:
        failures.extend(_quality_failures(quality.low, "lower", floors, unknown_fails=True))

    max_latency = settings.max_latency_p95_ms
    if max_latency is not None and candidate.latency_p95_ms is None:
        failures.append(FloorFailure(Floor.MAX_LATENCY_P95_MS, "no latency measured"))
    failures.extend(_ceiling_failures(candidate, settings))

    if quality.cases < settings.min_cases:
        failures.append(FloorFailure(Floor.MIN_CASES, _cases_message(quality, settings.min_cases)))
    return failures


def retention_failures(
    candidate: CandidateMetrics,
    quality: QualityEstimate,
    settings: PolicySettings,
    floors: Sequence[QualityFloor],
) -> list[FloorFailure]:
    """List the confident failures that force the current model to be replaced.

    A quality floor counts only when the interval's upper bound is below it and the model has
    at least ``min_cases`` judged cases, the smallest sample the policy acts on. A
    missing latency is no evidence and does not count. A measured latency or error rate above
    its ceiling counts whatever the number of cases.

    NOTE: latency and error rate are compared as measured, without an interval, so a model
    whose true error rate sits at the ceiling can still be replaced by noise.
    """
    failures = []
    if quality.cases >= settings.min_cases:
        failures.extend(_quality_failures(quality.high, "upper", floors, unknown_fails=False))
    failures.extend(_ceiling_failures(candidate, settings))
    return failures


def _quality_failures(
    bound: float, bound_name: str, floors: Sequence[QualityFloor], *, unknown_fails: bool
) -> list[FloorFailure]:
    failures = []
    for floor in floors:
        if math.isnan(floor.value):
            if unknown_fails:
                failures.append(FloorFailure(floor.floor, f"quality floor unknown{floor.basis}"))
            continue
        if bound < floor.value:
            bound_text, floor_text = format_pair(bound, floor.value, 1)
            message = f"quality {bound_name} bound {bound_text} < {floor_text}{floor.basis}"
            failures.append(FloorFailure(floor.floor, message))
    return failures


def _ceiling_failures(candidate: CandidateMetrics, settings: PolicySettings) -> list[FloorFailure]:
    failures = []
    latency = candidate.latency_p95_ms
    max_latency = settings.max_latency_p95_ms
    if latency is not None and max_latency is not None and latency > max_latency:
        latency_text, max_text = format_pair(latency, max_latency, 0)
        message = f"p95 latency {latency_text} ms > {max_text} ms"
        failures.append(FloorFailure(Floor.MAX_LATENCY_P95_MS, message))

    max_error_rate = settings.max_error_rate
    if max_error_rate is not None and candidate.error_rate > max_error_rate:
        rate_text, max_text = format_pair(candidate.error_rate * 100, max_error_rate * 100, 1)
        message = f"error rate {rate_text}% > {max_text}%"
        failures.append(FloorFailure(Floor.MAX_ERROR_RATE, message))
    return failures


def _cases_message(quality: QualityEstimate, min_cases: int) -> str:
    noun = "case" if quality.cases == 1 else "cases"
    message = f"{quality.cases} judged {noun} < {min_cases}"
    if quality.unscored_cases:
        message += f" ({quality.unscored_cases} without a score left out)"
    return message
