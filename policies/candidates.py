"""Measurements of one candidate model from an evaluation run, the input of a decision."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policies.stats import QualityEstimate, bootstrap_mean_interval

MIN_SCORE = 1.0
MAX_SCORE = 10.0


@dataclass(frozen=True)
class CandidateMetrics:
    """Cost, latency, errors and judge scores of one candidate model in one run.

    Give either ``scores``, one judge score from 1 to 10 per case with NaN for a case that got
    no score, or a precomputed ``quality`` estimate, but not both. Scores are stored as a
    tuple, so a numpy array may be passed at run time. ``latency_p95_ms`` is None when no
    latency was measured. Construction raises ValueError naming the model and the bad value.
    """

    model: str
    cost_per_request_usd: float
    error_rate: float
    latency_p95_ms: float | None = None
    scores: Sequence[float] | None = None
    quality: QualityEstimate | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("Invalid candidate: the model name is empty.")
        if not (math.isfinite(self.cost_per_request_usd) and self.cost_per_request_usd >= 0):
            raise ValueError(
                f"Invalid cost_per_request_usd {self.cost_per_request_usd!r} for {self.model}: "
                "expected a finite number of USD of at least 0."
            )
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(
                f"Invalid error_rate {self.error_rate!r} for {self.model}: "
                "expected a share from 0 to 1."
            )
        latency = self.latency_p95_ms
        if latency is not None and not (math.isfinite(latency) and latency >= 0):
            raise ValueError(
                f"Invalid latency_p95_ms {latency!r} for {self.model}: expected a finite number "
                "of milliseconds of at least 0, or None when no latency was measured."
            )
        self._validate_quality_input()

    def estimate_quality(
        self, confidence: float, resamples: int, seed: int | np.random.Generator
    ) -> QualityEstimate:
        """Return the precomputed quality, or bootstrap it from the scores.

        Raises ValueError if a precomputed estimate was made at another confidence level.
        """
        if self.quality is not None:
            if not math.isclose(self.quality.confidence, confidence):
                raise ValueError(
                    f"Quality estimate of {self.model} has confidence "
                    f"{self.quality.confidence}, but the policy uses {confidence}: "
                    "recompute it at the policy's confidence or pass the scores instead."
                )
            return self.quality

        assert self.scores is not None  # __post_init__ requires scores or quality
        return bootstrap_mean_interval(self.scores, confidence, resamples, seed)

    def _validate_quality_input(self) -> None:
        if (self.scores is None) == (self.quality is None):
            raise ValueError(
                f"Invalid candidate {self.model}: give either scores or a quality estimate, "
                "not both and not neither."
            )

        if self.scores is not None:
            scores = tuple(float(score) for score in self.scores)
            for score in scores:
                if not (math.isnan(score) or MIN_SCORE <= score <= MAX_SCORE):
                    raise ValueError(
                        f"Invalid score {score!r} for {self.model}: expected a judge score "
                        "from 1 to 10, or NaN for a case with no score."
                    )
            object.__setattr__(self, "scores", scores)

        if self.quality is not None and self.quality.cases > 0:
            bounds = (self.quality.mean, self.quality.low, self.quality.high)
            if not all(MIN_SCORE <= value <= MAX_SCORE for value in bounds):
                raise ValueError(
                    f"Invalid quality estimate {bounds} for {self.model}: mean, low and high "
                    "must be judge scores from 1 to 10."
                )
