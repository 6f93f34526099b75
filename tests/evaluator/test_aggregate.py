"""Per-model aggregates of a run's results, and the candidate metrics a decision takes."""

from __future__ import annotations

import math

import pytest

from evaluator.aggregate import ScoredResult, aggregate_models, candidate_metrics
from policies import CandidateMetrics


def row(
    case_id: int,
    model: str = "a",
    status: str = "ok",
    *,
    score: float | None = 10.0,
    passed: bool | None = True,
    cost: float = 0.01,
    latency: float | None = 100.0,
    ttft: float | None = 50.0,
    judge_error: str | None = None,
) -> ScoredResult:
    return ScoredResult(
        case_id=case_id,
        model=model,
        status=status,
        cost_usd=cost,
        latency_ms=latency,
        ttft_ms=ttft,
        score=score,
        passed=passed,
        judge_error=judge_error,
    )


def test_scores_and_interval() -> None:
    rows = [row(i, score=float(s), passed=s >= 7) for i, s in enumerate([10, 8, 6, 4])]
    (aggregate,) = aggregate_models(rows, ["a"])

    assert aggregate.cases == 4
    assert aggregate.quality.mean == 7.0
    assert aggregate.quality.confidence == 0.90
    assert aggregate.quality.low < 7.0 < aggregate.quality.high
    assert aggregate.scores == (10.0, 8.0, 6.0, 4.0)
    assert aggregate.pass_rate == 0.5


def test_interval_is_reproducible() -> None:
    rows = [row(i, score=float(1 + i % 10)) for i in range(30)]

    assert aggregate_models(rows, ["a"]) == aggregate_models(rows, ["a"])


def test_interrupted_and_pending_left_out() -> None:
    rows = [
        row(1),
        row(2, status="interrupted", score=None, passed=None, cost=0.0, latency=None),
        row(3, status="pending", score=None, passed=None, cost=0.0, latency=None),
    ]
    (aggregate,) = aggregate_models(rows, ["a"])

    assert aggregate.cases == 1
    assert aggregate.interrupted == 1
    assert aggregate.scores == (10.0,)
    assert aggregate.error_rate == 0.0


def test_errors_count_in_rate_not_scores() -> None:
    rows = [
        row(1),
        row(2),
        row(3, status="error", score=None, passed=None, cost=0.0, latency=5.0, ttft=None),
        row(4, status="error", score=None, passed=None, cost=0.0, latency=5.0, ttft=None),
    ]
    (aggregate,) = aggregate_models(rows, ["a"])

    assert aggregate.errors == 2
    assert aggregate.error_rate == 0.5
    assert aggregate.quality.cases == 2
    assert aggregate.quality.unscored_cases == 2
    assert math.isnan(aggregate.scores[2])
    assert aggregate.pass_rate == 1.0
    assert aggregate.cost_per_request_usd == pytest.approx(0.005)
    assert aggregate.latency_p50_ms == 100.0


def test_latency_percentiles_over_successes() -> None:
    rows = [row(i, latency=float(10 * (i + 1))) for i in range(20)]
    rows.append(row(99, status="error", score=None, passed=None, latency=9999.0))
    (aggregate,) = aggregate_models(rows, ["a"])

    assert aggregate.latency_p50_ms == pytest.approx(105.0)
    assert aggregate.latency_p95_ms == pytest.approx(190.5)
    assert aggregate.ttft_mean_ms == 50.0


def test_reused_rows_count_as_measured() -> None:
    rows = [row(1, status="reused", cost=0.02), row(2, cost=0.04)]
    (aggregate,) = aggregate_models(rows, ["a"])

    assert aggregate.reused == 1
    assert aggregate.cost_per_request_usd == pytest.approx(0.03)


def test_unmeasured_rows_have_no_cost() -> None:
    rows = [row(1, cost=0.0, latency=None, ttft=None), row(2, cost=0.0, latency=None, ttft=None)]
    (aggregate,) = aggregate_models(rows, ["a"])

    assert aggregate.cost_per_request_usd is None
    assert aggregate.latency_p50_ms is None
    assert aggregate.latency_p95_ms is None
    assert aggregate.ttft_mean_ms is None
    assert aggregate.quality.mean == 10.0


def test_judge_errors_counted() -> None:
    rows = [row(1, score=None, passed=None, judge_error="case has no checks"), row(2)]
    (aggregate,) = aggregate_models(rows, ["a"])

    assert aggregate.judge_errors == 1
    assert aggregate.quality.cases == 1
    assert aggregate.pass_rate == 1.0


def test_models_in_requested_order() -> None:
    rows = [row(1, "b"), row(1, "a"), row(1, "stray")]
    aggregates = aggregate_models(rows, ["b", "a", "silent"])

    assert [aggregate.model for aggregate in aggregates] == ["b", "a", "silent"]
    silent = aggregates[2]
    assert silent.cases == 0
    assert math.isnan(silent.quality.mean)
    assert silent.pass_rate is None
    assert silent.error_rate == 0.0


def test_scores_sorted_by_case() -> None:
    rows = [row(3, score=3.0), row(1, score=1.0), row(2, score=2.0)]
    (aggregate,) = aggregate_models(rows, ["a"])

    assert aggregate.scores == (1.0, 2.0, 3.0)


def test_candidate_metrics() -> None:
    rows = [row(1, "a", cost=0.02, latency=200.0), row(1, "b", cost=0.001, score=4.0)]
    metrics = candidate_metrics(aggregate_models(rows, ["a", "b"]))

    assert metrics == [
        CandidateMetrics("a", 0.02, 0.0, latency_p95_ms=200.0, scores=(10.0,)),
        CandidateMetrics("b", 0.001, 0.0, latency_p95_ms=100.0, scores=(4.0,)),
    ]


def test_candidate_metrics_need_cost() -> None:
    rows = [row(1, "recorded", cost=0.0, latency=None)]

    with pytest.raises(ValueError, match="cost of model recorded is unknown"):
        candidate_metrics(aggregate_models(rows, ["recorded"]))
