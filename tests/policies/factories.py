"""Builders of candidate measurements for the policy tests."""

from __future__ import annotations

import math

from policies import CandidateMetrics, QualityEstimate


def make_candidate(
    model: str,
    cost: float,
    *,
    mean: float = 8.6,
    low: float | None = None,
    high: float | None = None,
    cases: int = 50,
    unscored_cases: int = 0,
    latency: float | None = 1000.0,
    error_rate: float = 0.0,
    confidence: float = 0.90,
) -> CandidateMetrics:
    """Build a candidate with a precomputed quality interval of mean +/- 0.3 unless given."""
    if cases == 0:
        quality = QualityEstimate(math.nan, math.nan, math.nan, 0, unscored_cases, confidence)
    else:
        quality = QualityEstimate(
            mean=mean,
            low=mean - 0.3 if low is None else low,
            high=mean + 0.3 if high is None else high,
            cases=cases,
            unscored_cases=unscored_cases,
            confidence=confidence,
        )
    return CandidateMetrics(
        model=model,
        cost_per_request_usd=cost,
        error_rate=error_rate,
        latency_p95_ms=latency,
        quality=quality,
    )
