"""Choose a policy's model from one evaluation run, with hysteresis against noise.

The rules, in the order they apply:

1. In pinned mode the pin is chosen.
2. With no current model, the cheapest eligible candidate is chosen, or the reference model
   when no candidate is eligible.
3. The current model is replaced when the run did not measure it or when it fails a
   requirement with confidence (see ``policies.eligibility``). The replacement is the cheapest
   eligible candidate, or the reference model when no candidate is eligible.
4. A current model with fewer than ``min_cases`` judged cases stays, because the run cannot
   show that it fails a quality floor.
5. Otherwise the route changes only to an eligible candidate that costs at least
   ``min_savings`` less per request than the current model.

Eligible means that the lower bound of the quality interval reaches every quality floor and
every other requirement is met. The cheapest eligible candidate is never dominated by another
eligible candidate, so it is on the frontier of the eligible candidates. Ties on cost go to the
higher quality mean, then the lower p95 latency, then the model name.

The current model is held to a different standard than a newcomer, because judge noise would
otherwise make the route flap. Suppose the current model also had to keep its lower bound above
every floor. A model whose true mean lies a little above a floor would then drop out in each run
where noise pulls its lower bound under the floor, and come back in the next run where noise
lifts it. ``min_savings`` cannot prevent that, because the cost difference is real. So a
candidate enters only when the evidence shows it is good enough (lower bound at or above the
floor), and the current model leaves only when the evidence shows it is not (upper bound below
the floor). The band between the two is as wide as the interval. A model whose true mean sits
exactly on a floor can still alternate, but each crossing then needs an outcome of roughly
(1 - confidence) / 2 probability instead of a coin flip.

In the simulation in tests/policies/test_simulation.py (true means 8.4 and 8.1, judge noise of
standard deviation 1.5, 50 cases per run, floor 7.7), holding the current model to the entry
test changed the route 40 to 54 times in 100 runs for each of six seeds. The two standards
changed it once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from policies.candidates import CandidateMetrics
from policies.decision import CandidateRow, Decision
from policies.eligibility import (
    FloorFailure,
    QualityFloor,
    entry_failures,
    quality_floors,
    retention_failures,
)
from policies.formatting import format_pair, format_share
from policies.frontier import CostQuality, pareto_frontier
from policies.settings import Mode, PolicySettings
from policies.stats import DEFAULT_RESAMPLES, QualityEstimate

_SAVINGS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class _Run:
    """The measurements of one run and the eligibility table built from them."""

    candidates: Mapping[str, CandidateMetrics]
    qualities: Mapping[str, QualityEstimate]
    rows: Mapping[str, CandidateRow]
    floors: tuple[QualityFloor, ...]
    settings: PolicySettings
    reference_model: str
    cheapest_eligible: CandidateRow | None


def decide(
    candidates: Sequence[CandidateMetrics],
    settings: PolicySettings,
    *,
    reference_model: str,
    current_model: str | None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Decision:
    """Choose the model for a policy from one run's measurements and explain the choice.

    ``current_model`` is the model the route points to now, None before the first decision.
    Each candidate's quality interval is bootstrapped with ``resamples`` resamples from
    ``seed``, so the same inputs always give the same decision.

    Raises ValueError if two candidates share a model name, if the reference model is not
    among the candidates, or if a precomputed quality estimate uses another confidence level.
    """
    run = _evaluate(candidates, settings, reference_model, resamples, seed)
    chosen_model, reason = _choose(run, current_model)
    cheapest = run.cheapest_eligible

    return Decision(
        chosen_model=chosen_model,
        previous_model=current_model,
        reference_model=reference_model,
        cheapest_eligible_model=None if cheapest is None else cheapest.model,
        reason=reason,
        candidates=tuple(run.rows.values()),
        settings=settings,
    )


def _evaluate(
    candidates: Sequence[CandidateMetrics],
    settings: PolicySettings,
    reference_model: str,
    resamples: int,
    seed: int,
) -> _Run:
    by_model = _index_candidates(candidates, reference_model)
    qualities = {
        model: candidate.estimate_quality(settings.confidence, resamples, seed)
        for model, candidate in by_model.items()
    }
    floors = quality_floors(settings, reference_model, qualities[reference_model])
    frontier = pareto_frontier(
        {
            model: CostQuality(candidate.cost_per_request_usd, qualities[model].mean)
            for model, candidate in by_model.items()
        }
    )

    rows = []
    for model, candidate in by_model.items():
        failures = entry_failures(candidate, qualities[model], settings, floors)
        rows.append(_build_row(candidate, qualities[model], model in frontier, failures))
    rows.sort(key=_preference_key)
    eligible = [row for row in rows if row.eligible]

    return _Run(
        candidates=by_model,
        qualities=qualities,
        rows={row.model: row for row in rows},
        floors=floors,
        settings=settings,
        reference_model=reference_model,
        cheapest_eligible=eligible[0] if eligible else None,
    )


def _index_candidates(
    candidates: Sequence[CandidateMetrics], reference_model: str
) -> dict[str, CandidateMetrics]:
    by_model: dict[str, CandidateMetrics] = {}
    for candidate in candidates:
        if candidate.model in by_model:
            raise ValueError(
                f"Duplicate candidate {candidate.model!r}: give one set of measurements per model."
            )
        by_model[candidate.model] = candidate

    if reference_model not in by_model:
        raise ValueError(
            f"Missing reference model {reference_model!r} among the candidates "
            f"{sorted(by_model)}: the run must measure the reference model."
        )
    return by_model


def _build_row(
    candidate: CandidateMetrics,
    quality: QualityEstimate,
    on_frontier: bool,
    failures: list[FloorFailure],
) -> CandidateRow:
    return CandidateRow(
        model=candidate.model,
        cost_per_request_usd=candidate.cost_per_request_usd,
        quality_mean=quality.mean,
        quality_low=quality.low,
        quality_high=quality.high,
        latency_p95_ms=candidate.latency_p95_ms,
        error_rate=candidate.error_rate,
        cases=quality.cases,
        unscored_cases=quality.unscored_cases,
        on_frontier=on_frontier,
        ineligible_reasons=tuple(failure.message for failure in failures),
    )


def _preference_key(row: CandidateRow) -> tuple[float, float, float, str]:
    """Sort key: cheaper first, then higher quality mean, lower p95 latency, model name."""
    quality = -row.quality_mean if math.isfinite(row.quality_mean) else math.inf
    latency = math.inf if row.latency_p95_ms is None else row.latency_p95_ms
    return (row.cost_per_request_usd, quality, latency, row.model)


def _choose(run: _Run, current_model: str | None) -> tuple[str, str]:
    """Return the chosen model and the sentence that explains it."""
    settings = run.settings
    if settings.mode is Mode.PINNED:
        assert settings.pin is not None  # PolicySettings requires a pin in pinned mode
        return settings.pin, f"{settings.pin} is pinned by the operator, so no floor applies."
    if current_model is None:
        return _choose_first(run)
    if current_model not in run.rows:
        return _replace(run, current_model, f"{current_model} was not measured in this run")

    failures = retention_failures(
        run.candidates[current_model], run.qualities[current_model], settings, run.floors
    )
    if failures:
        messages = ", ".join(failure.message for failure in failures)
        return _replace(run, current_model, f"{current_model} has {messages}")

    current = run.rows[current_model]
    if current.cases < settings.min_cases:
        return current_model, (
            f"{current_model} stays because it has only {current.cases} judged cases, fewer than "
            f"min_cases {settings.min_cases}, so this run cannot show that it fails a floor."
        )
    return _keep_or_switch(run, current)


def _choose_first(run: _Run) -> tuple[str, str]:
    cheapest = run.cheapest_eligible
    if cheapest is None:
        return run.reference_model, _no_eligible_reason(run)
    if cheapest.model == run.reference_model:
        return cheapest.model, f"{cheapest.model} is the cheapest eligible candidate."

    reference = run.rows[run.reference_model]
    comparison = _compare_cost(cheapest, reference, f"the reference model {reference.model}")
    return cheapest.model, f"{cheapest.model} is the cheapest eligible candidate and {comparison}."


def _replace(run: _Run, current_model: str, cause: str) -> tuple[str, str]:
    cheapest = run.cheapest_eligible
    if cheapest is None:
        return run.reference_model, _no_eligible_reason(run)
    return cheapest.model, (
        f"{cheapest.model} is the cheapest eligible candidate and replaces {current_model}, "
        f"because {cause}."
    )


def _keep_or_switch(run: _Run, current: CandidateRow) -> tuple[str, str]:
    cheapest = run.cheapest_eligible
    min_savings = run.settings.min_savings
    savings = -math.inf
    if cheapest is not None and cheapest.model != current.model:
        savings = _savings(current.cost_per_request_usd, cheapest.cost_per_request_usd)
        # The tolerance keeps a saving of exactly min_savings from failing on rounding.
        if savings >= min_savings - _SAVINGS_TOLERANCE:
            comparison = _compare_cost(cheapest, current, current.model)
            return cheapest.model, (
                f"{cheapest.model} is the cheapest eligible candidate and {comparison}."
            )

    if not current.eligible:
        reasons = ", ".join(current.ineligible_reasons)
        return current.model, (
            f"{current.model} is not eligible ({reasons}) but stays, because the current model "
            "is replaced only when its quality upper bound is below a floor or a measured "
            "ceiling is exceeded."
        )
    if cheapest is None or cheapest.model == current.model:
        return current.model, f"{current.model} stays as the cheapest eligible candidate."
    if savings <= 0:
        return current.model, (
            f"{cheapest.model} is the cheapest eligible candidate but costs the same per request "
            f"as the current {current.model}, so {current.model} stays."
        )

    savings_text, min_savings_text = format_pair(savings * 100, min_savings * 100, 0)
    return current.model, (
        f"{cheapest.model} is the cheapest eligible candidate but only {savings_text}% cheaper "
        f"per request than the current {current.model}, below min_savings of "
        f"{min_savings_text}%, so {current.model} stays."
    )


def _savings(current_cost: float, new_cost: float) -> float:
    """Return the share of the current cost per request that the new model saves."""
    if current_cost == 0:
        return 0.0 if new_cost == 0 else -math.inf
    return (current_cost - new_cost) / current_cost


def _compare_cost(row: CandidateRow, other: CandidateRow, other_name: str) -> str:
    cost = row.cost_per_request_usd
    other_cost = other.cost_per_request_usd
    if cost == other_cost:
        return f"costs the same per request as {other_name}"
    if cost > other_cost and other_cost == 0:
        return f"costs more per request than {other_name}, which costs nothing"

    change = abs(other_cost - cost) / other_cost
    direction = "less" if cost < other_cost else "more"
    return f"costs {format_share(change)} {direction} per request than {other_name}"


def _no_eligible_reason(run: _Run) -> str:
    failures = "; ".join(
        f"{row.model} ({', '.join(row.ineligible_reasons)})" for row in run.rows.values()
    )
    return (
        f"No candidate met every floor, so the reference model {run.reference_model} is "
        f"chosen: {failures}."
    )
