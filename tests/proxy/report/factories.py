"""Hand-made report data for the renderer tests: no database involved."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from policies import CandidateRow, PolicySettings
from policies.eligibility import Floor, QualityFloor
from proxy.decisions import Savings, StoredDecision
from proxy.report.data import ChartDecision, PolicyReport, SpendBucket, SpendSeries

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = "support-bot"


def row(
    model: str,
    cost: float,
    mean: float | None = 8.5,
    *,
    interval: float | None = 0.3,
    latency: float | None = 900.0,
    frontier: bool = False,
    reasons: tuple[str, ...] = (),
    cases: int = 50,
) -> CandidateRow:
    """Build a candidate row; `mean=None` gives a row with no quality score."""
    if mean is None:
        low = high = quality = math.nan
        cases = 0
    else:
        quality = mean
        low = math.nan if interval is None else mean - interval
        high = math.nan if interval is None else mean + interval
    return CandidateRow(
        model=model,
        cost_per_request_usd=cost,
        quality_mean=quality,
        quality_low=low,
        quality_high=high,
        latency_p95_ms=latency,
        error_rate=0.0,
        cases=cases,
        unscored_cases=0,
        on_frontier=frontier,
        ineligible_reasons=reasons,
    )


def typical_rows() -> tuple[CandidateRow, ...]:
    """Five candidates: a frontier of three, one below the floor, one over the latency ceiling."""
    return (
        row("local-llama", 0.0004, 7.1, frontier=True, reasons=("quality lower bound 6.8 < 8.0",)),
        row("small", 0.002, 8.6, frontier=True),
        row("medium", 0.006, 8.4, reasons=()),
        row(
            "fast-but-slow",
            0.004,
            8.8,
            latency=5200.0,
            frontier=True,
            reasons=("p95 latency 5200 ms > 4000 ms",),
        ),
        row("big", 0.01, 8.7, latency=1500.0),
    )


def chart(
    rows: tuple[CandidateRow, ...] | None = None,
    *,
    chosen: str = "small",
    floor: float | None = 8.0,
    settings: PolicySettings | None = None,
    reason: str = "small is the cheapest eligible candidate and costs 80% less per request "
    "than the reference model big.",
) -> ChartDecision:
    quality_floor = None if floor is None else QualityFloor(Floor.MIN_QUALITY, floor, "")
    return ChartDecision(
        decision_id=7,
        created_at=NOW - timedelta(hours=1),
        chosen_model=chosen,
        previous_model="big",
        reference_model="big",
        reason=reason,
        applied=True,
        settings=settings or PolicySettings(),
        candidates=typical_rows() if rows is None else rows,
        quality_floor=quality_floor,
    )


def stored(
    decision_id: int, chosen: str, reason: str, *, applied: bool = True, **fields: Any
) -> StoredDecision:
    values: dict[str, Any] = {
        "id": decision_id,
        "policy": POLICY,
        "created_at": NOW - timedelta(hours=10 - decision_id),
        "previous_model": "big",
        "chosen_model": chosen,
        "mode": "auto",
        "source": "evaluation",
        "reason": reason,
        "applied": applied,
        "run_id": None,
        "decision": None,
    }
    values.update(fields)
    return StoredDecision(**values)


def no_savings() -> Savings:
    return Savings(0, 0.0, 0.0, 0.0, None, "no estimate: no requests.", ())


def spend_series(hours: int = 6) -> SpendSeries:
    start = NOW - timedelta(hours=hours)
    buckets = tuple(
        SpendBucket(start + timedelta(hours=index), 100, 0.2 + index * 0.01, 1.0 + index * 0.05)
        for index in range(hours)
    )
    return SpendSeries("hour", buckets)


def report(**fields: Any) -> PolicyReport:
    """Build a report with a decision, a chart, spend and savings. `fields` override any field."""
    values: dict[str, Any] = {
        "policy": POLICY,
        "generated_at": NOW,
        "reference_model": "big",
        "candidates": ("big", "medium", "small", "fast-but-slow", "local-llama"),
        "settings": PolicySettings(),
        "settings_source": "the configuration file",
        "current_model": "small",
        "current_decision_id": 7,
        "chart": chart(),
        "history": (
            stored(7, "small", chart().reason),
            stored(3, "big", "big is the cheapest eligible candidate.", previous_model=None),
        ),
        "spend": spend_series(),
        "savings": Savings(
            600, 1.35, 6.75, 5.4, 0.8, "estimate: from decision 7's candidate table.", ()
        ),
    }
    values.update(fields)
    return PolicyReport(**values)
