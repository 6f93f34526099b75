"""The report of one run: its status and spend, and the per-model table, as text or JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from evaluator import run_store
from evaluator.aggregate import ModelAggregate, aggregate_models
from evaluator.run_errors import RunNotFoundError
from evaluator.tables import EvalRun

COLUMNS = ("model", "cases", "score", "interval", "pass", "USD/request", "p50 ms", "p95 ms")
COLUMNS_END = ("TTFT ms", "errors")


@dataclass(frozen=True)
class RunReport:
    """A run's identity, status, budget and spend, with one aggregate per model."""

    run_id: int
    policy: str
    status: str
    trigger: str
    models: list[str]
    cases: int
    budget_usd: float
    spent_usd: float
    started_at: datetime
    finished_at: datetime | None
    message: str | None
    aggregates: list[ModelAggregate]


def load_report(engine: Engine, run_id: int) -> RunReport:
    """Read a run and its results and compute the report. Raises `RunNotFoundError`."""
    run = run_store.get_run(engine, run_id)
    if run is None:
        raise RunNotFoundError(f"evaluation run {run_id} does not exist.")
    return build_report(run, aggregate_models(run_store.scored_results(engine, run_id), run.models))


def build_report(run: EvalRun, aggregates: list[ModelAggregate]) -> RunReport:
    assert run.id is not None
    return RunReport(
        run_id=run.id,
        policy=run.policy,
        status=run.status,
        trigger=run.trigger,
        models=list(run.models),
        cases=len(run.case_ids),
        budget_usd=run.budget_usd,
        spent_usd=run.spent_usd,
        started_at=run.started_at,
        finished_at=run.finished_at,
        message=run.error,
        aggregates=aggregates,
    )


def format_report(report: RunReport) -> str:
    """Render the report as a header line, one table line per model, and notes."""
    header = (
        f"run {report.run_id} of policy {report.policy}: {report.status}, "
        f"spent {format_usd(report.spent_usd)} of {format_usd(report.budget_usd)}, "
        f"{report.cases} cases x {len(report.models)} models"
    )
    confidence = report.aggregates[0].quality.confidence if report.aggregates else 0.9
    names = [*COLUMNS, *COLUMNS_END]
    names[3] = f"{confidence:.0%} interval"
    rows = [names] + [_table_row(aggregate) for aggregate in report.aggregates]
    widths = [max(len(row[index]) for row in rows) for index in range(len(names))]

    lines = [header, ""]
    for row in rows:
        cells = [
            cell.ljust(width) if index == 0 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.extend(_notes(report))
    return "\n".join(lines)


def report_to_json(report: RunReport) -> dict[str, Any]:
    """Return the report as plain JSON values with fixed keys. Unmeasured figures are null."""
    return {
        "run": {
            "id": report.run_id,
            "policy": report.policy,
            "status": report.status,
            "trigger": report.trigger,
            "models": report.models,
            "cases": report.cases,
            "budget_usd": report.budget_usd,
            "spent_usd": report.spent_usd,
            "started_at": report.started_at.isoformat(),
            "finished_at": report.finished_at.isoformat() if report.finished_at else None,
            "message": report.message,
        },
        "models": [_aggregate_json(aggregate) for aggregate in report.aggregates],
    }


def _aggregate_json(aggregate: ModelAggregate) -> dict[str, Any]:
    quality = aggregate.quality
    return {
        "model": aggregate.model,
        "cases": aggregate.cases,
        "scored_cases": quality.cases,
        "score_mean": _finite(quality.mean),
        "score_low": _finite(quality.low),
        "score_high": _finite(quality.high),
        "confidence": quality.confidence,
        "pass_rate": aggregate.pass_rate,
        "cost_per_request_usd": aggregate.cost_per_request_usd,
        "latency_p50_ms": aggregate.latency_p50_ms,
        "latency_p95_ms": aggregate.latency_p95_ms,
        "ttft_mean_ms": aggregate.ttft_mean_ms,
        "errors": aggregate.errors,
        "error_rate": aggregate.error_rate,
        "reused": aggregate.reused,
        "interrupted": aggregate.interrupted,
        "judge_errors": aggregate.judge_errors,
    }


def _table_row(aggregate: ModelAggregate) -> list[str]:
    quality = aggregate.quality
    scored = quality.cases > 0
    return [
        aggregate.model,
        str(aggregate.cases),
        f"{quality.mean:.2f}" if scored else "-",
        f"{quality.low:.2f}-{quality.high:.2f}" if scored else "-",
        _optional(aggregate.pass_rate, "{:.0%}"),
        _optional(aggregate.cost_per_request_usd, "{:.6f}"),
        _optional(aggregate.latency_p50_ms, "{:.0f}"),
        _optional(aggregate.latency_p95_ms, "{:.0f}"),
        _optional(aggregate.ttft_mean_ms, "{:.0f}"),
        f"{aggregate.errors} ({aggregate.error_rate:.0%})",
    ]


def _notes(report: RunReport) -> list[str]:
    notes = []
    for aggregate in report.aggregates:
        parts = []
        if aggregate.reused:
            parts.append(f"{aggregate.reused} results reused from earlier runs")
        if aggregate.interrupted:
            parts.append(f"{aggregate.interrupted} interrupted calls left out")
        if aggregate.judge_errors:
            common = aggregate.common_judge_error
            reason = f", most often: {common[:200]}" if common else ""
            parts.append(f"{aggregate.judge_errors} outputs without a score (judge errors{reason})")
        if parts:
            notes.append(f"{aggregate.model}: {', '.join(parts)}.")
    if report.message:
        notes.append(report.message)
    return ["", *notes] if notes else []


def format_usd(value: float) -> str:
    """Format USD with 2 to 6 decimals, as many as the value needs: $5.00, $0.0057, $0.00195."""
    whole, _, fraction = f"{value:.6f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _optional(value: float | None, template: str) -> str:
    return "-" if value is None else template.format(value)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
