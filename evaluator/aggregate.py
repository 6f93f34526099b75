"""Per-model statistics of one run, computed from its result rows and their judgments.

Definitions, per model:

- cases: the results that were called or reused (status "ok", "error" or "reused"), one
  per case. Pending and interrupted results are left out of every figure below except
  `interrupted`.
- score: the mean judge score of the scored cases with a 90% percentile bootstrap interval
  (`policies.bootstrap_mean_interval`). A failed call or a judge error leaves the case unscored.
- pass rate: the share of scored cases that pass. Under the checks judge, a case passes when
  every check passes. Under the LLM and recorded judges, it passes with a score of at least 7,
  the lowest score of the rubric's "correct" band (see `evaluator.judges`).
- cost per request: the mean cost in USD of the measured calls (successful or not, reused
  included). A result without a measured latency was not called.
- latency p50 and p95, and mean time to first token: over the successful measured calls, in ms.
- error rate: failed calls (status "error") divided by cases.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from policies import DEFAULT_CONFIDENCE, CandidateMetrics, QualityEstimate, bootstrap_mean_interval

ATTEMPTED_STATUSES = frozenset({"ok", "error", "reused"})
SUCCESS_STATUSES = frozenset({"ok", "reused"})


@dataclass(frozen=True)
class ScoredResult:
    """One result row of a run joined with its judgment (score and passed are None without)."""

    case_id: int
    model: str
    status: str
    cost_usd: float
    latency_ms: float | None
    ttft_ms: float | None
    score: float | None = None
    passed: bool | None = None
    judge_error: str | None = None


@dataclass(frozen=True)
class ModelAggregate:
    """The statistics of one model in one run, as the module docstring defines them.

    `scores` contains one entry per case, in case id order, NaN where it has no score.
    Figures with nothing to measure are None (a NaN mean in `quality`).
    """

    model: str
    cases: int
    quality: QualityEstimate
    scores: tuple[float, ...]
    pass_rate: float | None
    cost_per_request_usd: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_mean_ms: float | None
    errors: int
    error_rate: float
    reused: int
    interrupted: int
    judge_errors: int
    # The most frequent judge error message, so that a report can show why outputs went unscored.
    common_judge_error: str | None = None


def aggregate_models(
    results: Iterable[ScoredResult],
    models: Sequence[str],
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[ModelAggregate]:
    """Compute one `ModelAggregate` per model, in the order of `models`.

    Results of models not listed are ignored. The bootstrap uses a fixed seed, so the same rows
    always give the same interval.
    """
    by_model: dict[str, list[ScoredResult]] = {model: [] for model in models}
    for result in results:
        if result.model in by_model:
            by_model[result.model].append(result)
    return [_aggregate(model, by_model[model], confidence) for model in models]


def candidate_metrics(aggregates: Iterable[ModelAggregate]) -> list[CandidateMetrics]:
    """Turn aggregates into the candidate measurements a routing decision takes.

    The decision bootstraps the scores again at the policy's own confidence level. Raises
    ValueError for a model whose cost is unknown because none of its calls was measured: a
    decision should not treat it as free.
    """
    metrics = []
    for aggregate in aggregates:
        if aggregate.cost_per_request_usd is None:
            raise ValueError(
                f"The cost of model {aggregate.model} is unknown because the run measured none "
                "of its calls. Run an evaluation that calls the model before deciding on it."
            )
        metrics.append(
            CandidateMetrics(
                model=aggregate.model,
                cost_per_request_usd=aggregate.cost_per_request_usd,
                error_rate=aggregate.error_rate,
                latency_p95_ms=aggregate.latency_p95_ms,
                scores=aggregate.scores,
            )
        )
    return metrics


def _aggregate(model: str, rows: list[ScoredResult], confidence: float) -> ModelAggregate:
    attempted = sorted(
        (row for row in rows if row.status in ATTEMPTED_STATUSES), key=lambda row: row.case_id
    )
    scores = tuple(math.nan if row.score is None else row.score for row in attempted)
    verdicts = [row.passed for row in attempted if row.score is not None]
    measured = [row for row in attempted if row.latency_ms is not None]
    succeeded = [row for row in measured if row.status in SUCCESS_STATUSES]
    latencies = [row.latency_ms for row in succeeded if row.latency_ms is not None]
    ttfts = [row.ttft_ms for row in succeeded if row.ttft_ms is not None]
    errors = sum(1 for row in attempted if row.status == "error")

    return ModelAggregate(
        model=model,
        cases=len(attempted),
        quality=bootstrap_mean_interval(scores, confidence),
        scores=scores,
        pass_rate=_share(sum(1 for passed in verdicts if passed), len(verdicts)),
        cost_per_request_usd=_mean([row.cost_usd for row in measured]),
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
        ttft_mean_ms=_mean(ttfts),
        errors=errors,
        error_rate=_share(errors, len(attempted)) or 0.0,
        reused=sum(1 for row in attempted if row.status == "reused"),
        interrupted=sum(1 for row in rows if row.status == "interrupted"),
        judge_errors=sum(1 for row in attempted if row.judge_error is not None),
        common_judge_error=_most_common(row.judge_error for row in attempted),
    )


def _most_common(messages: Iterable[str | None]) -> str | None:
    counts = Counter(message for message in messages if message is not None)
    return counts.most_common(1)[0][0] if counts else None


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _percentile(values: Sequence[float], percent: float) -> float | None:
    """Linear-interpolation percentile (numpy's default), None for no values."""
    return float(np.percentile(values, percent)) if values else None
