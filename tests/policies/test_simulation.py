"""Repeated noisy runs must not make the route flap between two close candidates.

Two candidates differ by 0.3 points in true mean score: "strong" (8.4, the reference model)
and "cheap" (8.1, 40% cheaper). Each run judges 50 cases per candidate with Gaussian noise of
standard deviation 1.5, clipped to the 1-10 scale, and adds 5% noise to the measured costs.
With the floor at 7.7, the cheap candidate's lower bound clears the floor in roughly half of the
runs, so a decision that trusted each run on its own would switch back and forth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from policies import CandidateMetrics, PolicySettings, decide

RUNS = 100
CASES_PER_RUN = 50
JUDGE_NOISE_SD = 1.5
MAX_ROUTE_CHANGES = 2
MAIN_SEED = 20_240_601
OTHER_SEEDS = (1, 2, 3, 4, 5)

SETTINGS = PolicySettings(
    min_quality=7.7,
    min_quality_ratio=0.90,
    max_latency_p95_ms=4000.0,
    max_error_rate=0.02,
    min_cases=30,
    min_savings=0.10,
)
TRUE_MEANS = {"strong": 8.4, "cheap": 8.1}
TRUE_COSTS = {"strong": 0.010, "cheap": 0.006}


def _measure(model: str, rng: np.random.Generator) -> CandidateMetrics:
    scores = np.clip(rng.normal(TRUE_MEANS[model], JUDGE_NOISE_SD, CASES_PER_RUN), 1.0, 10.0)
    cost = TRUE_COSTS[model] * (1.0 + rng.normal(0.0, 0.05))
    return CandidateMetrics(
        model=model,
        cost_per_request_usd=cost,
        error_rate=0.0,
        latency_p95_ms=1500.0,
        scores=scores.tolist(),
    )


@dataclass(frozen=True)
class Simulation:
    """Outcome of one simulated sequence of runs."""

    changes: int
    chosen: list[str]
    cheap_eligible_runs: int


def _simulate_route(seed: int) -> Simulation:
    rng = np.random.default_rng(seed)
    current = "strong"
    changes = 0
    chosen = []
    cheap_eligible_runs = 0
    for run in range(RUNS):
        candidates = [_measure("strong", rng), _measure("cheap", rng)]
        decision = decide(
            candidates, SETTINGS, reference_model="strong", current_model=current, seed=run
        )
        if decision.changes_route:
            changes += 1
        if decision.cheapest_eligible_model == "cheap":
            cheap_eligible_runs += 1
        current = decision.chosen_model
        chosen.append(current)
    return Simulation(changes, chosen, cheap_eligible_runs)


@pytest.fixture(scope="module")
def simulations() -> dict[int, Simulation]:
    return {seed: _simulate_route(seed) for seed in (MAIN_SEED, *OTHER_SEEDS)}


def test_noisy_runs_change_route_at_most_twice(simulations: dict[int, Simulation]) -> None:
    result = simulations[MAIN_SEED]
    print(f"seed {MAIN_SEED}: route changed {result.changes} times in {RUNS} runs")

    assert result.changes <= MAX_ROUTE_CHANGES, (
        f"route changed {result.changes} times in {RUNS} runs (seed {MAIN_SEED}): {result.chosen}"
    )


def test_noisy_runs_stable_across_seeds(simulations: dict[int, Simulation]) -> None:
    counts = {seed: result.changes for seed, result in simulations.items()}
    print(f"route changes in {RUNS} runs by seed: {counts}")

    for seed, changes in counts.items():
        assert changes <= MAX_ROUTE_CHANGES, (
            f"route changed {changes} times in {RUNS} runs with seed {seed}, all seeds: {counts}"
        )


def test_noisy_runs_reach_cheap_candidate(simulations: dict[int, Simulation]) -> None:
    # Stability alone would also hold for a policy that never switches, so check that the
    # cheaper candidate, which truly meets the floor, ends up with the route.
    for seed, result in simulations.items():
        assert result.chosen[-1] == "cheap", f"seed {seed} ended on {result.chosen[-1]}"


def test_cheap_eligibility_is_noisy(simulations: dict[int, Simulation]) -> None:
    # The test above means something only if the entry test alone would flip often: the
    # cheap candidate must pass it in some runs and fail it in others.
    for seed, result in simulations.items():
        share = result.cheap_eligible_runs / RUNS
        assert 0.2 <= share <= 0.8, f"seed {seed}: cheap was eligible in {share:.0%} of runs"
