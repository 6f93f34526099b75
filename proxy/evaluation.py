"""One evaluation of a policy followed by its routing decision, as the CLI and the schedule run it.

Every run that finishes (completed, or stopped by its budget) ends with the policy's decision:
the candidates' measurements from the run go through `policies.decide`, the decision is stored
and logged, and in auto or pinned mode the route follows it. A run that failed makes no
decision, and neither does a run in which no output got a score (a judge that was down or
returned unusable replies leaves judge errors, never scores).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from evaluator.aggregate import candidate_metrics
from evaluator.calls import ModelCaller
from evaluator.runner import RunProgress, RunSummary, run_evaluation
from policies import Decision, decide
from proxy.config import LoadedConfig
from proxy.decisions import latest_applied, record_decision
from proxy.route_sync import resolve_routes
from proxy.route_table import RouteTable

logger = logging.getLogger(__name__)

DECIDING_STATUSES = frozenset({"completed", "budget_exhausted"})


@dataclass(frozen=True)
class EvaluationOutcome:
    """A run's summary, and the decision it ended with (None when it made none, and why)."""

    summary: RunSummary
    decision: Decision | None
    decision_id: int | None
    no_decision_reason: str | None = None


async def evaluate_and_decide(
    engine: Engine,
    loaded: LoadedConfig,
    caller: ModelCaller,
    policy: str,
    *,
    routes: RouteTable | None = None,
    trigger: str = "cli",
    models: list[str] | None = None,
    limit: int | None = None,
    budget_usd: float | None = None,
    progress: RunProgress | None = None,
) -> EvaluationOutcome:
    """Run the policy's evaluation, then decide and record its route.

    `routes`, when given, is the running gateway's route table: an applied decision switches it
    at once. Other gateways follow through their database sync.
    """
    summary = await run_evaluation(
        engine,
        loaded,
        caller,
        policy,
        models=models,
        limit=limit,
        budget_usd=budget_usd,
        trigger=trigger,
        progress=progress,
    )
    if summary.status not in DECIDING_STATUSES:
        reason = f"run {summary.run_id} ended with status {summary.status}"
        return EvaluationOutcome(summary, None, None, reason)

    spec = loaded.config.policies[policy]
    try:
        measured = candidate_metrics(summary.report.aggregates)
    except ValueError as exc:
        logger.warning(
            "no routing decision: policy=%s run=%d reason=%s", policy, summary.run_id, exc
        )
        return EvaluationOutcome(summary, None, None, str(exc))

    unscored = _unscored_reason(summary)
    if unscored is not None:
        logger.warning(
            "no routing decision: policy=%s run=%d reason=%s", policy, summary.run_id, unscored
        )
        return EvaluationOutcome(summary, None, None, unscored)

    measured = [metrics for metrics in measured if metrics.model in spec.candidates]
    if spec.reference not in {metrics.model for metrics in measured}:
        reason = (
            f"run {summary.run_id} did not measure the reference model {spec.reference}, "
            "which every decision compares against"
        )
        return EvaluationOutcome(summary, None, None, reason)

    policies = loaded.config.policies
    current = resolve_routes(policies, latest_applied(engine))[policy].model
    decision = decide(
        measured, spec.routing(), reference_model=spec.reference, current_model=current
    )
    decision_id = record_decision(engine, policy, decision, run_id=summary.run_id)
    if routes is not None and policy in routes:
        # The stored decisions say what the route is now: an operator pin may hold it.
        route = resolve_routes(policies, latest_applied(engine))[policy]
        routes.apply(policy, route.model, route.decision_id)
    return EvaluationOutcome(summary, decision, decision_id)


def _unscored_reason(summary: RunSummary) -> str | None:
    """Explain why the run cannot decide when none of its outputs was scored, else None."""
    aggregates = summary.report.aggregates
    if any(aggregate.quality.cases > 0 for aggregate in aggregates):
        return None
    judge_errors = sum(aggregate.judge_errors for aggregate in aggregates)
    errors = sum(aggregate.errors for aggregate in aggregates)
    common = next((a.common_judge_error for a in aggregates if a.common_judge_error), None)
    example = f"; judge error: {common[:200]}" if common else ""
    return (
        f"run {summary.run_id} scored no output ({judge_errors} judge errors, "
        f"{errors} failed calls{example}), so it has nothing to decide on"
    )
