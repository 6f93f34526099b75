"""Mean judge score with a percentile bootstrap confidence interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DEFAULT_CONFIDENCE = 0.90
DEFAULT_RESAMPLES = 2000

# Maximum number of elements in one resample matrix. Larger score arrays are resampled in
# blocks of rows, so memory stays near 8 bytes per element times this bound.
_MAX_MATRIX_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class QualityEstimate:
    """Mean judge score of one model and a confidence interval around it.

    ``low`` and ``high`` bound the central ``confidence`` share of the bootstrap means.
    ``cases`` counts the scored cases behind the mean and ``unscored_cases`` the cases whose
    score was NaN and left out. With no scored case, ``mean``, ``low`` and ``high`` are NaN.
    """

    mean: float
    low: float
    high: float
    cases: int
    unscored_cases: int
    confidence: float

    def __post_init__(self) -> None:
        _validate_confidence(self.confidence)
        if self.cases < 0 or self.unscored_cases < 0:
            raise ValueError(
                f"Invalid case counts {self.cases} scored and {self.unscored_cases} unscored: "
                "counts cannot be negative."
            )

        bounds = (self.mean, self.low, self.high)
        if self.cases == 0 and not all(math.isnan(value) for value in bounds):
            raise ValueError(
                f"Invalid quality estimate {bounds}: with no scored case, mean, low and high "
                "must be NaN."
            )
        if self.cases > 0 and not all(math.isfinite(value) for value in bounds):
            raise ValueError(
                f"Invalid quality estimate {bounds}: with {self.cases} scored cases, mean, low "
                "and high must be finite."
            )
        if self.low > self.high:
            raise ValueError(
                f"Invalid quality interval: low {self.low} is greater than high {self.high}."
            )


def bootstrap_mean_interval(
    scores: Sequence[float] | npt.NDArray[np.floating],
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | np.random.Generator = 0,
) -> QualityEstimate:
    """Estimate the mean score and its percentile bootstrap confidence interval.

    NaN scores are left out and counted in ``unscored_cases``. The interval bounds are the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of ``resamples`` means of
    resamples drawn with replacement. An integer ``seed`` makes the result reproducible, and a
    ``numpy.random.Generator`` is used as given.

    Raises ValueError if scores is not one-dimensional or contains an infinity, if confidence
    is not strictly between 0 and 1, or if resamples is less than 1.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"Invalid scores: expected a 1-D array, got shape {values.shape}.")
    if np.isinf(values).any():
        raise ValueError("Invalid scores: a score is infinite. Use NaN for a case with no score.")
    _validate_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"Invalid resamples {resamples}: expected at least 1.")

    scored = values[~np.isnan(values)]
    unscored_cases = int(values.size - scored.size)
    if scored.size == 0:
        nan = math.nan
        return QualityEstimate(nan, nan, nan, 0, unscored_cases, confidence)

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    means = _resample_means(scored, resamples, rng)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])

    return QualityEstimate(
        mean=float(scored.mean()),
        low=float(low),
        high=float(high),
        cases=int(scored.size),
        unscored_cases=unscored_cases,
        confidence=confidence,
    )


def _resample_means(
    values: npt.NDArray[np.float64], resamples: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Draw ``resamples`` resamples of ``values`` with replacement and return their means."""
    rows_per_block = max(1, _MAX_MATRIX_ELEMENTS // values.size)
    blocks = []
    for start in range(0, resamples, rows_per_block):
        rows = min(rows_per_block, resamples - start)
        indices = rng.integers(0, values.size, size=(rows, values.size))
        blocks.append(values[indices].mean(axis=1))
    return np.concatenate(blocks)


def _validate_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(
            f"Invalid confidence {confidence!r}: expected a number strictly between 0 and 1, "
            "such as 0.90."
        )
