"""Pure routing decision logic: Pareto frontier, confidence bounds, floors, hysteresis.

This package imports only numpy and the standard library: no I/O, no HTTP, no database.
"""

from policies.candidates import CandidateMetrics
from policies.decision import CandidateRow, Decision
from policies.eligibility import Floor, FloorFailure
from policies.frontier import CostQuality, dominates, pareto_frontier
from policies.selection import decide
from policies.settings import Mode, PolicySettings
from policies.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    QualityEstimate,
    bootstrap_mean_interval,
)

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "CandidateMetrics",
    "CandidateRow",
    "CostQuality",
    "Decision",
    "Floor",
    "FloorFailure",
    "Mode",
    "PolicySettings",
    "QualityEstimate",
    "bootstrap_mean_interval",
    "decide",
    "dominates",
    "pareto_frontier",
]
