"""Cost/quality Pareto frontier of a set of candidate models."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple


class CostQuality(NamedTuple):
    """Mean cost per request in USD and mean judge score of one model."""

    cost: float
    quality: float


def dominates(first: CostQuality, second: CostQuality) -> bool:
    """Return whether ``first`` is at least as good as ``second`` on both axes and better on one.

    Lower cost and higher quality are better. Two models with equal cost and equal quality do
    not dominate each other.
    """
    at_least_as_good = first.cost <= second.cost and first.quality >= second.quality
    strictly_better = first.cost < second.cost or first.quality > second.quality
    return at_least_as_good and strictly_better


def pareto_frontier(points: Mapping[str, CostQuality]) -> frozenset[str]:
    """Return the models that no other model dominates.

    A model whose cost or quality is NaN is left off the frontier and dominates no other model,
    because it cannot be compared.
    """
    comparable = {
        model: point
        for model, point in points.items()
        if math.isfinite(point.cost) and math.isfinite(point.quality)
    }
    return frozenset(
        model
        for model, point in comparable.items()
        if not any(dominates(other, point) for other in comparable.values())
    )
