"""Tests of dominance and the cost/quality Pareto frontier."""

from __future__ import annotations

import math

import pytest

from policies import CostQuality, dominates, pareto_frontier

NAN = math.nan


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        pytest.param((1.0, 8.0), (2.0, 7.0), True, id="cheaper-and-better"),
        pytest.param((1.0, 8.0), (2.0, 8.0), True, id="cheaper-same-quality"),
        pytest.param((1.0, 8.0), (1.0, 7.0), True, id="same-cost-better"),
        pytest.param((1.0, 8.0), (1.0, 8.0), False, id="identical"),
        pytest.param((1.0, 7.0), (2.0, 8.0), False, id="cheaper-but-worse"),
        pytest.param((2.0, 7.0), (1.0, 8.0), False, id="dearer-and-worse"),
        pytest.param((1.0, NAN), (2.0, 7.0), False, id="nan-quality-never-dominates"),
    ],
)
def test_dominates(first: tuple[float, float], second: tuple[float, float], expected: bool) -> None:
    assert dominates(CostQuality(*first), CostQuality(*second)) is expected


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        pytest.param({}, set(), id="no-candidates"),
        pytest.param({"a": (1.0, 8.0)}, {"a"}, id="one-candidate"),
        pytest.param(
            {"cheap": (1.0, 7.0), "mid": (2.0, 8.0), "dear": (3.0, 9.0)},
            {"cheap", "mid", "dear"},
            id="all-trade-offs",
        ),
        pytest.param(
            {"cheap": (1.0, 8.0), "dear-worse": (2.0, 7.5)},
            {"cheap"},
            id="dominated-dearer-worse",
        ),
        pytest.param(
            {"cheap": (1.0, 8.0), "dear-same": (2.0, 8.0)},
            {"cheap"},
            id="equal-quality-dearer-dominated",
        ),
        pytest.param(
            {"better": (1.0, 8.5), "worse": (1.0, 8.0)},
            {"better"},
            id="equal-cost-worse-dominated",
        ),
        pytest.param(
            {"a": (1.0, 8.0), "b": (1.0, 8.0)},
            {"a", "b"},
            id="exact-tie-both-on-frontier",
        ),
        pytest.param(
            {"a": (1.0, 8.0), "b": (1.0, 8.0), "c": (0.5, 8.0)},
            {"c"},
            id="tied-pair-dominated-together",
        ),
        pytest.param(
            {"scored": (2.0, 8.0), "unscored": (1.0, NAN)},
            {"scored"},
            id="nan-quality-excluded",
        ),
        pytest.param(
            {"unscored": (1.0, NAN)},
            set(),
            id="only-nan-quality",
        ),
    ],
)
def test_pareto_frontier(points: dict[str, tuple[float, float]], expected: set[str]) -> None:
    frontier = pareto_frontier({model: CostQuality(*point) for model, point in points.items()})

    assert frontier == expected
