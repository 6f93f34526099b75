"""Tests of the bootstrap mean and confidence interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies import QualityEstimate, bootstrap_mean_interval


def test_bootstrap_same_seed_same_interval() -> None:
    scores = np.random.default_rng(3).uniform(1, 10, 80)

    first = bootstrap_mean_interval(scores, seed=11)
    second = bootstrap_mean_interval(scores, seed=11)

    assert first == second


def test_bootstrap_other_seed_other_interval() -> None:
    scores = np.random.default_rng(3).uniform(1, 10, 80)

    first = bootstrap_mean_interval(scores, seed=11)
    second = bootstrap_mean_interval(scores, seed=12)

    assert first.mean == second.mean
    assert (first.low, first.high) != (second.low, second.high)


def test_bootstrap_accepts_generator() -> None:
    scores = [7.0, 8.0, 9.0, 6.5, 8.5]

    from_seed = bootstrap_mean_interval(scores, seed=5)
    from_generator = bootstrap_mean_interval(scores, seed=np.random.default_rng(5))

    assert from_seed == from_generator


def test_bootstrap_interval_brackets_mean() -> None:
    scores = np.random.default_rng(4).normal(8.0, 1.0, 200)

    estimate = bootstrap_mean_interval(scores)

    assert estimate.mean == pytest.approx(float(scores.mean()))
    assert estimate.low < estimate.mean < estimate.high
    assert estimate.cases == 200
    assert estimate.unscored_cases == 0
    assert estimate.confidence == 0.90


def test_bootstrap_width_matches_normal_theory() -> None:
    # For a mean of n normal scores the 90% interval is about +/- 1.645 sd / sqrt(n).
    scores = np.random.default_rng(5).normal(7.0, 1.5, 400)
    expected_half_width = 1.645 * scores.std(ddof=1) / math.sqrt(scores.size)

    estimate = bootstrap_mean_interval(scores, resamples=4000)

    half_width = (estimate.high - estimate.low) / 2
    assert half_width == pytest.approx(expected_half_width, rel=0.1)


def test_bootstrap_higher_confidence_wider() -> None:
    scores = np.random.default_rng(6).normal(7.0, 1.5, 100)

    narrow = bootstrap_mean_interval(scores, confidence=0.80)
    wide = bootstrap_mean_interval(scores, confidence=0.99)

    assert wide.low < narrow.low
    assert wide.high > narrow.high


def test_bootstrap_coverage_near_nominal() -> None:
    # Over many samples, a 90% interval should contain the true mean about 90% of the time.
    rng = np.random.default_rng(7)
    samples = 300
    covered = 0
    for _ in range(samples):
        estimate = bootstrap_mean_interval(rng.normal(8.0, 1.5, 50), seed=rng)
        if estimate.low <= 8.0 <= estimate.high:
            covered += 1

    assert 0.84 <= covered / samples <= 0.95


def test_bootstrap_nan_excluded_and_counted() -> None:
    scores = [8.0, math.nan, 6.0, math.nan, 7.0]

    estimate = bootstrap_mean_interval(scores)

    assert estimate.mean == pytest.approx(7.0)
    assert estimate.cases == 3
    assert estimate.unscored_cases == 2
    assert 6.0 <= estimate.low <= estimate.high <= 8.0


@pytest.mark.parametrize(
    "scores",
    [pytest.param([], id="empty"), pytest.param([math.nan, math.nan], id="all-nan")],
)
def test_bootstrap_without_scores_is_nan(scores: list[float]) -> None:
    estimate = bootstrap_mean_interval(scores)

    assert math.isnan(estimate.mean)
    assert math.isnan(estimate.low)
    assert math.isnan(estimate.high)
    assert estimate.cases == 0
    assert estimate.unscored_cases == len(scores)


def test_bootstrap_single_score_degenerate() -> None:
    estimate = bootstrap_mean_interval([7.5])

    assert (estimate.mean, estimate.low, estimate.high) == (7.5, 7.5, 7.5)


def test_bootstrap_large_input_resampled_in_blocks() -> None:
    # 6,000 cases x 2,000 resamples exceeds one resample matrix, so the means come in blocks.
    scores = np.random.default_rng(8).normal(6.0, 2.0, 6000)
    expected_half_width = 1.645 * scores.std(ddof=1) / math.sqrt(scores.size)

    estimate = bootstrap_mean_interval(scores)

    assert estimate.low < estimate.mean < estimate.high
    assert (estimate.high - estimate.low) / 2 == pytest.approx(expected_half_width, rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"scores": [7.0, math.inf]}, "infinite", id="infinite-score"),
        pytest.param({"scores": [[7.0, 8.0]]}, r"1-D array, got shape \(1, 2\)", id="2d-scores"),
        pytest.param({"scores": [7.0], "confidence": 1.0}, "confidence 1.0", id="confidence-1"),
        pytest.param({"scores": [7.0], "confidence": 0.0}, "confidence 0.0", id="confidence-0"),
        pytest.param({"scores": [7.0], "resamples": 0}, "resamples 0", id="no-resamples"),
    ],
)
def test_bootstrap_invalid_input_raises(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_mean_interval(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param((8.0, 7.5, 8.5, -1, 0, 0.9), "cannot be negative", id="negative-cases"),
        pytest.param((8.0, 7.5, 8.5, 0, 0, 0.9), "must be NaN", id="finite-without-cases"),
        pytest.param((math.nan, 7.5, 8.5, 10, 0, 0.9), "must be finite", id="nan-with-cases"),
        pytest.param((8.0, 8.5, 7.5, 10, 0, 0.9), "low 8.5 is greater", id="low-above-high"),
        pytest.param((8.0, 7.5, 8.5, 10, 0, 1.5), "confidence 1.5", id="bad-confidence"),
    ],
)
def test_quality_estimate_invalid_raises(
    fields: tuple[float, float, float, int, int, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        QualityEstimate(*fields)
