"""Tests of the routing decision: floors, frontier, ties, hysteresis and modes.

Unless a case overrides them, candidates have a precomputed quality interval of mean +/- 0.3,
50 judged cases, a p95 latency of 1000 ms and no errors, and the settings are the defaults:
min_quality 8.0, min_quality_ratio 0.95, max_latency_p95_ms 4000, max_error_rate 0.02,
min_cases 30 and min_savings 0.10. The reference model "ref" has mean 8.6, so the ratio floor
is 8.17.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from policies import CandidateMetrics, CandidateRow, Decision, Mode, PolicySettings, decide
from tests.policies.factories import make_candidate

REF = make_candidate("ref", 0.010)
CHEAP = make_candidate("cheap", 0.004)
NO_RATIO = PolicySettings(min_quality_ratio=None)
NO_ABSOLUTE = PolicySettings(min_quality=None)
STAYS_UNLESS_CONFIDENT = (
    "because the current model is replaced only when its quality upper bound is below a floor "
    "or a measured ceiling is exceeded."
)


def _row(decision: Decision, model: str) -> CandidateRow:
    rows = {row.model: row for row in decision.candidates}
    return rows[model]


# Each case changes one thing about "cand" (cost 0.004, otherwise like the reference model).
FLOOR_CASES = [
    pytest.param({"mean": 7.9}, NO_RATIO, ["quality lower bound 7.6 < 8.0"], id="quality-absolute"),
    pytest.param(
        {"mean": 8.26}, NO_RATIO, ["quality lower bound 7.96 < 8.00"], id="quality-absolute-close"
    ),
    pytest.param(
        {"mean": 8.4},
        NO_ABSOLUTE,
        ["quality lower bound 8.1 < 8.2 (95% of ref's mean 8.6)"],
        id="quality-ratio",
    ),
    pytest.param({"latency": 5200.0}, None, ["p95 latency 5200 ms > 4000 ms"], id="latency"),
    pytest.param({"latency": None}, None, ["no latency measured"], id="latency-missing"),
    pytest.param({"error_rate": 0.03}, None, ["error rate 3.0% > 2.0%"], id="error-rate"),
    pytest.param({"cases": 12}, None, ["12 judged cases < 30"], id="too-few-cases"),
    pytest.param({"cases": 1}, None, ["1 judged case < 30"], id="one-case"),
    pytest.param(
        {"cases": 0}, None, ["no quality score", "0 judged cases < 30"], id="no-scored-case"
    ),
    pytest.param({"mean": 8.3, "low": 8.0}, NO_RATIO, [], id="quality-at-floor-passes"),
    pytest.param({"latency": 4000.0}, None, [], id="latency-at-ceiling-passes"),
    pytest.param({"error_rate": 0.02}, None, [], id="error-rate-at-ceiling-passes"),
    pytest.param({"cases": 30}, None, [], id="cases-at-minimum-passes"),
    pytest.param(
        {"latency": None},
        PolicySettings(max_latency_p95_ms=None),
        [],
        id="latency-missing-without-ceiling-passes",
    ),
    pytest.param(
        {"mean": 7.0, "latency": 5200.0, "error_rate": 0.05},
        NO_RATIO,
        [
            "quality lower bound 6.7 < 8.0",
            "p95 latency 5200 ms > 4000 ms",
            "error rate 5.0% > 2.0%",
        ],
        id="several-failures-in-order",
    ),
]


@pytest.mark.parametrize(("changes", "settings", "expected_reasons"), FLOOR_CASES)
def test_floor_failures_listed(
    changes: dict[str, Any], settings: PolicySettings | None, expected_reasons: list[str]
) -> None:
    candidate = make_candidate("cand", 0.004, **changes)

    decision = decide(
        [REF, candidate],
        settings or PolicySettings(),
        reference_model="ref",
        current_model=None,
    )

    row = _row(decision, "cand")
    assert list(row.ineligible_reasons) == expected_reasons
    assert row.eligible is (not expected_reasons)
    assert decision.chosen_model == ("ref" if expected_reasons else "cand")


def test_ratio_floor_without_reference_score() -> None:
    reference = make_candidate("ref", 0.010, cases=0)

    decision = decide([reference, CHEAP], NO_ABSOLUTE, reference_model="ref", current_model=None)

    assert _row(decision, "cheap").ineligible_reasons == (
        "quality floor unknown (95% of ref's mean, but ref has no scored case)",
    )
    assert decision.chosen_model == "ref"
    assert decision.cheapest_eligible_model is None


DECISION_CASES = [
    pytest.param(
        [REF, CHEAP],
        None,
        None,
        "cheap",
        "cheap is the cheapest eligible candidate and costs 60% less per request than the "
        "reference model ref.",
        id="first-decision-cheapest",
    ),
    pytest.param(
        [REF, make_candidate("dear", 0.020)],
        None,
        None,
        "ref",
        "ref is the cheapest eligible candidate.",
        id="first-decision-reference-cheapest",
    ),
    pytest.param(
        [REF],
        None,
        None,
        "ref",
        "ref is the cheapest eligible candidate.",
        id="one-candidate-first",
    ),
    pytest.param(
        [REF],
        "ref",
        None,
        "ref",
        "ref stays as the cheapest eligible candidate.",
        id="one-candidate-current",
    ),
    pytest.param(
        [REF, CHEAP],
        "ref",
        None,
        "cheap",
        "cheap is the cheapest eligible candidate and costs 60% less per request than ref.",
        id="switch-on-savings",
    ),
    pytest.param(
        [make_candidate("ref", 0.03), make_candidate("new", 0.027)],
        "ref",
        None,
        "new",
        "new is the cheapest eligible candidate and costs 10% less per request than ref.",
        id="switch-at-exact-min-savings",
    ),
    pytest.param(
        [REF, make_candidate("mid", 0.0050), make_candidate("cheap", 0.0048)],
        "mid",
        None,
        "mid",
        "cheap is the cheapest eligible candidate but only 4% cheaper per request than the "
        "current mid, below min_savings of 10%, so mid stays.",
        id="keep-below-min-savings",
    ),
    pytest.param(
        [REF, make_candidate("mid", 0.0050), make_candidate("cheap", 0.004505)],
        "mid",
        None,
        "mid",
        "cheap is the cheapest eligible candidate but only 9.9% cheaper per request than the "
        "current mid, below min_savings of 10.0%, so mid stays.",
        id="keep-just-below-min-savings",
    ),
    pytest.param(
        [REF, make_candidate("mid", 0.0050), make_candidate("cheap", 0.0048)],
        "mid",
        PolicySettings(min_savings=0.0),
        "cheap",
        "cheap is the cheapest eligible candidate and costs 4% less per request than mid.",
        id="switch-with-zero-min-savings",
    ),
    pytest.param(
        [REF, CHEAP],
        "cheap",
        None,
        "cheap",
        "cheap stays as the cheapest eligible candidate.",
        id="keep-cheapest-current",
    ),
    pytest.param(
        [REF, make_candidate("a", 0.004, mean=8.6), make_candidate("b", 0.004, mean=8.8)],
        None,
        None,
        "b",
        "b is the cheapest eligible candidate and costs 60% less per request than the reference "
        "model ref.",
        id="equal-cost-prefers-higher-quality",
    ),
    pytest.param(
        [REF, make_candidate("a", 0.004, mean=8.6), make_candidate("b", 0.004, mean=8.8)],
        "a",
        None,
        "a",
        "b is the cheapest eligible candidate but costs the same per request as the current a, "
        "so a stays.",
        id="equal-cost-keeps-current",
    ),
    pytest.param(
        [
            REF,
            make_candidate("a", 0.004, latency=1500.0),
            make_candidate("b", 0.004, latency=900.0),
        ],
        None,
        None,
        "b",
        "b is the cheapest eligible candidate and costs 60% less per request than the reference "
        "model ref.",
        id="equal-cost-quality-prefers-lower-latency",
    ),
    pytest.param(
        [REF, make_candidate("b", 0.004), make_candidate("a", 0.004)],
        None,
        None,
        "a",
        "a is the cheapest eligible candidate and costs 60% less per request than the reference "
        "model ref.",
        id="full-tie-prefers-name",
    ),
    pytest.param(
        [REF, make_candidate("cheap", 0.004, error_rate=0.05)],
        "cheap",
        None,
        "ref",
        "ref is the cheapest eligible candidate and replaces cheap, because cheap has error rate "
        "5.0% > 2.0%.",
        id="current-fails-error-rate",
    ),
    pytest.param(
        [REF, make_candidate("cheap", 0.004, latency=5200.0)],
        "cheap",
        None,
        "ref",
        "ref is the cheapest eligible candidate and replaces cheap, because cheap has p95 latency "
        "5200 ms > 4000 ms.",
        id="current-fails-latency",
    ),
    pytest.param(
        [REF, make_candidate("cheap", 0.004, mean=7.2)],
        "cheap",
        NO_RATIO,
        "ref",
        "ref is the cheapest eligible candidate and replaces cheap, because cheap has quality "
        "upper bound 7.5 < 8.0.",
        id="current-confidently-below-floor",
    ),
    pytest.param(
        [REF, make_candidate("cheap", 0.004, mean=7.8)],
        "cheap",
        NO_ABSOLUTE,
        "ref",
        "ref is the cheapest eligible candidate and replaces cheap, because cheap has quality "
        "upper bound 8.1 < 8.2 (95% of ref's mean 8.6).",
        id="current-confidently-below-ratio-floor",
    ),
    pytest.param(
        [REF, make_candidate("cheap", 0.004, mean=8.1)],
        "cheap",
        NO_RATIO,
        "cheap",
        "cheap is not eligible (quality lower bound 7.8 < 8.0) but stays, "
        + STAYS_UNLESS_CONFIDENT,
        id="current-noisy-shortfall-stays",
    ),
    pytest.param(
        [REF, make_candidate("cheap", 0.004, latency=None)],
        "cheap",
        None,
        "cheap",
        "cheap is not eligible (no latency measured) but stays, " + STAYS_UNLESS_CONFIDENT,
        id="current-missing-latency-stays",
    ),
    pytest.param(
        [REF, make_candidate("mid", 0.008, mean=8.1), CHEAP],
        "mid",
        NO_RATIO,
        "cheap",
        "cheap is the cheapest eligible candidate and costs 50% less per request than mid.",
        id="current-shortfall-cheaper-candidate-switches",
    ),
    pytest.param(
        [REF, CHEAP],
        "gone",
        None,
        "cheap",
        "cheap is the cheapest eligible candidate and replaces gone, because gone was not "
        "measured in this run.",
        id="current-not-measured",
    ),
    pytest.param(
        [REF, make_candidate("cheap", 0.004, cases=12)],
        "cheap",
        None,
        "cheap",
        "cheap stays because it has only 12 judged cases, fewer than min_cases 30, so this run "
        "cannot show that it fails a floor.",
        id="current-too-few-cases-stays",
    ),
    pytest.param(
        [REF, make_candidate("cheap", 0.004, cases=12, mean=7.0)],
        "cheap",
        None,
        "cheap",
        "cheap stays because it has only 12 judged cases, fewer than min_cases 30, so this run "
        "cannot show that it fails a floor.",
        id="current-too-few-cases-low-quality-stays",
    ),
    pytest.param(
        [REF, make_candidate("cheap", 0.004, cases=12, error_rate=0.05)],
        "cheap",
        None,
        "ref",
        "ref is the cheapest eligible candidate and replaces cheap, because cheap has error rate "
        "5.0% > 2.0%.",
        id="current-too-few-cases-high-error-rate-switches",
    ),
    pytest.param(
        [make_candidate("ref", 0.010, latency=5200.0), make_candidate("cheap", 0.004, mean=7.5)],
        None,
        NO_RATIO,
        "ref",
        "No candidate met every floor, so the reference model ref is chosen: cheap (quality lower "
        "bound 7.2 < 8.0); ref (p95 latency 5200 ms > 4000 ms).",
        id="none-eligible-first-decision",
    ),
    pytest.param(
        [make_candidate("ref", 0.010, latency=5200.0), make_candidate("cheap", 0.004, mean=7.2)],
        "cheap",
        NO_RATIO,
        "ref",
        "No candidate met every floor, so the reference model ref is chosen: cheap (quality lower "
        "bound 6.9 < 8.0); ref (p95 latency 5200 ms > 4000 ms).",
        id="none-eligible-current-fails",
    ),
    pytest.param(
        [make_candidate("ref", 0.010, error_rate=0.1), make_candidate("cheap", 0.004, cases=5)],
        "ref",
        None,
        "ref",
        "No candidate met every floor, so the reference model ref is chosen: cheap (5 judged cases "
        "< 30); ref (error rate 10.0% > 2.0%).",
        id="none-eligible-reference-current",
    ),
]


@pytest.mark.parametrize(
    ("candidates", "current", "settings", "expected_model", "expected_reason"), DECISION_CASES
)
def test_decide_chooses_and_explains(
    candidates: list[CandidateMetrics],
    current: str | None,
    settings: PolicySettings | None,
    expected_model: str,
    expected_reason: str,
) -> None:
    decision = decide(
        candidates, settings or PolicySettings(), reference_model="ref", current_model=current
    )

    assert decision.chosen_model == expected_model
    assert decision.reason == expected_reason
    assert decision.previous_model == current
    assert decision.changes_route is (expected_model != current)


def test_decide_rows_sorted_by_preference() -> None:
    candidates = [REF, make_candidate("slow", 0.002, latency=9000.0), CHEAP]

    decision = decide(candidates, PolicySettings(), reference_model="ref", current_model=None)

    assert [row.model for row in decision.candidates] == ["slow", "cheap", "ref"]
    assert decision.cheapest_eligible_model == "cheap"


def test_decide_marks_frontier() -> None:
    candidates = [
        REF,
        make_candidate("cheap", 0.004, mean=8.2),
        make_candidate("dominated", 0.012, mean=8.4),
        make_candidate("unscored", 0.001, cases=0),
    ]

    decision = decide(candidates, PolicySettings(), reference_model="ref", current_model=None)

    on_frontier = {row.model for row in decision.candidates if row.on_frontier}
    assert on_frontier == {"ref", "cheap"}


def test_decide_chosen_can_be_off_frontier() -> None:
    # "fast" dominates "cheap" but exceeds the latency ceiling, so the cheapest eligible
    # candidate is one that the full frontier leaves out.
    candidates = [
        REF,
        make_candidate("fast", 0.004, mean=8.8, latency=5000.0),
        make_candidate("cheap", 0.004, mean=8.6),
    ]

    decision = decide(candidates, PolicySettings(), reference_model="ref", current_model=None)

    assert decision.chosen_model == "cheap"
    assert not _row(decision, "cheap").on_frontier


def test_decide_nan_scores_excluded_and_counted() -> None:
    scores = [8.5] * 27 + [math.nan] * 5
    candidate = CandidateMetrics("cand", 0.004, 0.0, 1000.0, scores=scores)

    decision = decide([REF, candidate], NO_RATIO, reference_model="ref", current_model=None)

    row = _row(decision, "cand")
    assert row.cases == 27
    assert row.unscored_cases == 5
    assert row.quality_mean == pytest.approx(8.5)
    assert row.ineligible_reasons == ("27 judged cases < 30 (5 without a score left out)",)


def test_decide_all_nan_scores_unscored() -> None:
    candidate = CandidateMetrics("cand", 0.001, 0.0, 1000.0, scores=[math.nan] * 40)

    decision = decide([REF, candidate], NO_RATIO, reference_model="ref", current_model=None)

    row = _row(decision, "cand")
    assert math.isnan(row.quality_mean)
    assert math.isnan(row.quality_low)
    assert not row.on_frontier
    assert row.ineligible_reasons == (
        "no quality score",
        "0 judged cases < 30 (40 without a score left out)",
    )
    assert decision.chosen_model == "ref"


def test_decide_bootstraps_scores_reproducibly() -> None:
    scores = np.random.default_rng(1).normal(8.5, 1.0, 60).clip(1, 10).tolist()
    candidates = [REF, CandidateMetrics("cand", 0.004, 0.0, 1000.0, scores=scores)]

    first = decide(candidates, PolicySettings(), reference_model="ref", current_model=None)
    second = decide(candidates, PolicySettings(), reference_model="ref", current_model=None)

    assert first.to_dict() == second.to_dict()
    row = _row(first, "cand")
    assert row.quality_low < row.quality_mean < row.quality_high


def test_pinned_mode_chooses_pin() -> None:
    settings = PolicySettings(mode=Mode.PINNED, pin="slow")
    candidates = [REF, make_candidate("slow", 0.004, latency=9000.0)]

    decision = decide(candidates, settings, reference_model="ref", current_model="ref")

    assert decision.chosen_model == "slow"
    assert decision.reason == "slow is pinned by the operator, so no floor applies."
    assert decision.mode is Mode.PINNED
    assert decision.apply is True
    assert decision.changes_route is True
    assert decision.cheapest_eligible_model == "ref"
    assert not _row(decision, "slow").eligible


def test_pinned_mode_model_not_measured() -> None:
    settings = PolicySettings(mode=Mode.PINNED, pin="other")

    decision = decide([REF, CHEAP], settings, reference_model="ref", current_model="other")

    assert decision.chosen_model == "other"
    assert decision.changes_route is False


def test_recommend_mode_same_choice_not_applied() -> None:
    auto = decide([REF, CHEAP], PolicySettings(), reference_model="ref", current_model="ref")
    recommend = decide(
        [REF, CHEAP],
        PolicySettings(mode=Mode.RECOMMEND),
        reference_model="ref",
        current_model="ref",
    )

    assert recommend.chosen_model == auto.chosen_model == "cheap"
    assert recommend.reason == auto.reason
    assert recommend.changes_route is True
    assert recommend.mode is Mode.RECOMMEND
    assert recommend.apply is False
    assert auto.apply is True


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        pytest.param([REF, REF], "Duplicate candidate 'ref'", id="duplicate-model"),
        pytest.param(
            [CHEAP],
            r"Missing reference model 'ref' among the candidates \['cheap'\]",
            id="no-reference",
        ),
        pytest.param([], "Missing reference model 'ref'", id="no-candidates"),
        pytest.param(
            [REF, make_candidate("cand", 0.004, confidence=0.8)],
            "cand has confidence 0.8, but the policy uses 0.9",
            id="confidence-mismatch",
        ),
    ],
)
def test_decide_invalid_input_raises(candidates: list[CandidateMetrics], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decide(candidates, PolicySettings(), reference_model="ref", current_model=None)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"model": ""}, "model name is empty", id="empty-model"),
        pytest.param(
            {"cost_per_request_usd": -0.01},
            "Invalid cost_per_request_usd -0.01 for m",
            id="negative-cost",
        ),
        pytest.param(
            {"cost_per_request_usd": math.nan}, "Invalid cost_per_request_usd nan", id="nan-cost"
        ),
        pytest.param(
            {"error_rate": 1.5},
            "Invalid error_rate 1.5 for m: expected a share",
            id="error-rate-above-1",
        ),
        pytest.param({"error_rate": math.nan}, "Invalid error_rate nan", id="nan-error-rate"),
        pytest.param(
            {"latency_p95_ms": -1.0}, "Invalid latency_p95_ms -1.0 for m", id="negative-latency"
        ),
        pytest.param({"scores": None}, "give either scores or a quality estimate", id="no-scores"),
        pytest.param(
            {"scores": [8.0, 11.0]},
            "Invalid score 11.0 for m: expected a judge score",
            id="score-above-10",
        ),
        pytest.param({"scores": [0.0]}, "Invalid score 0.0 for m", id="score-below-1"),
        pytest.param({"scores": [math.inf]}, "Invalid score inf for m", id="infinite-score"),
        pytest.param({"quality": REF.quality}, "not both", id="scores-and-quality"),
    ],
)
def test_candidate_invalid_raises(arguments: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {
        "model": "m",
        "cost_per_request_usd": 0.01,
        "error_rate": 0.0,
        "latency_p95_ms": 1000.0,
        "scores": [8.0, 9.0],
    }
    values.update(arguments)

    with pytest.raises(ValueError, match=message):
        CandidateMetrics(**values)


def test_candidate_quality_out_of_scale_raises() -> None:
    with pytest.raises(ValueError, match="must be judge scores from 1 to 10"):
        make_candidate("m", 0.01, mean=0.5)


def test_candidate_scores_stored_as_tuple() -> None:
    candidate = CandidateMetrics("m", 0.01, 0.0, scores=np.array([8.0, math.nan]))  # type: ignore[arg-type]

    assert isinstance(candidate.scores, tuple)
    assert candidate.scores[0] == 8.0
